//! The one place the splicer asks for a token count: `crate::tokens` (exact against tiktoken).

pub use crate::tokens::Encoding;

/// Number of tokens in `text` under `enc`.
pub(crate) fn count(enc: Encoding, text: &str) -> usize {
    crate::tokens::count_text(enc, text)
}
