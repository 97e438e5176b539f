"""The catalogue of known upstream providers a seller can register keys for.

Static data: ids, display names, default base URLs and the kinds of endpoint each serves. `health` is the
platform's observed health of that provider's listings, which the caller judges from recent trades
(services/market_health.py); a provider it has no verdict for is `unknown`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Provider:
    id: str
    name: str
    default_base_url: str | None
    kinds: tuple[str, ...]
    models: tuple[str, ...]


CATALOGUE: tuple[Provider, ...] = (
    Provider(
        "openai",
        "OpenAI",
        "https://api.openai.com/v1",
        ("chat", "embeddings", "speech"),
        ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "text-embedding-3-small", "tts-1"),
    ),
    Provider(
        "deepseek",
        "DeepSeek",
        "https://api.deepseek.com/v1",
        ("chat",),
        ("deepseek-chat", "deepseek-reasoner"),
    ),
    Provider(
        "groq",
        "Groq",
        "https://api.groq.com/openai/v1",
        ("chat", "speech"),
        ("llama-3.3-70b-versatile", "llama-3.1-8b-instant"),
    ),
    Provider(
        "together",
        "Together AI",
        "https://api.together.xyz/v1",
        ("chat", "embeddings"),
        ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "deepseek-ai/DeepSeek-V3"),
    ),
    Provider(
        "fireworks",
        "Fireworks AI",
        "https://api.fireworks.ai/inference/v1",
        ("chat", "embeddings"),
        ("accounts/fireworks/models/llama-v3p3-70b-instruct",),
    ),
    Provider(
        "mistral",
        "Mistral AI",
        "https://api.mistral.ai/v1",
        ("chat", "embeddings"),
        ("mistral-large-latest", "mistral-small-latest", "mistral-embed"),
    ),
    Provider(
        "openrouter",
        "OpenRouter",
        "https://openrouter.ai/api/v1",
        ("chat",),
        ("openai/gpt-4o-mini", "deepseek/deepseek-chat"),
    ),
    Provider("custom", "Custom (any OpenAI-compatible base URL)", None, ("chat", "embeddings", "speech"), ()),
)
_BY_ID = {p.id: p for p in CATALOGUE}


def find(provider_id: str) -> Provider | None:
    return _BY_ID.get(provider_id)


def check_ids(ids: list[str]) -> None:
    """Raise ValueError naming the first id that is not a provider of the catalogue (a misspelt name in
    a routing filter would silently exclude or admit everything)."""
    for provider_id in ids:
        if provider_id not in _BY_ID:
            raise ValueError(f"unknown provider {provider_id!r} (known: {', '.join(_BY_ID)})")


def list_providers(health: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    return [
        {
            "id": p.id,
            "name": p.name,
            "default_base_url": p.default_base_url,
            "kinds": list(p.kinds),
            "models": list(p.models),
            "health": (health or {}).get(p.id, "unknown"),
        }
        for p in CATALOGUE
    ]
