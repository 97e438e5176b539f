"""The seller's Earnings and Trade reviews pages in headless Chromium, on a market with real trades.

One market for the module (`dragonfly serve` on SQLite, the demo seller's listing of `demo/echo-1` owned
by `seller@e2e.test`): a seeded buyer makes honest chats through `/v1/chat/completions`, then one while the
demo seller reports three times the tokens it served (its `usage_multiplier` knob, set over its
`/_config` hook), which the usage audit flags. The lock window is the default hour, so every share is
still locked (or held by the review). A second market, with a 2 s lock window and a release worker
every 0.3 s, shows releases and a payout asked for through the page. The pages are checked against the
REST answers the seller gets for the same questions. Screenshots: 40-earnings, 41-trade-reviews,
42-earnings-phone, 43-earnings-released."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests
from support.dashboard import (
    Site,
    chromium,
    cookie_session,
    log_in,
    nav,
    running_site,
    shot,
    signed_up,
)
from support.market import MODEL, seed_buyer

SELLER = ("seller@e2e.test", "seller-password-1")  # seed_listing's seller account
TEXT = (
    "the market is open and every seller who reports more tokens than it served is paid only for what "
    "the gateway counted plus a small slack so the buyer pays what the honest seller would have asked"
)


@dataclass(frozen=True)
class Trades:
    site: Site
    seller: requests.Session  # the seller's dashboard session (cookies), for the REST cross-checks
    honest: list[dict[str, Any]]  # receipts
    flagged: dict[str, Any]


def chat(site: Site, key: str) -> dict[str, Any]:
    """One trade; its receipt (`GET /v1/generation`)."""
    auth = {"Authorization": f"Bearer {key}"}
    body = {"model": MODEL, "messages": [{"role": "user", "content": TEXT}]}
    r = requests.post(f"{site.origin}/v1/chat/completions", json=body, headers=auth, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Echo: " + TEXT
    receipt = requests.get(
        f"{site.origin}/v1/generation", params={"id": r.headers["x-request-id"]}, headers=auth, timeout=10
    )
    assert receipt.status_code == 200, receipt.text
    return dict(receipt.json()["data"])


def knobs(site: Site, **changes: Any) -> None:
    """The demo seller's behaviour, changed while it runs (its test hook beside `/v1`)."""
    origin = site.seller_url.removesuffix("/v1")
    r = requests.post(f"{origin}/_config", data=json.dumps(changes), timeout=10)
    assert r.status_code == 200, r.text


def usd_text(amount: str) -> str:
    """The page's `usd()`: whole cents with 2 decimals, a sub-cent amount below $1 with 6."""
    value = Decimal(amount)
    digits = 2 if value == value.quantize(Decimal("0.01")) or abs(value) >= 1 else 6
    return f"${value:.{digits}f}"


@pytest.fixture(scope="module")
def trades(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trades]:
    with running_site(request, tmp_path_factory.mktemp("earnings")) as site:
        _, key = asyncio.run(seed_buyer(site.settings, credit_cents=500, email="buyer@earnings.test"))
        honest = [chat(site, key) for _ in range(3)]
        assert all(t["usage_audit"] == "ok" for t in honest), honest
        knobs(site, usage_multiplier=3)  # after admission: over-reports every count
        try:
            flagged = chat(site, key)
        finally:
            knobs(site, usage_multiplier=1)
        assert flagged["usage_audit"] == "flagged", flagged
        yield Trades(site, cookie_session(site, *SELLER), honest, flagged)


@pytest.fixture(scope="module")
def released(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trades]:
    """Like `running_site`, with a 2 s lock window: two honest trades, released to available."""
    env = {"DRAGONFLY_EARNINGS_LOCK_S": "2", "DRAGONFLY_SETTLEMENT_PERIOD_S": "0.3"}
    with running_site(request, tmp_path_factory.mktemp("released"), extra_env=env) as site:
        _, key = asyncio.run(seed_buyer(site.settings, credit_cents=500))
        honest = [chat(site, key) for _ in range(2)]
        out = Trades(site, cookie_session(site, *SELLER), honest, {})
        deadline = time.monotonic() + 20
        while Decimal(rest(out, "v1/market/earnings")["locked_usd"]) > 0:
            assert time.monotonic() < deadline, "the locked earnings were never released"
            time.sleep(0.2)
        yield out


