//! Dragonfly's native I/O, kept apart from the pure native core (`dragonfly-core`: no I/O, no clocks).
//!
//! The rule here: blocking calls only, made to run on a thread of their own with the GIL released (the
//! PyO3 adapter in `dragonfly-core/src/py/` detaches around every call into this crate); no Python types;
//! every error is a value that says whether trying again may help. Whatever this crate writes, the Python
//! side can read with its own driver: the same files, the same system library.

pub mod sqlite_batch;
