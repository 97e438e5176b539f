"""One buyer request through the market in virtual time: the data plane's decisions, driven by events.

The decisions are the gateway's own code: the ranking and the fallback plan come from
`gateway.routing.plan_route` (the native `Market` through the data plane's `Router`), every step after an
admission refusal or an upstream outcome from the `AttemptPlan` it returns (domain/trade.py: `refused`,
`started`, `unreachable`, `answered`, `hedge_delay_ms`, `continuation_refusal`, `final_error`),
admission from the in-process state store (rpm and concurrency caps, holds), the hold from
`gateway.holds.chat_hold`, billing from `gateway.trade.usage_from` (domain/billing.py) and the cost split
from `TradeState.cost` (domain/money.py). What is re-driven here is only the I/O of gateway/chat.py
(`_attempts`, `_race`, `_relay_body`) and gateway/stream.py (`relay_stream`, `continue_stream`), step
for step, with the seller's answer decided by its behaviour instead of a socket:

* legs are sent one at a time; with hedging (`hedge.after_ms`, at least two attempts) the next listing is
  started beside a leg that has produced no first byte in time, the first byte wins and the loser is
  dropped (its hold voided, health not told);
* a stream that breaks after its first byte goes on at the next listing when the plan allows
  (`continuation_refusal`): the broken part is billed to its seller as a trade of its own;
* every failed attempt is reported to the native market (`record_result`) and to listing health, every
  answered one with its TTFT and throughput, as `_fail_attempt` / `_record_health` report them.
"""

from __future__ import annotations

import math
import random
import zlib
from typing import TYPE_CHECKING

from dragonfly.domain.health import stream_outcome
from dragonfly.domain.trade import RELAY, Step
from dragonfly.errors import DragonflyError
from dragonfly.gateway import routing
from dragonfly.gateway.holds import DEFAULT_COMPLETION_HOLD, chat_hold
from dragonfly.gateway.snapshot import ListingInfo
from dragonfly.gateway.trade import TradeState, Usage, stream_throughput_tps, usage_from
from dragonfly.native.tokens import PreParsed
from dragonfly.simulate.behaviours import Answer
from dragonfly.simulate.sync import run_sync
from dragonfly.simulate.traffic import Request
from dragonfly.storage.state.ports import AdmissionRequest

if TYPE_CHECKING:
    from dragonfly.simulate.engine import Engine

__all__ = ["SimTrade"]

HOLD_LEASE_MS = 900_000  # DRAGONFLY_HOLD_LEASE_S
MESSAGE_FRAMING = 3  # tokens a chat message adds to the prompt count (the continuation's prefix)
# An honest seller's report against Dragonfly's estimate for a model whose tokenizer it does not have
# (benchmarks/usage_audit_sim.py): per-trade log-ratio noise, and a few outliers.
OUTLIER_SHARE, OUTLIER_SD = 0.03, 0.25

_PREPARSED: dict[str, PreParsed] = {}


def _pre(encoding: str) -> PreParsed:
    """What `usage_from` reads of the request's pre-parse (text only, no tools: every count covers it),
    counted with the listing's tokenizer as the gateway re-counts it for that listing."""
    pre = _PREPARSED.get(encoding)
    if pre is None:
        pre = _PREPARSED[encoding] = PreParsed(
            model=None,
            stream=False,
            include_usage=True,
            max_tokens=None,
            n=1,
            has_tools=False,
            prompt_tokens=0,
            estimated=False,
            dragonfly=None,
            encoding=encoding,  # type: ignore[arg-type]
        )
    return pre


def _reported(rng: random.Random, counted: int, ratio: float | None, inflation: float) -> int:
    """A seller's report of `counted` tokens: the count itself when Dragonfly counts with the seller's
    tokenizer (`ratio` None), else the model's ratio with per-trade noise; then its inflation."""
    if ratio is None:
        return round(counted * inflation)
    noise = rng.gauss(0.0, 0.02 + 0.3 / math.sqrt(counted))
    if rng.random() < OUTLIER_SHARE:
        noise += rng.gauss(0.0, OUTLIER_SD)
    return max(0, round(counted * ratio * math.exp(noise) * inflation))


