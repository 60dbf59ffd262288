//! A stateful Zoho simulator: accounts server (OAuth), CRM and Desk on one loopback HTTP server.
//!
//! It exists so that integration tests can run the real `auditd` binary against something that
//! behaves like Zoho (HTTP-200 OAuth errors, token throttling, Desk `orgId` checks, paging, 204 for
//! empty lists, the two error-body dialects), and so that `auditd demo` works without an account.
//! The behaviour follows `zoho-api.md`; the few places where the simulator has to invent something
//! (because Zoho does not document it) are commented where they happen.
//!
//! Everything runs on a dedicated OS thread with its own tokio runtime, so the handles here can be
//! used from plain `#[test]` functions and from async code alike; the accessor methods only take a
//! short `std::sync::Mutex` lock and never block on the server.
//!
//! This module depends on nothing else in the crate, so it can be lifted out or used by tests alone.

mod routes;
mod sample;
mod server;
mod state;
mod webhook_sink;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use self::server::ServerHandle;
use self::state::{lock, State};

pub use self::webhook_sink::{ReceivedWebhook, WebhookSink};

/// The OAuth client id the simulator accepts; anything else gets `{"error":"invalid_client"}`.
pub const CLIENT_ID: &str = "1000.SIMCLIENT";
/// The OAuth client secret the simulator accepts; anything else gets `{"error":"invalid_client_secret"}`.
pub const CLIENT_SECRET: &str = "sim-client-secret-c0ffee";

/// A running simulator. Runs on its own OS thread with its own tokio runtime, so it can be used
/// from sync `#[test]` functions and from async code alike. Dropping it stops the server.
///
/// One server plays the accounts server, the CRM `api_domain` and the Desk base URL at once: the
/// paths do not overlap (`/oauth/...`, `/crm/...`, `/api/v1/...`).
pub struct Simulator {
    state: Arc<Mutex<State>>,
    url: String,
    // Held for its Drop: stops the server thread.
    _server: ServerHandle,
}

