//! Zoho failures, classified once so callers match on what to do, never on status codes.

use std::time::Duration;

/// Why a Zoho call failed. Messages never contain tokens or secrets.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ZohoError {
    /// The access token was refused (401); worth one refresh and retry.
    #[error("Zoho refused the access token ({code})")]
    Auth { code: String },
    /// The grant lacks a scope; only a new consent helps.
    #[error("the OAuth grant lacks a scope this source needs ({code})")]
    Scope { code: String },
    /// The refresh token or client was refused by the accounts server.
    #[error("the accounts server refused the refresh token ({code})")]
    GrantRevoked { code: String },
    /// No refresh token at all.
    #[error("not connected: no refresh token (run `auditd connect` or set refresh_token_env)")]
    NotConnected,
    /// 404, or a feature this org's edition lacks.
    #[error("not available for this org ({code})")]
    Unavailable { code: String },
    /// Zoho asked us to slow down, and retrying within this pass would not be polite.
    #[error("throttled by Zoho ({code}){}", retry_after.map(|d| format!("; retry after {}s", d.as_secs())).unwrap_or_default())]
    Throttled {
        code: String,
        retry_after: Option<Duration>,
    },
    /// The local token budget would be exceeded, or an earlier throttling back-off is still running.
    #[error("backing off from token refreshes until {until}")]
    BackingOff { until: String },
    /// 5xx answers that outlasted the retries.
    #[error("{0}")]
    Transient(String),
    /// No answer at all: timeouts, refused connections, DNS, TLS (after the retries).
    #[error("{0}")]
    Unreachable(String),
    /// Any other HTTP error (403 permission, 400, ...).
    #[error("HTTP {status} from {what}: {code}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Http {
        status: u16,
        what: String,
        code: String,
        message: Option<String>,
    },
    /// A secret of ours could not be read (a credential file gone since start-up); names the key only.
    #[error("cannot read the client secret ({0})")]
    Credential(String),
    /// The body was not the JSON this source returns.
    #[error("unexpected response from {what}: {detail}")]
    Malformed { what: String, detail: String },
    /// The token response named an API domain that is not Zoho's; the token is not sent there.
    #[error("refusing api_domain `{0}` from the token response: not a known Zoho API host (set api_domain in the org's config if it is yours)")]
    ApiDomainRefused(String),
    /// The token reaches several Desk orgs and the config does not say which.
    #[error("the token reaches several Desk orgs: {0}; set desk_org_id for this org")]
    DeskOrgAmbiguous(String),
}

impl ZohoError {
    /// A short, stable name of the class, for metrics labels (`auditd_api_requests_total{outcome}`).
    pub fn kind(&self) -> &'static str {
        match self {
            ZohoError::Auth { .. } => "auth",
            ZohoError::Scope { .. } => "scope",
            ZohoError::GrantRevoked { .. } | ZohoError::NotConnected => "grant",
            ZohoError::Unavailable { .. } => "unavailable",
            ZohoError::Throttled { .. } | ZohoError::BackingOff { .. } => "throttled",
            ZohoError::Transient(_) => "transient",
            ZohoError::Unreachable(_) => "unreachable",
            ZohoError::Http { .. } => "http_error",
            ZohoError::Malformed { .. } => "malformed",
            ZohoError::Credential(_) => "credential",
            ZohoError::ApiDomainRefused(_) | ZohoError::DeskOrgAmbiguous(_) => "refused",
        }
    }

    /// Errors after which the org must be reconnected (SPEC §7).
    pub fn needs_reconnect(&self) -> bool {
        matches!(
            self,
            ZohoError::Auth { .. } | ZohoError::Scope { .. } | ZohoError::GrantRevoked { .. } | ZohoError::NotConnected
        )
    }

    /// The short reason stored and reported with needs-reconnect.
    pub fn reconnect_reason(&self) -> String {
        match self {
            ZohoError::NotConnected => "not connected".to_string(),
            ZohoError::Scope { code } => format!("scope: {code}"),
            ZohoError::GrantRevoked { code } => format!("refresh token refused: {code}"),
            ZohoError::Auth { code } => format!("access refused after a fresh token: {code}"),
            other => other.to_string(),
        }
    }
}
