//! `auditd history` and `auditd diff`: what was seen, and what changed between two snapshots.

use super::{load_config, open_store, report};
use crate::catalog::SourceId;
use crate::exit::ExitCode;
use crate::inert::escape_controls as inert;
use crate::snapshot;
use crate::store::queries;
use crate::time_util::rfc3339;
use std::path::Path;

/// Checks the org and source names before touching the database.
fn check_names(config: &crate::config::Config, org: &str, source: Option<&str>) -> Result<(), ExitCode> {
    if config.org(org).is_none() {
        return Err(report(
            &anyhow::anyhow!("no org named `{org}` in {}", config.path.display()),
            ExitCode::Usage,
        ));
    }
    if let Some(s) = source {
        if let Err(e) = s.parse::<SourceId>() {
            return Err(report(&anyhow::anyhow!("--source: {e}"), ExitCode::Usage));
        }
    }
    Ok(())
}

pub async fn history(config_path: &Path, org: &str, source: Option<&str>, limit: u32, json: bool) -> ExitCode {
    let store =
        match load_config(config_path, false).and_then(|c| check_names(&c, org, source).and_then(|_| open_store(&c))) {
            Ok(s) => s,
            Err(code) => return code,
        };
    let (org_name, source_name) = (org.to_string(), source.map(str::to_string));
    let rows = store
        .call(move |c| {
            Ok(queries::history(
                c,
                &org_name,
                source_name.as_deref(),
                i64::from(limit),
            )?)
        })
        .await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return report(&anyhow::Error::new(e), ExitCode::Fatal),
    };
    if json {
        let doc = serde_json::json!({
            "version": 1,
            "org": org,
            "snapshots": rows.iter().map(|r| serde_json::json!({
                "snapshot": r.snapshot, "source": r.source, "taken_at": rfc3339(r.taken_at),
                "last_seen_at": rfc3339(r.last_seen_at), "changes": r.changes, "event_id": r.event_id,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("serialises"));
        return ExitCode::Clean;
    }
    if rows.is_empty() {
        println!("no snapshots of {org} yet");
    }
    for r in &rows {
        let what = match r.changes {
            Some(n) => format!("{n} change(s)"),
            None => "first seen".to_string(),
        };
        println!(
            "{:>6}  {:<26} taken {}  last seen {}  {what}",
            r.snapshot,
            r.source,
            rfc3339(r.taken_at),
            rfc3339(r.last_seen_at)
        );
    }
    ExitCode::Clean
}

/// Why a diff could not be shown.
#[derive(Debug, thiserror::Error)]
enum DiffError {
    #[error("database query failed")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Usage(String),
}

pub async fn diff(config_path: &Path, org: &str, source: &str, from: Option<i64>, to: Option<i64>) -> ExitCode {
    let store = match load_config(config_path, false)
        .and_then(|c| check_names(&c, org, Some(source)).and_then(|_| open_store(&c)))
    {
        Ok(s) => s,
        Err(code) => return code,
    };
    let (org_name, source_name) = (org.to_string(), source.to_string());
    let pair = store
        .call(move |c| Ok(pick_pair(c, &org_name, &source_name, from, to)))
        .await;
    let (a, b) = match pair {
        Ok(Ok(p)) => p,
        Ok(Err(DiffError::Usage(m))) => return report(&anyhow::anyhow!(m), ExitCode::Usage),
        Ok(Err(DiffError::Sqlite(e))) => return report(&anyhow::Error::new(e), ExitCode::Fatal),
        Err(e) => return report(&anyhow::Error::new(e), ExitCode::Fatal),
    };
    let parse = |s: &queries::StoredSnapshot| serde_json::from_str::<serde_json::Value>(&s.body);
    let (Ok(old), Ok(new)) = (parse(&a), parse(&b)) else {
        return report(&anyhow::anyhow!("a stored snapshot is not JSON"), ExitCode::Fatal);
    };
    let changes = snapshot::diff(&old, &new);
    println!(
        "{org} {source}: snapshot {} ({}) -> {} ({}), {} change(s)",
        a.id,
        rfc3339(a.taken_at),
        b.id,
        rfc3339(b.taken_at),
        changes.len()
    );
    for c in &changes {
        println!(
            "  {:?} {}  {} -> {}",
            c.op,
            inert(&c.path),
            inert(&c.old.to_string()),
            inert(&c.new.to_string())
        );
    }
    let diff = snapshot::unified_diff(
        &a.body,
        &b.body,
        &format!("{org}/{source}@{}", a.id),
        &format!("{org}/{source}@{}", b.id),
    );
    print!("\n{}", crate::inert::escape_controls_in_lines(&diff));
    ExitCode::Clean
}

/// The two snapshots to compare: `to` (default: the latest) and `from` (default: the one before it).
fn pick_pair(
    c: &rusqlite::Connection,
    org: &str,
    source: &str,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<(queries::StoredSnapshot, queries::StoredSnapshot), DiffError> {
    let owned = |id: i64| -> Result<queries::StoredSnapshot, DiffError> {
        match queries::snapshot_owner(c, id)? {
            Some((o, s)) if o == org && s == source => {
                queries::snapshot_by_id(c, id)?.ok_or_else(|| DiffError::Usage(format!("no snapshot {id}")))
            }
            Some((o, s)) => Err(DiffError::Usage(format!(
                "snapshot {id} belongs to {o}/{s}, not {org}/{source}"
            ))),
            None => Err(DiffError::Usage(format!("no snapshot {id}"))),
        }
    };
    let to_snap = match to {
        Some(id) => owned(id)?,
        None => queries::latest_snapshot(c, org, source)?
            .ok_or_else(|| DiffError::Usage(format!("no snapshots of {org}/{source} yet")))?,
    };
    let from_snap = match from {
        Some(id) => owned(id)?,
        None => queries::snapshot_before(c, org, source, to_snap.id)?
            .ok_or_else(|| DiffError::Usage(format!("snapshot {} is the first of {org}/{source}", to_snap.id)))?,
    };
    Ok((from_snap, to_snap))
}