class Leg:
    """One admitted attempt at one listing (gateway/legs.py `Leg`)."""

    __slots__ = ("answer", "counted_before", "dropped", "hold", "hold_id", "kind", "listing", "prompt", "t0")

    def __init__(self, listing: ListingInfo, hold: int, hold_id: str, prompt: int) -> None:
        self.listing = listing
        self.hold = hold
        self.hold_id = hold_id
        self.prompt = prompt  # the prompt it was sent (a continuation's carries the prefix)
        self.t0 = 0
        self.answer: Answer | None = None
        self.dropped = False
        self.counted_before = 0
        self.kind = "first"  # first | fallback | hedge | continuation


class SimTrade:
    __slots__ = (
        "attempts",
        "candidates",
        "continuing",
        "delivered",
        "eng",
        "exhausted",
        "first_byte",
        "hedge_after",
        "legs",
        "now0",
        "over",
        "plan",
        "profile",
        "prompt",
        "racing",
        "req",
        "request_id",
        "seed",
        "served_at",
        "t_arrival",
        "timer",
        "trade",
    )

    def __init__(self, eng: Engine, req: Request) -> None:
        self.eng = eng
        self.req = req
        self.profile = eng.market.profiles[req.profile]
        self.t_arrival = eng.clock.now
        self.now0 = eng.clock.now_ms  # the gateway's `now` for the whole request (ranking, admission)
        self.request_id = f"sim-{req.n}"
        self.seed = zlib.crc32(self.request_id.encode())
        key = eng.market.keys[req.profile]
        self.trade = TradeState(
            request_id=self.request_id,
            key=key,
            model=req.model,
            streamed=req.stream,
            started_ns=0,
            created_ms=self.now0,
        )
        self.prompt = req.prompt_tokens
        self.racing: list[Leg] = []
        self.attempts: list[tuple[str, str]] = []  # (listing, status) of each attempt, as the receipt
        self.exhausted = False
        self.over = False
        self.timer = 0
        self.legs = 0
        self.delivered = 0  # completion tokens the buyer has received (the splicer's count)
        self.first_byte: int | None = None
        self.continuing = False
        self.hedge_after: int | None = None
        self.served_at = 0  # when the leg serving the trade was sent (`TradeState.served_ns`)

    # -- routing (gateway/chat.py `_trade`, `_attempts`) ------------------------------------------------

    def start(self) -> None:
        eng, req = self.eng, self.req
        try:
            candidates, plan = routing.plan_route(
                eng.market.router,
                eng.market.snapshot,
                kind="chat",
                model=req.model,
                prompt_tokens=req.prompt_tokens,
                max_tokens=req.max_tokens,
                key_profile=self.profile,
                profile=self.profile,
                override=None,
                now_ms=self.now0,
                seed=self.seed,
            )
        except DragonflyError as err:
            self._end("refused", err.code)
            return
        self.plan = plan
        self.candidates = iter(candidates)
        self.trade.hold_completion_tokens = req.max_tokens or DEFAULT_COMPLETION_HOLD
        if self.profile.hedge_after_ms is not None and plan.max_attempts > 1:
            self.hedge_after = self.profile.hedge_after_ms
        try:
            self._start_leg("first")
            self._wait()
        except DragonflyError as err:
            self._fail(err)

    def _start_leg(self, kind: str) -> None:
        leg = self._admit_next()
        if leg is None:
            self.exhausted = True
            return
        leg.kind = kind
        self._send(leg)
        self.racing.append(leg)

    def _admit_next(self) -> Leg | None:
        """`Inference._admit_next`: the next listing of the ranking that admits the request."""
        plan, trade, eng = self.plan, self.trade, self.eng
        key = trade.key
        for listing in self.candidates:
            if not plan.may_attempt:
                return None
            hold, trade.hold_prompt_tokens = chat_hold(listing, self.prompt, trade.hold_completion_tokens)
            hold_id = self.request_id if self.legs == 0 else f"{self.request_id}.{self.legs}"
            adm = run_sync(
                eng.market.state.admit(
                    AdmissionRequest(
                        request_id=hold_id,
                        account_id=key.account_id,
                        key_id=key.id,
                        listing_id=listing.id,
                        hold_micros=hold,
                        key_budget_micros=key.budget_micros,
                        listing_rpm_cap=listing.rpm_cap,
                        listing_concurrency_cap=listing.concurrency_cap,
                        now_ms=self.now0,
                        lease_ttl_ms=HOLD_LEASE_MS,
                    )
                )
            )
            if not adm.ok:
                cap = listing.rpm_cap if adm.refusal == "listing_rpm" else listing.concurrency_cap
                step = plan.refused(adm.refusal or "", adm.retry_after_s, cap)
                if step.error is not None:
                    raise step.error
                self.attempts.append((listing.id, "refused"))
                continue
            plan.started()
            self.legs += 1
            return Leg(listing, hold, hold_id, self.prompt)
        return None

    def _send(self, leg: Leg) -> None:
        eng = self.eng
        clock = eng.clock
        leg.t0 = clock.now
        x = eng.market.listings[leg.listing.id]
        answer = leg.answer = x.spec.behaviour.respond(
            clock.now / 1000, eng.rng, self.req.completion_tokens - self.delivered, eng.read_timeout_ms
        )
        eng.metrics.leg(
            clock.now,
            self.profile.id,
            leg.listing.id,
            x.spec.behaviour.bad_at(clock.now / 1000),
            leg.kind,
        )
        if answer.failure is not None or self.req.stream:
            delay = answer.ttft_ms  # a stream's first piece, or the failure
        else:
            delay = answer.ttft_ms + answer.gen_ms  # a whole body: the head comes with it
        clock.after(delay, self._on_answer, leg)

    def _wait(self) -> None:
        """The `_race` loop's wait: for the legs in flight, and — hedging — for the hedge delay."""
        if not self.racing:
            raise self.plan.final_error()
        if self.exhausted or self.hedge_after is None:
            return
        clock = self.eng.clock
        oldest = min(leg.t0 for leg in self.racing)
        delay = self.plan.hedge_delay_ms(self.hedge_after, len(self.racing), clock.now - oldest)
        if delay is not None:
            self.timer += 1
            clock.after(delay, self._on_hedge_timer, self.timer)

    def _on_hedge_timer(self, timer: int) -> None:
        if self.over or timer != self.timer:
            return
        try:
            self._start_leg("hedge")  # no first byte in time: the next listing beside it
            self._wait()
        except DragonflyError as err:
            self._fail(err)

    def _on_answer(self, leg: Leg) -> None:
        if self.over or leg.dropped:
            return
        if self.continuing:
            self._continuation_answer(leg)
            return
        self.timer += 1  # the wait is over: a pending hedge timer is void
        self.racing.remove(leg)
        try:
            step = self._outcome(leg)
            if step is RELAY:
                self._drop_losers()
                self._win(leg)
                return
            if step.error is not None:
                raise step.error
            if not self.racing and not self.exhausted:
                self._start_leg("fallback")
            self._wait()
        except DragonflyError as err:
            self._fail(err)

    def _outcome(self, leg: Leg) -> Step:
        """`Inference._outcome`: the plan's step after a leg's seller answered or could not be reached."""
        answer = leg.answer
        assert answer is not None
        if answer.failure == "timeout" or answer.failure == "connect_error":
            kind = answer.failure
            self._fail_attempt(leg, kind, kind)
            return self.plan.unreachable(kind)  # type: ignore[arg-type]
        if answer.failure == "http":
            self._fail_attempt(leg, "error", f"http_{answer.status}")
            return self.plan.answered(answer.status)
        return RELAY

    def _fail_attempt(self, leg: Leg, status: str, error_type: str, health: bool = True) -> None:
        self.attempts.append((leg.listing.id, status))
        run_sync(self.eng.market.state.settle(leg.hold_id, 0))
        if health:
            self.eng.leg_failed(leg.listing, error_type)
        trade = self.trade
        if trade.hold_id == leg.hold_id:
            trade.listing, trade.hold, trade.hold_id = None, 0, ""

    def _drop_losers(self) -> None:
        """`Inference._drop_losers`: a leg without an answer yet tells the market its TTFT floor."""
        now = self.eng.clock.now
        for leg in self.racing:
            leg.dropped = True
            if leg.answer is None:
                self.eng.market.router.market.record_ttft_floor(leg.listing.id, float(now - leg.t0))
            self._fail_attempt(leg, "cancelled", "hedge_lost", health=False)
        self.racing.clear()

    def _take(self, leg: Leg) -> None:
        trade = self.trade
        trade.listing, trade.hold, trade.hold_id = leg.listing, leg.hold, leg.hold_id
        self.served_at = leg.t0
        _, trade.hold_prompt_tokens = chat_hold(leg.listing, leg.prompt, trade.hold_completion_tokens)

    def _fail(self, err: DragonflyError) -> None:
        self._drop_losers()
        self._end("failed", err.code)

    # -- the answer (gateway/chat.py `_win`, `_relay_body`; stream.py `relay_stream`) ------------------

    def _win(self, leg: Leg) -> None:
        self._take(leg)
        self.attempts.append((leg.listing.id, "ok"))
        answer = leg.answer
        assert answer is not None
        clock, trade = self.eng.clock, self.trade
        trade.ttft_ms = clock.now - leg.t0
        if not self.req.stream:
            if answer.broken:
                # The body broke off after its 200 head, before anything reached the buyer
                # (`_relay_body`): a failed attempt, the plan falls back as for a 5xx.
                self.attempts.pop()
                self._fail_attempt(leg, "error", "broken_body")
                step = self.plan.broken()
                if step.error is not None:
                    raise step.error
                if not self.racing and not self.exhausted:
                    self._start_leg("fallback")
                self._wait()
                return
            self.first_byte = clock.now
            self.delivered = answer.served
            trade.finish_reason = "stop"
            usage = self._usage(leg, answer)
            self._settle(trade, usage)
            self._record_health(True, usage)
            self._end("completed", None)
            return
        if self.first_byte is None:
            self.first_byte = clock.now
        clock.after(answer.gen_ms, self._on_stream_end, leg)

    def _on_stream_end(self, leg: Leg) -> None:
        answer = leg.answer
        assert answer is not None
        self.delivered += answer.served
        trade = self.trade
        if answer.broken:
            self._broken(leg)
            return
        trade.finish_reason = "stop"
        usage = self._usage(leg, answer)
        self._settle(trade, usage)
        self._record_health(True, usage)
        self._end("completed", None)

    def _broken(self, leg: Leg) -> None:
        """The seller broke off after the buyer got bytes: continue elsewhere, or end the stream."""
        req, trade = self.req, self.trade
        left = None if req.max_tokens is None else req.max_tokens - self.delivered
        refusal = self.plan.continuation_refusal(
            broke_as="5xx", choices=1, tool_calls=False, finish_reason=None, completion_left=left
        )
        if refusal is None:
            self._bill_part(leg, self.delivered - leg.counted_before)
            self.attempts[-1] = (leg.listing.id, "continued")
            self.eng.leg_failed(leg.listing, "broken_stream")
            trade.listing, trade.hold, trade.hold_id = None, 0, ""
            # The request again, with what the buyer has so far as an assistant message.
            self.prompt = req.prompt_tokens + self.delivered + MESSAGE_FRAMING
            trade.hold_completion_tokens = left if left is not None else DEFAULT_COMPLETION_HOLD
            self.continuing = True
            self._continue_next()
            return
        trade.finish_reason = "error"
        usage = usage_from(
            None,
            leg.prompt,
            self.delivered - leg.counted_before,
            leg.listing,
            _pre(leg.listing.count_encoding),
        )
        self._settle(trade, usage)
        self._record_health(False, usage)
        self._end("failed", "upstream_error")

    def _continue_next(self) -> None:
        try:
            nxt = self._admit_next()
        except DragonflyError as err:  # the balance or the budget cannot cover the next leg
            self._end("failed", err.code)
            return
        if nxt is None:  # no listing took the rest: each part served was billed as its own trade
            self._end("failed", "upstream_error")
            return
        nxt.kind = "continuation"
        nxt.counted_before = self.delivered
        self._send(nxt)

    def _continuation_answer(self, leg: Leg) -> None:
        step = self._outcome(leg)
        if step is RELAY:
            self.continuing = False
            self._take(leg)
            self.attempts.append((leg.listing.id, "ok"))
            answer = leg.answer
            assert answer is not None
            self.eng.clock.after(answer.gen_ms, self._on_stream_end, leg)
            return
        if step.error is not None:
            self._end("failed", "upstream_error")
            return
        self._continue_next()

    # -- money and health (gateway/chat.py `_settle`, `_record_health`; stream.py `bill_part`) ---------

    def _usage(self, leg: Leg, answer: Answer) -> Usage:
        eng, listing = self.eng, leg.listing
        served = self.delivered - leg.counted_before
        ratio = eng.tokenizer_ratio[listing.model]
        inflates, factor = answer.inflates, answer.inflation
        rng = eng.rng
        upstream = {
            "prompt_tokens": _reported(
                rng, leg.prompt, ratio, factor if inflates in ("prompt", "both") else 1.0
            ),
            "completion_tokens": _reported(
                rng, served, ratio, factor if inflates in ("completion", "both") else 1.0
            ),
        }
        return usage_from(upstream, leg.prompt, served, listing, _pre(listing.count_encoding))

    def _settle(self, trade: TradeState, usage: Usage) -> None:
        eng = self.eng
        listing = trade.listing
        assert listing is not None
        cost = trade.cost(usage, eng.market.fee_bps, eng.market.reserve_bps)
        run_sync(eng.market.state.settle(trade.hold_id, cost.charge))
        eng.settled(trade, listing, usage, cost, self.profile.id)

    def _bill_part(self, leg: Leg, completion_tokens: int) -> None:
        """gateway/stream.py `bill_part`: the broken part as a trade of its own, its completion tokens at its
        seller's prices, no prompt."""
        trade = self.trade
        part = TradeState(
            request_id=f"{self.request_id}~{self.legs}",
            key=trade.key,
            model=trade.model,
            streamed=True,
            started_ns=0,
            created_ms=self.now0,
        )
        part.listing, part.hold, part.hold_id = leg.listing, leg.hold, leg.hold_id
        part.hold_prompt_tokens, part.hold_completion_tokens = (
            trade.hold_prompt_tokens,
            trade.hold_completion_tokens,
        )
        self._settle(part, Usage(completion=completion_tokens, counted_completion=completion_tokens))

    def _record_health(self, ok: bool, usage: Usage) -> None:
        trade, eng = self.trade, self.eng
        listing = trade.listing
        assert listing is not None
        tps = None
        if trade.streamed:  # the serving leg's own throughput, from when it was sent
            tps = stream_throughput_tps(usage.completion, eng.clock.now - self.served_at, trade.ttft_ms)
        if stream_outcome(ok, trade.finish_reason) != "neutral":
            eng.market.router.market.record_result(
                listing.id,
                ok,
                float(trade.ttft_ms) if trade.ttft_ms is not None else None,
                tps,
                eng.clock.now_ms,
            )
        eng.health.finished(listing, ok, trade.finish_reason)

    # -- the end ---------------------------------------------------------------------------------------

    def _end(self, outcome: str, error_code: str | None) -> None:
        self.over = True
        self.timer += 1
        if outcome != "completed" and not any(s != "refused" for _, s in self.attempts):
            outcome = "refused"  # no seller was called
        ttft = None if self.first_byte is None else self.first_byte - self.t_arrival
        served = self.trade.listing.id if self.trade.listing is not None else None
        self.eng.request_done(self, outcome, error_code, ttft, served)
