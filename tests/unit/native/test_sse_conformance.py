"""Recorded upstream bodies go through the native splicer/rewriter with nothing lost.

Every expectation is computed here by an independent pure-Python reading of the same file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from dragonfly.native.sse import Splicer, rewrite_completion


def _fixtures_dir() -> Path:
    env = os.environ.get("DRAGONFLY_FIXTURES_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared/fixtures/upstream"


FIXTURES = _fixtures_dir()
GEMINI_NATIVE = "google_gemini_native_stream_crlf.sse"


def _files(suffix: str) -> list[Path]:
    return sorted(FIXTURES.glob(f"*{suffix}")) if FIXTURES.is_dir() else []


@pytest.fixture(autouse=True)
def _need_fixtures() -> None:
    if not FIXTURES.is_dir():
        pytest.skip(f"upstream fixtures not found at {FIXTURES} (set DRAGONFLY_FIXTURES_DIR)")


def parse_sse(text: str) -> list[tuple[str, str]]:
    """Plain WHATWG reading: (event type, data) for each event, unterminated last event included."""
    out: list[tuple[str, str]] = []
    kind, data = "", []
    for line in [*re.split(r"\r\n|\r|\n", text), ""]:
        if line == "":
            if data:
                out.append((kind, "\n".join(data)))
            kind, data = "", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "event":
                kind = value
    return out


class Expected:
    """What a careful reader finds in a stream."""

    def __init__(self, events: list[tuple[str, str]]) -> None:
        self.content = ""
        self.reasoning = ""
        self.args: dict[int, str] = {}
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.error: Any = None
        self.done = False
        for kind, data in events:
            if self.done:
                break
            if data.strip() == "[DONE]":
                self.done = True
                continue
            obj = json.loads(data)
            if kind == "error":
                self.error = obj.get("error", obj)
                continue
            usage = obj.get("usage") or (obj.get("x_groq") or {}).get("usage")
            if isinstance(usage, dict):
                self.usage = usage
            if obj.get("error"):
                self.error = obj["error"]
            for choice in obj.get("choices") or []:
                if choice.get("finish_reason"):
                    self.finish_reason = choice["finish_reason"]
                delta = choice.get("delta") or {}
                content = delta.get("content")
                if isinstance(content, str):
                    self.content += content
                elif isinstance(content, list):
                    for part in content:
                        if part.get("type") == "text":
                            self.content += part["text"]
                        elif part.get("type") == "thinking":
                            self.reasoning += "".join(
                                p["text"] for p in part["thinking"] if p["type"] == "text"
                            )
                r = delta.get("reasoning_content")
                r = r if isinstance(r, str) else delta.get("reasoning")
                if isinstance(r, str):
                    self.reasoning += r
                for call in delta.get("tool_calls") or []:
                    args = (call.get("function") or {}).get("arguments") or ""
                    self.args[call["index"]] = self.args.get(call["index"], "") + args


def _splice(raw: bytes, include_usage: bool) -> tuple[Splicer, bytes]:
    s = Splicer("req-conf", "dragonfly/public", include_usage, 1234)
    out = b"".join(s.feed(raw[i : i + 97]) for i in range(0, len(raw), 97)) + s.finish()
    return s, out


@pytest.mark.parametrize("path", _files(".sse"), ids=lambda p: p.name)
@pytest.mark.parametrize("include_usage", [True, False])
def test_recorded_stream_preserves_content_tools_and_usage(path: Path, include_usage: bool) -> None:
    raw = path.read_bytes()
    upstream = parse_sse(raw.decode())
    s, out = _splice(raw, include_usage)
    buyer = parse_sse(out.decode())
    assert buyer[-1] == ("", "[DONE]")
    assert out.endswith(b"\n\ndata: [DONE]\n\n") and b"\r" not in out
    assert s.garbage_events == 0
    if path.name == GEMINI_NATIVE:  # not OpenAI-shaped: framing only
        assert [d for _, d in buyer[: len(upstream)]] == [d for _, d in upstream]
        return

    want = Expected(upstream)
    got = Expected(buyer)
    # The buyer stream carries the same text and tool arguments, and the splicer captured them too.
    assert got.content == want.content == s.content_so_far
    assert got.reasoning == want.reasoning == s.reasoning_so_far
    assert got.args == want.args == {c["index"]: c["arguments"] for c in s.tool_calls}
    assert s.finish_reason == want.finish_reason
    assert s.saw_done == want.done
    if want.error is not None:
        assert s.upstream_error == want.error
        assert any(json.loads(d).get("error", {}).get("type") == "upstream_error" for _, d in buyer[:-1])
    if want.usage is not None:
        assert s.usage_source == "upstream"
        assert s.usage is not None
        assert s.usage["prompt_tokens"] == want.usage.get("prompt_tokens", 0)
        assert s.usage["completion_tokens"] == want.usage.get("completion_tokens", 0)
        assert json.loads(s.usage_json or "null") == want.usage
    else:
        assert s.usage_source == "counted"
        assert s.usage is not None and s.usage["completion_tokens"] == s.counted_completion_tokens
    # ids and models rewritten wherever the upstream had them; the usage-only chunk only when asked.
    for _, data in buyer[:-1]:
        obj = json.loads(data)
        assert obj.get("id", "req-conf") == "req-conf"
        assert obj.get("model", "dragonfly/public") == "dragonfly/public"
    if include_usage:
        assert any(json.loads(d).get("usage") for _, d in buyer[:-1])
    # Big integers leave byte-identical.
    for seed in re.findall(rb'"seed":\s*\d+', raw):
        assert seed in out


@pytest.mark.parametrize("path", _files(".json"), ids=lambda p: p.name)
def test_recorded_body_rewritten_with_everything_else_exact(path: Path) -> None:
    raw = path.read_bytes()
    want = json.loads(raw)
    got = rewrite_completion(raw, "req-conf", "dragonfly/public")
    body = json.loads(got["body"])
    for key in ("id", "model"):
        if key in want:
            want[key] = {"id": "req-conf", "model": "dragonfly/public"}[key]
    assert body == want
    assert got["body"].endswith(raw.rstrip(b" \t\r\n")[-1:] + raw[len(raw.rstrip(b" \t\r\n")) :])
    assert not got["body"][:1].isspace()
    for seed in re.findall(rb'"seed":\s*\d+', raw):
        assert seed in got["body"]
    if "error" in want:
        assert got["upstream_error"] == want["error"]
        assert got["usage"] is None
        return
    assert got["upstream_error"] is None
    choice = want["choices"][0]
    assert got["finish_reason"] == choice["finish_reason"]
    assert got["content"] == (choice["message"].get("content") or "")
    want_args = [c["function"]["arguments"] for c in choice["message"].get("tool_calls") or []]
    assert [c["arguments"] for c in got["tool_calls"]] == want_args
    usage = want.get("usage")
    assert got["usage"] is not None and usage is not None
    assert (
        got["usage"]["prompt_tokens"],
        got["usage"]["completion_tokens"],
        got["usage"]["total_tokens"],
    ) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
        usage["total_tokens"],
    )
    assert got["counted_completion_tokens"] > 0
