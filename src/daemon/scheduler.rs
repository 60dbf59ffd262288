//! The cron side of scheduling, on tokio-cron-scheduler: one job per org on the org's own `schedule`
//! or the global one, plus a heartbeat job for the watchdog.
//!
//! Jobs do nothing but send a [`Tick`] to the daemon's loop. A slow audit therefore never holds up the
//! scheduler, and every decision (skip a busy org, jitter, concurrency, shutdown) is made in one place,
//! `runner`. Cron times are UTC.

use crate::config::Config;
use std::collections::BTreeMap;
use tokio::sync::mpsc::UnboundedSender;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tracing::instrument::WithSubscriber;
use uuid::Uuid;

/// The heartbeat fires every five seconds; the watchdog and `/healthz` call the scheduler stalled
/// when it has not for `health::HEARTBEAT_STALE`.
pub const HEARTBEAT_SCHEDULE: &str = "*/5 * * * * *";

/// What a cron job tells the daemon's loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    /// Time to audit this org.
    Org(String),
    /// The scheduler is alive (and so, once received, is the daemon's loop).
    Heartbeat,
}

/// Org name → the six-field cron expression it runs on.
pub type Plan = BTreeMap<String, String>;

/// The plan a config asks for: each org's own schedule, else the global one.
pub fn plan(config: &Config) -> Plan {
    config
        .orgs
        .iter()
        .map(|o| {
            let schedule = o.schedule.clone().unwrap_or_else(|| config.daemon.schedule.clone());
            (o.name.clone(), schedule)
        })
        .collect()
}

/// How one plan differs from another.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PlanChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Orgs whose schedule changed.
    pub rescheduled: Vec<String>,
}

/// What changes from `old` to `new`. Unchanged orgs keep their job, so a reload never delays or
/// doubles a tick of an org whose schedule stayed the same.
pub fn changes(old: &Plan, new: &Plan) -> PlanChanges {
    let mut c = PlanChanges::default();
    for (org, schedule) in new {
        match old.get(org) {
            None => c.added.push(org.clone()),
            Some(before) if before != schedule => c.rescheduled.push(org.clone()),
            Some(_) => {}
        }
    }
    c.removed = old.keys().filter(|o| !new.contains_key(*o)).cloned().collect();
    c
}

/// The running tokio-cron-scheduler with one job per org.
pub struct CronScheduler {
    scheduler: JobScheduler,
    /// The plan in force, with each org's job id.
    jobs: BTreeMap<String, (String, Uuid)>,
    ticks: UnboundedSender<Tick>,
}

impl CronScheduler {
    /// Starts the scheduler with its heartbeat job; org jobs come with [`CronScheduler::apply`].
    pub async fn start(ticks: UnboundedSender<Tick>) -> Result<CronScheduler, JobSchedulerError> {
        let scheduler = quietly(JobScheduler::new()).await?;
        quietly(scheduler.add(tick_job(HEARTBEAT_SCHEDULE, Tick::Heartbeat, ticks.clone())?)).await?;
        quietly(scheduler.start()).await?;
        Ok(CronScheduler {
            scheduler,
            jobs: BTreeMap::new(),
            ticks,
        })
    }

    /// The plan in force.
    pub fn plan(&self) -> Plan {
        self.jobs.iter().map(|(org, (s, _))| (org.clone(), s.clone())).collect()
    }

    /// Makes `plan` the plan in force, touching only the jobs that change.
    pub async fn apply(&mut self, plan: &Plan) -> Result<PlanChanges, JobSchedulerError> {
        let changes = changes(&self.plan(), plan);
        for org in changes.removed.iter().chain(&changes.rescheduled) {
            if let Some((_, id)) = self.jobs.remove(org) {
                quietly(self.scheduler.remove(&id)).await?;
            }
        }
        for org in changes.added.iter().chain(&changes.rescheduled) {
            let schedule = &plan[org];
            let job = tick_job(schedule, Tick::Org(org.clone()), self.ticks.clone())?;
            let id = quietly(self.scheduler.add(job)).await?;
            self.jobs.insert(org.clone(), (schedule.clone(), id));
        }
        Ok(changes)
    }

