//! The market's data types: listing terms and live stats, routing profiles, strategy weights.

use std::collections::HashSet;

/// Seller-side listing state; only `Active` listings are routable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingStatus {
    Active,
    Pending,
    Paused,
    PriceReview,
    Suspended,
}

impl ListingStatus {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "pending" => Self::Pending,
            "paused" => Self::Paused,
            "price_review" => Self::PriceReview,
            "suspended" => Self::Suspended,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Pending => "pending",
            Self::Paused => "paused",
            Self::PriceReview => "price_review",
            Self::Suspended => "suspended",
        }
    }
}

/// The seller's contract (SLA) state: `Degraded` is deprioritised, `Suspended` excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractStatus {
    Active,
    Degraded,
    Suspended,
    Pending,
}

impl ContractStatus {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "degraded" => Self::Degraded,
            "suspended" => Self::Suspended,
            "pending" => Self::Pending,
            _ => return None,
        })
    }
}

/// The static terms of a listing (what `upsert_listing` sets).
#[derive(Debug, Clone, PartialEq)]
pub struct ListingTerms {
    pub model: String,
    pub provider: String,
    pub seller_id: String,
    /// micro-USD per 1M input tokens.
    pub input_price: u64,
    /// micro-USD per 1M output tokens.
    pub output_price: u64,
    /// Enforced by admission in the state store; kept here for `explain`.
    pub rpm_cap: Option<u64>,
    pub concurrency_cap: Option<u64>,
    pub status: ListingStatus,
    pub contract: ContractStatus,
    /// Quality in [0, 1]: the probe-derived value or an operator's override (see `blend_live_success`).
    pub quality: f64,
    /// Whether the quality feature blends in the live success EWMA once the listing has outcomes
    /// (`(quality + success) / 2`); false for an operator's override, which is used as is.
    pub blend_live_success: bool,
}

impl ListingTerms {
    /// Blended price per 1M tokens: 3 input : 1 output, the usual chat-traffic mix.
    pub fn blended_price(&self) -> f64 {
        (3.0 * self.input_price as f64 + self.output_price as f64) / 4.0
    }
}

/// Live stats, updated by `record_result`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Stats {
    pub inflight: u64,
    pub ttft_ms: f64,
    pub ttft_n: u64,
    pub tps: f64,
    pub tps_n: u64,
    /// EWMA of success (1.0 = every request ok).
    pub success: f64,
    pub outcomes_n: u64,
    pub last_failure_ms: Option<i64>,
}

/// Built-in ranking strategies; `Custom` takes its weights from the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    CostFirst,
    Balanced,
    ReliabilityFirst,
    QualityFirst,
    Custom,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [
        Strategy::CostFirst,
        Strategy::Balanced,
        Strategy::ReliabilityFirst,
        Strategy::QualityFirst,
        Strategy::Custom,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "cost_first" => Self::CostFirst,
            "balanced" => Self::Balanced,
            "reliability_first" => Self::ReliabilityFirst,
            "quality_first" => Self::QualityFirst,
            "custom" => Self::Custom,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::CostFirst => "cost_first",
            Self::Balanced => "balanced",
            Self::ReliabilityFirst => "reliability_first",
            Self::QualityFirst => "quality_first",
            Self::Custom => "custom",
        }
    }

    /// Default weights (price, latency, throughput, reliability, quality); operators may override them.
    pub fn default_weights(self) -> Weights {
        let w = |price, latency, throughput, reliability, quality| Weights {
            price,
            latency,
            throughput,
            reliability,
            quality,
        };
        match self {
            Self::CostFirst => w(0.70, 0.05, 0.05, 0.20, 0.0),
            Self::Balanced | Self::Custom => w(0.30, 0.20, 0.15, 0.25, 0.10),
            Self::ReliabilityFirst => w(0.15, 0.15, 0.10, 0.50, 0.10),
            Self::QualityFirst => w(0.15, 0.10, 0.10, 0.20, 0.45),
        }
    }
}

/// Feature weights. Scores are Σ weight × feature, each feature in [0, 1] (1 = best); weights are
/// normalised to sum to 1 so scores of different strategies are comparable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    pub price: f64,
    pub latency: f64,
    pub throughput: f64,
    pub reliability: f64,
    pub quality: f64,
}

/// The one weight/feature vocabulary, from the API to the scorer (`latency` is time to first token).
pub const FEATURE_NAMES: [&str; 5] = ["price", "latency", "throughput", "reliability", "quality"];

impl Weights {
    pub fn as_array(&self) -> [f64; 5] {
        [
            self.price,
            self.latency,
            self.throughput,
            self.reliability,
            self.quality,
        ]
    }

    /// Overlay `(name, value)` pairs on `self`; unknown names or negative/non-finite values are errors.
    pub fn with(mut self, pairs: &[(String, f64)]) -> Result<Weights, String> {
        for (k, v) in pairs {
            if !v.is_finite() || *v < 0.0 {
                return Err(format!(
                    "weight {k:?} must be a finite number >= 0, got {v}"
                ));
            }
            match k.as_str() {
                "price" => self.price = *v,
                "latency" => self.latency = *v,
                "throughput" => self.throughput = *v,
                "reliability" => self.reliability = *v,
                "quality" => self.quality = *v,
                _ => {
                    return Err(format!(
                        "unknown weight {k:?}; expected one of {FEATURE_NAMES:?}"
                    ))
                }
            }
        }
        Ok(self)
    }

    /// Scaled to sum to 1; an all-zero set is an error.
    pub fn normalised(self) -> Result<Weights, String> {
        let sum: f64 = self.as_array().iter().sum();
        if sum <= 0.0 {
            return Err("weights must not all be zero".into());
        }
        Ok(Weights {
            price: self.price / sum,
            latency: self.latency / sum,
            throughput: self.throughput / sum,
            reliability: self.reliability / sum,
            quality: self.quality / sum,
        })
    }
}

/// A buyer's routing profile, registered once and referenced by id on the hot path.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub strategy: Strategy,
    /// Explicit weights overlaid on the strategy's (required for `Custom`).
    pub weights: Option<Vec<(String, f64)>>,
    pub providers_allow: Option<HashSet<String>>,
    pub providers_deny: HashSet<String>,
    pub sellers_deny: HashSet<String>,
    pub max_input_price: Option<u64>,
    pub max_output_price: Option<u64>,
    pub max_ttft_ms: Option<f64>,
    pub min_throughput_tps: Option<f64>,
}

/// One listing's per-feature scores, each in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Features {
    pub price: f64,
    pub latency: f64,
    pub throughput: f64,
    pub reliability: f64,
    pub quality: f64,
}

impl Features {
    pub fn as_array(&self) -> [f64; 5] {
        [
            self.price,
            self.latency,
            self.throughput,
            self.reliability,
            self.quality,
        ]
    }
}
