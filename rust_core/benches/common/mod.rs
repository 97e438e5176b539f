//! Shared by the `harness = false` benches: a best-of-N timing loop on `std::time::Instant` (no
//! criterion) and the machine line printed with every figure.

#![allow(dead_code)]

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Best-of-`rounds` time per call of `f`, each round long enough (~`round`) to dwarf timer overhead.
///
/// With `BENCH_FIXED_ITERS=n` in the environment, `f` runs exactly `n` times instead (for
/// `valgrind --tool=callgrind`, whose instruction counts are repeatable on a noisy machine).
pub fn per_call<T>(rounds: usize, round: Duration, mut f: impl FnMut() -> T) -> Duration {
    if let Some(n) = std::env::var("BENCH_FIXED_ITERS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        let t = Instant::now();
        for _ in 0..n {
            black_box(f());
        }
        return t.elapsed() / n.max(1);
    }
    let mut n = 1u32;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            black_box(f());
        }
        if t.elapsed() >= round / 4 || n >= 1 << 24 {
            break;
        }
        n *= 2;
    }
    let n = n.saturating_mul(4);
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                black_box(f());
            }
            t.elapsed() / n
        })
        .min()
        .unwrap_or_default()
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu} | cpus={cpus} | {}", std::env::consts::OS)
}
