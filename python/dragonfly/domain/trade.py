"""The trade's policy, without I/O: which listings a request may go to, and what to do after each
admission refusal or upstream outcome. The data-plane handler (gateway/chat.py) only drives the I/O and
asks an `AttemptPlan` what comes next.

Vocabulary (the values of a profile's `fallback.retry_on`): `429`, `5xx`, `timeout`, `connect_error`.

| outcome                                  | step                                                      |
|------------------------------------------|-----------------------------------------------------------|
| admission: insufficient balance / budget | stop: 402 insufficient_balance / 429 budget_exceeded      |
| admission: listing rpm / concurrency cap | skip to the next listing (not an attempt, no seller call) |
| upstream 200                             | relay                                                     |
| upstream 400 / 413 / 422                 | stop: 400 with the seller's message (the request is bad)  |
| upstream 429, 5xx, timeout, connect error| next listing if in retry_on and attempts remain, else stop|
| upstream 200, broken before it is relayed| as 5xx (`broken`); a body that goes silent as a timeout     |
| upstream other status (401, 403, 404...) | as 5xx: the seller's fault (a revoked provider key, a     |
|                                          | model it no longer serves), so another listing may answer |
| no listing left                          | the last upstream error; else 429 rate_limited when caps  |
|                                          | refused; else 502 upstream_error                          |

Every failed attempt voids its hold, so retries and fallbacks never charge twice (invariant 5).

Hedging (`hedge: {enabled, after_ms}`): while exactly one attempt is in flight and it has produced no
first byte `after_ms` after it started, the next listing is started beside it (`hedge_delay_ms`). The
first to produce a byte wins; the other is cancelled and its hold voided. A hedge is an attempt: it
counts against `max_attempts`, so a profile without fallback never hedges.

Continuation: a stream whose seller breaks off after the buyer got its first bytes goes on at the next
listing with the text so far as an assistant prefix (`continuation_refusal` says when it must not).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from dragonfly.errors import (
    BudgetExceeded,
    ContextLengthExceeded,
    DragonflyError,
    InsufficientBalance,
    InvalidRequest,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)

RETRYABLE = ("429", "5xx", "timeout", "connect_error")
UpstreamFailureKind = Literal["timeout", "connect_error"]
Action = Literal["skip", "next", "relay", "stop"]


@dataclass(frozen=True, slots=True)
class Step:
    """What the handler does next. `error` is set exactly when `action == "stop"`."""

    action: Action
    error: DragonflyError | None = None


SKIP = Step("skip")
NEXT = Step("next")
RELAY = Step("relay")


def _stop(error: DragonflyError) -> Step:
    return Step("stop", error)


def retry_class(status: int) -> str | None:
    """The `retry_on` name of a failed upstream HTTP status, or None when the request itself is bad (no
    other seller would take it). Any other status is the seller's fault and retries as `5xx`."""
    if status in (400, 413, 422):
        return None
    if status == 429:
        return "429"
    return "5xx"


