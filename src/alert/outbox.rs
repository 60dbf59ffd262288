//! Delivery from the durable outbox: per-channel, independent, with backoff, jitter and dead letters.

use super::email::EmailSender;
use super::payload::AlertPayload;
use super::webhook::WebhookSender;
use super::{ChannelSetupError, DeliveryError};
use crate::config::{ChannelKind, Config};
use crate::store::{queries, Store, StoreError};
use crate::time_util::now_unix;
use rand::Rng;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// The first retry waits this long; each further one twice as long, up to [`MAX_BACKOFF_SECS`].
const FIRST_BACKOFF_SECS: i64 = 30;
const MAX_BACKOFF_SECS: i64 = 3600;

/// The senders of every configured channel, and when to give up on a row.
pub struct Dispatcher {
    senders: BTreeMap<String, Sender>,
    /// `[daemon] alert_max_attempts`.
    max_attempts: i64,
    /// `[daemon] alert_max_age`, in seconds.
    max_age_secs: i64,
}

/// A channel ready to send, by kind.
enum Sender {
    Email(EmailSender),
    Webhook(WebhookSender),
}

impl Dispatcher {
    pub fn new(config: &Config) -> Result<Dispatcher, ChannelSetupError> {
        let mut senders = BTreeMap::new();
        for ch in &config.channels {
            let sender = match &ch.kind {
                ChannelKind::Email(e) => Sender::Email(EmailSender::new(&ch.name, e)?),
                ChannelKind::Webhook(w) => Sender::Webhook(WebhookSender::new(&ch.name, w)?),
            };
            senders.insert(ch.name.clone(), sender);
        }
        Ok(Dispatcher {
            senders,
            max_attempts: i64::from(config.daemon.alert_max_attempts),
            max_age_secs: crate::time_util::secs_i64(config.daemon.alert_max_age),
        })
    }

    async fn send(&self, channel: &str, alert: &AlertPayload, stored_json: &str) -> Result<(), DeliveryError> {
        match self.senders.get(channel) {
            Some(Sender::Email(s)) => s.send(alert).await,
            Some(Sender::Webhook(s)) => s.send(alert, stored_json).await,
            None => Err(DeliveryError::failed(format!(
                "channel `{channel}` is no longer in the config"
            ))),
        }
    }
}

/// Which rows a delivery round takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Rows whose backoff timer is due (the daemon).
    Due,
    /// Every pending row, once (`--once`: its runs are spaced by whoever schedules them).
    AllPending,
}

/// What one delivery round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryReport {
    pub delivered: usize,
    pub failed: usize,
    /// Rows that became dead in this round.
    pub died: usize,
}

/// When a failed row is tried again: exponential backoff with up to 20% jitter.
pub fn next_attempt_at(now: i64, attempts_so_far: i64) -> i64 {
    let exp = attempts_so_far.clamp(0, 20) as u32;
    let base = FIRST_BACKOFF_SECS.saturating_mul(1i64 << exp).min(MAX_BACKOFF_SECS);
    let jitter = rand::rng().random_range(0..=base / 5);
    now.saturating_add(base + jitter)
}

/// When a failed row is tried next: the backoff, or later if the receiver asked (`Retry-After`,
/// already capped), but never after the row's deadline (`age_from + alert_max_age`), so that every
/// row is tried at its deadline and ends delivered or dead then.
fn next_try_at(now: i64, attempts_so_far: i64, error: &DeliveryError, age_from: i64, max_age_secs: i64) -> i64 {
    let asked = match error {
        DeliveryError::Failed {
            retry_after: Some(d), ..
        } => now.saturating_add(crate::time_util::secs_i64(*d)),
        _ => now,
    };
    let deadline = age_from.saturating_add(max_age_secs);
    next_attempt_at(now, attempts_so_far).max(asked).min(deadline.max(now))
}

