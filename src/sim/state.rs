//! The simulator's mutable state and the OAuth rules that operate on it.
//!
//! Everything here is synchronous and runs under one `std::sync::Mutex`; the HTTP layer in
//! `routes.rs` takes the lock for short, await-free sections only.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};

use super::{Fault, FaultResponse, OrgData, RecordedRequest, CLIENT_ID, CLIENT_SECRET};

/// Zoho: at most 10 access tokens per refresh token ...
pub(crate) const MINTS_PER_WINDOW: usize = 10;
/// ... per 10 minutes.
pub(crate) const MINT_WINDOW: Duration = Duration::from_secs(600);
/// Zoho: an authorization code lives about 2 minutes.
pub(crate) const CODE_LIFETIME: Duration = Duration::from_secs(120);

/// Locks the state, recovering from poisoning: one panicking test thread must not turn every
/// later accessor call into a second, misleading panic.
pub(crate) fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `1000.<32 hex>`: the shape of Zoho access tokens.
fn token_32() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    format!("1000.{}", hex::encode(bytes))
}

/// `1000.<32 hex>.<32 hex>`: the shape of Zoho refresh tokens and grant codes.
fn token_64() -> String {
    let a: [u8; 16] = rand::rng().random();
    let b: [u8; 16] = rand::rng().random();
    format!("1000.{}.{}", hex::encode(a), hex::encode(b))
}

pub(crate) struct RefreshTokenInfo {
    pub(crate) org: String,
    pub(crate) revoked: bool,
    /// When access tokens were minted from this refresh token, for the 10-per-10-minutes rule.
    mints: VecDeque<Instant>,
}

pub(crate) struct AccessTokenInfo {
    pub(crate) org: String,
    expires: Instant,
    pub(crate) invalidated: bool,
}

/// An authorization code the consent endpoint issued, until it is exchanged or expires.
struct CodeInfo {
    org: String,
    issued: Instant,
    used: bool,
    /// The exchange must repeat the redirect_uri of the consent request, as with Zoho.
    redirect_uri: String,
    /// Zoho returns a refresh token from the code exchange only for `access_type=offline`.
    offline: bool,
}

/// An injected fault with its counters.
pub(crate) struct ActiveFault {
    fault: Fault,
    /// Matching requests seen since injection (for `nth`).
    seen: usize,
    /// Times it answered a request (for `times`).
    fired: usize,
}

impl ActiveFault {
    pub(crate) fn new(fault: Fault) -> ActiveFault {
        ActiveFault {
            fault,
            seen: 0,
            fired: 0,
        }
    }
}

/// The whole simulated world.
pub(crate) struct State {
    /// The simulator's own URL: default `api_domain` and the `accounts-server` of redirects.
    pub(crate) base_url: String,
    pub(crate) orgs: BTreeMap<String, OrgData>,
    pub(crate) consent_org: Option<String>,
    pub(crate) token_lifetime: Duration,
    pub(crate) expires_in_millis: bool,
    pub(crate) refresh_tokens: HashMap<String, RefreshTokenInfo>,
    pub(crate) access_tokens: HashMap<String, AccessTokenInfo>,
    codes: HashMap<String, CodeInfo>,
    pub(crate) faults: Vec<ActiveFault>,
    /// (org, request), in answer order.
    pub(crate) requests: Vec<(String, RecordedRequest)>,
    pub(crate) token_requests: HashMap<String, usize>,
    pub(crate) tokens_minted: HashMap<String, usize>,
    pub(crate) authorization_headers: Vec<String>,
    /// API requests being answered right now, per org, and the most ever seen at once.
    pub(crate) in_flight: HashMap<String, (usize, usize)>,
}

impl State {
    pub(crate) fn new(base_url: String) -> State {
        State {
            base_url,
            orgs: BTreeMap::new(),
            consent_org: None,
            token_lifetime: Duration::from_secs(3600),
            expires_in_millis: false,
            refresh_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            codes: HashMap::new(),
            faults: Vec::new(),
            requests: Vec::new(),
            token_requests: HashMap::new(),
            tokens_minted: HashMap::new(),
            authorization_headers: Vec::new(),
            in_flight: HashMap::new(),
        }
    }

    pub(crate) fn issue_refresh_token(&mut self, org: &str) -> String {
        let token = token_64();
        self.refresh_tokens.insert(
            token.clone(),
            RefreshTokenInfo {
                org: org.to_owned(),
                revoked: false,
                mints: VecDeque::new(),
            },
        );
        token
    }

    /// The org an access token belongs to, whether or not it is still valid (for attribution).
    pub(crate) fn org_of_access_token(&self, token: &str) -> Option<String> {
        self.access_tokens.get(token).map(|i| i.org.clone())
    }

    /// The org an access token belongs to, if the token is known, unexpired and not invalidated.
    pub(crate) fn valid_access_token(&self, token: &str) -> Option<String> {
        let info = self.access_tokens.get(token)?;
        (!info.invalidated && Instant::now() < info.expires).then(|| info.org.clone())
    }

    /// The org a token-endpoint call is about, judged by its refresh token or code.
    pub(crate) fn org_of_grant(&self, params: &HashMap<String, String>) -> Option<String> {
        if let Some(rt) = params.get("refresh_token") {
            if let Some(info) = self.refresh_tokens.get(rt) {
                return Some(info.org.clone());
            }
        }
        let code = params.get("code")?;
        self.codes.get(code).map(|c| c.org.clone())
    }

