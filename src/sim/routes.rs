//! HTTP handling: one fallback handler that attributes, records and dispatches every request.
//!
//! A single hand-written dispatcher (rather than axum's per-route extractors) keeps every request
//! on the same path through attribution, fault injection and recording, and lets unknown paths
//! and wrong methods get Zoho's own error bodies instead of axum's defaults.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State as AxumState;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};
use url::Url;

use super::state::{lock, State};
use super::{FaultResponse, OrgData, RecordedRequest, CLIENT_ID};

type Shared = Arc<Mutex<State>>;

const TOKEN_PATH: &str = "/oauth/v2/token";
const AUTH_PATH: &str = "/oauth/v2/auth";
const REVOKE_PATH: &str = "/oauth/v2/token/revoke";

/// Which error dialect a path speaks: CRM (`code`/`status`) or Desk (`errorCode`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Crm,
    Desk,
    Other,
}

impl Api {
    fn of(path: &str) -> Api {
        if path == "/crm" || path.starts_with("/crm/") {
            Api::Crm
        } else if path == "/api" || path.starts_with("/api/") {
            Api::Desk
        } else {
            Api::Other
        }
    }
}

pub(crate) fn router(state: Shared) -> Router {
    Router::new().fallback(handle).with_state(state)
}

async fn handle(
    AxumState(state): AxumState<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or("").to_owned();
    let auth = headers
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if let Some(a) = &auth {
        lock(&state).authorization_headers.push(a.clone());
    }
    let mut params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    match path.as_str() {
        TOKEN_PATH => {
            // Zoho accepts the parameters in the query string too; the form body wins.
            params.extend(url::form_urlencoded::parse(&body).into_owned());
            token_endpoint(&state, &method, &params).await
        }
        AUTH_PATH => consent(&state, &params).await,
        REVOKE_PATH => {
            params.extend(url::form_urlencoded::parse(&body).into_owned());
            if let Some(t) = params.get("token") {
                lock(&state).revoke(t);
            }
            json_response(200, &json!({"status": "success"}))
        }
        _ => api(&state, &method, &path, &query, &params, &headers, auth.as_deref()).await,
    }
}

