//! PyO3 adapter for `crate::http1`: `ChunkedDecoder`.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::StreamError;
use crate::http1;

/// Decodes a chunked HTTP/1.1 body as its bytes arrive (the seller client's stream path).
#[pyclass(module = "dragonfly._native", name = "ChunkedDecoder")]
struct PyChunkedDecoder(http1::ChunkedDecoder);

#[pymethods]
impl PyChunkedDecoder {
    #[new]
    fn new() -> Self {
        Self(http1::ChunkedDecoder::new())
    }

    /// The data carried by `data`; raises `StreamError` on invalid framing.
    fn decode<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = Vec::with_capacity(data.len());
        self.0
            .decode(data, &mut out)
            .map_err(|e| StreamError::new_err(e.to_string()))?;
        Ok(PyBytes::new(py, &out))
    }

    #[getter]
    fn done(&self) -> bool {
        self.0.is_done()
    }

    #[getter]
    fn excess(&self) -> usize {
        self.0.excess()
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyChunkedDecoder>()
}
