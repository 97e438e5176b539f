"""Simulation of the market-relative usage audit (python/dragonfly/domain/usage_audit.py): how soon it
flags a seller that starts inflating its reported completion tokens, and how often it flags honest ones.

    python benchmarks/usage_audit_sim.py                 # the figures in benchmarks/README.md
    python benchmarks/usage_audit_sim.py --seed 7 --days 10

Deterministic for a seed (stdlib `random`, no numpy). Every trade goes through the real `UsageAudit`.

Noise model (what an honest seller's report looks like against Dragonfly's o200k_base count, for a model
whose tokenizer Dragonfly does not have):

* counted completion tokens per trade: lognormal, median 150, sigma 1.0 (in log), 1..4,000;
* the model's tokenizer against o200k_base: +10 % on average (`MODEL_OFFSET`), shared by every seller of
  the model, plus a diurnal swing of the traffic mix, +-1 % over 24 h (`DIURNAL`), shared too;
* per trade: log-ratio noise N(0, 0.02 + 0.3 / sqrt(counted)) — short answers vary more (at 10 tokens
  sd 0.11, at 150 sd 0.044, at 1,000 sd 0.029) — and, for 3 % of trades, another N(0, 0.25) (code, other
  scripts, emoji: content where tokenizers disagree most);
* per seller: a fixed offset for its own buyers' traffic mix — N(0, `--seller-bias`), default sd 0.25 %,
  in the detection runs; a grid (`--offsets`) in the false-alarm run — the part of the noise the market
  reference cannot cancel;
* reported = round(counted x exp(offset + diurnal + seller + trade noise) x inflation).

Traffic: every seller of the model settles 100 trades an hour. Detection: a market of 10 sellers; the
seller under test is honest for `--warmup` hours, then multiplies its reports by the inflation; the
delay is counted in its trades (and hours) from that moment to the first alarm, over `--runs` runs.
False alarms: one market of honest sellers, `--per-offset` at each traffic-mix offset of `--offsets`,
over `--days` days; every alarm is false.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass

from dragonfly.domain.usage_audit import UsageAudit

MODEL, KIND = "vendor/model", "completion"
TRADES_PER_HOUR = 100
MODEL_OFFSET = math.log(1.10)
DIURNAL = 0.01
OUTLIER_SHARE = 0.03
OUTLIER_SD = 0.25
LOG_MEDIAN_COUNT = math.log(150)


@dataclass
class Seller:
    name: str
    bias: float
    inflation: float = 1.0


def trade(rng: random.Random, seller: Seller, common: float) -> tuple[int, int]:
    """One trade's (reported, counted) completion tokens; `common` is the log-ratio every seller of the
    model shares at this hour (`shared`)."""
    gauss = rng.gauss
    counted = min(4000, max(1, round(math.exp(gauss(LOG_MEDIAN_COUNT, 1.0)))))
    noise = gauss(0.0, 0.02 + 0.3 / math.sqrt(counted))
    if rng.random() < OUTLIER_SHARE:
        noise += gauss(0.0, OUTLIER_SD)
    reported = round(counted * math.exp(common + seller.bias + noise) * seller.inflation)
    return max(0, reported), counted


def shared(hour: float) -> float:
    """The model's tokenizer against o200k_base, with the traffic mix's diurnal swing."""
    return MODEL_OFFSET + DIURNAL * math.sin(2 * math.pi * hour / 24)


def market(rng: random.Random, n: int, sigma_b: float) -> list[Seller]:
    return [Seller(f"s{i}", rng.gauss(0.0, sigma_b)) for i in range(n)]


def detection_delay(
    rng: random.Random, inflation: float, sigma_b: float, warmup_h: float, max_h: float
) -> tuple[int | None, int]:
    """Trades of the seller under test from the start of its inflation to the first alarm (None: not
    within `max_h`), and its false alarms during the warm-up."""
    sellers = market(rng, 10, sigma_b)
    target = sellers[0]
    audit = UsageAudit()
    early = 0
    since = 0
    for step in range(int((warmup_h + max_h) * TRADES_PER_HOUR)):
        hour = step / TRADES_PER_HOUR
        common = shared(hour)
        inflating = hour >= warmup_h
        target.inflation = inflation if inflating else 1.0
        for s in sellers:
            alarm = audit.observe(MODEL, KIND, s.name, *trade(rng, s, common))
            if s is target:
                since += inflating
                if alarm is not None:
                    if inflating:
                        return since, early
                    early += 1
    return None, early


def false_alarms(
    rng: random.Random, offsets: list[float], per_offset: int, days: float
) -> dict[float, list[tuple[str, float]]]:
    """One market of honest sellers, `per_offset` at each traffic-mix offset, over `days`: per offset,
    every alarm (all are false) as (seller, day)."""
    sellers = [Seller(f"s{o}-{i}", o) for o in offsets for i in range(per_offset)]
    audit = UsageAudit()
    observe = audit.observe
    alarms: dict[float, list[tuple[str, float]]] = {o: [] for o in offsets}
    for step in range(int(days * 24 * TRADES_PER_HOUR)):
        common = shared(step / TRADES_PER_HOUR)
        for s in sellers:
            if observe(MODEL, KIND, s.name, *trade(rng, s, common)) is not None:
                alarms[s.bias].append((s.name, step / TRADES_PER_HOUR / 24))
    return alarms


def _pct(values: list[int], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=20, help="detection runs per inflation level")
    ap.add_argument("--warmup", type=float, default=12.0, help="honest hours before the inflation")
    ap.add_argument("--max-hours", type=float, default=72.0, help="give up a detection run after this")
    ap.add_argument("--days", type=float, default=30.0, help="length of the false-alarm run")
    ap.add_argument("--seller-bias", type=float, default=0.0025, help="sd of the per-seller offset")
    ap.add_argument(
        "--offsets",
        default="-0.01,-0.0075,-0.005,-0.0025,0,0.0025,0.005,0.0075,0.01",
        help="traffic-mix offsets of the honest sellers in the false-alarm market",
    )
    ap.add_argument("--per-offset", type=int, default=3, help="honest sellers at each offset")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    print(
        f"usage audit: K={UsageAudit.k} H={UsageAudit.h} block={UsageAudit.block_trades} trades, "
        f"{TRADES_PER_HOUR} trades/h per seller, seed {args.seed}"
    )
    print(f"\ndetection ({args.runs} runs each, 10 sellers, seller offset sd {args.seller_bias:.2%}):")
    print(
        "| inflation | detected | delay, trades: median / p90 / max | delay, hours: median / p90 "
        "| alarms while still honest |"
    )
    print("|---|---:|---:|---:|---:|")
    for inflation in (1.02, 1.05, 3.0):
        rng = random.Random(f"{args.seed}-detect-{inflation}")
        delays: list[int] = []
        early = 0
        for _ in range(args.runs):
            delay, before = detection_delay(rng, inflation, args.seller_bias, args.warmup, args.max_hours)
            early += before
            if delay is not None:
                delays.append(delay)
        if delays:
            med, p90 = statistics.median(delays), _pct(delays, 90)
            print(
                f"| {inflation - 1:+.0%} | {len(delays)}/{args.runs} | {med:.0f} / {p90:.0f} / {max(delays)} "
                f"| {med / TRADES_PER_HOUR:.2f} / {p90 / TRADES_PER_HOUR:.2f} | {early} |"
            )
        else:
            print(f"| {inflation - 1:+.0%} | 0/{args.runs} | – | – | {early} |")
    offsets = [float(x) for x in args.offsets.split(",")]
    print(
        f"\nfalse alarms (one market of {len(offsets) * args.per_offset} honest sellers, {args.per_offset} "
        f"at each traffic-mix offset, {args.days:g} days, {TRADES_PER_HOUR} trades/h each):"
    )
    print("| seller's offset from the market | sellers flagged | alarms (all of them) | first alarm, day |")
    print("|---|---:|---:|---:|")
    found = false_alarms(random.Random(f"{args.seed}-honest"), offsets, args.per_offset, args.days)
    market_offset = statistics.median(offsets)  # every offset has as many sellers
    for offset in offsets:
        alarms = found[offset]
        first = f"{min(day for _, day in alarms):.1f}" if alarms else "–"
        flagged = len({name for name, _ in alarms})
        print(f"| {offset - market_offset:+.2%} | {flagged}/{args.per_offset} | {len(alarms)} | {first} |")
    print(f"\n{time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
