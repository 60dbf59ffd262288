//! One org's conversation with Zoho during one audit: its refresh token, a cached or fresh access
//! token (minted once even when several sources ask at the same moment), the API domain, the Desk org
//! id, a cap on requests in flight, and the refresh-once-and-retry rule for 401s.

use super::http::{get_json, ApiRequest, RetryPolicy};
use super::{oauth, ZohoError};
use crate::config::OrgConfig;
use crate::dc::Dc;
use crate::secret::Secret;
use crate::snapshot::Redactor;
use crate::store::{queries, Store, StoreError};
use crate::time_util::{now_unix, rfc3339};
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

/// What a session needs from its surroundings.
#[derive(Clone, Copy)]
pub struct SessionDeps<'a> {
    pub http: &'a reqwest::Client,
    pub store: &'a Store,
    pub redactor: &'a Redactor,
    pub retry: RetryPolicy,
}

/// The refresh token in use and its fingerprint (which is what needs-reconnect is tied to).
#[derive(Clone)]
pub struct RefreshToken {
    pub token: Secret,
    pub fingerprint: String,
}

/// Which refresh token an org uses: one stored by `auditd connect` wins over the config's.
pub fn refresh_token_for(
    org: &OrgConfig,
    row: &queries::OrgRow,
    redactor: &Redactor,
) -> Result<Option<RefreshToken>, String> {
    let token = match (&row.stored_refresh_token, &org.refresh_token) {
        (Some(stored), _) => stored.clone(),
        (None, Some(configured)) => configured.resolve()?,
        (None, None) => return Ok(None),
    };
    Ok(Some(RefreshToken {
        fingerprint: fingerprint(redactor, &token),
        token,
    }))
}

/// The keyed fingerprint of a refresh token (never the token itself) as stored with needs-reconnect.
pub fn fingerprint(redactor: &Redactor, token: &Secret) -> String {
    redactor.fingerprint(&Value::String(token.expose().to_string()))
}

/// SPEC §7: the org's own `api_domain` wins; otherwise the token response's, only if it is a Zoho API
/// host of a data centre (sandbox included); otherwise the DC table. The token never goes anywhere else.
pub fn choose_api_domain(org: &OrgConfig, from_token: Option<&str>) -> Result<String, ZohoError> {
    if let Some(fixed) = &org.api_domain_override {
        return Ok(fixed.clone());
    }
    match from_token {
        Some(d) if Dc::is_known_api_domain(d) => Ok(d.trim_end_matches('/').to_string()),
        Some(d) => Err(ZohoError::ApiDomainRefused(crate::inert::truncate_chars(d, 200))),
        None => Ok(org.dc.api_domain().to_string()),
    }
}

