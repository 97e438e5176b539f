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

use std::cmp::Ordering;
use std::collections::HashMap;

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

struct Entry {
    id: String,
    terms: ListingTerms,
    stats: Stats,
}

#[derive(Default)]
struct Book {
    entries: Vec<Entry>,
    pos: HashMap<String, usize>,
}

struct ProfileEntry {
    profile: Profile,
    weights: Weights,
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

struct Candidate {
    idx: usize,
    features: Features,
    score: f64,
    penalties: u8,
}

/// Listings (static terms + live stats) grouped by model, routing profiles, and strategy weights.
pub struct Market {
    books: HashMap<String, Book>,
    model_of: HashMap<String, String>,
    profiles: HashMap<String, ProfileEntry>,
    strategy_weights: HashMap<Strategy, Weights>,
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
                        book.entries[i].terms = terms;
                        return Ok(());
                    }
                }
            }
            self.remove_listing(id);
        }
        let book = self.books.entry(terms.model.clone()).or_default();
        book.pos.insert(id.to_owned(), book.entries.len());
        self.model_of.insert(id.to_owned(), terms.model.clone());
        book.entries.push(Entry {
            id: id.to_owned(),
            terms,
            stats: Stats {
                success: 1.0,
                ..Stats::default()
            },
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
        book.entries.swap_remove(i);
        if let Some(moved) = book.entries.get(i) {
            book.pos.insert(moved.id.clone(), i);
        }
        if book.entries.is_empty() {
            self.books.remove(&model);
        }
        true
    }

    fn entry_mut(&mut self, id: &str) -> Option<&mut Entry> {
        let model = self.model_of.get(id)?;
        let book = self.books.get_mut(model)?;
        let i = *book.pos.get(id)?;
        book.entries.get_mut(i)
    }

    /// Set the number of requests in flight on a listing; false if the listing is unknown.
    pub fn set_inflight(&mut self, id: &str, n: u64) -> bool {
        self.entry_mut(id).map(|e| e.stats.inflight = n).is_some()
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
        let Some(e) = self.entry_mut(id) else {
            return Ok(false);
        };
        let s = &mut e.stats;
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

    /// Register or replace a routing profile.
    pub fn set_profile(&mut self, id: &str, profile: Profile) -> Result<(), MarketError> {
        let weights = self.resolve(profile.strategy, profile.weights.as_deref())?;
        self.profiles
            .insert(id.to_owned(), ProfileEntry { profile, weights });
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

    fn exclusion(e: &Entry, p: &Profile) -> Option<&'static str> {
        let t = &e.terms;
        match t.status {
            ListingStatus::Active => {}
            ListingStatus::Pending => return Some("status_pending"),
            ListingStatus::Paused => return Some("status_paused"),
            ListingStatus::PriceReview => return Some("status_price_review"),
            ListingStatus::Suspended => return Some("status_suspended"),
        }
        if t.contract == ContractStatus::Suspended {
            return Some("contract_suspended");
        }
        if t.concurrency_cap.is_some_and(|cap| e.stats.inflight >= cap) {
            return Some("capacity_full");
        }
        if p.max_input_price.is_some_and(|m| t.input_price > m) {
            return Some("input_price_above_ceiling");
        }
        if p.max_output_price.is_some_and(|m| t.output_price > m) {
            return Some("output_price_above_ceiling");
        }
        if p.providers_allow
            .as_ref()
            .is_some_and(|a| !a.contains(&t.provider))
        {
            return Some("provider_not_allowed");
        }
        if !p.providers_deny.is_empty() && p.providers_deny.contains(&t.provider) {
            return Some("provider_denied");
        }
        if !p.sellers_deny.is_empty() && p.sellers_deny.contains(&t.seller_id) {
            return Some("seller_denied");
        }
        let s = &e.stats;
        if s.ttft_n >= MIN_TARGET_SAMPLES && p.max_ttft_ms.is_some_and(|m| s.ttft_ms > m) {
            return Some("ttft_above_target");
        }
        if s.tps_n >= MIN_TARGET_SAMPLES && p.min_throughput_tps.is_some_and(|m| s.tps < m) {
            return Some("throughput_below_target");
        }
        None
    }

    /// Filter and score every listing of `model`. Returns the candidates and the excluded listings.
    fn evaluate(
        book: &Book,
        pe: &ProfileEntry,
        now_ms: i64,
        mut on_excluded: impl FnMut(usize, &'static str),
    ) -> Vec<Candidate> {
        let p = &pe.profile;
        let mut cands = Vec::with_capacity(book.entries.len());
        // Pass 1: filter, and gather the normalisers.
        let (mut min_price, mut min_ttft, mut max_tps) = (f64::INFINITY, f64::INFINITY, 0.0f64);
        for (idx, e) in book.entries.iter().enumerate() {
            if let Some(why) = Self::exclusion(e, p) {
                on_excluded(idx, why);
                continue;
            }
            min_price = min_price.min(e.terms.blended_price());
            if e.stats.ttft_n > 0 {
                min_ttft = min_ttft.min(e.stats.ttft_ms);
            }
            if e.stats.tps_n > 0 {
                max_tps = max_tps.max(e.stats.tps);
            }
            cands.push(Candidate {
                idx,
                features: Features::default(),
                score: 0.0,
                penalties: 0,
            });
        }
        // Pass 2: sampled features, and the priors for unsampled ones.
        let ratio = |num: f64, den: f64| {
            if den <= 0.0 {
                1.0
            } else {
                (num / den).clamp(0.0, 1.0)
            }
        };
        let (mut sum, mut cnt) = ([0.0f64; 3], [0u32; 3]);
        for c in &mut cands {
            let e = &book.entries[c.idx];
            let (t, s) = (&e.terms, &e.stats);
            c.features.price = ratio(min_price, t.blended_price());
            c.features.quality = t.quality;
            if s.ttft_n > 0 {
                c.features.ttft = ratio(min_ttft, s.ttft_ms);
                sum[0] += c.features.ttft;
                cnt[0] += 1;
            }
            if s.tps_n > 0 {
                c.features.throughput = ratio(s.tps, max_tps);
                sum[1] += c.features.throughput;
                cnt[1] += 1;
            }
            if s.outcomes_n > 0 {
                let mut r = s.success;
                if let Some(f) = s.last_failure_ms {
                    let dt = now_ms.saturating_sub(f);
                    if (0..FAILURE_COOLDOWN_MS).contains(&dt) {
                        r *= 0.5 + 0.5 * dt as f64 / FAILURE_COOLDOWN_MS as f64;
                        c.penalties |= PEN_RECENT_FAILURE;
                    }
                }
                c.features.reliability = r;
                sum[2] += r;
                cnt[2] += 1;
            }
        }
        let prior = |i: usize| {
            if cnt[i] == 0 {
                NEUTRAL_PRIOR
            } else {
                sum[i] / cnt[i] as f64
            }
        };
        let (prior_ttft, prior_tps, prior_rel) = (prior(0), prior(1), prior(2));
        let w = pe.weights;
        for c in &mut cands {
            let e = &book.entries[c.idx];
            let s = &e.stats;
            if s.ttft_n == 0 {
                c.features.ttft = prior_ttft;
            }
            if s.tps_n == 0 {
                c.features.throughput = prior_tps;
            }
            if s.outcomes_n == 0 {
                c.features.reliability = prior_rel;
            }
            let f = &c.features;
            let mut score = w.price * f.price
                + w.ttft * f.ttft
                + w.throughput * f.throughput
                + w.reliability * f.reliability
                + w.quality * f.quality;
            if e.terms.contract == ContractStatus::Degraded {
                score *= DEGRADED_FACTOR;
                c.penalties |= PEN_DEGRADED;
            }
            if s.ttft_n > 0 && p.max_ttft_ms.is_some_and(|m| s.ttft_ms > m) {
                score *= TARGET_MISS_FACTOR;
                c.penalties |= PEN_TTFT;
            }
            if s.tps_n > 0 && p.min_throughput_tps.is_some_and(|m| s.tps < m) {
                score *= TARGET_MISS_FACTOR;
                c.penalties |= PEN_TPS;
            }
            c.score = score;
        }
        cands
    }

    fn profile(&self, profile_id: &str) -> Result<&ProfileEntry, MarketError> {
        self.profiles
            .get(profile_id)
            .ok_or_else(|| MarketError::UnknownProfile(profile_id.to_owned()))
    }

    /// Order candidates: best score first, near-ties by a weighted draw seeded by `seed`. At most `limit`.
    fn order(book: &Book, mut cands: Vec<Candidate>, seed: u64, limit: usize) -> Vec<Candidate> {
        let limit = limit.min(cands.len());
        if limit == 0 {
            return Vec::new();
        }
        let by_score = |a: &Candidate, b: &Candidate| {
            b.score
                .partial_cmp(&a.score)
                .unwrap_or(Ordering::Equal)
                .then_with(|| book.entries[a.idx].id.cmp(&book.entries[b.idx].id))
        };
        // Keep only what can reach the answer: the top `limit` and whatever near-ties the last of them.
        if cands.len() > limit {
            cands.select_nth_unstable_by(limit - 1, by_score);
            let floor = cands[limit - 1].score - TIE_EPSILON;
            let mut keep = cands.split_off(limit);
            keep.retain(|c| c.score >= floor);
            cands.append(&mut keep);
        }
        cands.sort_unstable_by(by_score);
        let mut rng = SplitMix64::new(seed);
        let mut out = Vec::with_capacity(limit);
        let mut rest = cands.into_iter().peekable();
        while out.len() < limit {
            let Some(head) = rest.next() else { break };
            let floor = head.score - TIE_EPSILON;
            let mut group = vec![head];
            while let Some(c) = rest.next_if(|c| c.score >= floor) {
                group.push(c);
            }
            if group.len() == 1 {
                out.append(&mut group);
                continue;
            }
            // Efraimidis–Spirakis weighted sampling without replacement: key = ln(u) / weight.
            let mut keyed: Vec<(f64, Candidate)> = group
                .into_iter()
                .map(|c| {
                    let u = rng.next_f64().max(f64::MIN_POSITIVE);
                    (u.ln() / c.score.max(1e-9), c)
                })
                .collect();
            let by_key = |a: &(f64, Candidate), b: &(f64, Candidate)| {
                b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal)
            };
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
        let cands = Self::evaluate(book, pe, now_ms, |_, _| {});
        Ok(Self::order(book, cands, seed, limit)
            .into_iter()
            .map(|c| book.entries[c.idx].id.as_str())
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
        let cands = Self::evaluate(book, pe, now_ms, |idx, why| excluded.push((idx, why)));
        let n = cands.len();
        let mut out: Vec<Explained> = Self::order(book, cands, seed, n)
            .into_iter()
            .enumerate()
            .map(|(rank, c)| Explained {
                listing_id: book.entries[c.idx].id.clone(),
                rank: Some(rank),
                excluded: None,
                score: c.score,
                features: c.features,
                weights: pe.weights,
                penalties: penalty_names(c.penalties),
            })
            .collect();
        out.extend(excluded.into_iter().map(|(idx, why)| Explained {
            listing_id: book.entries[idx].id.clone(),
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
