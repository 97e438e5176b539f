//! Every exception the native module raises, in one place.
//!
//! `NativeError` is the base; each concern has its own subclass so Python code can catch precisely.
//! No Rust panic may cross into Python: adapters convert every core error into one of these.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    _native,
    NativeError,
    PyException,
    "Base class of every dragonfly._native error."
);
create_exception!(
    _native,
    StreamError,
    NativeError,
    "The upstream SSE stream or body could not be processed."
);
create_exception!(
    _native,
    EventTooLargeError,
    StreamError,
    "An SSE event exceeded the configured size bound."
);
create_exception!(
    _native,
    TokenizerError,
    NativeError,
    "Token counting failed (unknown encoding, bad input)."
);
create_exception!(
    _native,
    MarketError,
    NativeError,
    "Invalid market update or ranking request."
);
create_exception!(
    _native,
    InvalidInputError,
    NativeError,
    "Input bytes were not what the call expects (e.g. not JSON)."
);
create_exception!(
    _native,
    SqliteWriteError,
    NativeError,
    "A SQLite batch was not written: args are (kind, message), kind one of unique, constraint, transient, other."
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("NativeError", py.get_type::<NativeError>())?;
    m.add("StreamError", py.get_type::<StreamError>())?;
    m.add("EventTooLargeError", py.get_type::<EventTooLargeError>())?;
    m.add("TokenizerError", py.get_type::<TokenizerError>())?;
    m.add("MarketError", py.get_type::<MarketError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add("SqliteWriteError", py.get_type::<SqliteWriteError>())?;
    Ok(())
}
