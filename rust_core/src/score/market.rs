//! The market book and the ranking pipeline: filter → features → weighted score → seeded near-tie draw.
//!
//! Scoring, in one place (each feature in [0, 1], 1 = best, relative to the other eligible listings of
//! the same model so that the numbers mean the same thing for every model):
//!
//! * price: `cheapest blended price / blended price` (blend = 3 input : 1 output);
//! * latency: `fastest TTFT EWMA / TTFT EWMA`; throughput: `throughput EWMA / best throughput EWMA`;
//! * reliability: success-rate EWMA, scaled down by up to half for a failure in the last
//!   [`FAILURE_COOLDOWN_MS`] (recovering linearly);
//! * quality: the listing's `quality` term (probe-derived, or an operator's override); when
//!   `blend_live_success` is set and the listing has outcomes, `(quality + success EWMA) / 2`.
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
//! and its near-tie floor) — then sorts that handful. The prior of the latency feature is computed in pass 1
//! as `fastest × Σ 1/ttft` (the same mean as Σ fastest/ttft, up to rounding).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::book::{Book, Cold, Interner, Slot};
pub use super::evaluate::Explained;
use super::evaluate::{evaluate, gather, penalty_names, Key};
use super::filters::{Filters, ProfileEntry};
use super::model::{Features, ListingTerms, Profile, Stats, Strategy, Weights};
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

