//! The configuration auditd runs on: [`RawConfig`] (what the user typed) validated into [`Config`].
//!
//! Loading never stops at the first mistake: every problem is collected with the key it concerns, so
//! one `check-config` run lists them all.

pub mod raw;
mod secret_ref;

pub use secret_ref::SecretRef;

use crate::catalog::{Product, SourceId};
use crate::dc::Dc;
use crate::pointer::PathPattern;
use raw::{RawChannel, RawConfig, RawOrg};
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the config is read from when neither `--config` nor `$AUDITD_CONFIG` says.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/zoho-auditd/auditd.toml";

/// The scopes auditd needs, used when the config names none.
pub const DEFAULT_SCOPES: [&str; 4] = [
    "ZohoCRM.settings.ALL",
    "ZohoCRM.org.READ",
    "Desk.settings.READ",
    "Desk.basic.READ",
];

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path} has {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

/// One thing wrong with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key as a user would look for it: `orgs[acme-us].dc`, `alerts.hook.url`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, for messages.
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    pub orgs: Vec<OrgConfig>,
    pub channels: Vec<ChannelConfig>,
    /// Non-fatal findings (an inline secret in a file others can read), logged by the caller.
    pub warnings: Vec<String>,
}

/// `[daemon]`.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub database: PathBuf,
    /// The global schedule, six fields (seconds first).
    pub schedule: String,
    /// How many orgs are audited at once.
    pub concurrency: usize,
    /// Upper bound of the random delay before each org's audit.
    pub jitter: Duration,
    pub http_timeout: Duration,
    pub metrics_listen: Option<SocketAddr>,
    /// How long in-flight audits may go on after SIGTERM.
    pub shutdown_grace: Duration,
    /// An alert row is dead after this many failed attempts...
    pub alert_max_attempts: u32,
    /// ...or after a failure this long after the alert was created (or requeued).
    pub alert_max_age: Duration,
}

/// The OAuth client an org authenticates with (`[zoho]`, with the org's overrides applied).
#[derive(Debug, Clone)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: SecretRef,
    /// The key the secret was configured under (`zoho.client_secret` or `orgs[NAME].client_secret`).
    pub client_secret_key: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
}

/// One `[[orgs]]` entry.
#[derive(Debug, Clone)]
pub struct OrgConfig {
    pub name: String,
    pub dc: Dc,
    pub client: OAuthClient,
    pub crm_api_version: String,
    /// At most this many requests to Zoho at once for this org (Zoho allows 5 to 25 by edition).
    pub max_in_flight: usize,
    /// The refresh token from the config; one stored by `auditd connect` wins over it.
    pub refresh_token: Option<SecretRef>,
    /// The sources to audit, in catalog order.
    pub sources: Vec<SourceId>,
    pub desk_org_id: Option<String>,
    /// This org's own schedule (six fields), when it overrides the global one.
    pub schedule: Option<String>,
    /// The channel names this org's alerts go to.
    pub channels: Vec<String>,
    pub ignore: Vec<PathPattern>,
    pub accounts_url: String,
    /// An API domain fixed by the config; when set, the token response's `api_domain` is ignored.
    pub api_domain_override: Option<String>,
    /// The Desk base URL (requests go to `{desk_url}/api/v1/...`); `None` when the DC has no Desk.
    pub desk_url: Option<String>,
}

/// One alert channel.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    pub name: String,
    pub kind: ChannelKind,
}

/// What a channel delivers through.
#[derive(Debug, Clone)]
pub enum ChannelKind {
    Email(EmailChannel),
    Webhook(WebhookChannel),
}

impl ChannelKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ChannelKind::Email(_) => "email",
            ChannelKind::Webhook(_) => "webhook",
        }
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    StartTls,
    /// Implicit TLS from the first byte (usually port 465).
    Tls,
    /// Plain text; allowed only to a loopback host.
    None,
}

