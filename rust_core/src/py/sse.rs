//! PyO3 adapter for `crate::sse`: `Splicer` and `rewrite_completion`.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use super::errors::{EventTooLargeError, InvalidInputError, StreamError};
use crate::sse::{self, Encoding, SseError, ToolCall, Usage};

/// Bodies (and `Splicer.feed` chunks) at least this big are processed with the GIL released.
const DETACH_BYTES: usize = 64 * 1024;

#[cold]
fn to_py_err(e: SseError) -> PyErr {
    let msg = e.to_string();
    match e {
        SseError::EventTooLarge { .. } => EventTooLargeError::new_err(msg),
        SseError::Stream(_) => StreamError::new_err(msg),
        SseError::InvalidInput(_) => InvalidInputError::new_err(msg),
    }
}

fn encoding(name: &str) -> PyResult<Encoding> {
    Encoding::from_name(name).ok_or_else(|| {
        InvalidInputError::new_err(format!(
            "unknown encoding {name:?}; expected o200k_base or cl100k_base"
        ))
    })
}

fn usage_dict<'py>(py: Python<'py>, u: &Usage) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("prompt_tokens", u.prompt_tokens)?;
    d.set_item("completion_tokens", u.completion_tokens)?;
    d.set_item("total_tokens", u.total_tokens)?;
    d.set_item("cached_tokens", u.cached_tokens)?;
    d.set_item("reasoning_tokens", u.reasoning_tokens)?;
    Ok(d)
}

/// A JSON value as a Python object via `json.loads`, so integers of any size stay exact.
fn json_to_py<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (v.to_string(),))
}

fn tool_calls_list<'py>(py: Python<'py>, calls: &[ToolCall]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for c in calls {
        let d = PyDict::new(py);
        d.set_item("choice", c.choice)?;
        d.set_item("index", c.index)?;
        d.set_item("id", c.id.as_deref())?;
        d.set_item("name", c.name.as_deref())?;
        d.set_item("arguments", &c.arguments)?;
        list.append(d)?;
    }
    Ok(list)
}

/// Splices an upstream chat-completion SSE stream into the buyer's stream.
#[pyclass(module = "dragonfly._native", name = "Splicer")]
struct PySplicer(sse::Splicer);

#[pymethods]
impl PySplicer {
    #[new]
    #[pyo3(signature = (request_id, public_model, include_usage, created, max_event_bytes = 1_048_576, encoding = "o200k_base"))]
    fn new(
        request_id: String,
        public_model: String,
        include_usage: bool,
        created: i64,
        max_event_bytes: usize,
        encoding: &str,
    ) -> PyResult<Self> {
        if max_event_bytes == 0 {
            return Err(InvalidInputError::new_err(
                "max_event_bytes must be positive",
            ));
        }
        let enc = self::encoding(encoding)?;
        Ok(Self(sse::Splicer::new(
            request_id,
            public_model,
            include_usage,
            created,
            max_event_bytes,
            enc,
        )))
    }

    /// Chunks of `DETACH_BYTES` and more are spliced with the GIL released. Sound: the closure holds no
    /// Python reference — `data` borrows the immutable `bytes` argument, which the caller keeps alive for
    /// the whole call, and `&mut self` is this object's exclusive borrow, so another thread touching the
    /// same `Splicer` meanwhile gets pyo3's "already borrowed" error instead of a data race.
    fn feed<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let splicer = &mut self.0;
        let out = if data.len() >= DETACH_BYTES {
            py.detach(|| splicer.feed(data))
        } else {
            splicer.feed(data)
        }
        .map_err(to_py_err)?;
        Ok(PyBytes::new(py, &out))
    }

    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let out = self.0.finish().map_err(to_py_err)?;
        Ok(PyBytes::new(py, &out))
    }

    #[pyo3(signature = (message, code = None))]
    fn error_event<'py>(
        &mut self,
        py: Python<'py>,
        message: &str,
        code: Option<&str>,
    ) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.error_event(message, code))
    }

    #[pyo3(signature = (message, code = None))]
    fn replace_done_with_error<'py>(
        &mut self,
        py: Python<'py>,
        message: &str,
        code: Option<&str>,
    ) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.replace_done_with_error(message, code))
    }

    fn begin_continuation(&mut self) -> PyResult<()> {
        self.0.begin_continuation().map_err(to_py_err)
    }

    fn set_prompt_tokens(&mut self, n: u64) {
        self.0.set_prompt_tokens(n);
    }

    #[getter]
    fn usage<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.0.usage().map(|u| usage_dict(py, &u)).transpose()
    }

    #[getter]
    fn usage_json(&self) -> Option<String> {
        self.0.usage().map(|u| u.raw)
    }

    #[getter]
    fn usage_source(&self) -> &'static str {
        self.0.usage_source().as_str()
    }

    #[getter]
    fn counted_completion_tokens(&self) -> u64 {
        self.0.counted_completion_tokens()
    }

    #[getter]
    fn finish_reason(&self) -> Option<&str> {
        self.0.finish_reason()
    }

    #[getter]
    fn content_so_far(&self) -> &str {
        self.0.content_so_far()
    }

    #[getter]
    fn reasoning_so_far(&self) -> &str {
        self.0.reasoning_so_far()
    }

    #[getter]
    fn tool_calls<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        tool_calls_list(py, &self.0.tool_calls())
    }

    #[getter]
    fn tool_call_open(&self) -> bool {
        self.0.tool_call_open()
    }

    #[getter]
    fn upstream_error<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.0
            .upstream_error()
            .map(|v| json_to_py(py, v))
            .transpose()
    }

    #[getter]
    fn saw_done(&self) -> bool {
        self.0.saw_done()
    }

    #[getter]
    fn events(&self) -> u64 {
        self.0.events()
    }

    #[getter]
    fn garbage_events(&self) -> u64 {
        self.0.garbage_events()
    }

    #[getter]
    fn bytes_in(&self) -> u64 {
        self.0.bytes_in()
    }

    #[getter]
    fn bytes_out(&self) -> u64 {
        self.0.bytes_out()
    }
}

/// Rewrite a non-streaming chat-completion body; see `dragonfly.native.sse.rewrite_completion`.
#[pyfunction]
#[pyo3(signature = (body, request_id, public_model, encoding = "o200k_base"))]
fn rewrite_completion<'py>(
    py: Python<'py>,
    body: &[u8],
    request_id: &str,
    public_model: &str,
    encoding: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let enc = self::encoding(encoding)?;
    let run = || sse::rewrite_completion(body, request_id, public_model, enc);
    let c = if body.len() >= DETACH_BYTES {
        py.detach(run)
    } else {
        run()
    }
    .map_err(to_py_err)?;
    let d = PyDict::new(py);
    d.set_item("body", PyBytes::new(py, &c.body))?;
    d.set_item(
        "usage",
        c.usage.as_ref().map(|u| usage_dict(py, u)).transpose()?,
    )?;
    d.set_item("finish_reason", c.finish_reason)?;
    d.set_item("content", c.content)?;
    d.set_item("tool_calls", tool_calls_list(py, &c.tool_calls)?)?;
    d.set_item("counted_completion_tokens", c.counted_completion_tokens)?;
    d.set_item(
        "upstream_error",
        c.upstream_error
            .as_ref()
            .map(|v| json_to_py(py, v))
            .transpose()?,
    )?;
    Ok(d)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySplicer>()?;
    m.add_function(wrap_pyfunction!(rewrite_completion, m)?)?;
    Ok(())
}
