//! The market book and the ranking pipeline: filter → features → weighted score → seeded near-tie draw.
//!
//! Scoring, in one place (each feature in [0, 1], 1 = best, relative to the other eligible listings of
//! the same model so that the numbers mean the same thing for every model):
//!
//! * price: `cheapest blended price / blended price` (blend = 3 input : 1 output);
//! * ttft: `fastest TTFT EWMA / TTFT EWMA`; throughput: `throughput EWMA / best throughput EWMA`;
//! * reliability: success-rate EWMA, scaled down by up to half for a failure in the last
//!   [`FAILURE_COOLDOWN_MS`] (recovering linearly);
//! * quality: the operator-assessed value.
//!
//! A listing without samples for a feature gets the mean of the listings that have them (0.5 when none
//! has): a neutral prior, so new listings are neither buried nor favoured. The score is the weighted sum,
//! halved for a degraded contract and halved again when a TTFT/throughput target is missed on fewer than
//! [`MIN_TARGET_SAMPLES`] samples (with at least that many samples the listing is excluded instead).
//! Listings within [`TIE_EPSILON`] of each other are ordered by a weighted draw (weight = score) seeded by
//! the caller, so load spreads across equivalent sellers while one seed always gives one order.
//!
//! Performance (the data plane calls `rank` on every request): listings are grouped by model, and each
//! model's book keeps a compact "hot" slot per listing (prices, caps, status code, interned provider and
//! seller symbols, live stats) apart from the "cold" strings used only by `explain`. Provider/seller
//! names are interned to small integers at `upsert_listing`/`set_profile` time and a profile's
//! allow/deny lists are precompiled into bitsets, so the filter pass hashes no string. `rank` makes two
//! passes over the model's slots — (1) filter and gather the normalisers and the priors' sums, (2) score
//! each eligible listing and keep only those that can still reach the answer (a running top-`limit` heap
//! and its near-tie floor) — then sorts that handful. The prior of the TTFT feature is computed in pass 1
//! as `fastest × Σ 1/ttft` (the same mean as Σ fastest/ttft, up to rounding).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use super::model::{
    ContractStatus, Features, ListingStatus, ListingTerms, Profile, Stats, Strategy, Weights,
};
use super::rng::SplitMix64;

/// Samples needed before a TTFT/throughput target can exclude a listing.
pub const MIN_TARGET_SAMPLES: u64 = 5;
/// Scores closer than this are near-ties, ordered by the seeded draw.
pub const TIE_EPSILON: f64 = 0.01;
/// Score factor for a degraded contract.
pub const DEGRADED_FACTOR: f64 = 0.5;
/// Score factor for a target missed on too few samples to exclude.
pub const TARGET_MISS_FACTOR: f64 = 0.5;
/// Window after a failure during which reliability is reduced (up to half, recovering linearly).
pub const FAILURE_COOLDOWN_MS: i64 = 30_000;
const TTFT_ALPHA: f64 = 0.2;
const TPS_ALPHA: f64 = 0.2;
const SUCCESS_ALPHA: f64 = 0.1;
const NEUTRAL_PRIOR: f64 = 0.5;

const PEN_DEGRADED: u8 = 1;
const PEN_TTFT: u8 = 2;
const PEN_TPS: u8 = 4;
const PEN_RECENT_FAILURE: u8 = 8;

/// Reasons a listing is never routable whatever the profile, by [`Slot::blocked`] code (0 = routable).
const BLOCKED: [&str; 6] = [
    "",
    "status_pending",
    "status_paused",
    "status_price_review",
    "status_suspended",
    "contract_suspended",
];

/// Why a market call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarketError {
    UnknownProfile(String),
    Invalid(String),
}

impl std::fmt::Display for MarketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MarketError::UnknownProfile(p) => write!(f, "unknown routing profile {p:?}"),
            MarketError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for MarketError {}

#[cold]
fn invalid(msg: impl Into<String>) -> MarketError {
    MarketError::Invalid(msg.into())
}

