//! `auditd alerts`: the outbox as an operator needs it; `alerts retry` revives dead rows.

use super::{load_config, open_store, report};
use crate::exit::ExitCode;
use crate::inert::escape_controls as inert;
use crate::store::queries::{self, Requeue};
use crate::time_util::{now_unix, rfc3339};
use std::path::Path;

pub async fn list(config_path: &Path, json: bool) -> ExitCode {
    let store = match load_config(config_path, false).and_then(|c| open_store(&c)) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let result = store
        .call(|c| Ok((queries::undelivered(c)?, queries::outbox_backlog(c)?)))
        .await;
    let (rows, backlog) = match result {
        Ok(r) => r,
        Err(e) => return report(&anyhow::Error::new(e), ExitCode::Fatal),
    };
    if json {
        let doc = serde_json::json!({
            "version": 1,
            "alerts": rows.iter().map(|r| serde_json::json!({
                "id": r.id, "event_id": r.event_id, "channel": r.channel, "org": r.org, "kind": r.kind,
                "status": r.status, "attempts": r.attempts, "created_at": rfc3339(r.created_at),
                "next_attempt_at": r.next_attempt_at.map(rfc3339), "last_error": r.last_error,
            })).collect::<Vec<_>>(),
            "outbox": backlog,
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("serialises"));
        return ExitCode::Clean;
    }
    if rows.is_empty() {
        println!("no pending or dead alerts");
    }
    for r in &rows {
        let when = match r.next_attempt_at {
            Some(t) => format!("next attempt {}", rfc3339(t)),
            None => "no more attempts (auditd alerts retry ID)".to_string(),
        };
        println!(
            "{:>5}  {:<8} {:<10} {:<18} {:<20} {} attempt(s), {when}{}",
            r.id,
            r.status,
            r.channel,
            r.kind,
            r.org,
            r.attempts,
            r.last_error
                .as_deref()
                .map(|e| format!("; last error: {}", inert(e)))
                .unwrap_or_default()
        );
    }
    for b in &backlog {
        println!("channel {}: {} pending, {} dead", b.channel, b.pending, b.dead);
    }
    ExitCode::Clean
}

pub async fn retry(config_path: &Path, id: Option<i64>, all_dead: bool) -> ExitCode {
    let store = match load_config(config_path, false).and_then(|c| open_store(&c)) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let which = match (id, all_dead) {
        (Some(id), _) => Requeue::One(id),
        (None, _) => Requeue::AllDead,
    };
    let now = now_unix();
    let result = store
        .call(move |c| {
            let status = match which {
                Requeue::One(id) => queries::outbox_status(c, id)?,
                Requeue::AllDead => None,
            };
            Ok((queries::requeue_dead(c, which, now)?, status))
        })
        .await;
    match result {
        Ok((0, Some(status))) => report(
            &anyhow::anyhow!(
                "alert {} is {status}, not dead; only dead alerts are requeued",
                id.unwrap_or_default()
            ),
            ExitCode::Usage,
        ),
        Ok((0, None)) if id.is_some() => report(
            &anyhow::anyhow!("no alert with id {}", id.unwrap_or_default()),
            ExitCode::Usage,
        ),
        Ok((n, _)) => {
            println!("requeued {n} alert(s); the next pass (or the daemon's outbox timer) delivers them");
            ExitCode::Clean
        }
        Err(e) => report(&anyhow::Error::new(e), ExitCode::Fatal),
    }
}
