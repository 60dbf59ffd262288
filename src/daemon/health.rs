//! Is the daemon doing its job? Both the systemd watchdog and `/healthz` ask the same two questions:
//! does the database answer, and has the scheduler ticked recently. A process that is alive but
//! stuck on either is not healthy, and systemd should restart it.

use crate::store::{Store, StoreError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The heartbeat job fires every 5 s; this many seconds without one means the scheduler (or the
/// daemon's loop, which receives it) is stuck.
pub const HEARTBEAT_STALE: Duration = Duration::from_secs(30);

/// How long `SELECT 1` may take. SQLite's busy timeout is 10 s, but a healthy daemon holds the
/// connection only for short transactions.
pub const DB_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// When the scheduler's heartbeat last reached the daemon's loop.
#[derive(Debug, Clone)]
pub struct Heartbeat(Arc<Mutex<Instant>>);

impl Heartbeat {
    /// A heartbeat that has just beaten (the daemon starts healthy).
    pub fn new() -> Heartbeat {
        Heartbeat(Arc::new(Mutex::new(Instant::now())))
    }

    /// Records a beat now.
    pub fn beat(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Time since the last beat.
    pub fn age(&self) -> Duration {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
    }
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat::new()
    }
}

/// Why the daemon is not healthy.
#[derive(Debug, thiserror::Error)]
pub enum Unhealthy {
    #[error("the scheduler has not ticked for {}s", .0.as_secs())]
    SchedulerStalled(Duration),
    #[error("the database did not answer SELECT 1 within {}s", DB_PROBE_TIMEOUT.as_secs())]
    DatabaseTimeout,
    #[error("the database did not answer SELECT 1")]
    Database(#[source] StoreError),
}

/// The two checks, over the daemon's store and heartbeat.
#[derive(Clone)]
pub struct Health {
    pub store: Store,
    pub heartbeat: Heartbeat,
}

impl Health {
    /// `Ok` when the scheduler ticked within [`HEARTBEAT_STALE`] and the database answers.
    pub async fn check(&self) -> Result<(), Unhealthy> {
        let age = self.heartbeat.age();
        if age > HEARTBEAT_STALE {
            return Err(Unhealthy::SchedulerStalled(age));
        }
        probe_db(&self.store, DB_PROBE_TIMEOUT).await
    }
}

/// `SELECT 1` on the daemon's connection, on the blocking pool, within `timeout`.
pub async fn probe_db(store: &Store, timeout: Duration) -> Result<(), Unhealthy> {
    let probe = store.call(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?));
    match tokio::time::timeout(timeout, probe).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Unhealthy::Database(e)),
        Err(_) => Err(Unhealthy::DatabaseTimeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_goes_stale_after_thirty_seconds_without_a_beat() {
        let beat = Heartbeat::new();
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(beat.age() <= HEARTBEAT_STALE);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(beat.age() > HEARTBEAT_STALE);
        beat.beat();
        assert_eq!(beat.age(), Duration::ZERO);
    }

    #[tokio::test]
    async fn health_needs_both_a_recent_tick_and_an_answering_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("auditd.db")).unwrap();
        let health = Health {
            store: store.clone(),
            heartbeat: Heartbeat::new(),
        };
        health.check().await.unwrap();

        // A connection held elsewhere for longer than the probe may wait: not healthy.
        let (held_tx, held_rx) = tokio::sync::oneshot::channel();
        let held = store.clone();
        let holder = tokio::spawn(async move {
            held.call(move |_| {
                held_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(600));
                Ok(())
            })
            .await
        });
        held_rx.await.unwrap();
        let err = probe_db(&store, Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(err, Unhealthy::DatabaseTimeout), "{err}");
        holder.await.unwrap().unwrap();
        probe_db(&store, Duration::from_secs(5)).await.unwrap();

        let stalled = Health {
            store,
            heartbeat: Heartbeat(Arc::new(Mutex::new(Instant::now() - Duration::from_secs(31)))),
        };
        let err = stalled.check().await.unwrap_err();
        assert!(err.to_string().contains("has not ticked for 31s"), "{err}");
    }
}
