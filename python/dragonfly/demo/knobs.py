"""The demo seller's behaviour knobs. Mutable: tests may change them while the seller runs (in-process
through `DemoSeller.config`, out-of-process through `POST /_config`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

DEFAULT_API_KEY = "demo-provider-key"
DEFAULT_MODELS = ("echo-1",)


@dataclass
class SellerConfig:
    api_key: str = DEFAULT_API_KEY
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    chunk_delay_s: float = 0.0  # pause before every streamed content (or audio) chunk after the first
    first_token_delay_s: float = 0.0  # pause after the response headers, before the first chunk
    chunks: int | None = None  # force exactly this many content chunks (answer words repeated)
    fail_status: int | None = None  # answer every chat/embeddings/speech request with this HTTP error
    drop_mid_stream_after: int | None = None  # close the connection after writing N SSE events (audio chunks)
    # Non-streamed chat: answer 200 with the whole body's content-length, send only this many bytes of
    # the body, then close the connection (a body that breaks after its head).
    break_body_after_bytes: int | None = None
    omit_usage: bool = False  # never report usage (non-stream body, stream usage chunk, embeddings)
    end_delay_s: float = 0.0  # pause between a stream's `data: [DONE]` and the end of its body
    usage_multiplier: float = 1.0  # multiply the token counts it reports (an over-reporting seller)
    # Chat: multiply the prompt tokens it reports by this instead of `usage_multiplier` (None: the same).
    prompt_usage_multiplier: float | None = None
    # Chat: report this many prompt tokens as cached (`prompt_tokens_details.cached_tokens`); it caches
    # nothing, so any value is a claim of a cache it does not have. 0: no cached tokens reported.
    reported_cached_tokens: int = 0
    audio_content_length: bool = False  # speech: declare the audio's length instead of sending it chunked

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not self.models or not all(isinstance(m, str) and m for m in self.models):
            raise ValueError("models must be a non-empty list of names")
        if self.chunk_delay_s < 0 or self.first_token_delay_s < 0 or self.end_delay_s < 0:
            raise ValueError("delays must be >= 0")
        if self.chunks is not None and self.chunks < 1:
            raise ValueError("chunks must be >= 1")
        if self.fail_status is not None and not 400 <= self.fail_status <= 599:
            raise ValueError("fail_status must be an HTTP error status (400-599)")
        if self.drop_mid_stream_after is not None and self.drop_mid_stream_after < 0:
            raise ValueError("drop_mid_stream_after must be >= 0")
        if self.break_body_after_bytes is not None and self.break_body_after_bytes < 0:
            raise ValueError("break_body_after_bytes must be >= 0")
        for name in ("usage_multiplier", "prompt_usage_multiplier"):
            value = getattr(self, name)
            if value is None and name != "usage_multiplier":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1_000_000:
                raise ValueError(f"{name} must be a number in 0..1000000")
        cached = self.reported_cached_tokens
        if isinstance(cached, bool) or not isinstance(cached, int) or not 0 <= cached <= 1_000_000:
            raise ValueError("reported_cached_tokens must be an integer in 0..1000000")

    def update(self, changes: dict[str, Any]) -> None:
        """Apply `changes` (knob name -> value) atomically: all valid, or nothing changes."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown knobs: {sorted(unknown)}")
        candidate = SellerConfig(**{**asdict(self), **changes})
        self.__dict__.update(candidate.__dict__)

    def public(self) -> dict[str, Any]:
        """The knobs without the provider key."""
        data = asdict(self)
        data.pop("api_key")
        return data
