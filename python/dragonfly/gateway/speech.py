"""POST /v1/audio/speech: the chat trade (gateway/chat.py `Inference`: authenticate, rank, admit, forward
with fallback, settle) with a speech hold and an audio relay.

- The body is OpenAI's `{model, input, voice, response_format?, speed?, instructions?}`, forwarded as is
  but for `model` (the listing's upstream model) and the `dragonfly` override.
- Billing is on the input only: its characters (Unicode code points) at a listing priced per character,
  else its tokens as Dragonfly counts them with the listing's tokenizer (sellers report no usage for
  audio). Both are known exactly before the seller is called, so the hold is the cost itself.
- The seller's audio is relayed to the buyer unchanged, piece by piece as it arrives, with the seller's
  content-type. The response is complete only once the trade is recorded (invariant 4): when the seller
  declared a content-length it is passed on and the last piece waits for the trade; otherwise the
  answer is chunked and its terminator is sent when the handler returns, after settlement.
- A seller that breaks off mid-audio leaves the trade `failed` and unbilled. With a content-length the
  buyer's client sees an incomplete body; a chunked answer cannot carry an error and just ends early (the
  receipt says `failed`). A buyer who disconnects is billed in full, as a chat prompt is (the seller took
  the input).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import orjson

from dragonfly.domain.money import worst_case_hold
from dragonfly.errors import InvalidRequest
from dragonfly.gateway.chat import Inference
from dragonfly.gateway.h1 import H1Response, UpstreamDrained, UpstreamFailure
from dragonfly.gateway.legs import Leg, Route
from dragonfly.gateway.snapshot import ListingInfo
from dragonfly.gateway.trade import TradeState, Usage

if TYPE_CHECKING:
    from dragonfly.gateway.runtime import Runtime

log = logging.getLogger("dragonfly.gateway.speech")

DEFAULT_AUDIO_TYPE = "application/octet-stream"


def input_characters(body: bytes) -> int:
    """The number of characters of the request's `input`; 400 unless it is a non-empty string."""
    try:
        text = orjson.loads(body).get("input")
    except (orjson.JSONDecodeError, AttributeError):
        raise InvalidRequest("The request body must be a JSON object.") from None
    if not isinstance(text, str) or not text:
        raise InvalidRequest("`input` must be a non-empty string.", param="input")
    return len(text)


def declared_length(resp: H1Response) -> str | None:
    """The seller's content-length when it counts exactly the bytes relayed (no transfer or content
    coding), else None."""
    length = resp.header(b"content-length")
    coding = resp.header(b"content-encoding")
    if length is None or resp.header(b"transfer-encoding") is not None:
        return None
    if coding is not None and coding.lower() != b"identity":
        return None  # h1 decodes it: the buyer gets more bytes than the seller counted
    return length.decode("ascii")


class Speech(Inference):
    """Speech listings at the seller's /audio/speech."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt, "speech", "/audio/speech")

    async def _trade(self, proto: Any, body: bytes, pre: Any, trade: TradeState) -> None:
        trade.characters = input_characters(body)
        await super()._trade(proto, body, pre, trade)

    def _hold(self, trade: TradeState, listing: ListingInfo, pre: Any) -> int:
        """Exactly what the input costs at this listing: no completion, and no tokenizer slack (the
        count settled on is the one made here)."""
        units = (trade.characters or 0) if listing.price_unit == "character" else int(pre.prompt_tokens)
        trade.hold_prompt_tokens, trade.hold_completion_tokens = units, 0
        return worst_case_hold(
            prompt_tokens=units, max_completion_tokens=0, input_price=listing.input_price, output_price=0
        )

    async def _relay(
        self, proto: Any, resp: H1Response, trade: TradeState, leg: Leg, route: Route
    ) -> tuple[str, str | None]:
        pre, t0 = leg.pre, leg.t0
        content_type = resp.header(b"content-type")
        headers = [
            ("content-type", content_type.decode("latin-1") if content_type else DEFAULT_AUDIO_TYPE),
            ("x-request-id", trade.request_id),
        ]
        length = declared_length(resp)
        if length is not None:
            headers.append(("content-length", length))
        transport = proto.response_stream(200, headers)
        last: list[bytes] = []  # with a content-length: the final piece, sent once the trade is recorded
        # As chat's stream relay: no reader task, and a buyer who goes away drops the seller connection.
        gone = asyncio.ensure_future(proto.client_disconnect())
        drop = lambda _f: resp.close()  # noqa: E731
        gone.add_done_callback(drop)
        failpoints = self.failpoints

        def relay(piece: bytes) -> bool:
            if piece:
                if trade.ttft_ms is None:
                    trade.ttft_ms = (time.perf_counter_ns() - t0) // 1_000_000
                if length is not None and resp.done:
                    last.append(piece)
                else:
                    transport.send_bytes(piece)  # queued synchronously (see gateway/stream.py `relay_stream`)
                    failpoints.hit("mid_stream")
            return False  # the body's own end ends the pipe

        status, error_code = "completed", None
        drained = False
        try:
            await resp.pipe(relay)
        except UpstreamDrained:
            # The drain deadline cut it (gateway/drain.py): unbilled as a break is, not the seller's fault.
            status, error_code, drained = "failed", "service_unavailable", True
        except UpstreamFailure as exc:
            if not gone.done():
                status, error_code = "failed", "upstream_error"
                log.warning("upstream audio broke: %s", type(exc).__name__)
        except Exception:  # the buyer went away while we were writing to it
            status = "cancelled"
        finally:
            gone.remove_done_callback(drop)
            if gone.done():
                status, error_code = "cancelled", None
            gone.cancel()
            if status == "completed":
                resp.release()
            else:
                resp.close()
        if status == "failed":
            trade.finish_reason = "error"
            usage = Usage()  # a truncated file is not billed
        else:
            usage = Usage(prompt=pre.prompt_tokens, characters=trade.characters)
        release: Awaitable[None] | None = None
        try:
            release = await self._settle(trade, usage, status, error_code)
        except Exception as exc:
            # Not charged, or not known when the commit's answer was lost (_settle); with a
            # content-length the answer stays incomplete.
            log.error("speech settlement failed: %s", type(exc).__name__)
        else:
            if last and status == "completed":
                with contextlib.suppress(Exception):
                    await transport.send_bytes(last[0])
        transport = None  # ends the response (Granian): chunked, its terminator goes now
        if release is not None:
            await self._released(release)
        if not drained:
            self._record_health(trade, status == "completed", usage)
        return status, error_code
