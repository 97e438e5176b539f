"""How healthy a listing, a provider or a model looks from its settled trades over a window: the rule
behind `health` in `/v1/pool/providers` and in the seller's listings, and the numbers of
`/v1/market/health`.

The sample is the calls sellers answered or failed: a completed trade is a success; a trade whose stream
broke, and an attempt that failed before any byte (a 5xx, a timeout, a connect error, whether or not
another listing then served the trade), are failures. Trades refused before any seller was called,
streams the buyer cancelled and errors that are the buyer's (400, 413, 422) or back-pressure (429) say
nothing about the seller and are left out. Pure: the counts come from the caller
(`storage/sql/repos/market_health.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DEFAULT_WINDOW_S = 3600
MIN_WINDOW_S, MAX_WINDOW_S = 60, 86_400
MIN_TRADES = 20  # fewer calls than this in the window: too little traffic to judge
OK_RATE_PCT = 95  # success rate at or above this (with MIN_TRADES) is "ok"

HealthStatus = Literal["ok", "degraded", "unknown"]


@dataclass(frozen=True, slots=True)
class TradeStats:
    """`calls` = successes + failures over the window (`trades` in the API); the median TTFT is over the
    completed trades that recorded one, given as the sum and count of the one or two middle values (exact
    in integers)."""

    calls: int = 0
    completed: int = 0
    ttft_mid_sum: int = 0
    ttft_mid_count: int = 0

    @property
    def success_rate(self) -> float | None:
        return self.completed / self.calls if self.calls else None

    @property
    def median_ttft_ms(self) -> int | float | None:
        """The median in ms: the middle value, or the mean of the two middle ones (which may end in .5)."""
        if not self.ttft_mid_count:
            return None
        if self.ttft_mid_sum % self.ttft_mid_count == 0:
            return self.ttft_mid_sum // self.ttft_mid_count
        return self.ttft_mid_sum / self.ttft_mid_count


NO_TRADES = TradeStats()


def health_status(stats: TradeStats, *, contract_trouble: bool) -> HealthStatus:
    """`degraded` when a contract is degraded or suspended by health, or when at least MIN_TRADES calls
    succeeded less than OK_RATE_PCT % of the time; `ok` when at least MIN_TRADES calls succeeded at least
    that often; `unknown` otherwise (too little traffic)."""
    if contract_trouble:
        return "degraded"
    if stats.calls < MIN_TRADES:
        return "unknown"
    return "ok" if stats.completed * 100 >= OK_RATE_PCT * stats.calls else "degraded"


def window_from(raw: str | None) -> int:
    """`window_s` as the API takes it: whole seconds in [MIN_WINDOW_S, MAX_WINDOW_S], default one hour.
    Raises ValueError with the message the caller should answer with."""
    if raw is None:
        return DEFAULT_WINDOW_S
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or not MIN_WINDOW_S <= int(text) <= MAX_WINDOW_S:
        raise ValueError(f"window_s must be a whole number of seconds from {MIN_WINDOW_S} to {MAX_WINDOW_S}.")
    return int(text)
