"""HTTP handlers of the demo seller (aiohttp.web)."""

from __future__ import annotations

import asyncio
import hmac
import itertools
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiohttp import web

from dragonfly.demo import audio, echo, shapes
from dragonfly.demo.knobs import SellerConfig
from dragonfly.demo.stats import SellerStats

MAX_BODY_BYTES = 32 * 1024 * 1024


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str, code: str | None = None) -> web.Response:
    return _json(shapes.error_body(status, message, code), status)


class _BadRequest(Exception):
    pass


class SellerHandlers:
    def __init__(self, config: SellerConfig, stats: SellerStats) -> None:
        self.config = config
        self.stats = stats
        self._ids = itertools.count(1)

    # -- plumbing -------------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            key.strip().encode(), self.config.api_key.encode()
        )

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise _BadRequest("request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _BadRequest("request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _BadRequest("`model` is required")
        return body

    async def _inference(self, request: web.Request, kind: str) -> web.StreamResponse:
        """Auth, parse, record, configured failure, model check; then the endpoint itself."""
        transport = request.transport
        with self.stats.track(transport.get_extra_info("peername") if transport else None):
            if not self._authorized(request):
                return _error(401, "Incorrect API key provided.", "invalid_api_key")
            try:
                body = await self._body(request)
                self.stats.record(body["model"], body)
                if self.config.fail_status is not None:
                    status = self.config.fail_status
                    return _error(status, f"The demo seller is configured to fail with HTTP {status}.")
                if body["model"] not in self.config.models:
                    return _error(404, f"The model `{body['model']}` does not exist.", "model_not_found")
                if kind == "chat":
                    return await self._chat(request, body)
                if kind == "speech":
                    return await self._speech(request, body)
                return self._embeddings(body)
            except _BadRequest as exc:
                return _error(400, str(exc))

    def _reported(self, tokens: int) -> int:
        """The token count the seller reports: the real one, times `usage_multiplier`."""
        return round(tokens * self.config.usage_multiplier)

    def _chat_usage(self, prompt: int, completion: int) -> dict[str, Any]:
        """A chat answer's reported usage: `_reported` counts, the prompt by `prompt_usage_multiplier` when
        set, and `reported_cached_tokens` claimed as cached."""
        cfg = self.config
        multiplier = (
            cfg.usage_multiplier if cfg.prompt_usage_multiplier is None else cfg.prompt_usage_multiplier
        )
        usage: dict[str, Any] = shapes.usage(round(prompt * multiplier), self._reported(completion))
        if cfg.reported_cached_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": cfg.reported_cached_tokens}
        return usage

    # -- endpoints ------------------------------------------------------------------------------------

    async def models(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        return _json(shapes.model_list(self.config.models))

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._inference(request, "chat")

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._inference(request, "embeddings")

    async def speech(self, request: web.Request) -> web.StreamResponse:
        return await self._inference(request, "speech")

    async def _chat(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise _BadRequest("`messages` must be a non-empty list of message objects")
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise _BadRequest("`max_tokens` must be a positive integer")
        cfg = self.config
        answer = echo.answer(messages, max_tokens, cfg.chunks)
        usage = None if cfg.omit_usage else self._chat_usage(echo.prompt_tokens(messages), len(answer.words))
        n = next(self._ids)
        cid, created, model = f"chatcmpl-demo-{n}", int(time.time()), body["model"]
        if body.get("stream"):
            options = body.get("stream_options") or {}
            include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
            return await self._stream(request, cid, created, model, answer, usage if include_usage else None)
        delay = cfg.first_token_delay_s + cfg.chunk_delay_s * (len(answer.words) - 1)
        if delay > 0:
            await asyncio.sleep(delay)
        if cfg.break_body_after_bytes is not None:
            return await self._broken_body(
                request, shapes.completion(cid, created, model, answer.text, answer.finish_reason, usage)
            )
        self.stats.completed += 1
        resp = _json(shapes.completion(cid, created, model, answer.text, answer.finish_reason, usage))
        resp.headers["x-request-id"] = f"req_demo_{n}"
        return resp

    async def _broken_body(self, request: web.Request, completion: dict[str, Any]) -> web.StreamResponse:
        """A 200 whose head declares the whole body, then `break_body_after_bytes` of it and a closed
        connection."""
        body = orjson.dumps(completion)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[: self.config.break_body_after_bytes])
        if request.transport is not None:
            request.transport.close()
        return resp

    async def _stream(
        self,
        request: web.Request,
        cid: str,
        created: int,
        model: str,
        answer: echo.Answer,
        usage: dict[str, Any] | None,
    ) -> web.StreamResponse:
        cfg = self.config
        with_usage = usage is not None
        events: list[dict[str, Any]] = [
            shapes.chunk(
                cid, created, model, {"role": "assistant", "content": ""}, with_usage_field=with_usage
            )
        ]
        events += [
            shapes.chunk(cid, created, model, {"content": c}, with_usage_field=with_usage)
            for c in answer.chunks()
        ]
        events.append(
            shapes.chunk(cid, created, model, {}, answer.finish_reason, with_usage_field=with_usage)
        )
        if usage is not None:
            events.append(shapes.usage_chunk(cid, created, model, usage))
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "x-request-id": f"req_{cid}",
            }
        )
        words = len(answer.words)
        try:
            await resp.prepare(request)
            paced = await self._write_paced(
                request,
                resp,
                (b"data: " + orjson.dumps(event) + b"\n\n" for event in events),
                # Before the role preamble, then before each word after the first one.
                lambda i: cfg.first_token_delay_s if i == 0 else cfg.chunk_delay_s if 1 < i <= words else 0,
            )
            if not paced:
                return resp
            await resp.write(b"data: [DONE]\n\n")
            if cfg.end_delay_s > 0:
                await asyncio.sleep(cfg.end_delay_s)
            await resp.write_eof()
        except (asyncio.CancelledError, ConnectionError):
            self.stats.cancelled += 1
            raise
        self.stats.completed += 1
        return resp

    def _embeddings(self, body: dict[str, Any]) -> web.Response:
        raw = body.get("input")
        if isinstance(raw, str):
            inputs = [raw]
        elif isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
            inputs = [" ".join(map(str, raw))]  # one pre-tokenised input
        elif isinstance(raw, list) and raw:
            inputs = [x if isinstance(x, str) else " ".join(map(str, x)) for x in raw]
        else:
            raise _BadRequest("`input` must be a string or a non-empty list")
        dims = body.get("dimensions") or echo.DEFAULT_EMBEDDING_DIMS
        if not isinstance(dims, int) or not 1 <= dims <= 4096:
            raise _BadRequest("`dimensions` must be an integer in 1..4096")
        fmt = body.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            raise _BadRequest("`encoding_format` must be float or base64")
        data = [shapes.embedding_item(i, echo.embedding(text, dims), fmt) for i, text in enumerate(inputs)]
        out: dict[str, Any] = {"object": "list", "data": data, "model": body["model"]}
        if not self.config.omit_usage:
            tokens = self._reported(sum(echo.count_words(t) for t in inputs))
            out["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        self.stats.completed += 1
        return _json(out)

    async def _speech(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        """Deterministic audio (demo/audio.py), streamed in pieces (chunked, or with a content-length when
        `audio_content_length`): `first_token_delay_s` before the first, `chunk_delay_s` before each later
        one, and the connection closed after `drop_mid_stream_after` of them."""
        text = body.get("input")
        if not isinstance(text, str) or not text:
            raise _BadRequest("`input` must be a non-empty string")
        if not isinstance(body.get("voice"), str | dict) or not body["voice"]:
            raise _BadRequest("`voice` is required")
        fmt = body.get("response_format") or audio.DEFAULT_FORMAT
        if fmt not in audio.FORMATS:
            raise _BadRequest(f"the demo seller synthesises wav or pcm, not {fmt!r}")
        speed = body.get("speed", 1.0)
        if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
            raise _BadRequest("`speed` must be a number in 0.25..4.0")
        if not isinstance(body.get("instructions", ""), str):
            raise _BadRequest("`instructions` must be a string")
        cfg = self.config
        pieces = audio.chunks(audio.speech(text, fmt, float(speed)))
        resp = web.StreamResponse(
            headers={"Content-Type": audio.FORMATS[fmt], "x-request-id": f"req_demo_{next(self._ids)}"}
        )
        if cfg.audio_content_length:
            resp.content_length = sum(len(p) for p in pieces)
        try:
            await resp.prepare(request)
            delay = lambda i: cfg.first_token_delay_s if i == 0 else cfg.chunk_delay_s  # noqa: E731
            if not await self._write_paced(request, resp, pieces, delay):
                return resp
            await resp.write_eof()
        except (asyncio.CancelledError, ConnectionError):
            self.stats.cancelled += 1
            raise
        self.stats.completed += 1
        return resp

    async def _write_paced(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        pieces: Iterable[bytes],
        delay: Callable[[int], float],
    ) -> bool:
        """Write the pieces, `delay(i)` seconds before piece `i`; False when `drop_mid_stream_after` closed
        the connection first (the seller "dies mid-stream")."""
        drop_after = self.config.drop_mid_stream_after
        for i, piece in enumerate(pieces):
            if drop_after is not None and i >= drop_after:
                if request.transport is not None:
                    request.transport.close()
                return False
            if (seconds := delay(i)) > 0:
                await asyncio.sleep(seconds)
            await resp.write(piece)
        return True

    # -- test hooks -----------------------------------------------------------------------------------

    async def get_stats(self, request: web.Request) -> web.Response:
        return _json(self.stats.snapshot())

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.stats.reset()
        return _json(self.stats.snapshot())

    async def get_config(self, request: web.Request) -> web.Response:
        return _json(self.config.public())

    async def patch_config(self, request: web.Request) -> web.Response:
        try:
            changes = orjson.loads(await request.read())
            if not isinstance(changes, dict) or "api_key" in changes:
                raise ValueError("send a JSON object of knobs (the api_key cannot be changed)")
            self.config.update(changes)
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            return _error(400, str(exc))
        return _json(self.config.public())


def make_app(config: SellerConfig, stats: SellerStats) -> web.Application:
    h = SellerHandlers(config, stats)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_get("/v1/models", h.models)
    app.router.add_post("/v1/chat/completions", h.chat_completions)
    app.router.add_post("/v1/embeddings", h.embeddings)
    app.router.add_post("/v1/audio/speech", h.speech)
    app.router.add_get("/_stats", h.get_stats)
    app.router.add_post("/_reset", h.reset_stats)
    app.router.add_get("/_config", h.get_config)
    app.router.add_post("/_config", h.patch_config)
    return app
