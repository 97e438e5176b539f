//! HTTP/1.1 framing the data plane decodes on every relayed seller body.

mod chunked;

pub use chunked::{ChunkedDecoder, ChunkedError, MAX_LINE};
