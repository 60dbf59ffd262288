//! The daemon end to end (SPEC §8): the real `auditd` binary as a child process against the Zoho
//! simulator, with systemd's notify socket played by a unix datagram socket, signals sent with
//! `kill`, and `/metrics` read over plain TCP. Every wait is bounded, and every child is killed
//! when its test ends, pass or fail.

use crate::support::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every second, seconds first (tokio-cron-scheduler syntax).
const EVERY_SECOND: &str = "schedule = \"* * * * * *\"";
/// Never within a test run: the daemon idles.
const NEVER: &str = "schedule = \"0 0 0 1 1 *\"";

/// A running `auditd` daemon and what it told systemd and stderr.
struct Daemon {
    child: Child,
    notify: UnixDatagram,
    /// Every notify datagram received so far, in order.
    messages: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Daemon {
    /// Starts `auditd` (no subcommand) with the test's config and a notify socket.
    fn start(t: &Test) -> Daemon {
        Daemon::spawn(t, t.command(&[]))
    }

    /// Starts `cmd` (from `t.command`) with a notify socket in the test's directory.
    fn spawn(t: &Test, mut cmd: Command) -> Daemon {
        let socket = t.dir.path().join("notify.sock");
        let _ = std::fs::remove_file(&socket);
        let notify = UnixDatagram::bind(&socket).expect("bind the notify socket");
        notify.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        cmd.env("NOTIFY_SOCKET", &socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start auditd");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        // Drains stderr so the child never blocks on a full pipe; ends when the child does.
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Daemon {
            child,
            notify,
            messages: Vec::new(),
            stderr,
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Sends `signal` (`TERM`, `HUP`, ...) with kill(1).
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Reads whatever notify datagrams have arrived (waiting at most ~50 ms).
    fn read_notify(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.notify.recv(&mut buf) {
            self.messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }

    /// Notify lines received so far (a datagram may carry several).
    fn notify_lines(&mut self) -> Vec<String> {
        self.read_notify();
        self.messages
            .iter()
            .flat_map(|m| m.lines().map(str::to_string))
            .collect()
    }

    /// Waits until `count` notify lines satisfy `pred`.
    #[track_caller]
    fn wait_notify(&mut self, timeout: Duration, count: usize, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let start = Instant::now();
        loop {
            let matching: Vec<String> = self.notify_lines().into_iter().filter(|l| pred(l)).collect();
            if matching.len() >= count {
                return matching;
            }
            if start.elapsed() > timeout {
                panic!(
                    "{count} matching notify line(s) not received within {timeout:?}; got {:?}\n--- stderr\n{}",
                    self.messages,
                    self.stderr()
                );
            }
        }
    }

    /// Waits for `READY=1`.
    #[track_caller]
    fn wait_ready(&mut self) {
        self.wait_notify(Duration::from_secs(10), 1, |l| l == "READY=1");
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle` `count` times.
    #[track_caller]
    fn wait_stderr(&self, timeout: Duration, needle: &str, count: usize) {
        if !wait_until(timeout, || self.stderr().matches(needle).count() >= count) {
            panic!(
                "stderr lacks {count} x {needle:?} after {timeout:?}:\n{}",
                self.stderr()
            );
        }
    }

    /// Waits for the process to end.
    #[track_caller]
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the stderr thread catch up with the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            if start.elapsed() > timeout {
                panic!("auditd still running after {timeout:?}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests to `path` the simulator answered for `org`.
fn requests_to(t: &Test, org: &str, path: &str) -> usize {
    t.sim.requests(org).iter().filter(|r| r.path == path).count()
}

/// The database passes SQLite's own consistency check.
fn assert_consistent(t: &Test) {
    let check: String = t.db().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    assert_eq!(
        t.count(
            "SELECT COUNT(*) FROM drifts d WHERE NOT EXISTS (SELECT 1 FROM alerts a WHERE a.id = d.alert_id) \
             OR NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.id = d.to_snapshot)"
        ),
        0,
        "every drift has its alert and snapshot"
    );
}

#[test]
fn ready_comes_after_start_up_then_every_tick_audits_and_the_watchdog_is_fed() {
    let t = Test::new().org("acme").daemon(EVERY_SECOND);
    let mut cmd = t.command(&[]);
    // A short watchdog, so that pings show up within the test (every 0.5 s).
    cmd.env("WATCHDOG_USEC", "1000000");
    let mut d = Daemon::spawn(&t, cmd);
    d.wait_ready();
    let first = d.messages.iter().find(|m| m.contains("READY=1")).unwrap().clone();
    assert!(first.contains("STATUS=1 org(s); no pass yet"), "{first:?}");
    assert!(t.db_path().exists(), "the database is open before READY=1");

    // Two passes on the one-second cron, each reported on the status line.
    let passes = d.wait_notify(Duration::from_secs(10), 2, |l| {
        l.starts_with("STATUS=") && l.contains("last pass: acme clean")
    });
    assert!(passes[0].contains("none needs reconnect"), "{passes:?}");
    assert!(requests_to(&t, "acme", "/api/v1/supportEmailDomain") >= 2);
    d.wait_notify(Duration::from_secs(5), 2, |l| l == "WATCHDOG=1");
    d.wait_stderr(Duration::from_secs(5), "audit finished", 2);

    d.signal("TERM");
    assert!(d.wait_exit(Duration::from_secs(10)).success());
    let lines = d.notify_lines();
    assert!(lines.iter().any(|l| l == "STOPPING=1"), "{lines:?}");
    let log = d.stderr();
    assert!(log.contains("daemon started") && log.contains("stopped"), "{log}");
    assert!(
        !log.contains("Job creator"),
        "the scheduler's own chatter is kept out:\n{log}"
    );
    for secret in t.secrets() {
        assert!(!log.contains(&secret), "a secret reached the log");
    }
}

#[test]
fn sigterm_mid_pass_lets_the_audit_finish_then_stops_with_exit_0() {
    let t = Test::new()
        .org("acme")
        .daemon(EVERY_SECOND)
        .daemon("shutdown_grace = \"10s\"");
    // The last source of the first pass answers after 2 s: SIGTERM lands in the middle of it.
    hold_support_domain(&t, 2);
    let mut d = Daemon::start(&t);
    d.wait_ready();
    assert!(reply_addresses_read_after(&t, 0));
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    d.signal("TERM");
    d.wait_notify(Duration::from_secs(2), 1, |l| l == "STOPPING=1");
    let status = d.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit {status:?}:\n{}", d.stderr());
    assert!(
        sent.elapsed() >= Duration::from_millis(1000),
        "it waited for the running audit"
    );
    let log = d.stderr();
    let stopping = log.find("stopping: no new audits").expect("stopping is logged");
    let finished = log.rfind("audit finished").expect("the audit finished");
    assert!(
        finished > stopping,
        "the in-flight audit finished after SIGTERM:\n{log}"
    );
    assert!(!log.contains("abandoned"), "{log}");

    // The pass is committed whole: every source recorded, the slow one included.
    assert_consistent(&t);
    assert_eq!(t.count("SELECT COUNT(*) FROM source_state WHERE org = 'acme'"), 6);
    assert_eq!(
        t.count("SELECT COUNT(*) FROM source_state WHERE org = 'acme' AND source = 'desk.support_email_domain' AND status = 'baseline'"),
        1
    );
    t.run(&["status"]).code(0);
}

#[test]
fn an_audit_that_outlasts_the_grace_is_abandoned_with_nothing_half_written() {
    let t = Test::new()
        .org("acme")
        .webhook()
        .daemon(EVERY_SECOND)
        .daemon("shutdown_grace = \"1s\"");
    let mut d = Daemon::start(&t);
    d.wait_ready();
    d.wait_notify(Duration::from_secs(10), 1, |l| l.contains("last pass: acme clean"));

    // The next pass sees a changed SMTP host but hangs on its last source, past the grace period.
    hold_support_domain(&t, 20);
    // Counted after the fault is in: a pass that reads reply addresses from now on meets the delay.
    let seen = requests_to(&t, "acme", "/api/v1/mailReplyAddress");
    t.sim.update("acme", |data| {
        data.reply_addresses[0]["smtpDetails"]["host"] = json!("mail.attacker.example")
    });
    assert!(reply_addresses_read_after(&t, seen));
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    d.signal("TERM");
    let status = d.wait_exit(Duration::from_secs(8));
    assert!(status.success(), "exit {status:?}:\n{}", d.stderr());
    assert!(sent.elapsed() < Duration::from_secs(5), "the grace period is 1 s");
    d.wait_stderr(Duration::from_secs(1), "abandoned", 1);

    // Nothing of the abandoned pass was written: no snapshot, drift or alert for the new host...
    assert_consistent(&t);
    assert_eq!(t.count("SELECT COUNT(*) FROM drifts"), 0);
    assert_eq!(t.count("SELECT COUNT(*) FROM alerts"), 0);
    assert!(t.webhooks().is_empty());
    // ... and nothing is lost: the next run finds the drift.
    let run = t.once(&[]);
    run.code(2);
    assert_eq!(run.source("acme", "desk.reply_addresses")["status"], "drift");
    assert_eq!(t.webhooks().len(), 1);
}

#[test]
fn a_second_sigterm_cuts_the_grace_period_short() {
    let t = Test::new()
        .org("acme")
        .daemon(EVERY_SECOND)
        .daemon("shutdown_grace = \"30s\"");
    hold_support_domain(&t, 20);
    let mut d = Daemon::start(&t);
    d.wait_ready();
    assert!(reply_addresses_read_after(&t, 0));
    d.signal("TERM");
    d.wait_stderr(Duration::from_secs(5), "waiting for running ones", 1);
    let sent = Instant::now();
    d.signal("TERM");
    let status = d.wait_exit(Duration::from_secs(8));
    assert!(status.success(), "exit {status:?}:\n{}", d.stderr());
    assert!(sent.elapsed() < Duration::from_secs(5), "not the 30 s grace period");
    let log = d.stderr();
    assert!(
        log.contains("abandoning running audits now") && log.contains("abandoned"),
        "{log}"
    );
    assert_consistent(&t);
    assert_eq!(
        t.count("SELECT COUNT(*) FROM source_state"),
        0,
        "the abandoned first pass wrote nothing"
    );
}

#[test]
fn sighup_with_a_broken_config_keeps_the_daemon_running_and_a_good_one_reloads() {
    let t = Test::new().org("acme").org("globex").daemon(EVERY_SECOND);
    let full = t.config_text();
    // Start with acme alone; globex comes with the reload.
    let acme_only: String = full
        .split("\n[[orgs]]\n")
        .filter(|block| !block.starts_with("name = \"globex\""))
        .collect::<Vec<_>>()
        .join("\n[[orgs]]\n");
    assert!(acme_only.contains("\"acme\"") && !acme_only.contains("\"globex\""));
    let cmd = t.command(&[]);
    std::fs::write(t.config_path(), &acme_only).unwrap();
    let mut d = Daemon::spawn(&t, cmd);
    d.wait_ready();
    d.wait_notify(Duration::from_secs(10), 1, |l| l.contains("last pass: acme"));
    assert!(t.sim.requests("globex").is_empty());

    // Not TOML at all: refused, and the daemon carries on auditing with the old config.
    std::fs::write(t.config_path(), "[daemon\nschedule = ").unwrap();
    d.signal("HUP");
    d.wait_stderr(Duration::from_secs(5), "config reload failed", 1);
    d.wait_notify(Duration::from_secs(5), 1, |l| l == "RELOADING=1");
    d.wait_notify(Duration::from_secs(5), 2, |l| l == "READY=1");
    d.wait_notify(Duration::from_secs(5), 1, |l| {
        l.starts_with("STATUS=") && l.contains("last reload failed, running on the previous config")
    });
    let before = requests_to(&t, "acme", "/api/v1/supportEmailDomain");
    assert!(wait_until(Duration::from_secs(5), || requests_to(
        &t,
        "acme",
        "/api/v1/supportEmailDomain"
    ) > before));
    assert!(d.is_running());

    // Valid TOML, but a secret that cannot be resolved: refused too, naming the key.
    std::fs::write(
        t.config_path(),
        full.replace("AUDITD_TEST_REFRESH_GLOBEX", "AUDITD_TEST_NOT_SET"),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_stderr(Duration::from_secs(5), "config reload failed", 2);
    assert!(d.stderr().contains("orgs[globex].refresh_token"), "{}", d.stderr());
    assert!(d.is_running());
    assert!(t.sim.requests("globex").is_empty());

    // A good config: globex is scheduled and audited.
    std::fs::write(t.config_path(), &full).unwrap();
    d.signal("HUP");
    d.wait_stderr(Duration::from_secs(5), "config reloaded", 1);
    assert!(d.stderr().contains("added=[\"globex\"]"), "{}", d.stderr());
    assert!(wait_until(Duration::from_secs(10), || requests_to(
        &t,
        "globex",
        "/api/v1/supportEmailDomain"
    ) > 0));
    d.wait_notify(Duration::from_secs(10), 1, |l| {
        l.starts_with("STATUS=2 org(s)") && !l.contains("reload failed")
    });

    d.signal("TERM");
    assert!(d.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn a_second_daemon_or_once_on_the_same_database_exits_1_while_readers_still_work() {
    let t = Test::new().org("acme").daemon(NEVER);
    let mut d = Daemon::start(&t);
    d.wait_ready();
    t.run(&[]).code(1).stderr_contains("another auditd process");
    t.once(&[]).code(1).stderr_contains("another auditd process");
    t.run(&["status"]).code(0);
    assert!(d.is_running());
    d.signal("INT");
    assert!(d.wait_exit(Duration::from_secs(10)).success());
    // The lock went with the daemon.
    t.once(&[]).code(0);
}

#[test]
fn an_invalid_config_stops_the_daemon_at_once_with_exit_78() {
    let t = Test::new().org("acme").daemon("concurrency = 0");
    let run = t.run(&[]);
    run.code(78).stderr_contains("daemon.concurrency");
}

#[test]
fn metrics_parse_as_prometheus_text_and_move_after_a_drift() {
    let port = free_port();
    let t = Test::new()
        .org("acme")
        .webhook()
        .daemon(EVERY_SECOND)
        .daemon(&format!("metrics_listen = \"127.0.0.1:{port}\""));
    let mut d = Daemon::start(&t);
    d.wait_ready();
    let (status, _, body) = http_get(port, "/healthz", None);
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    let last_success = Series::new(
        "auditd_last_success_timestamp_seconds",
        &[("org", "acme"), ("source", "desk.reply_addresses")],
    );
    let drifts = Series::new("auditd_drift_events_total", &[("org", "acme")]);
    let mut metrics = scrape(port);
    assert!(wait_until(Duration::from_secs(10), || {
        metrics = scrape(port);
        metrics.contains_key(&last_success)
    }));
    assert_eq!(metrics[&drifts], 0.0);
    assert_eq!(metrics[&Series::new("auditd_orgs_needing_reconnect", &[])], 0.0);
    assert_eq!(
        metrics[&Series::new("auditd_outbox_pending", &[("channel", "hook")])],
        0.0
    );
    assert_eq!(metrics[&Series::new("auditd_outbox_dead", &[("channel", "hook")])], 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - metrics[&last_success]).abs() < 60.0);
    assert!(metrics[&Series::new("auditd_api_requests_total", &[("product", "desk"), ("outcome", "ok")])] > 0.0);
    assert!(metrics[&Series::new("auditd_api_requests_total", &[("product", "crm"), ("outcome", "ok")])] > 0.0);
    let passes_before = metrics[&Series::new("auditd_pass_duration_seconds_count", &[])];
    assert!(passes_before >= 1.0);

    t.sim.update("acme", |data| {
        data.reply_addresses[0]["smtpDetails"]["host"] = json!("mail.attacker.example")
    });
    assert!(
        wait_until(Duration::from_secs(10), || {
            metrics = scrape(port);
            metrics[&drifts] == 1.0
        }),
        "{metrics:?}"
    );
    // The drift is committed before its pass ends (delivery comes last), so its duration may lag.
    let passes = Series::new("auditd_pass_duration_seconds_count", &[]);
    assert!(wait_until(Duration::from_secs(5), || scrape(port)[&passes] > passes_before));
    assert!(
        wait_until(Duration::from_secs(5), || !t.webhooks().is_empty()),
        "the drift alert was delivered"
    );

    // Prometheus may ask for OpenMetrics.
    let (status, content_type, body) = http_get(port, "/metrics", Some("application/openmetrics-text;version=1.0.0"));
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"));

    d.signal("TERM");
    assert!(d.wait_exit(Duration::from_secs(10)).success());
}

/// The next read of acme's support domain answers only after `secs`: a pass that is still running.
fn hold_support_domain(t: &Test, secs: u64) {
    t.sim.inject(
        Fault::new(
            "/api/v1/supportEmailDomain",
            FaultResponse::Delay(Duration::from_secs(secs)),
        )
        .org("acme")
        .times(1),
    );
}

/// Waits (bounded) until acme's reply addresses were read more than `seen` times: a pass is under way.
fn reply_addresses_read_after(t: &Test, seen: usize) -> bool {
    wait_until(Duration::from_secs(10), || {
        requests_to(t, "acme", "/api/v1/mailReplyAddress") > seen
    })
}
