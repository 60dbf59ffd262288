//! What a pass reports: the `--json` summary (SPEC §2) and the exit code it implies.

use crate::exit::ExitCode;
use crate::states::{OrgState, SourceStatus};
use serde::Serialize;

/// One source in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    pub source: String,
    pub status: SourceStatus,
    /// Changes found in this pass (0 unless `drift`).
    pub changes: usize,
    /// The snapshot the source stands at after the pass.
    pub snapshot: Option<i64>,
    /// The snapshot it was compared with, when it drifted or changed.
    pub previous_snapshot: Option<i64>,
    /// Why it was not audited (`error`, `skipped`, `unavailable`).
    pub error: Option<String>,
}

impl SourceReport {
    /// A source that was not read: `why` is the error, skip or unavailability reason.
    pub fn unread(source: &str, status: SourceStatus, why: String) -> SourceReport {
        SourceReport {
            source: source.to_string(),
            status,
            changes: 0,
            snapshot: None,
            previous_snapshot: None,
            error: Some(why),
        }
    }
}

/// One org in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct OrgReport {
    pub org: String,
    pub state: OrgState,
    /// Why the org is not `ok`.
    pub reason: Option<String>,
    pub sources: Vec<SourceReport>,
}

/// Alert counts in the summary: delivered and suppressed in this pass; pending and dead in the whole outbox.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct AlertTotals {
    pub delivered: usize,
    pub pending: i64,
    pub dead: i64,
    pub suppressed: usize,
}

/// The `--json` document.
#[derive(Debug, Clone, Serialize)]
pub struct PassReport {
    pub version: u32,
    pub started_at: String,
    pub finished_at: String,
    pub exit_code: ExitCode,
    pub orgs: Vec<OrgReport>,
    pub alerts: AlertTotals,
}

impl PassReport {
    /// The exit code of SPEC §2 (fatal errors never produce a report).
    pub fn outcome(orgs: &[OrgReport]) -> ExitCode {
        orgs.iter().fold(ExitCode::Clean, |acc, org| {
            let incomplete = org.state != OrgState::Ok || org.sources.iter().any(|s| s.status.is_incomplete());
            let drift = org.sources.iter().any(|s| s.status == SourceStatus::Drift);
            acc.worst(if incomplete {
                ExitCode::Incomplete
            } else if drift {
                ExitCode::Drift
            } else {
                ExitCode::Clean
            })
        })
    }
}
