//! The PyO3 adapter: the only place in the crate that says `pyo3`.
//! Each submodule registers its own classes and functions. `sqlite_batch` is the one adapter over the
//! native I/O crate (`dragonfly-io`); every other one is over the pure core.

use pyo3::prelude::*;

mod errors;
mod http1;
mod score;
mod sqlite_batch;
mod sse;
mod tokens;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    http1::register(m)?;
    sse::register(m)?;
    tokens::register(m)?;
    score::register(m)?;
    sqlite_batch::register(m)?;
    Ok(())
}
