//! `auditd status`: what the database says, per org and source. Reads only; runs beside the daemon.

use super::{load_config, report};
use crate::exit::ExitCode;
use crate::inert::escape_controls as inert;
use crate::states::{OrgState, SourceStatus};
use crate::store::{queries, Store};
use crate::time_util::rfc3339;
use serde::Serialize;
use std::path::Path;

/// One source in `status --json`.
#[derive(Debug, Serialize)]
pub struct SourceStatusView {
    pub source: String,
    pub status: SourceStatus,
    pub error: Option<String>,
    pub snapshot: Option<i64>,
    pub last_audit_at: Option<String>,
    pub last_success_at: Option<String>,
    pub last_change_at: Option<String>,
}

/// One org in `status --json`.
#[derive(Debug, Serialize)]
pub struct OrgStatusView {
    pub org: String,
    pub state: OrgState,
    pub reason: Option<String>,
    pub sources: Vec<SourceStatusView>,
}

/// The whole `status --json` document.
#[derive(Debug, Serialize)]
pub struct StatusView {
    pub version: u32,
    pub orgs: Vec<OrgStatusView>,
    pub outbox: Vec<queries::ChannelBacklog>,
}

pub async fn run(config_path: &Path, json: bool) -> ExitCode {
    let config = match load_config(config_path, false) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let store = match Store::open_existing(&config.daemon.database) {
        Ok(s) => s,
        Err(e) => return report(&anyhow::Error::new(e), ExitCode::Fatal),
    };
    let names: Vec<String> = config.orgs.iter().map(|o| o.name.clone()).collect();
    let view = store
        .call(move |c| {
            let states = queries::source_states(c)?;
            let orgs = names
                .iter()
                .map(|name| {
                    let row = queries::org_if_known(c, name)?.unwrap_or_default();
                    let sources: Vec<SourceStatusView> = states
                        .iter()
                        .filter(|s| &s.org == name)
                        .map(|s| SourceStatusView {
                            source: s.source.clone(),
                            status: s.status,
                            error: s.error.clone(),
                            snapshot: s.snapshot_id,
                            last_audit_at: Some(rfc3339(s.last_audit_at)),
                            last_success_at: s.last_success_at.map(rfc3339),
                            last_change_at: s.last_change_at.map(rfc3339),
                        })
                        .collect();
                    let state = OrgState::of(row.needs_reconnect, sources.iter().map(|s| s.status));
                    let reason = match state {
                        OrgState::NeedsReconnect => row.reconnect_reason.clone(),
                        OrgState::Error => sources
                            .iter()
                            .find(|s| s.status.is_incomplete())
                            .and_then(|s| s.error.clone()),
                        OrgState::Ok if sources.is_empty() => Some("not audited yet".to_string()),
                        OrgState::Ok => None,
                    };
                    Ok(OrgStatusView {
                        org: name.clone(),
                        state,
                        reason,
                        sources,
                    })
                })
                .collect::<Result<Vec<_>, crate::store::StoreError>>()?;
            Ok(StatusView {
                version: 1,
                orgs,
                outbox: queries::outbox_backlog(c)?,
            })
        })
        .await;
    let view = match view {
        Ok(v) => v,
        Err(e) => return report(&anyhow::Error::new(e), ExitCode::Fatal),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&view).expect("status serialises"));
    } else {
        print!("{}", table(&view));
    }
    ExitCode::Clean
}

fn table(v: &StatusView) -> String {
    let mut out = String::new();
    for org in &v.orgs {
        out.push_str(&format!("{}: {}", org.org, org.state));
        if let Some(r) = &org.reason {
            out.push_str(&format!(" ({})", inert(r)));
        }
        out.push('\n');
        for s in &org.sources {
            out.push_str(&format!(
                "  {:<26} {:<11} last audit {}  last change {}",
                s.source,
                s.status,
                s.last_audit_at.as_deref().unwrap_or("-"),
                s.last_change_at.as_deref().unwrap_or("-")
            ));
            if let Some(e) = &s.error {
                out.push_str(&format!("  ({})", inert(e)));
            }
            out.push('\n');
        }
    }
    if v.outbox.is_empty() {
        out.push_str("outbox: empty\n");
    }
    for b in &v.outbox {
        out.push_str(&format!("outbox {}: {} pending, {} dead", b.channel, b.pending, b.dead));
        if let Some(e) = &b.last_error {
            out.push_str(&format!(" (last dead: {}; see `auditd alerts`)", inert(e)));
        }
        out.push('\n');
    }
    out
}
