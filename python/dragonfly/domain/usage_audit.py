"""The market-relative usage audit: a seller that over-reports usage Dragonfly cannot count exactly
(domain/billing.py: a model whose tokenizer is only estimated, hidden reasoning, ...) shows up as a
reported-to-counted ratio above the one its competitors report for the same model. Pure: no I/O, no
clock; the caller feeds trades in the order they settle.

Per (model, kind, seller), where kind is `prompt` or `completion`:

* **Observation.** Trades are taken in blocks of `BLOCK_TRADES`. Each trade's `log(reported / counted)`
  is compared with the reference and clipped to +-`TRADE_CLIP` (one odd trade — a page of code, another
  script — cannot swing a block), and the block's observation `z` is the mean of those, weighted by the
  counted tokens (a long answer weighs more than a two-token one, whose ratio is mostly rounding).
  The block's own ratio, `log(sum reported / sum counted)`, is what the seller adds to the others'
  reference. Trades with nothing counted or nothing reported are skipped.
* **Reference.** The market's ratio for the same model and kind, now: the median over the *other*
  sellers of each one's median of its last `WINDOW_BLOCKS` block ratios (at least `MIN_PEERS` sellers
  with `MIN_PEER_BLOCKS` blocks each, else no verdict). Each seller counts once whatever its volume, so
  a large seller cannot move the reference it is judged against, and the ratio every honest seller
  shares — the model's tokenizer against the one Dragonfly counts with, and its drift with the traffic
  mix over the day — cancels out.
* **Detector.** A one-sided CUSUM on the block observations: `S = max(0, S + z - K)`, an alarm when
  `S > H`, then `S = 0`. `K = 0.01` is half the smallest inflation it is built to find (2 %:
  log 1.02 = 0.0198), so a seller inflating by δ climbs by about `log(1 + δ) - K` per block; `H = 0.1`
  was chosen with `benchmarks/usage_audit_sim.py` so that 2 % is found within a few hours at 100 trades
  an hour (median 3.4 h) and an honest seller is rarely flagged under the simulation's noise model (its
  figures, and that model, are in benchmarks/README.md "Usage audit").

What it cannot tell apart: a seller whose buyers send systematically different text (another
language, say: tokenizers differ most there) drifts from the market like an inflating one. An alarm is
a reason for review, not a verdict. The figures are for a tokenizer difference; fed hidden reasoning
(reported completion against the visible count), whose ratio varies far more from one answer to the
next, it takes longer to find the same inflation (not measured).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field

K = 0.01
H = 0.1
BLOCK_TRADES = 20
TRADE_CLIP = 0.1
WINDOW_BLOCKS = 10
MIN_PEERS = 2
MIN_PEER_BLOCKS = 5


def cusum_step(s: float, z: float, k: float = K) -> float:
    """One step of the one-sided CUSUM."""
    return max(0.0, s + z - k)


@dataclass(frozen=True, slots=True)
class Alarm:
    model: str
    kind: str
    seller: str
    statistic: float  # S when it crossed H
    ratio: float  # the block's reported / counted (sums)
    reference: float  # the market's ratio it was compared with
    trades: int  # the seller's trades of this model and kind seen so far
    trade_ids: tuple[str, ...] = ()  # the block's trades (the ids given to `observe`)


@dataclass(slots=True)
class _Track:
    """One seller's stream of one model and kind."""

    # (log ratio, reported, counted, trade id)
    block: list[tuple[float, int, int, str]] = field(default_factory=list)
    trades: int = 0
    blocks: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW_BLOCKS))
    median: float | None = None
    cusum: float = 0.0


@dataclass
class UsageAudit:
    k: float = K
    h: float = H
    block_trades: int = BLOCK_TRADES
    trade_clip: float = TRADE_CLIP
    window_blocks: int = WINDOW_BLOCKS
    min_peers: int = MIN_PEERS
    min_peer_blocks: int = MIN_PEER_BLOCKS
    _markets: dict[tuple[str, str], dict[str, _Track]] = field(default_factory=dict, repr=False)

    def observe(
        self, model: str, kind: str, seller: str, reported: int, counted: int, trade_id: str = ""
    ) -> Alarm | None:
        """Add one settled trade's reported and counted tokens of `kind`; an Alarm when this trade
        completed a block that took the seller's CUSUM over H."""
        if reported <= 0 or counted <= 0:
            return None
        market = self._markets.setdefault((model, kind), {})
        t = market.get(seller)
        if t is None:
            t = market[seller] = _Track(blocks=deque(maxlen=self.window_blocks))
        t.trades += 1
        t.block.append((math.log(reported / counted), reported, counted, trade_id))
        if len(t.block) < self.block_trades:
            return None
        block, t.block = t.block, []
        total_reported = sum(r for _, r, _, _ in block)
        total_counted = sum(c for _, _, c, _ in block)
        x = math.log(total_reported / total_counted)
        ref = self._reference(market, seller)
        t.blocks.append(x)
        t.median = statistics.median(t.blocks)
        if ref is None:
            return None
        clip = self.trade_clip
        z = sum(c * min(clip, max(-clip, lr - ref)) for lr, _, c, _ in block) / total_counted
        t.cusum = cusum_step(t.cusum, z, self.k)
        if t.cusum <= self.h:
            return None
        alarm = Alarm(
            model, kind, seller, t.cusum, math.exp(x), math.exp(ref), t.trades, tuple(i for *_, i in block)
        )
        t.cusum = 0.0
        return alarm

    def _reference(self, market: dict[str, _Track], seller: str) -> float | None:
        medians = [
            p.median
            for name, p in market.items()
            if name != seller and p.median is not None and len(p.blocks) >= self.min_peer_blocks
        ]
        if len(medians) < self.min_peers:
            return None
        return statistics.median(medians)

    def reference(self, model: str, kind: str, seller: str) -> float | None:
        """The market's reported / counted ratio `seller` is compared with (None: too few peers)."""
        ref = self._reference(self._markets.get((model, kind), {}), seller)
        return None if ref is None else math.exp(ref)

    def statistic(self, model: str, kind: str, seller: str) -> float:
        """The seller's CUSUM now (0 when unknown)."""
        t = self._markets.get((model, kind), {}).get(seller)
        return t.cusum if t is not None else 0.0
