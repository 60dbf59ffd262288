//! The SQLite store: one file per deployment, WAL, versioned migrations, created with mode 0600.
//!
//! rusqlite is blocking, so [`Store::call`] runs every query on tokio's blocking pool; the async
//! executor never waits on SQLite. Readers in other processes (`status`, `history`) open their own
//! connection; WAL and a busy timeout let them run beside the auditing process.

mod lock;
pub mod queries;

pub use lock::AuditLock;

use rusqlite::Connection;
use rusqlite_migration::{Migrations, M};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database {path} is not usable")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot migrate database {path}")]
    Migrate {
        path: PathBuf,
        #[source]
        source: rusqlite_migration::Error,
    },
    #[error("another auditd process is auditing with database {path} ({holder}); only one may run per database")]
    Locked { path: PathBuf, holder: String },
    #[error("database query failed")]
    Query(#[from] rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database task was cancelled")]
    Cancelled,
}

fn migrations() -> Migrations<'static> {
    // Append only: a released migration is never edited.
    Migrations::new(vec![
        M::up(include_str!("001_schema.sql")),
        M::up(include_str!("002_outbox_requeue.sql")),
    ])
}

/// The database. Cloning is cheap; clones share one connection.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating with mode 0600 if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        create_private(path)?;
        let sqlite = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(sqlite)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sqlite)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sqlite)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(sqlite)?;
        // WAL with NORMAL is durable across process crashes (kill -9); only power loss can lose the
        // last commit, and the next pass then sees the same change again.
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sqlite)?;
        migrations()
            .to_latest(&mut conn)
            .map_err(|source| StoreError::Migrate {
                path: path.to_path_buf(),
                source,
            })?;
        queries::ensure_redaction_key(&conn).map_err(sqlite)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|_| StoreError::Cancelled)?
    }

    /// Runs `f` with the connection on the current thread (for synchronous callers such as `status`).
    pub fn call_blocking<R>(&self, f: impl FnOnce(&mut Connection) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }
}

/// Creates the file with mode 0600 before SQLite does, so tokens stored in it are never readable by
/// others, whatever the umask; SQLite gives the -wal and -shm files the same mode.
fn create_private(path: &Path) -> Result<(), StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(open_err)?;
    }
    private_file_options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(open_err)?;
    Ok(())
}

/// Options that create files readable by their owner only (mode 0600), whatever the umask: the
/// database, its lock, and anything else that may hold tokens.
pub fn private_file_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_database_is_private_and_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/auditd.db");
        let store = Store::open(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let key = store.call_blocking(|c| Ok(queries::redaction_key(c)?)).unwrap();
        assert_eq!(key.len(), 32);
        // Reopening keeps the key: fingerprints stay comparable across runs.
        drop(store);
        let again = Store::open(&path)
            .unwrap()
            .call_blocking(|c| Ok(queries::redaction_key(c)?))
            .unwrap();
        assert_eq!(key, again);
    }
}
