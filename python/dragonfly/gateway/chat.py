"""POST /v1/chat/completions and /v1/embeddings: pre-parse, authenticate, rank, admit, forward with
fallback, splice, settle. The order of these steps is the request life cycle in ARCHITECTURE.md."""

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
from dragonfly.errors import (
    BudgetExceeded,
    DragonflyError,
    InsufficientBalance,
    InvalidRequest,
    RateLimited,
    ServiceUnavailable,
    UpstreamError,
    UpstreamTimeout,
)
from dragonfly.gateway.auth import authenticate, check_ip, client_ip
from dragonfly.gateway.failpoints import Failpoints
from dragonfly.gateway.http import read_body, send_json
from dragonfly.gateway.override import narrow, override_profile, parse_override
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


def _upstream_error_message(raw: bytes) -> str:
    try:
        err = orjson.loads(raw).get("error")
        msg = err.get("message") if isinstance(err, dict) else err
        if isinstance(msg, str) and msg:
            return msg[:500]
    except (orjson.JSONDecodeError, AttributeError):
        pass
    return "The upstream provider rejected the request."


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
        body = await read_body(proto, headers, rt.settings.max_body_bytes)
        try:
            pre = await _native_call(len(body), preparse_request, body)
        except NativeError as exc:
            raise InvalidRequest(f"Invalid request body: {exc}") from None
        snap = rt.snapshot
        key = authenticate(snap, rt.hasher, headers)
        check_ip(key, client_ip(scope, headers, rt.settings.trusted_proxies))
        if not pre.model:
            raise InvalidRequest("you must provide a model parameter", param="model")
        streamed = pre.stream and self.kind == "chat"
        trade = TradeState(request_id=request_id, key=key, model=pre.model, streamed=streamed)
        try:
            await self._trade(proto, body, pre, trade)
        except DragonflyError as err:
            # Every authenticated request leaves a receipt, refused and failed ones too (no charge).
            try:
                await rt.settler.settle(trade.row("failed", None, None, err.code), [])
            except Exception as exc:
                log.error("could not record failed trade: %s", type(exc).__name__)
            raise

    async def _trade(self, proto: Any, body: bytes, pre: Any, trade: TradeState) -> None:
        rt = self.rt
        snap = rt.snapshot
        override = parse_override(pre.dragonfly)
        profile = override_profile(
            snap, trade.key.account_id, rt.router.profile_for(snap, trade.key), override
        )
        max_attempts = profile.fallback_attempts
        retry_on = profile.retry_on
        now = int(time.time() * 1000)
        seed = zlib.crc32(trade.request_id.encode())
        candidates = rt.router.candidates(snap, profile, pre.model, self.kind, now, seed, max_attempts + 4)
        candidates = narrow(candidates, override, pre.model)
        completion_hold = 0 if self.kind == "embeddings" else pre.max_tokens or DEFAULT_COMPLETION_HOLD
        trade.hold_prompt_tokens = int(pre.prompt_tokens * PROMPT_HOLD_RATIO) + PROMPT_HOLD_SLACK
        trade.hold_completion_tokens = completion_hold * max(1, pre.n)
        last_error: DragonflyError | None = None
        rate_limited: int | None = None
        limits: list[int] = []  # the caps that refused us, for the x-ratelimit-* headers
        tried = 0
        for listing in candidates:
            if tried >= max_attempts:
                break
            if listing.count_encoding != pre.encoding:
                # Count the prompt with the tokenizer this listing uses (one more pass over the body).
                pre = await _native_call(len(body), preparse_request, body, listing.count_encoding)
                trade.hold_prompt_tokens = int(pre.prompt_tokens * PROMPT_HOLD_RATIO) + PROMPT_HOLD_SLACK
            hold = worst_case_hold(
                prompt_tokens=trade.hold_prompt_tokens,
                max_completion_tokens=trade.hold_completion_tokens,
                # A cached-input price above the input price must not make cost exceed the hold.
                input_price=max(listing.input_price, listing.cached_input_price or 0),
                output_price=listing.output_price,
            )
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
                if adm.refusal == "insufficient_balance":
                    raise InsufficientBalance("Your account balance is too low for this request.")
                if adm.refusal == "budget_exceeded":
                    raise BudgetExceeded("This key has reached its monthly budget.")
                trade.attempts.append(Attempt(listing.id, listing.provider, "refused", 0, adm.refusal))
                rate_limited = min(rate_limited or adm.retry_after_s, adm.retry_after_s)
                limits.append(
                    (listing.rpm_cap if adm.refusal == "listing_rpm" else listing.concurrency_cap) or 0
                )
                continue
            tried += 1
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
                timed_out = isinstance(exc, UpstreamTimedOut)
                kind = "timeout" if timed_out else "connect_error"
                await self._fail_attempt(trade, kind, t0, kind)
                last_error = (
                    UpstreamTimeout("The upstream provider timed out.")
                    if timed_out
                    else UpstreamError("The upstream provider could not be reached.")
                )
                if kind in retry_on:
                    continue
                break
            if resp.status != 200:
                try:
                    raw = await resp.read(64 * 1024)
                except UpstreamFailure:
                    raw = b""
                resp.release()
                await self._fail_attempt(trade, "error", t0, f"http_{resp.status}")
                if resp.status in (400, 413, 422):
                    raise InvalidRequest(_upstream_error_message(raw))
                last_error = UpstreamError(f"The upstream provider answered {resp.status}.")
                retryable = "429" if resp.status == 429 else "5xx" if resp.status >= 500 else None
                if retryable and retryable in retry_on:
                    continue
                break
            trade.attempts.append(Attempt(listing.id, listing.provider, "ok", 0))
            self.failpoints.hit("during_upstream")
            if trade.streamed:
                await self._relay_stream(proto, resp, pre, trade, t0)
            else:
                await self._relay_body(proto, resp, pre, trade, t0)
            return
        if last_error is not None:
            raise last_error
        if rate_limited is not None:
            # OpenAI-style headers, so clients that pace themselves on them back off correctly.
            raise RateLimited(
                "Every matching listing is at its rate limit.",
                retry_after_s=rate_limited,
                headers={
                    "x-ratelimit-limit-requests": str(max(limits, default=0)),
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": f"{rate_limited}s",
                },
            )
        raise UpstreamError("No listing could serve the request.")

    async def _fail_attempt(self, trade: TradeState, status: str, t0: int, error_type: str) -> None:
        assert trade.listing is not None
        latency = (time.perf_counter_ns() - t0) // 1_000_000
        trade.attempts.append(Attempt(trade.listing.id, trade.listing.provider, status, latency, error_type))
        await self.rt.state.settle(trade.request_id, 0)  # void the hold: a failed attempt costs nothing
        self.rt.router.market.record_result(trade.listing.id, False, None, None, int(time.time() * 1000))
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

    async def _relay_stream(self, proto: Any, resp: H1Response, pre: Any, trade: TradeState, t0: int) -> None:
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
