//! systemd's notify protocol (sd_notify(3)) for `Type=notify`: `READY=1`, `STATUS=`, `RELOADING=1`,
//! `WATCHDOG=1`, `STOPPING=1`.
//!
//! Every message is a no-op when `NOTIFY_SOCKET` is not set (the `sd-notify` crate checks), so the
//! daemon behaves the same in a terminal. A failed send is logged, never fatal: systemd will notice
//! on its own if it does not hear from us.

use super::health::Health;
use crate::time_util::rfc3339;
use sd_notify::NotifyState;
use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

/// Start-up is complete: config, database, lock and scheduler are up.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A new `STATUS=` line for `systemctl status`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// A reload (SIGHUP) has begun; [`ready`] ends it. systemd ≥ 253 wants the monotonic time with it.
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

/// Shutdown has begun.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// The systemd watchdog's keep-alive.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3) advises.
/// `None` when systemd set no watchdog for this process.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(half)
}

fn half(usec: Duration) -> Duration {
    (usec / 2).max(Duration::from_millis(1))
}

/// Pings through `ping` every `every`, but only while `check` passes; a failed check is logged and
/// the ping withheld, so systemd restarts a daemon that is stuck rather than merely alive. Ends when
/// `stop` turns true.
pub async fn watchdog_loop<C, F, P>(every: Duration, mut check: C, mut ping: P, mut stop: watch::Receiver<bool>)
where
    C: FnMut() -> F,
    F: Future<Output = Result<(), String>>,
    P: FnMut(),
{
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = super::stopped(&mut stop) => return,
        }
        match check().await {
            Ok(()) => ping(),
            Err(why) => tracing::warn!(%why, "not healthy: withholding the systemd watchdog ping"),
        }
    }
}

/// The daemon's watchdog: [`watchdog_loop`] over the health checks and [`watchdog`].
pub async fn run_watchdog(every: Duration, health: Health, stop: watch::Receiver<bool>) {
    let check = move || {
        let health = health.clone();
        async move { health.check().await.map_err(|e| e.to_string()) }
    };
    watchdog_loop(every, check, watchdog, stop).await;
}

/// How the last org audit ended, for the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastPass {
    pub org: String,
    pub finished_at: i64,
    /// `clean`, `drift`, `incomplete` or `failed`.
    pub outcome: &'static str,
}

/// What `systemctl status` shows on its `Status:` line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusLine {
    pub orgs: usize,
    pub last_pass: Option<LastPass>,
    pub needs_reconnect: BTreeSet<String>,
    /// Set while stopping: audits still running.
    pub stopping_with: Option<usize>,
    /// The last SIGHUP was refused: the daemon still runs on the config before it.
    pub reload_failed: bool,
}

impl fmt::Display for StatusLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(running) = self.stopping_with {
            write!(f, "stopping: waiting for {running} audit(s); ")?;
        }
        write!(f, "{} org(s)", self.orgs)?;
        match &self.last_pass {
            Some(p) => write!(f, "; last pass: {} {} at {}", p.org, p.outcome, rfc3339(p.finished_at))?,
            None => write!(f, "; no pass yet")?,
        }
        if self.needs_reconnect.is_empty() {
            write!(f, "; none needs reconnect")?;
        } else {
            let names: Vec<&str> = self.needs_reconnect.iter().map(String::as_str).collect();
            write!(f, "; needs reconnect: {}", names.join(", "))?;
        }
        if self.reload_failed {
            write!(
                f,
                "; last reload failed, running on the previous config (see the journal)"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn the_status_line_names_the_orgs_the_last_pass_and_who_needs_reconnect() {
        let mut line = StatusLine {
            orgs: 3,
            ..Default::default()
        };
        assert_eq!(line.to_string(), "3 org(s); no pass yet; none needs reconnect");
        line.last_pass = Some(LastPass {
            org: "acme".into(),
            finished_at: 0,
            outcome: "drift",
        });
        line.needs_reconnect = ["globex".to_string(), "initech".to_string()].into();
        assert_eq!(
            line.to_string(),
            "3 org(s); last pass: acme drift at 1970-01-01T00:00:00Z; needs reconnect: globex, initech"
        );
        line.reload_failed = true;
        assert!(line
            .to_string()
            .ends_with("; last reload failed, running on the previous config (see the journal)"));
        line.stopping_with = Some(1);
        assert!(line
            .to_string()
            .starts_with("stopping: waiting for 1 audit(s); 3 org(s)"));
    }

    #[test]
    fn the_watchdog_is_pinged_at_half_its_timeout() {
        assert_eq!(half(Duration::from_secs(120)), Duration::from_secs(60));
        assert_eq!(half(Duration::from_micros(1)), Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_is_pinged_only_while_healthy() {
        let healthy = Arc::new(AtomicBool::new(true));
        let pings = Arc::new(AtomicUsize::new(0));
        let (stop_tx, stop_rx) = watch::channel(false);
        let check = {
            let healthy = healthy.clone();
            move || {
                let ok = healthy.load(Ordering::SeqCst);
                async move {
                    if ok {
                        Ok(())
                    } else {
                        Err("database gone".to_string())
                    }
                }
            }
        };
        let ping = {
            let pings = pings.clone();
            move || {
                pings.fetch_add(1, Ordering::SeqCst);
            }
        };
        let task = tokio::spawn(watchdog_loop(Duration::from_secs(10), check, ping, stop_rx));
        // Ticks at 0, 10, 20 s.
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert_eq!(pings.load(Ordering::SeqCst), 3);
        healthy.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(pings.load(Ordering::SeqCst), 3, "no ping while unhealthy");
        healthy.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(pings.load(Ordering::SeqCst), 4);
        stop_tx.send_replace(true);
        task.await.unwrap();
    }
}