/// Provider and seller names as small integers. Grows with the distinct names ever seen (listings and
/// profiles); never shrinks, which is bounded by the number of sellers/providers on the market.
#[derive(Default)]
struct Interner(HashMap<String, u32>);

impl Interner {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&sym) = self.0.get(name) {
            return sym;
        }
        let sym = u32::try_from(self.0.len()).unwrap_or(u32::MAX);
        self.0.insert(name.to_owned(), sym);
        sym
    }
}

/// A set of interned symbols as a bitset.
#[derive(Default)]
struct SymSet(Vec<u64>);

impl SymSet {
    fn build(syms: impl IntoIterator<Item = u32>) -> Self {
        let mut bits: Vec<u64> = Vec::new();
        for sym in syms {
            let word = (sym / 64) as usize;
            if bits.len() <= word {
                bits.resize(word + 1, 0);
            }
            if let Some(w) = bits.get_mut(word) {
                *w |= 1 << (sym % 64);
            }
        }
        SymSet(bits)
    }

    #[inline]
    fn contains(&self, sym: u32) -> bool {
        self.0
            .get((sym / 64) as usize)
            .is_some_and(|w| (w >> (sym % 64)) & 1 == 1)
    }
}

/// The hot part of a listing: everything `rank` reads, strings replaced by symbols.
struct Slot {
    input_price: u64,
    output_price: u64,
    blended_price: f64,
    quality: f64,
    /// `u64::MAX` when uncapped.
    concurrency_cap: u64,
    provider: u32,
    seller: u32,
    /// Index into [`BLOCKED`]; 0 = routable.
    blocked: u8,
    degraded: bool,
    stats: Stats,
}

impl Slot {
    fn new(names: &mut Interner, t: &ListingTerms, stats: Stats) -> Slot {
        let blocked = match (t.status, t.contract) {
            (ListingStatus::Pending, _) => 1,
            (ListingStatus::Paused, _) => 2,
            (ListingStatus::PriceReview, _) => 3,
            (ListingStatus::Suspended, _) => 4,
            (ListingStatus::Active, ContractStatus::Suspended) => 5,
            (ListingStatus::Active, _) => 0,
        };
        Slot {
            input_price: t.input_price,
            output_price: t.output_price,
            blended_price: t.blended_price(),
            quality: t.quality,
            concurrency_cap: t.concurrency_cap.unwrap_or(u64::MAX),
            provider: names.intern(&t.provider),
            seller: names.intern(&t.seller_id),
            blocked,
            degraded: t.contract == ContractStatus::Degraded,
            stats,
        }
    }
}

/// The cold part of a listing: its id and full terms.
struct Cold {
    id: String,
    terms: ListingTerms,
}

/// One model's listings: `slots[i]` and `cold[i]` describe the same listing.
#[derive(Default)]
struct Book {
    slots: Vec<Slot>,
    cold: Vec<Cold>,
    pos: HashMap<String, usize>,
}

/// A profile's filters, compiled against the interner.
struct Filters {
    providers_allow: Option<SymSet>,
    providers_deny: SymSet,
    sellers_deny: SymSet,
    max_input_price: u64,
    max_output_price: u64,
    max_ttft_ms: Option<f64>,
    min_throughput_tps: Option<f64>,
}

impl Filters {
    fn compile(names: &mut Interner, p: &Profile) -> Filters {
        let mut set = |list: &mut dyn Iterator<Item = &String>| {
            SymSet::build(list.map(|n| names.intern(n)).collect::<Vec<_>>())
        };
        Filters {
            providers_allow: p.providers_allow.as_ref().map(|a| set(&mut a.iter())),
            providers_deny: set(&mut p.providers_deny.iter()),
            sellers_deny: set(&mut p.sellers_deny.iter()),
            max_input_price: p.max_input_price.unwrap_or(u64::MAX),
            max_output_price: p.max_output_price.unwrap_or(u64::MAX),
            max_ttft_ms: p.max_ttft_ms,
            min_throughput_tps: p.min_throughput_tps,
        }
    }

