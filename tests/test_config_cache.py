"""SPEC 7: an instance may keep what it read of a tenant's configuration for up to 10 s.

Also the settings read from the environment beside the cache's: SPEC 8's floor under
SMS_SWEEP_AFTER_SECONDS.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import flask
import pytest
from google.cloud import firestore

from conftest import PROJECT, SEED_BODY, SMS_PATH, Tenant
from sms import bootstrap
from sms.api import Api
from sms.cache import TtlCache
from sms.config import Settings

UNAUTHORIZED = {"message": "Unauthorized"}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_value_is_kept_for_its_seconds_and_no_longer() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(5, clock)
    cache.put("a", 1)

    clock.now += 4.9
    assert cache.get("a") == 1
    clock.now += 0.2
    assert cache.get("a") is None


def test_a_values_age_counts_from_when_its_read_began() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(5, clock)
    read_at = cache.now()
    clock.now += 3  # a slow read: what it saw may be 3 s old when it returns
    cache.put("a", 1, read_at)

    clock.now += 1.9
    assert cache.get("a") == 1
    clock.now += 0.2
    assert cache.get("a") is None


def test_zero_seconds_keeps_nothing() -> None:
    cache: TtlCache[str, int] = TtlCache(0)
    cache.put("a", 1)

    assert cache.get("a") is None


@pytest.mark.parametrize("seconds", [-1, 10.5, 3600])
def test_a_cache_longer_than_10_s_or_negative_is_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match="0 to 10"):
        TtlCache(seconds)


def test_the_cache_stays_bounded() -> None:
    clock = Clock()
    cache: TtlCache[int, int] = TtlCache(5, clock)
    for n in range(25_000):
        cache.put(n, n)

    assert cache.get(24_999) == 24_999
    assert len(cache._entries) <= 10_000


@pytest.mark.parametrize(
    ("raw", "seconds"), [(None, 5.0), ("", 5.0), ("0", 0.0), ("2.5", 2.5), ("10", 10.0)]
)
def test_sms_config_cache_seconds_is_read_from_the_environment(
    raw: str | None, seconds: float
) -> None:
    env = {} if raw is None else {"SMS_CONFIG_CACHE_SECONDS": raw}

    assert Settings.from_env(env).config_cache_seconds == seconds


@pytest.mark.parametrize("raw", ["11", "-1", "soon", "nan"])
def test_a_config_cache_the_spec_does_not_allow_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="SMS_CONFIG_CACHE_SECONDS"):
        Settings.from_env({"SMS_CONFIG_CACHE_SECONDS": raw})


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [(None, 60.0), ("", 60.0), ("15", 15.0), ("015", 15.0), ("15.5", 15.5), ("86400", 86400.0)],
)
def test_sms_sweep_after_seconds_is_read_from_the_environment(
    raw: str | None, seconds: float
) -> None:
    env = {} if raw is None else {"SMS_SWEEP_AFTER_SECONDS": raw}

    assert Settings.from_env(env).sweep_after_seconds == seconds


@pytest.mark.parametrize("raw", ["14.99", "3", "0", "-1", "soon", "nan", "inf"])
def test_a_sweep_after_seconds_below_15_is_refused_naming_the_setting(raw: str) -> None:
    """A send can be in flight for a request's 10 s: a sweeper that took it sooner could send
    it again (SPEC 8). The function and the sweep command then refuse to start."""
    expected = f"SMS_SWEEP_AFTER_SECONDS must be a number of seconds, at least 15, got {raw!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        Settings.from_env({"SMS_SWEEP_AFTER_SECONDS": raw})


def serve(seconds: float, clock: Clock | None = None) -> Callable[[Tenant], Any]:
    """The function in-process, keeping what it read for ``seconds`` (by ``clock``, a
    monotonic clock the test moves, when given)."""
    api = Api(bootstrap.build(Settings(project=PROJECT, config_cache_seconds=seconds)))
    if clock is not None:
        api.signed_in = TtlCache(seconds, clock)
    app = flask.Flask(__name__)

    def post(tenant: Tenant) -> Any:
        with app.test_request_context(
            SMS_PATH, method="POST", json={**SEED_BODY, "message": "x"}, headers=tenant.headers
        ):
            response = api.handle(flask.request)
            return response.status_code, response.get_json()

    return post


def disable(db: firestore.Client, tenant: Tenant) -> None:
    db.document(f"tenants/{tenant.id}/api_credentials/{tenant.credential_id}").update(
        {"enabled": False}
    )


def test_a_disabled_credential_stops_working_once_the_cache_has_passed(
    db: firestore.Client, make_tenant: Callable[..., Tenant]
) -> None:
    tenant = make_tenant()
    clock = Clock()
    post = serve(1.0, clock)
    assert post(tenant)[0] == 200

    disable(db, tenant)
    clock.now += 0.9
    assert post(tenant)[0] == 400  # still signed in from the cache (and the consumer is busy)
    clock.now += 0.2

    assert post(tenant) == (401, UNAUTHORIZED)


def test_without_a_cache_a_disabled_credential_stops_at_once(
    db: firestore.Client, make_tenant: Callable[..., Tenant]
) -> None:
    tenant = make_tenant()
    post = serve(0)
    assert post(tenant)[0] == 200

    disable(db, tenant)

    assert post(tenant) == (401, UNAUTHORIZED)


def test_a_changed_tenant_setting_takes_effect_once_the_cache_has_passed(
    db: firestore.Client, make_tenant: Callable[..., Tenant]
) -> None:
    tenant = make_tenant()
    clock = Clock()
    post = serve(1.0, clock)
    assert post(tenant)[0] == 200

    db.document(f"tenants/{tenant.id}").update({"sms_enabled": False})
    clock.now += 1.1

    assert post(tenant) == (400, {"message": "SMS is not enabled"})
