"""Fixtures for the native-core tests.

tiktoken downloads its vocabularies at run time, which fails offline. The reference encodings are built
instead from the vocabulary files shipped inside the `bpe-openai` PyPI wheel, checked against the sha256
tiktoken itself pins, with the `pat_str` and special tokens from `tiktoken_ext.openai_public`.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
from functools import cache
from pathlib import Path

import pytest

# sha256 of the uncompressed vocabulary files, as pinned by `tiktoken_ext.openai_public`.
_EXPECTED_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}


def _vocab_path(name: str) -> Path:
    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or spec.origin is None:
        raise RuntimeError("the bpe-openai wheel is required for the tiktoken reference encodings")
    return Path(spec.origin).parent / "data" / f"{name}.tiktoken.gz"


@cache
def offline_tiktoken(name: str):  # -> tiktoken.Encoding
    """A `tiktoken.Encoding` for `name` built without network access."""
    import tiktoken
    from tiktoken_ext import openai_public

    raw = gzip.decompress(_vocab_path(name).read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    if digest != _EXPECTED_SHA256[name]:
        raise RuntimeError(f"{name}: vocabulary sha256 {digest} is not the one tiktoken pins")
    ranks = {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in raw.splitlines())}
    # Take pat_str / special tokens from tiktoken's own constructor, without its download.
    orig = openai_public.load_tiktoken_bpe
    openai_public.load_tiktoken_bpe = lambda *_a, **_k: ranks  # type: ignore[assignment]
    try:
        params = getattr(openai_public, name)()
    finally:
        openai_public.load_tiktoken_bpe = orig
    return tiktoken.Encoding(
        params["name"],
        pat_str=params["pat_str"],
        mergeable_ranks=params["mergeable_ranks"],
        special_tokens=params["special_tokens"],
    )


@pytest.fixture(scope="session", params=["o200k_base", "cl100k_base"])
def encoding_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def tiktoken_for():  # -> Callable[[str], tiktoken.Encoding]
    """`tiktoken_for("o200k_base")`: the reference tiktoken encoding, built offline."""
    return offline_tiktoken
