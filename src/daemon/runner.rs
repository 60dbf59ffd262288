//! Which org audits run, and when, once a cron tick has come in: the scheduling decisions that do not
//! depend on the wall clock, kept apart from tokio-cron-scheduler so they can be tested on tokio's
//! paused clock.
//!
//! - A tick for an org whose previous audit (or jitter wait) is still going is skipped: two audits of
//!   one org at once would race on its snapshots and tokens.
//! - Each accepted tick first waits a random delay of up to `jitter`, so orgs on one schedule do not
//!   all call Zoho in the same second.
//! - At most `concurrency` audits run at once (a semaphore; a jitter wait holds no slot).
//! - On shutdown, work that has not started is dropped at once and running audits get a grace period;
//!   what is still running after it is abandoned (its task dropped). That is safe because an org's
//!   results are committed in one transaction: an abandoned audit has written all or nothing.

use rand::Rng;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;

/// What became of one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickOutcome {
    /// The org's audit is on its way (waiting for its jitter and a slot, then running).
    Accepted,
    /// The org's previous audit is still going; this tick is dropped.
    SkippedBusy,
    /// Shutdown has begun; no new work is taken.
    SkippedStopping,
}

/// An org's audit task that ended.
#[derive(Debug)]
pub struct Finished<R> {
    pub org: String,
    /// The audit's result; `None` when shutdown came while it still waited for its jitter or a slot,
    /// so it never started.
    pub output: Option<R>,
}

/// What a shutdown left behind.
#[derive(Debug)]
pub struct Drained<R> {
    /// Audits that ended within the grace period (and those that never started, with no output).
    pub finished: Vec<Finished<R>>,
    /// Orgs whose audit was still running when the grace period ran out.
    pub abandoned: Vec<String>,
}

/// Accepts ticks and runs each org's audit under the rules in the module comment.
pub struct Runner<R> {
    /// Orgs with an accepted tick whose task has not ended.
    busy: BTreeSet<String>,
    /// Which org each task belongs to, so a task that panics still frees its org.
    task_orgs: HashMap<Id, String>,
    tasks: JoinSet<Finished<R>>,
    slots: Arc<Semaphore>,
    concurrency: usize,
    jitter: Duration,
    /// Set once on shutdown; tasks still waiting give up when they see it.
    stop: watch::Sender<bool>,
}

impl<R: Send + 'static> Runner<R> {
    /// A runner for at most `concurrency` (at least 1) audits at once, each after up to `jitter`.
    pub fn new(concurrency: usize, jitter: Duration) -> Runner<R> {
        let concurrency = concurrency.max(1);
        Runner {
            busy: BTreeSet::new(),
            task_orgs: HashMap::new(),
            tasks: JoinSet::new(),
            slots: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            jitter,
            stop: watch::channel(false).0,
        }
    }

    /// A tick for `org`: unless it is busy or shutdown has begun, spawns a task that waits for the
    /// jitter and a slot, then runs `audit`. `audit` is not polled before that.
    pub fn tick<F>(&mut self, org: &str, audit: F) -> TickOutcome
    where
        F: Future<Output = R> + Send + 'static,
    {
        if *self.stop.borrow() {
            return TickOutcome::SkippedStopping;
        }
        if !self.busy.insert(org.to_string()) {
            return TickOutcome::SkippedBusy;
        }
        let delay = random_delay(self.jitter);
        let slots = self.slots.clone();
        let mut stop = self.stop.subscribe();
        let name = org.to_string();
        let handle = self.tasks.spawn(async move {
            let wait = async {
                tokio::time::sleep(delay).await;
                slots.acquire_owned().await.ok()
            };
            let slot = tokio::select! {
                biased;
                // An error means the runner is gone: give up as on shutdown.
                _ = super::stopped(&mut stop) => None,
                slot = wait => slot,
            };
            match slot {
                None => Finished {
                    org: name,
                    output: None,
                },
                Some(_slot) => Finished {
                    org: name,
                    output: Some(audit.await),
                },
            }
        });
        self.task_orgs.insert(handle.id(), org.to_string());
        TickOutcome::Accepted
    }

    /// Whether any org's task is still going (then [`Runner::join_next`] will yield something).
    pub fn has_tasks(&self) -> bool {
        !self.tasks.is_empty()
    }

    /// Orgs with an accepted tick that has not ended.
    pub fn busy(&self) -> impl Iterator<Item = &str> {
        self.busy.iter().map(String::as_str)
    }

    /// The next task to end, with its org freed for the next tick. `None` when there are none.
    /// Cancel-safe, so it can sit in a `select!`.
    pub async fn join_next(&mut self) -> Option<Finished<R>> {
        loop {
            let (id, outcome) = match self.tasks.join_next_with_id().await? {
                Ok((id, finished)) => (id, Ok(finished)),
                Err(e) => (e.id(), Err(e)),
            };
            let org = self.task_orgs.remove(&id).unwrap_or_default();
            self.busy.remove(&org);
            match outcome {
                Ok(finished) => return Some(finished),
                // Only a panic gets here (tasks are aborted in `drain` alone, which does not come
                // through this path for them). The org is free again; its next tick tries anew.
                Err(e) => tracing::error!(org = %org, error = %e, "the audit task of this org failed"),
            }
        }
    }

    /// Changes the number of audits at once. Running audits keep their slots; a smaller limit takes
    /// effect as they end.
    pub fn set_concurrency(&mut self, concurrency: usize) {
        let concurrency = concurrency.max(1);
        if concurrency > self.concurrency {
            self.slots.add_permits(concurrency - self.concurrency);
        } else if concurrency < self.concurrency {
            // Retire the surplus slots as soon as they are free, without waiting here.
            let surplus = (self.concurrency - concurrency) as u32;
            let slots = self.slots.clone();
            tokio::spawn(async move {
                if let Ok(permits) = slots.acquire_many_owned(surplus).await {
                    permits.forget();
                }
            });
        }
        self.concurrency = concurrency;
    }

    /// Changes the jitter of ticks accepted from now on.
    pub fn set_jitter(&mut self, jitter: Duration) {
        self.jitter = jitter;
    }

    /// Stops taking ticks, drops work that has not started, and waits for running audits until
    /// `deadline`; then abandons the rest.
    pub async fn drain(&mut self, deadline: Instant) -> Drained<R> {
        self.stop.send_replace(true);
        let mut finished = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.join_next()).await {
                Ok(Some(f)) => finished.push(f),
                Ok(None) => break,
                Err(_) => break,
            }
        }
        let abandoned: Vec<String> = self.busy.iter().cloned().collect();
        self.tasks.shutdown().await;
        self.task_orgs.clear();
        self.busy.clear();
        Drained { finished, abandoned }
    }
}

