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
    #[error("database {path} does not exist (nothing audited yet, or a mistyped daemon.database?); `auditd --once` or the daemon creates it")]
    Missing { path: PathBuf },
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

/// The database. Cloning is cheap; clones share one connection (and the audit lock, if taken).
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    path: PathBuf,
}

/// What the clones of a [`Store`] share. The fields drop in order: the connection closes before the
/// lock is let go, because closing the lock's file drops this process's SQLite locks (see `lock.rs`).
struct Shared {
    conn: Mutex<Connection>,
    /// Held by the processes that audit, for as long as any clone lives.
    _lock: Option<AuditLock>,
}

impl Store {
    /// Opens (creating with mode 0600 if needed) and migrates the database: for the processes that
    /// audit, and `connect`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        create_private(path)?;
        Store::open_file(path, None)
    }

    /// Takes the audit lock (one auditing process per database file), then opens as [`Store::open`]
    /// does. The lock is held until the last clone is dropped, after the connection is closed.
    pub fn open_locked(path: &Path) -> Result<Store, StoreError> {
        let lock = AuditLock::acquire(path)?;
        Store::open_file(path, Some(lock))
    }

    /// Opens a database that must already exist: for the commands that only read (and `alerts
    /// retry`), which must never leave an empty database behind at a mistyped path.
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        match std::fs::metadata(path) {
            Ok(_) => Store::open_file(path, None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::Missing {
                path: path.to_path_buf(),
            }),
            Err(source) => Err(StoreError::Open {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn open_file(path: &Path, lock: Option<AuditLock>) -> Result<Store, StoreError> {
        tighten_permissions(path);
        // Without CREATE: `open_existing` checked the file is there, `open` made it private first.
        let flags = rusqlite::OpenFlags::default() - rusqlite::OpenFlags::SQLITE_OPEN_CREATE;
        let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
        Store::prepared(conn, path, lock)
    }

    /// A migrated database in memory, for tests of what is written (no file, no lock).
    pub fn in_memory() -> Result<Store, StoreError> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
        Store::prepared(conn, path, None)
    }

    /// Sets the connection up (WAL, foreign keys, busy timeout), migrates it, and wraps it.
    fn prepared(mut conn: Connection, path: &Path, lock: Option<AuditLock>) -> Result<Store, StoreError> {
        let sqlite = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
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
            shared: Arc::new(Shared {
                conn: Mutex::new(conn),
                _lock: lock,
            }),
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
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = shared.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|_| StoreError::Cancelled)?
    }

    /// Runs `f` with the connection on the current thread (for synchronous callers such as `status`).
    pub fn call_blocking<R>(&self, f: impl FnOnce(&mut Connection) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let mut guard = self.shared.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }
}

/// Creates the file with mode 0600 before SQLite does, so tokens stored in it are never readable by
/// others, whatever the umask; SQLite gives the -wal and -shm files the same mode.
pub(crate) fn create_private(path: &Path) -> Result<(), StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    create_private_dirs(path).map_err(open_err)?;
    private_file_options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(open_err)?;
    Ok(())
}

/// Creates the missing folders above `path` with mode 0700, whatever the umask, so that nobody else
/// can swap the database (or its lock) for one of their own. Existing folders are left as they are.
pub fn create_private_dirs(path: &Path) -> std::io::Result<()> {
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(parent)
}

/// An existing database (and its `-wal` and `-shm`) that group or others can read holds tokens in
/// the open: set it to 0600, and say so. A failure (not our file) is only reported.
fn tighten_permissions(db: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let mut name = db.as_os_str().to_os_string();
            name.push(suffix);
            let path = PathBuf::from(name);
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 == 0 {
                continue;
            }
            match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => tracing::warn!(
                    "{} was readable by group or others (mode {mode:o}); set it to 600",
                    path.display()
                ),
                Err(e) => tracing::warn!(
                    "{} is readable by group or others (mode {mode:o}) and could not be set to 600: {e}",
                    path.display()
                ),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = db;
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

    #[cfg(unix)]
    #[test]
    fn an_existing_database_readable_by_others_is_set_to_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auditd.db");
        drop(Store::open(&path).unwrap());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        drop(Store::open_existing(&path).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_reader_never_creates_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("typo/auditd.db");
        let err = Store::open_existing(&path).err().expect("no database there");
        assert!(matches!(err, StoreError::Missing { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
        assert!(!dir.path().join("typo").exists());
    }
}
