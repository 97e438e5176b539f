"""Market.rank() through the facade: µs per call with 1,000 and 10,000 listings for one model.

Run: `python benchmarks/micro/bench_rank.py` (after `maturin develop --release`).
Targets: ≤ 50 µs at 1,000 listings, ≤ 500 µs at 10,000.
"""

from __future__ import annotations

import os
import platform
import sys
import timeit

from dragonfly.native.market import Market

TARGETS_US = {1_000: 50.0, 10_000: 500.0}


def build(n: int) -> Market:
    m = Market()
    providers = ["openai", "azure", "groq", "together", "fireworks"]
    for i in range(n):
        lid = f"lst_{i:06d}"
        # Deterministic spread of terms and stats; a few listings paused / degraded / full.
        price = 1_000_000 + (i * 7919) % 4_000_000
        status = "paused" if i % 50 == 0 else "active"
        contract = "degraded" if i % 37 == 0 else "active"
        m.upsert_listing(
            lid,
            "gpt-4o",
            providers[i % 5],
            f"seller_{i % 300}",
            price,
            price * 4,
            600,
            8,
            status,
            contract,
            (i % 10) / 10,
        )
        m.set_inflight(lid, 8 if i % 41 == 0 else i % 4)
        if i % 3:
            for k in range(3):
                m.record_result(
                    lid, (i + k) % 17 != 0, 150.0 + (i * 31 + k) % 900, 20.0 + (i * 13) % 180, 1_000 * k
                )
    return m


def main() -> None:
    print(f"python {sys.version.split()[0]} | {platform.platform()} | cpus={os.cpu_count()}")
    for n, target in TARGETS_US.items():
        m = build(n)
        m.set_profile("balanced", "balanced", providers_deny=["fireworks"], max_input_price=4_500_000)
        m.set_profile("cheap", "cost_first")
        for profile in ("balanced", "cheap"):
            seed = iter(range(10**9))
            fn = lambda m=m, p=profile, seed=seed: m.rank("gpt-4o", p, 5_000, next(seed))  # noqa: E731
            assert len(fn()) == 8
            reps = 20_000 if n <= 1_000 else 2_000
            best = min(timeit.repeat(fn, number=reps, repeat=5)) / reps * 1e6
            verdict = "ok" if best <= target else "OVER TARGET"
            print(
                f"{n:>6} listings  profile={profile:<9} rank(limit=8): {best:8.1f} µs/call"
                f"  (target ≤ {target:.0f} µs: {verdict})"
            )


if __name__ == "__main__":
    main()
