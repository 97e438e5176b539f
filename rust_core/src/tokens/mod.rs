//! Token counting for OpenAI encodings, OpenAI chat accounting, and the one-pass request pre-parse.
//!
//! Vocabularies are embedded by the `bpe-openai` crate (GitHub's linear-time BPE): nothing is
//! downloaded at run time. Its output is token-for-token identical to tiktoken for `cl100k_base` and
//! `o200k_base` (checked against the tiktoken package in `tests/unit/native/test_tokens.py`).
//!
//! Performance notes: `bpe-openai` counts without materialising token ids and is linear in the input
//! even for the single-long-word worst case that makes tiktoken's merge loop quadratic
//! (`"a" * 100_000`); see `benchmarks/micro/bench_tokens.py` for measured figures.

mod chat;
mod encoding;
mod preparse;

pub use chat::{count_chat, count_chat_value, ChatError};
pub use encoding::{count_text, Encoding};
pub use preparse::{
    preparse_request, preparse_request_with, substitute_model, PreParseError, PreParsed,
};
