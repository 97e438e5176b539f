//! The settlement batch on SQLite, committed off the event loop (ARCHITECTURE.md, Storage).
//!
//! `BatchWriter` holds its own connection to the database file (the Python driver keeps its own for
//! everything else) and writes a batch — a fixed list of statements, each run once per row — as one
//! `BEGIN IMMEDIATE … COMMIT` transaction. The caller runs `write` with the GIL released, so the whole
//! transaction (binding, SQLite's own work, the WAL write at COMMIT) costs the event loop nothing.
//!
//! The connection is set up as the Python driver sets up its own (storage/sql/sqlite.py): WAL,
//! `synchronous=NORMAL`, foreign keys on, no automatic checkpoint (a checkpointer thread does it), and a
//! busy timeout: another connection holding the write lock (the control plane, a checkpoint) is waited
//! for on this thread, not failed.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{ffi, params_from_iter, Connection, ErrorCode, OpenFlags, ToSql};

/// One parameter of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// One statement of a batch and the rows it runs for (`?1`, `?2`, … are a row's values in order).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Step {
    pub sql: String,
    pub rows: Vec<Vec<Value>>,
}

/// What kind of failure a write met: the caller decides from this whether to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A UNIQUE or PRIMARY KEY constraint: a row that is already there (a replayed id).
    Unique,
    /// Another constraint (NOT NULL, CHECK, FOREIGN KEY): the data itself is refused.
    Constraint,
    /// The database may take it later: locked or busy past the timeout, I/O error, disk full, cannot open.
    Transient,
    /// Anything else (a malformed statement, a wrong parameter count): a bug, not the database's state.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteError {
    pub kind: ErrorKind,
    pub message: String,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WriteError {}

impl From<rusqlite::Error> for WriteError {
    fn from(err: rusqlite::Error) -> Self {
        let kind = match &err {
            rusqlite::Error::SqliteFailure(e, _) => match e.code {
                ErrorCode::ConstraintViolation
                    if e.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                        || e.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
                {
                    ErrorKind::Unique
                }
                ErrorCode::ConstraintViolation => ErrorKind::Constraint,
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory => ErrorKind::Transient,
                _ => ErrorKind::Other,
            },
            _ => ErrorKind::Other,
        };
        WriteError {
            kind,
            message: err.to_string(),
        }
    }
}

/// Statements kept prepared per connection (the settlement batch has five fast and five guarded).
const STATEMENT_CACHE: usize = 32;

pub struct BatchWriter {
    conn: Connection,
}

impl BatchWriter {
    /// Opens the database file (which must exist: the Python side has migrated it).
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Self, WriteError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(busy_timeout)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(WriteError {
                kind: ErrorKind::Other,
                message: format!("journal_mode is {mode}, not wal"),
            });
        }
        conn.execute_batch(
            "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA wal_autocheckpoint=0;",
        )?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(BatchWriter { conn })
    }

    /// Runs every step's statement for each of its rows, in order, as one transaction: all of it is
    /// committed or none of it (rolled back on the first error, which is returned).
    pub fn write(&mut self, steps: &[Step]) -> Result<(), WriteError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        match run_steps(&self.conn, steps).and_then(|()| self.conn.execute_batch("COMMIT")) {
            Ok(()) => Ok(()),
            Err(err) => {
                if !self.conn.is_autocommit() {
                    // Best effort: a failed ROLLBACK leaves SQLite to roll back when the connection
                    // closes; the batch's own error is the one worth reporting.
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                Err(err.into())
            }
        }
    }
}

/// How long the writer runs rows before it offers its core to another thread (`yield_now`). A batch of
/// 50 trades is ~1.5 ms of SQLite work; on a 2-core host, run in one piece it held a core the request
/// path's threads then waited for (the scheduler lets a running thread finish its slice, ~3 ms, before
/// a woken one takes its core), which showed in unloaded p99 latency.
const YIELD_EVERY: Duration = Duration::from_micros(100);

