//! One audit pass over the selected orgs (SPEC §4–§7). `--once`, the daemon and `demo` all call
//! [`run_pass`].
//!
//! - `fetch`: per org, decide whether Zoho may be called, then read every source (all pages or
//!   nothing) and canonicalise it, ending in one `OrgOutcome`.
//! - `commit`: write that outcome (snapshots, drift, state, alerts, outbox rows) in one transaction,
//!   synchronously on the store's thread.
//! - `report`: the `--json` summary and the exit code it implies.
//!
//! Nothing is sent before it is committed; nothing is committed from a partial fetch.

mod commit;
mod fetch;
mod report;

pub use report::{AlertTotals, OrgReport, PassReport, SourceReport};

pub use crate::states::{OrgState, SourceStatus};

use crate::alert::{self, DeliveryMode, Dispatcher};
use crate::config::{Config, OrgConfig};
use crate::snapshot::Redactor;
use crate::store::queries;
use crate::store::{Store, StoreError};
use crate::time_util::{now_unix, rfc3339};
use crate::zoho::http::RetryPolicy;
use commit::{CommitTarget, OrgAudit};
use futures::StreamExt;
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
    /// The time now, in Unix seconds: the one clock a pass reads, so tests can pin it.
    pub clock: fn() -> i64,
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
            clock: now_unix,
        })
    }

    /// The time now, from [`Context::clock`].
    pub fn now(&self) -> i64 {
        (self.clock)()
    }
}

/// Audits `orgs` (names from the config, in config order), then delivers what is due.
pub async fn run_pass(ctx: &Context, orgs: &[String], delivery: DeliveryMode) -> Result<PassReport, StoreError> {
    let started = ctx.now();
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
        finished_at: rfc3339(ctx.now()),
        exit_code: PassReport::outcome(&orgs),
        orgs,
        alerts: totals,
    })
}

/// Audits one org: fetch, then commit the outcome in one transaction (one trip to the store's thread).
async fn audit_org(ctx: &Context, org: &OrgConfig) -> Result<OrgAudit, StoreError> {
    let outcome = fetch::fetch_org(ctx, org).await?;
    let target = CommitTarget {
        org: org.name.clone(),
        channels: org.channels.clone(),
        deliver: ctx.deliver,
    };
    let now = ctx.now();
    ctx.store
        .call(move |conn| commit::commit_org(conn, &target, outcome, now))
        .await
}