def rest(trades: Trades, path: str, **params: str) -> Any:
    r = trades.seller.get(f"{trades.site.origin}/{path}", params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_seller_sees_locked_earnings_todays_bar_and_the_listing_model(trades: Trades) -> None:
    site = trades.site
    money = rest(trades, "v1/market/earnings")
    assert Decimal(money["locked_usd"]) > 0 and Decimal(money["held_usd"]) > 0, money
    assert Decimal(money["available_usd"]) == 0  # the default lock window is an hour
    summary = rest(trades, "v1/market/earnings/summary")
    assert [(x["model"], x["requests"]) for x in summary["data"]] == [(MODEL, 4)]
    today = datetime.now(UTC).date().isoformat()

    with chromium(site) as browser:
        page = browser.page
        log_in(page, site, *SELLER)
        nav(page, "Earnings")

        # The cards are the REST answer, shown as money.
        locked = page.locator("[data-testid=earnings-locked] .big")
        locked.wait_for()
        assert locked.get_attribute("data-usd") == money["locked_usd"]
        assert locked.inner_text() == usd_text(money["locked_usd"])
        for name in ("available", "reserve", "held", "lifetime"):
            amount = page.locator(f"[data-testid=earnings-{name}] .big")
            assert amount.get_attribute("data-usd") == money[f"{name}_usd"], name
        assert "lock window" in page.inner_text("[data-testid=earnings-locked]")
        assert page.locator("[data-testid=earnings-empty]").count() == 0

        # Today's bar, per day and per hour, carries today's earnings (every trade was today).
        earned = sum(Decimal(x["payout_usd"]) for x in summary["data"])
        bar = page.locator(f'[data-testid=earnings-chart] rect.bar[data-date="{today}"]')
        bar.wait_for()
        assert Decimal(bar.get_attribute("data-value") or "0") == earned
        assert page.locator("[data-testid=earnings-chart] rect.bar").count() == 1

        # Per listing and model: the demo listing's model, its requests and what it earned.
        row = page.locator(f'[data-testid=earnings-summary] tr[data-model="{MODEL}"]')
        row.wait_for()
        assert row.get_attribute("data-listing-id") == summary["data"][0]["listing_id"]
        cells = row.locator("td").all_inner_texts()
        assert (cells[0], cells[2]) == (MODEL, "4")
        assert cells[-1] == usd_text(summary["data"][0]["payout_usd"])
        this_month = today[:7]
        month = page.locator(f'[data-testid=earnings-monthly] tr[data-month="{this_month}"]')
        assert month.locator("td").all_inner_texts()[1] == "4"

        # Nothing released yet, nothing to pay out: both said in words.
        assert "No releases yet" in page.inner_text(".view")
        assert page.locator("[data-testid=payout-nothing]").is_visible()
        assert page.locator("form[data-form=payout] button[type=submit]").is_disabled()
        assert "No payouts yet" in page.inner_text("[data-testid=earnings-payouts-card]")
        assert not page.locator("text=Load more").first.is_visible()  # one page of each
        assert page.locator("text=null").count() == 0
        shot(page, "40-earnings")

        # Hourly buckets: one bar, in the current UTC hour.
        page.select_option("select[name=window]", "hour48")
        hour = datetime.now(UTC).strftime("%Y-%m-%dT%H:00:00.000Z")
        hourly = page.locator(f'[data-testid=earnings-chart] rect.bar[data-start="{hour}"]')
        hourly.wait_for()
        assert Decimal(hourly.get_attribute("data-value") or "0") == earned

        # On a phone: nothing wider than the screen.
        page.set_viewport_size({"width": 390, "height": 844})
        nav(page, "Trade reviews", "reviews")
        nav(page, "Earnings")
        page.locator("[data-testid=earnings-chart] rect.bar").first.wait_for()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shot(page, "42-earnings-phone")


def test_the_seller_sees_the_flagged_trade_with_reported_and_counted_tokens(trades: Trades) -> None:
    site, flagged = trades.site, trades.flagged
    reviews = rest(trades, "v1/market/trade-reviews")["data"]
    assert [r["trade_id"] for r in reviews] == [flagged["id"]]
    review = reviews[0]
    assert review["flagged_by"] == "trade" and review["review"]["state"] == "open"
    assert review["native_tokens_completion"] == flagged["native_tokens_completion"]
    assert review["native_tokens_completion"] > review["counted_tokens_completion"]

    with chromium(site) as browser:
        page = browser.page
        log_in(page, site, *SELLER)
        nav(page, "Trade reviews", "reviews")
        item = page.locator(f'article.review[data-trade-id="{flagged["id"]}"]')
        item.wait_for()
        assert page.locator("article.review").count() == 1
        assert item.locator("[data-testid=trade-id]").inner_text() == flagged["id"]
        assert item.locator("[data-testid=review-state]").inner_text() == "open"
        for kind in ("prompt", "completion"):
            reported = item.locator(f"[data-testid=reported-{kind}]").inner_text()
            counted = item.locator(f"[data-testid=counted-{kind}]").inner_text()
            assert reported == f"{review[f'native_tokens_{kind}']:,}", kind
            assert counted == f"{review[f'counted_tokens_{kind}']:,}", kind
        assert item.locator("[data-testid=held]").inner_text() == usd_text(review["review"]["held_usd"])
        assert "this trade" in item.locator("[data-testid=flagged-by]").inner_text()
        assert item.locator("[data-testid=market-audit]").count() == 0
        assert "Waiting for the operator" in item.inner_text()
        assert not page.locator("text=Load more").is_visible()
        held = page.locator("[data-testid=reviews-held]")
        assert held.get_attribute("data-usd") == rest(trades, "v1/market/earnings")["held_usd"]
        shot(page, "41-trade-reviews")

        # On a phone: nothing wider than the screen.
        page.set_viewport_size({"width": 390, "height": 844})
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert item.locator("[data-testid=billed-completion]").is_visible()
        page.set_viewport_size({"width": 1280, "height": 860})

        # The state filter: no review was upheld, said in words; back to the open one.
        page.select_option("select[name=state]", "upheld")
        page.wait_for_selector("[data-testid=reviews-empty]")
        assert page.inner_text("[data-testid=reviews-empty]") == "No upheld reviews."
        page.select_option("select[name=state]", "open")
        item.wait_for()


def test_an_api_error_is_said_in_words_and_the_rest_of_the_page_still_shows(trades: Trades) -> None:
    site = trades.site
    failure = {"error": {"message": "The database is resting.", "type": "api_error", "code": "unavailable"}}
    with chromium(site) as browser:
        page = browser.page
        log_in(page, site, *SELLER)
        page.route(
            "**/v1/market/earnings/monthly*",
            lambda route: route.fulfill(status=503, json=failure),
        )
        nav(page, "Earnings")
        error = page.locator(".card:has(h2:text('Per month')) .error")
        error.wait_for()
        assert "The database is resting." in error.inner_text() and "(unavailable)" in error.inner_text()
        page.locator("[data-testid=earnings-locked] .big").wait_for()  # the others answered
        page.unroute("**/v1/market/earnings/monthly*")
        error.locator("text=Try again").click()
        page.locator("[data-testid=earnings-monthly]").wait_for()


def test_released_earnings_are_listed_and_paid_out_through_the_page(released: Trades) -> None:
    site = released.site
    money = rest(released, "v1/market/earnings")
    available = Decimal(money["available_usd"])
    assert available > 0 and Decimal(money["locked_usd"]) == 0, money
    settlements = rest(released, "v1/market/settlements")["data"]
    assert settlements and sum(Decimal(x["amount_usd"]) for x in settlements) == available

    with chromium(site) as browser:
        page = browser.page
        log_in(page, site, *SELLER)
        nav(page, "Earnings")

        # Every release is a row; the lock window is read from the last one.
        rows = page.locator("[data-testid=earnings-settlements] tr[data-settlement-id]")
        rows.first.wait_for()
        shown = rows.evaluate_all("rs => rs.map(r => r.dataset.settlementId)")
        assert shown == [x["id"] for x in settlements]
        assert rows.first.locator("td").last.inner_text() == usd_text(settlements[0]["amount_usd"])
        assert "unlock about 2 seconds after their trade" in page.inner_text("[data-testid=earnings-locked]")
        assert page.locator("[data-testid=earnings-available] .big").inner_text() == usd_text(str(available))

        # More than is available: refused, in words, and nothing moves.
        form = page.locator("form[data-form=payout]")
        form.locator("input[name=amount_usd]").fill("5")
        form.locator("button[type=submit]").click()
        assert form.locator("button[type=submit]").inner_text() == "Confirm: pay out $5.00"
        form.locator("button[type=submit]").click()
        error = form.locator(".error")
        error.wait_for()
        assert "above your available earnings" in error.inner_text()

        # All of it: asked twice (a payout cannot be cancelled), then pending.
        form.locator("text=All").click()
        assert Decimal(form.locator("input[name=amount_usd]").input_value()) == available
        form.locator("button[type=submit]").click()
        form.locator("button[type=submit]").click()
        payout = page.locator("[data-testid=earnings-payouts] tr[data-payout-id]")
        payout.wait_for()
        (made,) = rest(released, "v1/market/payouts")["data"]
        assert made["status"] == "pending" and Decimal(made["amount_usd"]) == available
        assert payout.get_attribute("data-payout-id") == made["id"]
        assert "pending" in payout.inner_text()
        pending = page.locator("[data-testid=earnings-pending] .big")
        assert pending.get_attribute("data-usd") == made["amount_usd"]
        assert page.locator("[data-testid=earnings-available] .big").get_attribute("data-usd") == "0.000000"
        assert page.locator("[data-testid=payout-nothing]").is_visible()
        shot(page, "43-earnings-released")


def test_a_new_seller_reads_every_empty_state_in_words(trades: Trades) -> None:
    site = trades.site
    address = "newcomer@earnings.test"
    signed_up(site, address)
    with chromium(site) as browser:
        page = browser.page
        log_in(page, site, address)
        nav(page, "Earnings")
        page.wait_for_selector("[data-testid=earnings-empty]")
        assert page.inner_text("[data-testid=earnings-empty]").startswith("No earnings yet:")
        assert "No earnings in this window yet" in page.inner_text("[data-testid=earnings-chart]")
        assert "No trades on your listings" in page.inner_text("[data-testid=earnings-by-listing]")
        text = page.inner_text(".view")
        for words in ("No earnings in the last 12 months.", "No releases yet", "No payouts yet."):
            assert words in text, words
        nav(page, "Trade reviews", "reviews")
        page.wait_for_selector("[data-testid=reviews-empty]")
        assert page.inner_text("[data-testid=reviews-empty]").startswith("No trade reviews:")
        assert page.get_attribute("[data-testid=reviews-held]", "data-usd") == "0.000000"
