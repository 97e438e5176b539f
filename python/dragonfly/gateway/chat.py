"""POST /v1/chat/completions and /v1/embeddings: pre-parse, authenticate, rank, admit, forward with
fallback, splice, settle. The order of these steps is the request life cycle in ARCHITECTURE.md.
Another kind of endpoint subclasses `Inference` and overrides `_hold` and `_relay` (gateway/speech.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from dragonfly.domain.money import worst_case_hold
from dragonfly.domain.trade import (
    AttemptPlan,
    UpstreamFailureKind,
    context_refusal,
    tokens_needed,
    within_context,
)
from dragonfly.errors import (
    DragonflyError,
    InvalidRequest,
    NoListingMatchesProfile,
    ServiceUnavailable,
    UpstreamError,
    UpstreamTimeout,
)
from dragonfly.gateway.auth import check_ip, client_ip
from dragonfly.gateway.failpoints import Failpoints
from dragonfly.gateway.http import read_body, send_json
from dragonfly.gateway.override import (
    Override,
    narrow,
    override_profile,
    parse_override,
    stricter_fallback,
    within_key_profile,
)
from dragonfly.gateway.snapshot import ListingInfo, ProfileInfo
from dragonfly.gateway.trade import Attempt, TradeState, Usage, usage_from
from dragonfly.gateway.upstream import (
    H1Response,
    UpstreamConnectError,
    UpstreamFailure,
    UpstreamTimedOut,
)
from dragonfly.native import NativeError
from dragonfly.native.sse import Splicer, rewrite_completion
from dragonfly.native.tokens import preparse_request, substitute_model
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


def _upstream_error_message(raw: bytes) -> str | None:
    try:
        err = orjson.loads(raw).get("error")
        msg = err.get("message") if isinstance(err, dict) else err
        if isinstance(msg, str) and msg:
            return msg[:500]
    except (orjson.JSONDecodeError, AttributeError):
        pass
    return None


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
            body = await read_body(proto, headers, rt.settings.max_body_bytes)
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
        snap = rt.snapshot
        needed = tokens_needed(pre.prompt_tokens, pre.max_tokens if self.kind == "chat" else None)
        listed = [x for x in snap.listings_by_model.get(pre.model, ()) if x.kind == self.kind and x.routable]
        if listed and not within_context(listed, needed):
            # Refused before any seller sees it: no listing of this model could take the prompt.
            largest = max(x.context_length or 0 for x in listed)
            raise context_refusal(pre.model, pre.prompt_tokens, pre.max_tokens, largest)
        attempts, retry_on = profile.fallback_attempts, profile.retry_on
        # A short list is enough to fall back on; a filtering override sees the whole ranking.
        limit = attempts + 4 if override is None else len(listed) + 1
        candidates = rt.router.candidates(snap, profile, pre.model, self.kind, now, seed, limit)
        if profile is not key_profile:
            candidates = within_key_profile(
                rt.router.market, key_profile, snap, pre.model, now, seed, candidates
            )
            attempts, retry_on = stricter_fallback(profile, key_profile)
        candidates = narrow(candidates, override, pre.model)
        fitting = within_context(candidates, needed)
        if not fitting:
            raise NoListingMatchesProfile(
                f"No listing for `{pre.model}` that satisfies the routing profile has a context window "
                f"of {needed} tokens.",
                headers={"x-should-retry": "false"},
            )
        return fitting, AttemptPlan(attempts, retry_on)

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
            outcome, error_code = await self._attempts(proto, body, pre, trade, candidates, plan, now)
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

    async def _attempts(
        self,
        proto: Any,
        body: bytes,
        pre: Any,
        trade: TradeState,
        candidates: list[ListingInfo],
        plan: AttemptPlan,
        now: int,
    ) -> tuple[str, str | None]:
        """Admit and forward, listing after listing, as the plan says; returns the trade's status."""
        rt = self.rt
        completion_hold = 0 if self.kind != "chat" else pre.max_tokens or DEFAULT_COMPLETION_HOLD
        trade.hold_completion_tokens = completion_hold * max(1, pre.n)
        for listing in candidates:
            if not plan.may_attempt:
                break
            if listing.count_encoding != pre.encoding:
                # Count the prompt with the tokenizer this listing uses (one more pass over the body).
                pre = await _native_call(len(body), preparse_request, body, listing.count_encoding)
            hold = self._hold(trade, listing, pre)
            adm = await rt.state.admit(
                AdmissionRequest(
                    request_id=trade.request_id,
                    account_id=trade.key.account_id,
                    key_id=trade.key.id,
                    listing_id=listing.id,
                    hold_micros=hold,
                    key_budget_micros=trade.key.budget_micros,
                    listing_rpm_cap=listing.rpm_cap,
                    listing_concurrency_cap=listing.concurrency_cap,
                    now_ms=now,
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
            trade.listing, trade.hold = listing, hold
            self.failpoints.hit("after_reserve")
            t0 = time.perf_counter_ns()
            try:
                resp = await rt.upstream.post(
                    listing.base_url + self.upstream_path,
                    listing.api_key,
                    substitute_model(body, listing.upstream_model),
                    accept_sse=trade.streamed,
                )
            except (UpstreamTimedOut, UpstreamConnectError) as exc:
                kind: UpstreamFailureKind = (
                    "timeout" if isinstance(exc, UpstreamTimedOut) else "connect_error"
                )
                await self._fail_attempt(trade, kind, t0, kind)
                step = plan.unreachable(kind)
            else:
                if resp.status == 200:
                    trade.attempts.append(Attempt(listing.id, listing.provider, "ok", 0))
                    self.failpoints.hit("during_upstream")
                    return await self._relay(proto, resp, pre, trade, t0)
                try:
                    raw = await resp.read(64 * 1024)
                except UpstreamFailure:
                    raw = b""
                resp.release()
                await self._fail_attempt(trade, "error", t0, f"http_{resp.status}")
                step = plan.answered(resp.status, _upstream_error_message(raw))
            if step.error is not None:
                raise step.error
        raise plan.final_error()

    def _hold(self, trade: TradeState, listing: ListingInfo, pre: Any) -> int:
        """The worst case the request can cost at `listing` (what admission reserves), and the prompt
        tokens settlement may bill (`trade.hold_prompt_tokens`)."""
        trade.hold_prompt_tokens = int(pre.prompt_tokens * PROMPT_HOLD_RATIO) + PROMPT_HOLD_SLACK
        return worst_case_hold(
            prompt_tokens=trade.hold_prompt_tokens,
            max_completion_tokens=trade.hold_completion_tokens,
            # A cached-input price above the input price must not make cost exceed the hold.
            input_price=max(listing.input_price, listing.cached_input_price or 0),
            output_price=listing.output_price,
        )

    async def _relay(
        self, proto: Any, resp: H1Response, pre: Any, trade: TradeState, t0: int
    ) -> tuple[str, str | None]:
        """Relay the seller's 200 answer to the buyer and settle the trade; returns its status."""
        if trade.streamed:
            return await self._relay_stream(proto, resp, pre, trade, t0)
        await self._relay_body(proto, resp, pre, trade, t0)
        return "completed", None

    async def _fail_attempt(self, trade: TradeState, status: str, t0: int, error_type: str) -> None:
        assert trade.listing is not None
        latency = (time.perf_counter_ns() - t0) // 1_000_000
        trade.attempts.append(Attempt(trade.listing.id, trade.listing.provider, status, latency, error_type))
        await self.rt.state.settle(trade.request_id, 0)  # void the hold: a failed attempt costs nothing
        self.rt.router.market.record_result(trade.listing.id, False, None, None, int(time.time() * 1000))
        self.rt.health.failed(trade.listing, error_type)
        trade.listing, trade.hold = None, 0

    async def _settle(
        self, trade: TradeState, usage: Usage, status: str, error_code: str | None = None
    ) -> None:
        rt = self.rt
        cost = trade.cost(usage, rt.settings.platform_fee_bps, rt.settings.reserve_bps)
        self.failpoints.hit("before_commit")
        try:
            await rt.settler.settle(trade.row(status, usage, cost, error_code), trade.postings(cost))
        except Exception as exc:
            # Not durably recorded: release the hold and charge nothing rather than guess.
            await rt.state.settle(trade.request_id, 0)
            log.error("trade not recorded: %s", type(exc).__name__)
            raise ServiceUnavailable("The trade could not be recorded; you were not charged.") from None
        self.failpoints.hit("after_commit")
        await rt.state.settle(trade.request_id, cost.charge)

    def _record_health(self, trade: TradeState, ok: bool, usage: Usage) -> None:
        assert trade.listing is not None
        tps = None
        total_ms = trade.elapsed_ms()
        if trade.ttft_ms is not None and total_ms > trade.ttft_ms and usage.completion:
            tps = usage.completion * 1000.0 / (total_ms - trade.ttft_ms)
        self.rt.router.market.record_result(
            trade.listing.id,
            ok,
            float(trade.ttft_ms) if trade.ttft_ms is not None else None,
            tps,
            int(time.time() * 1000),
        )
        self.rt.health.finished(trade.listing, ok, trade.finish_reason)

    async def _relay_body(self, proto: Any, resp: H1Response, pre: Any, trade: TradeState, t0: int) -> None:
        try:
            raw = await resp.read(MAX_UPSTREAM_BODY)
        except UpstreamTimedOut:
            await self._fail_attempt(trade, "timeout", t0, "timeout")
            raise UpstreamTimeout("The upstream provider timed out.") from None
        except UpstreamFailure as exc:
            await self._fail_attempt(trade, "error", t0, type(exc).__name__)
            raise UpstreamError("The upstream provider failed while answering.") from None
        finally:
            resp.release()
        trade.ttft_ms = (time.perf_counter_ns() - t0) // 1_000_000
        assert trade.listing is not None
        try:
            out = await _native_call(
                len(raw), rewrite_completion, raw, trade.request_id, pre.model, trade.listing.count_encoding
            )
        except NativeError:
            await self._fail_attempt(trade, "error", t0, "invalid_body")
            raise UpstreamError("The upstream provider sent an invalid response.") from None
        if out["upstream_error"] is not None:
            await self._fail_attempt(trade, "error", t0, "upstream_error_body")
            raise UpstreamError("The upstream provider returned an error.")
        trade.finish_reason = out["finish_reason"]
        usage = usage_from(out["usage"], pre.prompt_tokens, out["counted_completion_tokens"])
        await self._settle(trade, usage, "completed")
        self._record_health(trade, True, usage)
        send_json(proto, 200, out["body"], trade.request_id)

    async def _relay_stream(
        self, proto: Any, resp: H1Response, pre: Any, trade: TradeState, t0: int
    ) -> tuple[str, str | None]:
        assert trade.listing is not None
        splicer = Splicer(
            trade.request_id,
            pre.model,
            pre.include_usage,
            int(time.time()),
            encoding=trade.listing.count_encoding,
        )
        splicer.set_prompt_tokens(pre.prompt_tokens)
        transport = proto.response_stream(200, [*SSE_HEADERS, ("x-request-id", trade.request_id)])
        status, error_code = "completed", None
        # No reader task: the seller connection's callback relays each piece (`relay`), and the client
        # going away drops the seller's connection, which ends the pipe at once (and stops the seller
        # generating).
        gone = asyncio.ensure_future(proto.client_disconnect())
        drop = lambda _f: resp.close()  # noqa: E731
        gone.add_done_callback(drop)
        failpoints = self.failpoints

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
        try:
            await resp.pipe(relay)
            tail = splicer.finish()
        except UpstreamFailure as exc:
            if gone.done():
                status = "cancelled"
            else:
                status, error_code = "failed", "upstream_error"
                log.warning("upstream stream broke: %s", type(exc).__name__)
                tail = splicer.error_event("The upstream provider failed mid-stream.", "upstream_error")
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
        usage = usage_from(
            splicer.usage if splicer.usage_source == "upstream" else None,
            pre.prompt_tokens,
            splicer.counted_completion_tokens,
        )
        try:
            await self._settle(trade, usage, status, error_code)
        except Exception as exc:
            # Headers are gone already: end the stream with an error event instead of a silent close.
            log.error("stream settlement failed: %s", type(exc).__name__)
            tail = splicer.error_event(
                "The trade could not be recorded; you were not charged.", "service_unavailable"
            )
        self._record_health(trade, status == "completed", usage)
        if status != "cancelled":
            with contextlib.suppress(Exception):
                # Exactly one [DONE], and only now that the trade is committed.
                await transport.send_bytes(tail if tail.endswith(DONE) else tail + DONE)
        # Granian ends the response when the transport is released. After a broken stream the seller
        # error's traceback still holds this frame (and `relay`'s cell): drop the transport explicitly,
        # or the buyer's connection stays open until the garbage collector runs.
        transport = None
        return status, error_code
