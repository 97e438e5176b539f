//! PyO3 adapter for `crate::score`: the `Market` class.

use std::collections::{HashMap, HashSet};

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::errors::MarketError;
use crate::score::{
    self, ContractStatus, ListingStatus, ListingTerms, Profile, Strategy, FEATURE_NAMES,
};

fn market_err(e: score::MarketError) -> PyErr {
    MarketError::new_err(e.to_string())
}

#[cold]
fn bad(msg: String) -> PyErr {
    MarketError::new_err(msg)
}

fn strategy(s: &str) -> PyResult<Strategy> {
    Strategy::parse(s).ok_or_else(|| {
        bad(format!(
            "unknown strategy {s:?}; expected one of cost_first, balanced, reliability_first, quality_first, custom"
        ))
    })
}

fn pairs(weights: Option<HashMap<String, f64>>) -> Option<Vec<(String, f64)>> {
    weights.map(|w| {
        let mut v: Vec<_> = w.into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    })
}

/// Listings, live stats and routing profiles, ranked on the hot path with a few scalars per call.
#[pyclass(module = "dragonfly._native")]
struct Market {
    inner: score::Market,
}

#[pymethods]
impl Market {
    #[new]
    fn new() -> Self {
        Market {
            inner: score::Market::new(),
        }
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    #[pyo3(signature = (listing_id, model, provider, seller_id, input_price, output_price, rpm_cap,
        concurrency_cap, status, contract_status, quality = 0.5, blend_live_success = false))]
    #[allow(clippy::too_many_arguments)]
    fn upsert_listing(
        &mut self,
        listing_id: &str,
        model: String,
        provider: String,
        seller_id: String,
        input_price: u64,
        output_price: u64,
        rpm_cap: Option<u64>,
        concurrency_cap: Option<u64>,
        status: &str,
        contract_status: &str,
        quality: f64,
        blend_live_success: bool,
    ) -> PyResult<()> {
        let status = ListingStatus::parse(status)
            .ok_or_else(|| bad(format!("unknown listing status {status:?}")))?;
        let contract = ContractStatus::parse(contract_status)
            .ok_or_else(|| bad(format!("unknown contract status {contract_status:?}")))?;
        let terms = ListingTerms {
            model,
            provider,
            seller_id,
            input_price,
            output_price,
            rpm_cap,
            concurrency_cap,
            status,
            contract,
            quality,
            blend_live_success,
        };
        self.inner
            .upsert_listing(listing_id, terms)
            .map_err(market_err)
    }

    fn remove_listing(&mut self, listing_id: &str) -> bool {
        self.inner.remove_listing(listing_id)
    }

    fn set_inflight(&mut self, listing_id: &str, n: u64) -> bool {
        self.inner.set_inflight(listing_id, n)
    }

    #[pyo3(signature = (listing_id, ok, ttft_ms, throughput_tps, now_ms))]
    fn record_result(
        &mut self,
        listing_id: &str,
        ok: bool,
        ttft_ms: Option<f64>,
        throughput_tps: Option<f64>,
        now_ms: i64,
    ) -> PyResult<bool> {
        self.inner
            .record_result(listing_id, ok, ttft_ms, throughput_tps, now_ms)
            .map_err(market_err)
    }

    fn record_ttft_floor(&mut self, listing_id: &str, ttft_ms: f64) -> PyResult<bool> {
        self.inner
            .record_ttft_floor(listing_id, ttft_ms)
            .map_err(market_err)
    }

    #[pyo3(signature = (profile_id, strategy, weights = None, providers_allow = None, providers_deny = None,
        sellers_deny = None, max_input_price = None, max_output_price = None, max_ttft_ms = None,
        min_throughput_tps = None))]
    #[allow(clippy::too_many_arguments)]
    fn set_profile(
        &mut self,
        profile_id: &str,
        strategy: &str,
        weights: Option<HashMap<String, f64>>,
        providers_allow: Option<Vec<String>>,
        providers_deny: Option<Vec<String>>,
        sellers_deny: Option<Vec<String>>,
        max_input_price: Option<u64>,
        max_output_price: Option<u64>,
        max_ttft_ms: Option<f64>,
        min_throughput_tps: Option<f64>,
    ) -> PyResult<()> {
        let profile = Profile {
            strategy: self::strategy(strategy)?,
            weights: pairs(weights),
            providers_allow: providers_allow.map(|v| v.into_iter().collect()),
            providers_deny: providers_deny
                .unwrap_or_default()
                .into_iter()
                .collect::<HashSet<_>>(),
            sellers_deny: sellers_deny
                .unwrap_or_default()
                .into_iter()
                .collect::<HashSet<_>>(),
            max_input_price,
            max_output_price,
            max_ttft_ms,
            min_throughput_tps,
        };
        self.inner
            .set_profile(profile_id, profile)
            .map_err(market_err)
    }

    fn remove_profile(&mut self, profile_id: &str) -> bool {
        self.inner.remove_profile(profile_id)
    }

    fn set_strategy_weights(
        &mut self,
        strategy: &str,
        weights: HashMap<String, f64>,
    ) -> PyResult<()> {
        let s = self::strategy(strategy)?;
        let p = pairs(Some(weights)).unwrap_or_default();
        self.inner.set_strategy_weights(s, &p).map_err(market_err)
    }

    fn strategy_weights<'py>(
        &self,
        py: Python<'py>,
        strategy: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let w = self.inner.strategy_weights(self::strategy(strategy)?);
        weights_dict(py, &w)
    }

    #[pyo3(signature = (model, profile_id, now_ms, seed, limit = 8))]
    fn rank(
        &self,
        model: &str,
        profile_id: &str,
        now_ms: i64,
        seed: u64,
        limit: usize,
    ) -> PyResult<Vec<&str>> {
        self.inner
            .rank(model, profile_id, now_ms, seed, limit)
            .map_err(market_err)
    }

    fn explain<'py>(
        &self,
        py: Python<'py>,
        model: &str,
        profile_id: &str,
        now_ms: i64,
        seed: u64,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let rows = self
            .inner
            .explain(model, profile_id, now_ms, seed)
            .map_err(market_err)?;
        rows.into_iter()
            .map(|r| {
                let d = PyDict::new(py);
                d.set_item("listing_id", r.listing_id)?;
                d.set_item("rank", r.rank)?;
                d.set_item("excluded", r.excluded)?;
                d.set_item("score", r.score)?;
                let f = PyDict::new(py);
                for (k, v) in FEATURE_NAMES.iter().zip(r.features.as_array()) {
                    f.set_item(*k, v)?;
                }
                d.set_item("features", f)?;
                d.set_item("weights", weights_dict(py, &r.weights)?)?;
                d.set_item("penalties", r.penalties)?;
                Ok(d)
            })
            .collect()
    }
}

fn weights_dict<'py>(py: Python<'py>, w: &score::Weights) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in FEATURE_NAMES.iter().zip(w.as_array()) {
        d.set_item(*k, v)?;
    }
    Ok(d)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Market>()?;
    Ok(())
}
