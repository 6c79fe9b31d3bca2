"""API tokens: generated at random, stored only as their SHA-256."""

from __future__ import annotations

import hashlib
import secrets


def hash_token(token: str) -> str:
    """The hex SHA-256 stored in api_credentials/{id}.token_sha256."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh token with 256 bits of randomness, safe in a Basic credential."""
    return secrets.token_urlsafe(32)
