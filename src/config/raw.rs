//! What the user typed: the TOML file (plus `AUDITD__` environment overrides) deserialised as-is.
//! Nothing here is validated beyond its shape; [`super::Config`] is what the program runs on.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub daemon: RawDaemon,
    #[serde(default)]
    pub zoho: RawOAuthClient,
    #[serde(default)]
    pub orgs: Vec<RawOrg>,
    #[serde(default)]
    pub alerts: BTreeMap<String, RawChannel>,
}

/// `[daemon]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub database: Option<PathBuf>,
    pub schedule: Option<String>,
    pub concurrency: Option<i64>,
    pub jitter: Option<String>,
    pub http_timeout: Option<String>,
    pub metrics_listen: Option<String>,
    pub shutdown_grace: Option<String>,
    pub alert_max_attempts: Option<i64>,
    pub alert_max_age: Option<String>,
}

/// `[zoho]`, and the same keys inside an `[[orgs]]` entry, which override it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuthClient {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_env: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub redirect_uri: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub crm_api_version: Option<String>,
    pub max_in_flight: Option<i64>,
}

/// One `[[orgs]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrg {
    pub name: Option<String>,
    pub dc: Option<String>,
    pub refresh_token: Option<String>,
    pub refresh_token_env: Option<String>,
    pub refresh_token_file: Option<PathBuf>,
    pub products: Option<Vec<String>>,
    pub sources: Option<Vec<String>>,
    pub desk_org_id: Option<String>,
    pub schedule: Option<String>,
    pub alerts: Option<Vec<String>>,
    pub ignore: Option<Vec<String>>,
    pub accounts_url: Option<String>,
    pub api_domain: Option<String>,
    pub desk_url: Option<String>,
    // `[zoho]` keys this org overrides. Spelled out rather than `#[serde(flatten)]`, which does
    // not work together with `deny_unknown_fields`.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_env: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub redirect_uri: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub crm_api_version: Option<String>,
    pub max_in_flight: Option<i64>,
}

/// One `[alerts.NAME]` table. Kind-specific keys are checked during validation, so that a key that
/// belongs to the other kind gets a message saying so.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    pub kind: Option<String>,
    // email
    pub smtp_host: Option<String>,
    pub smtp_port: Option<i64>,
    pub tls: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub from: Option<String>,
    pub to: Option<Vec<String>>,
    pub ca_file: Option<PathBuf>,
    // webhook
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub url_file: Option<PathBuf>,
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub format: Option<String>,
}