    /// Stops the scheduler. A tick it was already sending may still arrive; the daemon's loop has
    /// ended by then and ignores it.
    pub async fn shutdown(&mut self) {
        if let Err(e) = quietly(self.scheduler.shutdown()).await {
            tracing::warn!(error = %e, "the cron scheduler did not shut down cleanly");
        }
    }
}

/// A cron job that sends `tick` each time `schedule` fires.
fn tick_job(schedule: &str, tick: Tick, ticks: UnboundedSender<Tick>) -> Result<Job, JobSchedulerError> {
    Job::new_async(schedule, move |_id, _scheduler| {
        // Fails only when the daemon's loop is gone, i.e. during shutdown: nothing to do then.
        let _ = ticks.send(tick.clone());
        Box::pin(async {})
    })
}

/// Runs a scheduler call without its own logs: tokio-cron-scheduler logs "Job creator created" and
/// the like at INFO for every job it adds, which would drown the daemon's own lines at the default
/// filter. Its failures still come back as errors, which the daemon logs.
async fn quietly<F: std::future::Future>(call: F) -> F::Output {
    call.with_subscriber(tracing::subscriber::NoSubscriber::default()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn plan_of(entries: &[(&str, &str)]) -> Plan {
        entries.iter().map(|(o, s)| (o.to_string(), s.to_string())).collect()
    }

    #[test]
    fn each_org_runs_on_its_own_schedule_or_the_global_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auditd.toml");
        std::fs::write(
            &path,
            r#"
[daemon]
schedule = "0 */15 * * * *"
[zoho]
client_id = "1000.X"
client_secret = "s"
[[orgs]]
name = "acme"
dc = "us"
[[orgs]]
name = "globex"
dc = "eu"
schedule = "0 0 * * *"
"#,
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(
            plan(&config),
            plan_of(&[("acme", "0 */15 * * * *"), ("globex", "0 0 0 * * *")])
        );
    }

    #[test]
    fn a_new_plan_adds_removes_and_reschedules_only_what_changed() {
        let old = plan_of(&[("a", "0 * * * * *"), ("b", "0 * * * * *"), ("c", "0 * * * * *")]);
        let new = plan_of(&[("a", "0 * * * * *"), ("b", "30 * * * * *"), ("d", "0 * * * * *")]);
        assert_eq!(
            changes(&old, &new),
            PlanChanges {
                added: vec!["d".into()],
                removed: vec!["c".into()],
                rescheduled: vec!["b".into()],
            }
        );
        assert_eq!(changes(&new, &new), PlanChanges::default());
    }

    /// The one test on the real clock: tokio-cron-scheduler reads the wall clock, so a paused tokio
    /// clock does not move it.
    #[tokio::test]
    async fn org_jobs_and_the_heartbeat_tick_and_a_removed_org_stops_ticking() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut cron = CronScheduler::start(tx).await.unwrap();
        let changes = cron
            .apply(&plan_of(&[("acme", "* * * * * *"), ("globex", "0 0 0 1 1 *")]))
            .await
            .unwrap();
        assert_eq!(changes.added, ["acme", "globex"]);
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
        while !(seen.contains(&Tick::Heartbeat) && seen.iter().filter(|t| **t == Tick::Org("acme".into())).count() >= 2)
        {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(tick)) => seen.push(tick),
                _ => panic!("not enough ticks within 8 s: {seen:?}"),
            }
        }
        assert!(!seen.contains(&Tick::Org("globex".into())));

        cron.apply(&plan_of(&[("globex", "0 0 0 1 1 *")])).await.unwrap();
        assert_eq!(cron.plan(), plan_of(&[("globex", "0 0 0 1 1 *")]));
        // A tick already in flight may still arrive; after that, acme is silent.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        while rx.try_recv().is_ok() {}
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let mut late = Vec::new();
        while let Ok(t) = rx.try_recv() {
            late.push(t);
        }
        assert!(!late.contains(&Tick::Org("acme".into())), "{late:?}");
        cron.shutdown().await;
    }
}