/// `kind = "email"`.
#[derive(Debug, Clone)]
pub struct EmailChannel {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<SecretRef>,
    pub from: String,
    pub to: Vec<String>,
    /// An extra trust anchor (PEM) for private CAs.
    pub ca_file: Option<PathBuf>,
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// auditd's own payload, version 1.
    Json,
    /// A Slack-compatible `{"text": ...}` message.
    Slack,
}

/// `kind = "webhook"`.
#[derive(Debug, Clone)]
pub struct WebhookChannel {
    /// A secret: a Slack incoming-webhook URL is its own credential. Printed only as
    /// [`redact_url`] shows it.
    pub url: SecretRef,
    /// HMAC-SHA256 key for `X-Auditd-Signature`.
    pub secret: Option<SecretRef>,
    pub format: WebhookFormat,
}

impl Config {
    /// Reads and validates the file at `path`, with `AUDITD__SECTION__KEY` environment overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        // Read the file ourselves first: the `config` crate's message for a missing file does not
        // say which file, and we want the OS error as the cause.
        std::fs::metadata(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: RawConfig = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("AUDITD")
                    .prefix_separator("__")
                    .separator("__"),
            )
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let mut config = validate(raw, path)?;
        if file_is_readable_by_others(path) && config.has_inline_secret() {
            config.warnings.push(format!(
                "{} holds an inline secret and is readable by group or others; use *_env or *_file, or chmod 600",
                path.display()
            ));
        }
        let exposed = config.exposed_secret_files();
        config.warnings.extend(exposed);
        Ok(config)
    }

    /// Resolves every secret once, so that a missing variable or unreadable file is a config error
    /// (exit 78) before any work starts, not a failure halfway through a pass.
    pub fn check_secrets(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        for (key, secret) in self.secret_refs() {
            let checked = secret.resolve().and_then(|value| match key.ends_with(".url") {
                true => validate_url(value.expose(), &redact_url(value.expose())).map(|_| ()),
                false => Ok(()),
            });
            if let Err(message) = checked {
                problems.push(Problem { key, message });
            }
        }
        // A [zoho] secret shared by many orgs is one problem, not one per org.
        let mut seen: Vec<Problem> = Vec::new();
        problems.retain(|p| {
            let first = !seen.contains(p);
            seen.push(p.clone());
            first
        });
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                path: self.path.clone(),
                problems,
            })
        }
    }

    /// The org named `name`.
    pub fn org(&self, name: &str) -> Option<&OrgConfig> {
        self.orgs.iter().find(|o| o.name == name)
    }

    /// The channel named `name`.
    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// Every configured secret with its key (`orgs[acme].refresh_token`, `alerts.hook.url`, ...).
    fn secret_refs(&self) -> Vec<(String, &SecretRef)> {
        let mut refs = Vec::new();
        for org in &self.orgs {
            refs.push((org.client.client_secret_key.clone(), &org.client.client_secret));
            if let Some(t) = &org.refresh_token {
                refs.push((format!("orgs[{}].refresh_token", org.name), t));
            }
        }
        for ch in &self.channels {
            match &ch.kind {
                ChannelKind::Email(e) => {
                    if let Some(p) = &e.password {
                        refs.push((format!("alerts.{}.password", ch.name), p));
                    }
                }
                ChannelKind::Webhook(w) => {
                    if let Some(s) = &w.secret {
                        refs.push((format!("alerts.{}.secret", ch.name), s));
                    }
                    refs.push((format!("alerts.{}.url", ch.name), &w.url));
                }
            }
        }
        refs
    }

    fn has_inline_secret(&self) -> bool {
        self.secret_refs().iter().any(|(_, s)| s.is_inline())
    }

    /// Secret files that group or others may read, each named once with the key that uses it.
    fn exposed_secret_files(&self) -> Vec<String> {
        let mut seen = Vec::new();
        let mut warnings = Vec::new();
        for (key, secret) in self.secret_refs() {
            let Some(path) = secret.file() else { continue };
            if seen.contains(&path) || !file_is_readable_by_others(path) {
                continue;
            }
            seen.push(path);
            warnings.push(format!(
                "{key}_file: {} is readable by group or others; chmod 600 it (or use systemd's LoadCredential=)",
                path.display()
            ));
        }
        warnings
    }
}

