//! The states of sources and orgs (SPEC §2): one enum each, one text form each, used alike by the
//! store, the `--json` summary, `status`, the daemon's logs and the metrics. The rule that decides
//! an org's state from its sources lives here, once.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How one source ended in a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceStatus {
    /// First snapshot: recorded, nothing to compare with.
    Baseline,
    /// The same content as before, or a change that is no drift.
    Ok,
    Drift,
    /// 404 or not in this edition: neither drift nor a failure.
    Unavailable,
    Error,
    /// Not called: the org needs reconnect or is backing off.
    Skipped,
}

impl SourceStatus {
    /// Every status, for parsing.
    const ALL: [SourceStatus; 6] = [
        SourceStatus::Baseline,
        SourceStatus::Ok,
        SourceStatus::Drift,
        SourceStatus::Unavailable,
        SourceStatus::Error,
        SourceStatus::Skipped,
    ];

    /// The one text form (JSON, database, terminal).
    pub fn as_str(self) -> &'static str {
        match self {
            SourceStatus::Baseline => "baseline",
            SourceStatus::Ok => "ok",
            SourceStatus::Drift => "drift",
            SourceStatus::Unavailable => "unavailable",
            SourceStatus::Error => "error",
            SourceStatus::Skipped => "skipped",
        }
    }

    /// The source could not be audited in this pass (exit 3).
    pub fn is_incomplete(self) -> bool {
        matches!(self, SourceStatus::Error | SourceStatus::Skipped)
    }
}

/// The state of an org after its latest pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgState {
    Ok,
    NeedsReconnect,
    Error,
}

impl OrgState {
    /// The one text form.
    pub fn as_str(self) -> &'static str {
        match self {
            OrgState::Ok => "ok",
            OrgState::NeedsReconnect => "needs_reconnect",
            OrgState::Error => "error",
        }
    }

    /// The rule: an org that needs reconnect is that; otherwise one source that could not be
    /// audited makes it `error`; otherwise it is `ok`.
    pub fn of(needs_reconnect: bool, sources: impl IntoIterator<Item = SourceStatus>) -> OrgState {
        if needs_reconnect {
            OrgState::NeedsReconnect
        } else if sources.into_iter().any(SourceStatus::is_incomplete) {
            OrgState::Error
        } else {
            OrgState::Ok
        }
    }
}

/// A state text that is not one of the known forms (a database written by something else).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a known state")]
pub struct UnknownState(pub String);

impl FromStr for SourceStatus {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SourceStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

impl fmt::Display for SourceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Display for OrgState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl ToSql for SourceStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for SourceStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e: UnknownState| FromSqlError::Other(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_from_its_text_in_json_and_sql() {
        for s in SourceStatus::ALL {
            assert_eq!(s.as_str().parse::<SourceStatus>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            let conn = rusqlite::Connection::open_in_memory().unwrap();
            let back: SourceStatus = conn.query_row("SELECT ?1", [s], |r| r.get(0)).unwrap();
            assert_eq!(back, s);
        }
        assert!("fine".parse::<SourceStatus>().is_err());
        assert_eq!(
            serde_json::to_value(OrgState::NeedsReconnect).unwrap(),
            "needs_reconnect"
        );
        assert_eq!(format!("{:<16}|", OrgState::NeedsReconnect), "needs_reconnect |");
    }

    #[test]
    fn the_org_state_rule() {
        use SourceStatus::*;
        assert_eq!(OrgState::of(true, [Ok]), OrgState::NeedsReconnect);
        assert_eq!(OrgState::of(false, [Ok, Drift, Unavailable, Baseline]), OrgState::Ok);
        assert_eq!(OrgState::of(false, [Ok, Skipped]), OrgState::Error);
        assert_eq!(OrgState::of(false, [Error]), OrgState::Error);
        assert_eq!(OrgState::of(false, []), OrgState::Ok);
    }
}
