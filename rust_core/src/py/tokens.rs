//! PyO3 adapter for `crate::tokens`: `TokenCounter`, `encoding_for_model`, `preparse_request`,
//! `substitute_model`.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use super::errors::{InvalidInputError, TokenizerError};
use crate::tokens::{self, Encoding};

/// Inputs at least this long are counted with the GIL released (below it, detaching costs more than
/// it frees).
const DETACH_BYTES: usize = 8 * 1024;

/// Counts tokens with one OpenAI encoding.
#[pyclass(module = "dragonfly._native", frozen)]
struct TokenCounter {
    enc: Encoding,
}

#[pymethods]
impl TokenCounter {
    /// Loads the encoding's vocabulary if this process has not yet (o200k_base 45–65 ms, cl100k_base
    /// ~20 ms here), with the GIL released: made on a background thread, it warms the encoding without
    /// stopping the event loop, which would otherwise pay for it inside its first count.
    #[new]
    fn new(py: Python<'_>, encoding: &str) -> PyResult<Self> {
        let enc = Encoding::from_name(encoding).ok_or_else(|| unknown_encoding(encoding))?;
        py.detach(|| {
            enc.tokenizer();
        });
        Ok(TokenCounter { enc })
    }

    /// The tiktoken name of the encoding.
    #[getter]
    fn encoding(&self) -> &'static str {
        self.enc.name()
    }

    /// Tokens in `text`, like `len(tiktoken_encoding.encode_ordinary(text))`. A `str` holding lone
    /// surrogates is first normalised the way tiktoken does (UTF-16 round trip, lone surrogates become
    /// U+FFFD, a split surrogate pair is joined).
    fn count(&self, py: Python<'_>, text: &Bound<'_, PyString>) -> PyResult<usize> {
        let enc = self.enc;
        match text.to_str() {
            Ok(s) if s.len() >= DETACH_BYTES => Ok(py.detach(|| tokens::count_text(enc, s))),
            Ok(s) => Ok(tokens::count_text(enc, s)),
            Err(_) => count_with_surrogates(py, enc, text),
        }
    }

    /// Prompt tokens of a JSON array of chat messages (OpenAI chat accounting, see the Rust docs).
    fn count_chat(&self, py: Python<'_>, messages_json: &[u8]) -> PyResult<usize> {
        let enc = self.enc;
        let result = if messages_json.len() >= DETACH_BYTES {
            py.detach(|| tokens::count_chat(enc, messages_json))
        } else {
            tokens::count_chat(enc, messages_json)
        };
        result.map_err(|e| InvalidInputError::new_err(e.to_string()))
    }

    fn __repr__(&self) -> String {
        format!("TokenCounter({:?})", self.enc.name())
    }
}

#[cold]
fn unknown_encoding(name: &str) -> PyErr {
    TokenizerError::new_err(format!(
        "unknown encoding {name:?}; expected 'o200k_base' or 'cl100k_base'"
    ))
}

#[cold]
fn count_with_surrogates(
    py: Python<'_>,
    enc: Encoding,
    text: &Bound<'_, PyString>,
) -> PyResult<usize> {
    // Same normalisation as tiktoken's `Encoding.encode` on UnicodeEncodeError.
    let fixed = text
        .call_method1("encode", ("utf-16", "surrogatepass"))?
        .call_method1("decode", ("utf-16", "replace"))?;
    let fixed = fixed.cast_into::<PyString>().map_err(PyErr::from)?;
    let s = fixed.to_str()?;
    Ok(py.detach(|| tokens::count_text(enc, s)))
}

/// `(encoding_name, estimated)` for a model name.
#[pyfunction]
fn encoding_for_model(model: &str) -> (&'static str, bool) {
    let (enc, estimated) = Encoding::for_model(model);
    (enc.name(), estimated)
}

/// One-pass pre-parse of a request body; see `crate::tokens::preparse_request_with`. `encoding`
/// (e.g. the one a listing declares) overrides the model's mapping for the prompt count.
#[pyfunction]
#[pyo3(signature = (body, encoding = None))]
fn preparse_request<'py>(
    py: Python<'py>,
    body: &[u8],
    encoding: Option<&str>,
) -> PyResult<Bound<'py, PyDict>> {
    let enc = encoding
        .map(|name| Encoding::from_name(name).ok_or_else(|| unknown_encoding(name)))
        .transpose()?;
    let parsed = if body.len() >= DETACH_BYTES {
        py.detach(|| tokens::preparse_request_with(body, enc))
    } else {
        tokens::preparse_request_with(body, enc)
    }
    .map_err(|e| InvalidInputError::new_err(e.0))?;
    let d = PyDict::new(py);
    d.set_item("model", parsed.model)?;
    d.set_item("stream", parsed.stream)?;
    d.set_item("include_usage", parsed.include_usage)?;
    d.set_item("max_tokens", parsed.max_tokens)?;
    d.set_item("n", parsed.n)?;
    d.set_item("has_tools", parsed.has_tools)?;
    d.set_item("prompt_tokens", parsed.prompt_tokens)?;
    d.set_item("encoding", parsed.encoding.name())?;
    d.set_item("estimated", parsed.estimated)?;
    d.set_item("dragonfly", parsed.dragonfly.map(|b| PyBytes::new(py, &b)))?;
    Ok(d)
}

/// The body with top-level `model` replaced and `dragonfly` removed; see `crate::tokens::substitute_model`.
#[pyfunction]
fn substitute_model<'py>(
    py: Python<'py>,
    body: &[u8],
    upstream_model: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let out = tokens::substitute_model(body, upstream_model)
        .map_err(|e| InvalidInputError::new_err(e.0))?;
    Ok(PyBytes::new(py, &out))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TokenCounter>()?;
    m.add_function(wrap_pyfunction!(encoding_for_model, m)?)?;
    m.add_function(wrap_pyfunction!(preparse_request, m)?)?;
    m.add_function(wrap_pyfunction!(substitute_model, m)?)?;
    Ok(())
}
