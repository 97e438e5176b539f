"""POST /v1/chat/completions and /v1/embeddings: pre-parse, authenticate, rank, admit, forward with
fallback, splice, settle. The order of these steps is the request life cycle in ARCHITECTURE.md.
Another kind of endpoint subclasses `Inference` and overrides `_hold` and `_relay` (gateway/speech.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from dragonfly.domain.health import stream_outcome
from dragonfly.domain.money import worst_case_hold
from dragonfly.domain.trade import RELAY, AttemptPlan, Step, UpstreamFailureKind
from dragonfly.errors import (
    DragonflyError,
    InvalidRequest,
    ServiceUnavailable,
    UpstreamError,
)
from dragonfly.gateway.auth import check_ip, client_ip
from dragonfly.gateway.eager import start_now
from dragonfly.gateway.failpoints import Failpoints
from dragonfly.gateway.http import read_body, send_json
from dragonfly.gateway.legs import Leg, Route, continuation_body
from dragonfly.gateway.override import Override, override_profile, parse_override
from dragonfly.gateway.routing import plan_route
from dragonfly.gateway.snapshot import ListingInfo, ProfileInfo
from dragonfly.gateway.trade import Attempt, TradeState, Usage, stream_throughput_tps, usage_from
from dragonfly.gateway.upstream import (
    H1Response,
    UpstreamConnectError,
    UpstreamDrained,
    UpstreamFailure,
    UpstreamTimedOut,
)
from dragonfly.ids import new_id
from dragonfly.native import NativeError
from dragonfly.native.sse import Splicer, rewrite_completion
from dragonfly.native.tokens import preparse_request, substitute_model
from dragonfly.storage.ports import CommitOutcomeUnknown
from dragonfly.storage.state.ports import AdmissionRequest

if TYPE_CHECKING:
    from dragonfly.gateway.runtime import Runtime

log = logging.getLogger("dragonfly.gateway.chat")

DONE = b"data: [DONE]\n\n"
# Completion tokens reserved when the buyer sets no max_tokens (the hold is the worst case we admit).
DEFAULT_COMPLETION_HOLD = 4096
# Prompt tokens may be counted differently by the seller's tokenizer: reserve some headroom.
PROMPT_HOLD_RATIO = 1.25
PROMPT_HOLD_SLACK = 64
MAX_UPSTREAM_BODY = 32 * 1024 * 1024
SSE_HEADERS = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
# A call the drain deadline cut (gateway/drain.py): the buyer may retry it on another instance.
DRAINED_MESSAGE = "The gateway is shutting down; retry the request."


class _FellBack(Exception):
    """A seller's 200 failed before anything reached the buyer (its body broke off): the attempt is
    recorded as failed, its hold voided, and the plan said to try the next listing."""


def _upstream_error_message(raw: bytes) -> str | None:
    try:
        err = orjson.loads(raw).get("error")
        msg = err.get("message") if isinstance(err, dict) else err
        if isinstance(msg, str) and msg:
            return msg[:500]
    except (orjson.JSONDecodeError, AttributeError):
        pass
    return None


def chat_hold(listing: ListingInfo, prompt_tokens: int, completion_tokens: int) -> tuple[int, int]:
    """The worst case a chat or embeddings request can cost at `listing` (what admission reserves), and
    the prompt tokens settlement may bill: the counted prompt with headroom for another tokenizer, and
    `completion_tokens` (max_tokens x n, or the default) at most."""
    hold_prompt = int(prompt_tokens * PROMPT_HOLD_RATIO) + PROMPT_HOLD_SLACK
    hold = worst_case_hold(
        prompt_tokens=hold_prompt,
        max_completion_tokens=completion_tokens,
        # A cached-input price above the input price must not make cost exceed the hold.
        input_price=max(listing.input_price, listing.cached_input_price or 0),
        output_price=listing.output_price,
    )
    return hold, hold_prompt


NOT_RECORDED = "The trade could not be recorded; you were not charged."


def unconfirmed_message(trade_id: str) -> str:
    return (
        "The connection to the database was lost while the trade was recorded and it could not be"
        f" confirmed; GET /v1/generation?id={trade_id} shows whether you were charged."
    )


def part_unconfirmed_message(part_id: str) -> str:
    return (
        "The upstream provider failed mid-stream, and the connection to the database was lost while the"
        " part it had produced was recorded, so the stream was not continued; GET"
        f" /v1/generation?id={part_id} shows whether you were charged for that part."
    )


class TradeUnconfirmed(ServiceUnavailable):
    """A trade's commit whose outcome is not known (its answer was lost with the database connection and
    the database stayed unreachable): it may be recorded and charged, or not. Never "not charged"."""

    def __init__(self, trade_id: str) -> None:
        super().__init__(unconfirmed_message(trade_id), headers={"x-should-retry": "false"})
        self.trade_id = trade_id


# Bodies above this size are parsed/counted on a worker thread (the native calls release the GIL), so a
# huge prompt or answer never stalls the event loop and every other request on it.
OFF_LOOP_BYTES = 256 * 1024

_R = TypeVar("_R")


async def _native_call(size: int, fn: Callable[..., _R], *args: Any) -> _R:
    if size >= OFF_LOOP_BYTES:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


class Inference:
    """One OpenAI endpoint relayed to listings of one kind (`chat` at /chat/completions, `embeddings`
    at /embeddings). Embeddings have no completion tokens and never stream."""

    def __init__(self, rt: Runtime, kind: str = "chat", upstream_path: str = "/chat/completions") -> None:
        self.rt = rt
        self.kind = kind
        self.upstream_path = upstream_path
        self.failpoints = Failpoints(rt.settings.failpoint)

    async def __call__(self, scope: Any, proto: Any, request_id: str) -> None:
        rt = self.rt
        headers = scope.headers
        # Authenticate from the headers first: from here on every refusal leaves a receipt.
        key = await rt.keys.authenticate(headers)
        trade = TradeState(request_id=request_id, key=key, model="", streamed=False)
        try:
            check_ip(key, client_ip(scope, headers, rt.settings.trusted_proxies))
            body = await read_body(proto, headers, rt.settings.max_body_bytes, rt.body_deadlines)
            try:
                pre = await _native_call(len(body), preparse_request, body)
            except NativeError as exc:
                raise InvalidRequest(f"Invalid request body: {exc}") from None
            if not pre.model:
                raise InvalidRequest("you must provide a model parameter", param="model")
            trade.model = pre.model
            trade.streamed = pre.stream and self.kind == "chat"
            await self._trade(proto, body, pre, trade)
        except DragonflyError as err:
            # Every authenticated request leaves a receipt, refused and failed ones too (no charge).
            try:
                await rt.settler.settle(trade.row("failed", None, None, err.code), [])
            except Exception as exc:
                log.error("could not record failed trade: %s", type(exc).__name__)
            raise

    def _candidates(
        self,
        pre: Any,
        key_profile: ProfileInfo,
        profile: ProfileInfo,
        override: Override | None,
        now: int,
        seed: int,
    ) -> tuple[list[ListingInfo], AttemptPlan]:
        """The listings this request may go to, best first, and the fallback plan (domain/trade.py)."""
        rt = self.rt
        return plan_route(
            rt.router,
            rt.snapshot,
            kind=self.kind,
            model=pre.model,
            prompt_tokens=pre.prompt_tokens,
            max_tokens=pre.max_tokens if self.kind == "chat" else None,
            key_profile=key_profile,
            profile=profile,
            override=override,
            now_ms=now,
            seed=seed,
            observe_rank=rt.telemetry.rank_time.observe,
        )

    async def _trade(self, proto: Any, body: bytes, pre: Any, trade: TradeState) -> None:
        """Route, then attempt; every decision is offered to the routing-activity recorder (sampled)."""
        rt = self.rt
        snap = rt.snapshot
        now = int(time.time() * 1000)
        seed = zlib.crc32(trade.request_id.encode())
        override = parse_override(pre.dragonfly)
        key_profile = rt.router.profile_for(snap, trade.key)
        profile = override_profile(snap, trade.key.account_id, key_profile, override)
        outcome, error_code = "failed", None
        try:
            candidates, plan = self._candidates(pre, key_profile, profile, override, now, seed)
            outcome, error_code = await self._attempts(
                proto, body, pre, trade, candidates, plan, now, profile.hedge_after_ms
            )
        except DragonflyError as err:
            error_code = err.code
            raise
        finally:
            if outcome != "completed" and not any(a.status != "refused" for a in trade.attempts):
                outcome = "refused"  # no seller was called
            rt.activity.record(
                model=pre.model,
                profile_id=profile.id,
                strategy=profile.strategy,
                now_ms=now,
                seed=seed,
                chosen_listing_id=trade.listing.id if trade.listing is not None else None,
                outcome=outcome,
                error_code=error_code,
                trade_id=trade.request_id,
            )
            rt.telemetry.trade_done(self.kind, trade, pre.model, outcome, error_code)

    async def _attempts(
        self,
        proto: Any,
        body: bytes,
        pre: Any,
        trade: TradeState,
        candidates: list[ListingInfo],
        plan: AttemptPlan,
        now: int,
        hedge_after_ms: int | None = None,
    ) -> tuple[str, str | None]:
        """Admit and forward, listing after listing, as the plan says; returns the trade's status."""
        completion_hold = 0 if self.kind != "chat" else pre.max_tokens or DEFAULT_COMPLETION_HOLD
        trade.hold_completion_tokens = completion_hold * max(1, pre.n)
        route = Route(iter(candidates), plan, body, pre, now, hedge_after_ms)
        if hedge_after_ms is not None and plan.max_attempts > 1:
            return await self._race(proto, trade, route)
        # Without hedging: one leg at a time, the seller called inline (the hot path: no coroutine
        # frames beyond admission and the relay).
        upstream, path = self.rt.upstream, self.upstream_path
        while (leg := await self._admit_next(trade, route)) is not None:
            listing = leg.listing
            leg.t0 = time.perf_counter_ns()
            try:
                resp = await upstream.post(
                    listing.base_url + path,
                    listing.api_key,
                    substitute_model(route.body, listing.upstream_model),
                    accept_sse=trade.streamed,
                )
            except UpstreamFailure as exc:
                step = await self._outcome(trade, leg, plan, exc)
            else:
                if resp.status == 200:
                    try:
                        return await self._win(proto, resp, trade, leg, route)
                    except _FellBack:
                        continue
                step = await self._outcome(trade, leg, plan, resp)
            if step.error is not None:
                raise step.error
        raise plan.final_error()

    async def _race(self, proto: Any, trade: TradeState, route: Route) -> tuple[str, str | None]:
        """Hedged attempts: while one leg is in flight without a first byte `hedge_after_ms` after it
        started, the next listing starts beside it; the first byte wins and the other leg is dropped
        (connection closed, hold voided). A failed leg falls back as without hedging."""
        plan = route.plan
        racing: dict[asyncio.Future[H1Response], Leg] = {}
        exhausted = False

        async def start() -> None:
            nonlocal exhausted
            leg = await self._admit_next(trade, route)
            if leg is None:
                exhausted = True
                return
            leg.t0 = time.perf_counter_ns()
            racing[asyncio.ensure_future(self._send(leg, route.body, trade, read_first=True))] = leg

        try:
            await start()
            while racing:
                delay = None
                if not exhausted:
                    oldest = min(leg.t0 for leg in racing.values())
                    elapsed_ms = (time.perf_counter_ns() - oldest) // 1_000_000
                    delay = plan.hedge_delay_ms(route.hedge_after_ms, len(racing), elapsed_ms)
                done, _ = await asyncio.wait(
                    racing,
                    timeout=None if delay is None else delay / 1000,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not done:
                    await start()  # no first byte yet: hedge
                    continue
                for task in sorted(done, key=lambda t: racing[t].t0):
                    leg = racing.pop(task)
                    exc = task.exception()
                    step = await self._outcome(trade, leg, plan, exc if exc is not None else task.result())
                    if step is RELAY:
                        await self._drop_losers(trade, racing)
                        try:
                            return await self._win(proto, task.result(), trade, leg, route)
                        except _FellBack:
                            break  # the winner's body broke off: on to the next listing
                    if step.error is not None:
                        raise step.error
                if not racing and not exhausted:
                    await start()
            raise plan.final_error()
        finally:
            await self._drop_losers(trade, racing)

    async def _drop_losers(self, trade: TradeState, racing: dict[asyncio.Future[H1Response], Leg]) -> None:
        """Cancel the legs still racing: close their connections (the seller stops generating) and void
        their holds. Losing a race is not a seller failure: health is not told. A leg without a first
        byte tells the market its TTFT was at least its time so far (`Market.record_ttft_floor`): a listing
        that turned slow and is always hedged around would otherwise keep its old estimate, and its rank."""
        if not racing:
            return
        now = time.perf_counter_ns()
        market = self.rt.router.market
        for task, leg in racing.items():
            if not task.done():
                task.cancel()
                market.record_ttft_floor(leg.listing.id, (now - leg.t0) / 1e6)
            elif not task.cancelled() and task.exception() is None:
                task.result().close()
        await asyncio.gather(*racing, return_exceptions=True)
        for task, leg in racing.items():
            if task.done() and not task.cancelled() and task.exception() is None:
                task.result().close()  # it answered while being cancelled
            await self._fail_attempt(trade, leg, "cancelled", "hedge_lost", health=False)
        racing.clear()

    async def _admit_next(self, trade: TradeState, route: Route) -> Leg | None:
        """Admit the request at the next listing of the ranking that takes it; None when the ranking or
        the attempts are used up. A refusal that ends the trade (balance, budget) is raised."""
        rt, plan = self.rt, route.plan
        for listing in route.candidates:
            if not plan.may_attempt:
                return None
            pre = route.pre
            if listing.count_encoding != pre.encoding:
                # Count the prompt with the tokenizer this listing uses (one more pass over the body).
                pre = route.pre = await _native_call(
                    len(route.body), preparse_request, route.body, listing.count_encoding
                )
            hold = self._hold(trade, listing, pre)
            hold_id = route.hold_id(trade.request_id)
            adm = await rt.state.admit(
                AdmissionRequest(
                    request_id=hold_id,
                    account_id=trade.key.account_id,
                    key_id=trade.key.id,
                    listing_id=listing.id,
                    hold_micros=hold,
                    key_budget_micros=trade.key.budget_micros,
                    listing_rpm_cap=listing.rpm_cap,
                    listing_concurrency_cap=listing.concurrency_cap,
                    now_ms=route.now_ms,
                    lease_ttl_ms=int(rt.settings.hold_lease_s * 1000),
                )
            )
            if not adm.ok:
                cap = listing.rpm_cap if adm.refusal == "listing_rpm" else listing.concurrency_cap
                step = plan.refused(adm.refusal or "", adm.retry_after_s, cap)
                if step.error is not None:
                    raise step.error
                trade.attempts.append(Attempt(listing.id, listing.provider, "refused", 0, adm.refusal))
                continue
            plan.started()
            route.legs += 1
            self.failpoints.hit("after_reserve")
            return Leg(listing, pre, hold, hold_id)
        return None

    async def _send(self, leg: Leg, body: bytes, trade: TradeState, read_first: bool) -> H1Response:
        """Send the request to the leg's seller; returns at its answer's head, or — `read_first`, a 200
        stream — at its first body piece (`leg.first`): what a hedged leg races for."""
        resp = await self.rt.upstream.post(
            leg.listing.base_url + self.upstream_path,
            leg.listing.api_key,
            substitute_model(body, leg.listing.upstream_model),
            accept_sse=trade.streamed,
        )
        if read_first and resp.status == 200 and trade.streamed:
            try:
                leg.first = await resp.read_some()
            except BaseException:
                resp.close()
                raise
        return resp

    async def _outcome(
        self, trade: TradeState, leg: Leg, plan: AttemptPlan, result: H1Response | BaseException
    ) -> Step:
        """The plan's step after a leg's seller answered (or could not be reached); a failed leg's
        attempt is recorded and its hold voided here."""
        if isinstance(result, UpstreamDrained):
            # Our shutdown, not the seller's failure: no health report, and no other listing either.
            await self._fail_attempt(trade, leg, "cancelled", "drained", health=False)
            return Step("stop", ServiceUnavailable(DRAINED_MESSAGE))
        if isinstance(result, UpstreamTimedOut | UpstreamConnectError):
            kind: UpstreamFailureKind = "timeout" if isinstance(result, UpstreamTimedOut) else "connect_error"
            await self._fail_attempt(trade, leg, kind, kind)
            return plan.unreachable(kind)
        if isinstance(result, UpstreamFailure):
            await self._fail_attempt(trade, leg, "error", "broken")
            return plan.broken()
        if isinstance(result, BaseException):
            raise result
        if result.status == 200:
            return RELAY
        try:
            raw = await result.read(64 * 1024)
        except UpstreamFailure:
            raw = b""
        result.release()
        await self._fail_attempt(trade, leg, "error", f"http_{result.status}")
        return plan.answered(result.status, _upstream_error_message(raw))

    async def _win(
        self, proto: Any, resp: H1Response, trade: TradeState, leg: Leg, route: Route
    ) -> tuple[str, str | None]:
        self._take(trade, leg)
        latency = (time.perf_counter_ns() - leg.t0) // 1_000_000
        trade.attempts.append(Attempt(leg.listing.id, leg.listing.provider, "ok", latency))
        self.failpoints.hit("during_upstream")
        return await self._relay(proto, resp, trade, leg, route)

    def _take(self, trade: TradeState, leg: Leg) -> None:
        """The trade is served by `leg` from now on: its listing, hold and what the hold covers."""
        trade.listing, trade.hold, trade.hold_id = leg.listing, leg.hold, leg.hold_id
        trade.served_ns = leg.t0
        if trade.attempts:  # another leg was admitted before: restore this listing's hold basis
            self._hold(trade, leg.listing, leg.pre)

    def _hold(self, trade: TradeState, listing: ListingInfo, pre: Any) -> int:
        """The worst case the request can cost at `listing` (what admission reserves), and the prompt
        tokens settlement may bill (`trade.hold_prompt_tokens`)."""
        hold, trade.hold_prompt_tokens = chat_hold(listing, pre.prompt_tokens, trade.hold_completion_tokens)
        return hold

    async def _relay(
        self, proto: Any, resp: H1Response, trade: TradeState, leg: Leg, route: Route
    ) -> tuple[str, str | None]:
        """Relay the seller's 200 answer to the buyer and settle the trade; returns its status."""
        if trade.streamed:
            return await self._relay_stream(proto, resp, trade, leg, route)
        await self._relay_body(proto, resp, trade, leg, route.plan)
        return "completed", None

    async def _fail_attempt(
        self, trade: TradeState, leg: Leg, status: str, error_type: str, health: bool = True
    ) -> None:
        """Record a leg that will not serve the trade and void its hold (a failed attempt costs nothing);
        the listing's health hears of it unless `health` is False (a hedge that lost its race)."""
        listing = leg.listing
        latency = (time.perf_counter_ns() - leg.t0) // 1_000_000 if leg.t0 else 0
        trade.attempts.append(Attempt(listing.id, listing.provider, status, latency, error_type))
        await self.rt.state.settle(leg.hold_id, 0)
        if health:
            self._leg_failed(leg, error_type)
        if trade.hold_id == leg.hold_id:
            trade.listing, trade.hold, trade.hold_id = None, 0, ""

    def _leg_failed(self, leg: Leg, error_type: str) -> None:
        self.rt.router.market.record_result(leg.listing.id, False, None, None, int(time.time() * 1000))
        self.rt.health.failed(leg.listing, error_type)

    async def _settle(
        self, trade: TradeState, usage: Usage, status: str, error_code: str | None = None
    ) -> Awaitable[None]:
        """Record the trade at its durable point, then hand its hold's release (the hold becomes the
        charge) to the state store; returns that release, which the caller awaits with `_released` once
        the answer is out. The buyer does not wait for it (on Redis a round trip, ~0.1 ms at concurrency
        1), yet it is issued before the answer leaves: the memory store applies it, the Redis client
        writes it on its one connection (whose commands Redis runs in order) in `start_now`'s first step.
        So whatever the buyer does next — another request on any instance, a balance read — sees it.
        (While Redis is unreachable it waits in the store's queue instead, behind older ones; every
        admission on this instance flushes that queue first, and admissions fail closed meanwhile.)"""
        rt = self.rt
        cost = trade.cost(usage, rt.settings.platform_fee_bps, rt.settings.reserve_bps)
        self.failpoints.hit("before_commit")
        try:
            await rt.settler.settle(trade.row(status, usage, cost, error_code), trade.postings(cost))
        except CommitOutcomeUnknown:
            # Committed or not, nobody can tell until the database answers again: count the charge in
            # the state store (over-counting until the next re-seed, never under), and say so.
            await rt.state.settle(trade.hold_id, cost.charge)
            log.error("trade commit not confirmed: the database connection was lost")
            raise TradeUnconfirmed(trade.request_id) from None
        except Exception as exc:
            # Not durably recorded: release the hold and charge nothing rather than guess.
            await rt.state.settle(trade.hold_id, 0)
            log.error("trade not recorded: %s", type(exc).__name__)
            raise ServiceUnavailable(NOT_RECORDED) from None
        self.failpoints.hit("after_commit")
        return start_now(rt.state.settle(trade.hold_id, cost.charge))

    async def _released(self, release: Awaitable[None]) -> None:
        """Wait for a release `_settle` started. Never raises (the answer has been sent): a release that
        failed leaves the hold to its lease, and the next re-seed counts the committed charge — as after
        a crash here (failpoint `after_response`)."""
        self.failpoints.hit("after_response")
        try:
            await release
        except Exception as exc:
            log.error("hold not released (its lease will lapse): %s", type(exc).__name__)

    def _record_health(self, trade: TradeState, ok: bool, usage: Usage) -> None:
        assert trade.listing is not None
        tps = None
        # Throughput only means something for a stream (a whole body arrives at once); it is the serving
        # leg's own, from when the request was sent to it (not the request's start: earlier attempts
        # are not this listing's time).
        if trade.streamed:
            leg_ms = (time.perf_counter_ns() - (trade.served_ns or trade.started_ns)) // 1_000_000
            tps = stream_throughput_tps(usage.completion, leg_ms, trade.ttft_ms)
        if stream_outcome(ok, trade.finish_reason) != "neutral":  # a buyer's cancel is not the seller's
            self.rt.router.market.record_result(
                trade.listing.id,
                ok,
                float(trade.ttft_ms) if trade.ttft_ms is not None else None,
                tps,
                int(time.time() * 1000),
            )
        self.rt.health.finished(trade.listing, ok, trade.finish_reason)

    async def _relay_body(
        self, proto: Any, resp: H1Response, trade: TradeState, leg: Leg, plan: AttemptPlan
    ) -> None:
        pre = leg.pre
        step = None
        try:
            raw = await resp.read(MAX_UPSTREAM_BODY)
        except UpstreamDrained:
            await self._fail_attempt(trade, leg, "cancelled", "drained", health=False)
            raise ServiceUnavailable(DRAINED_MESSAGE) from None
        except UpstreamFailure as exc:
            # The body broke off (or went silent) after its 200 head, before anything reached the buyer:
            # a failed attempt like one before the head, so the plan may fall back (`timeout`, else
            # `5xx`), and the leg's `ok` attempt becomes its failure.
            if trade.attempts and trade.attempts[-1].status == "ok":
                trade.attempts.pop()
            if isinstance(exc, UpstreamTimedOut):
                await self._fail_attempt(trade, leg, "timeout", "timeout")
                step = plan.unreachable("timeout")
            else:
                await self._fail_attempt(trade, leg, "error", "broken_body")
                step = plan.broken()
        finally:
            resp.release()
        if step is not None:
            if step.error is not None:
                raise step.error
            raise _FellBack
        trade.ttft_ms = (time.perf_counter_ns() - leg.t0) // 1_000_000
        assert trade.listing is not None
        try:
            out = await _native_call(
                len(raw), rewrite_completion, raw, trade.request_id, pre.model, trade.listing.count_encoding
            )
        except NativeError:
            await self._fail_attempt(trade, leg, "error", "invalid_body")
            raise UpstreamError("The upstream provider sent an invalid response.") from None
        if out["upstream_error"] is not None:
            await self._fail_attempt(trade, leg, "error", "upstream_error_body")
            raise UpstreamError("The upstream provider returned an error.")
        trade.finish_reason = out["finish_reason"]
        usage = usage_from(
            out["usage"],
            pre.prompt_tokens,
            out["counted_completion_tokens"],
            trade.listing,
            pre,
            out["tool_calls"],
        )
        release = await self._settle(trade, usage, "completed")
        send_json(proto, 200, out["body"], trade.request_id)
        await self._released(release)
        self._record_health(trade, True, usage)

    async def _relay_stream(
        self, proto: Any, resp: H1Response, trade: TradeState, leg: Leg, route: Route
    ) -> tuple[str, str | None]:
        assert trade.listing is not None
        pre = route.pre
        splicer = Splicer(
            trade.request_id,
            pre.model,
            pre.include_usage,
            int(time.time()),
            encoding=trade.listing.count_encoding,
        )
        splicer.set_prompt_tokens(leg.pre.prompt_tokens)
        # Nothing reads the seller's head once its body is relayed: don't hold its header list for the
        # stream's whole life (a tuple and two bytes objects per header: 0.8 KiB for the benchmark
        # seller's 8 headers, more for a real seller's).
        resp.headers = []
        transport = proto.response_stream(200, [*SSE_HEADERS, ("x-request-id", trade.request_id)])
        status, error_code = "completed", None
        # No reader task: the seller connection's callback relays each piece (`relay`), and the client
        # going away drops the seller's connection, which ends the pipe at once (and stops the seller
        # generating). `drop` reads `resp` when it runs: a continuation's seller is dropped alike.
        gone = asyncio.ensure_future(proto.client_disconnect())
        drop = lambda _f: resp.close()  # noqa: E731
        gone.add_done_callback(drop)
        failpoints = self.failpoints
        t0 = leg.t0

        def relay(piece: bytes) -> bool:
            # Runs in the seller connection's data callback, once per piece that arrives.
            out = splicer.feed(piece)
            if out:
                if trade.ttft_ms is None:
                    trade.ttft_ms = (time.perf_counter_ns() - t0) // 1_000_000
                if out.endswith(DONE):
                    # The last byte waits until the trade is committed (ARCHITECTURE.md, life cycle step 7).
                    out = out[: -len(DONE)]
                if out:
                    # Granian queues the bytes on an unbounded channel and returns an awaitable that is
                    # already complete, so nothing is lost by not awaiting it here; a client that went
                    # away shows up as `gone` instead.
                    transport.send_bytes(out)
                    failpoints.hit("mid_stream")
            return splicer.saw_done  # anything after [DONE] is ignored; don't wait for the close

        tail = b""
        drained = False
        try:
            while True:
                try:
                    if not (leg.first and relay(leg.first)):  # a hedged leg's first piece came first
                        await resp.pipe(relay)
                    tail = splicer.finish()
                    break
                except UpstreamFailure as exc:
                    if gone.done():
                        status = "cancelled"
                        break
                    if isinstance(exc, UpstreamDrained):
                        # The drain deadline: end it here (no continuation); what was delivered is billed.
                        status, error_code, drained = "failed", "service_unavailable", True
                        tail = splicer.error_event(DRAINED_MESSAGE, "service_unavailable")
                        break
                    log.warning("upstream stream broke: %s", type(exc).__name__)
                    resp.close()
                    taken = await self._continue_stream(trade, splicer, leg, route, exc)
                    if isinstance(taken, TradeUnconfirmed):
                        # The broken part's record may or may not be in the books (and charged): the
                        # trade bills nothing more for this leg, and the stream says where to look.
                        status, error_code = "failed", "service_unavailable"
                        tail = splicer.error_event(
                            part_unconfirmed_message(taken.trade_id), "service_unavailable"
                        )
                        self._part_billed(trade, leg, "error", taken.trade_id)  # no charge again
                        break
                    if taken is None or isinstance(taken, DragonflyError):
                        # Not continued: the documented error event; a refused next leg says why.
                        status, error_code = "failed", "upstream_error" if taken is None else taken.code
                        tail = splicer.error_event(
                            "The upstream provider failed mid-stream.", "upstream_error"
                        )
                        break
                    resp, leg = taken
                    resp.headers = []
        except NativeError as exc:
            status, error_code = "failed", "upstream_error"
            log.warning("upstream stream unusable: %s", type(exc).__name__)
            tail = splicer.error_event("The upstream provider sent an invalid stream.", "upstream_error")
        except Exception:  # the client went away while we were writing to it
            status = "cancelled"
        finally:
            gone.remove_done_callback(drop)
            if gone.done():
                status = "cancelled"
            gone.cancel()
            if status == "completed":
                resp.release()  # kept alive when the seller's body ended cleanly
            else:
                resp.close()  # on cancel this stops the seller generating at once
        if splicer.upstream_error is not None and status == "completed":
            status, error_code = "failed", "upstream_error"
        trade.finish_reason = splicer.finish_reason or ("error" if status == "failed" else None)
        if trade.listing is None:
            # Continued, and no listing took the rest: each part served is billed as its own trade.
            usage = None
        else:
            usage = usage_from(
                splicer.usage if splicer.usage_source == "upstream" else None,
                leg.pre.prompt_tokens,
                splicer.counted_completion_tokens - leg.counted_before,
                trade.listing,
                leg.pre,
                splicer.tool_calls,
            )
        release: Awaitable[None] | None = None
        try:
            if usage is None:
                await self.rt.settler.settle(trade.row(status, None, None, error_code), [])
            else:
                release = await self._settle(trade, usage, status, error_code)
        except Exception as exc:
            # Headers are gone already: end the stream with an error event instead of a silent close.
            # `finish()` has run: its bytes, held back, go without their [DONE], the error in its place.
            log.error("stream settlement failed: %s", type(exc).__name__)
            message = exc.message if isinstance(exc, ServiceUnavailable) else NOT_RECORDED
            error = splicer.replace_done_with_error(message, "service_unavailable")
            if error:
                tail = tail.removesuffix(DONE) + error
        if status != "cancelled":
            with contextlib.suppress(Exception):
                # Exactly one [DONE], and only now that the trade is committed.
                await transport.send_bytes(tail if tail.endswith(DONE) else tail + DONE)
        # Granian ends the response when the transport is released. After a broken stream the seller
        # error's traceback still holds this frame (and `relay`'s cell): drop the transport explicitly,
        # or the buyer's connection stays open until the garbage collector runs.
        transport = None
        if release is not None:
            await self._released(release)
        if usage is not None and not drained:
            self._record_health(trade, status == "completed", usage)
        return status, error_code

    async def _continue_stream(
        self, trade: TradeState, splicer: Any, leg: Leg, route: Route, exc: UpstreamFailure
    ) -> tuple[H1Response, Leg] | DragonflyError | None:
        """A stream broke after the buyer got bytes from `leg`: go on at the next listing with the text
        so far as an assistant prefix (domain/trade.py `continuation_refusal` says when not to). The
        broken part is billed first, as a trade of its own, to the seller that produced it; the prompt
        is not billed twice (the seller that broke bears it). Returns the new seller's 200 answer and
        its leg (now the trade's), or None — or the refusal that ended it when the buyer's balance or the
        key's budget cannot cover the next leg: the stream ends with an error event."""
        produced = splicer.counted_completion_tokens - leg.counted_before
        pre = route.pre
        left = None if pre.max_tokens is None else pre.max_tokens - splicer.counted_completion_tokens
        refusal = route.plan.continuation_refusal(
            broke_as="timeout" if isinstance(exc, UpstreamTimedOut) else "5xx",
            choices=pre.n,
            tool_calls=splicer.tool_call_open or bool(splicer.tool_calls),
            finish_reason=splicer.finish_reason,
            completion_left=left,
        )
        if refusal is not None:
            log.info("stream not continued: %s", refusal)
            return None  # the trade stays with this leg: billed as a broken stream
        try:
            part_id = await self._bill_part(trade, leg, produced)
        except TradeUnconfirmed as unknown:
            return unknown  # recorded or not, nobody can tell: not continued, and not billed again
        except DragonflyError:
            return None  # not recorded (not charged): the stream ends here, billed as a broken stream
        self._part_billed(trade, leg, "continued", part_id)
        route.body = continuation_body(route.body, splicer.content_so_far, left)
        route.pre = await _native_call(len(route.body), preparse_request, route.body, pre.encoding)
        trade.hold_completion_tokens = left if left is not None else DEFAULT_COMPLETION_HOLD
        plan = route.plan
        while True:
            try:
                nxt = await self._admit_next(trade, route)
            except DragonflyError as err:  # insufficient balance, budget exceeded
                log.info("stream not continued: %s", err.code)
                return err
            if nxt is None:
                break
            nxt.t0 = time.perf_counter_ns()
            nxt.counted_before = splicer.counted_completion_tokens
            try:
                resp = await self._send(nxt, route.body, trade, read_first=False)
            except UpstreamFailure as failure:
                step = await self._outcome(trade, nxt, plan, failure)
            else:
                step = await self._outcome(trade, nxt, plan, resp)
                if step is RELAY:
                    splicer.begin_continuation()
                    self._take(trade, nxt)
                    latency = (time.perf_counter_ns() - nxt.t0) // 1_000_000
                    trade.attempts.append(Attempt(nxt.listing.id, nxt.listing.provider, "ok", latency))
                    return resp, nxt
            if step.error is not None:
                return None
        return None

    def _part_billed(self, trade: TradeState, leg: Leg, status: str, part_id: str) -> None:
        """`leg`'s stream broke and its part was billed as a trade of its own (`part_id`, `_bill_part`,
        which settled `leg`'s hold): the leg's `ok` attempt (recorded when it won) becomes `status`,
        linking the part; the listing's health hears of the break; and the trade keeps no listing — the
        next leg's becomes it, or, with none, it is recorded without a charge."""
        latency = (time.perf_counter_ns() - leg.t0) // 1_000_000
        if trade.attempts and trade.attempts[-1].listing_id == leg.listing.id:
            trade.attempts.pop()
        trade.attempts.append(
            Attempt(leg.listing.id, leg.listing.provider, status, latency, "broken_stream", part_id)
        )
        self._leg_failed(leg, "broken_stream")
        trade.listing, trade.hold, trade.hold_id = None, 0, ""

    async def _bill_part(self, trade: TradeState, leg: Leg, completion_tokens: int) -> str:
        """Record the part of a continued stream that `leg`'s seller produced as a trade of its own
        (status `continued`): its completion tokens at its prices, no prompt. Returns its id."""
        part = TradeState(
            request_id=new_id(),
            key=trade.key,
            model=trade.model,
            streamed=True,
            started_ns=trade.started_ns,
            created_ms=trade.created_ms,
        )
        part.listing, part.hold, part.hold_id = leg.listing, leg.hold, leg.hold_id
        part.hold_prompt_tokens, part.hold_completion_tokens = (
            trade.hold_prompt_tokens,
            trade.hold_completion_tokens,
        )
        part.ttft_ms = trade.ttft_ms
        latency = (time.perf_counter_ns() - leg.t0) // 1_000_000
        part.attempts.append(
            Attempt(leg.listing.id, leg.listing.provider, "continued", latency, "broken_stream")
        )
        usage = Usage(completion=completion_tokens, counted_completion=completion_tokens)
        await self._released(await self._settle(part, usage, "continued", "upstream_error"))
        return part.request_id
