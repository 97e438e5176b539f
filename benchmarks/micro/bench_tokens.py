"""Token counting: dragonfly._native vs tiktoken vs the bpe-openai wheel, measured in the same run.

Run: `python benchmarks/micro/bench_tokens.py` (after `maturin develop --release`). Offline: the tiktoken
encodings are built from the vocabulary files inside the bpe-openai wheel (sha256-checked).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import os
import platform
import sys
import timeit
from pathlib import Path

import tiktoken
from bpe_openai import _bindings as bpe_bindings
from tiktoken_ext import openai_public

from dragonfly.native.tokens import TokenCounter

SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}


def offline_tiktoken(name: str) -> tiktoken.Encoding:
    spec = importlib.util.find_spec("bpe_openai")
    assert spec is not None and spec.origin is not None
    raw = gzip.decompress((Path(spec.origin).parent / "data" / f"{name}.tiktoken.gz").read_bytes())
    assert hashlib.sha256(raw).hexdigest() == SHA256[name], name
    ranks = {base64.b64decode(t): int(r) for t, r in (line.split() for line in raw.splitlines())}
    orig = openai_public.load_tiktoken_bpe
    openai_public.load_tiktoken_bpe = lambda *_a, **_k: ranks
    try:
        p = getattr(openai_public, name)()
    finally:
        openai_public.load_tiktoken_bpe = orig
    return tiktoken.Encoding(
        p["name"],
        pat_str=p["pat_str"],
        mergeable_ranks=p["mergeable_ranks"],
        special_tokens=p["special_tokens"],
    )


def per_call_us(fn, text: str, budget_s: float = 0.4) -> float:
    n, t = 1, 0.0
    while True:
        t = min(timeit.repeat(lambda: fn(text), number=n, repeat=3))
        if t > budget_s / 3 or n > 1_000_000:
            return t / n * 1e6
        n *= 4 if t < budget_s / 30 else 2


def main() -> None:
    prompt = (
        "You are a helpful assistant. Summarise the following customer email in two sentences and "
        "list any action items. Email: Hi team, the invoice #4417 is overdue; can you check? Thx."
    )
    para = (
        "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs! "
        "東京は日本の首都です。 def f(x): return x ** 2  # 12345\n"
    )
    cases = {
        "chat prompt (~200 B)": prompt[:200],
        "document (100 KB)": (para * (100_000 // len(para.encode()) + 1))[:100_000],
        "single word (100 KB 'a')": "a" * 100_000,
    }
    print(
        f"python {sys.version.split()[0]} | {platform.platform()}"
        f" | {platform.processor() or platform.machine()} | cpus={os.cpu_count()}"
    )
    print(
        f"{'encoding':<12} {'input':<26} {'native µs':>10} {'tiktoken µs':>12} {'bpe-openai µs':>14}"
        f" {'tiktoken/native':>16} {'bpe-openai/native':>18}"
    )
    for name in ("o200k_base", "cl100k_base"):
        native = TokenCounter(name)
        tk = offline_tiktoken(name)
        bpe = bpe_bindings.tokenizer_for_encoding(name)
        for label, text in cases.items():
            n = native.count(text)
            assert n == len(tk.encode_ordinary(text)) == bpe.count(text), (name, label)
            budget = 2.0 if "single" in label else 0.4
            t_native = per_call_us(native.count, text)
            t_tk = per_call_us(tk.encode_ordinary, text, budget)
            t_bpe = per_call_us(bpe.count, text)
            print(
                f"{name:<12} {label:<26} {t_native:>10.1f} {t_tk:>12.1f} {t_bpe:>14.1f}"
                f" {t_tk / t_native:>15.1f}x {t_bpe / t_native:>17.2f}x   ({n} tokens)"
            )


if __name__ == "__main__":
    main()