@dataclass(slots=True)
class AttemptPlan:
    """Counts attempts against the profile's fallback policy and turns outcomes into steps."""

    max_attempts: int
    retry_on: frozenset[str]
    attempts: int = 0
    last_error: DragonflyError | None = None
    rate_limited_after_s: int | None = None
    refusing_caps: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 5:
            raise ValueError(f"max_attempts must be in 1..5, got {self.max_attempts}")
        unknown = set(self.retry_on) - set(RETRYABLE)
        if unknown:
            raise ValueError(f"unknown retry_on values: {sorted(unknown)}")

    @property
    def may_attempt(self) -> bool:
        return self.attempts < self.max_attempts

    def refused(self, refusal: str, retry_after_s: int, cap: int | None) -> Step:
        """The state store refused to admit the request at one listing."""
        if refusal == "insufficient_balance":
            return _stop(InsufficientBalance("Your account balance is too low for this request."))
        if refusal == "budget_exceeded":
            return _stop(BudgetExceeded("This key has reached its monthly budget."))
        # A listing's rpm or concurrency cap: another listing may have room; the seller was not called.
        after = max(1, retry_after_s)
        self.rate_limited_after_s = min(self.rate_limited_after_s or after, after)
        self.refusing_caps.append(cap or 0)
        return SKIP

    def started(self) -> None:
        """An attempt was admitted and goes to a seller."""
        if not self.may_attempt:
            raise RuntimeError("no attempt left")
        self.attempts += 1

    def unreachable(self, kind: UpstreamFailureKind) -> Step:
        """The seller could not be reached, or did not answer in time."""
        error: DragonflyError = (
            UpstreamTimeout("The upstream provider timed out.")
            if kind == "timeout"
            else UpstreamError("The upstream provider could not be reached.")
        )
        return self._fall_back(kind, error)

    def answered(self, status: int, seller_message: str | None = None) -> Step:
        """The seller answered with an HTTP status (before any byte reached the buyer)."""
        if status == 200:
            return RELAY
        if status in (400, 413, 422):
            # The request itself is bad: another seller would refuse it too.
            return _stop(InvalidRequest(seller_message or "The upstream provider rejected the request."))
        error = UpstreamError(f"The upstream provider answered {status}.")
        return self._fall_back(retry_class(status) or "5xx", error)

    def _fall_back(self, retry_as: str, error: DragonflyError) -> Step:
        self.last_error = error
        if retry_as in self.retry_on and self.may_attempt:
            return NEXT
        return _stop(error)

    def broken(self) -> Step:
        """The seller answered 200 and then broke off before the first byte (not a timeout)."""
        return self._fall_back("5xx", UpstreamError("The upstream provider failed while answering."))

    def hedge_delay_ms(self, hedge_after_ms: int | None, in_flight: int, elapsed_ms: int) -> int | None:
        """How long to wait for the one attempt in flight before starting the next listing beside it;
        None = don't hedge (hedging off, two attempts in flight already, or no attempt left)."""
        if hedge_after_ms is None or in_flight != 1 or not self.may_attempt:
            return None
        return max(0, hedge_after_ms - elapsed_ms)

    def continuation_refusal(
        self,
        *,
        broke_as: UpstreamFailureKind | Literal["5xx"],
        choices: int,
        tool_calls: bool,
        finish_reason: str | None,
        completion_left: int | None,
    ) -> str | None:
        """Why a stream broken after its first byte must NOT go on at another listing (None = it may):
        the profile's fallback does not allow another attempt of this kind, the answer has several
        choices or a tool call (a prefix cannot carry them), the seller had already finished, or
        max_tokens is used up."""
        if broke_as not in self.retry_on or not self.may_attempt:
            return "fallback"
        if choices != 1:
            return "several_choices"
        if tool_calls:
            return "tool_call"
        if finish_reason is not None:
            return "finished"
        if completion_left is not None and completion_left <= 0:
            return "max_tokens"
        return None

    def final_error(self) -> DragonflyError:
        """The error of a request that ran out of listings or attempts without an answer."""
        if self.last_error is not None:
            return self.last_error
        if self.rate_limited_after_s is not None:
            after = self.rate_limited_after_s
            # OpenAI-style headers, so clients that pace themselves on them back off correctly.
            return RateLimited(
                "Every matching listing is at its rate limit.",
                retry_after_s=after,
                headers={
                    "x-ratelimit-limit-requests": str(max(self.refusing_caps, default=0)),
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": f"{after}s",
                },
            )
        return UpstreamError("No listing could serve the request.")


class HasContextLength(Protocol):
    @property
    def context_length(self) -> int | None: ...


L = TypeVar("L", bound=HasContextLength)


def tokens_needed(prompt_tokens: int, max_tokens: int | None) -> int:
    """What a listing's context window must hold: the prompt, plus the completion the buyer asked for."""
    return prompt_tokens + (max_tokens or 0)


def fits(listing: HasContextLength, needed: int) -> bool:
    """A listing without a declared context length is assumed to fit (the seller decides)."""
    return listing.context_length is None or needed <= listing.context_length


def within_context(listings: Iterable[L], needed: int) -> list[L]:
    return [x for x in listings if fits(x, needed)]


def context_refusal(model: str, prompt_tokens: int, max_tokens: int | None, largest: int) -> InvalidRequest:
    asked = f"{prompt_tokens} tokens in the prompt" + (f" plus max_tokens {max_tokens}" if max_tokens else "")
    return ContextLengthExceeded(
        f"This request needs {asked}, more than the largest context window offered for `{model}` "
        f"({largest} tokens). Shorten the messages or lower max_tokens.",
        param="messages",
    )
