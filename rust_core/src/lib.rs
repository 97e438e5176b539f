//! Dragonfly's native core.
//!
//! Pure Rust: no I/O, no clocks, no randomness (time and seeds are arguments). The PyO3 adapter lives
//! only in `py/` behind the `python` feature, so the core builds and tests as a plain Rust crate.

pub mod http1;
pub mod score;
pub mod sse;
pub mod tokens;

#[cfg(feature = "python")]
mod py;
