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
            SecretRef::File(path) => match std::fs::read_to_string(path) {
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
