//! The long-running daemon: `auditd` without a subcommand (SPEC §8).
//!
//! It audits each org on its cron schedule with the same [`audit::run_pass`] as `--once`, one org per
//! tick, and retries the outbox on its own timer. The parts:
//!
//! - `scheduler`: tokio-cron-scheduler jobs that only send ticks to the loop below;
//! - `runner`: which ticks become audits (busy orgs skipped, jitter, concurrency, shutdown grace);
//! - `outbox`: the delivery timer; `health` + `notify`: systemd readiness, status and watchdog;
//! - `http`: the optional `/metrics` and `/healthz`; `signals`: SIGTERM/SIGINT and SIGHUP.
//!
//! One loop owns all state, so a reload, a tick and a finished audit never race each other; audits
//! and delivery run as tasks, and SQLite stays on the blocking pool (`Store::call`).

mod delivery_timer;
mod health;
mod http;
mod runner;
mod scheduler;
mod signals;
mod systemd;

use crate::alert::DeliveryMode;
use crate::audit::{self, Context, ContextError, OrgState, PassReport};
use crate::config::{Config, ConfigError};
use crate::exit::ExitCode;
use crate::metrics;
use crate::store::{queries, Store, StoreError};
use crate::time_util::{format_duration, now_unix};
use health::{Health, Heartbeat};
use runner::{Finished, Runner, TickOutcome};
use scheduler::{CronScheduler, PlanChanges, Tick};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use systemd::{LastPass, StatusLine};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_cron_scheduler::JobSchedulerError;

/// Why the daemon could not start. Once it runs, nothing stops it but a signal: failures of a pass,
/// a delivery or a reload are logged and it carries on.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error("cannot start the scheduler: {0}")]
    Scheduler(JobSchedulerError),
    #[error("daemon.metrics_listen: cannot listen on {addr}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install the signal handlers")]
    Signals(#[source] std::io::Error),
}

impl DaemonError {
    /// The process exit code: 78 for anything the config can fix, as for every other command.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            DaemonError::Config(_) | DaemonError::Context(ContextError::Channel(_)) => ExitCode::Config,
            _ => ExitCode::Fatal,
        }
    }
}

/// Why a SIGHUP reload was refused; the daemon keeps running on the config it had.
#[derive(Debug, thiserror::Error)]
enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "daemon.database changed from {} to {}: a running daemon keeps its database and lock; restart it to move",
        old.display(),
        new.display()
    )]
    DatabaseMoved { old: PathBuf, new: PathBuf },
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error("cannot reschedule: {0}")]
    Scheduler(JobSchedulerError),
}

/// Runs the daemon until SIGTERM or SIGINT (the command line's entry point); a second one cuts the
/// grace period short.
pub async fn run_until_signalled(config_path: &Path) -> Result<(), DaemonError> {
    let signals = signals::Terminations::new().map_err(DaemonError::Signals)?;
    // Both futures wait on the same handlers, one after the other: the second is first polled once
    // the first has resolved and let go of the lock.
    let signals = Arc::new(tokio::sync::Mutex::new(signals));
    let next = |signals: Arc<tokio::sync::Mutex<signals::Terminations>>, what: &'static str| async move {
        let name = signals.lock().await.recv().await;
        tracing::info!("{name} received: {what}");
    };
    let shutdown = next(signals.clone(), "stopping");
    let cut_short = next(signals, "abandoning running audits now");
    run_with(config_path, shutdown, cut_short).await
}

/// Runs the daemon until `shutdown` resolves, then stops as on SIGTERM: no new audits, running ones
/// get `shutdown_grace`, `Ok(())`. SIGHUP reloads the config. Errors are start-up failures only.
pub async fn run(config_path: &Path, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    run_with(config_path, shutdown, std::future::pending()).await
}

