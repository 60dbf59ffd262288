//! One auditing process per database: an exclusive lock on the database file itself.
//!
//! The lock is an `flock` on the database's own inode, so every path that reaches the file (a
//! symlink, a hard link, `..` detours) meets the same lock. SQLite's own locks are `fcntl` locks,
//! which on Linux are independent of `flock`. One rule follows from POSIX: closing any descriptor
//! of a file drops the process's `fcntl` locks on it, so the lock must be released only after the
//! store's connection is closed: `Store::open_locked` keeps the lock inside the store for that.

use super::StoreError;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Held by the daemon and `--once` for as long as they run; the OS releases it when the process
/// dies, so a `kill -9` never leaves a stale lock behind.
#[derive(Debug)]
pub struct AuditLock {
    /// The database file, locked.
    _database: std::fs::File,
}

impl AuditLock {
    /// Takes the lock for the database at `db` (creating an empty private file if there is none),
    /// or fails at once naming the holder.
    pub fn acquire(db: &Path) -> Result<AuditLock, StoreError> {
        let open_err = |source| StoreError::Open {
            path: db.to_path_buf(),
            source,
        };
        super::create_private(db)?;
        let database = std::fs::File::open(db).map_err(open_err)?;
        // The holder's pid is kept beside the file's real path, for the other process's message.
        let pid_path = pid_path(&std::fs::canonicalize(db).map_err(open_err)?);
        match database.try_lock() {
            Ok(()) => {
                let mut options = super::private_file_options();
                options.write(true).create(true).truncate(true);
                // Never through a symlink someone planted beside the database.
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
                if let Ok(mut f) = options.open(&pid_path) {
                    let _ = write!(f, "{}", std::process::id());
                }
                Ok(AuditLock { _database: database })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                if let Ok(mut f) = std::fs::File::open(&pid_path) {
                    let _ = f.rewind();
                    let _ = f.read_to_string(&mut pid);
                }
                let holder = match pid.trim() {
                    p if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => format!("pid {p}"),
                    _ => "pid unknown".to_string(),
                };
                Err(StoreError::Locked {
                    path: db.to_path_buf(),
                    holder,
                })
            }
            Err(std::fs::TryLockError::Error(source)) => Err(open_err(source)),
        }
    }
}

fn pid_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    db.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("auditd.db");
        let first = AuditLock::acquire(&db).unwrap();
        let err = AuditLock::acquire(&db).unwrap_err().to_string();
        assert!(
            err.contains("another auditd process") && err.contains(&std::process::id().to_string()),
            "{err}"
        );
        drop(first);
        AuditLock::acquire(&db).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_or_a_hard_link_to_the_database_meets_the_same_lock() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("auditd.db");
        let _held = AuditLock::acquire(&db).unwrap();
        let symlink = dir.path().join("via-symlink.db");
        std::os::unix::fs::symlink(&db, &symlink).unwrap();
        std::fs::create_dir(dir.path().join("elsewhere")).unwrap();
        let hard_link = dir.path().join("elsewhere/via-hard-link.db");
        std::fs::hard_link(&db, &hard_link).unwrap();
        for other in [symlink, hard_link] {
            let err = AuditLock::acquire(&other).unwrap_err();
            assert!(matches!(err, StoreError::Locked { .. }), "{}: {err}", other.display());
        }
    }
}
