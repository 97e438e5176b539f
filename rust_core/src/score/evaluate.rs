//! Scoring: normalisers and priors (pass 1), features/score/penalties (pass 2), `explain` rows.

use std::cmp::Ordering;

use super::book::{Book, Slot};
use super::filters::Filters;
use super::market::{DEGRADED_FACTOR, FAILURE_COOLDOWN_MS, TARGET_MISS_FACTOR};
use super::model::{Features, Stats, Weights};

const NEUTRAL_PRIOR: f64 = 0.5;

const PEN_DEGRADED: u8 = 1;
const PEN_TTFT: u8 = 2;
const PEN_TPS: u8 = 4;
const PEN_RECENT_FAILURE: u8 = 8;

/// One listing in `explain`'s answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Explained {
    pub listing_id: String,
    /// Position in `rank`'s answer for the same arguments (0-based), if ranked.
    pub rank: Option<usize>,
    /// Why the listing was filtered out, if it was.
    pub excluded: Option<&'static str>,
    pub score: f64,
    pub features: Features,
    pub weights: Weights,
    pub penalties: Vec<&'static str>,
}

/// Normalisers and priors over a model's eligible listings (pass 1's result).
pub(super) struct Norms {
    min_price: f64,
    min_ttft: f64,
    max_tps: f64,
    prior_ttft: f64,
    prior_tps: f64,
    prior_rel: f64,
}

#[inline(always)]
fn ratio(num: f64, den: f64) -> f64 {
    if den <= 0.0 {
        1.0
    } else {
        (num / den).clamp(0.0, 1.0)
    }
}

/// Success EWMA, reduced after a recent failure; and whether it was.
#[inline(always)]
fn reliability(s: &Stats, now_ms: i64) -> (f64, bool) {
    if let Some(f) = s.last_failure_ms {
        let dt = now_ms.saturating_sub(f);
        if (0..FAILURE_COOLDOWN_MS).contains(&dt) {
            return (
                s.success * (0.5 + 0.5 * dt as f64 / FAILURE_COOLDOWN_MS as f64),
                true,
            );
        }
    }
    (s.success, false)
}

/// Pass 1: filter `book` through `filters`, collect the eligible slot indices into `cands`, and compute
/// the normalisers and priors.
pub(super) fn gather(
    book: &Book,
    filters: &Filters,
    now_ms: i64,
    cands: &mut Vec<u32>,
    mut on_excluded: impl FnMut(usize, &'static str),
) -> Norms {
    let mut min_price = f64::INFINITY;
    let (mut ttft_n, mut min_ttft, mut ttft_inv_sum, mut ttft_zeros) =
        (0u32, f64::INFINITY, 0.0f64, 0u32);
    let (mut tps_n, mut max_tps, mut tps_sum) = (0u32, 0.0f64, 0.0f64);
    let (mut rel_n, mut rel_sum) = (0u32, 0.0f64);
    for (idx, s) in book.slots.iter().enumerate() {
        if let Some(why) = filters.exclusion(s) {
            on_excluded(idx, why);
            continue;
        }
        cands.push(idx as u32);
        min_price = min_price.min(s.blended_price);
        let st = &s.stats;
        if st.ttft_n > 0 {
            ttft_n += 1;
            min_ttft = min_ttft.min(st.ttft_ms);
            if st.ttft_ms > 0.0 {
                ttft_inv_sum += 1.0 / st.ttft_ms;
            } else {
                ttft_zeros += 1;
            }
        }
        if st.tps_n > 0 {
            tps_n += 1;
            max_tps = max_tps.max(st.tps);
            tps_sum += st.tps;
        }
        if st.outcomes_n > 0 {
            rel_n += 1;
            rel_sum += reliability(st, now_ms).0;
        }
    }
    let mean = |n: u32, sum: f64| {
        if n == 0 {
            NEUTRAL_PRIOR
        } else {
            sum / f64::from(n)
        }
    };
    // Σ ratio(fastest, t): fastest/t each when the fastest is > 0; else 1 for each 0 ms and 0 for the rest.
    let ttft_sum = if min_ttft > 0.0 {
        (min_ttft * ttft_inv_sum).min(f64::from(ttft_n))
    } else {
        f64::from(ttft_zeros)
    };
    // Σ ratio(t, best): t/best each when the best is > 0; else 1 each.
    let tps_sum = if max_tps > 0.0 {
        (tps_sum / max_tps).min(f64::from(tps_n))
    } else {
        f64::from(tps_n)
    };
    Norms {
        min_price,
        min_ttft,
        max_tps,
        prior_ttft: mean(ttft_n, ttft_sum),
        prior_tps: mean(tps_n, tps_sum),
        prior_rel: mean(rel_n, rel_sum),
    }
}

/// Features, score and penalty bits of an eligible slot (pass 2).
#[inline(always)]
pub(super) fn evaluate(
    s: &Slot,
    n: &Norms,
    w: &Weights,
    filters: &Filters,
    now_ms: i64,
) -> (Features, f64, u8) {
    let st = &s.stats;
    let mut penalties = 0u8;
    let reliability = if st.outcomes_n > 0 {
        let (r, recent) = reliability(st, now_ms);
        if recent {
            penalties |= PEN_RECENT_FAILURE;
        }
        r
    } else {
        n.prior_rel
    };
    let f = Features {
        price: ratio(n.min_price, s.blended_price),
        latency: if st.ttft_n > 0 {
            ratio(n.min_ttft, st.ttft_ms)
        } else {
            n.prior_ttft
        },
        throughput: if st.tps_n > 0 {
            ratio(st.tps, n.max_tps)
        } else {
            n.prior_tps
        },
        reliability,
        quality: if s.blend_live_success && st.outcomes_n > 0 {
            0.5 * (s.quality + st.success)
        } else {
            s.quality
        },
    };
    let mut score = w.price * f.price
        + w.latency * f.latency
        + w.throughput * f.throughput
        + w.reliability * f.reliability
        + w.quality * f.quality;
    if s.degraded {
        score *= DEGRADED_FACTOR;
        penalties |= PEN_DEGRADED;
    }
    if st.ttft_n > 0 && filters.max_ttft_ms.is_some_and(|m| st.ttft_ms > m) {
        score *= TARGET_MISS_FACTOR;
        penalties |= PEN_TTFT;
    }
    if st.tps_n > 0 && filters.min_throughput_tps.is_some_and(|m| st.tps < m) {
        score *= TARGET_MISS_FACTOR;
        penalties |= PEN_TPS;
    }
    (f, score, penalties)
}

/// A score ordered by `f64::total_cmp`, for the running top-`limit` heap.
#[derive(Clone, Copy)]
pub(super) struct Key(pub(super) f64);

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

pub(super) fn penalty_names(bits: u8) -> Vec<&'static str> {
    [
        (PEN_DEGRADED, "contract_degraded"),
        (PEN_TTFT, "ttft_above_target_few_samples"),
        (PEN_TPS, "throughput_below_target_few_samples"),
        (PEN_RECENT_FAILURE, "recent_failure"),
    ]
    .iter()
    .filter(|(b, _)| bits & b != 0)
    .map(|(_, n)| *n)
    .collect()
}
