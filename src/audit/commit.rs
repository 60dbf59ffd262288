//! Writing one org's pass: every snapshot, drift, state change, alert and outbox row in one
//! transaction (SPEC §5), synchronously, on the store's thread. Nothing is sent from here: delivery
//! reads the outbox only after this has committed.

use super::fetch::{Fetched, OrgOutcome, Reconnect};
use super::report::{OrgReport, SourceReport};
use crate::alert::{AlertKind, AlertPayload, SourceDrift};
use crate::catalog::SourceId;
use crate::snapshot;
use crate::states::{OrgState, SourceStatus};
use crate::store::queries::{self, OutboxStatus, SourceOutcome};
use crate::store::StoreError;
use crate::time_util::rfc3339;
use rusqlite::{Connection, Transaction};
use serde_json::Value;

/// Who the pass is for, owned so that it crosses to the store's thread once.
#[derive(Debug, Clone)]
pub struct CommitTarget {
    pub org: String,
    /// The channels this org's alerts go to.
    pub channels: Vec<String>,
    /// `false` for `--no-notify`: alerts are recorded as suppressed.
    pub deliver: bool,
}

/// What committing one org produced.
#[derive(Debug)]
pub struct OrgAudit {
    pub report: OrgReport,
    /// Outbox rows recorded as suppressed (`--no-notify`).
    pub suppressed: usize,
}

/// Commits `outcome` at `now` in one transaction.
pub fn commit_org(
    conn: &mut Connection,
    target: &CommitTarget,
    outcome: OrgOutcome,
    now: i64,
) -> Result<OrgAudit, StoreError> {
    let tx = conn.transaction()?;
    queries::org(&tx, &target.org)?;
    let mut sources = Vec::new();
    let mut drifts = Vec::new();
    for (source, fetched) in outcome.sources {
        let (report, drift) = record_source(&tx, &target.org, source, fetched, now)?;
        sources.push(report);
        drifts.extend(drift);
    }
    let (state, reason, mut alerts) =
        settle_org(&tx, &target.org, outcome.reconnect, outcome.org_error, &sources, now)?;
    if !drifts.is_empty() {
        // The alert carries what any receiver can take; the drift rows keep every change.
        let bounded = drifts.iter().map(|d| d.bounded(&target.org)).collect();
        alerts.push(AlertPayload::new(
            AlertKind::Drift,
            &target.org,
            rfc3339(now),
            bounded,
            None,
        ));
    }
    let suppressed = record_alerts(&tx, target, &alerts, &drifts, now)?;
    tx.commit()?;
    let report = OrgReport {
        org: target.org.clone(),
        state,
        reason,
        sources,
    };
    Ok(OrgAudit { report, suppressed })
}

/// Records one source's outcome; a changed document also yields its drift.
fn record_source(
    tx: &Transaction,
    org: &str,
    source: SourceId,
    fetched: Fetched,
    now: i64,
) -> Result<(SourceReport, Option<SourceDrift>), StoreError> {
    let sid = source.as_str();
    let (status, why) = match fetched {
        Fetched::Document(doc) => return record_document(tx, org, sid, &doc, now),
        Fetched::Unavailable(why) => (SourceStatus::Unavailable, why),
        Fetched::Error(why) => (SourceStatus::Error, why),
        Fetched::Skipped(why) => (SourceStatus::Skipped, why),
    };
    let outcome = SourceOutcome {
        org,
        source: sid,
        status,
        error: Some(&why),
        snapshot_id: None,
        at: now,
    };
    queries::record_source_state(tx, &outcome)?;
    Ok((SourceReport::unread(sid, status, why), None))
}

/// Records a document: seen again, a baseline, or a new snapshot compared with the previous one.
fn record_document(
    tx: &Transaction,
    org: &str,
    sid: &str,
    doc: &Value,
    now: i64,
) -> Result<(SourceReport, Option<SourceDrift>), StoreError> {
    let text = snapshot::to_canonical_text(doc);
    let hash = snapshot::content_hash(&text);
    let previous = queries::latest_snapshot(tx, org, sid)?;
    let (status, snapshot_id, drift) = match &previous {
        Some(prev) if prev.hash == hash => {
            queries::touch_snapshot(tx, prev.id, now)?;
            (SourceStatus::Ok, prev.id, None)
        }
        Some(prev) => {
            let id = queries::insert_snapshot(tx, org, sid, &hash, &text, now)?;
            let drift = drift_between(org, sid, prev, id, &text, doc)?;
            let status = if drift.is_some() {
                SourceStatus::Drift
            } else {
                SourceStatus::Ok
            };
            (status, id, drift)
        }
        None => (
            SourceStatus::Baseline,
            queries::insert_snapshot(tx, org, sid, &hash, &text, now)?,
            None,
        ),
    };
    let outcome = SourceOutcome {
        org,
        source: sid,
        status,
        error: None,
        snapshot_id: Some(snapshot_id),
        at: now,
    };
    queries::record_source_state(tx, &outcome)?;
    let report = SourceReport {
        source: sid.to_string(),
        status,
        changes: drift.as_ref().map_or(0, |d| d.changes.len()),
        snapshot: Some(snapshot_id),
        previous_snapshot: previous.filter(|p| p.id != snapshot_id).map(|p| p.id),
        error: None,
    };
    Ok((report, drift))
}