/// Applies a fault before normal handling: `Some(response)` answers the request, `None` means
/// "go on" (possibly after a delay).
async fn run_fault(fault: Option<FaultResponse>) -> Option<Response> {
    match fault? {
        FaultResponse::Delay(d) => {
            tokio::time::sleep(d).await;
            None
        }
        FaultResponse::MalformedJson => Some(raw_response(
            200,
            "application/json",
            r#"{"data":[{"id":"#.to_owned(),
            &[],
        )),
        FaultResponse::Status { status, body, headers } => {
            let trimmed = body.trim_start();
            let ct = if trimmed.starts_with('{') || trimmed.starts_with('[') {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            Some(raw_response(status, ct, body, &headers))
        }
    }
}

async fn token_endpoint(state: &Shared, method: &Method, params: &HashMap<String, String>) -> Response {
    let fault = {
        let mut st = lock(state);
        let org = st.org_of_grant(params);
        if let Some(o) = &org {
            *st.token_requests.entry(o.clone()).or_default() += 1;
        }
        st.take_fault(TOKEN_PATH, "", org.as_deref())
    };
    if let Some(resp) = run_fault(fault).await {
        return resp;
    }
    if method != Method::POST {
        return json_response(405, &json!({"error": "invalid_request"}));
    }
    let body = lock(state).grant(params);
    // Zoho signals OAuth failures with HTTP 200 and an "error" field; clients must look at the body.
    json_response(200, &body)
}

async fn consent(state: &Shared, params: &HashMap<String, String>) -> Response {
    let fault = {
        let mut st = lock(state);
        let org = st.consent_org.clone();
        st.take_fault(AUTH_PATH, "", org.as_deref())
    };
    if let Some(resp) = run_fault(fault).await {
        return resp;
    }
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    if get("client_id") != CLIENT_ID {
        return text_response(400, "invalid client_id");
    }
    if get("response_type") != "code" {
        return text_response(400, "response_type must be code");
    }
    let Ok(mut location) = Url::parse(get("redirect_uri")) else {
        return text_response(400, "missing or invalid redirect_uri");
    };
    let mut st = lock(state);
    let (code, dc) = match st.issue_code(get("redirect_uri"), get("access_type") == "offline") {
        Ok(v) => v,
        Err(why) => return text_response(400, why),
    };
    let accounts = st.base_url.clone();
    drop(st);
    {
        let mut q = location.query_pairs_mut();
        if let Some(s) = params.get("state") {
            q.append_pair("state", s);
        }
        q.append_pair("code", &code)
            .append_pair("location", &dc)
            .append_pair("accounts-server", &accounts);
    }
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(location.as_str()) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

async fn api(
    state: &Shared,
    method: &Method,
    path: &str,
    query: &str,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    auth: Option<&str>,
) -> Response {
    let token = auth.and_then(|a| a.strip_prefix("Zoho-oauthtoken ")).map(str::trim);
    let (org, fault) = {
        let mut st = lock(state);
        let org = token.and_then(|t| st.org_of_access_token(t));
        let fault = st.take_fault(path, query, org.as_deref());
        if let Some(o) = &org {
            let (now, max) = st.in_flight.entry(o.clone()).or_default();
            *now += 1;
            *max = (*max).max(*now);
        }
        (org, fault)
    };
    let resp = match run_fault(fault).await {
        Some(resp) => resp,
        None => {
            let st = lock(state);
            serve_api(&st, method, path, params, headers, token)
        }
    };
    if let Some(org) = org {
        let mut st = lock(state);
        if let Some((now, _)) = st.in_flight.get_mut(&org) {
            *now -= 1;
        }
        st.requests.push((
            org,
            RecordedRequest {
                method: method.to_string(),
                path: path.to_owned(),
                query: query.to_owned(),
                status: resp.status().as_u16(),
                at: std::time::Instant::now(),
            },
        ));
    }
    resp
}

/// Normal handling of a CRM or Desk call: authentication, then the endpoint.
fn serve_api(
    st: &State,
    method: &Method,
    path: &str,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    token: Option<&str>,
) -> Response {
    let kind = Api::of(path);
    if kind == Api::Other {
        return not_found(kind);
    }
    let Some(org) = token.and_then(|t| st.valid_access_token(t)) else {
        return match kind {
            Api::Crm => json_response(
                401,
                &json!({"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"}),
            ),
            _ => json_response(
                401,
                &json!({"errorCode": "INVALID_OAUTH", "message": "The OAuth Token you provided is invalid."}),
            ),
        };
    };
    let Some(data) = st.orgs.get(&org) else {
        return not_found(kind);
    };
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if method != Method::GET {
        return match kind {
            Api::Crm => crm_error(
                405,
                "INVALID_REQUEST_METHOD",
                "The http request method type is not a valid one",
            ),
            _ => desk_error(
                405,
                "METHOD_NOT_ALLOWED",
                "The requested method is not allowed for this URL.",
            ),
        };
    }
    match kind {
        Api::Crm => crm(data, &segs, params),
        _ => desk(data, &segs, params, headers),
    }
}

/// `v` followed by digits: any CRM API version.
fn is_version(s: &str) -> bool {
    s.len() > 1 && s.starts_with('v') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

fn crm(data: &OrgData, segs: &[&str], params: &HashMap<String, String>) -> Response {
    match segs {
        ["crm", v, "settings", "mail_config"] if is_version(v) => match &data.crm_mail_config {
            Some(body) => json_response(200, body),
            None => not_found(Api::Crm),
        },
        ["crm", v, "settings", "emails", "actions", "from_addresses"] if is_version(v) => {
            if data.from_addresses.is_empty() {
                no_content()
            } else {
                json_response(200, &json!({"from_addresses": data.from_addresses}))
            }
        }
        ["crm", "email", v, "settings", "compose"] if is_version(v) => {
            let Some(kind) = params.get("type") else {
                return crm_error(
                    400,
                    "REQUIRED_PARAM_MISSING",
                    "One of the expected parameter is missing",
                );
            };
            match data.compose.get(kind) {
                Some(obj) => json_response(200, &json!({"email_compose": [obj]})),
                None => crm_error(403, "FEATURE_NOT_ENABLED", "The feature is not enabled for this org"),
            }
        }
        _ => not_found(Api::Crm),
    }
}

fn desk(data: &OrgData, segs: &[&str], params: &HashMap<String, String>, headers: &HeaderMap) -> Response {
    if segs == ["api", "v1", "organizations"] {
        return if data.desk_portals.is_empty() {
            no_content()
        } else {
            json_response(200, &json!({"data": data.desk_portals}))
        };
    }
    // Check the path before the orgId header, so an unknown path is a 404 whatever the headers.
    let known = matches!(
        segs,
        [
            "api",
            "v1",
            "departments" | "mailReplyAddress" | "mailConfigurations" | "supportEmailDomain"
        ]
    );
    if !known {
        return not_found(Api::Desk);
    }
    let org_ok = headers
        .get("orgId")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == data.desk_org_id);
    if !org_ok {
        return desk_error(400, "INVALID_DATA", "orgId header is missing or invalid");
    }
    match segs {
        ["api", "v1", "departments"] => page(&data.departments, params, 200),
        ["api", "v1", "mailReplyAddress"] => {
            // Without departmentId the simulator lists every department's addresses (Zoho does
            // not document that case; auditd always passes it).
            let items: Vec<Value> = match params.get("departmentId") {
                Some(dept) => data
                    .reply_addresses
                    .iter()
                    .filter(|a| id_matches(&a["departmentId"], dept))
                    .cloned()
                    .collect(),
                None => data.reply_addresses.clone(),
            };
            page(&items, params, 100)
        }
        ["api", "v1", "mailConfigurations"] => match &data.mail_configurations {
            Some(items) => page(items, params, 100),
            None => not_found(Api::Desk),
        },
        _ => json_response(200, &data.support_email_domain),
    }
}

/// Ids are strings in Desk JSON, but a test may well write them as numbers.
fn id_matches(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Number(n) => n.to_string() == want,
        _ => false,
    }
}

/// A Desk list page: `from` is a 0-based index, `limit` defaults to 10 and may not exceed `max`;
/// an empty page is HTTP 204 with no body.
fn page(items: &[Value], params: &HashMap<String, String>, max: usize) -> Response {
    let parse = |k: &str, default: usize| -> Result<usize, ()> {
        match params.get(k) {
            None => Ok(default),
            Some(s) => s.trim().parse::<usize>().map_err(|_| ()),
        }
    };
    let (Ok(from), Ok(limit)) = (parse("from", 0), parse("limit", 10)) else {
        return desk_error(422, "INVALID_DATA", "from and limit must be non-negative integers");
    };
    if limit == 0 || limit > max {
        return desk_error(422, "INVALID_DATA", &format!("limit must be between 1 and {max}"));
    }
    let slice: Vec<&Value> = items.iter().skip(from).take(limit).collect();
    if slice.is_empty() {
        no_content()
    } else {
        json_response(200, &json!({"data": slice}))
    }
}

fn not_found(kind: Api) -> Response {
    match kind {
        Api::Crm => crm_error(
            404,
            "INVALID_URL_PATTERN",
            "Please check if the URL trying to access is a correct one",
        ),
        _ => desk_error(404, "URL_NOT_FOUND", "The URL you requested could not be found."),
    }
}

fn crm_error(status: u16, code: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"code": code, "details": {}, "message": message, "status": "error"}),
    )
}

fn desk_error(status: u16, code: &str, message: &str) -> Response {
    json_response(status, &json!({"errorCode": code, "message": message}))
}

fn no_content() -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

fn json_response(status: u16, body: &Value) -> Response {
    raw_response(status, "application/json;charset=UTF-8", body.to_string(), &[])
}

fn text_response(status: u16, body: &str) -> Response {
    raw_response(status, "text/plain; charset=utf-8", body.to_owned(), &[])
}

/// A response with an explicit Content-Type; `extra` headers are added after it, so a fault may
/// override the Content-Type. Invalid status codes or header names become a 500 / are skipped,
/// since this is a test tool and a typo should show up rather than panic a server task.
fn raw_response(status: u16, content_type: &str, body: String, extra: &[(String, String)]) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    for (k, v) in extra {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v)) {
            resp.headers_mut().insert(name, value);
        }
    }
    resp
}
