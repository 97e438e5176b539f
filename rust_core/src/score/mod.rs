//! Listing ranking: the in-memory market book and the scorer the data plane calls on every request.
//!
//! Pure: time (`now_ms`) and randomness (`seed`) are arguments. The hot path (`rank`) takes a model, a
//! profile id registered earlier, and scalars; it filters, scores and orders in O(listings of the model)
//! (a partial selection, not a full sort, picks the top `limit`).

mod book;
mod evaluate;
mod filters;
mod market;
mod model;
mod rng;

pub use market::{Explained, Market, MarketError};
pub use model::{
    ContractStatus, Features, ListingStatus, ListingTerms, Profile, Strategy, Weights,
    FEATURE_NAMES,
};
