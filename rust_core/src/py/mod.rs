//! The PyO3 adapter: the only place in the crate that says `pyo3`.
//! Each submodule registers its own classes and functions.

use pyo3::prelude::*;

mod errors;
mod http1;
mod score;
mod sse;
mod tokens;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    http1::register(m)?;
    sse::register(m)?;
    tokens::register(m)?;
    score::register(m)?;
    Ok(())
}