    /// Why `s` is filtered out, if it is (checked in the order the reasons are documented).
    #[inline(always)]
    fn exclusion(&self, s: &Slot) -> Option<&'static str> {
        if s.blocked != 0 {
            return BLOCKED.get(usize::from(s.blocked)).copied();
        }
        if s.stats.inflight >= s.concurrency_cap {
            return Some("capacity_full");
        }
        if s.input_price > self.max_input_price {
            return Some("input_price_above_ceiling");
        }
        if s.output_price > self.max_output_price {
            return Some("output_price_above_ceiling");
        }
        if self
            .providers_allow
            .as_ref()
            .is_some_and(|a| !a.contains(s.provider))
        {
            return Some("provider_not_allowed");
        }
        if self.providers_deny.contains(s.provider) {
            return Some("provider_denied");
        }
        if self.sellers_deny.contains(s.seller) {
            return Some("seller_denied");
        }
        let st = &s.stats;
        if st.ttft_n >= MIN_TARGET_SAMPLES && self.max_ttft_ms.is_some_and(|m| st.ttft_ms > m) {
            return Some("ttft_above_target");
        }
        if st.tps_n >= MIN_TARGET_SAMPLES && self.min_throughput_tps.is_some_and(|m| st.tps < m) {
            return Some("throughput_below_target");
        }
        None
    }
}

struct ProfileEntry {
    profile: Profile,
    weights: Weights,
    filters: Filters,
}

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

/// An eligible listing: its score and its slot index.
type Scored = (f64, u32);

