"""Token counting: dragonfly._native vs tiktoken vs the bpe-openai wheel, measured in the same run.

Run: `python benchmarks/micro/bench_tokens.py` (after `maturin develop --release`). Offline: the tiktoken
encodings are built from the vocabulary files inside the bpe-openai wheel (sha256-checked).

Second table, what the request path sees: natural English (this repository's docs, cut into ~300-byte
passages, a different one per call, every count checked against tiktoken), with the CPU caches warm
and flushed before each call (16 MiB written between calls: on the request path the rest of the
request's work has pushed the tokenizer's tables out). The bpe-openai wheel is the same tokenizer
without Dragonfly's remembered piece counts, so native / bpe-openai is what remembering them does.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import os
import platform
import sys
import time
import timeit
from pathlib import Path
from typing import Any

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


def counters(name: str) -> tuple[TokenCounter, tiktoken.Encoding, Any]:
    """The three counters compared, for one encoding: Dragonfly's native one, tiktoken, bpe-openai."""
    return TokenCounter(name), offline_tiktoken(name), bpe_bindings.tokenizer_for_encoding(name)


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
        native, tk, bpe = counters(name)
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


DOCS = Path(__file__).resolve().parents[2] / "docs"
PASSAGE_BYTES = 300


def passages() -> list[str]:
    """The docs' prose cut at word boundaries into ~PASSAGE_BYTES passages (a completion's size)."""
    words = " ".join(p.read_text() for p in sorted(DOCS.glob("*.md"))).split()
    out, cur = [], ""
    for w in words:
        cur = f"{cur} {w}" if cur else w
        if len(cur) >= PASSAGE_BYTES:
            out.append(cur)
            cur = ""
    return out


def per_passage_us(fn, texts: list[str], flush: bytearray | None) -> float:
    """Median µs per call over `texts`, each once; with `flush`, 16 MiB written before each call."""
    times = []
    for t in texts:
        if flush is not None:
            flush[::64] = bytes(len(flush) // 64)  # one write per cache line
        start = time.perf_counter()
        fn(t)
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1e6


def natural_text() -> None:
    texts = passages()[:2000]
    flush = bytearray(16 << 20)
    print(
        f"\nnatural English, {len(texts)} passages of ~{PASSAGE_BYTES} B, a different one per call; median µs"
    )
    print(
        f"{'encoding':<12} {'caches':<8} {'native':>8} {'bpe-openai':>11} {'tiktoken':>9}"
        f" {'bpe-openai/native':>18}"
    )
    for name in ("o200k_base", "cl100k_base"):
        native, tk, bpe = counters(name)
        for t in texts:
            assert native.count(t) == len(tk.encode_ordinary(t)) == bpe.count(t), (name, t)
        for label, f in (("warm", None), ("flushed", flush)):
            got: dict[str, float] = {}
            for _ in range(3):  # interleaved rounds, best of 3
                for tool, fn in (("native", native.count), ("bpe", bpe.count), ("tk", tk.encode_ordinary)):
                    us = per_passage_us(fn, texts, f)
                    got[tool] = min(got.get(tool, us), us)
            print(
                f"{name:<12} {label:<8} {got['native']:>8.1f} {got['bpe']:>11.1f} {got['tk']:>9.1f}"
                f" {got['bpe'] / got['native']:>17.2f}x"
            )


if __name__ == "__main__":
    main()
    natural_text()