    /// Counts the request against every matching fault and returns the response of the first one
    /// that fires.
    pub(crate) fn take_fault(&mut self, path: &str, query: &str, org: Option<&str>) -> Option<FaultResponse> {
        let mut chosen = None;
        for active in &mut self.faults {
            if active.fault.path != path {
                continue;
            }
            if let Some(want) = &active.fault.query {
                if !query.split('&').any(|pair| pair == want) {
                    continue;
                }
            }
            if let Some(want) = &active.fault.org {
                if org != Some(want.as_str()) {
                    continue;
                }
            }
            active.seen += 1;
            if chosen.is_some() {
                continue;
            }
            if active.fault.nth.is_some_and(|n| n != active.seen) {
                continue;
            }
            if active.fault.times.is_some_and(|t| active.fired >= t) {
                continue;
            }
            active.fired += 1;
            chosen = Some(active.fault.response.clone());
        }
        chosen
    }

    /// The token endpoint's answer (always sent with HTTP 200, like Zoho's OAuth errors).
    pub(crate) fn grant(&mut self, params: &HashMap<String, String>) -> Value {
        let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
        if get("client_id") != CLIENT_ID {
            return json!({"error": "invalid_client"});
        }
        if get("client_secret") != CLIENT_SECRET {
            return json!({"error": "invalid_client_secret"});
        }
        match get("grant_type") {
            "refresh_token" => self.refresh_grant(get("refresh_token")),
            "authorization_code" => self.code_grant(get("code"), get("redirect_uri")),
            _ => json!({"error": "unsupported_grant_type"}),
        }
    }

    fn refresh_grant(&mut self, refresh_token: &str) -> Value {
        let now = Instant::now();
        let Some(info) = self.refresh_tokens.get_mut(refresh_token) else {
            return json!({"error": "invalid_code"});
        };
        if info.revoked {
            return json!({"error": "invalid_code"});
        }
        while info
            .mints
            .front()
            .is_some_and(|t| now.duration_since(*t) >= MINT_WINDOW)
        {
            info.mints.pop_front();
        }
        if info.mints.len() >= MINTS_PER_WINDOW {
            return json!({
                "error": "Access Denied",
                "error_description": "You have made too many requests continuously. Please try again after some time.",
                "status": "failure"
            });
        }
        info.mints.push_back(now);
        let org = info.org.clone();
        let access = self.mint_access_token(&org);
        self.token_response(&org, access, None)
    }

    fn code_grant(&mut self, code: &str, redirect_uri: &str) -> Value {
        let Some(info) = self.codes.get_mut(code) else {
            return json!({"error": "invalid_code"});
        };
        if info.used || info.issued.elapsed() > CODE_LIFETIME {
            return json!({"error": "invalid_code"});
        }
        if info.redirect_uri != redirect_uri {
            return json!({"error": "invalid_redirect_uri"});
        }
        info.used = true;
        let org = info.org.clone();
        let refresh = if info.offline {
            let rt = self.issue_refresh_token(&org);
            // The access token issued with it counts against the new refresh token's budget.
            if let Some(rti) = self.refresh_tokens.get_mut(&rt) {
                rti.mints.push_back(Instant::now());
            }
            Some(rt)
        } else {
            None
        };
        let access = self.mint_access_token(&org);
        self.token_response(&org, access, refresh)
    }

    fn mint_access_token(&mut self, org: &str) -> String {
        let token = token_32();
        self.access_tokens.insert(
            token.clone(),
            AccessTokenInfo {
                org: org.to_owned(),
                expires: Instant::now() + self.token_lifetime,
                invalidated: false,
            },
        );
        *self.tokens_minted.entry(org.to_owned()).or_default() += 1;
        token
    }

    fn token_response(&self, org: &str, access: String, refresh: Option<String>) -> Value {
        let api_domain = self
            .orgs
            .get(org)
            .and_then(|d| d.api_domain.clone())
            .unwrap_or_else(|| self.base_url.clone());
        let secs = self.token_lifetime.as_secs();
        let mut body = json!({
            "access_token": access,
            "api_domain": api_domain,
            "token_type": "Bearer",
        });
        if self.expires_in_millis {
            body["expires_in_sec"] = json!(secs);
            body["expires_in"] = json!(secs * 1000);
        } else {
            body["expires_in"] = json!(secs);
        }
        if let Some(rt) = refresh {
            body["refresh_token"] = json!(rt);
        }
        body
    }

    /// Issues a grant code for the consent org; `Err` carries the reason for a 400.
    pub(crate) fn issue_code(&mut self, redirect_uri: &str, offline: bool) -> Result<(String, String), &'static str> {
        let org = self
            .consent_org
            .clone()
            .ok_or("no consent org set (Simulator::set_consent_org)")?;
        let location = self
            .orgs
            .get(&org)
            .ok_or("the consent org was never added")?
            .location
            .clone();
        let code = token_64();
        self.codes.insert(
            code.clone(),
            CodeInfo {
                org,
                issued: Instant::now(),
                used: false,
                redirect_uri: redirect_uri.to_owned(),
                offline,
            },
        );
        Ok((code, location))
    }

    /// `POST /oauth/v2/token/revoke?token=`: revokes a refresh token, or invalidates an access token.
    pub(crate) fn revoke(&mut self, token: &str) {
        if let Some(info) = self.refresh_tokens.get_mut(token) {
            info.revoked = true;
        }
        if let Some(info) = self.access_tokens.get_mut(token) {
            info.invalidated = true;
        }
    }
}
