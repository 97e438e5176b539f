"""Admission probes: real requests against a listing's upstream, then the outcome applied to the listing.

A chat probe runs, in order: `GET {base}/models` (reachability, auth, model present; a 404 is tolerated
because some providers do not list models), a non-streaming completion (`max_tokens` 8: schema and usage
present), a usage-honesty check (reported completion tokens within `max_tokens`, totals add up), and a
streaming completion (well-formed SSE that ends with `[DONE]` or a `finish_reason`, time to first token).
Embeddings and speech listings get one request of their kind instead of the chat pair.

The provider key is decrypted only for the duration of the run. Connections go through the URL policy
again at connect time (`GuardedResolver`) and redirects are never followed. Probe cost is the platform's:
no ledger entries are written. Every recorded run also refreshes the listing's probe quality score (the
share of passed checks over its recent runs, `domain/quality.py`), which routing's quality feature uses.

`probe_listing` runs and applies a probe (admission, the seller's `POST …/probe`). Listing health runs the
same probe and records it with `run_probe` + `record_run`, applying its own outcome in that transaction
(services/health.py re-probes, services/contract_recovery.py reverify and unsuspend).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from dragonfly.config import Settings
from dragonfly.domain.urlpolicy import UrlRefused, check_base_url
from dragonfly.errors import NotFound
from dragonfly.ids import new_id, now_ms
from dragonfly.security.secretbox import SecretBox
from dragonfly.services import listing_quality
from dragonfly.services.listings import render_probe_run
from dragonfly.services.upstream_urls import RefusedAddress, guarded_session
from dragonfly.storage.ports import Database, Executor, Row
from dragonfly.storage.sql.repos import changes
from dragonfly.storage.sql.repos import contracts as contracts_repo
from dragonfly.storage.sql.repos import listings as listings_repo
from dragonfly.storage.sql.repos import pool_keys as pool_repo

PROBE_MAX_TOKENS = 8
PROBE_PROMPT = "Reply with the single word: ok"
PROBE_TOTAL_TIMEOUT_S = 30.0
MAX_BODY = 1024 * 1024


class ProbeStop(Exception):
    """A check failed in a way that makes the remaining checks meaningless."""


@dataclass
class ProbeRun:
    checks: list[dict[str, Any]] = field(default_factory=list)
    ttft_ms: int | None = None
    latency_ms: int | None = None

    def record(self, kind: str, passed: bool, detail: str) -> None:
        self.checks.append({"kind": kind, "passed": passed, "detail": detail[:500]})

    def fail(self, kind: str, detail: str) -> ProbeStop:
        self.record(kind, False, detail)
        return ProbeStop(detail)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c["passed"] for c in self.checks)


def _why(exc: BaseException) -> str:
    """Name a client failure without quoting upstream text; a policy refusal says which policy."""
    inner = getattr(exc, "os_error", None)
    if isinstance(exc, RefusedAddress) or isinstance(inner, RefusedAddress):
        return str(inner if isinstance(inner, RefusedAddress) else exc)
    return type(exc).__name__


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


async def _read_json(resp: aiohttp.ClientResponse) -> Any:
    raw = await resp.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ValueError("response body too large")
    return orjson.loads(raw)


def _status_problem(run: ProbeRun, kind: str, status: int) -> ProbeStop:
    if status in (401, 403):
        return run.fail("auth", f"the upstream refused the provider key (HTTP {status})")
    if 300 <= status < 400:
        return run.fail(
            kind, f"the upstream answered with a redirect (HTTP {status}); redirects are not followed"
        )
    return run.fail(kind, f"unexpected HTTP {status}")


async def _check_models(
    run: ProbeRun, http: aiohttp.ClientSession, base: str, headers: dict[str, str], model: str
) -> None:
    try:
        async with http.get(f"{base}/models", headers=headers, allow_redirects=False) as resp:
            if resp.status in (404, 405):
                run.record(
                    "reachability", True, f"reachable; the provider does not list models (HTTP {resp.status})"
                )
                return
            if resp.status != 200:
                raise _status_problem(run, "reachability", resp.status)
            run.record("reachability", True, "GET /models answered 200")
            run.record("auth", True, "the provider key was accepted")
            try:
                body = await _read_json(resp)
                ids = {m.get("id") for m in body.get("data", []) if isinstance(m, dict)}
            except (ValueError, AttributeError):
                run.record("model_present", True, "the model list is not in OpenAI shape; not checked")
                return
            if model in ids:
                run.record("model_present", True, f"{model} is listed by the upstream")
            else:
                raise run.fail("model_present", f"{model} is not in the upstream's model list")
    except RefusedAddress as exc:
        raise run.fail("reachability", str(exc)) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise run.fail("reachability", f"cannot reach the upstream ({_why(exc)})") from None


def _check_completion_body(run: ProbeRun, body: Any) -> dict[str, Any]:
    try:
        message = body["choices"][0]["message"]
        if not isinstance(message, dict) or not isinstance(message.get("content") or "", str):
            raise TypeError
    except (KeyError, IndexError, TypeError):
        raise run.fail("chat_schema", "choices[0].message is missing or malformed") from None
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict) or not all(
        isinstance(usage.get(k), int) for k in ("prompt_tokens", "completion_tokens")
    ):
        raise run.fail("chat_schema", "usage with integer prompt_tokens and completion_tokens is missing")
    run.record("chat_schema", True, "choices[0].message and usage present")
    return usage


def _check_usage_honesty(run: ProbeRun, usage: dict[str, Any]) -> None:
    prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
    total = usage.get("total_tokens")
    if prompt < 1:
        raise run.fail("usage_honesty", f"prompt_tokens {prompt} for a non-empty prompt")
    if not 0 <= completion <= PROBE_MAX_TOKENS:
        raise run.fail(
            "usage_honesty", f"completion_tokens {completion} exceeds max_tokens {PROBE_MAX_TOKENS}"
        )
    if isinstance(total, int) and total != prompt + completion:
        raise run.fail("usage_honesty", f"total_tokens {total} != prompt {prompt} + completion {completion}")
    run.record("usage_honesty", True, f"prompt {prompt}, completion {completion} (max {PROBE_MAX_TOKENS})")


def _chat_body(model: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": PROBE_PROMPT}],
        "max_tokens": PROBE_MAX_TOKENS,
        "temperature": 0,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


async def _check_chat(
    run: ProbeRun, http: aiohttp.ClientSession, base: str, headers: dict[str, str], model: str
) -> None:
    start = time.monotonic()
    try:
        async with http.post(
            f"{base}/chat/completions", headers=headers, json=_chat_body(model, False), allow_redirects=False
        ) as resp:
            if resp.status != 200:
                raise _status_problem(run, "chat_completion", resp.status)
            try:
                body = await _read_json(resp)
            except ValueError:
                raise run.fail("chat_completion", "the completion is not valid JSON") from None
    except RefusedAddress as exc:
        raise run.fail("reachability", str(exc)) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise run.fail("chat_completion", f"request failed ({_why(exc)})") from None
    run.latency_ms = _ms(start)
    run.record("chat_completion", True, f"HTTP 200 in {run.latency_ms} ms")
    _check_usage_honesty(run, _check_completion_body(run, body))


async def _check_stream(
    run: ProbeRun, http: aiohttp.ClientSession, base: str, headers: dict[str, str], model: str
) -> None:
    start = time.monotonic()
    done = finished = False
    chunks = 0
    try:
        async with http.post(
            f"{base}/chat/completions", headers=headers, json=_chat_body(model, True), allow_redirects=False
        ) as resp:
            if resp.status != 200:
                raise _status_problem(run, "chat_stream", resp.status)
            if "text/event-stream" not in resp.headers.get("content-type", ""):
                raise run.fail("chat_stream", "the stream is not text/event-stream")
            async for raw_line in resp.content:
                line = raw_line.strip()
                if not line or line.startswith(b":") or not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    break
                try:
                    event = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise run.fail("chat_stream", "an SSE data line is not valid JSON") from None
                if not isinstance(event, dict) or "error" in event:
                    raise run.fail("chat_stream", "the stream carried an error event")
                chunks += 1
                for choice in event.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if run.ttft_ms is None and (delta.get("content") or delta.get("tool_calls")):
                        run.ttft_ms = _ms(start)
                    if choice.get("finish_reason"):
                        finished = True
    except RefusedAddress as exc:
        raise run.fail("reachability", str(exc)) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise run.fail("chat_stream", f"stream failed ({_why(exc)})") from None
    if not (done or finished):
        raise run.fail("chat_stream", "the stream ended without [DONE] or a finish_reason")
    if run.ttft_ms is None:
        raise run.fail("chat_stream", "the stream carried no content")
    run.record("chat_stream", True, f"{chunks} chunks, first token after {run.ttft_ms} ms")


async def _check_embeddings(
    run: ProbeRun, http: aiohttp.ClientSession, base: str, headers: dict[str, str], model: str
) -> None:
    start = time.monotonic()
    try:
        async with http.post(
            f"{base}/embeddings",
            headers=headers,
            json={"model": model, "input": PROBE_PROMPT},
            allow_redirects=False,
        ) as resp:
            if resp.status != 200:
                raise _status_problem(run, "embeddings", resp.status)
            body = await _read_json(resp)
        vector = body["data"][0]["embedding"]
        if not vector or not all(isinstance(x, int | float) for x in vector):
            raise TypeError
        if not isinstance(body.get("usage", {}).get("prompt_tokens"), int):
            raise TypeError
    except RefusedAddress as exc:
        raise run.fail("reachability", str(exc)) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise run.fail("embeddings", f"request failed ({_why(exc)})") from None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise run.fail(
            "embeddings", "data[0].embedding or usage.prompt_tokens is missing or malformed"
        ) from None
    run.latency_ms = _ms(start)
    run.record("embeddings", True, f"{len(vector)}-dimension vector in {run.latency_ms} ms")


async def _check_speech(
    run: ProbeRun, http: aiohttp.ClientSession, base: str, headers: dict[str, str], model: str
) -> None:
    start = time.monotonic()
    try:
        async with http.post(
            f"{base}/audio/speech",
            headers=headers,
            json={"model": model, "input": "ok", "voice": "alloy"},
            allow_redirects=False,
        ) as resp:
            if resp.status != 200:
                raise _status_problem(run, "speech", resp.status)
            audio = await resp.content.read(MAX_BODY)
            ctype = resp.headers.get("content-type", "")
    except RefusedAddress as exc:
        raise run.fail("reachability", str(exc)) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise run.fail("speech", f"request failed ({_why(exc)})") from None
    if not audio or not (ctype.startswith("audio/") or ctype.startswith("application/octet-stream")):
        raise run.fail("speech", "the answer is not audio")
    run.latency_ms = _ms(start)
    run.ttft_ms = run.latency_ms
    run.record("speech", True, f"{len(audio)} bytes of {ctype} in {run.latency_ms} ms")


async def run_checks(settings: Settings, *, base_url: str, api_key: str, model: str, kind: str) -> ProbeRun:
    """Run the probe requests (no database access): the caller applies the outcome."""
    run = ProbeRun()
    try:
        check_base_url(base_url, allow_private=settings.allow_private_upstreams)
    except UrlRefused as exc:
        run.record("reachability", False, str(exc))
        return run
    headers = {"authorization": f"Bearer {api_key}", "accept": "application/json"}
    async with guarded_session(
        allow_private=settings.allow_private_upstreams,
        connect_timeout_s=settings.upstream_connect_timeout_s,
        total_timeout_s=PROBE_TOTAL_TIMEOUT_S,
    ) as http:
        try:
            await _check_models(run, http, base_url, headers, model)
            if kind == "embeddings":
                await _check_embeddings(run, http, base_url, headers, model)
            elif kind == "speech":
                await _check_speech(run, http, base_url, headers, model)
            else:
                await _check_chat(run, http, base_url, headers, model)
                await _check_stream(run, http, base_url, headers, model)
        except ProbeStop:
            pass
    return run


def first_failure(run: ProbeRun) -> str | None:
    for check in run.checks:
        if not check["passed"]:
            return f"{check['kind']}: {check['detail']}"
    return None


@dataclass(frozen=True, slots=True)
class Probed:
    """A probe that has run and is not recorded yet: the listing and contract as they were before it."""

    listing: Row
    contract: Row
    run: ProbeRun
    started: int


async def record_run(tx: Executor, probed: Probed, finished: int) -> dict[str, Any]:
    """Record a run in `tx`: the probe run row, its checks in the contract's history (`probe:<kind>`), and
    the listing's probe quality. Changes no status. Returns the stored record."""
    listing, contract, run = probed.listing, probed.contract, probed.run
    record = {
        "id": new_id(),
        "listing_id": listing["id"],
        "contract_id": contract["id"],
        "passed": run.passed,
        "ttft_ms": run.ttft_ms,
        "latency_ms": run.latency_ms,
        "checks": run.checks,
        "started_at": probed.started,
        "finished_at": finished,
    }
    await contracts_repo.insert_probe_run(tx, record)
    if await listings_repo.get(tx, listing["id"]) is not None:
        # the listing's quality score counts this run (services/listing_quality.py)
        await listing_quality.refresh_probe_quality(tx, listing["id"], finished)
    await contracts_repo.add_checks(
        tx,
        contract_id=contract["id"],
        checks=[(new_id(), f"probe:{c['kind']}", c["passed"], c["detail"], finished) for c in run.checks],
    )
    return record