/// [`run`], with `cut_short` ending the grace period early when it resolves during shutdown.
async fn run_with(
    config_path: &Path,
    shutdown: impl Future<Output = ()>,
    cut_short: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    // First of all, so that a SIGHUP during start-up neither kills the process nor is lost.
    let mut hangups = signals::Hangups::new().map_err(DaemonError::Signals)?;

    let config = Arc::new(load_config(config_path)?);
    let db = config.daemon.database.clone();
    let store = tokio::task::spawn_blocking(move || Store::open_locked(&db))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    let ctx = Arc::new(Context::new(config.clone(), store.clone(), true).await?);
    let (contexts, _) = watch::channel(ctx);
    let (stop, _) = watch::channel(false);
    let health = Health {
        store: store.clone(),
        heartbeat: Heartbeat::new(),
    };

    let mut background: Vec<JoinHandle<()>> = Vec::new();
    if let Some(addr) = config.daemon.metrics_listen {
        let listener = http::bind(addr)
            .await
            .map_err(|source| DaemonError::Metrics { addr, source })?;
        background.push(tokio::spawn(http::serve(
            listener,
            contexts.subscribe(),
            health.clone(),
            stop.subscribe(),
        )));
    }

    let (tick_tx, ticks) = mpsc::unbounded_channel();
    let mut cron = CronScheduler::start(tick_tx).await.map_err(DaemonError::Scheduler)?;
    cron.apply(&scheduler::plan(&config))
        .await
        .map_err(DaemonError::Scheduler)?;
    background.push(tokio::spawn(delivery_timer::run(
        contexts.subscribe(),
        stop.subscribe(),
    )));

    let mut daemon = Daemon {
        config_path: config_path.to_path_buf(),
        store: store.clone(),
        contexts,
        runner: Runner::new(config.daemon.concurrency, config.daemon.jitter),
        heartbeat: health.heartbeat.clone(),
        status: StatusLine {
            orgs: config.orgs.len(),
            needs_reconnect: needing_reconnect(&store, &config).await,
            ..Default::default()
        },
        cron,
    };
    systemd::ready(&daemon.status.to_string());
    if let Some(every) = systemd::watchdog_interval() {
        background.push(tokio::spawn(systemd::run_watchdog(every, health, stop.subscribe())));
    }
    tracing::info!(
        orgs = config.orgs.len(),
        schedule = %config.daemon.schedule,
        concurrency = config.daemon.concurrency,
        jitter = %format_duration(config.daemon.jitter),
        database = %config.daemon.database.display(),
        metrics = ?config.daemon.metrics_listen,
        "daemon started"
    );
    if config.orgs.is_empty() {
        tracing::warn!(config = %config.path.display(), "no [[orgs]] configured: nothing to audit");
    }

    daemon.run_until(shutdown, &mut hangups, ticks).await;
    daemon.stop(stop, background, cut_short).await;
    Ok(())
}

/// The state the daemon's loop owns.
struct Daemon {
    config_path: PathBuf,
    store: Store,
    /// The current context; audits and the outbox timer take a clone when they start, so a reload
    /// never changes the config under a running audit.
    contexts: watch::Sender<Arc<Context>>,
    cron: CronScheduler,
    runner: Runner<Result<PassReport, StoreError>>,
    heartbeat: Heartbeat,
    status: StatusLine,
}

