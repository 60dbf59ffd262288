//! Exit codes: the one table of SPEC §2.

/// How a command ended, as a process exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitCode {
    /// Every selected org audited, no drift.
    Clean,
    /// Drift found in at least one org.
    Drift,
    /// At least one org or source could not be audited.
    Incomplete,
    /// Database unusable, lock held by another process, internal error.
    Fatal,
    /// The command line itself was wrong (unknown flag, unknown `--org`).
    Usage,
    /// The configuration is invalid.
    Config,
}

impl ExitCode {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            ExitCode::Clean => 0,
            ExitCode::Fatal => 1,
            ExitCode::Drift => 2,
            ExitCode::Incomplete => 3,
            ExitCode::Usage => 64,
            ExitCode::Config => 78,
        }
    }

    /// Combines the outcomes of several orgs: fatal beats incomplete beats drift beats clean.
    pub fn worst(self, other: ExitCode) -> ExitCode {
        fn rank(c: ExitCode) -> u8 {
            match c {
                ExitCode::Clean => 0,
                ExitCode::Drift => 1,
                ExitCode::Incomplete => 2,
                ExitCode::Fatal => 3,
                ExitCode::Usage => 4,
                ExitCode::Config => 5,
            }
        }
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// In JSON (`"exit_code": 2`), the number.
impl serde::Serialize for ExitCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.code())
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(c: ExitCode) -> Self {
        std::process::ExitCode::from(c.code())
    }
}

/// The exit-code table as printed by `--help`.
pub const HELP_TABLE: &str = "\
Exit codes of --once:
  0   every selected org audited, no drift
  2   drift found in at least one org (alerts recorded, delivery attempted)
  3   incomplete: an org or source could not be audited (takes precedence over 2)
  1   fatal: database unusable, another instance holds the lock, internal error
  64  usage error (unknown flag, unknown --org)
  78  configuration invalid (any command)";

#[cfg(test)]
mod tests {
    use super::ExitCode::*;

    #[test]
    fn precedence_follows_the_spec() {
        assert_eq!(Clean.worst(Drift), Drift);
        assert_eq!(Incomplete.worst(Drift), Incomplete);
        assert_eq!(Drift.worst(Fatal), Fatal);
        assert_eq!(Fatal.code(), 1);
        assert_eq!(Config.code(), 78);
    }
}
