//! `auditd --once`: one pass, a summary, a CI-friendly exit code.

use super::{load_config, report};
use crate::alert::DeliveryMode;
use crate::audit::{self, Context, PassReport};
use crate::exit::ExitCode;
use crate::store::{AuditLock, Store};
use anyhow::Context as _;
use std::path::Path;
use std::sync::Arc;

/// What the user asked of this run.
pub struct Options {
    pub json: bool,
    /// Empty: every org.
    pub orgs: Vec<String>,
    pub notify: bool,
}

pub async fn run(config_path: &Path, opts: Options) -> ExitCode {
    let config = match load_config(config_path, true) {
        Ok(c) => Arc::new(c),
        Err(code) => return code,
    };
    for name in &opts.orgs {
        if config.org(name).is_none() {
            let known: Vec<&str> = config.orgs.iter().map(|o| o.name.as_str()).collect();
            return report(
                &anyhow::anyhow!(
                    "--org {name}: no such org in {} (known: {})",
                    config.path.display(),
                    known.join(", ")
                ),
                ExitCode::Usage,
            );
        }
    }
    let selected: Vec<String> = if opts.orgs.is_empty() {
        config.orgs.iter().map(|o| o.name.clone()).collect()
    } else {
        opts.orgs
    };

    let db = config.daemon.database.clone();
    let _lock = match AuditLock::acquire(&db) {
        Ok(l) => l,
        Err(e) => return report(&anyhow::Error::new(e), ExitCode::Fatal),
    };
    let store = match Store::open(&db) {
        Ok(s) => s,
        Err(e) => return report(&anyhow::Error::new(e), ExitCode::Fatal),
    };
    let ctx = match Context::new(config.clone(), store, opts.notify).await {
        Ok(c) => c,
        Err(audit::ContextError::Channel(e)) => return report(&anyhow::Error::new(e), ExitCode::Config),
        Err(e) => return report(&anyhow::Error::new(e), ExitCode::Fatal),
    };
    let pass = match audit::run_pass(&ctx, &selected, DeliveryMode::AllPending)
        .await
        .context("the audit pass failed")
    {
        Ok(p) => p,
        Err(e) => return report(&e, ExitCode::Fatal),
    };
    if opts.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&pass).expect("the summary serialises")
        );
    } else {
        print!("{}", human_summary(&pass));
    }
    PassReport::outcome(&pass.orgs)
}

/// The summary as a person reads it.
pub fn human_summary(pass: &PassReport) -> String {
    let mut out = String::new();
    for org in &pass.orgs {
        let state = serde_json::to_value(org.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        out.push_str(&format!("{}: {state}", org.org));
        if let Some(reason) = &org.reason {
            out.push_str(&format!(" ({reason})"));
        }
        out.push('\n');
        for s in &org.sources {
            let mut line = format!("  {:<26} {}", s.source, s.status.as_str());
            if s.changes > 0 {
                line.push_str(&format!(", {} change(s)", s.changes));
            }
            match (s.previous_snapshot, s.snapshot) {
                (Some(p), Some(n)) if p != n => line.push_str(&format!(", snapshot {p} -> {n}")),
                (_, Some(n)) => line.push_str(&format!(", snapshot {n}")),
                _ => {}
            }
            if let Some(e) = &s.error {
                line.push_str(&format!(": {e}"));
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    let a = &pass.alerts;
    out.push_str(&format!(
        "alerts: {} delivered, {} pending, {} dead, {} suppressed\nexit {}\n",
        a.delivered, a.pending, a.dead, a.suppressed, pass.exit_code
    ));
    out
}
