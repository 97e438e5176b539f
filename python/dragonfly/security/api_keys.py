"""Buyer and management API keys: `sk-df-` + 43 url-safe chars, stored only as HMAC-SHA256(pepper, key)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "sk-df-"


def generate_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def key_hint(raw: str) -> str:
    """`sk-df-ab12...yz89`: enough to recognise a key, useless to use it."""
    body = raw[len(PREFIX) :] if raw.startswith(PREFIX) else raw
    return f"{PREFIX}{body[:4]}...{body[-4:]}"


class KeyHasher:
    """HMAC with a server pepper: a leaked table of hashes cannot be brute-forced offline without it."""

    def __init__(self, secret: str) -> None:
        self._pepper = hashlib.sha256(b"dragonfly-api-key-pepper:" + secret.encode()).digest()

    def hash(self, raw: str) -> str:
        return hmac.new(self._pepper, raw.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def same(a: str, b: str) -> bool:
        return hmac.compare_digest(a, b)