/// The drift from the stored snapshot `prev` to the new one (`id`, `text`, `doc`), if anything changed.
fn drift_between(
    org: &str,
    sid: &str,
    prev: &queries::StoredSnapshot,
    id: i64,
    text: &str,
    doc: &Value,
) -> Result<Option<SourceDrift>, StoreError> {
    let old: Value = serde_json::from_str(&prev.body)
        .map_err(|e| StoreError::Corrupt(format!("snapshot {} is not JSON: {e}", prev.id)))?;
    let changes = snapshot::diff(&old, doc);
    if changes.is_empty() {
        return Ok(None);
    }
    let diff = snapshot::unified_diff(
        &prev.body,
        text,
        &format!("{org}/{sid}@{}", prev.id),
        &format!("{org}/{sid}@{id}"),
    );
    Ok(Some(SourceDrift {
        source: sid.to_string(),
        from_snapshot: prev.id,
        to_snapshot: id,
        changes,
        changes_omitted: 0,
        diff,
    }))
}

/// Settles the org's state from its sources, and the reconnect or recovered alert it calls for.
fn settle_org(
    tx: &Transaction,
    org: &str,
    reconnect: Option<Reconnect>,
    org_error: Option<String>,
    sources: &[SourceReport],
    now: i64,
) -> Result<(OrgState, Option<String>, Vec<AlertPayload>), StoreError> {
    let mut alerts = Vec::new();
    // `recovered` needs proof that the org is readable again: a document, not just 404s.
    let read_a_document = sources.iter().any(|s| {
        matches!(
            s.status,
            SourceStatus::Baseline | SourceStatus::Ok | SourceStatus::Drift
        )
    });
    if let Some(r) = &reconnect {
        if queries::mark_needs_reconnect(tx, org, &r.reason, &r.failed_token_fp)? {
            let reason = Some(r.reason.clone());
            alerts.push(AlertPayload::new(
                AlertKind::ReconnectRequired,
                org,
                rfc3339(now),
                Vec::new(),
                reason,
            ));
        }
    } else if read_a_document && queries::take_recovered_pending(tx, org)? {
        alerts.push(AlertPayload::new(
            AlertKind::Recovered,
            org,
            rfc3339(now),
            Vec::new(),
            None,
        ));
    }
    let state = OrgState::of(reconnect.is_some(), sources.iter().map(|s| s.status));
    let reason = match state {
        OrgState::NeedsReconnect => reconnect.map(|r| r.reason),
        OrgState::Error => org_error.or_else(|| {
            sources
                .iter()
                .find(|s| s.status.is_incomplete())
                .and_then(|s| s.error.clone())
        }),
        OrgState::Ok => None,
    };
    Ok((state, reason, alerts))
}

/// Records each alert with one outbox row per channel, and the drift rows of the drift alert.
/// Returns how many rows were recorded as suppressed.
fn record_alerts(
    tx: &Transaction,
    target: &CommitTarget,
    alerts: &[AlertPayload],
    drifts: &[SourceDrift],
    now: i64,
) -> Result<usize, StoreError> {
    let status = if target.deliver {
        OutboxStatus::Pending
    } else {
        OutboxStatus::Suppressed
    };
    let mut suppressed = 0;
    for alert in alerts {
        let alert_id = queries::insert_alert(
            tx,
            &alert.event_id,
            &target.org,
            alert.kind.as_str(),
            now,
            &alert.to_json(),
        )?;
        if alert.kind == AlertKind::Drift {
            record_drifts(tx, &target.org, drifts, alert_id, now)?;
        }
        for channel in &target.channels {
            queries::enqueue(tx, alert_id, channel, status, now)?;
        }
        if !target.deliver {
            suppressed += target.channels.len();
        }
        tracing::info!(org = %target.org, kind = alert.kind.as_str(), event_id = %alert.event_id, changes = alert.change_count(), "alert recorded");
    }
    Ok(suppressed)
}