#[cfg(unix)]
fn file_is_readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o044 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn file_is_readable_by_others(_: &Path) -> bool {
    false
}

/// Collects problems while validating.
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Runs a parse, recording its error against `key`.
    fn parse<T>(&mut self, key: &str, r: Result<T, String>) -> Option<T> {
        r.map_err(|m| self.problem(key, m)).ok()
    }

    fn duration(&mut self, key: &str, value: Option<&str>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(v) => self.parse(key, crate::time_util::parse_duration(v)).unwrap_or(default),
        }
    }

    /// One secret given as `X`, `X_env` or `X_file`.
    fn secret(
        &mut self,
        key: &str,
        inline: Option<&String>,
        env: Option<&String>,
        file: Option<&PathBuf>,
    ) -> Option<SecretRef> {
        match (inline, env, file) {
            (None, None, None) => None,
            (Some(v), None, None) => Some(SecretRef::Inline(crate::secret::Secret::new(v.clone()))),
            (None, Some(var), None) => {
                if var.is_empty() {
                    self.problem(format!("{key}_env"), "names no environment variable");
                }
                Some(SecretRef::Env(var.clone()))
            }
            (None, None, Some(p)) => Some(SecretRef::File(secret_ref::credential_path(p))),
            _ => {
                self.problem(key, format!("give only one of `{key}`, `{key}_env` and `{key}_file`"));
                None
            }
        }
    }
}

/// Normalises a cron expression to the six fields tokio-cron-scheduler wants: a five-field crontab
/// line is taken as if it started with `0 ` (second zero).
pub fn normalise_schedule(expr: &str) -> Result<String, String> {
    let fields = expr.split_whitespace().count();
    let six = match fields {
        5 => format!("0 {}", expr.trim()),
        6 | 7 => expr.trim().to_string(),
        n => {
            return Err(format!(
                "`{expr}` has {n} fields; expected six (seconds first, e.g. \"0 */15 * * * *\") or a five-field crontab line"
            ))
        }
    };
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(&six)
        .map_err(|e| format!("`{expr}` is not a valid cron expression: {e}"))?;
    Ok(six)
}

/// `https`, or `http` to a loopback host (tests, local gateways).
fn check_url(c: &mut Checker, key: &str, url: &str) -> Option<String> {
    c.parse(key, validate_url(url, &format!("`{url}`")))
}

/// A URL as messages may show it when its path or query may be a credential: scheme, host and port.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}/…",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "(not a URL)".to_string(),
    }
}

/// https, or http to a loopback host. `shown` is how messages name the URL.
fn validate_url(url: &str, shown: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{shown} is not a URL: {e}"))?;
    let loopback = parsed.host().is_some_and(|h| match h {
        url::Host::Domain(d) => d == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    });
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "{shown} must use https (plain http is allowed only to a loopback host)"
            ))
        }
        other => return Err(format!("{shown} has scheme `{other}`; expected https")),
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Is `host` a loopback name or address?
pub fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn default_database() -> PathBuf {
    match std::env::var_os("STATE_DIRECTORY") {
        // systemd may pass several directories separated by `:`; the first is ours.
        Some(dirs) if !dirs.is_empty() => {
            let first = dirs.to_string_lossy().split(':').next().unwrap_or_default().to_string();
            PathBuf::from(first).join("auditd.db")
        }
        _ => PathBuf::from("auditd.db"),
    }
}

