//! One org's conversation with Zoho during one audit: its refresh token, a cached or fresh access
//! token, the API domain, the Desk org id, and the refresh-once-and-retry rule for 401s.

use super::dc::Dc;
use super::http::{get_json, ApiRequest, RetryPolicy};
use super::{oauth, ZohoError};
use crate::config::OrgConfig;
use crate::secret::Secret;
use crate::snapshot::Redactor;
use crate::store::{queries, Store, StoreError};
use crate::time_util::{now_unix, rfc3339};
use serde_json::Value;

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
    let fingerprint = redactor.fingerprint(&Value::String(token.expose().to_string()));
    Ok(Some(RefreshToken { token, fingerprint }))
}

/// A failure while talking to Zoho, or while recording what it said.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Zoho(#[from] ZohoError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An org's session.
pub struct Session<'a> {
    pub org: &'a OrgConfig,
    deps: SessionDeps<'a>,
    refresh: RefreshToken,
    access: Option<Secret>,
    api_domain: String,
    /// Whether this session already minted a token: a 401 after that is final.
    refreshed: bool,
    desk_org_id: Option<String>,
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
            access: cached,
            api_domain,
            refreshed: false,
            desk_org_id: org.desk_org_id.clone().or_else(|| row.desk_org_id.clone()),
        }
    }

    /// The access token, minting one when none is cached.
    async fn access_token(&mut self) -> Result<Secret, SessionError> {
        if let Some(t) = &self.access {
            return Ok(t.clone());
        }
        self.mint().await
    }

    /// Mints an access token, within the local budget and any throttling back-off.
    async fn mint(&mut self) -> Result<Secret, SessionError> {
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
            .map_err(|m| ZohoError::Malformed {
                what: format!("orgs[{}].client_secret", self.org.name),
                detail: m,
            })?;
        let result = oauth::refresh(
            self.deps.http,
            &self.org.accounts_url,
            &self.org.client,
            &secret,
            &self.refresh.token,
        )
        .await;
        // Every request Zoho answered counts against its limit, successful or not.
        mints.push(now);
        self.refreshed = true;
        let name = self.org.name.clone();
        match result {
            Ok(grant) => {
                let api_domain = self.resolve_api_domain(grant.api_domain.as_deref())?;
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
                self.api_domain = api_domain;
                self.access = Some(grant.access_token.clone());
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

    /// SPEC §7: the org's own `api_domain` wins; otherwise the token response's, only if it is a Zoho
    /// API host; otherwise the DC table.
    fn resolve_api_domain(&self, from_token: Option<&str>) -> Result<String, ZohoError> {
        if let Some(fixed) = &self.org.api_domain_override {
            return Ok(fixed.clone());
        }
        match from_token {
            Some(d) if Dc::is_known_api_domain(d) => Ok(d.trim_end_matches('/').to_string()),
            Some(d) => Err(ZohoError::ApiDomainRefused(d.to_string())),
            None => Ok(self.org.dc.api_domain().to_string()),
        }
    }

    /// A GET with the access token. A 401 is answered by one fresh token and one retry; a second
    /// 401 is final (needs reconnect).
    pub async fn get(
        &mut self,
        what: String,
        url: String,
        query: Vec<(&str, String)>,
        desk: bool,
    ) -> Result<Option<Value>, SessionError> {
        let desk_org_id = if desk { Some(self.desk_org_id().await?) } else { None };
        loop {
            let token = self.access_token().await?;
            let req = ApiRequest {
                what: what.clone(),
                url: url.clone(),
                query: query.clone(),
                token: &token,
                desk_org_id: desk_org_id.as_deref(),
            };
            match get_json(self.deps.http, &req, self.deps.retry).await {
                Err(ZohoError::Auth { code }) if !self.refreshed => {
                    tracing::info!(org = %self.org.name, %code, "access token refused; refreshing once");
                    self.access = None;
                    let name = self.org.name.clone();
                    self.deps
                        .store
                        .call(move |c| Ok(queries::clear_access_token(c, &name)?))
                        .await?;
                }
                other => return Ok(other?),
            }
        }
    }

    /// The CRM URL of `path` (which starts with `/crm/`).
    pub fn crm_url(&self, path: &str) -> String {
        format!("{}{}", self.api_domain, path)
    }

    /// The Desk URL of `path` (which starts with `/api/v1/`).
    pub fn desk_url(&self, path: &str) -> Result<String, ZohoError> {
        match &self.org.desk_url {
            Some(base) => Ok(format!("{base}{path}")),
            None => Err(ZohoError::Unavailable {
                code: format!("no Desk in the {} data centre", self.org.dc),
            }),
        }
    }

    /// The API domain in use (after the first token).
    pub fn api_domain(&self) -> &str {
        &self.api_domain
    }

    /// The Desk org id: configured, discovered earlier, or discovered now with `GET /api/v1/organizations`.
    pub async fn desk_org_id(&mut self) -> Result<String, SessionError> {
        if let Some(id) = &self.desk_org_id {
            return Ok(id.clone());
        }
        let url = self.desk_url("/api/v1/organizations")?;
        let body = Box::pin(self.get("GET /api/v1/organizations".into(), url, Vec::new(), false)).await?;
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
        let id = match ids.as_slice() {
            [] => {
                return Err(ZohoError::Unavailable {
                    code: "no Desk org reachable with this token".into(),
                }
                .into());
            }
            [(id, _)] => id.clone(),
            many => {
                let list: Vec<String> = many.iter().map(|(id, name)| format!("{id} ({name})")).collect();
                return Err(ZohoError::DeskOrgAmbiguous(list.join(", ")).into());
            }
        };
        let (name, stored) = (self.org.name.clone(), id.clone());
        self.deps
            .store
            .call(move |c| Ok(queries::save_desk_org_id(c, &name, &stored)?))
            .await?;
        self.desk_org_id = Some(id.clone());
        Ok(id)
    }
}