/// A failure while talking to Zoho, or while recording what it said.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Zoho(#[from] ZohoError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a request goes: the CRM API domain is known only once a token names it.
pub enum Target<'p> {
    /// A path under the CRM API domain (`/crm/v8/...`).
    Crm(&'p str),
    /// A path under the Desk base URL (`/api/v1/...`), with the `orgId` header.
    Desk(&'p str),
    /// A Desk path that needs no `orgId` (`/api/v1/organizations`).
    DeskWithoutOrg(&'p str),
}

/// The access token and what came with it.
struct TokenState {
    access: Option<Secret>,
    /// Where CRM requests go; an error when the token response named a host that is not Zoho's
    /// (Desk requests, which never go there, carry on).
    api_domain: Result<String, ZohoError>,
    /// A 401 was already answered with a fresh token in this session: another 401 is final.
    renewed_after_rejection: bool,
    /// The refresh failed in this session: every source gets that answer, and the token endpoint is
    /// asked once per pass, not once per source.
    mint_failure: Option<ZohoError>,
}

/// An org's session. Shared by the org's concurrent source fetches.
pub struct Session<'a> {
    pub org: &'a OrgConfig,
    deps: SessionDeps<'a>,
    refresh: RefreshToken,
    token: Mutex<TokenState>,
    /// Zoho allows 5 to 25 concurrent calls per org depending on edition; stay well below.
    in_flight: Semaphore,
    /// Discovered once per session; a failure is remembered too, so three Desk sources ask once.
    desk_org_id: Mutex<Option<Result<String, ZohoError>>>,
    /// Set by an answer that makes every further call of this pass pointless (a dead grant, a daily
    /// limit, throttling): later requests fail with it at once instead of asking Zoho again.
    stopped: std::sync::Mutex<Option<ZohoError>>,
}

impl<'a> Session<'a> {
    /// Starts a session with a known refresh token; reuses a cached access token when it has time left.
    pub fn new(org: &'a OrgConfig, deps: SessionDeps<'a>, refresh: RefreshToken, row: &queries::OrgRow) -> Session<'a> {
        let now = now_unix();
        let cached = match (
            &row.access_token,
            row.access_token_expires_at,
            &row.access_token_source_fp,
        ) {
            (Some(t), Some(exp), Some(fp)) if *fp == refresh.fingerprint && exp > now + oauth::EXPIRY_MARGIN_SECS => {
                Some(t.clone())
            }
            _ => None,
        };
        let api_domain = org
            .api_domain_override
            .clone()
            .or_else(|| cached.as_ref().and(row.api_domain.clone()))
            .unwrap_or_else(|| org.dc.api_domain().to_string());
        Session {
            org,
            deps,
            refresh,
            token: Mutex::new(TokenState {
                access: cached,
                api_domain: Ok(api_domain),
                renewed_after_rejection: false,
                mint_failure: None,
            }),
            in_flight: Semaphore::new(org.max_in_flight),
            desk_org_id: Mutex::new(org.desk_org_id.clone().or_else(|| row.desk_org_id.clone()).map(Ok)),
            stopped: std::sync::Mutex::new(None),
        }
    }

    fn stopped(&self) -> Option<ZohoError> {
        self.stopped.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn stop(&self, e: &ZohoError) {
        let mut guard = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(e.clone());
        }
    }

    /// Does this error end the org's pass (every other call would meet the same answer)?
    fn ends_the_pass(e: &ZohoError) -> bool {
        e.needs_reconnect() || matches!(e, ZohoError::Throttled { .. } | ZohoError::BackingOff { .. })
    }

    /// The access token and API domain, minting a token when none is cached. Holding the lock while
    /// minting is what makes the refresh single-flight.
    async fn access_token(&self) -> Result<(Secret, Result<String, ZohoError>), SessionError> {
        let mut state = self.token.lock().await;
        if let Some(t) = &state.access {
            return Ok((t.clone(), state.api_domain.clone()));
        }
        let token = self.mint(&mut state).await?;
        Ok((token, state.api_domain.clone()))
    }

    /// After a 401 with `failed`: true when a fresh token is available to retry with.
    async fn renew_after_rejection(&self, failed: &Secret) -> Result<bool, SessionError> {
        let mut state = self.token.lock().await;
        if state.access.as_ref().is_some_and(|t| t != failed) {
            return Ok(true); // another source already renewed it
        }
        if state.renewed_after_rejection {
            return Ok(false);
        }
        state.renewed_after_rejection = true;
        tracing::info!(org = %self.org.name, "access token refused; refreshing once");
        state.access = None;
        let name = self.org.name.clone();
        self.deps
            .store
            .call(move |c| Ok(queries::clear_access_token(c, &name)?))
            .await?;
        self.mint(&mut state).await?;
        Ok(true)
    }

    /// Mints an access token, within the local budget and any throttling back-off.
    async fn mint(&self, state: &mut TokenState) -> Result<Secret, SessionError> {
        if let Some(e) = &state.mint_failure {
            return Err(e.clone().into());
        }
        let result = self.mint_once(state).await;
        if let Err(SessionError::Zoho(e)) = &result {
            state.mint_failure = Some(e.clone());
        }
        result
    }

    async fn mint_once(&self, state: &mut TokenState) -> Result<Secret, SessionError> {
        let name = self.org.name.clone();
        let now = now_unix();
        let row = self.deps.store.call(move |c| Ok(queries::org(c, &name)?)).await?;
        if let Some(until) = row.backoff_until.filter(|u| *u > now) {
            return Err(ZohoError::BackingOff { until: rfc3339(until) }.into());
        }
        let mut mints: Vec<i64> = row
            .token_mints
            .into_iter()
            .filter(|t| *t > now - oauth::MINT_WINDOW_SECS)
            .collect();
        if mints.len() >= oauth::MINT_BUDGET {
            let until = mints[0] + oauth::MINT_WINDOW_SECS;
            return Err(ZohoError::BackingOff { until: rfc3339(until) }.into());
        }
        let secret = self
            .org
            .client
            .client_secret
            .resolve()
            .map_err(|m| ZohoError::Credential(format!("{}: {m}", self.org.client.client_secret_key)))?;
        let result = oauth::refresh(
            self.deps.http,
            &self.org.accounts_url,
            &self.org.client,
            &secret,
            &self.refresh.token,
        )
        .await;
        // Every request Zoho answered counts against its limit, successful or not; one that never
        // reached it does not.
        if !matches!(result, Err(ZohoError::Unreachable(_))) {
            mints.push(now);
        }
        let name = self.org.name.clone();
        let checked = result.map(|grant| {
            let domain = choose_api_domain(self.org, grant.api_domain.as_deref());
            (grant, domain)
        });
        match checked {
            Ok((grant, Err(refused))) => {
                // Usable for Desk, never for CRM; not cached, so no later pass sends it anywhere.
                let mints_now = mints.clone();
                self.deps
                    .store
                    .call(move |c| Ok(queries::save_token_mints(c, &name, &mints_now)?))
                    .await?;
                state.api_domain = Err(refused);
                state.access = Some(grant.access_token.clone());
                Ok(grant.access_token)
            }
            Ok((grant, Ok(api_domain))) => {
                let expires_at = now + grant.expires_in.as_secs() as i64;
                let (token, fp, domain) = (
                    grant.access_token.clone(),
                    self.refresh.fingerprint.clone(),
                    api_domain.clone(),
                );
                self.deps
                    .store
                    .call(move |c| {
                        Ok(queries::save_access_token(
                            c,
                            &name,
                            &token,
                            expires_at,
                            &fp,
                            Some(&domain),
                            &mints,
                        )?)
                    })
                    .await?;
                tracing::debug!(org = %self.org.name, expires_in = grant.expires_in.as_secs(), "minted access token");
                state.api_domain = Ok(api_domain);
                state.access = Some(grant.access_token.clone());
                Ok(grant.access_token)
            }
            Err(e) => {
                let backoff = match &e {
                    ZohoError::Throttled { retry_after, .. } => Some(
                        now + retry_after
                            .map(|d| d.as_secs() as i64)
                            .unwrap_or(0)
                            .max(oauth::THROTTLE_BACKOFF_SECS),
                    ),
                    _ => None,
                };
                self.deps
                    .store
                    .call(move |c| {
                        queries::save_token_mints(c, &name, &mints)?;
                        if backoff.is_some() {
                            queries::set_backoff(c, &name, backoff)?;
                        }
                        Ok(())
                    })
                    .await?;
                Err(e.into())
            }
        }
    }

    /// A GET with the access token, within the org's in-flight limit. `Ok(None)` is HTTP 204.
    pub async fn get(&self, target: Target<'_>, query: Vec<(&str, String)>) -> Result<Option<Value>, SessionError> {
        let result = self.get_inner(target, query).await;
        if let Err(SessionError::Zoho(e)) = &result {
            if Self::ends_the_pass(e) {
                self.stop(e);
            }
        }
        result
    }

    async fn get_inner(&self, target: Target<'_>, query: Vec<(&str, String)>) -> Result<Option<Value>, SessionError> {
        if let Some(e) = self.stopped() {
            return Err(e.into());
        }
        let desk_org_id = match target {
            Target::Desk(_) => Some(self.desk_org_id().await?),
            _ => None,
        };
        let _permit = self.in_flight.acquire().await.expect("the semaphore is never closed");
        loop {
            if let Some(e) = self.stopped() {
                return Err(e.into());
            }
            let (token, api_domain) = self.access_token().await?;
            let (what, url) = match target {
                Target::Crm(path) => (format!("GET {path}"), format!("{}{path}", api_domain?)),
                Target::Desk(path) | Target::DeskWithoutOrg(path) => (format!("GET {path}"), self.desk_url(path)?),
            };
            let what = match page_number(&query) {
                Some(page) => format!("{what} (page {page})"),
                None => what,
            };
            let req = ApiRequest {
                what,
                url,
                query: query.clone(),
                token: &token,
                desk_org_id: desk_org_id.as_deref(),
            };
            match get_json(self.deps.http, &req, self.deps.retry).await {
                Err(ZohoError::Auth { code }) => {
                    if !self.renew_after_rejection(&token).await? {
                        return Err(ZohoError::Auth { code }.into());
                    }
                }
                other => return Ok(other?),
            }
        }
    }

    /// The Desk URL of `path` (which starts with `/api/v1/`).
    fn desk_url(&self, path: &str) -> Result<String, ZohoError> {
        match &self.org.desk_url {
            Some(base) => Ok(format!("{base}{path}")),
            None => Err(ZohoError::Unavailable {
                code: format!("no Desk in the {} data centre", self.org.dc),
            }),
        }
    }

    /// The Desk org id: configured, discovered earlier, or discovered now (once) with
    /// `GET /api/v1/organizations`.
    pub async fn desk_org_id(&self) -> Result<String, SessionError> {
        let mut known = self.desk_org_id.lock().await;
        if let Some(result) = known.as_ref() {
            return Ok(result.clone()?);
        }
        let discovered = self.discover_desk_org_id().await;
        match discovered {
            Ok(id) => {
                let (name, stored) = (self.org.name.clone(), id.clone());
                self.deps
                    .store
                    .call(move |c| Ok(queries::save_desk_org_id(c, &name, &stored)?))
                    .await?;
                *known = Some(Ok(id.clone()));
                Ok(id)
            }
            Err(SessionError::Zoho(e)) => {
                *known = Some(Err(e.clone()));
                Err(e.into())
            }
            Err(other) => Err(other),
        }
    }

    async fn discover_desk_org_id(&self) -> Result<String, SessionError> {
        let body = Box::pin(self.get(Target::DeskWithoutOrg("/api/v1/organizations"), Vec::new())).await?;
        let portals = body
            .as_ref()
            .and_then(|b| b.get("data"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let ids: Vec<(String, String)> = portals
            .iter()
            .filter_map(|p| {
                let id = match p.get("id")? {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                let name = p
                    .get("companyName")
                    .or_else(|| p.get("portalName"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                Some((id, name))
            })
            .collect();
        match ids.as_slice() {
            [] => Err(ZohoError::Unavailable {
                code: "no Desk org reachable with this token".into(),
            }
            .into()),
            [(id, _)] => Ok(id.clone()),
            many => {
                let list: Vec<String> = many.iter().map(|(id, name)| format!("{id} ({name})")).collect();
                // Names come from Zoho: the list is bounded like any error text.
                let text = crate::inert::truncate_chars(&list.join(", "), crate::zoho::http::MAX_ERROR_TEXT_CHARS * 2);
                Err(ZohoError::DeskOrgAmbiguous(text).into())
            }
        }
    }
}

/// The 1-based page of a paged Desk request, for messages (`GET /api/v1/departments (page 2)`).
fn page_number(query: &[(&str, String)]) -> Option<usize> {
    let get = |key: &str| {
        query
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    Some(get("from")? / get("limit")?.max(1) + 1)
}
