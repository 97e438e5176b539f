"""The seller's deterministic "model": what it answers and how it counts tokens.

Token accounting (documented, deliberately simple, not a real tokenizer):
- prompt_tokens = for every message, the number of whitespace-separated words of its text + 3;
- completion_tokens = the number of words in the answer (one streamed content chunk per word);
- embeddings: prompt_tokens = total_tokens = the number of words over all inputs.

The answer is the words of `"Echo: " + <text of the last user message>`, joined by single spaces and cut to
`max_tokens` (or `max_completion_tokens`) words, in which case the finish reason is `length`. When the
messages end with an assistant message that begins that answer (a prefix to continue, as the gateway
sends after another seller broke off mid-stream), the answer is the rest of it.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any

PER_MESSAGE_TOKENS = 3
DEFAULT_EMBEDDING_DIMS = 8


def content_text(content: Any) -> str:
    """The text of a message `content`: a string, or the `text` parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def count_words(text: str) -> int:
    return len(text.split())


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(count_words(content_text(m.get("content"))) + PER_MESSAGE_TOKENS for m in messages)


@dataclass(frozen=True)
class Answer:
    words: list[str]
    finish_reason: str  # "stop" or "length"

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def chunks(self) -> list[str]:
        """One content piece per word, each but the last with its trailing space: they join to `text`."""
        return [w + " " for w in self.words[:-1]] + self.words[-1:]


def answer(messages: list[dict[str, Any]], max_tokens: int | None, chunks: int | None = None) -> Answer:
    """The echo answer; `chunks` (a load-test knob) repeats the words cyclically to exactly that many."""
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    words = ("Echo: " + content_text(last_user.get("content") if last_user else "")).split()
    if chunks is not None:
        words = [words[i % len(words)] for i in range(max(chunks, 1))]
    prefix = messages[-1] if messages and messages[-1].get("role") == "assistant" else None
    if prefix is not None:
        said = content_text(prefix.get("content")).split()
        if words[: len(said)] == said:
            words = words[len(said) :]
    if max_tokens is not None and 0 < max_tokens < len(words):
        return Answer(words[:max_tokens], "length")
    return Answer(words, "stop")


def embedding(text: str, dims: int = DEFAULT_EMBEDDING_DIMS) -> list[float]:
    """A deterministic vector in [-1, 1)^dims derived from sha256 of the text."""
    out: list[float] = []
    block = 0
    while len(out) < dims:
        digest = hashlib.sha256(f"{block}:{text}".encode()).digest()
        for (value,) in struct.iter_unpack("<I", digest):
            out.append(round(value / 2**31 - 1.0, 6))
        block += 1
    return out[:dims]