/// The drift rows of one pass, each with every change (the alert may carry fewer).
fn record_drifts(
    tx: &Transaction,
    org: &str,
    drifts: &[SourceDrift],
    alert_id: i64,
    now: i64,
) -> Result<(), StoreError> {
    for d in drifts {
        let changes_json = serde_json::to_string(&d.changes).expect("changes serialise");
        let row = queries::NewDrift {
            org,
            source: &d.source,
            from_snapshot: d.from_snapshot,
            to_snapshot: d.to_snapshot,
            changes_json: &changes_json,
            diff: &d.diff,
            detected_at: now,
            alert_id,
        };
        queries::insert_drift(tx, &row)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn target(deliver: bool) -> CommitTarget {
        CommitTarget {
            org: "acme".into(),
            channels: vec!["hook".into(), "mail".into()],
            deliver,
        }
    }

    fn document(host: &str) -> OrgOutcome {
        OrgOutcome {
            sources: vec![(
                SourceId::DeskReplyAddresses,
                Fetched::Document(json!({"reply_addresses": [{"id": "1", "smtpDetails": {"host": host}}]})),
            )],
            reconnect: None,
            org_error: None,
        }
    }

    fn commit(store: &Store, target: &CommitTarget, outcome: OrgOutcome, now: i64) -> OrgAudit {
        store.call_blocking(|c| commit_org(c, target, outcome, now)).unwrap()
    }

    fn count(store: &Store, sql: &str) -> i64 {
        store
            .call_blocking(|c| Ok(c.query_row(sql, [], |r| r.get(0))?))
            .unwrap()
    }

    #[test]
    fn a_baseline_then_the_same_content_then_a_change_with_its_alert() {
        let store = Store::in_memory().unwrap();
        let first = commit(&store, &target(true), document("smtp.zoho.com"), NOW);
        assert_eq!(first.report.sources[0].status, SourceStatus::Baseline);
        assert_eq!(first.report.state, OrgState::Ok);

        let same = commit(&store, &target(true), document("smtp.zoho.com"), NOW + 60);
        assert_eq!(same.report.sources[0].status, SourceStatus::Ok);
        assert_eq!(same.report.sources[0].snapshot, first.report.sources[0].snapshot);
        assert_eq!(same.report.sources[0].previous_snapshot, None);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM snapshots"), 1, "stored once");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM alerts"), 0);

        let changed = commit(&store, &target(true), document("mail.attacker.example"), NOW + 120);
        let source = &changed.report.sources[0];
        assert_eq!((source.status, source.changes), (SourceStatus::Drift, 1));
        assert_eq!(source.previous_snapshot, first.report.sources[0].snapshot);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM drifts"), 1);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM alerts WHERE kind = 'drift'"), 1);
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM outbox WHERE status = 'pending'"),
            2,
            "one row per channel"
        );
        assert_eq!(
            count(&store, "SELECT last_change_at FROM source_state"),
            NOW + 120,
            "the change moved last_change_at"
        );
    }

    #[test]
    fn without_delivery_the_alert_is_recorded_as_suppressed() {
        let store = Store::in_memory().unwrap();
        commit(&store, &target(false), document("a"), NOW);
        let changed = commit(&store, &target(false), document("b"), NOW + 1);
        assert_eq!(changed.suppressed, 2);
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM outbox WHERE status = 'suppressed'"),
            2
        );
    }

    #[test]
    fn a_failed_source_records_no_snapshot_and_makes_the_org_an_error() {
        let store = Store::in_memory().unwrap();
        let outcome = OrgOutcome {
            sources: vec![
                (
                    SourceId::DeskReplyAddresses,
                    Fetched::Error("GET /x answered HTTP 503".into()),
                ),
                (SourceId::CrmMailConfig, Fetched::Unavailable("not available".into())),
            ],
            reconnect: None,
            org_error: None,
        };
        let audit = commit(&store, &target(true), outcome, NOW);
        assert_eq!(audit.report.state, OrgState::Error);
        assert_eq!(audit.report.reason.as_deref(), Some("GET /x answered HTTP 503"));
        assert_eq!(count(&store, "SELECT COUNT(*) FROM snapshots"), 0);
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM source_state WHERE last_success_at IS NULL"
            ),
            2
        );
    }

    #[test]
    fn needs_reconnect_is_alerted_once_and_recovered_after_a_document() {
        let store = Store::in_memory().unwrap();
        let dead = || OrgOutcome {
            sources: vec![(SourceId::DeskReplyAddresses, Fetched::Skipped("needs reconnect".into()))],
            reconnect: Some(Reconnect {
                reason: "refresh token refused: invalid_code".into(),
                failed_token_fp: "fp1".into(),
            }),
            org_error: None,
        };
        for _ in 0..2 {
            let audit = commit(&store, &target(true), dead(), NOW);
            assert_eq!(audit.report.state, OrgState::NeedsReconnect);
            assert_eq!(
                audit.report.reason.as_deref(),
                Some("refresh token refused: invalid_code")
            );
        }
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM alerts WHERE kind = 'reconnect_required'"),
            1
        );
        store
            .call_blocking(|c| Ok(queries::clear_needs_reconnect(c, "acme")?))
            .unwrap();
        let back = commit(&store, &target(true), document("a"), NOW + 60);
        assert_eq!(back.report.state, OrgState::Ok);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM alerts WHERE kind = 'recovered'"), 1);
    }
}
