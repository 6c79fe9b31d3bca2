"""Settings read from the environment once, into one typed object with defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache


def _positive_float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = float(raw)
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value


def _positive_int(env: dict[str, str], name: str, default: int) -> int:
    value = _positive_float(env, name, default)
    if value != int(value):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Settings:
    """How this instance runs. Tenants configure themselves in Firestore (SPEC section 7)."""

    project: str | None = None
    database: str = "(default)"
    id_block_size: int = 50
    request_deadline_seconds: float = 8.0
    rpc_timeout_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        return cls(
            project=env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCLOUD_PROJECT") or None,
            database=env.get("FIRESTORE_DATABASE") or "(default)",
            id_block_size=_positive_int(env, "SMS_ID_BLOCK_SIZE", cls.id_block_size),
            request_deadline_seconds=_positive_float(
                env, "SMS_REQUEST_DEADLINE_SECONDS", cls.request_deadline_seconds
            ),
            rpc_timeout_seconds=_positive_float(
                env, "SMS_FIRESTORE_TIMEOUT_SECONDS", cls.rpc_timeout_seconds
            ),
        )


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The settings of this process, read from the environment on first use."""
    return Settings.from_env()
