"""The seller's pages of the dashboard in headless Chromium: a new account adds a pool key on the demo
seller (the `custom` provider: private upstreams are allowed in the test settings), lists a model on it,
watches the admission probe make it active, reads its contract, checks and probe runs, reprices it past
the 50 % price-review rule and confirms, pauses and resumes; refusals are said in words; another
tenant's listing is not found, in the page and through the API.

Screenshots: `var/screenshots/dashboard/3x-*.png` (git-ignored)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import requests
from support.dashboard import (
    Site,
    browser_session,
    chromium,
    csrf,
    log_in,
    nav,
    running_site,
    shot,
    signed_up,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

MODEL = "demo/echo-1"  # the demo seller serves `echo-1`; the seeded listing sells the same model
PROBE_MS = 15_000  # the admission probe against the loopback demo seller takes milliseconds


@pytest.fixture(scope="module")
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running_site(request, tmp_path_factory.mktemp("dashboard-seller")) as running:
        yield running


def _other_sellers_listing(site: Site) -> tuple[requests.Session, str]:
    """Another account with a pool key and a listing, made through the API with its cookie session."""
    other = browser_session(site, "other-seller@dashboard.test")
    pool = other.post(
        f"{site.origin}/v1/pool/keys",
        json={"provider": "custom", "base_url": site.seller_url, "api_key": site.seller_key},
        headers=csrf(other),
        timeout=30,
    )
    assert pool.status_code == 201, pool.text
    listing = other.post(
        f"{site.origin}/v1/market/listings",
        json={
            "pool_key_id": pool.json()["id"],
            "model": MODEL,
            "input_price_per_mtok": "0.90",
            "output_price_per_mtok": "1.80",
        },
        headers=csrf(other),
        timeout=30,
    )
    assert listing.status_code == 201, listing.text
    return other, str(listing.json()["id"])


def _row(page: Page, status: str | None = None) -> str:
    selector = "table.listings tr[data-listing-id]"
    if status:
        selector += f'[data-status="{status}"]'
    page.wait_for_selector(selector, timeout=PROBE_MS)
    return selector


def _click(page: Page, action: str) -> None:
    page.click(f'table.listings tr[data-listing-id] [data-action="{action}"]')


def test_a_seller_adds_a_pool_key_and_sells_a_model_in_the_browser(site: Site) -> None:
    from playwright.sync_api import expect  # the `test` extra, as in support.dashboard

    address = "sam@seller.test"
    signed_up(site, address)  # login needs no verified address: verification only grants trial credit
    other, foreign_id = _other_sellers_listing(site)

    with chromium(site) as browser:
        page = browser.page
        log_in(page, site, address)

        # Pool keys: the catalogue's `custom` provider asks for a base URL; a refusal is said in words.
        nav(page, "Pool keys", "pool")
        form = "form[data-form=add-pool-key]"
        page.wait_for_selector(form)
        page.select_option(f"{form} select[name=provider]", "custom")
        assert "Required" in page.inner_text(form)
        assert page.get_attribute(f"{form} input[name=api_key]", "type") == "password"
        page.fill(f"{form} input[name=base_url]", "http://user:pw@127.0.0.1:9/v1")
        page.fill(f"{form} input[name=api_key]", site.seller_key)
        page.click(f"{form} button[type=submit]")
        refusal = page.inner_text(f"{form} .error")
        assert "must not carry credentials" in refusal, refusal
        assert page.input_value(f"{form} input[name=api_key]") == ""  # the raw key leaves the page

        page.select_option(f"{form} select[name=provider]", "custom")
        page.fill(f"{form} input[name=base_url]", site.seller_url)
        page.fill(f"{form} input[name=api_key]", site.seller_key)
        page.fill(f"{form} input[name=name]", "demo upstream")
        page.click(f"{form} button[type=submit]")
        page.wait_for_selector("[data-testid=pool-key-added]")
        row = page.inner_text("table.pool-keys tr[data-pool-key-id]")
        assert "demo upstream" in row and site.seller_url.rstrip("/") in row and "active" in row
        assert site.seller_key[-4:] in row
        assert site.seller_key not in page.content()  # only the hint, ever
        shot(page, "30-pool-keys")

        # A listing: a negative price is refused with the server's words; then it goes active.
        nav(page, "Listings")
        create = "form[data-form=create-listing]"
        page.wait_for_selector(create)
        assert "demo upstream" in page.inner_text(f"{create} select[name=pool_key_id]")
        page.fill(f"{create} input[name=model]", MODEL)
        assert "echo-1" in page.inner_text(create)  # the upstream name it will be sent as
        page.fill(f"{create} input[name=input_price_per_mtok]", "-1")
        page.fill(f"{create} input[name=output_price_per_mtok]", "2.00")
        page.fill(f"{create} input[name=rpm_cap]", "60")
        page.fill(f"{create} input[name=concurrency_cap]", "4")
        page.fill(f"{create} input[name=context_length]", "8192")
        page.click(f"{create} button[type=submit]")
        refusal = page.inner_text(f"{create} .error")
        assert "input_price_per_mtok" in refusal and "non-negative" in refusal, refusal
        page.fill(f"{create} input[name=input_price_per_mtok]", "1.00")
        page.click(f"{create} button[type=submit]")
        page.wait_for_selector("[data-testid=listing-created]")
        active = _row(page, "active")  # the page follows the admission probe by itself
        row = page.inner_text(active)
        assert MODEL in row and "$1.00" in row and "$2.00" in row and "60 rpm" in row and "4 at once" in row
        assert page.locator(f'{active} .badge[data-status="active"]').count() == 2  # listing, contract
        shot(page, "31-listings")

        # Repricing by more than 50 %: warned before saving, then price review with the rule in words.
        _click(page, "edit")
        edit = "form[data-form=edit-listing]"
        assert "more than 50 %" in page.inner_text(f"{edit} [data-testid=review-rule]")
        assert page.is_hidden(f"{edit} [data-testid=review-warning]")
        page.fill(f"{edit} input[name=input_price_per_mtok]", "1.40")  # +40 %: no review
        assert page.is_hidden(f"{edit} [data-testid=review-warning]")
        page.fill(f"{edit} input[name=input_price_per_mtok]", "3")  # +200 %
        assert "price review" in page.inner_text(f"{edit} [data-testid=review-warning]")
        page.click(f"{edit} button[type=submit]")
        review = _row(page, "price_review")
        note = page.inner_text(f"{review} [data-testid=review-note]")
        assert "more than 50 %" in note and "$1.00 \u2192 $3.00" in note, note
        page.click(f'{review} [data-action="confirm-price"]')
        active = _row(page, "active")
        assert "$3.00" in page.inner_text(active)

        # Pause and resume.
        _click(page, "pause")
        _row(page, "paused")
        _click(page, "resume")
        _row(page, "active")

        # The listing's page: its contract active with its checks, a passed probe run, the price history.
        _click(page, "details")
        page.wait_for_selector('[data-testid=listing][data-status="active"]')
        page.wait_for_selector('.contract[data-status="active"]')
        checks = page.inner_text("[data-testid=contract-checks]")
        assert "probe:chat_completion" in checks and "passed" in checks
        page.wait_for_selector("[data-testid=probe-runs] tr[data-passed=true]")
        assert "7 of 7 passed" in page.inner_text("[data-testid=probe-runs]")
        history = page.inner_text("[data-testid=price-history]")
        assert "awaiting confirmation" in history and "created" in history
        page.click('[data-testid=listing] [data-action="probe"]')
        page.wait_for_selector("#notice >> text=Probe passed")
        expect(page.locator("[data-testid=probe-runs] tr[data-passed=true]")).to_have_count(2)
        assert site.seller_key not in page.content()
        shot(page, "32-listing-detail")
        mine = page.url.rsplit("/", 1)[1]

        # Another tenant's listing: not found in the page, 404 through the API, both ways.
        page.goto(f"{site.origin}/#/listings/{foreign_id}")
        page.wait_for_selector("[data-testid=not-found]")
        assert "another account" in page.inner_text("[data-testid=not-found]")
        theirs = page.request.get(f"{site.origin}/v1/market/listings/{foreign_id}")
        assert theirs.status == 404 and theirs.json()["error"]["code"] == "not_found"
        assert other.get(f"{site.origin}/v1/market/listings/{mine}", timeout=30).status_code == 404

        # On a phone: the table becomes one card per listing, nothing wider than the screen.
        page.set_viewport_size({"width": 390, "height": 844})
        nav(page, "Listings")
        _row(page, "active")
        assert page.is_hidden("table.listings thead")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shot(page, "33-listings-phone")
        _click(page, "details")
        page.wait_for_selector("[data-testid=probe-runs]")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        nav(page, "Pool keys", "pool")
        page.wait_for_selector("table.pool-keys tr[data-pool-key-id]")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390

        # Deleting the pool key says, before and after, that its listing is paused.
        delete = "table.pool-keys [data-action=delete-pool-key]"
        page.click(delete)
        assert page.inner_text(delete) == "Confirm: pause 1 listing"
        page.click(delete)
        page.wait_for_selector("#notice >> text=listing is paused")
        page.wait_for_selector("text=No pool keys yet")
        nav(page, "Listings")
        _row(page, "paused")
