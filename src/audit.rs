//! One audit pass over the selected orgs (SPEC §4–§7). `--once`, the daemon and `demo` all call
//! [`run_pass`].
//!
//! Per org: fetch every source (all pages or nothing), canonicalise, then write every snapshot, drift,
//! state change, alert and outbox row of that org in one transaction. Nothing is sent before it is
//! committed; nothing is committed from a partial fetch.

use crate::alert::{self, AlertKind, AlertPayload, DeliveryMode, Dispatcher, SourceDrift};
use crate::catalog::SourceId;
use crate::config::{Config, OrgConfig};
use crate::exit::ExitCode;
use crate::snapshot::{self, Redactor, Rules};
pub use crate::states::{OrgState, SourceStatus};
use crate::store::queries::{self, OutboxStatus};
use crate::store::{Store, StoreError};
use crate::time_util::{now_unix, rfc3339};
use crate::zoho::http::RetryPolicy;
use crate::zoho::session::{refresh_token_for, SessionDeps};
use crate::zoho::{fetch_source, Session, SessionError, ZohoError};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// `--once` delivers for at most this long before it exits; the rest stays queued.
pub const ONCE_DELIVERY_BUDGET: Duration = Duration::from_secs(30);

/// Everything a pass needs.
pub struct Context {
    pub config: Arc<Config>,
    pub store: Store,
    pub http: reqwest::Client,
    /// Fingerprints credentials and refresh tokens with the database's key.
    pub redactor: Redactor,
    pub dispatcher: Dispatcher,
    /// Whether this run delivers alerts: `false` for `--no-notify` (recorded as suppressed, nothing sent).
    pub deliver: bool,
    pub retry: RetryPolicy,
}

/// A context could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Channel(#[from] alert::ChannelSetupError),
}

impl Context {
    pub async fn new(config: Arc<Config>, store: Store, deliver: bool) -> Result<Context, ContextError> {
        let key = store.call(|c| Ok(queries::redaction_key(c)?)).await?;
        let dispatcher = Dispatcher::new(&config)?;
        Ok(Context {
            http: crate::zoho::http::client(config.daemon.http_timeout),
            config,
            store,
            redactor: Redactor::new(key),
            dispatcher,
            deliver,
            retry: RetryPolicy::default(),
        })
    }
}

/// One source in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    pub source: String,
    pub status: SourceStatus,
    pub changes: usize,
    pub snapshot: Option<i64>,
    pub previous_snapshot: Option<i64>,
    pub error: Option<String>,
}

/// One org in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct OrgReport {
    pub org: String,
    pub state: OrgState,
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

