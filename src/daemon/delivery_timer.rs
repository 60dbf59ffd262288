//! The outbox on its own timer: alerts whose delivery failed wait out their backoff (30 s, doubling
//! up to 1 h) and must be retried even when no org is due for an audit for hours. Each org's pass
//! also delivers what is due at its end; `alert::deliver_due` itself keeps the two from sending
//! the same row twice.

use crate::alert::{self, DeliveryMode, DeliveryReport};
use crate::audit::{Context, ONCE_DELIVERY_BUDGET};
use crate::store::StoreError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the outbox is looked at. Backoffs start at 30 s, so this keeps a retry at most 15 s
/// late; the query behind it is one indexed lookup.
pub const OUTBOX_EVERY: Duration = Duration::from_secs(15);

/// Runs `round` at once and then every `every`, until `stop` turns true. A round under way is let
/// finish (each is bounded by its own deadline).
pub async fn run_timer<R, F>(every: Duration, mut round: R, mut stop: watch::Receiver<bool>)
where
    R: FnMut() -> F,
    F: Future<Output = ()>,
{
    let mut interval = tokio::time::interval(every);
    // After a long round, wait a full period rather than firing the missed ticks in a burst.
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = super::stopped(&mut stop) => return,
            _ = interval.tick() => {}
        }
        round().await;
    }
}

/// One delivery round of the rows whose backoff has run out, with the current context's channels.
pub async fn deliver_round(ctx: &Context) -> Result<DeliveryReport, StoreError> {
    let deadline = tokio::time::Instant::now() + ONCE_DELIVERY_BUDGET;
    alert::deliver_due(&ctx.store, &ctx.dispatcher, DeliveryMode::Due, deadline).await
}

/// The daemon's outbox timer: [`deliver_round`] every [`OUTBOX_EVERY`] with whatever context is
/// current (a reload may have changed the channels).
pub async fn run(contexts: watch::Receiver<Arc<Context>>, stop: watch::Receiver<bool>) {
    let round = move || {
        let ctx = contexts.borrow().clone();
        async move {
            match deliver_round(&ctx).await {
                Ok(r) if r.delivered + r.failed > 0 => {
                    tracing::info!(
                        delivered = r.delivered,
                        failed = r.failed,
                        dead = r.died,
                        "outbox retried"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %super::chain(&e), "cannot read the outbox"),
            }
        }
    };
    run_timer(OUTBOX_EVERY, round, stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::sim::WebhookSink;
    use crate::store::{queries, Store};
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn the_outbox_is_looked_at_on_its_own_timer_until_stopped() {
        let rounds = Arc::new(AtomicUsize::new(0));
        let (stop_tx, stop_rx) = watch::channel(false);
        let counter = rounds.clone();
        let timer = tokio::spawn(run_timer(
            Duration::from_secs(15),
            move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async {}
            },
            stop_rx,
        ));
        // At 0, 15, 30 and 45 s.
        tokio::time::sleep(Duration::from_secs(50)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 4);
        stop_tx.send_replace(true);
        timer.await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_round_delivers_rows_whose_backoff_ran_out_and_leaves_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let hook = WebhookSink::start();
        let path = dir.path().join("auditd.toml");
        std::fs::write(
            &path,
            format!("[zoho]\nclient_id = \"1000.X\"\nclient_secret = \"s\"\n[alerts.hook]\nkind = \"webhook\"\nurl = \"{}\"\n", hook.url()),
        )
        .unwrap();
        let config = Arc::new(Config::load(&path).unwrap());
        let store = Store::open(&dir.path().join("auditd.db")).unwrap();
        let now = crate::time_util::now_unix();
        store
            .call(move |c| {
                queries::org(c, "acme")?;
                for (event, due) in [("01DUE", now - 1), ("01LATER", now + 3600)] {
                    let mut payload = crate::alert::AlertPayload::new(
                        crate::alert::AlertKind::Recovered,
                        "acme",
                        crate::time_util::rfc3339(now),
                        Vec::new(),
                        None,
                    );
                    payload.event_id = event.to_string();
                    let a = queries::insert_alert(c, event, "acme", "recovered", now, &payload.to_json())?;
                    queries::enqueue(c, a, "hook", queries::OutboxStatus::Pending, due)?;
                }
                Ok(())
            })
            .await
            .unwrap();
        let ctx = Context::new(config, store, true).await.unwrap();
        let report = deliver_round(&ctx).await.unwrap();
        assert_eq!(report.delivered, 1);
        let received = hook.received();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].header("x-auditd-delivery"), Some("01DUE"));
    }
}
