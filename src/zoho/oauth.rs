//! Zoho OAuth: the refresh-token and authorization-code grants at `{accounts}/oauth/v2/token`.
//!
//! Zoho reports most failures with HTTP 200 and an `error` field; success is the presence of
//! `access_token`.

use super::http::{describe_transport, read_capped};
use super::ZohoError;
use crate::config::OAuthClient;
use crate::secret::Secret;
use serde_json::Value;
use std::time::Duration;

/// Zoho mints at most 10 access tokens per refresh token per 10 minutes.
pub const MINT_WINDOW_SECS: i64 = 600;
/// We stop one short of Zoho's limit, so that `connect` or a human still has one left.
pub const MINT_BUDGET: usize = 9;
/// "Access Denied" throttling: back off at least this long.
pub const THROTTLE_BACKOFF_SECS: i64 = 600;
/// A cached access token is used only while it has more than this left.
pub const EXPIRY_MARGIN_SECS: i64 = 120;
/// The longest lifetime a token response is believed for (Zoho's tokens live an hour).
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 86_400;

/// A successful token response.
#[derive(Debug)]
pub struct TokenGrant {
    pub access_token: Secret,
    pub expires_in: Duration,
    pub api_domain: Option<String>,
    /// Only on the authorization-code grant.
    pub refresh_token: Option<Secret>,
}

/// The refresh-token grant.
pub async fn refresh(
    http: &reqwest::Client,
    accounts_url: &str,
    client: &OAuthClient,
    client_secret: &Secret,
    refresh_token: &Secret,
) -> Result<TokenGrant, ZohoError> {
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", client.client_id.as_str()),
        ("client_secret", client_secret.expose()),
        ("refresh_token", refresh_token.expose()),
    ];
    post_token(http, accounts_url, &form).await
}

/// The authorization-code grant (`auditd connect`).
pub async fn exchange_code(
    http: &reqwest::Client,
    accounts_url: &str,
    client: &OAuthClient,
    client_secret: &Secret,
    code: &Secret,
) -> Result<TokenGrant, ZohoError> {
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", client.client_id.as_str()),
        ("client_secret", client_secret.expose()),
        ("redirect_uri", client.redirect_uri.as_str()),
        ("code", code.expose()),
    ];
    post_token(http, accounts_url, &form).await
}

async fn post_token(
    http: &reqwest::Client,
    accounts_url: &str,
    form: &[(&str, &str)],
) -> Result<TokenGrant, ZohoError> {
    let what = "POST /oauth/v2/token";
    let resp = http
        .post(format!("{accounts_url}/oauth/v2/token"))
        .form(form)
        .send()
        .await
        .map_err(|e| ZohoError::Unreachable(describe_transport(what, &e)))?;
    let status = resp.status().as_u16();
    let body = read_capped(resp, what).await?;
    parse_token_response(status, &body)
}

/// Reads a token endpoint answer (any status).
pub fn parse_token_response(status: u16, body: &[u8]) -> Result<TokenGrant, ZohoError> {
    let what = "the token endpoint".to_string();
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) if status >= 500 => return Err(ZohoError::Transient(format!("{what} answered HTTP {status}"))),
        Err(e) => {
            return Err(ZohoError::Malformed {
                what,
                detail: format!("HTTP {status}, body is not JSON ({e})"),
            })
        }
    };
    if let Some(token) = v.get("access_token").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        // With `expires_in_sec` present, `expires_in` is in milliseconds (as Zoho's own SDK reads it).
        let secs = match v.get("expires_in_sec").and_then(Value::as_u64) {
            Some(s) => s,
            None => v.get("expires_in").and_then(Value::as_u64).unwrap_or(3600),
        };
        return Ok(TokenGrant {
            access_token: Secret::new(token),
            // Zoho's tokens live an hour; a claim of years is not believed (nor overflows).
            expires_in: Duration::from_secs(secs.min(MAX_TOKEN_LIFETIME_SECS)),
            api_domain: v.get("api_domain").and_then(Value::as_str).map(str::to_string),
            refresh_token: v.get("refresh_token").and_then(Value::as_str).map(Secret::new),
        });
    }
    let error = v.get("error").and_then(Value::as_str).unwrap_or("");
    match error {
        "invalid_code" | "invalid_client" => Err(ZohoError::GrantRevoked {
            code: error.to_string(),
        }),
        "Access Denied" => Err(ZohoError::Throttled {
            code: "Access Denied".into(),
            retry_after: Some(Duration::from_secs(THROTTLE_BACKOFF_SECS as u64)),
        }),
        "" if status >= 500 => Err(ZohoError::Transient(format!("{what} answered HTTP {status}"))),
        "" => Err(ZohoError::Malformed {
            what,
            detail: format!("HTTP {status} without access_token or error"),
        }),
        other => Err(ZohoError::Http {
            status,
            what,
            code: other.chars().take(80).collect(),
            message: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoho_errors_arrive_with_http_200() {
        assert!(matches!(
            parse_token_response(200, br#"{"error":"invalid_code"}"#),
            Err(ZohoError::GrantRevoked { .. })
        ));
        assert!(matches!(
            parse_token_response(200, br#"{"error":"invalid_client"}"#),
            Err(ZohoError::GrantRevoked { .. })
        ));
        assert!(matches!(
            parse_token_response(
                400,
                br#"{"error":"Access Denied","error_description":"..","status":"failure"}"#
            ),
            Err(ZohoError::Throttled { .. })
        ));
        assert!(matches!(
            parse_token_response(200, br#"{"error":"invalid_client_secret"}"#),
            Err(ZohoError::Http { .. })
        ));
        assert!(matches!(
            parse_token_response(502, b"<html>"),
            Err(ZohoError::Transient(_))
        ));
    }

    #[test]
    fn an_absurd_expiry_is_cut_to_a_day() {
        let g = parse_token_response(200, br#"{"access_token":"a","expires_in":18446744073709551615}"#).unwrap();
        assert_eq!(g.expires_in, Duration::from_secs(MAX_TOKEN_LIFETIME_SECS));
    }

    #[test]
    fn expires_in_is_milliseconds_when_expires_in_sec_is_present() {
        let g = parse_token_response(
            200,
            br#"{"access_token":"a","expires_in":3600000,"expires_in_sec":3600}"#,
        )
        .unwrap();
        assert_eq!(g.expires_in, Duration::from_secs(3600));
        let g = parse_token_response(
            200,
            br#"{"access_token":"a","expires_in":3600,"api_domain":"https://www.zohoapis.eu"}"#,
        )
        .unwrap();
        assert_eq!(g.expires_in, Duration::from_secs(3600));
        assert_eq!(g.api_domain.as_deref(), Some("https://www.zohoapis.eu"));
    }
}
