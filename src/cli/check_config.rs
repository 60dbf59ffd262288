//! `auditd check-config`: validate, then print the effective config with every secret masked.

use super::load_config;
use crate::config::{ChannelKind, Config, SmtpTls, WebhookFormat};
use crate::exit::ExitCode;
use crate::time_util::format_duration;
use std::fmt::Write;
use std::path::Path;

pub fn run(path: &Path) -> ExitCode {
    match load_config(path, true) {
        Ok(c) => {
            print!("{}", render(&c));
            eprintln!(
                "auditd: {} is valid ({} org(s), {} channel(s))",
                c.path.display(),
                c.orgs.len(),
                c.channels.len()
            );
            ExitCode::Clean
        }
        Err(code) => code,
    }
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The effective config as TOML-like text. Secrets show where they come from, never their value.
pub fn render(c: &Config) -> String {
    let d = &c.daemon;
    let mut o = String::new();
    let _ = writeln!(o, "# effective configuration of {}\n[daemon]", c.path.display());
    let _ = writeln!(o, "database = {:?}", d.database.display().to_string());
    let _ = writeln!(o, "schedule = {:?}", d.schedule);
    let _ = writeln!(o, "concurrency = {}", d.concurrency);
    let _ = writeln!(o, "jitter = {:?}", format_duration(d.jitter));
    let _ = writeln!(o, "http_timeout = {:?}", format_duration(d.http_timeout));
    if let Some(m) = d.metrics_listen {
        let _ = writeln!(o, "metrics_listen = {:?}", m.to_string());
    }
    let _ = writeln!(o, "shutdown_grace = {:?}", format_duration(d.shutdown_grace));
    let _ = writeln!(o, "alert_max_attempts = {}", d.alert_max_attempts);
    let _ = writeln!(o, "alert_max_age = {:?}", format_duration(d.alert_max_age));
    for org in &c.orgs {
        let _ = writeln!(o, "\n[[orgs]]\nname = {:?}\ndc = {:?}", org.name, org.dc.as_str());
        let _ = writeln!(
            o,
            "client_id = {:?}\nclient_secret = {:?}",
            org.client.client_id,
            org.client.client_secret.describe()
        );
        let _ = writeln!(
            o,
            "redirect_uri = {:?}\nscopes = {}",
            org.client.redirect_uri,
            list(&org.client.scopes)
        );
        let _ = writeln!(o, "crm_api_version = {:?}", org.crm_api_version);
        let _ = writeln!(o, "max_in_flight = {}", org.max_in_flight);
        let token = org
            .refresh_token
            .as_ref()
            .map(|t| t.describe())
            .unwrap_or_else(|| "(none: use `auditd connect`)".into());
        let _ = writeln!(o, "refresh_token = {token:?}");
        let sources: Vec<String> = org.sources.iter().map(|s| s.as_str().to_string()).collect();
        let _ = writeln!(o, "sources = {}", list(&sources));
        if let Some(id) = &org.desk_org_id {
            let _ = writeln!(o, "desk_org_id = {id:?}");
        }
        if let Some(s) = &org.schedule {
            let _ = writeln!(o, "schedule = {s:?}");
        }
        let _ = writeln!(o, "alerts = {}", list(&org.channels));
        let ignore: Vec<String> = org.ignore.iter().map(|p| p.as_str().to_string()).collect();
        let _ = writeln!(o, "ignore = {}", list(&ignore));
        let _ = writeln!(o, "accounts_url = {:?}", org.accounts_url);
        let api = org
            .api_domain_override
            .clone()
            .unwrap_or_else(|| format!("(from the token, else {})", org.dc.api_domain()));
        let _ = writeln!(o, "api_domain = {api:?}");
        let _ = writeln!(
            o,
            "desk_url = {:?}",
            org.desk_url.clone().unwrap_or_else(|| "(none)".into())
        );
    }
    for ch in &c.channels {
        let _ = writeln!(o, "\n[alerts.{}]\nkind = {:?}", ch.name, ch.kind.as_str());
        match &ch.kind {
            ChannelKind::Email(e) => {
                let tls = match e.tls {
                    SmtpTls::StartTls => "starttls",
                    SmtpTls::Tls => "tls",
                    SmtpTls::None => "none",
                };
                let _ = writeln!(
                    o,
                    "smtp_host = {:?}\nsmtp_port = {}\ntls = {tls:?}",
                    e.smtp_host, e.smtp_port
                );
                if let Some(u) = &e.username {
                    let _ = writeln!(o, "username = {u:?}");
                }
                if let Some(p) = &e.password {
                    let _ = writeln!(o, "password = {:?}", p.describe());
                }
                let _ = writeln!(o, "from = {:?}\nto = {}", e.from, list(&e.to));
                if let Some(ca) = &e.ca_file {
                    let _ = writeln!(o, "ca_file = {:?}", ca.display().to_string());
                }
            }
            ChannelKind::Webhook(w) => {
                let url = match &w.url {
                    crate::config::SecretRef::Inline(u) => {
                        format!("{} (path hidden)", crate::config::redact_url(u.expose()))
                    }
                    other => other.describe(),
                };
                let _ = writeln!(o, "url = {url:?}");
                if let Some(s) = &w.secret {
                    let _ = writeln!(o, "secret = {:?}", s.describe());
                }
                let format = match w.format {
                    WebhookFormat::Json => "json",
                    WebhookFormat::Slack => "slack",
                };
                let _ = writeln!(o, "format = {format:?}");
            }
        }
    }
    o
}
