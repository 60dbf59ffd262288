//! Fetching one org: decide whether Zoho may be called at all, then read every source concurrently,
//! ending in one [`OrgOutcome`] that the commit writes in one transaction.

use super::Context;
use crate::catalog::SourceId;
use crate::config::OrgConfig;
use crate::snapshot::{self, Rules};
use crate::store::queries::{self, OrgRow};
use crate::store::StoreError;
use crate::zoho::session::{refresh_token_for, RefreshToken, SessionDeps};
use crate::zoho::{fetch_source, Session, SessionError, ZohoError};
use serde_json::Value;

/// How a source's fetch ended, before it is committed.
#[derive(Debug)]
pub enum Fetched {
    /// The canonical snapshot document.
    Document(Value),
    Unavailable(String),
    Error(String),
    Skipped(String),
}

/// A needs-reconnect finding to commit.
#[derive(Debug)]
pub struct Reconnect {
    pub reason: String,
    /// The fingerprint of the refresh token that failed: a different token clears the state.
    pub failed_token_fp: String,
}

/// Everything one org's pass found, ready to commit.
#[derive(Debug)]
pub struct OrgOutcome {
    pub sources: Vec<(SourceId, Fetched)>,
    pub reconnect: Option<Reconnect>,
    /// A failure of the org as a whole (its refresh token could not be read).
    pub org_error: Option<String>,
}

impl OrgOutcome {
    /// Every source skipped for `why`.
    fn skipped(org: &OrgConfig, why: &str, reconnect: Option<Reconnect>, org_error: Option<String>) -> OrgOutcome {
        OrgOutcome {
            sources: org
                .sources
                .iter()
                .map(|s| (*s, Fetched::Skipped(why.to_string())))
                .collect(),
            reconnect,
            org_error,
        }
    }
}

/// Fetches every source of `org`, or finds why Zoho must not be called.
pub async fn fetch_org(ctx: &Context, org: &OrgConfig) -> Result<OrgOutcome, StoreError> {
    let name = org.name.clone();
    let row = ctx.store.call(move |c| Ok(queries::org(c, &name)?)).await?;
    match usable_refresh_token(ctx, org, &row).await? {
        Ok(refresh) => fetch_sources(ctx, org, &row, refresh).await,
        Err(outcome) => Ok(outcome),
    }
}

/// The refresh token to use, or the outcome of an org that must not be called.
async fn usable_refresh_token(
    ctx: &Context,
    org: &OrgConfig,
    row: &OrgRow,
) -> Result<Result<RefreshToken, OrgOutcome>, StoreError> {
    let refresh = match refresh_token_for(org, row, &ctx.redactor) {
        Ok(Some(r)) => r,
        Ok(None) => {
            let reconnect = Reconnect {
                reason: ZohoError::NotConnected.reconnect_reason(),
                failed_token_fp: "none".into(),
            };
            return Ok(Err(OrgOutcome::skipped(org, "needs reconnect", Some(reconnect), None)));
        }
        Err(message) => {
            let why = format!("refresh token unavailable: {message}");
            return Ok(Err(OrgOutcome::skipped(org, &why, None, Some(why.clone()))));
        }
    };
    if row.needs_reconnect {
        if row.failed_token_fp.as_deref() == Some(refresh.fingerprint.as_str()) {
            // The same token that failed: do not call Zoho again until someone reconnects.
            let reconnect = Reconnect {
                reason: row.reconnect_reason.clone().unwrap_or_else(|| "needs reconnect".into()),
                failed_token_fp: refresh.fingerprint.clone(),
            };
            return Ok(Err(OrgOutcome::skipped(org, "needs reconnect", Some(reconnect), None)));
        }
        let name = org.name.clone();
        ctx.store
            .call(move |c| Ok(queries::clear_needs_reconnect(c, &name)?))
            .await?;
        tracing::info!(org = %org.name, "refresh token changed; clearing needs-reconnect");
    }
    Ok(Ok(refresh))
}

/// Reads every source concurrently. The session caps requests in flight, mints one token for all,
/// and turns every call after a pass-ending answer (dead grant, daily limit) into that answer.
async fn fetch_sources(
    ctx: &Context,
    org: &OrgConfig,
    row: &OrgRow,
    refresh: RefreshToken,
) -> Result<OrgOutcome, StoreError> {
    let deps = SessionDeps {
        http: &ctx.http,
        store: &ctx.store,
        redactor: &ctx.redactor,
        retry: ctx.retry,
    };
    let session = Session::new(org, deps, refresh.clone(), row);
    let results = futures::future::join_all(org.sources.iter().map(|&source| {
        let session = &session;
        async move { (source, fetch_source(session, source).await) }
    }))
    .await;
    let mut outcome = OrgOutcome {
        sources: Vec::new(),
        reconnect: None,
        org_error: None,
    };
    for (source, result) in results {
        let fetched = match result {
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
                if e.needs_reconnect() {
                    outcome.reconnect = Some(Reconnect {
                        reason: e.reconnect_reason(),
                        failed_token_fp: refresh.fingerprint.clone(),
                    });
                }
                classify_failure(&e)
            }
        };
        outcome.sources.push((source, fetched));
    }
    Ok(outcome)
}

/// What a Zoho failure makes of a source.
fn classify_failure(e: &ZohoError) -> Fetched {
    match e {
        e if e.needs_reconnect() => Fetched::Skipped(e.to_string()),
        ZohoError::Unavailable { .. } => Fetched::Unavailable(e.to_string()),
        // Throttling and the token budget: not this source's failure; it was not (or no longer) asked.
        ZohoError::Throttled { .. } | ZohoError::BackingOff { .. } => Fetched::Skipped(e.to_string()),
        _ => Fetched::Error(e.to_string()),
    }
}
