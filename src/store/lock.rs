//! One auditing process per database: an exclusive lock on a file beside it.

use super::StoreError;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Held by the daemon and `--once` for as long as they run; the OS releases it when the process
/// dies, so a `kill -9` never leaves a stale lock behind.
#[derive(Debug)]
pub struct AuditLock {
    _file: std::fs::File,
}

impl AuditLock {
    /// Takes the lock for the database at `db`, or fails at once naming the holder.
    pub fn acquire(db: &Path) -> Result<AuditLock, StoreError> {
        let lock_path = lock_path(db);
        let open_err = |source| StoreError::Open {
            path: lock_path.clone(),
            source,
        };
        if let Some(parent) = lock_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(open_err)?;
        }
        let mut file = super::private_file_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(open_err)?;
        match file.try_lock() {
            Ok(()) => {
                // The pid is only for the other process's message.
                let _ = file.set_len(0);
                let _ = file.rewind();
                let _ = write!(file, "{}", std::process::id());
                Ok(AuditLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let holder = match pid.trim() {
                    "" => "pid unknown".to_string(),
                    p => format!("pid {p}"),
                };
                Err(StoreError::Locked {
                    path: db.to_path_buf(),
                    holder,
                })
            }
            Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Open {
                path: lock_path,
                source,
            }),
        }
    }
}

fn lock_path(db: &Path) -> PathBuf {
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
}