/// An eligible listing: its score and its slot index.
type Scored = (f64, u32);

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

    /// Fold a lower bound of the listing's TTFT: a call that had produced no first byte after `ttft_ms`
    /// when it was abandoned (it lost a hedge race). Without it, a listing that turned slow and is always
    /// hedged around would keep its old, fast estimate and stay first for a latency-weighted profile.
    /// The bound is folded like a sample only when it is above the current estimate (a bound below it says
    /// nothing), so it moves the estimate no further than the true, later sample would have; the
    /// success rate is untouched (the call had not failed). False if the listing is unknown.
    pub fn record_ttft_floor(&mut self, id: &str, ttft_ms: f64) -> Result<bool, MarketError> {
        if !ttft_ms.is_finite() || ttft_ms < 0.0 {
            return Err(invalid(format!(
                "ttft_ms must be a finite number >= 0, got {ttft_ms}"
            )));
        }
        let Some(s) = self.stats_mut(id) else {
            return Ok(false);
        };
        if s.ttft_n == 0 {
            s.ttft_ms = ttft_ms;
            s.ttft_n = 1;
        } else if ttft_ms > s.ttft_ms {
            s.ttft_ms += TTFT_ALPHA * (ttft_ms - s.ttft_ms);
            s.ttft_n += 1;
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::super::model::{ContractStatus, ListingStatus};
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
            blend_live_success: false,
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

    #[test]
    fn a_ttft_floor_above_the_estimate_moves_it_and_leaves_success_alone() {
        let mut m = Market::new();
        m.upsert_listing("cheap", terms(100)).unwrap();
        m.upsert_listing("fast", terms(200)).unwrap();
        m.record_result("cheap", true, Some(10.0), None, 0).unwrap();
        m.record_result("fast", true, Some(40.0), None, 0).unwrap();
        let mut p = profile(Strategy::Custom);
        p.weights = Some(
            super::super::model::FEATURE_NAMES
                .iter()
                .map(|n| ((*n).to_owned(), if *n == "latency" { 1.0 } else { 0.0 }))
                .collect(),
        );
        m.set_profile("lat", p).unwrap();
        assert_eq!(m.rank("m", "lat", 0, 0, 8).unwrap(), vec!["cheap", "fast"]);
        let before = m.explain("m", "lat", 0, 0).unwrap();
        // A bound below the estimate says nothing.
        assert!(m.record_ttft_floor("cheap", 5.0).unwrap());
        assert_eq!(m.explain("m", "lat", 0, 0).unwrap(), before);
        // Hedged around at 200 ms, twice: 10 -> 48 -> 78.4 ms, past the other listing's 40.
        assert!(m.record_ttft_floor("cheap", 200.0).unwrap());
        assert!(m.record_ttft_floor("cheap", 200.0).unwrap());
        assert_eq!(m.rank("m", "lat", 0, 0, 8).unwrap(), vec!["fast", "cheap"]);
        let stats = m.stats_mut("cheap").unwrap();
        assert!((stats.ttft_ms - 78.4).abs() < 1e-9, "{}", stats.ttft_ms);
        assert_eq!((stats.ttft_n, stats.outcomes_n), (3, 1));
        assert!((stats.success - m.stats_mut("fast").unwrap().success).abs() < 1e-12);
        // Unknown listing, bad value.
        assert!(!m.record_ttft_floor("gone", 1.0).unwrap());
        assert!(m.record_ttft_floor("cheap", f64::NAN).is_err());
        assert!(m.record_ttft_floor("cheap", -1.0).is_err());
    }

    #[test]
    fn a_ttft_floor_is_the_first_sample_of_a_listing_without_one() {
        let mut m = Market::new();
        m.upsert_listing("new", terms(100)).unwrap();
        assert!(m.record_ttft_floor("new", 250.0).unwrap());
        let stats = m.stats_mut("new").unwrap();
        assert_eq!(
            (stats.ttft_ms, stats.ttft_n, stats.outcomes_n),
            (250.0, 1, 0)
        );
    }

    #[test]
    fn weights_speak_the_api_vocabulary() {
        let mut m = Market::new();
        m.upsert_listing("cheap", terms(100)).unwrap();
        m.upsert_listing("fast", terms(200)).unwrap();
        m.record_result("cheap", true, Some(2000.0), None, 0)
            .unwrap();
        m.record_result("fast", true, Some(100.0), None, 0).unwrap();
        let mut p = profile(Strategy::Custom);
        let zero_rest = |name: &str| {
            super::super::model::FEATURE_NAMES
                .iter()
                .map(|n| ((*n).to_owned(), if *n == name { 1.0 } else { 0.0 }))
                .collect::<Vec<_>>()
        };
        p.weights = Some(zero_rest("latency"));
        m.set_profile("lat", p.clone()).unwrap();
        assert_eq!(m.rank("m", "lat", 0, 0, 8).unwrap(), vec!["fast", "cheap"]);
        p.weights = Some(zero_rest("price"));
        m.set_profile("price", p.clone()).unwrap();
        assert_eq!(
            m.rank("m", "price", 0, 0, 8).unwrap(),
            vec!["cheap", "fast"]
        );
        let ex = m.explain("m", "lat", 0, 0).unwrap();
        assert_eq!(ex[0].weights.latency, 1.0);
        p.weights = Some(vec![("ttft".into(), 1.0)]);
        assert!(matches!(
            m.set_profile("old", p),
            Err(MarketError::Invalid(msg)) if msg.contains("unknown weight")
        ));
    }

    #[test]
    fn quality_blends_live_success_unless_pinned() {
        let mut m = Market::new();
        let mut probed = terms(100);
        probed.quality = 0.8;
        probed.blend_live_success = true;
        let mut pinned = terms(100);
        pinned.quality = 0.8;
        m.upsert_listing("probed", probed).unwrap();
        m.upsert_listing("pinned", pinned).unwrap();
        m.set_profile("q", profile(Strategy::QualityFirst)).unwrap();
        let quality = |m: &Market, id: &str| {
            m.explain("m", "q", 0, 0)
                .unwrap()
                .into_iter()
                .find(|r| r.listing_id == id)
                .map(|r| r.features.quality)
        };
        // No outcomes yet: the term as given.
        assert_eq!(quality(&m, "probed"), Some(0.8));
        for id in ["probed", "pinned"] {
            m.record_result(id, false, None, None, 0).unwrap();
        }
        // success EWMA 1.0 -> 0.9 after one failure: (0.8 + 0.9) / 2 for the blended listing.
        let blended = quality(&m, "probed").unwrap();
        assert!((blended - 0.85).abs() < 1e-9, "{blended}");
        assert_eq!(quality(&m, "pinned"), Some(0.8));
    }
}
