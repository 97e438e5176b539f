//! A routing profile's compiled filters (why a listing is excluded) and the registered profile entry.

use super::book::{Interner, Slot, SymSet, BLOCKED};
use super::market::MIN_TARGET_SAMPLES;
use super::model::{Profile, Weights};

/// A profile's filters, compiled against the interner.
pub(super) struct Filters {
    providers_allow: Option<SymSet>,
    providers_deny: SymSet,
    sellers_deny: SymSet,
    max_input_price: u64,
    max_output_price: u64,
    pub(super) max_ttft_ms: Option<f64>,
    pub(super) min_throughput_tps: Option<f64>,
}

impl Filters {
    pub(super) fn compile(names: &mut Interner, p: &Profile) -> Filters {
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
    pub(super) fn exclusion(&self, s: &Slot) -> Option<&'static str> {
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

pub(super) struct ProfileEntry {
    pub(super) profile: Profile,
    pub(super) weights: Weights,
    pub(super) filters: Filters,
}