fn run_steps(conn: &Connection, steps: &[Step]) -> rusqlite::Result<()> {
    let mut slice = Instant::now();
    for step in steps.iter().filter(|s| !s.rows.is_empty()) {
        let mut stmt = conn.prepare_cached(&step.sql)?;
        for row in &step.rows {
            stmt.execute(params_from_iter(row.iter()))?;
            if slice.elapsed() >= YIELD_EVERY {
                std::thread::yield_now();
                slice = Instant::now();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_db(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dragonfly-io-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.sqlite");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL, x REAL, b BLOB);
             CREATE TABLE s (k TEXT PRIMARY KEY, n INTEGER NOT NULL);",
        )
        .unwrap();
        path
    }

    fn insert(ids: std::ops::Range<i64>) -> Step {
        Step {
            sql: "INSERT INTO t (id, v, x, b) VALUES (?1, ?2, ?3, ?4)".into(),
            rows: ids
                .map(|i| {
                    vec![
                        Value::Integer(i),
                        Value::Text(format!("row {i}")),
                        Value::Real(0.5),
                        Value::Blob(vec![1, 2]),
                    ]
                })
                .collect(),
        }
    }

    fn count(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_batch_commits_every_step_and_another_connection_reads_it() {
        let path = temp_db("commit");
        let mut w = BatchWriter::open(&path, Duration::from_millis(100)).unwrap();
        let upsert = Step {
            sql: "INSERT INTO s (k, n) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET n = s.n + excluded.n"
                .into(),
            rows: vec![
                vec![Value::Text("a".into()), Value::Integer(2)],
                vec![Value::Text("a".into()), Value::Integer(3)],
            ],
        };
        w.write(&[insert(0..10), Step::default(), upsert]).unwrap();
        assert_eq!(count(&path), 10);
        let n: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT n FROM s WHERE k = 'a'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 5);
        let null_row = Step {
            sql: "INSERT INTO t (id, v, x) VALUES (?1, ?2, ?3)".into(),
            rows: vec![vec![
                Value::Integer(99),
                Value::Text("n".into()),
                Value::Null,
            ]],
        };
        w.write(&[null_row]).unwrap();
        assert_eq!(count(&path), 11);
    }

    #[test]
    fn a_duplicate_key_is_unique_and_rolls_the_whole_batch_back() {
        let path = temp_db("unique");
        let mut w = BatchWriter::open(&path, Duration::from_millis(100)).unwrap();
        w.write(&[insert(0..3)]).unwrap();
        let err = w.write(&[insert(10..20), insert(2..3)]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unique, "{err}");
        assert_eq!(count(&path), 3, "nothing of the failed batch is left");
        w.write(&[insert(10..20)]).unwrap();
        assert_eq!(
            count(&path),
            13,
            "the writer is usable after a failed batch"
        );
    }

    #[test]
    fn not_null_is_a_constraint_and_a_bad_statement_is_other() {
        let path = temp_db("constraint");
        let mut w = BatchWriter::open(&path, Duration::from_millis(100)).unwrap();
        let null_v = Step {
            sql: "INSERT INTO t (id, v) VALUES (?1, ?2)".into(),
            rows: vec![vec![Value::Integer(1), Value::Null]],
        };
        assert_eq!(w.write(&[null_v]).unwrap_err().kind, ErrorKind::Constraint);
        let too_few = Step {
            sql: "INSERT INTO t (id, v) VALUES (?1, ?2)".into(),
            rows: vec![vec![Value::Integer(1)]],
        };
        assert_eq!(w.write(&[too_few]).unwrap_err().kind, ErrorKind::Other);
        let no_table = Step {
            sql: "INSERT INTO nope VALUES (?1)".into(),
            rows: vec![vec![Value::Integer(1)]],
        };
        assert_eq!(w.write(&[no_table]).unwrap_err().kind, ErrorKind::Other);
        assert_eq!(count(&path), 0);
    }

    #[test]
    fn a_write_lock_held_past_the_timeout_is_transient_and_one_released_in_time_is_waited_for() {
        let path = temp_db("busy");
        let mut w = BatchWriter::open(&path, Duration::from_millis(50)).unwrap();
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let err = w.write(&[insert(0..1)]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Transient, "{err}");
        other.execute_batch("COMMIT").unwrap();

        let mut w = BatchWriter::open(&path, Duration::from_secs(5)).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            other.execute_batch("COMMIT").unwrap();
        });
        w.write(&[insert(0..5)]).unwrap();
        release.join().unwrap();
        assert_eq!(count(&path), 5);
    }

    #[test]
    fn a_missing_file_is_not_created() {
        let dir = std::env::temp_dir().join(format!("dragonfly-io-{}-missing", std::process::id()));
        let err = BatchWriter::open(&dir.join("nope.sqlite"), Duration::from_millis(10))
            .err()
            .unwrap();
        assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    }
}
