"""The browser's session: the login JWT in an HttpOnly cookie, and the CSRF token beside it.

`POST /api/auth/session` (api/handlers/session.py) sets two cookies, both `SameSite=Strict`, `Path` the
public URL's path, `Secure` when the public URL (`DRAGONFLY_PUBLIC_URL`) is https, and living as long as
the token:

- `df_session`: the JWT, `HttpOnly` (no script can read it);
- `df_csrf`: the session's CSRF token, readable by the dashboard's script, which echoes it in the
  `x-csrf-token` header of every state-changing call.

`authenticate` (api/auth.py) takes the cookie only when the request has no `Authorization` header (bearer
credentials are unchanged and need no CSRF token). A cookie-authenticated request whose method changes
state must carry `x-csrf-token` equal to the session's token, compared in constant time; otherwise it is
refused with 403 `permission_denied`. The token is an HMAC of the session's id (security/sessions.py
`csrf_token`), not a free-standing random value: a cookie someone managed to plant next to ours (a
sibling subdomain) cannot be paired with a header of its choosing ("signed double submit").

`DELETE /api/auth/session` revokes the session (its `jti` in `session_revocations`, checked by every
control plane) and clears both cookies.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from robyn import Headers

SESSION_COOKIE = "df_session"
CSRF_COOKIE = "df_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Enough for a session JWT; a bigger cookie value is not ours.
_MAX_VALUE = 4096


def read_cookies(headers: Headers) -> dict[str, str]:
    """The request's cookies by name (RFC 6265 `name=value; name=value`; the first of a repeated name)."""
    raw = headers.get("cookie")
    out: dict[str, str] = {}
    if not raw:
        return out
    for part in raw.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and len(value) <= _MAX_VALUE:
            out.setdefault(name, value.strip().strip('"'))
    return out


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    """Where and how the cookies are set, from the public URL people reach the product at."""

    path: str = "/"
    secure: bool = False

    @classmethod
    def from_public_url(cls, public_url: str) -> CookiePolicy:
        url = urlsplit(public_url)
        path = url.path.rstrip("/") + "/"
        return cls(path=path, secure=url.scheme == "https")

    def _attributes(self, max_age: int) -> str:
        secure = "; Secure" if self.secure else ""
        return f"; Path={self.path}; Max-Age={max_age}; SameSite=Strict{secure}"

    def set_session(self, token: str, csrf: str, max_age: int) -> list[tuple[str, str]]:
        """The two `set-cookie` headers of a new session."""
        attrs = self._attributes(max_age)
        return [
            ("set-cookie", f"{SESSION_COOKIE}={token}{attrs}; HttpOnly"),
            ("set-cookie", f"{CSRF_COOKIE}={csrf}{attrs}"),
        ]

    def clear(self) -> list[tuple[str, str]]:
        """The two `set-cookie` headers that make the browser drop both cookies."""
        attrs = self._attributes(0)
        return [
            ("set-cookie", f"{SESSION_COOKIE}={attrs}; HttpOnly"),
            ("set-cookie", f"{CSRF_COOKIE}={attrs}"),
        ]


__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SAFE_METHODS",
    "SESSION_COOKIE",
    "CookiePolicy",
    "read_cookies",
]
