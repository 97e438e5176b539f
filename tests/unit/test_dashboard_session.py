"""The browser session's pieces (api/session_cookies.py, security/sessions.py) and the dashboard's files
(api/dashboard/): cookie attributes per public URL, the CSRF token bound to its session, and pages that
run no inline script, keep nothing in browser storage and load nothing from another origin."""

from __future__ import annotations

import re
import time

import jwt
from robyn import Headers

from dragonfly.api.dashboard import ASSET_PREFIX, CONTENT_SECURITY_POLICY, DASHBOARD_PATH, load_assets
from dragonfly.api.session_cookies import CookiePolicy, read_cookies
from dragonfly.security.sessions import SessionTokens

# Browser storage, HTML parsing and code from strings, used (not merely named: comments name them).
_BANNED = r"\b(localStorage|sessionStorage|indexedDB)\s*[.\[]|\.(innerHTML|outerHTML)\b|\beval\(|new Function"


def test_cookies_are_read_by_name_and_the_first_of_a_name_wins() -> None:
    headers = Headers({"cookie": 'a=1; df_session=tok.en.x; b="q"; df_session=later; junk; =x'})
    assert read_cookies(headers) == {"a": "1", "df_session": "tok.en.x", "b": "q"}
    assert read_cookies(Headers({})) == {}


def test_cookie_attributes_follow_the_public_url() -> None:
    plain = CookiePolicy.from_public_url("http://127.0.0.1:8000")
    assert plain == CookiePolicy(path="/", secure=False)
    session, csrf = (value for _, value in plain.set_session("jwt-value", "csrf-value", 3600))
    assert session == "df_session=jwt-value; Path=/; Max-Age=3600; SameSite=Strict; HttpOnly"
    assert csrf == "df_csrf=csrf-value; Path=/; Max-Age=3600; SameSite=Strict"  # the script reads it

    tls = CookiePolicy.from_public_url("https://dragonfly.example.com/gateway/")
    assert tls == CookiePolicy(path="/gateway/", secure=True)
    for name, value in tls.set_session("j", "c", 60):
        assert name == "set-cookie"
        assert value.endswith(("; Secure", "; Secure; HttpOnly"))
        assert "Path=/gateway/;" in value and "SameSite=Strict" in value
    cleared = [value for _, value in tls.clear()]
    assert all("Max-Age=0" in value for value in cleared)
    assert cleared[0].startswith("df_session=;") and cleared[1].startswith("df_csrf=;")


def test_each_session_has_an_id_and_its_own_csrf_token() -> None:
    tokens = SessionTokens("secret", 3600)
    first, second = tokens.read(tokens.issue("acct")), tokens.read(tokens.issue("acct"))
    assert first and second and first.jti and second.jti and first.jti != second.jti
    assert first.account_id == "acct" and first.expires_at > time.time()
    csrf = tokens.csrf_token(first.jti)
    assert tokens.csrf_matches(first.jti, csrf)
    assert not tokens.csrf_matches(second.jti, csrf)  # bound to its session
    assert not tokens.csrf_matches(first.jti, None) and not tokens.csrf_matches(first.jti, "")
    assert not tokens.csrf_matches(first.jti, csrf[:-1] + ("0" if csrf[-1] != "0" else "1"))
    assert not tokens.csrf_matches(first.jti, "é" * 64)  # not ASCII: refused, not an exception
    # Another server secret makes other tokens.
    assert SessionTokens("other", 3600).csrf_token(first.jti) != csrf


def test_a_token_without_an_id_still_reads_but_names_none() -> None:
    """Tokens issued before sessions had ids stay valid as bearer tokens until they expire."""
    tokens = SessionTokens("secret", 3600)
    now = int(time.time())
    key = tokens._key
    legacy = jwt.encode(
        {"sub": "acct", "iat": now, "exp": now + 60, "typ": "session"}, key, algorithm="HS256"
    )
    claims = tokens.read(legacy)
    assert claims is not None and claims.jti is None and tokens.verify(legacy) == "acct"
    assert tokens.read(legacy + "x") is None


def test_the_dashboard_files_run_no_inline_script_and_keep_nothing_in_storage() -> None:
    assets = load_assets()
    assert DASHBOARD_PATH in assets and f"{ASSET_PREFIX}js/app.js" in assets
    assert f"{ASSET_PREFIX}style.css" in assets
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe" not in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    index = assets[DASHBOARD_PATH].body.decode()
    # Every script is a file of this origin; no inline handler or style either.
    assert re.findall(r"<script\b[^>]*>", index) == ['<script type="module" src="dashboard/js/app.js">']
    assert not re.search(r"\son[a-z]+\s*=", index) and "style=" not in index
    referenced = set(re.findall(r'(?:src|href)="(dashboard/[^"]+)"', index))
    assert referenced and all("/" + ref in assets for ref in referenced)
    for path, asset in assets.items():
        text = asset.body.decode()
        # Nothing from elsewhere: the SVG namespace and placeholder text at the reserved example.com are
        # the only addresses a file may name.
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg|[a-z.]*example\.com/)", text), path
        if path.endswith(".js"):
            assert not re.search(_BANNED, text), path
            # Every relative import names a file that is served.
            for target in re.findall(r'from "(\.{1,2}/[^"]+)"', text):
                base = path.rsplit("/", 1)[0]
                parts = f"{base}/{target}".split("/")
                resolved: list[str] = []
                for part in parts:
                    if part == "..":
                        resolved.pop()
                    elif part != ".":
                        resolved.append(part)
                assert "/".join(resolved) in assets, (path, target)
