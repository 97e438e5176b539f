"""Dashboard sessions: HS256 JWTs with a pinned algorithm and an expiry.

Each token carries a random `jti`, so one session can be revoked (logout: `session_revocations`,
api/session_cookies.py) and the browser's CSRF token can be bound to it: `csrf_token(jti)` is an HMAC of
the session id under a key of its own, so a token made for one session is worthless with another, and
nobody without the server secret can make one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class SessionClaims:
    account_id: str
    jti: str | None  # None for tokens issued before sessions had ids (they cannot be revoked)
    expires_at: int  # unix seconds


class SessionTokens:
    def __init__(self, secret: str, ttl_s: int) -> None:
        self._key = hashlib.sha256(b"dragonfly-jwt:" + secret.encode()).hexdigest()
        self._csrf_key = hashlib.sha256(b"dragonfly-csrf:" + secret.encode()).digest()
        self.ttl_s = ttl_s

    def issue(self, account_id: str) -> str:
        now = int(time.time())
        return jwt.encode(
            {
                "sub": account_id,
                "iat": now,
                "exp": now + self.ttl_s,
                "typ": "session",
                "jti": secrets.token_urlsafe(16),
            },
            self._key,
            algorithm=ALGORITHM,
        )

    def read(self, token: str) -> SessionClaims | None:
        """The token's claims, or None for any invalid, expired or foreign token."""
        try:
            claims = jwt.decode(
                token, self._key, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "iat"]}
            )
        except jwt.PyJWTError:
            return None
        if claims.get("typ") != "session":
            return None
        sub, jti, exp = claims.get("sub"), claims.get("jti"), claims.get("exp")
        if not isinstance(sub, str) or not isinstance(exp, int):
            return None
        return SessionClaims(
            account_id=sub, jti=jti if isinstance(jti, str) and jti else None, expires_at=exp
        )

    def verify(self, token: str) -> str | None:
        """The account id, or None for any invalid, expired or foreign token."""
        claims = self.read(token)
        return claims.account_id if claims else None

    def csrf_token(self, jti: str) -> str:
        """The CSRF token of the session `jti` (the browser echoes it in `x-csrf-token`)."""
        return hmac.new(self._csrf_key, jti.encode(), hashlib.sha256).hexdigest()

    def csrf_matches(self, jti: str, given: str | None) -> bool:
        """Constant-time comparison of a presented CSRF token with the session's."""
        if not given:
            return False
        return hmac.compare_digest(self.csrf_token(jti).encode(), given.encode())
