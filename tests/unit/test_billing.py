"""The billing rule (domain/billing.py) and its wiring into the gateway's usage (gateway/trade.py
`usage_from`): a seller's report is capped at Dragonfly's exact count + 2 % + 4 tokens, stands where the
count is not exact, is never exceeded, and the audit verdict keeps its three values."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.listings import listing_info

from dragonfly.domain.billing import (
    Bill,
    Counted,
    Reported,
    allowance,
    beyond_review,
    bill,
    tokenizer_exact,
)
from dragonfly.gateway.trade import usage_from
from dragonfly.native.tokens import PreParsed, encoding_for_model, preparse_request, uncounted

EXACT = Counted(prompt=1000, completion=200, tokenizer_exact=True, prompt_covered=True)


def test_allowance_is_two_percent_rounded_up_plus_four() -> None:
    assert [allowance(n) for n in (0, 1, 49, 50, 51, 100, 1000)] == [4, 6, 54, 55, 57, 106, 1024]


def test_review_threshold_is_one_and_a_half_times_plus_sixteen() -> None:
    assert not beyond_review(166, 100) and beyond_review(167, 100)
    assert not beyond_review(16, 0) and beyond_review(17, 0)
    assert not beyond_review(17, 1) and beyond_review(18, 1)  # 1.5 + 16 = 17.5


def test_three_times_the_tokens_is_billed_at_the_count_plus_slack() -> None:
    b = bill(Reported(prompt=3000, completion=600), EXACT)
    assert b == Bill(prompt=1024, completion=208, cached=0, audit="flagged")


def test_an_honest_report_is_billed_as_reported() -> None:
    # Within the slack (a provider's framing token or two): billed as reported, not as counted.
    assert bill(Reported(prompt=1003, completion=200), EXACT) == Bill(1003, 200, 0, "ok")
    # Under-reporting is the seller's loss: never billed above the report.
    assert bill(Reported(prompt=900, completion=150), EXACT) == Bill(900, 150, 0, "ok")


def test_inflation_below_the_review_threshold_is_capped_but_not_flagged() -> None:
    b = bill(Reported(prompt=1100, completion=240), EXACT)
    assert (b.prompt, b.completion, b.audit) == (1024, 208, "ok")


def test_an_estimated_tokenizer_leaves_the_report_standing() -> None:
    counted = Counted(prompt=1000, completion=200, tokenizer_exact=False, prompt_covered=True)
    b = bill(Reported(prompt=1200, completion=260), counted)
    assert b == Bill(1200, 260, 0, "ok")
    assert bill(Reported(prompt=3000, completion=600), counted) == Bill(3000, 600, 0, "flagged")


def test_a_prompt_the_count_does_not_cover_stands_and_is_not_compared() -> None:
    counted = Counted(prompt=100, completion=200, tokenizer_exact=True, prompt_covered=False)
    b = bill(Reported(prompt=865, completion=600), counted)  # a high-detail image: 765 more tokens
    assert (b.prompt, b.completion, b.audit) == (865, 208, "flagged")  # flagged for the completion only
    assert bill(Reported(prompt=865, completion=200), counted).audit == "ok"


def test_an_answer_with_tool_calls_stands_and_nothing_compared_is_unverifiable() -> None:
    counted = Counted(
        prompt=100, completion=20, tokenizer_exact=True, prompt_covered=False, completion_covered=False
    )
    assert bill(Reported(prompt=300, completion=90), counted) == Bill(300, 90, 0, "unverifiable")


def test_hidden_reasoning_stands_and_the_rest_of_the_completion_is_capped() -> None:
    # An o-series answer: 200 visible tokens counted, 1,000 reasoning tokens nobody can see.
    honest = Reported(prompt=1000, completion=1200, reasoning=1000)
    assert bill(honest, EXACT) == Bill(1000, 1200, 0, "ok")
    inflated = Reported(prompt=1000, completion=1600, reasoning=1000)  # 600 "visible": 3x
    b = bill(inflated, EXACT)
    assert (b.completion, b.audit) == (208 + 1000, "flagged")
    # Reasoning tokens themselves are the seller's word (the market audit's business).
    assert bill(Reported(prompt=1000, completion=5200, reasoning=5000), EXACT).completion == 5200
    # A reasoning figure above the completion cannot lift the bill above the report.
    assert bill(Reported(prompt=1000, completion=100, reasoning=900), EXACT).completion == 100


def test_cached_tokens_never_exceed_the_billed_prompt() -> None:
    assert bill(Reported(prompt=3000, completion=10, cached=2500), EXACT).cached == 1024
    assert bill(Reported(prompt=1000, completion=10, cached=600), EXACT).cached == 600
    counted = Counted(prompt=1000, completion=10)
    assert bill(Reported(prompt=800, completion=10, cached=900), counted).cached == 800


def test_no_report_bills_the_counts_and_is_unverifiable() -> None:
    assert bill(None, EXACT) == Bill(1000, 200, 0, "unverifiable")
    assert bill(Reported(), EXACT) == Bill(1000, 200, 0, "unverifiable")
    # One kind reported: the other is billed on the count.
    assert bill(Reported(completion=600), EXACT) == Bill(1000, 208, 0, "flagged")


@pytest.mark.parametrize(
    ("declared", "upstream", "market", "count", "exact"),
    [
        ("o200k_base", "my-llama", "meta/llama", "o200k_base", True),  # the seller declared it
        (None, "gpt-4o-mini", "openai/gpt-4o-mini", "o200k_base", True),  # tiktoken's table
        (None, "prod-deployment-1", "openai/gpt-4o", "o200k_base", True),  # market name known
        (None, "gpt4-custom", "openai/gpt-4", "o200k_base", False),  # known as cl100k, counted o200k
        (None, "llama-3.1-70b", "meta/llama-3.1-70b", "o200k_base", False),  # estimated
        (None, "gpt-oss-120b", "openai/gpt-oss-120b", "o200k_base", False),  # harmony template
        (None, "openai/gpt-oss-20b", "x/y", "o200k_base", False),
    ],
)
def test_tokenizer_exactness(
    declared: str | None, upstream: str, market: str, count: str, exact: bool
) -> None:
    assert (
        tokenizer_exact(
            declared=declared,
            count_encoding=count,
            upstream_model=upstream,
            upstream_mapped=encoding_for_model(upstream),
            market_mapped=encoding_for_model(market),
        )
        is exact
    )


counts = st.integers(min_value=0, max_value=200_000)
maybe = st.none() | counts


@given(
    rp=maybe,
    rc=maybe,
    cached=maybe,
    reasoning=counts,
    cp=counts,
    cc=counts,
    tok=st.booleans(),
    pcov=st.booleans(),
    ccov=st.booleans(),
)
def test_billing_properties(
    rp: int | None,
    rc: int | None,
    cached: int | None,
    reasoning: int,
    cp: int,
    cc: int,
    tok: bool,
    pcov: bool,
    ccov: bool,
) -> None:
    reported = Reported(prompt=rp, completion=rc, cached=cached, reasoning=reasoning)
    counted = Counted(
        prompt=cp, completion=cc, tokenizer_exact=tok, prompt_covered=pcov, completion_covered=ccov
    )
    b = bill(reported, counted)
    assert b.audit in ("ok", "flagged", "unverifiable")
    assert 0 <= b.cached <= b.prompt
    for rep, cnt, got, exact, extra in (
        (rp, cp, b.prompt, tok and pcov, 0),
        (rc, cc, b.completion, tok and ccov, min(reasoning, rc or 0)),
    ):
        if rep is None:
            # Nothing reported for the kind: Dragonfly's count is billed.
            assert got == cnt
            continue
        assert got <= rep  # never above the seller's report
        if not exact or rep <= allowance(cnt) + extra:
            assert got == rep  # what cannot be counted, and an honest report, stand
        else:
            assert got == allowance(cnt) + extra  # inflation is paid up to the count + slack
    if rp is None and rc is None:
        assert b.audit == "unverifiable"


# -- wired into the gateway: usage_from ------------------------------------------------------------


def _pre(body: dict[str, object]) -> PreParsed:
    return preparse_request(orjson.dumps({"model": "openai/gpt-4o", **body}))


TEXT = {"messages": [{"role": "user", "content": "Say hello to the whole wide world, please."}]}


def test_usage_from_caps_an_exact_listing() -> None:
    listing = listing_info("l1", model="openai/gpt-4o", upstream_model="gpt-4o")
    pre = _pre(TEXT)
    upstream = {"prompt_tokens": pre.prompt_tokens * 3, "completion_tokens": 300}
    u = usage_from(upstream, pre.prompt_tokens, 100, listing, pre)
    assert (u.prompt, u.completion) == (allowance(pre.prompt_tokens), allowance(100))
    assert (u.native_prompt, u.native_completion) == (pre.prompt_tokens * 3, 300)
    assert (u.counted_prompt, u.counted_completion, u.audit) == (pre.prompt_tokens, 100, "flagged")


def test_usage_from_without_listing_or_request_bills_as_reported() -> None:
    """Callers that do not pass the listing and the request keep the old billing (and audit)."""
    u = usage_from({"prompt_tokens": 90, "completion_tokens": 300}, 30, 100)
    assert (u.prompt, u.completion, u.audit) == (90, 300, "flagged")
    assert usage_from({"prompt_tokens": 90, "completion_tokens": 110}, 30, 100).audit == "ok"
    assert usage_from(None, 30, 100).audit == "unverifiable"


def test_usage_from_leaves_estimated_tokenizers_and_uncovered_requests_alone() -> None:
    estimated = listing_info("l1")  # demo/echo-1 on echo-1: o200k_base stands in
    pre = _pre(TEXT)
    up = {"prompt_tokens": 999, "completion_tokens": 300}
    assert usage_from(up, 10, 100, estimated, pre).completion == 300
    exact = listing_info("l2", model="openai/gpt-4o", upstream_model="gpt-4o")
    image = _pre(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is it"},
                        {"type": "image_url", "image_url": {"url": "x"}},
                    ],
                }
            ]
        }
    )
    u = usage_from(up, 10, 100, exact, image)
    assert (u.prompt, u.completion) == (999, allowance(100))
    calls = usage_from(up, 10, 100, exact, pre, tool_calls=[{"name": "f"}])
    assert calls.completion == 300
    reasoning = usage_from({**up, "reasoning_tokens": 150}, 10, 100, exact, pre)
    assert reasoning.completion == allowance(100) + 150


def test_usage_from_declared_encoding_must_match_the_prompt_count() -> None:
    listing = listing_info("l1", encoding="cl100k_base", count_encoding="cl100k_base")
    o200k = _pre(TEXT)  # counted with o200k_base: not the listing's tokenizer
    up = {"prompt_tokens": 999, "completion_tokens": 300}
    assert usage_from(up, 10, 100, listing, o200k).prompt == 999
    cl100k = preparse_request(orjson.dumps({"model": "x", **TEXT}), "cl100k_base")
    assert usage_from(up, 10, 100, listing, cl100k).prompt == allowance(10)


@pytest.mark.parametrize(
    ("body", "prompt", "completion"),
    [
        (TEXT, False, False),
        ({"messages": [{"role": "user", "content": "caf\u00e9 \u4f60\u597d"}]}, False, False),
        ({"messages": [{"role": "user", "content": 'what is "image_url"?'}]}, False, False),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            True,
            False,
        ),
        ({"messages": [{"role": "assistant", "tool_calls": []}]}, True, False),
        ({**TEXT, "response_format": {"type": "json_object"}}, True, False),
        ({**TEXT, "modalities": ["text", "audio"], "audio": {"voice": "alloy"}}, True, True),
        ({**TEXT, "prediction": {"type": "content", "content": "x"}}, False, True),
    ],
)
def test_uncounted_request_members(body: dict[str, object], prompt: bool, completion: bool) -> None:
    assert uncounted(orjson.dumps(body)) == (prompt, completion)
    # The same body with every non-ASCII character and a key escaped (as Python's json does).
    escaped = orjson.dumps(body).decode().replace("image_url", "image\\u005furl").encode()
    assert uncounted(escaped) == (prompt, completion)


def test_an_escaped_key_is_still_found() -> None:
    body = (
        b'{"messages":[{"role":"user","content":[{"type":"image\\u005furl","image\\u005furl":{"url":"x"}}]}]}'
    )
    assert uncounted(body) == (True, False)
    pre = preparse_request(body)
    assert not pre.prompt_covered and pre.completion_covered
    tools = preparse_request(
        orjson.dumps({**TEXT, "tools": [{"type": "function", "function": {"name": "f"}}]})
    )
    assert not tools.prompt_covered
