"""POST /v1/chat/completions and /v1/embeddings: pre-parse, authenticate, rank, admit, forward with
fallback, splice, settle. The order of these steps is the request life cycle in ARCHITECTURE.md; a
streamed answer is relayed by gateway/stream.py.
Another kind of endpoint subclasses `Inference` and overrides `_hold` and `_relay` (gateway/speech.py)."""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import orjson

from dragonfly.domain.health import stream_outcome
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
from dragonfly.gateway.holds import DEFAULT_COMPLETION_HOLD, chat_hold
from dragonfly.gateway.http import read_body, send_json
from dragonfly.gateway.legs import Leg, Route
from dragonfly.gateway.offload import native_call
from dragonfly.gateway.override import Override, override_profile, parse_override
from dragonfly.gateway.replies import DRAINED_MESSAGE, NOT_RECORDED, TradeUnconfirmed
from dragonfly.gateway.routing import plan_route
from dragonfly.gateway.snapshot import ListingInfo, ProfileInfo
from dragonfly.gateway.stream import relay_stream
from dragonfly.gateway.trade import Attempt, TradeState, Usage, stream_throughput_tps, usage_from
from dragonfly.gateway.upstream import (
    H1Response,
    UpstreamConnectError,
    UpstreamDrained,
    UpstreamFailure,
    UpstreamTimedOut,
)
from dragonfly.native import NativeError
from dragonfly.native.sse import rewrite_completion
from dragonfly.native.tokens import preparse_request, substitute_model
from dragonfly.storage.ports import CommitOutcomeUnknown
from dragonfly.storage.state.ports import AdmissionRequest

if TYPE_CHECKING:
    from dragonfly.gateway.runtime import Runtime

log = logging.getLogger("dragonfly.gateway.chat")

MAX_UPSTREAM_BODY = 32 * 1024 * 1024


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
                pre = await native_call(len(body), preparse_request, body)
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
                pre = route.pre = await native_call(
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
            return await relay_stream(self, proto, resp, trade, leg, route)
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
            out = await native_call(
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
