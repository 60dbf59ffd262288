//! One HTTP client for every Zoho call: timeouts, no cross-host redirects, a cap on body size,
//! bounded retries with backoff and jitter for 429 and 5xx.

use super::ZohoError;
use crate::secret::Secret;
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// No mail-settings answer comes near this; a bigger body is a broken or hostile server.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The deepest nesting a Zoho answer may have (objects and arrays, the outermost counting 1).
/// Mail settings nest a handful of levels; what is stored is later wrapped in an alert (a few more
/// levels, a digest a few more again) and must still parse under serde_json's limit of 128.
pub const MAX_JSON_DEPTH: usize = 64;

/// An error code or message from a Zoho error body is cut to this many characters.
pub const MAX_ERROR_TEXT_CHARS: usize = 200;

/// How often a 429 or 5xx is retried within one request, and from what delay the backoff starts.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub retries: u32,
    pub base_delay: Duration,
    /// No single wait is longer than this, whatever `Retry-After` says; a longer wait ends the
    /// request as throttled so that a pass always ends.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// The shared client.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("zoho-auditd/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            // A redirect to another origin (scheme, host or port) would carry the token there, or
            // pass off another server's answer as Zoho's.
            let same_origin = attempt.previous().first().map(url::Url::origin) == Some(attempt.url().origin());
            if same_origin && attempt.previous().len() < 3 {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }))
        .build()
        .expect("the TLS backend is compiled in")
}

/// One API request.
pub struct ApiRequest<'a> {
    /// For messages: `GET /api/v1/departments`.
    pub what: String,
    pub url: String,
    pub query: Vec<(&'a str, String)>,
    pub token: &'a Secret,
    /// Desk's `orgId` header.
    pub desk_org_id: Option<&'a str>,
}

