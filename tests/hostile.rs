//! Hostile input and careless operators (SPEC §12): nothing from Zoho, the config or the disk may
//! silence an alert, forge output, or leak.

use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

const COMPOSE: &str = "/crm/email/v8/settings/compose";

/// A member value that makes the body holding it nest `depth` levels (the body itself is level 1).
fn nested(depth: usize) -> Value {
    let mut v = json!({"leaf": true});
    for _ in 2..depth {
        v = json!({ "n": v });
    }
    v
}

fn emails_text(t: &Test) -> Vec<String> {
    t.emails()
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect()
}

#[test]
fn the_deepest_document_the_fetch_accepts_is_still_delivered_end_to_end() {
    let t = Test::new().org("acme").webhook().email();
    t.once(&[]).code(0);
    // The body is {"supportEmailDomain": ..., "extra": <nested>}: the body nests to the deepest
    // level a fetch accepts (64), and changes in the same pass as the SMTP host.
    t.reply_host("acme", "mail.attacker.example");
    t.sim.update("acme", |d| d.support_email_domain["extra"] = nested(64));
    let run = t.once(&[]);
    run.code(2);
    assert_eq!(run.source("acme", "desk.support_email_domain")["status"], "drift");
    assert_eq!(run.json()["alerts"]["delivered"], 2, "{}", run.stdout);
    assert_eq!(t.count("SELECT COUNT(*) FROM outbox WHERE status = 'dead'"), 0);
    let body = t.webhooks()[0].json();
    let sources: Vec<&str> = body["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["desk.reply_addresses", "desk.support_email_domain"]);
    assert_eq!(t.emails().len(), 1);
}

#[test]
fn nesting_deeper_than_the_store_accepts_is_an_error_of_that_source_at_fetch_time() {
    let t = Test::new().org("acme").webhook().email();
    t.once(&[]).code(0);
    let snapshots = t.count("SELECT COUNT(*) FROM snapshots WHERE source = 'desk.support_email_domain'");
    // 123-126 levels once made every channel's row dead ("recursion limit exceeded").
    for depth in [65, 123, 126] {
        t.reply_host("acme", &format!("mail{depth}.attacker.example"));
        t.sim
            .update("acme", |d| d.support_email_domain["extra"] = nested(depth));
        let run = t.once(&[]);
        run.code(3);
        let domain = run.source("acme", "desk.support_email_domain");
        assert_eq!(domain["status"], "error");
        assert!(domain["error"].as_str().unwrap().contains("levels deep"), "{domain}");
        assert_eq!(
            run.source("acme", "desk.reply_addresses")["status"],
            "drift",
            "the other sources go on"
        );
        assert_eq!(run.json()["alerts"]["delivered"], 2, "depth {depth}: {}", run.stdout);
    }
    assert_eq!(
        t.count("SELECT COUNT(*) FROM snapshots WHERE source = 'desk.support_email_domain'"),
        snapshots,
        "no snapshot of the refused body"
    );
    assert_eq!(t.count("SELECT COUNT(*) FROM outbox WHERE status = 'dead'"), 0);
    assert_eq!(t.webhooks().len(), 3);
    assert_eq!(t.emails().len(), 3);
}

#[test]
fn the_largest_document_the_fetch_accepts_makes_an_alert_every_channel_takes() {
    let t = Test::new().org("acme").webhook().email();
    // A 7 MiB value that changes: old and new together are as large as a body may be (16 MiB).
    let big = "x".repeat(7 * 1024 * 1024);
    t.sim
        .update("acme", |d| d.support_email_domain["signature"] = json!(big));
    t.once(&[]).code(0);
    t.sim.update("acme", |d| {
        d.support_email_domain["signature"] = json!(format!("{big}!"))
    });
    let run = t.once(&[]);
    run.code(2);
    assert_eq!(run.json()["alerts"]["delivered"], 2, "{}", run.stdout);
    let hook = &t.webhooks()[0];
    assert!(hook.body.len() < 1024 * 1024, "{} bytes", hook.body.len());
    let change = &hook.json()["sources"][0]["changes"][0];
    assert_eq!(change["path"], "/signature");
    assert!(
        change["new"]
            .as_str()
            .unwrap()
            .contains("auditd diff acme --source desk.support_email_domain"),
        "{change}"
    );
    // The database keeps the whole change for `auditd diff`.
    let stored: i64 = t.count("SELECT MAX(LENGTH(changes)) FROM drifts");
    assert!(stored > 14 * 1024 * 1024, "{stored}");
}

#[test]
fn slack_messages_carry_no_mention_or_link_from_zoho_data() {
    let t = Test::new().org("acme").org("globex").slack_webhook();
    t.once(&[]).code(0);
    // A 401 whose error code carries a mention and a link on a line of its own.
    let evil_code = format!(
        "INVALID_TOKEN\n<!channel> <https://evil.example/login|Re-authorize Zoho here>{}",
        "X".repeat(5166)
    );
    let body = json!({"errorCode": evil_code, "message": "no"}).to_string();
    t.sim.invalidate_access_tokens("acme");
    t.sim
        .inject(Fault::new("/api/v1/departments", FaultResponse::status(401, &body)).org("acme"));
    // A key with a newline and a backtick trying to leave the code span.
    t.sim.update("globex", |d| {
        d.support_email_domain["x`\n<!here> <https://evil.example|click>"] = json!("<@U123>")
    });
    let run = t.once(&[]);
    run.code(3);
    let texts: Vec<String> = t
        .webhooks()
        .iter()
        .map(|h| h.json()["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 2, "a reconnect alert and a drift alert");
    for text in &texts {
        for live in ["<!channel>", "<!here>", "<https://", "<@U123>"] {
            assert!(!text.contains(live), "{live} in {text}");
        }
        // A bare URL from Zoho only ever appears inside a code span, where Slack makes no link.
        for line in text.lines().filter(|l| l.contains("evil.example")) {
            assert!(line.contains('`'), "{line}");
        }
        assert!(text.len() < 2000, "bounded: {} chars", text.len());
        // Every change line stays one code span on one line.
        for line in text.lines().filter(|l| l.starts_with('`')) {
            assert!(line.ends_with('`') && line.matches('`').count() == 2, "{line}");
        }
    }
    assert!(texts.iter().any(|t| t.contains("&lt;!channel&gt;")), "{texts:?}");
}

#[test]
fn control_characters_from_zoho_reach_neither_logs_nor_the_terminal_raw() {
    let t = Test::new().org("acme");
    t.once(&[]).code(0);
    let code = "INVALID_TOKEN\r\n2026-12-03T00:00:00Z ERROR auditd: forged line\u{1b}[2J\u{1b}]0;owned\u{7}";
    let body = json!({"errorCode": code}).to_string();
    t.sim.invalidate_access_tokens("acme");
    t.sim
        .inject(Fault::new("/api/v1/departments", FaultResponse::status(401, &body)).org("acme"));
    let run = t.run(&["--once"]);
    run.code(3);
    let status = t.run(&["status"]);
    status.code(0);
    for (what, out) in [
        ("--once stderr", &run.stderr),
        ("--once stdout", &run.stdout),
        ("status", &status.stdout),
    ] {
        assert!(
            !out.contains('\u{1b}') && !out.contains('\r') && !out.contains('\u{7}'),
            "{what}: {out:?}"
        );
        assert!(
            !out.lines()
                .any(|l| l.contains("ERROR auditd: forged line") && !l.contains("INVALID_TOKEN")),
            "{what} has a forged line: {out}"
        );
    }
    assert!(
        status.stdout.contains("\\u{1b}[2J"),
        "escaped, still readable: {}",
        status.stdout
    );
}

#[test]
fn an_empty_compose_type_is_an_error_never_a_remove_then_add() {
    let t = Test::new().org("acme").webhook();
    t.once(&[]).code(0);
    for answer in [
        FaultResponse::status(204, ""),
        FaultResponse::status(200, r#"{"email_compose":[]}"#),
    ] {
        t.sim
            .inject(Fault::new(COMPOSE, answer).org("acme").query("type=emailin").times(1));
        let run = t.once(&[]);
        run.code(3);
        let compose = run.source("acme", "crm.compose");
        assert_eq!(compose["status"], "error", "{compose}");
        assert!(compose["error"].as_str().unwrap().contains("type=emailin"), "{compose}");
        let back = t.once(&[]);
        back.code(0);
        assert_eq!(
            back.source("acme", "crm.compose")["status"],
            "ok",
            "no add after the gap"
        );
    }
    assert!(t.webhooks().is_empty(), "no drift alert at all");
    assert_eq!(
        t.count("SELECT COUNT(*) FROM snapshots WHERE source = 'crm.compose'"),
        1
    );
}

#[cfg(unix)]
#[test]
fn the_lock_holds_on_the_database_file_whatever_link_reaches_it() {
    // The holder waits 20 s on one source (within its http_timeout) while the others try.
    let t = Test::new().org("acme").daemon("http_timeout = \"60s\"");
    t.once(&[]).code(0);
    t.sim.inject(
        Fault::new(
            "/api/v1/supportEmailDomain",
            FaultResponse::Delay(Duration::from_secs(20)),
        )
        .org("acme")
        .times(1),
    );
    let before = t.sim.requests("acme").len();
    let mut holder = t.spawn(&["--once"]);
    // Once the holder is calling Zoho, it holds the lock (and waits 20 s on one source).
    assert!(wait_until(Duration::from_secs(10), || t.sim.requests("acme").len() > before));
    let symlink = t.dir.path().join("via-symlink.db");
    std::os::unix::fs::symlink(t.db_path(), &symlink).unwrap();
    std::fs::create_dir(t.dir.path().join("other")).unwrap();
    let hard_link = t.dir.path().join("other/via-hard-link.db");
    std::fs::hard_link(t.db_path(), &hard_link).unwrap();
    for path in [&symlink, &hard_link] {
        let config = t.config_with_database(path);
        t.run_with_config(&config, &["--once"])
            .code(1)
            .stderr_contains("another auditd process");
    }
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn a_huge_retry_after_never_parks_an_alert_beyond_its_max_age() {
    let t = Test::new().org("acme").webhook().daemon("alert_max_age = \"3s\"");
    t.once(&[]).code(0);
    t.hook
        .as_ref()
        .unwrap()
        .respond_with_header(503, "Retry-After", "99999999999", 100);
    t.reply_host("acme", "mail.attacker.example");
    t.once(&[]).code(2);
    let next: i64 =
        t.count("SELECT next_attempt_at - created_at FROM outbox JOIN alerts ON alerts.id = outbox.alert_id");
    assert!(next <= 3, "next attempt {next} s after creation, past alert_max_age");
    std::thread::sleep(Duration::from_millis(3200));
    // The next run tries it at its deadline; it fails again and is dead, not pending for years.
    t.once(&[]).code(0);
    assert_eq!(t.count("SELECT COUNT(*) FROM outbox WHERE status = 'dead'"), 1);
    assert_eq!(t.count("SELECT COUNT(*) FROM outbox WHERE status = 'pending'"), 0);
}

#[test]
fn durations_above_ten_years_are_config_errors_naming_the_key() {
    for (key, value) in [
        ("shutdown_grace", "213503982334602d"),
        ("shutdown_grace", "18446744073709551615s"),
        ("alert_max_age", "9223372036854775808s"),
        ("http_timeout", "3651d"),
    ] {
        let t = Test::new().org("acme").daemon(&format!("{key} = \"{value}\""));
        for args in [&["check-config"][..], &["--once"][..]] {
            t.run(args)
                .code(78)
                .stderr_contains(&format!("daemon.{key}"))
                .stderr_contains("too long");
        }
    }
}

#[test]
fn read_only_commands_never_create_a_database_at_a_mistyped_path() {
    let t = Test::new().org("acme").daemon("");
    let missing = t.dir.path().join("typo/auditd.db");
    let config = t.config_with_database(&missing);
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["alerts"],
        vec!["alerts", "retry", "--all-dead"],
        vec!["history", "acme"],
        vec!["diff", "acme", "--source", "desk.reply_addresses"],
    ] {
        t.run_with_config(&config, &args)
            .code(1)
            .stderr_contains(&missing.display().to_string())
            .stderr_contains("does not exist");
        assert!(!t.dir.path().join("typo").exists(), "{args:?} created it");
    }
}

#[cfg(unix)]
#[test]
fn folders_are_created_0700_and_an_open_database_is_tightened_with_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let t = Test::new().org("acme");
    let deep = t.dir.path().join("state/zoho/auditd.db");
    let config = t.config_with_database(&deep);
    let cmd = t.command_with_config(&config, &["--once"]);
    // Under umask 0 nothing narrows the modes but auditd itself.
    let status = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg("umask 0 && exec \"$0\" \"$@\"")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .envs(
            cmd.get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        )
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    for dir in ["state", "state/zoho"] {
        let mode = std::fs::metadata(t.dir.path().join(dir)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{dir}");
    }
    assert_eq!(std::fs::metadata(&deep).unwrap().permissions().mode() & 0o777, 0o600);
    std::fs::set_permissions(&deep, std::fs::Permissions::from_mode(0o666)).unwrap();
    let run = t.run_with_config(&config, &["status"]);
    run.code(0).stderr_contains("readable by group or others");
    assert_eq!(std::fs::metadata(&deep).unwrap().permissions().mode() & 0o777, 0o600);
}

#[cfg(unix)]
#[test]
fn a_secret_file_readable_by_others_gets_a_warning_and_a_fifo_is_a_config_error() {
    use std::os::unix::fs::PermissionsExt;
    let t = Test::new().org("acme");
    let secret = t.dir.path().join("hook-secret");
    std::fs::write(&secret, "whsec-file-1234\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let t = t.raw(&format!(
        "\n[alerts.filehook]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\nsecret_file = \"{}\"\n",
        secret.display()
    ));
    t.run(&["check-config"])
        .code(0)
        .stderr_contains("alerts.filehook.secret_file")
        .stderr_contains("readable by group or others");

    let fifo = t.dir.path().join("fifo-secret");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let t = Test::new().org("acme").raw(&format!(
        "\n[alerts.fifohook]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\nsecret_file = \"{}\"\n",
        fifo.display()
    ));
    for args in [&["check-config"][..], &["--once"][..]] {
        let start = std::time::Instant::now();
        t.run(args)
            .code(78)
            .stderr_contains("alerts.fifohook.secret")
            .stderr_contains("not a regular file");
        assert!(start.elapsed() < Duration::from_secs(10), "no hang");
    }
}

#[test]
fn a_redirect_to_another_port_on_the_same_host_is_not_followed() {
    let t = Test::new().org("acme");
    t.once(&[]).code(0);
    let elsewhere = WebhookSink::start();
    t.sim.inject(
        Fault::new(
            "/api/v1/supportEmailDomain",
            FaultResponse::status(302, "").header("Location", &elsewhere.url()),
        )
        .org("acme"),
    );
    let run = t.once(&[]);
    run.code(3);
    assert_eq!(run.source("acme", "desk.support_email_domain")["status"], "error");
    assert!(elsewhere.received().is_empty(), "the other port was never asked");
}

#[test]
fn numbers_wider_than_64_bits_stay_exact_so_their_change_is_drift() {
    let t = Test::new().org("acme").webhook();
    let wide =
        |last: &str| -> Value { serde_json::from_str(&format!("123456789012345678901234567890{last}")).unwrap() };
    t.sim.update("acme", |d| d.support_email_domain["quota"] = wide("1"));
    t.once(&[]).code(0);
    t.sim.update("acme", |d| d.support_email_domain["quota"] = wide("2"));
    let run = t.once(&[]);
    run.code(2);
    let change = &t.webhooks()[0].json()["sources"][0]["changes"][0];
    assert_eq!(change["path"], "/quota");
    assert_eq!(change["old"].to_string(), "1234567890123456789012345678901");
    assert_eq!(change["new"].to_string(), "1234567890123456789012345678902");
}

#[test]
fn kill_9_during_email_delivery_repeats_at_most_the_message_in_flight() {
    let orgs = 6;
    let mut t = Test::new().email();
    for i in 0..orgs {
        t = t.org(&format!("org{i}"));
    }
    t.once(&[]).code(0);
    for i in 0..orgs {
        t.reply_host(&format!("org{i}"), "mail.attacker.example");
    }
    t.smtp.as_ref().unwrap().set_delay(Duration::from_millis(700));
    let mut child = t.spawn(&["--once"]);
    assert!(wait_until(Duration::from_secs(30), || t.emails().len() >= 2));
    child.kill().unwrap();
    child.wait().unwrap();
    t.smtp.as_ref().unwrap().set_delay(Duration::ZERO);
    t.once(&[]).code(0);
    let ids: Vec<String> = emails_text(&t)
        .iter()
        .map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Message-ID: "))
                .expect("a Message-ID")
                .to_string()
        })
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), orgs, "every alert arrived: {ids:?}");
    assert!(
        ids.len() <= orgs + 1,
        "at most the one message in flight repeats: {ids:?}"
    );
}