fn validate(raw: RawConfig, path: &Path) -> Result<Config, ConfigError> {
    let mut c = Checker { problems: Vec::new() };
    let d = &raw.daemon;
    let schedule = c
        .parse(
            "daemon.schedule",
            normalise_schedule(d.schedule.as_deref().unwrap_or("0 */15 * * * *")),
        )
        .unwrap_or_default();
    let concurrency = match d.concurrency {
        None => 8,
        Some(n) if (1..=256).contains(&n) => n as usize,
        Some(n) => {
            c.problem("daemon.concurrency", format!("{n} is out of range (1 to 256)"));
            1
        }
    };
    let metrics_listen = d.metrics_listen.as_deref().and_then(|a| {
        c.parse(
            "daemon.metrics_listen",
            a.parse::<SocketAddr>()
                .map_err(|_| format!("`{a}` is not an address like 127.0.0.1:9187")),
        )
    });
    let daemon = DaemonConfig {
        database: d.database.clone().unwrap_or_else(default_database),
        schedule,
        concurrency,
        jitter: c.duration("daemon.jitter", d.jitter.as_deref(), Duration::from_secs(30)),
        http_timeout: c.duration(
            "daemon.http_timeout",
            d.http_timeout.as_deref(),
            Duration::from_secs(30),
        ),
        metrics_listen,
        shutdown_grace: c.duration(
            "daemon.shutdown_grace",
            d.shutdown_grace.as_deref(),
            Duration::from_secs(20),
        ),
        alert_max_attempts: match d.alert_max_attempts {
            None => 20,
            Some(n) if (1..=1000).contains(&n) => n as u32,
            Some(n) => {
                c.problem("daemon.alert_max_attempts", format!("{n} is out of range (1 to 1000)"));
                20
            }
        },
        alert_max_age: c.duration(
            "daemon.alert_max_age",
            d.alert_max_age.as_deref(),
            Duration::from_secs(24 * 3600),
        ),
    };
    if daemon.http_timeout.is_zero() {
        c.problem("daemon.http_timeout", "must be more than 0s");
    }

    let mut channels = Vec::new();
    for (name, ch) in &raw.alerts {
        if let Some(channel) = validate_channel(&mut c, name, ch) {
            channels.push(channel);
        }
    }

    let mut orgs: Vec<OrgConfig> = Vec::new();
    let mut names = BTreeSet::new();
    for (i, org) in raw.orgs.iter().enumerate() {
        let label = match &org.name {
            Some(n) => format!("orgs[{n}]"),
            None => format!("orgs[{i}]"),
        };
        if let Some(o) = validate_org(&mut c, &label, org, &raw, &channels) {
            if !names.insert(o.name.clone()) {
                c.problem(
                    format!("{label}.name"),
                    format!("`{}` is used by more than one org", o.name),
                );
            }
            orgs.push(o);
        }
    }

    if c.problems.is_empty() {
        Ok(Config {
            path: path.to_path_buf(),
            daemon,
            orgs,
            channels,
            warnings: Vec::new(),
        })
    } else {
        Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: c.problems,
        })
    }
}

fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_')
}

