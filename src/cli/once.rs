//! `auditd --once`: one pass, a summary, a CI-friendly exit code.

use super::{report, try_load_config};
use crate::alert::DeliveryMode;
use crate::audit::{self, Context, PassReport};
use crate::exit::ExitCode;
use crate::inert::escape_controls as inert;
use crate::store::Store;
use anyhow::Context as _;
use std::path::Path;
use std::sync::Arc;

/// What the user asked of this run.
pub struct Options {
    pub json: bool,
    /// Empty: every org.
    pub orgs: Vec<String>,
    /// `false` with `--no-notify`.
    pub deliver: bool,
}

pub async fn run(config_path: &Path, opts: Options) -> ExitCode {
    let json = opts.json;
    match pass(config_path, opts).await {
        Ok(pass) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&pass).expect("the summary serialises")
                );
            } else {
                print!("{}", human_summary(&pass));
            }
            PassReport::outcome(&pass.orgs)
        }
        Err((error, code)) => {
            if json {
                // `--json` promises one document on stdout, also when the run never started.
                let doc = serde_json::json!({
                    "version": 1, "exit_code": code.code(), "error": format!("{error:#}"),
                    "orgs": [], "alerts": null,
                });
                println!("{}", serde_json::to_string_pretty(&doc).expect("serialises"));
            }
            report(&error, code)
        }
    }
}

/// Everything up to the finished pass; an error comes with its exit code.
async fn pass(config_path: &Path, opts: Options) -> Result<PassReport, (anyhow::Error, ExitCode)> {
    let fatal = |e: anyhow::Error| (e, ExitCode::Fatal);
    let config = Arc::new(try_load_config(config_path, true).map_err(|e| (anyhow::Error::new(e), ExitCode::Config))?);
    for name in &opts.orgs {
        if config.org(name).is_none() {
            let known: Vec<&str> = config.orgs.iter().map(|o| o.name.as_str()).collect();
            let e = anyhow::anyhow!(
                "--org {name}: no such org in {} (known: {})",
                config.path.display(),
                known.join(", ")
            );
            return Err((e, ExitCode::Usage));
        }
    }
    let selected: Vec<String> = if opts.orgs.is_empty() {
        config.orgs.iter().map(|o| o.name.clone()).collect()
    } else {
        opts.orgs
    };

    let db = config.daemon.database.clone();
    let store = Store::open_locked(&db).map_err(|e| fatal(e.into()))?;
    let ctx = match Context::new(config.clone(), store, opts.deliver).await {
        Ok(c) => c,
        Err(audit::ContextError::Channel(e)) => return Err((e.into(), ExitCode::Config)),
        Err(e) => return Err(fatal(e.into())),
    };
    audit::run_pass(&ctx, &selected, DeliveryMode::AllPending)
        .await
        .context("the audit pass failed")
        .map_err(fatal)
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
            out.push_str(&format!(" ({})", inert(reason)));
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
                line.push_str(&format!(": {}", inert(e)));
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    let a = &pass.alerts;
    out.push_str(&format!(
        "alerts: {} delivered, {} pending, {} dead, {} suppressed\nexit {}\n",
        a.delivered,
        a.pending,
        a.dead,
        a.suppressed,
        pass.exit_code.code()
    ));
    out
}