/// Normalisers and priors over a model's eligible listings (pass 1's result).
struct Norms {
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
fn gather(
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
fn evaluate(
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
        ttft: if st.ttft_n > 0 {
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
        quality: s.quality,
    };
    let mut score = w.price * f.price
        + w.ttft * f.ttft
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
struct Key(f64);

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

/// Listings (static terms + live stats) grouped by model, routing profiles, and strategy weights.
pub struct Market {
    books: HashMap<String, Book>,
    model_of: HashMap<String, String>,
    profiles: HashMap<String, ProfileEntry>,
    strategy_weights: HashMap<Strategy, Weights>,
    names: Interner,
}

impl Default for Market {
    fn default() -> Self {
        Self::new()
    }
}

impl Market {
    pub fn new() -> Self {
        let strategy_weights = Strategy::ALL
            .iter()
            .map(|s| (*s, s.default_weights()))
            .collect();
        Market {
            books: HashMap::new(),
            model_of: HashMap::new(),
            profiles: HashMap::new(),
            strategy_weights,
            names: Interner::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.model_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.model_of.is_empty()
    }

    /// Insert or replace a listing's terms; live stats survive a replace unless the model changes.
    pub fn upsert_listing(&mut self, id: &str, terms: ListingTerms) -> Result<(), MarketError> {
        if !(0.0..=1.0).contains(&terms.quality) {
            return Err(invalid(format!(
                "quality must be in [0, 1], got {}",
                terms.quality
            )));
        }
        if let Some(old_model) = self.model_of.get(id) {
            if *old_model == terms.model {
                if let Some(book) = self.books.get_mut(old_model) {
                    if let Some(&i) = book.pos.get(id) {
                        if let (Some(slot), Some(cold)) =
                            (book.slots.get_mut(i), book.cold.get_mut(i))
                        {
                            let stats = std::mem::take(&mut slot.stats);
                            *slot = Slot::new(&mut self.names, &terms, stats);
                            cold.terms = terms;
                            return Ok(());
                        }
                    }
                }
            }
            self.remove_listing(id);
        }
        let slot = Slot::new(
            &mut self.names,
            &terms,
            Stats {
                success: 1.0,
                ..Stats::default()
            },
        );
        let book = self.books.entry(terms.model.clone()).or_default();
        book.pos.insert(id.to_owned(), book.slots.len());
        self.model_of.insert(id.to_owned(), terms.model.clone());
        book.slots.push(slot);
        book.cold.push(Cold {
            id: id.to_owned(),
            terms,
        });
        Ok(())
    }

    /// Remove a listing; false if it was not there.
    pub fn remove_listing(&mut self, id: &str) -> bool {
        let Some(model) = self.model_of.remove(id) else {
            return false;
        };
        let Some(book) = self.books.get_mut(&model) else {
            return false;
        };
        let Some(i) = book.pos.remove(id) else {
            return false;
        };
        if i >= book.slots.len() || i >= book.cold.len() {
            return false;
        }
        book.slots.swap_remove(i);
        book.cold.swap_remove(i);
        if let Some(moved) = book.cold.get(i) {
            book.pos.insert(moved.id.clone(), i);
        }
        if book.slots.is_empty() {
            self.books.remove(&model);
        }
        true
    }

    fn stats_mut(&mut self, id: &str) -> Option<&mut Stats> {
        let model = self.model_of.get(id)?;
        let book = self.books.get_mut(model)?;
        let i = *book.pos.get(id)?;
        book.slots.get_mut(i).map(|s| &mut s.stats)
    }

    /// Set the number of requests in flight on a listing; false if the listing is unknown.
    pub fn set_inflight(&mut self, id: &str, n: u64) -> bool {
        self.stats_mut(id).map(|s| s.inflight = n).is_some()
    }

    /// Fold one request outcome into the listing's EWMAs; false if the listing is unknown (e.g. removed
    /// while the request was in flight).
    pub fn record_result(
        &mut self,
        id: &str,
        ok: bool,
        ttft_ms: Option<f64>,
        throughput_tps: Option<f64>,
        now_ms: i64,
    ) -> Result<bool, MarketError> {
        for (name, v) in [("ttft_ms", ttft_ms), ("throughput_tps", throughput_tps)] {
            if let Some(v) = v {
                if !v.is_finite() || v < 0.0 {
                    return Err(invalid(format!(
                        "{name} must be a finite number >= 0, got {v}"
                    )));
                }
            }
        }
        let Some(s) = self.stats_mut(id) else {
            return Ok(false);
        };
        let ewma = |old: f64, n: u64, x: f64, a: f64| if n == 0 { x } else { old + a * (x - old) };
        if let Some(t) = ttft_ms {
            s.ttft_ms = ewma(s.ttft_ms, s.ttft_n, t, TTFT_ALPHA);
            s.ttft_n += 1;
        }
        if let Some(t) = throughput_tps {
            s.tps = ewma(s.tps, s.tps_n, t, TPS_ALPHA);
            s.tps_n += 1;
        }
        s.success += SUCCESS_ALPHA * (if ok { 1.0 } else { 0.0 } - s.success);
        s.outcomes_n += 1;
        if !ok {
            s.last_failure_ms = Some(now_ms);
        }
        Ok(true)
    }

    fn resolve(
        &self,
        strategy: Strategy,
        weights: Option<&[(String, f64)]>,
    ) -> Result<Weights, MarketError> {
        let base = self
            .strategy_weights
            .get(&strategy)
            .copied()
            .unwrap_or_else(|| strategy.default_weights());
        let w = match weights {
            Some(pairs) => base.with(pairs).map_err(invalid)?,
            None if strategy == Strategy::Custom => {
                return Err(invalid("strategy 'custom' needs weights"));
            }
            None => base,
        };
        w.normalised().map_err(invalid)
    }

    /// Register or replace a routing profile (its provider/seller lists are compiled here, once).
    pub fn set_profile(&mut self, id: &str, profile: Profile) -> Result<(), MarketError> {
        let weights = self.resolve(profile.strategy, profile.weights.as_deref())?;
        let filters = Filters::compile(&mut self.names, &profile);
        self.profiles.insert(
            id.to_owned(),
            ProfileEntry {
                profile,
                weights,
                filters,
            },
        );
        Ok(())
    }

    pub fn remove_profile(&mut self, id: &str) -> bool {
        self.profiles.remove(id).is_some()
    }

    /// Change a strategy's default weights (operator tuning); profiles using it are re-resolved.
    pub fn set_strategy_weights(
        &mut self,
        strategy: Strategy,
        pairs: &[(String, f64)],
    ) -> Result<(), MarketError> {
        let base = strategy.default_weights().with(pairs).map_err(invalid)?;
        base.normalised().map_err(invalid)?;
        let old = self.strategy_weights.insert(strategy, base);
        let mut resolved = Vec::new();
        for (id, p) in &self.profiles {
            if p.profile.strategy == strategy {
                match self.resolve(strategy, p.profile.weights.as_deref()) {
                    Ok(w) => resolved.push((id.clone(), w)),
                    Err(e) => {
                        if let Some(old) = old {
                            self.strategy_weights.insert(strategy, old);
                        }
                        return Err(e);
                    }
                }
            }
        }
        for (id, w) in resolved {
            if let Some(p) = self.profiles.get_mut(&id) {
                p.weights = w;
            }
        }
        Ok(())
    }

    /// The current (un-normalised) weights of a strategy.
    pub fn strategy_weights(&self, strategy: Strategy) -> Weights {
        self.strategy_weights
            .get(&strategy)
            .copied()
            .unwrap_or_else(|| strategy.default_weights())
    }

    fn profile(&self, profile_id: &str) -> Result<&ProfileEntry, MarketError> {
        self.profiles
            .get(profile_id)
            .ok_or_else(|| MarketError::UnknownProfile(profile_id.to_owned()))
    }

    /// Order candidates: best score first, near-ties by a weighted draw seeded by `seed`. At most `limit`.
    ///
    /// `cands` must hold every eligible listing whose score is at least the `limit`-th best score minus
    /// [`TIE_EPSILON`] (more is fine): nothing below that can reach the answer, so `rank` and `explain`
    /// give the same order.
    fn order(book: &Book, mut cands: Vec<Scored>, seed: u64, limit: usize) -> Vec<Scored> {
        let limit = limit.min(cands.len());
        if limit == 0 {
            return Vec::new();
        }
        let id = |i: u32| book.cold.get(i as usize).map(|c| c.id.as_str());
        cands.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then_with(|| id(a.1).cmp(&id(b.1))));
        let mut rng = SplitMix64::new(seed);
        let mut out = Vec::with_capacity(limit);
        let mut rest = cands.into_iter().peekable();
        while out.len() < limit {
            let Some(head) = rest.next() else { break };
            let floor = head.0 - TIE_EPSILON;
            let mut group = vec![head];
            while let Some(c) = rest.next_if(|c| c.0 >= floor) {
                group.push(c);
            }
            if group.len() == 1 {
                out.append(&mut group);
                continue;
            }
            // Efraimidis–Spirakis weighted sampling without replacement: key = ln(u) / weight.
            let mut keyed: Vec<(f64, Scored)> = group
                .into_iter()
                .map(|c| {
                    let u = rng.next_f64().max(f64::MIN_POSITIVE);
                    (u.ln() / c.0.max(1e-9), c)
                })
                .collect();
            let by_key = |a: &(f64, Scored), b: &(f64, Scored)| b.0.total_cmp(&a.0);
            let need = limit - out.len();
            if keyed.len() > need {
                keyed.select_nth_unstable_by(need - 1, by_key);
                keyed.truncate(need);
            }
            keyed.sort_unstable_by(by_key);
            out.extend(keyed.into_iter().map(|(_, c)| c));
        }
        out.truncate(limit);
        out
    }

    /// Listing ids for `model` under `profile_id`, best first, at most `limit`.
    pub fn rank(
        &self,
        model: &str,
        profile_id: &str,
        now_ms: i64,
        seed: u64,
        limit: usize,
    ) -> Result<Vec<&str>, MarketError> {
        let pe = self.profile(profile_id)?;
        let Some(book) = self.books.get(model) else {
            return Ok(Vec::new());
        };
        let mut cands = Vec::with_capacity(book.slots.len());
        let norms = gather(book, &pe.filters, now_ms, &mut cands, |_, _| {});
        let limit = limit.min(cands.len());
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Pass 2: score, keeping only what can still reach the answer — the running top `limit` (a
        // min-heap of their scores) and anything within TIE_EPSILON of its worst.
        let mut top: BinaryHeap<Reverse<Key>> = BinaryHeap::with_capacity(limit + 1);
        let mut floor = f64::NEG_INFINITY;
        let mut kept: Vec<Scored> = Vec::new();
        for &idx in &cands {
            let Some(s) = book.slots.get(idx as usize) else {
                continue;
            };
            let (_, score, _) = evaluate(s, &norms, &pe.weights, &pe.filters, now_ms);
            if score < floor {
                continue;
            }
            kept.push((score, idx));
            if top.len() < limit {
                top.push(Reverse(Key(score)));
            } else if top.peek().is_some_and(|Reverse(k)| score > k.0) {
                top.pop();
                top.push(Reverse(Key(score)));
            } else {
                continue;
            }
            if top.len() == limit {
                if let Some(Reverse(k)) = top.peek() {
                    floor = k.0 - TIE_EPSILON;
                }
            }
        }
        kept.retain(|c| c.0 >= floor);
        Ok(Self::order(book, kept, seed, limit)
            .into_iter()
            .filter_map(|(_, i)| book.cold.get(i as usize).map(|c| c.id.as_str()))
            .collect())
    }

    /// Every listing of `model` with its score breakdown: ranked ones first in `rank` order (same
    /// arguments, no limit), then the excluded ones with the reason.
    pub fn explain(
        &self,
        model: &str,
        profile_id: &str,
        now_ms: i64,
        seed: u64,
    ) -> Result<Vec<Explained>, MarketError> {
        let pe = self.profile(profile_id)?;
        let Some(book) = self.books.get(model) else {
            return Ok(Vec::new());
        };
        let mut excluded = Vec::new();
        let mut cands = Vec::with_capacity(book.slots.len());
        let norms = gather(book, &pe.filters, now_ms, &mut cands, |idx, why| {
            excluded.push((idx, why))
        });
        let eval = |i: u32| {
            book.slots
                .get(i as usize)
                .map(|s| evaluate(s, &norms, &pe.weights, &pe.filters, now_ms))
        };
        let scored: Vec<Scored> = cands
            .iter()
            .filter_map(|&i| eval(i).map(|(_, score, _)| (score, i)))
            .collect();
        let n = scored.len();
        let id = |i: usize| book.cold.get(i).map(|c| c.id.clone()).unwrap_or_default();
        let mut out: Vec<Explained> = Self::order(book, scored, seed, n)
            .into_iter()
            .enumerate()
            .filter_map(|(rank, (_, i))| {
                let (features, score, penalties) = eval(i)?;
                Some(Explained {
                    listing_id: id(i as usize),
                    rank: Some(rank),
                    excluded: None,
                    score,
                    features,
                    weights: pe.weights,
                    penalties: penalty_names(penalties),
                })
            })
            .collect();
        out.extend(excluded.into_iter().map(|(idx, why)| Explained {
            listing_id: id(idx),
            rank: None,
            excluded: Some(why),
            score: 0.0,
            features: Features::default(),
            weights: pe.weights,
            penalties: Vec::new(),
        }));
        Ok(out)
    }
}

fn penalty_names(bits: u8) -> Vec<&'static str> {
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn terms(price: u64) -> ListingTerms {
        ListingTerms {
            model: "m".into(),
            provider: "p".into(),
            seller_id: "s".into(),
            input_price: price,
            output_price: price * 4,
            rpm_cap: None,
            concurrency_cap: None,
            status: ListingStatus::Active,
            contract: ContractStatus::Active,
            quality: 0.5,
        }
    }

    fn profile(strategy: Strategy) -> Profile {
        Profile {
            strategy,
            weights: None,
            providers_allow: None,
            providers_deny: HashSet::new(),
            sellers_deny: HashSet::new(),
            max_input_price: None,
            max_output_price: None,
            max_ttft_ms: None,
            min_throughput_tps: None,
        }
    }

    #[test]
    fn cost_first_puts_cheapest_first_and_respects_ceiling() {
        let mut m = Market::new();
        for (id, price) in [("a", 300), ("b", 100), ("c", 200)] {
            m.upsert_listing(id, terms(price)).unwrap();
        }
        let mut p = profile(Strategy::CostFirst);
        m.set_profile("cf", p.clone()).unwrap();
        assert_eq!(m.rank("m", "cf", 0, 1, 8).unwrap(), vec!["b", "c", "a"]);
        p.max_input_price = Some(250);
        m.set_profile("cf", p).unwrap();
        assert_eq!(m.rank("m", "cf", 0, 1, 8).unwrap(), vec!["b", "c"]);
        assert_eq!(m.rank("other", "cf", 0, 1, 8).unwrap(), Vec::<&str>::new());
        assert!(matches!(
            m.rank("m", "nope", 0, 1, 8),
            Err(MarketError::UnknownProfile(_))
        ));
    }

    #[test]
    fn remove_keeps_index_consistent() {
        let mut m = Market::new();
        for id in ["a", "b", "c"] {
            m.upsert_listing(id, terms(100)).unwrap();
        }
        assert!(m.remove_listing("a"));
        assert!(!m.remove_listing("a"));
        assert!(m.set_inflight("c", 2));
        assert_eq!(m.len(), 2);
        m.set_profile("b", profile(Strategy::Balanced)).unwrap();
        let mut got = m.rank("m", "b", 0, 3, 8).unwrap();
        got.sort_unstable();
        assert_eq!(got, vec!["b", "c"]);
    }

    #[test]
    fn ties_are_seeded() {
        let mut m = Market::new();
        for i in 0..20 {
            m.upsert_listing(&format!("l{i}"), terms(100)).unwrap();
        }
        m.set_profile("b", profile(Strategy::Balanced)).unwrap();
        let a = m.rank("m", "b", 0, 42, 5).unwrap();
        assert_eq!(a, m.rank("m", "b", 0, 42, 5).unwrap());
        let firsts: HashSet<&str> = (0..50)
            .map(|s| m.rank("m", "b", 0, s, 1).unwrap()[0])
            .collect();
        assert!(firsts.len() > 5, "near-ties should spread: {firsts:?}");
    }

    #[test]
    fn ttft_target_excludes_only_with_enough_samples() {
        let mut m = Market::new();
        m.upsert_listing("slow", terms(100)).unwrap();
        m.upsert_listing("fast", terms(100)).unwrap();
        let mut p = profile(Strategy::Balanced);
        p.max_ttft_ms = Some(500.0);
        m.set_profile("p", p).unwrap();
        m.record_result("slow", true, Some(2000.0), None, 0)
            .unwrap();
        assert_eq!(m.rank("m", "p", 0, 0, 8).unwrap(), vec!["fast", "slow"]);
        for _ in 0..MIN_TARGET_SAMPLES {
            m.record_result("slow", true, Some(2000.0), None, 0)
                .unwrap();
        }
        assert_eq!(m.rank("m", "p", 0, 0, 8).unwrap(), vec!["fast"]);
        let ex = m.explain("m", "p", 0, 0).unwrap();
        assert_eq!(ex[1].excluded, Some("ttft_above_target"));
    }
}