fn validate_org(
    c: &mut Checker,
    label: &str,
    org: &RawOrg,
    raw: &RawConfig,
    channels: &[ChannelConfig],
) -> Option<OrgConfig> {
    let key = |k: &str| format!("{label}.{k}");
    let name = match &org.name {
        None => {
            c.problem(key("name"), "is required");
            return None;
        }
        Some(n) if !is_valid_name(n) => {
            c.problem(
                key("name"),
                format!("`{n}` may use only a-z, 0-9, `-` and `_` (at most 64)"),
            );
            return None;
        }
        Some(n) => n.clone(),
    };
    let dc = match &org.dc {
        None => {
            c.problem(key("dc"), format!("is required (one of {})", Dc::names().join(", ")));
            None
        }
        Some(s) => c.parse(&key("dc"), s.parse::<Dc>()),
    };

    // The OAuth client: the org's keys win over [zoho].
    let z = &raw.zoho;
    let client_id = org.client_id.clone().or_else(|| z.client_id.clone());
    if client_id.is_none() {
        c.problem(
            key("client_id"),
            "no OAuth client: set zoho.client_id (or the org's client_id)",
        );
    }
    let org_secret = c.secret(
        &key("client_secret"),
        org.client_secret.as_ref(),
        org.client_secret_env.as_ref(),
        org.client_secret_file.as_ref(),
    );
    // Where the secret came from, so a problem with it names the key the user wrote.
    let client_secret_key = if org_secret.is_some() {
        key("client_secret")
    } else {
        "zoho.client_secret".into()
    };
    let client_secret = org_secret.or_else(|| {
        c.secret(
            "zoho.client_secret",
            z.client_secret.as_ref(),
            z.client_secret_env.as_ref(),
            z.client_secret_file.as_ref(),
        )
    });
    if client_secret.is_none() {
        c.problem(
            key("client_secret"),
            "no client secret: set zoho.client_secret_env (or _file)",
        );
    }
    let redirect_uri = org
        .redirect_uri
        .clone()
        .or_else(|| z.redirect_uri.clone())
        .unwrap_or_else(|| "http://127.0.0.1:8765/callback".to_string());
    check_url(c, &key("redirect_uri"), &redirect_uri);
    let scopes = org
        .scopes
        .clone()
        .or_else(|| z.scopes.clone())
        .unwrap_or_else(|| DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect());
    let crm_api_version = org
        .crm_api_version
        .clone()
        .or_else(|| z.crm_api_version.clone())
        .unwrap_or_else(|| "v8".into());
    if !(crm_api_version.starts_with('v')
        && crm_api_version.len() > 1
        && crm_api_version[1..].chars().all(|ch| ch.is_ascii_digit()))
    {
        c.problem(
            key("crm_api_version"),
            format!("`{crm_api_version}` is not like \"v8\""),
        );
    }

    let max_in_flight = match org.max_in_flight.or(z.max_in_flight) {
        None => 3,
        Some(n) if (1..=25).contains(&n) => n as usize,
        Some(n) => {
            c.problem(key("max_in_flight"), format!("{n} is out of range (1 to 25)"));
            3
        }
    };
    let refresh_token = c.secret(
        &key("refresh_token"),
        org.refresh_token.as_ref(),
        org.refresh_token_env.as_ref(),
        org.refresh_token_file.as_ref(),
    );

    let products: Vec<Product> = match &org.products {
        None => Product::ALL.to_vec(),
        Some(list) if list.is_empty() => {
            c.problem(
                key("products"),
                "is empty; list \"crm\" and/or \"desk\" or leave it out",
            );
            Vec::new()
        }
        Some(list) => list
            .iter()
            .filter_map(|p| c.parse(&key("products"), p.parse()))
            .collect(),
    };
    let sources: Vec<SourceId> = match &org.sources {
        None => SourceId::all().filter(|s| products.contains(&s.product())).collect(),
        Some(list) => {
            let mut chosen: Vec<SourceId> = Vec::new();
            for s in list {
                if let Some(id) = c.parse(&key("sources"), s.parse::<SourceId>()) {
                    if !products.contains(&id.product()) {
                        c.problem(
                            key("sources"),
                            format!("`{id}` belongs to {}, which is not in products", id.product()),
                        );
                    } else if !chosen.contains(&id) {
                        chosen.push(id);
                    }
                }
            }
            if list.is_empty() {
                c.problem(key("sources"), "is empty; leave it out to audit every source");
            }
            chosen.sort();
            chosen
        }
    };
    if let Some(id) = &org.desk_org_id {
        if id.is_empty() || !id.chars().all(|ch| ch.is_ascii_digit()) {
            c.problem(
                key("desk_org_id"),
                format!("`{id}` is not a Desk org id (digits, as a string)"),
            );
        }
    }
    let schedule = org
        .schedule
        .as_deref()
        .and_then(|s| c.parse(&key("schedule"), normalise_schedule(s)));
    let channel_names: Vec<String> = match &org.alerts {
        None => channels.iter().map(|ch| ch.name.clone()).collect(),
        Some(list) => {
            for n in list {
                if !channels.iter().any(|ch| &ch.name == n) {
                    c.problem(
                        key("alerts"),
                        format!("names channel `{n}`, but there is no [alerts.{n}]"),
                    );
                }
            }
            list.clone()
        }
    };
    let ignore = org
        .ignore
        .iter()
        .flatten()
        .filter_map(|p| c.parse(&key("ignore"), PathPattern::parse(p)))
        .collect();
    let url = |c: &mut Checker, k: &str, v: &Option<String>| v.as_deref().and_then(|u| check_url(c, &key(k), u));
    let accounts_override = url(c, "accounts_url", &org.accounts_url);
    let api_domain_override = url(c, "api_domain", &org.api_domain);
    let desk_override = url(c, "desk_url", &org.desk_url);

    let dc = dc?;
    let desk_url = desk_override.or_else(|| dc.desk_url().map(str::to_string));
    if desk_url.is_none() && sources.iter().any(|s| s.product() == Product::Desk) {
        c.problem(
            key("desk_url"),
            format!("Zoho documents no Desk in the `{dc}` data centre: set desk_url or products = [\"crm\"]"),
        );
    }
    Some(OrgConfig {
        name,
        dc,
        client: OAuthClient {
            client_id: client_id?,
            client_secret: client_secret?,
            client_secret_key,
            redirect_uri,
            scopes,
        },
        crm_api_version,
        max_in_flight,
        refresh_token,
        sources,
        desk_org_id: org.desk_org_id.clone(),
        schedule,
        channels: channel_names,
        ignore,
        accounts_url: accounts_override.unwrap_or_else(|| dc.accounts_url().to_string()),
        api_domain_override,
        desk_url,
    })
}