impl Simulator {
    /// Binds `127.0.0.1:0` and starts serving. Blocks only until the listener is bound.
    ///
    /// # Panics
    /// If the loopback listener cannot be bound or the runtime cannot be built (a broken test host).
    pub fn start() -> Simulator {
        // The state needs the server's own URL (for `api_domain` and the consent redirect), which is
        // known only after binding; it is filled in right after.
        let state = Arc::new(Mutex::new(State::new(String::new())));
        let router = routes::router(state.clone());
        let server = ServerHandle::spawn("zoho-sim", router);
        let url = format!("http://{}", server.addr());
        lock(&state).base_url = url.clone();
        Simulator {
            state,
            url,
            _server: server,
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash. It is the accounts server, the CRM
    /// `api_domain` and the Desk base at once.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Adds (or replaces the data of) an org and returns a fresh valid refresh token for it
    /// (`1000.<hex>.<hex>`, Zoho's shape). Refresh tokens issued earlier for the same name stay valid.
    pub fn add_org(&self, name: &str, data: OrgData) -> String {
        let mut st = lock(&self.state);
        st.orgs.insert(name.to_owned(), data);
        st.issue_refresh_token(name)
    }

    /// Changes an org's mail configuration, e.g. between two audit passes.
    ///
    /// # Panics
    /// If no org of that name was added (a bug in the calling test).
    pub fn update(&self, name: &str, f: impl FnOnce(&mut OrgData)) {
        let mut st = lock(&self.state);
        let Some(data) = st.orgs.get_mut(name) else {
            drop(st);
            panic!("sim: update of unknown org {name:?}");
        };
        f(data);
    }

    /// Revokes every refresh token issued so far for the org: the refresh grant now answers
    /// HTTP 200 `{"error":"invalid_code"}`. A later code exchange issues a new, valid one.
    pub fn revoke_refresh_tokens(&self, name: &str) {
        let mut st = lock(&self.state);
        for info in st.refresh_tokens.values_mut().filter(|i| i.org == name) {
            info.revoked = true;
        }
    }

    /// Invalidates every access token issued so far for the org: API calls with them get 401.
    /// Tokens minted afterwards work.
    pub fn invalidate_access_tokens(&self, name: &str) {
        let mut st = lock(&self.state);
        for info in st.access_tokens.values_mut().filter(|i| i.org == name) {
            info.invalidated = true;
        }
    }

    /// Lifetime of access tokens minted from now on, in seconds (default 3600, like Zoho).
    pub fn set_token_lifetime(&self, secs: u64) {
        lock(&self.state).token_lifetime = Duration::from_secs(secs);
    }

    /// When on, token responses carry `"expires_in_sec": secs` and `"expires_in": secs*1000`
    /// (the millisecond variant some Zoho responses use); when off (the default), `"expires_in": secs`.
    pub fn set_expires_in_millis(&self, on: bool) {
        lock(&self.state).expires_in_millis = on;
    }

    /// Which org "logs in" and approves at the consent endpoint `GET /oauth/v2/auth`.
    pub fn set_consent_org(&self, name: &str) {
        lock(&self.state).consent_org = Some(name.to_owned());
    }

    /// Adds a scripted failure. Faults are checked in the order they were injected; the first
    /// one that fires answers the request (every matching fault still counts it for `nth`).
    pub fn inject(&self, fault: Fault) {
        lock(&self.state).faults.push(state::ActiveFault::new(fault));
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    /// The most API requests of `org` the simulator was answering at the same moment.
    pub fn max_concurrent_requests(&self, org: &str) -> usize {
        lock(&self.state).in_flight.get(org).map(|(_, max)| *max).unwrap_or(0)
    }

    /// Every API request attributed to that org (by its access token, even an expired or
    /// invalidated one), in the order they were answered, with the status actually returned.
    /// Calls to the accounts server (`/oauth/...`) are not included.
    pub fn requests(&self, org: &str) -> Vec<RecordedRequest> {
        lock(&self.state)
            .requests
            .iter()
            .filter(|(o, _)| o == org)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Calls to `/oauth/v2/token` attributed to that org (by refresh token or code), any outcome,
    /// faults included.
    pub fn token_requests(&self, org: &str) -> usize {
        lock(&self.state).token_requests.get(org).copied().unwrap_or(0)
    }

    /// Access tokens successfully issued to that org.
    pub fn tokens_minted(&self, org: &str) -> usize {
        lock(&self.state).tokens_minted.get(org).copied().unwrap_or(0)
    }

    /// Every `Authorization` header value the server saw, on any path, in arrival order. Lets
    /// tests check that a token was only ever sent where it belongs (or never sent at all).
    pub fn authorization_headers(&self) -> Vec<String> {
        lock(&self.state).authorization_headers.clone()
    }
}

/// One API request as the simulator answered it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The URL path, e.g. `/api/v1/mailReplyAddress`.
    pub path: String,
    /// The raw query string without `?`; empty when there was none.
    pub query: String,
    /// The HTTP status the simulator actually returned (fault responses included).
    pub status: u16,
    /// When the answer was ready, so tests can measure back-off between requests.
    pub at: std::time::Instant,
}

/// An org's mail configuration as the simulator serves it. Public fields so tests mutate freely.
#[derive(Clone, Debug)]
pub struct OrgData {
    /// The Desk org id: digits, more than 32 bits, kept as a string like Zoho's JSON does.
    /// Desk calls must carry it in the `orgId` header.
    pub desk_org_id: String,
    /// What `GET /api/v1/organizations` returns in `"data"` (204 when empty).
    pub desk_portals: Vec<Value>,
    /// `None` → 404 `{"code":"INVALID_URL_PATTERN",...}` (many orgs); `Some(v)` → 200 with body `v` exactly.
    pub crm_mail_config: Option<Value>,
    /// `{"from_addresses":[...]}`; empty → HTTP 204.
    pub from_addresses: Vec<Value>,
    /// The object served inside `{"email_compose":[...]}` per `type` (`default`, `emailin`,
    /// `mass_mail`); a missing key → 403 `FEATURE_NOT_ENABLED`.
    pub compose: BTreeMap<String, Value>,
    /// `None` → 404 `{"errorCode":"URL_NOT_FOUND",...}`; `Some` → paged `{"data":[...]}`.
    pub mail_configurations: Option<Vec<Value>>,
    /// Paged `{"data":[...]}` at `/api/v1/departments`.
    pub departments: Vec<Value>,
    /// Every reply address of every department; each has a `"departmentId"` and the endpoint
    /// filters on the `departmentId` query parameter.
    pub reply_addresses: Vec<Value>,
    /// Served as-is at `/api/v1/supportEmailDomain`.
    pub support_email_domain: Value,
    /// `"api_domain"` in token responses; `None` → the simulator's own URL. Set it to something
    /// foreign to test that auditd refuses to send a token there.
    pub api_domain: Option<String>,
    /// The data centre reported as `location=` in the consent redirect (`"us"` by default).
    pub location: String,
}

/// A scripted failure.
///
/// Matches requests by exact path (no query), e.g. `/api/v1/mailReplyAddress`, `/oauth/v2/token` or
/// `/crm/v8/settings/mail_config`, and optionally by org (attributed by access token on API paths,
/// by refresh token or code on the token endpoint, the consent org on `/oauth/v2/auth`).
#[derive(Clone, Debug)]
pub struct Fault {
    /// Only requests attributed to this org; `None` matches any request, attributed or not.
    pub org: Option<String>,
    /// Exact request path.
    pub path: String,
    /// Only requests whose query string has this exact `key=value` pair (e.g. `type=emailin`).
    pub query: Option<String>,
    /// Only the Nth matching request counted from the moment of injection (1-based);
    /// `None` = every matching request.
    pub nth: Option<usize>,
    /// How many times the fault may fire; `None` = unlimited.
    pub times: Option<usize>,
    /// What to do instead of (or before) answering normally.
    pub response: FaultResponse,
}

impl Fault {
    /// A fault on every request to `path`, from any org, unlimited.
    pub fn new(path: &str, response: FaultResponse) -> Fault {
        Fault {
            org: None,
            path: path.to_owned(),
            query: None,
            nth: None,
            times: None,
            response,
        }
    }

    /// Restricts the fault to requests attributed to `name`.
    pub fn org(mut self, name: &str) -> Fault {
        self.org = Some(name.to_owned());
        self
    }

    /// Restricts the fault to requests whose query has the pair `key=value`.
    pub fn query(mut self, pair: &str) -> Fault {
        self.query = Some(pair.to_owned());
        self
    }

    /// Fires only on the `n`th matching request (1-based) counted from injection.
    pub fn nth(mut self, n: usize) -> Fault {
        self.nth = Some(n);
        self
    }

    /// Fires at most `n` times.
    pub fn times(mut self, n: usize) -> Fault {
        self.times = Some(n);
        self
    }
}

/// What an injected fault does.
#[derive(Clone, Debug)]
pub enum FaultResponse {
    /// Answer this instead. The body is sent as-is; its `Content-Type` is `application/json` when
    /// it looks like JSON (starts with `{` or `[`), else `text/plain`, unless `headers` sets one.
    Status {
        status: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
    /// Sleep, then answer normally (for client timeouts and concurrency tests).
    Delay(Duration),
    /// HTTP 200 with `Content-Type: application/json` and a truncated body (`{"data":[{"id":`).
    MalformedJson,
}

impl FaultResponse {
    /// `Status` with no extra headers.
    pub fn status(status: u16, body: &str) -> FaultResponse {
        FaultResponse::Status {
            status,
            body: body.to_owned(),
            headers: Vec::new(),
        }
    }

    /// Adds a response header (e.g. `Retry-After`). Only meaningful for `Status`; other variants
    /// are returned unchanged.
    pub fn header(mut self, name: &str, value: &str) -> FaultResponse {
        if let FaultResponse::Status { headers, .. } = &mut self {
            headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }
}