/// Sends a GET with retries. `Ok(None)` is HTTP 204 (an empty list).
pub async fn get_json(
    http: &reqwest::Client,
    req: &ApiRequest<'_>,
    policy: RetryPolicy,
) -> Result<Option<Value>, ZohoError> {
    let mut attempt = 0;
    loop {
        let mut builder = http
            .request(Method::GET, &req.url)
            .query(&req.query)
            .header("Authorization", format!("Zoho-oauthtoken {}", req.token.expose()));
        if let Some(id) = req.desk_org_id {
            builder = builder.header("orgId", id);
        }
        let outcome = match builder.send().await {
            Ok(resp) => classify(resp, &req.what).await,
            Err(e) => Err(Attempt::Retry {
                error: ZohoError::Unreachable(describe_transport(&req.what, &e)),
                retry_after: None,
            }),
        };
        let label = match &outcome {
            Ok(_) => "ok",
            Err(Attempt::Final(e) | Attempt::Retry { error: e, .. }) => e.kind(),
        };
        crate::metrics::record_api_request(&req.url, label);
        match outcome {
            Ok(v) => return Ok(v),
            Err(Attempt::Final(e)) => return Err(e),
            Err(Attempt::Retry { error, retry_after }) => {
                if attempt >= policy.retries {
                    return Err(error);
                }
                let backoff = policy.base_delay * 2u32.pow(attempt);
                let jitter = rand::rng().random_range(0.0..0.5);
                let wait = retry_after.unwrap_or(backoff).max(backoff.mul_f64(1.0 + jitter));
                if wait > policy.max_delay {
                    return Err(error);
                }
                tracing::debug!(what = %req.what, attempt, wait_ms = wait.as_millis() as u64, %error, "retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

/// How one attempt ended when it did not succeed: worth another try, or final.
enum Attempt {
    Retry {
        error: ZohoError,
        retry_after: Option<Duration>,
    },
    Final(ZohoError),
}

/// A transport error in words, without the URL's query (which may name ids) or any header.
pub fn describe_transport(what: &str, e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_redirect() {
        "was redirected away"
    } else {
        "failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        format!("{what} {kind}")
    } else {
        format!("{what} {kind}: {cause}")
    }
}

/// Reads a body up to [`MAX_BODY_BYTES`].
pub async fn read_capped(mut resp: reqwest::Response, what: &str) -> Result<Vec<u8>, ZohoError> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(ZohoError::Malformed {
                        what: what.to_string(),
                        detail: format!("body larger than {MAX_BODY_BYTES} bytes"),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(ZohoError::Unreachable(describe_transport(what, &e))),
        }
    }
}

/// `Retry-After`, capped (SPEC §12).
pub fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    crate::time_util::parse_retry_after(resp.headers().get("retry-after")?.to_str().ok()?)
}

/// The error code in a CRM (`code`) or Desk (`errorCode`) error body, and its message, each cut
/// to [`MAX_ERROR_TEXT_CHARS`]: they end up in logs, `status` and alerts.
fn error_code(body: &[u8]) -> (String, Option<String>) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = v
        .get("code")
        .or_else(|| v.get("errorCode"))
        .and_then(Value::as_str)
        .map(|c| crate::inert::truncate_chars(c, MAX_ERROR_TEXT_CHARS))
        .unwrap_or_default();
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .map(|m| crate::inert::truncate_chars(m, MAX_ERROR_TEXT_CHARS));
    (code, message)
}

/// How deeply `v` nests; iterative, so a hostile document cannot exhaust the stack here.
pub fn json_depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 1)];
    while let Some((v, depth)) = stack.pop() {
        match v {
            Value::Array(items) => {
                deepest = deepest.max(depth);
                stack.extend(items.iter().map(|i| (i, depth + 1)));
            }
            Value::Object(members) => {
                deepest = deepest.max(depth);
                stack.extend(members.values().map(|m| (m, depth + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Parses a successful body: JSON, and no deeper than [`MAX_JSON_DEPTH`].
fn parse_body(body: &[u8], what: &str) -> Result<Value, ZohoError> {
    let malformed = |detail: String| ZohoError::Malformed {
        what: what.to_string(),
        detail,
    };
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(format!("body is not JSON ({e})")))?;
    let depth = json_depth(&v);
    if depth > MAX_JSON_DEPTH {
        return Err(malformed(format!(
            "body nests {depth} levels deep (at most {MAX_JSON_DEPTH} are accepted)"
        )));
    }
    Ok(v)
}

async fn classify(resp: reqwest::Response, what: &str) -> Result<Option<Value>, Attempt> {
    let status = resp.status();
    let retry_after = retry_after(&resp);
    let body = read_capped(resp, what).await.map_err(|e| match e {
        ZohoError::Unreachable(_) => Attempt::Retry {
            error: e,
            retry_after: None,
        },
        other => Attempt::Final(other),
    })?;
    if status == StatusCode::NO_CONTENT {
        return Ok(None);
    }
    if status.is_success() {
        return parse_body(&body, what).map(Some).map_err(Attempt::Final);
    }
    let (code, message) = error_code(&body);
    let code_or_status = if code.is_empty() {
        status.as_u16().to_string()
    } else {
        code.clone()
    };
    let error = match (status.as_u16(), code.as_str()) {
        (401 | 403, "OAUTH_SCOPE_MISMATCH" | "SCOPE_MISMATCH") => ZohoError::Scope { code: code_or_status },
        (401, _) => ZohoError::Auth { code: code_or_status },
        (403, "FEATURE_NOT_ENABLED" | "LICENSE_ACCESS_LIMITED") | (404, _) => {
            ZohoError::Unavailable { code: code_or_status }
        }
        (429, "THRESHOLD_EXCEEDED") => ZohoError::Throttled {
            code: code_or_status,
            retry_after,
        },
        (429, _) => {
            return Err(Attempt::Retry {
                error: ZohoError::Throttled {
                    code: code_or_status,
                    retry_after,
                },
                retry_after,
            });
        }
        (500..=599, _) => {
            let error = ZohoError::Transient(format!("{what} answered HTTP {} {code}", status.as_u16()));
            return Err(Attempt::Retry { error, retry_after });
        }
        (s, _) => ZohoError::Http {
            status: s,
            what: what.to_string(),
            code: code_or_status,
            message,
        },
    };
    Err(Attempt::Final(error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn depth_counts_containers_and_the_limit_holds_at_fetch() {
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!({"a": [1, {"b": []}]})), 4);
        assert!(parse_body(nested(MAX_JSON_DEPTH).as_bytes(), "GET /x").is_ok());
        let err = parse_body(nested(MAX_JSON_DEPTH + 1).as_bytes(), "GET /x").unwrap_err();
        assert!(err.to_string().contains("nests 65 levels"), "{err}");
        // Deeper than serde_json itself accepts: still a clean error, not a crash.
        assert!(parse_body(nested(500).as_bytes(), "GET /x").is_err());
    }

    #[test]
    fn error_codes_and_messages_are_cut() {
        let long = "X".repeat(5166);
        let body = json!({"errorCode": long, "message": long}).to_string();
        let (code, message) = error_code(body.as_bytes());
        assert!(code.chars().count() <= MAX_ERROR_TEXT_CHARS + 1, "{}", code.len());
        assert!(message.unwrap().chars().count() <= MAX_ERROR_TEXT_CHARS + 1);
    }
}