async def _apply(db: Database, probed: Probed) -> dict[str, Any]:
    finished = now_ms()
    run = probed.run
    async with db.transaction() as tx:
        record = await record_run(tx, probed, finished)
        current = await listings_repo.get(tx, probed.listing["id"])
        # Read again: an operator or health may have suspended it while the probe ran.
        contract = await contracts_repo.current_for_listing(tx, probed.listing["id"])
        if current is not None and contract is not None and contract["status"] != "suspended":
            if run.passed:
                contract_status, reason = "active", None
            elif contract["status"] == "pending":
                contract_status, reason = "pending", first_failure(run)
            else:
                contract_status, reason = "degraded", first_failure(run)
            await contracts_repo.set_status(
                tx, contract_id=contract["id"], status=contract_status, reason=reason, now=finished
            )
            listing_changes: dict[str, Any] = {"contract_status": contract_status}
            if run.passed and current["status"] == "pending":
                listing_changes["status"] = "active"
            await listings_repo.update(tx, probed.listing["id"], listing_changes, now=finished)
            await changes.bump(tx)
    return render_probe_run(record)


async def run_probe(db: Database, settings: Settings, box: SecretBox, listing_id: str) -> Probed:
    """Run an admission probe for one listing now, without recording it (`record_run` does)."""
    listing = await listings_repo.get(db, listing_id)
    if listing is None:
        raise NotFound("Listing not found.")
    contract = await contracts_repo.current_for_listing(db, listing_id)
    pool_key = await pool_repo.get(db, listing["pool_key_id"])
    if contract is None:
        raise NotFound("The listing has no contract.")
    started = now_ms()
    if pool_key is None:
        run = ProbeRun()
        run.record("pool_key", False, "the listing's pool key was deleted")
        return Probed(listing, contract, run, started)
    try:
        api_key = box.open(pool_key["key_ciphertext"], pool_key["id"])
    except ValueError:
        run = ProbeRun()
        run.record("pool_key", False, "the stored provider key cannot be decrypted (server secret changed?)")
        return Probed(listing, contract, run, started)
    run = await run_checks(
        settings,
        base_url=pool_key["base_url"],
        api_key=api_key,
        model=listing["upstream_model"],
        kind=listing["kind"],
    )
    del api_key
    return Probed(listing, contract, run, started)


async def probe_listing(db: Database, settings: Settings, box: SecretBox, listing_id: str) -> dict[str, Any]:
    """Run an admission probe for one listing now and apply its outcome; returns the probe run."""
    return await _apply(db, await run_probe(db, settings, box, listing_id))