/// Audits `orgs` (names from the config, in config order), then delivers what is due.
pub async fn run_pass(ctx: &Context, orgs: &[String], delivery: DeliveryMode) -> Result<PassReport, StoreError> {
    let started = now_unix();
    let selected: Vec<&OrgConfig> = ctx.config.orgs.iter().filter(|o| orgs.contains(&o.name)).collect();
    // The futures are built before the stream: a closure inside the stream's type would make this
    // future's `Send` unprovable (rust-lang/rust#102211), and the daemon spawns it.
    let audits: Vec<_> = selected
        .into_iter()
        .enumerate()
        .map(|(i, org)| async move { audit_org(ctx, org).await.map(|r| (i, r)) })
        .collect();
    let mut results: Vec<(usize, OrgAudit)> = futures::stream::iter(audits)
        .buffer_unordered(ctx.config.daemon.concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    results.sort_by_key(|(i, _)| *i);

    let mut totals = AlertTotals {
        suppressed: results.iter().map(|(_, r)| r.suppressed).sum(),
        ..Default::default()
    };
    if ctx.deliver {
        let deadline = tokio::time::Instant::now() + ONCE_DELIVERY_BUDGET;
        totals.delivered = alert::deliver_due(&ctx.store, &ctx.dispatcher, delivery, deadline)
            .await?
            .delivered;
    }
    let backlog = ctx.store.call(|c| Ok(queries::outbox_backlog(c)?)).await?;
    totals.pending = backlog.iter().map(|b| b.pending).sum();
    totals.dead = backlog.iter().map(|b| b.dead).sum();

    let orgs: Vec<OrgReport> = results.into_iter().map(|(_, r)| r.report).collect();
    Ok(PassReport {
        version: 1,
        started_at: rfc3339(started),
        finished_at: rfc3339(now_unix()),
        exit_code: PassReport::outcome(&orgs),
        orgs,
        alerts: totals,
    })
}

/// What auditing one org produced.
struct OrgAudit {
    report: OrgReport,
    suppressed: usize,
}

/// How a source's fetch ended, before it is committed.
enum Fetched {
    Document(Value),
    Unavailable(String),
    Error(String),
    Skipped(String),
}

/// A needs-reconnect finding to commit.
struct Reconnect {
    reason: String,
    failed_token_fp: String,
}

async fn audit_org(ctx: &Context, org: &OrgConfig) -> Result<OrgAudit, StoreError> {
    let name = org.name.clone();
    let row = ctx.store.call(move |c| Ok(queries::org(c, &name)?)).await?;
    let skip_all = |why: &str| {
        org.sources
            .iter()
            .map(|s| (*s, Fetched::Skipped(why.to_string())))
            .collect::<Vec<_>>()
    };

    let refresh = match refresh_token_for(org, &row, &ctx.redactor) {
        Ok(r) => r,
        Err(message) => {
            let why = format!("refresh token unavailable: {message}");
            return commit(ctx, org, skip_all(&why), None, Some(why)).await;
        }
    };
    let Some(refresh) = refresh else {
        let reconnect = Reconnect {
            reason: ZohoError::NotConnected.reconnect_reason(),
            failed_token_fp: "none".into(),
        };
        return commit(ctx, org, skip_all("needs reconnect"), Some(reconnect), None).await;
    };
    if row.needs_reconnect {
        if row.failed_token_fp.as_deref() == Some(refresh.fingerprint.as_str()) {
            // The same token that failed: do not call Zoho again until someone reconnects.
            let reconnect = Reconnect {
                reason: row.reconnect_reason.clone().unwrap_or_else(|| "needs reconnect".into()),
                failed_token_fp: refresh.fingerprint.clone(),
            };
            return commit(ctx, org, skip_all("needs reconnect"), Some(reconnect), None).await;
        }
        let name = org.name.clone();
        ctx.store
            .call(move |c| Ok(queries::clear_needs_reconnect(c, &name)?))
            .await?;
        tracing::info!(org = %org.name, "refresh token changed; clearing needs-reconnect");
    }

    let deps = SessionDeps {
        http: &ctx.http,
        store: &ctx.store,
        redactor: &ctx.redactor,
        retry: ctx.retry,
    };
    let session = Session::new(org, deps, refresh.clone(), &row);
    // Sources are fetched concurrently; the session caps requests in flight, mints one token for all,
    // and turns every call after a pass-ending answer (dead grant, daily limit) into that answer.
    let results = futures::future::join_all(org.sources.iter().map(|&source| {
        let session = &session;
        async move { (source, fetch_source(session, source).await) }
    }))
    .await;
    let mut fetched = Vec::new();
    let mut reconnect = None;
    for (source, result) in results {
        let outcome = match result {
            Ok(doc) => {
                let rules = Rules {
                    source,
                    ignore: &org.ignore,
                    redactor: &ctx.redactor,
                };
                Fetched::Document(snapshot::canonicalize(&doc, &rules))
            }
            Err(SessionError::Store(e)) => return Err(e),
            Err(SessionError::Zoho(e)) => {
                tracing::warn!(org = %org.name, %source, error = %e, "source not audited");
                match &e {
                    e if e.needs_reconnect() => {
                        reconnect = Some(Reconnect {
                            reason: e.reconnect_reason(),
                            failed_token_fp: refresh.fingerprint.clone(),
                        });
                        Fetched::Skipped(e.to_string())
                    }
                    ZohoError::Unavailable { .. } => Fetched::Unavailable(e.to_string()),
                    // Throttling and the token budget: not this source's failure; it was not (or no
                    // longer) asked.
                    ZohoError::Throttled { .. } | ZohoError::BackingOff { .. } => Fetched::Skipped(e.to_string()),
                    _ => Fetched::Error(e.to_string()),
                }
            }
        };
        fetched.push((source, outcome));
    }
    commit(ctx, org, fetched, reconnect, None).await
}

/// Writes an org's pass in one transaction and builds its report.
async fn commit(
    ctx: &Context,
    org: &OrgConfig,
    fetched: Vec<(SourceId, Fetched)>,
    reconnect: Option<Reconnect>,
    org_error: Option<String>,
) -> Result<OrgAudit, StoreError> {
    let org_name = org.name.clone();
    let channels = org.channels.clone();
    let deliver = ctx.deliver;
    ctx.store
        .call(move |conn| {
            let now = now_unix();
            let tx = conn.transaction()?;
            queries::org(&tx, &org_name)?;
            let mut sources = Vec::new();
            let mut drifts = Vec::new();
            // `recovered` needs proof that the org is readable again: a document, not just 404s.
            let mut any_success = false;
            for (source, outcome) in fetched {
                let sid = source.as_str();
                let report = match outcome {
                    Fetched::Document(doc) => {
                        any_success = true;
                        let text = snapshot::to_canonical_text(&doc);
                        let hash = snapshot::content_hash(&text);
                        let previous = queries::latest_snapshot(&tx, &org_name, sid)?;
                        match previous {
                            Some(prev) if prev.hash == hash => {
                                queries::touch_snapshot(&tx, prev.id, now)?;
                                queries::record_source_state(&tx, &queries::SourceOutcome { org: &org_name, source: sid, status: SourceStatus::Ok, error: None, snapshot_id: Some(prev.id), at: now })?;
                                source_report(sid, SourceStatus::Ok, 0, Some(prev.id), None, None)
                            }
                            Some(prev) => {
                                let id = queries::insert_snapshot(&tx, &org_name, sid, &hash, &text, now)?;
                                let old: Value = serde_json::from_str(&prev.body)
                                    .map_err(|e| StoreError::Corrupt(format!("snapshot {} is not JSON: {e}", prev.id)))?;
                                let changes = snapshot::diff(&old, &doc);
                                let status = if changes.is_empty() { SourceStatus::Ok } else { SourceStatus::Drift };
                                queries::record_source_state(&tx, &queries::SourceOutcome { org: &org_name, source: sid, status, error: None, snapshot_id: Some(id), at: now })?;
                                let n = changes.len();
                                if n > 0 {
                                    let diff = snapshot::unified_diff(
                                        &prev.body,
                                        &text,
                                        &format!("{org_name}/{sid}@{}", prev.id),
                                        &format!("{org_name}/{sid}@{id}"),
                                    );
                                    drifts.push(SourceDrift { source: sid.to_string(), from_snapshot: prev.id, to_snapshot: id, changes, changes_omitted: 0, diff });
                                }
                                source_report(sid, status, n, Some(id), Some(prev.id), None)
                            }
                            None => {
                                let id = queries::insert_snapshot(&tx, &org_name, sid, &hash, &text, now)?;
                                queries::record_source_state(&tx, &queries::SourceOutcome { org: &org_name, source: sid, status: SourceStatus::Baseline, error: None, snapshot_id: Some(id), at: now })?;
                                source_report(sid, SourceStatus::Baseline, 0, Some(id), None, None)
                            }
                        }
                    }
                    Fetched::Unavailable(why) => {
                        queries::record_source_state(&tx, &queries::SourceOutcome { org: &org_name, source: sid, status: SourceStatus::Unavailable, error: Some(&why), snapshot_id: None, at: now })?;
                        source_report(sid, SourceStatus::Unavailable, 0, None, None, Some(why))
                    }
                    Fetched::Error(why) => {
                        queries::record_source_state(&tx, &queries::SourceOutcome { org: &org_name, source: sid, status: SourceStatus::Error, error: Some(&why), snapshot_id: None, at: now })?;
                        source_report(sid, SourceStatus::Error, 0, None, None, Some(why))
                    }
                    Fetched::Skipped(why) => {
                        queries::record_source_state(&tx, &queries::SourceOutcome { org: &org_name, source: sid, status: SourceStatus::Skipped, error: Some(&why), snapshot_id: None, at: now })?;
                        source_report(sid, SourceStatus::Skipped, 0, None, None, Some(why))
                    }
                };
                sources.push(report);
            }

            let detected_at = rfc3339(now);
            let mut alerts: Vec<AlertPayload> = Vec::new();
            if let Some(r) = &reconnect {
                if queries::mark_needs_reconnect(&tx, &org_name, &r.reason, &r.failed_token_fp)? {
                    alerts.push(AlertPayload::new(AlertKind::ReconnectRequired, &org_name, detected_at.clone(), Vec::new(), Some(r.reason.clone())));
                }
            } else if any_success && queries::take_recovered_pending(&tx, &org_name)? {
                alerts.push(AlertPayload::new(AlertKind::Recovered, &org_name, detected_at.clone(), Vec::new(), None));
            }
            let state = OrgState::of(reconnect.is_some(), sources.iter().map(|s| s.status));
            let reason = match state {
                OrgState::NeedsReconnect => reconnect.as_ref().map(|r| r.reason.clone()),
                OrgState::Error => org_error.or_else(|| sources.iter().find(|s| s.status.is_incomplete()).and_then(|s| s.error.clone())),
                OrgState::Ok => None,
            };
            let drift_alert = if drifts.is_empty() {
                None
            } else {
                // The alert carries what any receiver can take; the drift rows keep every change.
                let bounded = drifts.iter().map(|d| d.bounded(&org_name)).collect();
                alerts.push(AlertPayload::new(AlertKind::Drift, &org_name, detected_at.clone(), bounded, None));
                Some(alerts.len() - 1)
            };

            let mut suppressed = 0;
            for (i, alert) in alerts.iter().enumerate() {
                let json = alert.to_json();
                let alert_id = queries::insert_alert(&tx, &alert.event_id, &org_name, alert.kind.as_str(), now, &json)?;
                if drift_alert == Some(i) {
                    for d in &drifts {
                        let changes_json = serde_json::to_string(&d.changes).expect("changes serialise");
                        queries::insert_drift(
                            &tx,
                            &queries::NewDrift {
                                org: &org_name,
                                source: &d.source,
                                from_snapshot: d.from_snapshot,
                                to_snapshot: d.to_snapshot,
                                changes_json: &changes_json,
                                diff: &d.diff,
                                detected_at: now,
                                alert_id,
                            },
                        )?;
                    }
                }
                let status = if deliver { OutboxStatus::Pending } else { OutboxStatus::Suppressed };
                for channel in &channels {
                    queries::enqueue(&tx, alert_id, channel, status, now)?;
                    if !deliver {
                        suppressed += 1;
                    }
                }
                tracing::info!(org = %org_name, kind = alert.kind.as_str(), event_id = %alert.event_id, changes = alert.change_count(), "alert recorded");
            }
            tx.commit()?;
            Ok(OrgAudit { report: OrgReport { org: org_name, state, reason, sources }, suppressed })
        })
        .await
}

fn source_report(
    source: &str,
    status: SourceStatus,
    changes: usize,
    snapshot: Option<i64>,
    previous: Option<i64>,
    error: Option<String>,
) -> SourceReport {
    SourceReport {
        source: source.to_string(),
        status,
        changes,
        snapshot,
        previous_snapshot: previous,
        error,
    }
}
