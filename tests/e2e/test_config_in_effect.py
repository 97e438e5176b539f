"""A change made through the API is in effect on the very next request through the same public port, and
the per-request override can only narrow the key's profile. Scripts do "create, then use"; the real
`openai` SDK does not retry a 401, so a key that needs a poll to become known fails them."""

from __future__ import annotations

import openai
import pytest
import requests
from openai import OpenAI
from support.market import Market, login

MESSAGES = [{"role": "user", "content": "Hello"}]


def sdk(m: Market, key: str) -> OpenAI:
    return OpenAI(base_url=m.base_url, api_key=key, max_retries=0, timeout=30)


def chat(m: Market, key: str, **extra: object) -> str:
    resp = sdk(m, key).chat.completions.create(
        model="demo/echo-1", messages=MESSAGES, extra_body=extra or None
    )
    return resp.choices[0].message.content or ""


def api(m: Market, method: str, path: str, session: dict[str, str], **body: object) -> dict:
    r = requests.request(method, f"{m.origin}{path}", json=body or None, headers=session, timeout=10)
    assert r.status_code < 300, r.text
    return r.json() if r.content else {}


def profile(m: Market, session: dict[str, str], name: str, **fields: object) -> str:
    return api(m, "POST", "/api/routing/profiles", session, name=name, strategy="balanced", **fields)["id"]


def test_a_new_key_answers_at_once_and_a_revoked_one_is_refused_at_once(market: Market) -> None:
    session = login(market.origin)
    for _ in range(3):
        created = api(market, "POST", "/api/keys", session, name="fresh")
        assert chat(market, created["key"]) == "Echo: Hello"
        api(market, "DELETE", f"/api/keys/{created['id']}", session)
        with pytest.raises(openai.AuthenticationError):
            chat(market, created["key"])


def test_a_profile_edit_is_in_effect_on_the_next_request(market: Market) -> None:
    session = login(market.origin)
    created = api(market, "POST", "/api/keys", session, name="bound")
    deny = profile(market, session, "no-custom", providers_deny=["custom"])
    api(market, "PATCH", f"/api/keys/{created['id']}", session, routing_profile_id=deny)
    with pytest.raises(openai.InternalServerError) as exc:  # 503 no_listing_matches_profile
        chat(market, created["key"])
    assert exc.value.status_code == 503
    assert exc.value.body["code"] == "no_listing_matches_profile"  # type: ignore[index]
    api(market, "PATCH", f"/api/routing/profiles/{deny}", session, providers_deny=[])
    assert chat(market, created["key"]) == "Echo: Hello"


def test_the_override_cannot_widen_the_keys_profile(market: Market) -> None:
    session = login(market.origin)
    created = api(market, "POST", "/api/keys", session, name="narrow")
    narrow = profile(market, session, "narrow", providers_deny=["custom"])
    wide = profile(market, session, "wide")
    api(market, "PATCH", f"/api/keys/{created['id']}", session, routing_profile_id=narrow)
    for override in ({"profile_id": wide}, {"profile_id": wide, "providers_allow": ["custom"]}):
        with pytest.raises(openai.APIStatusError) as exc:
            chat(market, created["key"], dragonfly=override)
        assert exc.value.status_code == 503, override
    # Bound to the wide profile, the override narrows: naming the narrow profile or another provider.
    api(market, "PATCH", f"/api/keys/{created['id']}", session, routing_profile_id=wide)
    assert chat(market, created["key"], dragonfly={"profile_id": wide}) == "Echo: Hello"
    for override in ({"profile_id": narrow}, {"providers_allow": ["openai"]}):
        with pytest.raises(openai.APIStatusError) as exc:
            chat(market, created["key"], dragonfly=override)
        assert exc.value.status_code == 503, override
    with pytest.raises(openai.BadRequestError):  # not one of the account's profiles
        chat(market, created["key"], dragonfly={"profile_id": "00000000-0000-4000-8000-000000000000"})


def test_every_authenticated_refusal_has_a_receipt(market: Market) -> None:
    auth = {"Authorization": f"Bearer {market.buyer_key}"}
    bodies = [
        b"{not json",
        b'{"messages": [{"role": "user", "content": "no model"}]}',
        b'{"model": "demo/echo-1", "messages": [], "dragonfly": {"unknown": 1}}',
    ]
    for body in bodies:
        r = requests.post(
            f"{market.base_url}/chat/completions",
            data=body,
            headers={**auth, "content-type": "application/json"},
            timeout=10,
        )
        assert r.status_code == 400, r.text
        request_id = r.headers["x-request-id"]
        receipt = requests.get(
            f"{market.base_url}/generation", params={"id": request_id}, headers=auth, timeout=10
        )
        assert receipt.status_code == 200, (body, receipt.text)
        data = receipt.json()["data"]
        assert data["status"] == "failed" and data["total_cost_usd"] == "0.000000"