impl Daemon {
    /// The loop: ticks, finished audits and SIGHUP, until `shutdown`.
    async fn run_until(
        &mut self,
        shutdown: impl Future<Output = ()>,
        hangups: &mut signals::Hangups,
        mut ticks: mpsc::UnboundedReceiver<Tick>,
    ) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => return,
                _ = hangups.recv() => self.reload().await,
                Some(tick) = ticks.recv() => match tick {
                    Tick::Heartbeat => self.heartbeat.beat(),
                    Tick::Org(org) => self.on_tick(org),
                },
                Some(done) = self.runner.join_next(), if self.runner.has_tasks() => self.on_finished(done),
            }
        }
    }

    /// A cron tick for `org`: hand its audit to the runner.
    fn on_tick(&mut self, org: String) {
        let ctx = self.contexts.borrow().clone();
        if ctx.config.org(&org).is_none() {
            // Its job was removed by a reload while this tick was on its way.
            return;
        }
        let name = org.clone();
        let audit = async move {
            let started = Instant::now();
            let result = audit::run_pass(&ctx, std::slice::from_ref(&name), DeliveryMode::Due).await;
            metrics::observe_pass_duration(started.elapsed());
            result
        };
        match self.runner.tick(&org, audit) {
            TickOutcome::Accepted => tracing::debug!(org = %org, "audit scheduled"),
            TickOutcome::SkippedBusy => {
                tracing::warn!(org = %org, "tick skipped: the previous audit of this org is still running");
                metrics::record_tick_skipped(&org);
            }
            TickOutcome::SkippedStopping => {}
        }
    }

    /// An org's audit ended: log it and update the status line.
    fn on_finished(&mut self, done: Finished<Result<PassReport, StoreError>>) {
        let Some(result) = done.output else {
            return;
        };
        let outcome = match result {
            Ok(report) => {
                let outcome = match report.exit_code {
                    ExitCode::Clean => "clean",
                    ExitCode::Drift => "drift",
                    _ => "incomplete",
                };
                for org in &report.orgs {
                    let state = org.state;
                    let changes: usize = org.sources.iter().map(|s| s.changes).sum();
                    let (delivered, pending) = (report.alerts.delivered, report.alerts.pending);
                    match &org.reason {
                        None => {
                            tracing::info!(org = %org.org, %state, %outcome, changes, delivered, pending, "audit finished")
                        }
                        // An org that could not be audited in full deserves a warning with its reason.
                        Some(reason) => {
                            tracing::warn!(org = %org.org, %state, %outcome, changes, delivered, pending, %reason, "audit finished")
                        }
                    }
                    // An org dropped by a reload while it ran no longer belongs on the status line.
                    let configured = self.contexts.borrow().config.org(&org.org).is_some();
                    if org.state == OrgState::NeedsReconnect && configured {
                        self.status.needs_reconnect.insert(org.org.clone());
                    } else {
                        self.status.needs_reconnect.remove(&org.org);
                    }
                }
                outcome
            }
            Err(e) => {
                tracing::error!(org = %done.org, error = %chain(&e), "audit failed: the database did not answer");
                "failed"
            }
        };
        self.status.last_pass = Some(LastPass {
            org: done.org,
            finished_at: now_unix(),
            outcome,
        });
        systemd::status(&self.status.to_string());
    }

    /// SIGHUP: reload and validate; apply on success, keep everything as it was on failure.
    async fn reload(&mut self) {
        systemd::reloading();
        tracing::info!(config = %self.config_path.display(), "SIGHUP: reloading the config");
        let result = self.try_reload().await;
        self.status.reload_failed = result.is_err();
        match result {
            Ok(changes) => tracing::info!(
                orgs = self.status.orgs,
                added = ?changes.added,
                removed = ?changes.removed,
                rescheduled = ?changes.rescheduled,
                "config reloaded"
            ),
            Err(e) => tracing::error!(
                error = %chain(&e),
                "config reload failed; still running on the previous config"
            ),
        }
        systemd::ready(&self.status.to_string());
    }

    async fn try_reload(&mut self) -> Result<PlanChanges, ReloadError> {
        let config = load_config(&self.config_path)?;
        let old = self.contexts.borrow().config.clone();
        if config.daemon.database != old.daemon.database {
            return Err(ReloadError::DatabaseMoved {
                old: old.daemon.database.clone(),
                new: config.daemon.database,
            });
        }
        let config = Arc::new(config);
        let ctx = Context::new(config.clone(), self.store.clone(), true).await?;
        // Last, since it is the one step that changes something outside this function.
        let changes = self
            .cron
            .apply(&scheduler::plan(&config))
            .await
            .map_err(ReloadError::Scheduler)?;
        self.runner.set_concurrency(config.daemon.concurrency);
        self.runner.set_jitter(config.daemon.jitter);
        if config.daemon.metrics_listen != old.daemon.metrics_listen {
            tracing::warn!("daemon.metrics_listen changed: the endpoint moves at the next restart");
        }
        self.status.orgs = config.orgs.len();
        self.status.needs_reconnect.retain(|org| config.org(org).is_some());
        self.contexts.send_replace(Arc::new(ctx));
        Ok(changes)
    }

    /// Shutdown: `STOPPING=1`, no new ticks, running audits get the grace period (or less, should
    /// `cut_short` resolve first), then the background tasks end.
    async fn stop(
        mut self,
        stop: watch::Sender<bool>,
        background: Vec<JoinHandle<()>>,
        cut_short: impl Future<Output = ()>,
    ) {
        let grace = self.contexts.borrow().config.daemon.shutdown_grace;
        let deadline = Instant::now() + grace;
        self.status.stopping_with = Some(self.runner.busy().count());
        systemd::stopping(&self.status.to_string());
        tracing::info!(
            running = ?self.runner.busy().collect::<Vec<_>>(),
            grace = %format_duration(grace),
            "stopping: no new audits; waiting for running ones"
        );
        self.cron.shutdown().await;
        stop.send_replace(true);

        let drained = tokio::select! {
            drained = self.runner.drain(deadline) => drained,
            _ = cut_short => self.runner.drain(Instant::now()).await,
        };
        for done in drained.finished {
            self.on_finished(done);
        }
        if !drained.abandoned.is_empty() {
            tracing::warn!(
                orgs = ?drained.abandoned,
                "abandoned audits still running after the grace period; each org commits in one \
                 transaction, so none is half-written, and the next run audits them again"
            );
        }
        // The outbox round and the metrics endpoint get what is left of the grace period.
        for task in background {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline.max(Instant::now()), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        tracing::info!("stopped");
    }
}

