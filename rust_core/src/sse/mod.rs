//! sse (filled in by its owner).
