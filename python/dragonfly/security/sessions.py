"""Dashboard sessions: HS256 JWTs with a pinned algorithm and an expiry."""

from __future__ import annotations

import hashlib
import time

import jwt

ALGORITHM = "HS256"


class SessionTokens:
    def __init__(self, secret: str, ttl_s: int) -> None:
        self._key = hashlib.sha256(b"dragonfly-jwt:" + secret.encode()).hexdigest()
        self.ttl_s = ttl_s

    def issue(self, account_id: str) -> str:
        now = int(time.time())
        return jwt.encode(
            {"sub": account_id, "iat": now, "exp": now + self.ttl_s, "typ": "session"},
            self._key,
            algorithm=ALGORITHM,
        )

    def verify(self, token: str) -> str | None:
        """The account id, or None for any invalid, expired or foreign token."""
        try:
            claims = jwt.decode(
                token, self._key, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "iat"]}
            )
        except jwt.PyJWTError:
            return None
        if claims.get("typ") != "session":
            return None
        sub = claims.get("sub")
        return sub if isinstance(sub, str) else None
