"""The streamed relay of a chat trade (ARCHITECTURE.md, request life cycle steps 6–7): the seller's SSE
through the native splicer to the buyer piece by piece, the trade settled before the last `[DONE]`, and
a stream that breaks after the buyer got bytes continued at the next listing, its broken part billed as a
trade of its own. Functions of the `Inference` that won the seller's 200 (gateway/chat.py `_relay`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from dragonfly.domain.trade import RELAY
from dragonfly.errors import DragonflyError, ServiceUnavailable
from dragonfly.gateway.holds import DEFAULT_COMPLETION_HOLD
from dragonfly.gateway.legs import Leg, Route, continuation_body
from dragonfly.gateway.offload import native_call
from dragonfly.gateway.replies import (
    DONE,
    DRAINED_MESSAGE,
    NOT_RECORDED,
    SSE_HEADERS,
    TradeUnconfirmed,
    part_unconfirmed_message,
)
from dragonfly.gateway.trade import Attempt, TradeState, Usage, usage_from
from dragonfly.gateway.upstream import H1Response, UpstreamDrained, UpstreamFailure, UpstreamTimedOut
from dragonfly.ids import new_id
from dragonfly.native import NativeError
from dragonfly.native.sse import Splicer
from dragonfly.native.tokens import preparse_request

if TYPE_CHECKING:
    from dragonfly.gateway.chat import Inference

# The chat handler's logger, as before the stream relay had a module of its own: operators filter on it.
log = logging.getLogger("dragonfly.gateway.chat")


async def relay_stream(
    inf: Inference, proto: Any, resp: H1Response, trade: TradeState, leg: Leg, route: Route
) -> tuple[str, str | None]:
    """Relay the seller's 200 stream to the buyer through the splicer, continuing it elsewhere if it
    breaks; settle the trade before the last `[DONE]`. Returns the trade's status and error code."""
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
    failpoints = inf.failpoints
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
                taken = await continue_stream(inf, trade, splicer, leg, route, exc)
                if isinstance(taken, TradeUnconfirmed):
                    # The broken part's record may or may not be in the books (and charged): the
                    # trade bills nothing more for this leg, and the stream says where to look.
                    status, error_code = "failed", "service_unavailable"
                    tail = splicer.error_event(
                        part_unconfirmed_message(taken.trade_id), "service_unavailable"
                    )
                    part_billed(inf, trade, leg, "error", taken.trade_id)  # no charge again
                    break
                if taken is None or isinstance(taken, DragonflyError):
                    # Not continued: the documented error event; a refused next leg says why.
                    status, error_code = "failed", "upstream_error" if taken is None else taken.code
                    tail = splicer.error_event("The upstream provider failed mid-stream.", "upstream_error")
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
            await inf.rt.settler.settle(trade.row(status, None, None, error_code), [])
        else:
            release = await inf._settle(trade, usage, status, error_code)
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
        await inf._released(release)
    if usage is not None and not drained:
        inf._record_health(trade, status == "completed", usage)
    return status, error_code


async def continue_stream(
    inf: Inference, trade: TradeState, splicer: Any, leg: Leg, route: Route, exc: UpstreamFailure
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
        part_id = await bill_part(inf, trade, leg, produced)
    except TradeUnconfirmed as unknown:
        return unknown  # recorded or not, nobody can tell: not continued, and not billed again
    except DragonflyError:
        return None  # not recorded (not charged): the stream ends here, billed as a broken stream
    part_billed(inf, trade, leg, "continued", part_id)
    route.body = continuation_body(route.body, splicer.content_so_far, left)
    route.pre = await native_call(len(route.body), preparse_request, route.body, pre.encoding)
    trade.hold_completion_tokens = left if left is not None else DEFAULT_COMPLETION_HOLD
    plan = route.plan
    while True:
        try:
            nxt = await inf._admit_next(trade, route)
        except DragonflyError as err:  # insufficient balance, budget exceeded
            log.info("stream not continued: %s", err.code)
            return err
        if nxt is None:
            break
        nxt.t0 = time.perf_counter_ns()
        nxt.counted_before = splicer.counted_completion_tokens
        try:
            resp = await inf._send(nxt, route.body, trade, read_first=False)
        except UpstreamFailure as failure:
            step = await inf._outcome(trade, nxt, plan, failure)
        else:
            step = await inf._outcome(trade, nxt, plan, resp)
            if step is RELAY:
                splicer.begin_continuation()
                inf._take(trade, nxt)
                latency = (time.perf_counter_ns() - nxt.t0) // 1_000_000
                trade.attempts.append(Attempt(nxt.listing.id, nxt.listing.provider, "ok", latency))
                return resp, nxt
        if step.error is not None:
            return None
    return None


def part_billed(inf: Inference, trade: TradeState, leg: Leg, status: str, part_id: str) -> None:
    """`leg`'s stream broke and its part was billed as a trade of its own (`part_id`, `bill_part`,
    which settled `leg`'s hold): the leg's `ok` attempt (recorded when it won) becomes `status`,
    linking the part; the listing's health hears of the break; and the trade keeps no listing — the
    next leg's becomes it, or, with none, it is recorded without a charge."""
    latency = (time.perf_counter_ns() - leg.t0) // 1_000_000
    if trade.attempts and trade.attempts[-1].listing_id == leg.listing.id:
        trade.attempts.pop()
    trade.attempts.append(
        Attempt(leg.listing.id, leg.listing.provider, status, latency, "broken_stream", part_id)
    )
    inf._leg_failed(leg, "broken_stream")
    trade.listing, trade.hold, trade.hold_id = None, 0, ""


async def bill_part(inf: Inference, trade: TradeState, leg: Leg, completion_tokens: int) -> str:
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
    part.attempts.append(Attempt(leg.listing.id, leg.listing.provider, "continued", latency, "broken_stream"))
    usage = Usage(completion=completion_tokens, counted_completion=completion_tokens)
    await inf._released(await inf._settle(part, usage, "continued", "upstream_error"))
    return part.request_id
