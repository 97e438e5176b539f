//! The SSE stream splicer and the non-streaming body rewriter.
//!
//! Pure: no I/O, no clocks (the `created` timestamp is an argument). Everything here works on bytes the
//! gateway hands in and returns bytes to send to the buyer.
//!
//! - [`Splicer`] consumes an upstream `text/event-stream` body in any split and emits an LF-framed
//!   buyer stream with the top-level `id`/`model` rewritten, capturing usage, finish reason, text and
//!   tool-call arguments on the way.
//! - [`rewrite_completion`] does the same for a whole `application/json` chat completion.
//!
//! Performance notes: the two rewritten fields are replaced at the byte level (a small top-level JSON
//! scanner finds their spans), so every other value leaves byte-identical — integers beyond 2^64,
//! escapes, key order and whitespace included. Each event is parsed once with `serde_json` to validate
//! it and to read the fields we capture; token counting runs once, lazily, on the accumulated text.

mod capture;
mod completion;
mod count;
mod framer;
pub(crate) mod json;
mod splicer;

pub use capture::{ToolCall, Usage};
pub use completion::{rewrite_completion, Completion};
pub use count::Encoding;
pub use splicer::{Splicer, UsageSource};

use std::fmt;

/// Everything that can go wrong in this module. Adapters map each variant to one Python exception.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// One SSE event (or one line of it) grew past the configured bound.
    EventTooLarge { limit: usize, size: usize },
    /// The splicer was used out of order (fed after `finish`, …).
    Stream(String),
    /// A whole body was not what the call expects (not a JSON object).
    InvalidInput(String),
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EventTooLarge { limit, size } => {
                write!(
                    f,
                    "SSE event of at least {size} bytes exceeds the limit of {limit} bytes"
                )
            }
            Self::Stream(msg) => write!(f, "{msg}"),
            Self::InvalidInput(msg) => write!(f, "{msg}"),
        }
    }
}

impl std::error::Error for SseError {}

#[cfg(test)]
mod tests;
