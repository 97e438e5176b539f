//! score (filled in by its owner).
