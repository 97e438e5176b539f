"""The dashboard through `dragonfly serve`'s public port: a buyer's whole first visit in headless Chromium
(Debian's `chromium`, driven by Playwright with the system browser: no browser download), and the
browser session's security over plain HTTP (CSRF, tenants, headers, logout).

One market (SQLite, a demo seller, `serve`) is shared by every test of the module. Screenshots of each
main page are written to `var/screenshots/dashboard/` (git-ignored); the path is printed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import requests
from support.dashboard import (
    PASSWORD,
    SCREENSHOTS,
    Site,
    browser_session,
    chromium,
    csrf,
    mail_to,
    nav,
    running_site,
    shot,
    signed_up,
)
from support.market import SECRET

from dragonfly.api.dashboard import load_assets

if TYPE_CHECKING:
    from playwright.sync_api import Request

_RAW_KEY = re.compile(r"sk-df-[A-Za-z0-9_-]{20,}")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")


@pytest.fixture(scope="module")
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """`dragonfly serve` with one active listing on a demo seller, for the whole module."""
    with running_site(request, tmp_path_factory.mktemp("dashboard")) as running:
        yield running


def test_a_buyer_signs_up_verifies_and_trades_in_the_browser(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    address = "ada@dashboard.test"
    inference: list[dict[str, Any]] = []

    def on_request(req: Request) -> None:
        if "/v1/" in req.url:
            inference.append({"url": req.url, "headers": req.all_headers(), "body": req.post_data})

    with chromium(site) as browser:
        page, context = browser.page, browser.context
        page.on("request", on_request)

        # Not logged in: the login page; from there, sign up.
        page.goto(f"{site.origin}/")
        page.wait_for_selector("form[data-form=login]")
        shot(page, "01-login")
        page.click("main >> text=Sign up")
        page.fill("form[data-form=signup] input[name=email]", address)
        page.fill("form[data-form=signup] input[name=password]", PASSWORD)
        page.click("form[data-form=signup] button[type=submit]")
        page.wait_for_selector("text=Check your mail")
        shot(page, "02-signup")

        # The mailed link: the page says verified and offers to log in.
        (link,) = re.findall(r"https?://\S+/verify#token=\S+", mail_to(site, address))
        assert link.startswith(f"{site.origin}/verify#token=")
        page.goto(link)
        page.click("#confirm")
        page.wait_for_selector("#login:visible")
        assert "verified" in page.inner_text("#status")
        shot(page, "03-verified")
        page.click("#login")
        page.wait_for_selector("form[data-form=login]")

        # A wrong password is said in words; then the right one.
        page.fill("form[data-form=login] input[name=email]", address)
        page.fill("form[data-form=login] input[name=password]", "not the password")
        page.click("form[data-form=login] button[type=submit]")
        assert "password" in page.inner_text("form[data-form=login] .error").lower()
        page.fill("form[data-form=login] input[name=password]", PASSWORD)
        page.click("form[data-form=login] button[type=submit]")
        page.wait_for_selector("[data-testid=balance]")
        assert page.inner_text("[data-testid=balance]") == "$0.10"
        assert "Trial credit of $0.10" in page.inner_text("[data-testid=trial]")
        shot(page, "04-overview")
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["df_session"]["httpOnly"] and cookies["df_session"]["sameSite"] == "Strict"
        assert not cookies["df_csrf"]["httpOnly"] and cookies["df_csrf"]["sameSite"] == "Strict"
        assert "df_session" not in page.evaluate("document.cookie")  # no script can read it

        # A key: shown once, copied to the clipboard, kept in memory only.
        nav(page, "Keys")
        page.fill("form[data-form=create-key] input[name=name]", "laptop")
        page.fill("form[data-form=create-key] input[name=budget]", "5")
        page.click("form[data-form=create-key] button[type=submit]")
        raw = page.inner_text("[data-testid=raw-key]")
        assert _RAW_KEY.fullmatch(raw)
        page.click("[data-testid=copy-key]")
        assert page.evaluate("navigator.clipboard.readText()") == raw
        assert page.inner_text("[data-testid=copy-key]") == "Copied"
        row = page.inner_text("table.keys tbody tr[data-key-id]")
        assert "laptop" in row and "$5.00" in row and raw[:10] in row and raw not in row
        shot(page, "05-keys")

        # The catalog and snippets for that key.
        nav(page, "Models")
        page.wait_for_selector('tr[data-model="demo/echo-1"]')
        snippet = page.inner_text("pre.code")
        assert f'base_url="{site.origin}/v1"' in snippet and 'model="demo/echo-1"' in snippet
        assert raw not in snippet  # the key comes from the environment
        shot(page, "06-models")

        # The playground streams through the buyer's key and shows the receipt.
        nav(page, "Playground")
        page.wait_for_selector('select[name=model] option[value="demo/echo-1"]', state="attached")
        page.fill("textarea[name=message]", "Hello from the dashboard")
        page.click("form[data-form=chat] button[type=submit]")
        page.wait_for_selector("[data-testid=receipt]")
        assert page.inner_text(".msg.assistant .text") == "Echo: Hello from the dashboard"
        assert page.inner_text('[data-testid=receipt] [data-field="status"]') == "completed"
        assert page.inner_text('[data-testid=receipt] [data-field="model"]') == "demo/echo-1"
        request_id = page.inner_text('[data-testid=receipt] [data-field="id"]')
        shot(page, "07-playground")
        (chat,) = [r for r in inference if r["url"].endswith("/v1/chat/completions")]
        assert chat["url"] == f"{site.origin}/v1/chat/completions"  # same origin, no CORS
        assert chat["headers"]["authorization"] == f"Bearer {raw}"
        assert "cookie" not in chat["headers"]  # inference carries the key, not the session
        assert '"stream":true' in chat["body"]
        receipts = [r for r in inference if "/v1/generation?id=" in r["url"]]
        assert receipts and receipts[-1]["url"].endswith(f"id={request_id}")

        # The usage chart shows the trade.
        nav(page, "Usage")
        bar = page.wait_for_selector('svg.chart rect.bar[data-series="demo/echo-1"][data-date]')
        assert bar is not None and bar.get_attribute("data-value") == "1"
        by_key = page.inner_text("[data-testid=usage-by-key]")
        assert "laptop" in by_key
        shot(page, "08-usage")

        nav(page, "Billing")
        page.wait_for_selector("text=Trial credit")
        assert page.locator("td >> text=Request").count() >= 1
        shot(page, "09-billing")

        # Edit, rotate and revoke; a key the server refuses is said in words.
        nav(page, "Keys")
        row_of = 'table.keys tbody tr[data-key-id]:not(.revoked) td[data-label="Name"]'
        page.click("table.keys >> text=Edit")
        page.fill(".edit-row input[name=budget]", "7")
        page.click(".edit-row >> text=Save")
        page.wait_for_selector("table.keys >> text=$0.00 of $7.00")
        page.click("table.keys >> text=Rotate")
        page.click("table.keys >> text=Confirm rotate")
        page.wait_for_selector("text=Key rotated")
        rotated = page.inner_text("[data-testid=raw-key]")
        assert _RAW_KEY.fullmatch(rotated) and rotated != raw
        assert page.inner_text(row_of).startswith("laptop")  # same name, budget and group
        assert "$7.00" in page.inner_text("table.keys tbody tr[data-key-id]:not(.revoked)")
        page.click("table.keys >> text=Revoke")
        page.click("table.keys >> text=Confirm revoke")
        page.wait_for_selector("text=Every key is revoked.")
        nav(page, "Playground")
        page.fill(".paste-key input[name=paste]", raw)  # the first key, revoked by the rotation
        page.click(".paste-key button[type=submit]")
        assert "Invalid API key" in page.inner_text("form[data-form=chat] .error")

        # A phone.
        page.set_viewport_size({"width": 390, "height": 844})
        nav(page, "Keys")
        page.check("input[name=show_revoked]")
        page.wait_for_selector("table.keys tr.revoked")
        shot(page, "10-keys-phone")
        nav(page, "Usage")
        page.wait_for_selector("svg.chart rect.bar")
        shot(page, "11-usage-phone")

        # Nothing secret anywhere a page could leave it.
        stored = page.evaluate("JSON.stringify([{...localStorage}, {...sessionStorage}, location.href])")
        assert raw not in stored and not _JWT.search(stored) and "sk-df-" not in stored

        # Log out: the cookies are gone, and so is the key in memory.
        page.click("[data-testid=logout]")
        page.wait_for_selector("form[data-form=login]")
        assert {c["name"] for c in context.cookies()} & {"df_session", "df_csrf"} == set()
        page.goto(f"{site.origin}/#/keys")
        page.wait_for_selector("form[data-form=login]")
    with capsys.disabled():
        print(f"\ndashboard screenshots: {SCREENSHOTS}")


# -- the session's security over HTTP -------------------------------------------------------------------


def test_cookie_calls_that_change_state_need_the_sessions_csrf_token(site: Site) -> None:
    http = browser_session(site, "csrf@dashboard.test")
    other = browser_session(site, "other@dashboard.test")
    keys = f"{site.origin}/api/keys"

    assert http.get(keys, timeout=30).status_code == 200  # reads need no token
    for headers in ({}, {"x-csrf-token": "0" * 64}, csrf(other)):
        refused = http.post(keys, json={"name": "x"}, headers=headers, timeout=30)
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["code"] == "permission_denied" and error["type"] == "permission_error"
        assert "x-csrf-token" in error["message"]
    made = http.post(keys, json={"name": "x"}, headers=csrf(http), timeout=30)
    assert made.status_code == 201, made.text
    key_id = made.json()["id"]

    one = f"{keys}/{key_id}"
    assert http.patch(one, json={"name": "y"}, timeout=30).status_code == 403
    assert http.patch(one, json={"name": "y"}, headers=csrf(http), timeout=30).json()["name"] == "y"
    assert http.delete(one, timeout=30).status_code == 403
    assert http.delete(one, headers=csrf(http), timeout=30).status_code == 204
    # Management keys need a session: the cookie session is one.
    mgmt = http.post(
        f"{site.origin}/api/management-keys",
        json={"name": "ci", "mgmt_scope": "buyer"},
        headers=csrf(http),
        timeout=30,
    )
    assert mgmt.status_code == 201, mgmt.text

    # Bearer credentials are as they were: no CSRF token, and the JSON login answer unchanged.
    login = requests.post(
        f"{site.origin}/api/auth/login",
        json={"email": "csrf@dashboard.test", "password": PASSWORD},
        timeout=30,
    )
    assert login.status_code == 200 and set(login.json()) == {"access_token", "token_type", "expires_in"}
    assert "set-cookie" not in login.headers
    bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert requests.post(keys, json={"name": "z"}, headers=bearer, timeout=30).status_code == 201
    mk = {"Authorization": f"Bearer {mgmt.json()['key']}"}
    assert requests.post(keys, json={"name": "w"}, headers=mk, timeout=30).status_code == 201


def test_another_tenants_key_is_not_found_through_the_cookie(site: Site) -> None:
    alice = browser_session(site, "alice@dashboard.test")
    bob = browser_session(site, "bob@dashboard.test")
    key = alice.post(f"{site.origin}/api/keys", json={"name": "alice"}, headers=csrf(alice), timeout=30)
    assert key.status_code == 201
    one = f"{site.origin}/api/keys/{key.json()['id']}"
    for resp in (
        bob.patch(one, json={"monthly_budget_cents": 0}, headers=csrf(bob), timeout=30),
        bob.delete(one, headers=csrf(bob), timeout=30),
    ):
        assert resp.status_code == 404, resp.text
        assert resp.json()["error"]["code"] == "not_found"
    (mine,) = alice.get(f"{site.origin}/api/keys", timeout=30).json()["data"]
    assert mine["revoked"] is False and mine["monthly_budget_cents"] is None
    assert bob.get(f"{site.origin}/api/keys", timeout=30).json()["data"] == []


def test_the_dashboard_is_served_with_its_policy_and_holds_no_secret(site: Site) -> None:
    assets = load_assets()
    for path, asset in assets.items():
        resp = requests.get(f"{site.origin}{path}", timeout=30)
        assert resp.status_code == 200, path
        assert resp.content == asset.body
        assert resp.headers["content-type"] == asset.content_type
        csp = resp.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["referrer-policy"] == "no-referrer"
        text = resp.text
        assert not _RAW_KEY.search(text) and not _JWT.search(text), path
        assert SECRET not in text and site.seller_key not in text, path
        again = requests.get(
            f"{site.origin}{path}", headers={"if-none-match": resp.headers["etag"]}, timeout=30
        )
        assert again.status_code == 304 and not again.content
    assert requests.get(f"{site.origin}/dashboard/../api/keys", timeout=30).status_code in (401, 404)
    assert requests.get(f"{site.origin}/dashboard/nothing.js", timeout=30).status_code == 404


def test_logout_revokes_the_session_and_clears_the_cookies(site: Site) -> None:
    http = browser_session(site, "leaving@dashboard.test")
    second = requests.Session()
    assert (
        second.post(
            f"{site.origin}/api/auth/session",
            json={"email": "leaving@dashboard.test", "password": PASSWORD},
            timeout=30,
        ).status_code
        == 200
    )
    me, session = f"{site.origin}/api/auth/me", f"{site.origin}/api/auth/session"
    token = http.cookies["df_session"]

    refused = http.delete(session, timeout=30)  # a forged logout: refused, the session lives on
    assert refused.status_code == 403 and http.get(me, timeout=30).status_code == 200

    out = http.delete(session, headers=csrf(http), timeout=30)
    assert out.status_code == 204
    cleared = out.raw.headers.getlist("set-cookie")
    assert len(cleared) == 2 and all("Max-Age=0" in c for c in cleared)
    assert "df_session" not in http.cookies and "df_csrf" not in http.cookies
    # The old token is refused however it is presented, on this and every control plane (the database).
    assert requests.get(me, cookies={"df_session": token}, timeout=30).status_code == 401
    assert requests.get(me, headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code == 401
    # Only that session ended.
    assert second.get(me, timeout=30).status_code == 200
    # Logging out without a live session only clears the cookies.
    assert requests.delete(session, timeout=30).status_code == 204


def test_a_session_opens_only_from_the_dashboards_own_site(site: Site) -> None:
    signed_up(site, "origin@dashboard.test")
    url = f"{site.origin}/api/auth/session"
    body = {"email": "origin@dashboard.test", "password": PASSWORD}
    cross = requests.post(url, json=body, headers={"sec-fetch-site": "cross-site"}, timeout=30)
    assert cross.status_code == 403 and "set-cookie" not in cross.headers
    form = requests.post(
        url, data='{"email": "x@y.z", "password": "p"}', headers={"content-type": "text/plain"}
    )
    assert form.status_code == 400 and "set-cookie" not in form.headers
    wrong = requests.post(url, json={**body, "password": "wrong password"}, timeout=30)
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    ok = requests.post(url, json=body, headers={"sec-fetch-site": "same-origin"}, timeout=30)
    assert ok.status_code == 200
    session, csrf = ok.raw.headers.getlist("set-cookie")
    assert session.startswith("df_session=") and "; HttpOnly" in session and "SameSite=Strict" in session
    assert csrf.startswith("df_csrf=") and "HttpOnly" not in csrf and "SameSite=Strict" in csrf
    assert (
        "Secure" not in session
    )  # the public URL is http here (https: tests/unit/test_dashboard_session.py)
    assert ok.json()["account"]["email"] == "origin@dashboard.test" and "access_token" not in ok.json()