/// A random delay in `[0, jitter]`.
fn random_delay(jitter: Duration) -> Duration {
    if jitter.is_zero() {
        Duration::ZERO
    } else {
        rand::rng().random_range(Duration::ZERO..=jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// Records when fake audits start and end, and how many ran at once.
    #[derive(Clone, Default)]
    struct Probe {
        running: Arc<AtomicUsize>,
        max_running: Arc<AtomicUsize>,
        starts: Arc<Mutex<Vec<(String, Instant)>>>,
    }

    impl Probe {
        /// A fake audit of `org` that takes `took`.
        fn audit(&self, org: &str, took: Duration) -> impl Future<Output = String> + Send + 'static {
            let probe = self.clone();
            let org = org.to_string();
            async move {
                probe.starts.lock().unwrap().push((org.clone(), Instant::now()));
                let now = probe.running.fetch_add(1, Ordering::SeqCst) + 1;
                probe.max_running.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(took).await;
                probe.running.fetch_sub(1, Ordering::SeqCst);
                org
            }
        }

        fn started(&self) -> Vec<String> {
            self.starts.lock().unwrap().iter().map(|(o, _)| o.clone()).collect()
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_tick_for_an_org_still_running_is_skipped_and_the_next_one_after_it_runs() {
        let probe = Probe::default();
        let mut runner = Runner::new(4, Duration::ZERO);
        assert_eq!(runner.tick("acme", probe.audit("acme", MINUTE)), TickOutcome::Accepted);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            runner.tick("acme", probe.audit("acme", MINUTE)),
            TickOutcome::SkippedBusy
        );
        // Another org is not held up by it.
        assert_eq!(
            runner.tick("globex", probe.audit("globex", MINUTE)),
            TickOutcome::Accepted
        );
        let first = runner.join_next().await.unwrap();
        assert_eq!(first.output.as_deref(), Some("acme"));
        assert_eq!(runner.tick("acme", probe.audit("acme", MINUTE)), TickOutcome::Accepted);
        while runner.join_next().await.is_some() {}
        assert_eq!(
            probe.started(),
            ["acme", "globex", "acme"],
            "the skipped tick never ran"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_org_waiting_for_its_jitter_counts_as_busy() {
        let probe = Probe::default();
        let mut runner = Runner::new(4, Duration::from_secs(30));
        runner.tick("acme", probe.audit("acme", MINUTE));
        assert_eq!(
            runner.tick("acme", probe.audit("acme", MINUTE)),
            TickOutcome::SkippedBusy
        );
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_concurrency_orgs_are_audited_at_once() {
        let probe = Probe::default();
        let mut runner = Runner::new(2, Duration::ZERO);
        let orgs = ["a", "b", "c", "d", "e"];
        for org in orgs {
            runner.tick(org, probe.audit(org, MINUTE));
        }
        let t0 = Instant::now();
        let mut done = Vec::new();
        while let Some(f) = runner.join_next().await {
            done.push(f.output.unwrap());
        }
        assert_eq!(done.len(), 5);
        assert_eq!(probe.max_running.load(Ordering::SeqCst), 2);
        // Five one-minute audits two at a time: three rounds.
        assert_eq!(t0.elapsed(), 3 * MINUTE);
    }

    #[tokio::test(start_paused = true)]
    async fn the_concurrency_limit_follows_a_reload_both_ways() {
        let probe = Probe::default();
        let mut runner = Runner::new(1, Duration::ZERO);
        runner.set_concurrency(3);
        for org in ["a", "b", "c"] {
            runner.tick(org, probe.audit(org, MINUTE));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(probe.running.load(Ordering::SeqCst), 3);
        while runner.join_next().await.is_some() {}

        runner.set_concurrency(1);
        for org in ["a", "b", "c"] {
            runner.tick(org, probe.audit(org, MINUTE));
        }
        let t0 = Instant::now();
        while runner.join_next().await.is_some() {}
        assert_eq!(probe.max_running.load(Ordering::SeqCst), 3, "from the first round");
        assert_eq!(t0.elapsed(), 3 * MINUTE, "one at a time after the reload");
    }

    #[tokio::test(start_paused = true)]
    async fn each_audit_starts_after_a_random_delay_of_at_most_the_jitter() {
        let jitter = Duration::from_secs(30);
        let probe = Probe::default();
        let mut runner = Runner::new(64, jitter);
        let t0 = Instant::now();
        for i in 0..40 {
            let org = format!("org{i}");
            runner.tick(&org, probe.audit(&org, Duration::ZERO));
        }
        while runner.join_next().await.is_some() {}
        let delays: BTreeSet<Duration> = probe.starts.lock().unwrap().iter().map(|(_, at)| *at - t0).collect();
        assert!(delays.iter().all(|d| *d <= jitter), "{delays:?}");
        assert!(delays.len() > 10, "delays are spread, not one value: {delays:?}");

        // "0s" turns jitter off: the audit starts at once.
        runner.set_jitter(Duration::ZERO);
        let t1 = Instant::now();
        runner.tick("now", probe.audit("now", Duration::ZERO));
        runner.join_next().await;
        assert_eq!(probe.starts.lock().unwrap().last().unwrap().1, t1);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_lets_running_audits_finish_within_the_grace_and_starts_nothing_new() {
        let probe = Probe::default();
        let mut runner = Runner::new(1, Duration::ZERO);
        runner.tick("running", probe.audit("running", Duration::from_secs(5)));
        runner.tick("queued", probe.audit("queued", Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t0 = Instant::now();
        let drained = runner.drain(t0 + Duration::from_secs(20)).await;
        assert_eq!(t0.elapsed(), Duration::from_secs(4), "no waiting past the last audit");
        let outcomes: Vec<(String, Option<String>)> = drained.finished.into_iter().map(|f| (f.org, f.output)).collect();
        assert!(
            outcomes.contains(&("running".into(), Some("running".into()))),
            "{outcomes:?}"
        );
        assert!(
            outcomes.contains(&("queued".into(), None)),
            "the queued one never starts: {outcomes:?}"
        );
        assert!(drained.abandoned.is_empty());
        assert_eq!(probe.started(), ["running"]);
        assert_eq!(
            runner.tick("late", probe.audit("late", MINUTE)),
            TickOutcome::SkippedStopping
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_audit_that_outlasts_the_grace_is_abandoned_when_it_runs_out() {
        /// Tells whether the audit's future was dropped (abandoned) rather than left running.
        struct DropFlag(Arc<AtomicUsize>);
        impl Drop for DropFlag {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicUsize::new(0));
        let flag = DropFlag(dropped.clone());
        let mut runner = Runner::new(2, Duration::ZERO);
        runner.tick("slow", async move {
            let _flag = flag;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        runner.tick("quick", tokio::time::sleep(Duration::from_secs(2)));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let t0 = Instant::now();
        let drained = runner.drain(t0 + Duration::from_secs(20)).await;
        assert_eq!(t0.elapsed(), Duration::from_secs(20));
        assert_eq!(drained.abandoned, ["slow"]);
        assert_eq!(drained.finished.len(), 1);
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "the abandoned audit was dropped");
        assert!(!runner.has_tasks());
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_audit_frees_its_org() {
        let mut runner: Runner<()> = Runner::new(1, Duration::ZERO);
        runner.tick("acme", async { panic!("boom") });
        assert!(runner.join_next().await.is_none(), "the panic is logged, not returned");
        assert_eq!(runner.busy().count(), 0);
        assert_eq!(runner.tick("acme", async {}), TickOutcome::Accepted);
    }
}
