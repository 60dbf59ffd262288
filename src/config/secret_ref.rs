//! Where a secret comes from: inline, an environment variable, or a file.

use crate::secret::Secret;
use std::path::{Path, PathBuf};

/// A secret as configured, resolved only when it is needed (read-only commands such as `status`
/// never need the secrets, and may run where the service's credentials are not available).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// `X = "..."`.
    Inline(Secret),
    /// `X_env = "NAME"`.
    Env(String),
    /// `X_file = "path"`, already resolved against `$CREDENTIALS_DIRECTORY`.
    File(PathBuf),
}

impl SecretRef {
    /// The value. Errors name the variable or file, never the value.
    pub fn resolve(&self) -> Result<Secret, String> {
        match self {
            SecretRef::Inline(s) => Ok(s.clone()),
            SecretRef::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
                Ok(_) => Err(format!("environment variable {var} is empty")),
                Err(_) => Err(format!("environment variable {var} is not set")),
            },
            SecretRef::File(path) => match read_secret_file(path) {
                // Files written by `echo` or editors end with a newline that is not part of the secret.
                Ok(v) if !v.trim_end_matches(['\r', '\n']).is_empty() => {
                    Ok(Secret::new(v.trim_end_matches(['\r', '\n'])))
                }
                Ok(_) => Err(format!("secret file {} is empty", path.display())),
                Err(e) => Err(format!("cannot read secret file {}: {e}", path.display())),
            },
        }
    }

    /// How `check-config` shows it: where it comes from, never what it is.
    pub fn describe(&self) -> String {
        match self {
            SecretRef::Inline(_) => "*** (inline)".to_string(),
            SecretRef::Env(var) => format!("*** (from ${var})"),
            SecretRef::File(p) => format!("*** (from file {})", p.display()),
        }
    }

    pub fn is_inline(&self) -> bool {
        matches!(self, SecretRef::Inline(_))
    }

    /// The file, for an `X_file` secret.
    pub fn file(&self) -> Option<&Path> {
        match self {
            SecretRef::File(p) => Some(p),
            _ => None,
        }
    }
}

/// No secret is this long; a bigger "secret file" is a mistake (a log, a disk image).
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Reads a secret file: a regular file only, and at most [`MAX_SECRET_FILE_BYTES`]. It is opened
/// without blocking, so a FIFO (which would wait for a writer for ever) or a device is refused at once.
fn read_secret_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Non-blocking, so a FIFO never waits for a writer; never a controlling terminal.
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(invalid(
            "not a regular file (a FIFO, socket or device is never read)".into(),
        ));
    }
    if meta.len() > MAX_SECRET_FILE_BYTES {
        return Err(invalid(format!("larger than {MAX_SECRET_FILE_BYTES} bytes")));
    }
    let mut text = String::new();
    file.take(MAX_SECRET_FILE_BYTES + 1).read_to_string(&mut text)?;
    Ok(text)
}

/// A relative `X_file` path is taken from `$CREDENTIALS_DIRECTORY` when systemd set it
/// (`LoadCredential=`), else from the working directory.
pub fn credential_path(path: &Path) -> PathBuf {
    if path.is_relative() {
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            return PathBuf::from(dir).join(path);
        }
    }
    path.to_path_buf()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_at_once_instead_of_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("secret");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = SecretRef::File(fifo).resolve().unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn a_device_or_a_huge_file_is_refused() {
        let err = SecretRef::File("/dev/zero".into()).resolve().unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 70_000]).unwrap();
        let err = SecretRef::File(big).resolve().unwrap_err();
        assert!(err.contains("larger than"), "{err}");
    }
}
