"""The operator's pages of the dashboard through `dragonfly serve`'s public port, in headless Chromium: an
account made by `dragonfly admin create-operator` sees the Operator section (another account does not,
in the page or the API), reads the market's health, changes a global routing weight and sees the next
request ranked with it, suspends the demo listing (buyers are refused) and lifts the suspension once its
probe passes, resolves flagged trades, and credits an account after a confirm step.

Screenshots: `50-operator-health`, `51-operator-weights`, `52-operator-activity`, `53-operator-phone`
in `var/screenshots/dashboard/` (git-ignored)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
from support.dashboard import (
    PASSWORD,
    Site,
    chromium,
    cookie_session,
    csrf,
    log_in,
    nav,
    running_site,
    shot,
)
from support.market import MODEL, SECRET, seed_buyer

OPERATOR = "ops@operator.test"
BUYER = "buyer@operator.test"
BUYER_PASSWORD = "buyer-password-1"  # seed_buyer's


@pytest.fixture(scope="module")
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running_site(request, tmp_path_factory.mktemp("dashboard-operator")) as running:
        yield running


def _create_operator(site: Site) -> None:
    """`dragonfly admin create-operator`, as an operator runs it, against the site's database."""
    made = subprocess.run(
        [sys.executable, "-m", "dragonfly.cli", "admin", "create-operator", "--email", OPERATOR],
        env={
            **os.environ,
            "DRAGONFLY_DATABASE_URL": site.settings.database_url,
            "DRAGONFLY_DATA_DIR": site.settings.data_dir,
            "DRAGONFLY_SECRET_KEY": SECRET,
            "DRAGONFLY_OPERATOR_PASSWORD": PASSWORD,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert PASSWORD not in made.stdout + made.stderr


def _chat(site: Site, key: str) -> requests.Response:
    return requests.post(
        f"{site.origin}/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hello operator"}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _chat_ok(site: Site, key: str) -> None:
    """A chat that succeeds; the buyer's new credit reaches admission within the 2 s re-seed."""
    deadline = time.monotonic() + 10
    while True:
        r = _chat(site, key)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert r.status_code == 200, r.text


def _seller(site: Site, **knobs: Any) -> None:
    """Turn a knob of the demo seller behind the listing (its test-only /_config)."""
    r = requests.post(f"{site.seller_url.removesuffix('/v1')}/_config", json=knobs, timeout=10)
    assert r.status_code == 200, r.text


def _balance(http: requests.Session, site: Site) -> Decimal:
    r = http.get(f"{site.origin}/api/billing/balance", timeout=10)
    assert r.status_code == 200, r.text
    return Decimal(r.json()["balance_usd"])


def test_an_operator_runs_the_market_from_the_dashboard(site: Site) -> None:
    from playwright.sync_api import Route, expect

    started = time.monotonic()
    _create_operator(site)
    buyer_id, buyer_key = asyncio.run(seed_buyer(site.settings, credit_cents=500, email=BUYER))
    _chat_ok(site, buyer_key)  # a routing decision and a trade for the health and activity views
    seller = cookie_session(site, "seller@e2e.test", "seller-password-1")
    (listing,) = seller.get(f"{site.origin}/v1/market/listings", timeout=10).json()["data"]
    listing_id = listing["id"]
    ops = cookie_session(site, OPERATOR)
    buyer = cookie_session(site, BUYER, BUYER_PASSWORD)

    # Another account: no Operator section, the route sends it home, and the API refuses it.
    denied = buyer.get(f"{site.origin}/api/admin/routing/weights", timeout=10)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"
    denied = buyer.put(
        f"{site.origin}/api/admin/routing/weights",
        json={"balanced": {"price": 1}},
        headers=csrf(buyer),
        timeout=10,
    )
    assert denied.status_code == 403
    with chromium(site) as browser:
        page = browser.page
        log_in(page, site, BUYER, BUYER_PASSWORD)
        assert "Operator" not in page.inner_text("#nav")
        page.goto(f"{site.origin}/#/operator/weights")
        page.wait_for_selector('.view[data-view="overview"]')
        assert page.url.endswith("#/overview")

    with chromium(site) as browser:
        page = browser.page
        log_in(page, site, OPERATOR)

        # Health: the model, its routable listing, and the listing as the router saw it.
        nav(page, "Operator")
        row = page.locator(f'[data-testid=health-models] tr[data-model="{MODEL}"]')
        expect(row).to_contain_text("100 %")
        seen = page.locator(f'[data-testid=health-listings] tr[data-listing-id="{listing_id}"]')
        expect(seen).to_contain_text("routable")
        expect(page.locator("[data-testid=open-reviews]")).to_have_text("0")
        shot(page, "50-operator-health")

        # Weights: a refusal in the server's words, then a change the API and the next ranking show.
        page.click("a[data-tab=weights]")
        page.click("tr[data-strategy=balanced] [data-action=edit]")
        form = "form[data-form=weights-balanced]"
        for name in ("price", "latency", "throughput", "reliability", "quality"):
            page.fill(f"{form} input[name={name}]", "0")
        page.click(f"{form} button[type=submit]")
        expect(page.locator(f"{form} .error")).to_contain_text("at least one weight must be positive")
        wanted = {"price": 0.5, "latency": 0.1, "throughput": 0.1, "reliability": 0.2, "quality": 0.1}
        for name, value in wanted.items():
            page.fill(f"{form} input[name={name}]", str(value))
        page.click(f"{form} button[type=submit]")
        expect(page.locator("tr[data-strategy=balanced] td[data-weight=price]")).to_contain_text("0.5")
        weights = ops.get(f"{site.origin}/api/admin/routing/weights", timeout=10).json()
        assert weights["balanced"] == wanted
        assert weights["cost_first"]["price"] == 0.7  # the others keep their defaults
        page.click("tr[data-strategy=balanced] [data-action=edit]")
        shot(page, "51-operator-weights")

        # Activity: the next request is ranked with the new weights, and the page says why it won.
        time.sleep(1.1)  # decisions are sampled at most once a second per model and profile
        _chat_ok(site, buyer_key)
        page.click("a[data-tab=activity]")
        newest = page.locator("details.op-decision").first
        deadline = time.monotonic() + 15
        while "price 0.5," not in newest.inner_text():
            assert time.monotonic() < deadline, newest.inner_text()
            time.sleep(0.5)
            page.click("form[data-form=activity-filter] button[type=submit]")
        winner = newest.locator(f'tr[data-listing-id="{listing_id}"] [data-testid=why]')
        expect(winner).to_contain_text("won")
        expect(page.locator(f'[data-testid=activity-groups] tr[data-model="{MODEL}"]')).to_be_visible()
        shot(page, "52-operator-activity")

        # Suspension: with a reason; buyers are refused at once; lifted only when the probe passes.
        page.click("a[data-tab=listings]")
        page.click(f'[data-testid=known-listings] tr[data-listing-id="{listing_id}"] [data-action=manage]')
        panel = page.locator(f'[data-testid=listing-panel][data-listing-id="{listing_id}"]')
        panel.locator("input[name=reason]").fill("abuse report #1234")
        panel.locator("[data-action=suspend]").click()
        panel.locator("[data-action=suspend]").click()  # the confirm step
        outcome = panel.locator("[data-testid=listing-outcome]")
        expect(outcome).to_contain_text("abuse report #1234")
        expect(outcome).to_contain_text("suspended")
        refused = _chat(site, buyer_key)
        assert refused.status_code == 404, refused.text
        assert refused.json()["error"]["code"] == "model_not_found"
        panel.locator("[data-action=suspend]").click()
        panel.locator("[data-action=suspend]").click()
        expect(panel.locator("[data-testid=listing-result] .error")).to_contain_text("already suspended")

        _seller(site, fail_status=500)
        panel.locator("[data-action=unsuspend]").click()
        expect(outcome).to_contain_text("stays suspended", timeout=30_000)
        expect(outcome).to_contain_text("unexpected HTTP 500")
        assert _chat(site, buyer_key).status_code == 404
        _seller(site, fail_status=None)
        panel.locator("[data-action=unsuspend]").click()
        expect(outcome).to_contain_text("back in the market", timeout=30_000)
        _chat_ok(site, buyer_key)

        # Flagged trades: the seller inflates its usage; one review upheld with a note, one dismissed.
        _seller(site, usage_multiplier=20)
        try:
            inflated = [_chat(site, buyer_key) for _ in range(2)]
        finally:
            _seller(site, usage_multiplier=1)
        assert all(r.status_code == 200 for r in inflated)
        page.click("a[data-tab=flagged]")
        trades = page.locator("article.op-trade[data-state=open]")
        expect(trades).to_have_count(2)
        first, second = (trades.nth(i).get_attribute("data-trade-id") for i in range(2))
        card = page.locator(f'article.op-trade[data-trade-id="{first}"]')
        card.locator("input[name=note]").fill("reported 20x the count")
        card.locator("[data-action=uphold]").click()
        card.locator("[data-action=uphold]").click()
        expect(page.locator(f'article[data-trade-id="{first}"] [data-testid=review-state]')).to_contain_text(
            "refunded to the buyer"
        )
        dismissed = page.locator(f'article[data-trade-id="{second}"]')
        dismissed.locator("[data-action=dismiss]").click()
        expect(page.locator(f'article[data-trade-id="{second}"]')).to_have_attribute(
            "data-state", "dismissed"
        )
        still_open = ops.get(f"{site.origin}/api/admin/flagged-trades?state=open", timeout=10).json()
        assert still_open["data"] == []

        # Credits: an unknown account in words; then a credit, posted only after the confirm step.
        page.click("a[data-tab=credits]")
        credit = "form[data-form=credit]"
        page.fill(f"{credit} input[name=account_id]", "01a24000-0000-7000-8000-000000000000")
        page.fill(f"{credit} input[name=amount]", "1")
        page.fill(f"{credit} input[name=note]", "typo")
        page.click(f"{credit} button[type=submit]")
        page.click("[data-action=confirm-credit]")
        expect(page.locator(f"{credit} .error")).to_contain_text("Account not found")
        before = _balance(buyer, site)
        page.fill(f"{credit} input[name=account_id]", buyer_id)
        page.fill(f"{credit} input[name=amount]", "2.50")
        page.fill(f"{credit} input[name=note]", "goodwill")
        page.click(f"{credit} button[type=submit]")
        expect(page.locator("[data-testid=credit-confirm]")).to_contain_text("$2.50")
        assert _balance(buyer, site) == before  # nothing posted before the confirm
        page.click("[data-action=confirm-credit]")
        expect(page.locator("[data-testid=credit-done]")).to_contain_text("Credited $2.50")
        assert _balance(buyer, site) == before + Decimal("2.50")
        expect(page.locator(f'[data-testid=credits-made] tr[data-account-id="{buyer_id}"]')).to_contain_text(
            "goodwill"
        )

        # A credit whose answer is lost (the server made it; the browser saw the connection drop): the
        # operator credits the same again, and the page's Idempotency-Key makes it a replay, not a second.
        lost: list[str] = []

        def lose_answer(route: Route) -> None:
            if lost:
                route.continue_()
                return
            route.fetch()  # the request reaches the control plane, which credits...
            lost.append(route.request.headers["idempotency-key"])
            route.abort("connectionreset")  # ...and its answer never arrives

        page.route("**/api/admin/credits", lose_answer)
        before = _balance(buyer, site)
        for attempt in ("answer lost", "again"):
            page.fill(f"{credit} input[name=account_id]", buyer_id)
            page.fill(f"{credit} input[name=amount]", "1.25")
            page.fill(f"{credit} input[name=note]", "refund of ticket 77")
            page.click(f"{credit} button[type=submit]")
            page.click("[data-action=confirm-credit]")
            if attempt == "answer lost":
                expect(page.locator(f"{credit} .error")).to_contain_text("could not be reached")
        expect(page.locator("[data-testid=credit-done]")).to_contain_text("Credited $1.25")
        page.unroute("**/api/admin/credits")
        assert _balance(buyer, site) == before + Decimal("1.25")  # once, not twice
        assert len(lost) == 1 and lost[0].startswith("dashboard-")
        expect(page.locator("[data-testid=credits-made] tr", has_text="ticket 77")).to_have_count(1)

        # A phone: every tab fits the width (no sideways scrolling of the page).
        page.set_viewport_size({"width": 390, "height": 844})
        tabs = ["health", "activity", "weights", f"listings/{listing_id}", "flagged", "credits", "payouts"]
        open_list = "**/api/admin/flagged-trades?state=open*"
        held: list[Route] = []

        def hold(route: Route) -> None:
            held.append(route)

        for tab in tabs:
            if tab == "flagged":  # the open list's answer is held back until the filter has changed
                page.route(open_list, hold)
            page.goto(f"{site.origin}/#/operator/{tab}")
            page.wait_for_selector(f'.op-page[data-tab="{tab.split("/")[0]}"]')
            if tab == "flagged":  # the resolved ones, with their notes
                page.select_option("select[name=state]", "")
                expect(page.locator("article.op-trade")).to_have_count(2)
                assert held, "the open list was not asked for"
                for route in held:  # answers now, late: it must not land on top of the newer list
                    route.continue_()
                page.unroute(open_list)
                page.wait_for_load_state("networkidle")
                expect(page.locator("article.op-trade")).to_have_count(2)
                expect(page.locator("[data-testid=no-trades]")).to_have_count(0)
            page.wait_for_load_state("networkidle")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{tab} is {width}px wide on a 390px phone"
        page.goto(f"{site.origin}/#/operator/health")
        expect(page.locator(f'[data-testid=health-models] tr[data-model="{MODEL}"]')).to_be_visible()
        page.wait_for_load_state("networkidle")
        shot(page, "53-operator-phone")
    print(f"operator dashboard test: {time.monotonic() - started:.1f}s")
