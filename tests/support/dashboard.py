"""What the dashboard's browser tests share: one `dragonfly serve` market with a demo seller, headless
Chromium (Debian's `chromium` driven by Playwright with the system browser: no browser download), and
the small steps every page test takes (sign up, read the mailed link, log in, screenshot, navigate).

Screenshots go to `var/screenshots/dashboard/` (git-ignored)."""

from __future__ import annotations

import asyncio
import email
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

from dragonfly.config import Settings
from dragonfly.demo.seller import DemoSeller
from support.market import market_settings, seed_listing, start_serve
from support.processes import ProcessGroup

if TYPE_CHECKING:  # imported by the browser tests themselves: the HTTP tests run without Playwright
    from playwright.sync_api import BrowserContext, Page

PASSWORD = "correct horse battery"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots" / "dashboard"


@dataclass(frozen=True)
class Site:
    origin: str
    mail_dir: Path
    seller_key: str
    seller_url: str
    settings: Settings


@contextmanager
def running_site(
    request: pytest.FixtureRequest, tmp: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Site]:
    """`dragonfly serve` on SQLite with one active listing on a demo seller (`extra_env`: more settings for
    `serve`); process logs dumped when a test under it failed."""
    processes = ProcessGroup(tmp / "proc-logs")
    seller = DemoSeller().run_in_thread()
    failed_before = request.session.testsfailed
    try:
        settings = market_settings(f"sqlite:///{tmp / 'df.db'}", tmp / "data")
        asyncio.run(seed_listing(settings, seller.seller))
        origin = start_serve(processes, settings, extra_env=extra_env)
        yield Site(
            origin=origin,
            mail_dir=Path(settings.mail_dir),
            seller_key=seller.seller.api_key,
            seller_url=seller.seller.base_url,
            settings=settings,
        )
    finally:
        processes.stop_all()
        seller.stop()
        if request.session.testsfailed > failed_before:
            processes.dump()


def mail_to(site: Site, address: str) -> str:
    for path in sorted(site.mail_dir.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes())
        if msg["To"] == address:
            body = msg.get_payload(decode=True)
            assert isinstance(body, bytes)
            return body.decode()
    raise AssertionError(f"no mail to {address}")


def signed_up(site: Site, address: str) -> None:
    resp = requests.post(
        f"{site.origin}/api/auth/signup", json={"email": address, "password": PASSWORD}, timeout=30
    )
    assert resp.status_code == 201, resp.text


def browser_session(site: Site, address: str) -> requests.Session:
    """Signed up and logged in the way the dashboard logs in: the cookies in the session's jar."""
    signed_up(site, address)
    return cookie_session(site, address)


def cookie_session(site: Site, address: str, password: str = PASSWORD) -> requests.Session:
    http = requests.Session()
    resp = http.post(
        f"{site.origin}/api/auth/session", json={"email": address, "password": password}, timeout=30
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["csrf_token"] == http.cookies["df_csrf"]
    return http


def csrf(http: requests.Session) -> dict[str, str]:
    return {"x-csrf-token": http.cookies["df_csrf"]}


@dataclass
class Browser:
    context: BrowserContext
    page: Page
    problems: list[str] = field(default_factory=list)


@contextmanager
def chromium(site: Site, *, width: int = 1280, height: int = 860) -> Iterator[Browser]:
    """One headless Chromium page on `site`; uncaught page errors and console errors (CSP violations
    among them) are collected in `problems` and fail the test when the block ends."""
    from playwright.sync_api import sync_playwright  # the `test` extra

    executable = shutil.which("chromium")
    assert executable, (
        "the system browser is missing: apt-get install chromium (scripts/ensure-system-deps.sh)"
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.origin)
            page = context.new_page()
            page.set_default_timeout(15_000)
            out = Browser(context=context, page=page)
            page.on("pageerror", lambda exc: out.problems.append(f"page error: {exc}"))
            page.on(
                "console",
                lambda msg: (
                    out.problems.append(f"console: {msg.text}")
                    if msg.type == "error" and not msg.text.startswith("Failed to load resource")
                    else None
                ),
            )
            yield out
        finally:
            browser.close()
    assert not out.problems, out.problems


def log_in(page: Page, site: Site, address: str, password: str = PASSWORD) -> None:
    """Through the login form; waits for the overview."""
    page.goto(f"{site.origin}/#/login")
    page.wait_for_selector("form[data-form=login]")
    page.fill("form[data-form=login] input[name=email]", address)
    page.fill("form[data-form=login] input[name=password]", password)
    page.click("form[data-form=login] button[type=submit]")
    page.wait_for_selector("[data-testid=balance]")


def shot(page: Page, name: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")  # the sticky header at the top of a full-page picture
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def nav(page: Page, section: str, view: str | None = None) -> None:
    """Click a section in the navigation; `view` is its route name when it is not the label lowercased."""
    page.click(f"#nav >> text={section}")
    page.wait_for_selector(f'.view[data-view="{view or section.lower()}"]')