/// Loads and validates the config, secrets included (a missing secret is a config error now rather
/// than a failed pass later), and logs its warnings.
fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let config = Config::load(path)?;
    config.check_secrets()?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    Ok(config)
}

/// Configured orgs the database marks as needing reconnect (for the first status line).
async fn needing_reconnect(store: &Store, config: &Config) -> std::collections::BTreeSet<String> {
    let rows = store.call(|c| Ok(queries::all_orgs(c)?)).await.unwrap_or_default();
    rows.into_iter()
        .filter(|o| o.needs_reconnect && config.org(&o.name).is_some())
        .map(|o| o.name)
        .collect()
}

/// Resolves once `stop` is true (or its sender is gone, which means the same). The guard `wait_for`
/// returns is dropped here, since it must not be held across an await.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// An error and its causes on one line, for logs.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AuditLock;

    #[tokio::test]
    async fn a_config_problem_at_start_is_exit_78_and_anything_else_exit_1() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auditd.toml");
        std::fs::write(&path, "[daemon]\nconcurrency = 0\n").unwrap();
        let err = run(&path, std::future::pending()).await.unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::Config);
        assert!(chain(&err).contains("daemon.concurrency"), "{}", chain(&err));

        let db = dir.path().join("auditd.db");
        std::fs::write(&path, format!("[daemon]\ndatabase = \"{}\"\n", db.display())).unwrap();
        let _held = AuditLock::acquire(&db).unwrap();
        let err = run(&path, std::future::pending()).await.unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::Fatal);
        assert!(err.to_string().contains("another auditd process"), "{err}");
    }

    #[tokio::test]
    async fn the_daemon_stops_cleanly_when_told_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auditd.toml");
        let db = dir.path().join("auditd.db");
        std::fs::write(&path, format!("[daemon]\ndatabase = \"{}\"\n", db.display())).unwrap();
        let started = std::time::Instant::now();
        run(&path, tokio::time::sleep(std::time::Duration::from_millis(300)))
            .await
            .unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // The lock is released: another auditing process may start.
        AuditLock::acquire(&db).unwrap();
    }

    #[test]
    fn error_chains_read_as_one_line() {
        let e = ReloadError::DatabaseMoved {
            old: "/a.db".into(),
            new: "/b.db".into(),
        };
        assert!(chain(&e).starts_with("daemon.database changed from /a.db to /b.db"));
    }
}
