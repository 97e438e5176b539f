"""What a chat or embeddings trade bills, token kind by token kind, from the seller's reported usage and
Dragonfly's own counts (docs/buyer.md "Billing rules", docs/seller.md "What is billed"). Pure: no I/O.

The rule, per kind (prompt, completion, cached):

* The seller reported nothing for the kind: Dragonfly's own count is billed (as before).
* Dragonfly's count is **exact** for the kind: `billed = min(reported, allowance(counted))`, where
  `allowance(n) = n + ceil(2 % of n) + 4` (`SLACK_PERCENT`, `SLACK_TOKENS`). An honest seller whose
  tokenizer is the one Dragonfly counts with reports the count itself; the slack absorbs accounting
  differences of a token or two (a provider's message framing), not a tokenizer. Inflation beyond the
  slack is not billed: a seller reporting 3x is paid for the count plus slack.
* The count is **not exact** for the kind: the seller's report stands (billed as reported). What is
  not exact:
  - the listing's tokenizer is not known to be the seller's (`tokenizer_exact`): it is exact when the
    listing declares `encoding` (the seller states its model counts with it), or when the upstream model
    or the market model is an OpenAI model with a known encoding (tiktoken's table) that is the one the
    count used. Every other model is counted with o200k_base as an estimate: a Llama or DeepSeek
    tokenizer counts the same text 5-30 % differently, so capping at an estimate would underpay honest
    sellers. gpt-oss maps to o200k_base but its answers carry the harmony format's channel tokens, which
    the local count does not see: not exact either.
  - prompt: the request carries something the prompt count covers only approximately
    (`prompt_covered=False`): image, audio or file parts (an image counts as a low-detail one), tool
    definitions or earlier tool calls (the cookbook's approximation), a `response_format` (providers add
    the schema to the prompt).
  - completion: the answer has tool calls (their framing tokens are not counted), or the request asks
    for audio output or a predicted output (rejected prediction tokens are billed as completion).
  - hidden reasoning: the seller's `completion_tokens_details.reasoning_tokens` cannot be counted
    locally. They stand as reported, and only the rest of the completion is capped:
    `billed = min(reported, allowance(counted) + reasoning)`. (When the reasoning is visible,
    `reasoning_content`, the count already includes it and the bound is looser still.) Moving tokens
    into `reasoning_tokens` therefore escapes the cap; that is what the market-relative audit
    (domain/usage_audit.py) is for.
* Cached tokens cannot be counted locally: billed as reported, but never more than the billed prompt.
* Billing never exceeds the seller's report: under-reporting is billed as reported.

The audit verdict (the receipt's `usage_audit`) keeps its three values:

* `flagged`: for a kind whose count covers everything the seller bills, the report is above
  `REVIEW_RATIO` x count + `REVIEW_TOKENS` (the review threshold: wide enough for tokenizers that differ,
  so it applies to estimated counts too; completion compares the report less its reasoning tokens).
  A flagged trade is listed for the operator; what it bills follows the rule above.
* `unverifiable`: the seller reported no usage, or no kind it reported could be compared (media
  prompt and a tool-call answer, say).
* `ok` otherwise. Whether the bill was capped is in the numbers: the receipt shows the reported
  (`native_tokens_*`), counted (`counted_tokens_*`) and billed (`tokens_*`) tokens.
"""

from __future__ import annotations

from typing import Literal

from dragonfly.record import record

Audit = Literal["ok", "flagged", "unverifiable"]

# The billing slack over an exact local count: 2 % (rounded up) + 4 tokens.
SLACK_PERCENT = 2
SLACK_TOKENS = 4
# The review threshold: a report above 1.5 x the local count + 16 is flagged for the operator.
REVIEW_RATIO_NUM, REVIEW_RATIO_DEN = 3, 2
REVIEW_TOKENS = 16

# Upstream model prefixes that map to an OpenAI encoding but whose answers carry template tokens the
# local count does not see.
_TEMPLATED = ("gpt-oss",)


def allowance(counted: int) -> int:
    """The most that may be billed against an exact local count of `counted` tokens."""
    return counted + -(-counted * SLACK_PERCENT // 100) + SLACK_TOKENS


def beyond_review(reported: int, counted: int) -> bool:
    """`reported > 1.5 x counted + 16`, in integers."""
    return reported * REVIEW_RATIO_DEN > counted * REVIEW_RATIO_NUM + REVIEW_TOKENS * REVIEW_RATIO_DEN


def tokenizer_exact(
    *,
    declared: str | None,
    count_encoding: str,
    upstream_model: str,
    upstream_mapped: tuple[str, bool],
    market_mapped: tuple[str, bool],
) -> bool:
    """Whether the tokenizer Dragonfly counts a listing's trades with is the seller's own.

    `declared` is the listing's `encoding` (None when not declared), `count_encoding` the one the counts
    use, `upstream_mapped` / `market_mapped` what `encoding_for_model` gives for the upstream model and
    for the market model: `(encoding, estimated)`."""
    if declared is not None:
        return declared == count_encoding
    if upstream_model.rsplit("/", 1)[-1].startswith(_TEMPLATED):
        return False
    return any(
        not estimated and encoding == count_encoding
        for encoding, estimated in (upstream_mapped, market_mapped)
    )


@record
class Reported:
    """The seller's usage: None for a kind it did not report."""

    prompt: int | None = None
    completion: int | None = None
    cached: int | None = None
    reasoning: int = 0  # completion_tokens_details.reasoning_tokens (0 when not reported)


@record
class Counted:
    """Dragonfly's own counts, and how far they can be trusted."""

    prompt: int
    completion: int
    tokenizer_exact: bool = False  # counted with the seller's own tokenizer (`tokenizer_exact`)
    prompt_covered: bool = False  # the prompt count covers everything in the request (text only)
    completion_covered: bool = True  # the completion count covers the whole answer (no tool calls, ...)


@record
class Bill:
    prompt: int
    completion: int
    cached: int
    audit: Audit


def bill(reported: Reported | None, counted: Counted) -> Bill:
    """The billed tokens per kind and the audit verdict (see the module docstring)."""
    if reported is None or (reported.prompt is None and reported.completion is None):
        return Bill(counted.prompt, counted.completion, 0, "unverifiable")
    reasoning = max(0, reported.reasoning)

    prompt = counted.prompt
    if reported.prompt is not None:
        prompt = reported.prompt
        if counted.tokenizer_exact and counted.prompt_covered:
            prompt = min(prompt, allowance(counted.prompt))

    completion = counted.completion
    if reported.completion is not None:
        completion = reported.completion
        if counted.tokenizer_exact and counted.completion_covered:
            completion = min(completion, allowance(counted.completion) + min(reasoning, completion))

    cached = min(max(0, reported.cached or 0), prompt)

    compared, flagged = False, False
    if reported.prompt is not None and counted.prompt_covered:
        compared = True
        flagged |= beyond_review(reported.prompt, counted.prompt)
    if reported.completion is not None and counted.completion_covered:
        compared = True
        flagged |= beyond_review(
            reported.completion - min(reasoning, reported.completion), counted.completion
        )
    audit: Audit = "flagged" if flagged else "ok" if compared else "unverifiable"
    return Bill(prompt, completion, cached, audit)
