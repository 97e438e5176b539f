"""Stub of the compiled `dragonfly._native` module (checked by mypy.stubtest against the build).

Run the check as `MYPYPATH=python python -m mypy.stubtest dragonfly._native` (tests/unit/native/test_stub.py
does): without `MYPYPATH` mypy skips the editable-installed package (it has no `py.typed`) and stubtest
reports success without having read this file.

Each section is owned by the Rust module it describes; keep them in the same order as `rust_core/src/py/`.
"""

from typing import Any, Literal, TypedDict, final

__all__ = [
    "ChunkedDecoder",
    "EventTooLargeError",
    "InvalidInputError",
    "Market",
    "MarketError",
    "NativeError",
    "Splicer",
    "SqliteBatch",
    "SqliteBatchWriter",
    "SqliteWriteError",
    "StreamError",
    "TokenCounter",
    "TokenizerError",
    "encoding_for_model",
    "preparse_request",
    "rewrite_completion",
    "substitute_model",
]

# --- errors (rust_core/src/py/errors.rs) ---
class NativeError(Exception): ...
class StreamError(NativeError): ...
class EventTooLargeError(StreamError): ...
class TokenizerError(NativeError): ...
class MarketError(NativeError): ...
class InvalidInputError(NativeError): ...
class SqliteWriteError(NativeError): ...

# --- http1 (rust_core/src/py/http1.rs) ---
@final
class ChunkedDecoder:
    def __new__(cls) -> ChunkedDecoder: ...
    def decode(self, data: bytes) -> bytes: ...
    @property
    def done(self) -> bool: ...
    @property
    def excess(self) -> int: ...

# --- sqlite_batch (rust_core/src/py/sqlite_batch.rs, over the native I/O crate rust_core/io) ---
@final
class SqliteBatch:
    def __new__(cls) -> SqliteBatch: ...
    def add(self, sql: str, rows: list[tuple[Any, ...]]) -> None: ...
    @property
    def values(self) -> int: ...

@final
class SqliteBatchWriter:
    def __new__(cls, path: str, busy_timeout_ms: int) -> SqliteBatchWriter: ...
    def write(self, batch: SqliteBatch) -> None: ...
    def close(self) -> None: ...

# --- sse (rust_core/src/py/sse.rs) ---
class _SseUsage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int
    reasoning_tokens: int

class _SseToolCall(TypedDict):
    choice: int
    index: int
    id: str | None
    name: str | None
    arguments: str

class _SseCompletion(TypedDict):
    body: bytes
    usage: _SseUsage | None
    finish_reason: str | None
    content: str
    tool_calls: list[_SseToolCall]
    counted_completion_tokens: int
    upstream_error: Any | None

@final
class Splicer:
    def __new__(
        cls,
        request_id: str,
        public_model: str,
        include_usage: bool,
        created: int,
        max_event_bytes: int = 1048576,
        encoding: str = "o200k_base",
    ) -> Splicer: ...
    def feed(self, data: bytes) -> bytes: ...
    def finish(self) -> bytes: ...
    def error_event(self, message: str, code: str | None = None) -> bytes: ...
    def begin_continuation(self) -> None: ...
    def set_prompt_tokens(self, n: int) -> None: ...
    @property
    def usage(self) -> _SseUsage | None: ...
    @property
    def usage_json(self) -> str | None: ...
    @property
    def usage_source(self) -> Literal["upstream", "counted", "none"]: ...
    @property
    def counted_completion_tokens(self) -> int: ...
    @property
    def finish_reason(self) -> str | None: ...
    @property
    def content_so_far(self) -> str: ...
    @property
    def reasoning_so_far(self) -> str: ...
    @property
    def tool_calls(self) -> list[_SseToolCall]: ...
    @property
    def tool_call_open(self) -> bool: ...
    @property
    def upstream_error(self) -> Any | None: ...
    @property
    def saw_done(self) -> bool: ...
    @property
    def events(self) -> int: ...
    @property
    def garbage_events(self) -> int: ...
    @property
    def bytes_in(self) -> int: ...
    @property
    def bytes_out(self) -> int: ...

def rewrite_completion(
    body: bytes, request_id: str, public_model: str, encoding: str = "o200k_base"
) -> _SseCompletion: ...

# --- tokens (rust_core/src/py/tokens.rs) ---
@final
class TokenCounter:
    def __new__(cls, encoding: str) -> TokenCounter: ...
    @property
    def encoding(self) -> str: ...
    def count(self, text: str) -> int: ...
    def count_chat(self, messages_json: bytes) -> int: ...

def encoding_for_model(model: str) -> tuple[str, bool]: ...
def preparse_request(body: bytes, encoding: str | None = None) -> dict[str, object]: ...
def substitute_model(body: bytes, upstream_model: str) -> bytes: ...

# --- score (rust_core/src/py/score.rs) ---
@final
class Market:
    def __new__(cls) -> Market: ...
    def __len__(self) -> int: ...
    def upsert_listing(
        self,
        listing_id: str,
        model: str,
        provider: str,
        seller_id: str,
        input_price: int,
        output_price: int,
        rpm_cap: int | None,
        concurrency_cap: int | None,
        status: str,
        contract_status: str,
        quality: float = 0.5,
        blend_live_success: bool = False,
    ) -> None: ...
    def remove_listing(self, listing_id: str) -> bool: ...
    def set_inflight(self, listing_id: str, n: int) -> bool: ...
    def record_result(
        self, listing_id: str, ok: bool, ttft_ms: float | None, throughput_tps: float | None, now_ms: int
    ) -> bool: ...
    def set_profile(
        self,
        profile_id: str,
        strategy: str,
        weights: dict[str, float] | None = None,
        providers_allow: list[str] | None = None,
        providers_deny: list[str] | None = None,
        sellers_deny: list[str] | None = None,
        max_input_price: int | None = None,
        max_output_price: int | None = None,
        max_ttft_ms: float | None = None,
        min_throughput_tps: float | None = None,
    ) -> None: ...
    def remove_profile(self, profile_id: str) -> bool: ...
    def set_strategy_weights(self, strategy: str, weights: dict[str, float]) -> None: ...
    def strategy_weights(self, strategy: str) -> dict[str, float]: ...
    def rank(self, model: str, profile_id: str, now_ms: int, seed: int, limit: int = 8) -> list[str]: ...
    def explain(self, model: str, profile_id: str, now_ms: int, seed: int) -> list[dict[str, object]]: ...
