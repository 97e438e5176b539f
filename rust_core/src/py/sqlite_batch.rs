//! PyO3 adapter for `dragonfly_io::sqlite_batch`: `SqliteBatch` (rows gathered on the event loop, as
//! plain Rust values) and `SqliteBatchWriter` (commits a batch with the GIL released).
//!
//! Converting Python values happens in `SqliteBatch.add`, on the caller's thread, a slice at a time (the
//! caller yields between slices); `SqliteBatchWriter.write` then touches no Python object and holds the
//! GIL only to take the batch, so a worker thread runs the whole transaction beside the event loop.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use dragonfly_io::sqlite_batch::{BatchWriter, ErrorKind, Step, Value, WriteError};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyFloat, PyInt, PyString, PyTuple};

use super::errors::SqliteWriteError;

/// A batch's statements and rows, converted to Rust values as they are added.
#[pyclass(module = "dragonfly._native", name = "SqliteBatch")]
#[derive(Default)]
struct PySqliteBatch {
    steps: Vec<Step>,
    values: usize,
}

#[pymethods]
impl PySqliteBatch {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Appends `rows` (tuples of None, int, float, str or bytes) to the statement `sql` (SQLite's `?N`
    /// parameters); rows added under the same `sql` as the last call extend that step.
    fn add(&mut self, sql: &str, rows: Vec<Bound<'_, PyTuple>>) -> PyResult<()> {
        let mut converted = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut values = Vec::with_capacity(row.len());
            for item in row.iter() {
                values.push(to_value(&item)?);
            }
            self.values += values.len();
            converted.push(values);
        }
        match self.steps.last_mut() {
            Some(step) if step.sql == sql => step.rows.extend(converted),
            _ => self.steps.push(Step {
                sql: sql.to_owned(),
                rows: converted,
            }),
        }
        Ok(())
    }

    /// Parameters converted so far.
    #[getter]
    fn values(&self) -> usize {
        self.values
    }
}

fn to_value(item: &Bound<'_, PyAny>) -> PyResult<Value> {
    if item.is_none() {
        Ok(Value::Null)
    } else if let Ok(s) = item.cast::<PyString>() {
        Ok(Value::Text(s.to_str()?.to_owned()))
    } else if item.is_instance_of::<PyInt>() {
        // bool included: a subclass of int, stored as 0 or 1 as Python's sqlite3 does
        Ok(Value::Integer(item.extract::<i64>()?))
    } else if let Ok(f) = item.cast::<PyFloat>() {
        Ok(Value::Real(f.value()))
    } else if let Ok(b) = item.cast::<PyBytes>() {
        Ok(Value::Blob(b.as_bytes().to_vec()))
    } else {
        Err(PyTypeError::new_err(format!(
            "unsupported SQLite parameter type: {}",
            item.get_type().name()?
        )))
    }
}

/// A connection of its own to a SQLite database file that writes whole batches, one transaction each.
#[pyclass(module = "dragonfly._native", name = "SqliteBatchWriter", frozen)]
struct PySqliteBatchWriter {
    inner: Mutex<Option<BatchWriter>>,
}

#[pymethods]
impl PySqliteBatchWriter {
    /// Opens `path` (an existing database in WAL mode); blocking, with the GIL released.
    #[new]
    fn new(py: Python<'_>, path: PathBuf, busy_timeout_ms: u64) -> PyResult<Self> {
        let writer = py
            .detach(|| BatchWriter::open(&path, Duration::from_millis(busy_timeout_ms)))
            .map_err(write_error)?;
        Ok(PySqliteBatchWriter {
            inner: Mutex::new(Some(writer)),
        })
    }

    /// Commits the batch as one transaction, with the GIL released for all of it, and empties it.
    /// Raises `SqliteWriteError` (its `kind`: unique, constraint, transient, other); nothing of a
    /// failed batch is left in the database.
    fn write(&self, py: Python<'_>, mut batch: PyRefMut<'_, PySqliteBatch>) -> PyResult<()> {
        let steps = std::mem::take(&mut batch.steps);
        batch.values = 0;
        drop(batch);
        let inner = &self.inner;
        py.detach(move || {
            let mut guard = inner.lock().map_err(|_| closed())?;
            let writer = guard.as_mut().ok_or_else(closed)?;
            writer.write(&steps).map_err(write_error)
        })
    }

    /// Closes the connection (waits for a write in progress); later writes raise.
    fn close(&self, py: Python<'_>) {
        let inner = &self.inner;
        py.detach(move || {
            if let Ok(mut guard) = inner.lock() {
                guard.take();
            }
        });
    }
}

fn closed() -> PyErr {
    PyRuntimeError::new_err("the SQLite batch writer is closed")
}

fn write_error(err: WriteError) -> PyErr {
    let kind = match err.kind {
        ErrorKind::Unique => "unique",
        ErrorKind::Constraint => "constraint",
        ErrorKind::Transient => "transient",
        ErrorKind::Other => "other",
    };
    SqliteWriteError::new_err((kind, err.message))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySqliteBatch>()?;
    m.add_class::<PySqliteBatchWriter>()?;
    Ok(())
}
