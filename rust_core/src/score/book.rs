//! The interned listing book: provider/seller symbols and bitsets, per-model hot/cold listing slots.

use std::collections::HashMap;

use super::model::{ContractStatus, ListingStatus, ListingTerms, Stats};

/// Reasons a listing is never routable whatever the profile, by [`Slot::blocked`] code (0 = routable).
pub(super) const BLOCKED: [&str; 6] = [
    "",
    "status_pending",
    "status_paused",
    "status_price_review",
    "status_suspended",
    "contract_suspended",
];

/// Provider and seller names as small integers. Grows with the distinct names ever seen (listings and
/// profiles); never shrinks, which is bounded by the number of sellers/providers on the market.
#[derive(Default)]
pub(super) struct Interner(HashMap<String, u32>);

impl Interner {
    pub(super) fn intern(&mut self, name: &str) -> u32 {
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
pub(super) struct SymSet(Vec<u64>);

impl SymSet {
    pub(super) fn build(syms: impl IntoIterator<Item = u32>) -> Self {
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
    pub(super) fn contains(&self, sym: u32) -> bool {
        self.0
            .get((sym / 64) as usize)
            .is_some_and(|w| (w >> (sym % 64)) & 1 == 1)
    }
}

/// The hot part of a listing: everything `rank` reads, strings replaced by symbols.
pub(super) struct Slot {
    pub(super) input_price: u64,
    pub(super) output_price: u64,
    pub(super) blended_price: f64,
    pub(super) quality: f64,
    pub(super) blend_live_success: bool,
    /// `u64::MAX` when uncapped.
    pub(super) concurrency_cap: u64,
    pub(super) provider: u32,
    pub(super) seller: u32,
    /// Index into [`BLOCKED`]; 0 = routable.
    pub(super) blocked: u8,
    pub(super) degraded: bool,
    pub(super) stats: Stats,
}

impl Slot {
    pub(super) fn new(names: &mut Interner, t: &ListingTerms, stats: Stats) -> Slot {
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
            blend_live_success: t.blend_live_success,
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
pub(super) struct Cold {
    pub(super) id: String,
    pub(super) terms: ListingTerms,
}

/// One model's listings: `slots[i]` and `cold[i]` describe the same listing.
#[derive(Default)]
pub(super) struct Book {
    pub(super) slots: Vec<Slot>,
    pub(super) cold: Vec<Cold>,
    pub(super) pos: HashMap<String, usize>,
}