/// One delivery round at a time in this process: the daemon's concurrent org passes and its outbox
/// timer would otherwise read, and send, the same due rows twice.
static DELIVERY_ROUND: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Delivers what is due, channel by channel in parallel (a dead webhook never holds up email).
/// Rows not reached before `deadline` stay pending untouched.
pub async fn deliver_due(
    store: &Store,
    dispatcher: &Dispatcher,
    mode: DeliveryMode,
    deadline: Instant,
) -> Result<DeliveryReport, StoreError> {
    let _one_round_at_a_time = DELIVERY_ROUND.lock().await;
    let now = now_unix();
    let rows = store
        .call(move |c| Ok(queries::due_outbox(c, now, mode == DeliveryMode::AllPending)?))
        .await?;
    let mut by_channel: BTreeMap<String, Vec<queries::OutboxItem>> = BTreeMap::new();
    for row in rows {
        by_channel.entry(row.channel.clone()).or_default().push(row);
    }
    let rounds = by_channel
        .into_values()
        .map(|rows| deliver_channel(store, dispatcher, rows, deadline));
    let mut total = DeliveryReport::default();
    for r in futures::future::join_all(rounds).await {
        let r = r?;
        total.delivered += r.delivered;
        total.failed += r.failed;
        total.died += r.died;
    }
    Ok(total)
}

async fn deliver_channel(
    store: &Store,
    dispatcher: &Dispatcher,
    rows: Vec<queries::OutboxItem>,
    deadline: Instant,
) -> Result<DeliveryReport, StoreError> {
    let mut report = DeliveryReport::default();
    for row in rows {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        let outcome = match serde_json::from_str::<AlertPayload>(&row.payload) {
            Err(e) => Err(DeliveryError::Gone(format!("stored alert is unreadable: {e}"))),
            Ok(alert) => match tokio::time::timeout(
                remaining.max(Duration::from_secs(1)),
                dispatcher.send(&row.channel, &alert, &row.payload),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(DeliveryError::failed("gave up: delivery time for this run ran out")),
            },
        };
        let now = now_unix();
        let id = row.id;
        match outcome {
            Ok(()) => {
                store.call(move |c| Ok(queries::mark_delivered(c, id, now)?)).await?;
                tracing::info!(channel = %row.channel, org = %row.org, kind = %row.kind, event_id = %row.event_id, "alert delivered");
                report.delivered += 1;
            }
            Err(e) => {
                let attempts = row.attempts + 1;
                let dead = matches!(e, DeliveryError::Gone(_))
                    || attempts >= dispatcher.max_attempts
                    || now - row.age_from >= dispatcher.max_age_secs;
                let next = next_try_at(now, row.attempts, &e, row.age_from, dispatcher.max_age_secs);
                let message = e.to_string();
                if dead {
                    tracing::error!(channel = %row.channel, org = %row.org, event_id = %row.event_id, attempts, error = %message, "alert is dead: no more attempts");
                    report.died += 1;
                } else {
                    tracing::warn!(channel = %row.channel, org = %row.org, event_id = %row.event_id, attempts, error = %message, "alert delivery failed; will retry");
                }
                report.failed += 1;
                store
                    .call(move |c| Ok(queries::mark_failed(c, id, &message, next, dead)?))
                    .await?;
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour_with_bounded_jitter() {
        for (attempts, base) in [(0, 30), (1, 60), (3, 240), (10, 3600), (40, 3600)] {
            let at = next_attempt_at(1000, attempts) - 1000;
            assert!(at >= base && at <= base + base / 5, "attempts {attempts}: {at}");
        }
    }

    #[test]
    fn no_retry_is_planned_after_the_rows_deadline() {
        let asked_for_years = DeliveryError::Failed {
            message: "503".into(),
            retry_after: Some(Duration::from_secs(99_999_999_999)),
        };
        // Created at 1000 with a 10 s budget: the next try is at the deadline, not years ahead.
        assert_eq!(next_try_at(1002, 1, &asked_for_years, 1000, 10), 1010);
        // A deadline already passed: try now (and the failure then makes the row dead).
        assert_eq!(next_try_at(1020, 1, &asked_for_years, 1000, 10), 1020);
        // A wide budget: Retry-After wins over a shorter backoff.
        let asked_for_an_hour = DeliveryError::Failed {
            message: "503".into(),
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert_eq!(next_try_at(1000, 0, &asked_for_an_hour, 1000, 86400), 4600);
        // Saturating, never wrapping, with the largest budget the config allows and more.
        assert!(next_try_at(i64::MAX - 5, 0, &asked_for_an_hour, i64::MAX - 5, i64::MAX) >= i64::MAX - 5);
    }
}