fn validate_channel(c: &mut Checker, name: &str, ch: &RawChannel) -> Option<ChannelConfig> {
    let key = |k: &str| format!("alerts.{name}.{k}");
    if !is_valid_name(name) {
        c.problem(
            format!("alerts.{name}"),
            "channel names may use only a-z, 0-9, `-` and `_`",
        );
    }
    // Keys that belong to one kind only, so a stray one gets a precise message.
    let email_keys: [(&str, bool); 10] = [
        ("smtp_host", ch.smtp_host.is_some()),
        ("smtp_port", ch.smtp_port.is_some()),
        ("tls", ch.tls.is_some()),
        ("username", ch.username.is_some()),
        ("password", ch.password.is_some()),
        ("password_env", ch.password_env.is_some()),
        ("password_file", ch.password_file.is_some()),
        ("from", ch.from.is_some()),
        ("to", ch.to.is_some()),
        ("ca_file", ch.ca_file.is_some()),
    ];
    let webhook_keys: [(&str, bool); 7] = [
        ("url", ch.url.is_some()),
        ("url_env", ch.url_env.is_some()),
        ("url_file", ch.url_file.is_some()),
        ("secret", ch.secret.is_some()),
        ("secret_env", ch.secret_env.is_some()),
        ("secret_file", ch.secret_file.is_some()),
        ("format", ch.format.is_some()),
    ];
    let reject = |c: &mut Checker, keys: &[(&str, bool)], kind: &str| {
        for (k, present) in keys {
            if *present {
                c.problem(key(k), format!("is not a key of a `{kind}` channel"));
            }
        }
    };
    let kind = match ch.kind.as_deref() {
        Some("email") => {
            reject(c, &webhook_keys, "email");
            let smtp_host = ch.smtp_host.clone().unwrap_or_else(|| {
                c.problem(key("smtp_host"), "is required");
                String::new()
            });
            let tls = match ch.tls.as_deref().unwrap_or("starttls") {
                "starttls" => SmtpTls::StartTls,
                "tls" => SmtpTls::Tls,
                "none" => SmtpTls::None,
                other => {
                    c.problem(key("tls"), format!("`{other}` is not one of starttls, tls, none"));
                    SmtpTls::StartTls
                }
            };
            if tls == SmtpTls::None && !smtp_host.is_empty() && !is_loopback_host(&smtp_host) {
                c.problem(
                    key("tls"),
                    format!(
                        "\"none\" sends mail in clear text; it is allowed only to a loopback host, not `{smtp_host}`"
                    ),
                );
            }
            let default_port = match tls {
                SmtpTls::Tls => 465,
                SmtpTls::StartTls => 587,
                SmtpTls::None => 25,
            };
            let smtp_port = match ch.smtp_port {
                None => default_port,
                Some(p) if (1..=65535).contains(&p) => p as u16,
                Some(p) => {
                    c.problem(key("smtp_port"), format!("{p} is not a port"));
                    default_port
                }
            };
            let password = c.secret(
                &key("password"),
                ch.password.as_ref(),
                ch.password_env.as_ref(),
                ch.password_file.as_ref(),
            );
            if password.is_some() && ch.username.is_none() {
                c.problem(key("username"), "is required when a password is set");
            }
            let from = ch.from.clone().unwrap_or_else(|| {
                c.problem(key("from"), "is required");
                String::new()
            });
            if !from.is_empty() && from.parse::<lettre::message::Mailbox>().is_err() {
                c.problem(
                    key("from"),
                    format!("`{from}` is not an address like \"auditd <auditd@example.com>\""),
                );
            }
            let to = ch.to.clone().unwrap_or_default();
            if to.is_empty() {
                c.problem(key("to"), "needs at least one address");
            }
            for addr in &to {
                if addr.parse::<lettre::message::Mailbox>().is_err() {
                    c.problem(key("to"), format!("`{addr}` is not an email address"));
                }
            }
            let ca_file = ch.ca_file.clone();
            if let Some(p) = &ca_file {
                if let Err(e) = std::fs::read(p) {
                    c.problem(key("ca_file"), format!("cannot read {}: {e}", p.display()));
                }
            }
            ChannelKind::Email(EmailChannel {
                smtp_host,
                smtp_port,
                tls,
                username: ch.username.clone(),
                password,
                from,
                to,
                ca_file,
            })
        }
        Some("webhook") => {
            reject(c, &email_keys, "webhook");
            let url = c.secret(&key("url"), ch.url.as_ref(), ch.url_env.as_ref(), ch.url_file.as_ref());
            let url = match url {
                None => {
                    c.problem(key("url"), "is required (url, url_env or url_file)");
                    SecretRef::Inline(crate::secret::Secret::new(""))
                }
                Some(SecretRef::Inline(u)) => {
                    let checked = validate_url(u.expose(), &redact_url(u.expose()));
                    let checked = c.parse(&key("url"), checked).unwrap_or_default();
                    SecretRef::Inline(crate::secret::Secret::new(checked))
                }
                // Resolved and checked with the other secrets.
                Some(other) => other,
            };
            let format = match ch.format.as_deref().unwrap_or("json") {
                "json" => WebhookFormat::Json,
                "slack" => WebhookFormat::Slack,
                other => {
                    c.problem(key("format"), format!("`{other}` is not one of json, slack"));
                    WebhookFormat::Json
                }
            };
            let secret = c.secret(
                &key("secret"),
                ch.secret.as_ref(),
                ch.secret_env.as_ref(),
                ch.secret_file.as_ref(),
            );
            ChannelKind::Webhook(WebhookChannel { url, secret, format })
        }
        Some(other) => {
            c.problem(key("kind"), format!("`{other}` is not one of email, webhook"));
            return None;
        }
        None => {
            c.problem(key("kind"), "is required (\"email\" or \"webhook\")");
            return None;
        }
    };
    Some(ChannelConfig {
        name: name.to_string(),
        kind,
    })
}

#[cfg(test)]
mod tests;
