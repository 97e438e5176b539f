"""The dashboard's Routing page in headless Chromium, through `dragonfly serve`'s public port: a buyer
builds a custom routing profile (the weights' effect explained on the page), edits it into a price
ceiling, binds it to a key on the Keys page, sees the ceiling refuse the market's only listing (503
`no_listing_matches_profile`) and lifting it serve again, then deletes it. What the page stored is read
back through the REST API with the same cookie session; what the server refuses is said in words.

Screenshots: `var/screenshots/dashboard/20-routing.png` and `21-routing-phone.png` (git-ignored)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
import requests
from support.dashboard import (
    Site,
    browser_session,
    chromium,
    csrf,
    log_in,
    mail_to,
    nav,
    running_site,
    shot,
)
from support.market import MODEL

_RAW_KEY = re.compile(r"sk-df-[A-Za-z0-9_-]{20,}")
_VOLATILE = {"id", "created_at", "updated_at"}


@pytest.fixture(scope="module")
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """`dragonfly serve` with one active listing ($1 in, $2 out per 1M tokens, provider `custom`)."""
    with running_site(request, tmp_path_factory.mktemp("dashboard-profiles")) as running:
        yield running


def _profiles(site: Site, http: requests.Session) -> dict[str, dict[str, Any]]:
    resp = http.get(f"{site.origin}/api/routing/profiles", timeout=30)
    assert resp.status_code == 200, resp.text
    return {p["name"]: p for p in resp.json()["data"]}


def _stable(profile: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in profile.items() if k not in _VOLATILE}


def _chat(site: Site, key: str) -> requests.Response:
    return requests.post(
        f"{site.origin}/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "route me"}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _chat_until(site: Site, key: str, status: int) -> requests.Response:
    """A profile change acts on the next request through this address; allow the documented 2 s."""
    deadline = time.monotonic() + 5
    while True:
        resp = _chat(site, key)
        if resp.status_code == status or time.monotonic() > deadline:
            return resp
        time.sleep(0.2)


def test_a_buyer_builds_edits_binds_and_deletes_a_routing_profile(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    address = "router@dashboard.test"
    http = browser_session(site, address)  # the REST view of what the page stores
    (link,) = re.findall(r"https?://\S+/verify#token=\S+", mail_to(site, address))
    verified = requests.post(
        f"{site.origin}/api/auth/verify", json={"token": unquote(link.split("#token=", 1)[1])}, timeout=30
    )
    assert verified.status_code == 200, verified.text  # the trial credit pays for the last chat

    with chromium(site) as browser:
        page = browser.page
        log_in(page, site, address)
        nav(page, "Routing", "profiles")

        # The account's default profile is listed, marked, and offers no delete.
        default_row = page.wait_for_selector('table.profiles tr[data-name="balanced"]')
        assert default_row is not None
        assert "default" in default_row.inner_text()
        assert "cannot be deleted" in default_row.inner_text()
        assert default_row.query_selector("button.danger") is None

        # A custom profile: switching to custom starts from balanced's weights, as percentages.
        form = "form[data-form=create-profile]"
        assert "mix of price" in page.inner_text(f"{form} [data-testid=strategy-help]")
        page.fill(f"{form} input[name=name]", "custom-mix")
        page.select_option(f"{form} select[name=strategy]", "custom")
        assert page.input_value(f"{form} input[name=w_price]") == "30"
        assert "Your own weights" in page.inner_text(f"{form} [data-testid=strategy-help]")
        page.fill(f"{form} input[name=w_price]", "5")
        page.fill(f"{form} input[name=w_latency]", "2")
        page.fill(f"{form} input[name=w_throughput]", "")
        page.fill(f"{form} input[name=w_reliability]", "3")
        page.fill(f"{form} input[name=w_quality]", "")
        explained = page.inner_text(f"{form} [data-testid=weights-sentence]")
        assert explained == (
            "Price counts 50 % of the score, reliability 30 %, latency 20 %."
            " Throughput and quality are ignored."
        ), explained
        bar = f'{form} [data-testid=weights-explain] li[data-feature="price"]'
        assert page.get_attribute(bar, "data-share") == "50.0"
        # A misspelt provider is flagged before anything is sent.
        page.fill(f"{form} textarea[name=providers_deny]", "groq, opneai")
        assert "opneai" in page.inner_text(f"{form} .profile-warn:visible")
        page.fill(f"{form} textarea[name=providers_deny]", "groq")
        page.fill(f"{form} input[name=max_ttft_ms]", "2000")
        page.fill(f"{form} input[name=max_attempts]", "2")
        page.uncheck(f'{form} input[name=retry_on][value="timeout"]')
        page.check(f"{form} input[name=hedge_enabled]")
        page.fill(f"{form} input[name=after_ms]", "300")
        page.click(f"{form} button[type=submit]")
        row = 'table.profiles tr[data-name="custom-mix"]'
        page.wait_for_selector(row)
        assert "price 50 %, reliability 30 %, latency 20 %" in page.inner_text(row)

        made = _profiles(site, http)["custom-mix"]
        assert _stable(made) == {
            "name": "custom-mix",
            "strategy": "custom",
            "weights": {"price": 5.0, "latency": 2.0, "throughput": 0.0, "reliability": 3.0, "quality": 0.0},
            "providers_allow": None,
            "providers_deny": ["groq"],
            "sellers_deny": [],
            "max_input_price_per_mtok": None,
            "max_output_price_per_mtok": None,
            "max_ttft_ms": 2000,
            "min_throughput_tps": None,
            "fallback": {"enabled": True, "max_attempts": 2, "retry_on": [429, "5xx", "connect_error"]},
            "hedge": {"enabled": True, "after_ms": 300},
            "is_default": False,
        }

        # An edit the server refuses is said in words beside the form; nothing is stored.
        page.click(f"{row} >> text=Edit")
        edit = "form[data-form=edit-profile]"
        page.wait_for_selector(edit)
        assert page.input_value(f"{edit} input[name=w_reliability]") == "3"
        page.fill(f"{edit} input[name=max_attempts]", "9")
        page.click(f"{edit} button[type=submit]")
        refusal = page.inner_text(f"{edit} .error")
        assert "fallback.max_attempts" in refusal and "less than or equal to 5" in refusal, refusal
        assert "invalid_request" in refusal
        assert _stable(_profiles(site, http)["custom-mix"]) == _stable(made)

        # Cost first with an output ceiling below the listing's $2: weights go, the ceiling is stored.
        page.fill(f"{edit} input[name=max_attempts]", "2")
        page.select_option(f"{edit} select[name=strategy]", "cost_first")
        assert page.is_hidden(f"{edit} [data-part=weights]")
        assert "Price counts 70 % of the score" in page.inner_text(f"{edit} [data-testid=weights-sentence]")
        page.fill(f"{edit} input[name=max_output_price_per_mtok]", "1.50")
        page.fill(f"{edit} input[name=max_ttft_ms]", "")
        page.uncheck(f"{edit} input[name=hedge_enabled]")
        page.click(f"{edit} button[type=submit]")
        page.wait_for_selector(f"{row} >> text=output \u2264 $1.5/M")
        edited = _profiles(site, http)["custom-mix"]
        assert _stable(edited) == {
            **_stable(made),
            "strategy": "cost_first",
            "weights": None,
            "max_output_price_per_mtok": "1.5",
            "max_ttft_ms": None,
            "hedge": {"enabled": False, "after_ms": None},
        }
        profile_id = edited["id"]

        # Bound to a new key on the Keys page.
        nav(page, "Keys")
        create_key = "form[data-form=create-key]"
        page.wait_for_selector(
            f'{create_key} select[name=routing_profile_id] option[value="{profile_id}"]', state="attached"
        )
        page.fill(f"{create_key} input[name=name]", "routed")
        page.select_option(f"{create_key} select[name=routing_profile_id]", profile_id)
        page.click(f"{create_key} button[type=submit]")
        raw = page.inner_text("[data-testid=raw-key]")
        assert _RAW_KEY.fullmatch(raw)
        (key,) = http.get(f"{site.origin}/api/keys", timeout=30).json()["data"]
        assert key["routing_profile_id"] == profile_id

        # The ceiling acts: the market's only listing costs more, so the key is refused in words.
        refused = _chat_until(site, raw, 503)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "no_listing_matches_profile"

        # The page counts the key; the create form explains the custom weights for the picture.
        nav(page, "Routing", "profiles")
        page.wait_for_selector(row)
        assert page.inner_text(f'{row} td[data-label="Keys"]') == "1"
        page.select_option(f"{form} select[name=strategy]", "custom")
        page.wait_for_selector(f"{form} [data-part=weights]:visible")
        shot(page, "20-routing")

        # Lifting the ceiling to the listing's price serves the key again.
        page.click(f"{row} >> text=Edit")
        page.fill(f"{edit} input[name=max_output_price_per_mtok]", "2.00")
        page.click(f"{edit} button[type=submit]")
        page.wait_for_selector(f"{row} >> text=output \u2264 $2/M")
        served = _chat_until(site, raw, 200)
        assert served.status_code == 200, served.text
        assert served.json()["choices"][0]["message"]["content"] == "Echo: route me"

        # A profile gone behind the page's back: deleting it again is refused in words.
        stale = http.post(
            f"{site.origin}/api/routing/profiles",
            json={"name": "stale", "strategy": "balanced"},
            headers=csrf(http),
            timeout=30,
        )
        assert stale.status_code == 201, stale.text
        page.reload()
        stale_row = 'table.profiles tr[data-name="stale"]'
        page.wait_for_selector(stale_row)
        gone = http.delete(
            f"{site.origin}/api/routing/profiles/{stale.json()['id']}", headers=csrf(http), timeout=30
        )
        assert gone.status_code == 204
        page.click(f"{stale_row} >> text=Delete")
        page.click(f"{stale_row} >> text=Confirm delete")
        assert "Routing profile not found." in page.inner_text("[data-testid=profiles-status] .error")

        # Delete, in two steps: the key moves to the default profile.
        page.click(f"{row} >> text=Delete")
        page.click(f"{row} >> text=Confirm: 1 key moves to the default")
        page.wait_for_selector(row, state="detached")
        left = _profiles(site, http)
        assert "custom-mix" not in left
        (key,) = http.get(f"{site.origin}/api/keys", timeout=30).json()["data"]
        assert key["routing_profile_id"] == left["balanced"]["id"]

        # Nothing secret on the page.
        assert raw not in page.content() and not _RAW_KEY.search(page.inner_text("body"))

        # A phone: the list collapses into labelled rows; the form stacks.
        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        page.wait_for_selector('table.profiles tr[data-name="balanced"]')
        page.select_option(f"{form} select[name=strategy]", "custom")
        page.fill(f"{form} input[name=w_price]", "1")
        page.fill(f"{form} input[name=w_quality]", "1")
        assert page.is_hidden("table.profiles thead")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width  # nothing wider than the screen
        shot(page, "21-routing-phone")
    with capsys.disabled():
        print("\nrouting screenshots: var/screenshots/dashboard/20-routing.png, 21-routing-phone.png")
