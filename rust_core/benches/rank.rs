//! Pure-Rust `Market::rank` timing: 1,000 and 10,000 listings for one model (the same book as
//! `benchmarks/micro/bench_rank.py`). Run: `cargo bench -p dragonfly-core --bench rank`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use dragonfly_core::score::{
    ContractStatus, ListingStatus, ListingTerms, Market, Profile, Strategy,
};

pub fn build(n: usize) -> Market {
    let providers = ["openai", "azure", "groq", "together", "fireworks"];
    let mut m = Market::new();
    for i in 0..n {
        let id = format!("lst_{i:06}");
        let price = 1_000_000 + (i as u64 * 7919) % 4_000_000;
        let terms = ListingTerms {
            model: "gpt-4o".into(),
            provider: providers[i % 5].into(),
            seller_id: format!("seller_{}", i % 300),
            input_price: price,
            output_price: price * 4,
            rpm_cap: Some(600),
            concurrency_cap: Some(8),
            status: if i.is_multiple_of(50) {
                ListingStatus::Paused
            } else {
                ListingStatus::Active
            },
            contract: if i.is_multiple_of(37) {
                ContractStatus::Degraded
            } else {
                ContractStatus::Active
            },
            quality: (i % 10) as f64 / 10.0,
            blend_live_success: true,
        };
        m.upsert_listing(&id, terms).unwrap();
        m.set_inflight(
            &id,
            if i.is_multiple_of(41) {
                8
            } else {
                (i % 4) as u64
            },
        );
        if !i.is_multiple_of(3) {
            for k in 0..3u64 {
                let ok = !(i as u64 + k).is_multiple_of(17);
                let ttft = 150.0 + ((i as u64 * 31 + k) % 900) as f64;
                let tps = 20.0 + ((i as u64 * 13) % 180) as f64;
                m.record_result(&id, ok, Some(ttft), Some(tps), 1_000 * k as i64)
                    .unwrap();
            }
        }
    }
    let profile = |strategy, deny: &[&str], max_in| Profile {
        strategy,
        weights: None,
        providers_allow: None,
        providers_deny: deny.iter().map(|s| s.to_string()).collect(),
        sellers_deny: HashSet::new(),
        max_input_price: max_in,
        max_output_price: None,
        max_ttft_ms: None,
        min_throughput_tps: None,
    };
    m.set_profile(
        "balanced",
        profile(Strategy::Balanced, &["fireworks"], Some(4_500_000)),
    )
    .unwrap();
    m.set_profile("cheap", profile(Strategy::CostFirst, &[], None))
        .unwrap();
    m
}

fn main() {
    println!("{}", common::machine());
    for (n, target_us) in [(1_000usize, 50.0), (10_000, 500.0)] {
        let m = build(n);
        for profile in ["balanced", "cheap"] {
            let mut seed = 0u64;
            let t = common::per_call(7, Duration::from_millis(200), || {
                seed += 1;
                m.rank("gpt-4o", profile, 5_000, seed, 8).unwrap().len()
            });
            let us = t.as_secs_f64() * 1e6;
            println!(
                "rank {n:>6} listings profile={profile:<9} limit=8: {us:8.1} µs/call (target ≤ {target_us} µs through Python)"
            );
        }
    }
}
