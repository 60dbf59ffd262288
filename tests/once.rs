//! `auditd --once` end to end against the Zoho simulator, read as a specification (SPEC §2, §4–§7).

use crate::support::*;
use serde_json::{json, Value};

#[test]
fn a_baseline_then_a_clean_pass_exit_0_and_alert_nothing() {
    let t = Test::new().org("acme").org("globex").webhook();
    let first = t.once(&[]);
    first.code(0);
    for org in ["acme", "globex"] {
        assert_eq!(first.org(org)["state"], "ok");
        for s in first.org(org)["sources"].as_array().unwrap() {
            assert!(s["status"] == "baseline" || s["status"] == "unavailable", "{s}");
        }
    }
    assert_eq!(first.source("acme", "desk.reply_addresses")["status"], "baseline");
    let second = t.once(&[]);
    second.code(0);
    assert_eq!(second.source("acme", "desk.reply_addresses")["status"], "ok");
    assert_eq!(
        second.source("acme", "desk.reply_addresses")["snapshot"],
        first.source("acme", "desk.reply_addresses")["snapshot"],
        "unchanged content is stored once"
    );
    assert!(t.webhooks().is_empty());
    assert_eq!(t.count("SELECT COUNT(*) FROM alerts"), 0);
}

#[test]
fn an_smtp_host_change_exits_2_and_alerts_by_signed_webhook_and_email() {
    let t = Test::new().org("acme").webhook().email();
    t.once(&[]).code(0);
    t.reply_host("acme", "mail.attacker.example");
    let run = t.once(&[]);
    run.code(2);
    let src = run.source("acme", "desk.reply_addresses");
    assert_eq!(src["status"], "drift");
    assert_eq!(src["changes"], 1);
    assert_eq!(run.json()["alerts"]["delivered"], 2, "one webhook and one email");

    let hooks = t.webhooks();
    assert_eq!(hooks.len(), 1);
    let hook = &hooks[0];
    assert_eq!(hook.header("content-type"), Some("application/json"));
    assert_eq!(hook.header("x-auditd-event"), Some("drift"));
    assert!(
        signature_ok(&hook.body, hook.header("x-auditd-signature").unwrap()),
        "signature verifies"
    );
    let body = hook.json();
    assert_eq!(hook.header("x-auditd-delivery"), body["event_id"].as_str());
    assert_eq!(body["version"], 1);
    assert_eq!(body["kind"], "drift");
    assert_eq!(body["org"], "acme");
    assert_eq!(body["reason"], Value::Null);
    let source = &body["sources"][0];
    assert_eq!(source["source"], "desk.reply_addresses");
    assert_eq!(source["from_snapshot"], src["previous_snapshot"]);
    assert_eq!(source["to_snapshot"], src["snapshot"]);
    let change = &source["changes"][0];
    let id = OrgData::sample(1).reply_addresses[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(change["path"], format!("/reply_addresses/{id}/smtpDetails/host"));
    assert_eq!(change["op"], "replace");
    assert_eq!(change["old"], "smtp.zoho.com");
    assert_eq!(change["new"], "mail.attacker.example");
    let diff = source["diff"].as_str().unwrap();
    assert!(
        diff.lines()
            .any(|l| l.starts_with('+') && l.contains("\"host\": \"mail.attacker.example\"")),
        "{diff}"
    );
    assert!(
        diff.lines()
            .any(|l| l.starts_with('-') && l.contains("\"host\": \"smtp.zoho.com\"")),
        "{diff}"
    );

    let mails = t.emails();
    assert_eq!(mails.len(), 1);
    let mail = mailparse::parse_mail(&mails[0]).unwrap();
    let header = |name: &str| {
        mail.headers
            .iter()
            .find(|h| h.get_key().eq_ignore_ascii_case(name))
            .map(|h| h.get_value())
    };
    assert_eq!(
        header("Subject").as_deref(),
        Some("[auditd] drift in acme: 1 change(s)")
    );
    assert_eq!(header("Auto-Submitted").as_deref(), Some("auto-generated"));
    assert!(header("Message-ID")
        .unwrap()
        .contains(body["event_id"].as_str().unwrap()));
    assert!(header("Date").is_some());
    assert_eq!(mail.ctype.mimetype, "multipart/alternative");
    assert_eq!(mail.subparts.len(), 2);
    assert_eq!(mail.subparts[0].ctype.mimetype, "text/plain");
    let text = mail.subparts[0].get_body().unwrap();
    assert!(
        text.contains(&format!("/reply_addresses/{id}/smtpDetails/host")) && text.contains("mail.attacker.example"),
        "{text}"
    );
    assert_eq!(mail.subparts[1].ctype.mimetype, "text/html");
    let html = mail.subparts[1].get_body().unwrap();
    assert!(
        html.contains("background:#e6ffec") && html.contains("mail.attacker.example"),
        "{html}"
    );
}

#[test]
fn reordered_lists_and_volatile_fields_are_not_drift() {
    let t = Test::new().org("acme").webhook();
    t.once(&[]).code(0);
    t.sim.update("acme", |d| {
        d.reply_addresses.reverse();
        d.departments.reverse();
        d.from_addresses.reverse();
        for a in d.reply_addresses.iter_mut() {
            a["modifiedTime"] = json!(1_900_000_000_000u64);
            a["createdBy"]["photoURL"] = json!("https://desk.zoho.com/new-photo");
            // Desk flaps between strings and booleans/numbers.
            a["isActive"] = json!("true");
            a["smtpDetails"]["port"] = json!(465);
        }
        d.support_email_domain["updatedTime"] = json!(1_900_000_000_000u64);
    });
    let run = t.once(&[]);
    run.code(0);
    assert_eq!(run.source("acme", "desk.reply_addresses")["status"], "ok");
    assert_eq!(run.source("acme", "desk.support_email_domain")["status"], "ok");
    assert!(t.webhooks().is_empty());
}

#[test]
fn a_404_source_is_unavailable_and_not_a_failure() {
    let mut data = OrgData::sample(1);
    data.crm_mail_config = None;
    data.mail_configurations = None;
    let t = Test::new().org_with("acme", data, "");
    let run = t.once(&[]);
    run.code(0);
    assert_eq!(run.source("acme", "crm.mail_config")["status"], "unavailable");
    assert_eq!(run.source("acme", "desk.mail_configurations")["status"], "unavailable");
    assert_eq!(run.org("acme")["state"], "ok");
    let status = t.run(&["status", "--json"]).json();
    let sources = status["orgs"][0]["sources"].as_array().unwrap().clone();
    assert!(sources
        .iter()
        .any(|s| s["source"] == "crm.mail_config" && s["status"] == "unavailable"));
}

fn many_reply_addresses(n: usize) -> OrgData {
    let mut data = OrgData::sample(1);
    let template = data.reply_addresses[0].clone();
    let dept = template["departmentId"].clone();
    for i in 0..n {
        let mut a = template.clone();
        a["id"] = json!(format!("77000000{i:05}"));
        a["address"] = json!(format!("alias{i}@example.com"));
        a["departmentId"] = dept.clone();
        data.reply_addresses.push(a);
    }
    data
}

#[test]
fn a_failed_second_page_records_no_snapshot_and_claims_no_removal() {
    let t = Test::new().org_with("acme", many_reply_addresses(150), "").webhook();
    let first = t.once(&[]);
    first.code(0);
    let baseline = first.source("acme", "desk.reply_addresses")["snapshot"].clone();
    t.sim.inject(
        Fault::new("/api/v1/mailReplyAddress", FaultResponse::MalformedJson)
            .org("acme")
            .nth(2),
    );
    let run = t.once(&[]);
    run.code(3);
    let src = run.source("acme", "desk.reply_addresses");
    assert_eq!(src["status"], "error");
    assert!(src["error"].as_str().unwrap().contains("page 2"), "{src}");
    assert_eq!(src["snapshot"], Value::Null);
    assert_eq!(run.org("acme")["state"], "error");
    assert_eq!(
        t.count("SELECT COUNT(*) FROM snapshots WHERE source = 'desk.reply_addresses'"),
        1
    );
    assert!(t.webhooks().is_empty(), "no alert claims addresses were removed");
    t.sim.clear_faults();
    let after = t.once(&[]);
    after.code(0);
    assert_eq!(after.source("acme", "desk.reply_addresses")["snapshot"], baseline);
}

#[test]
fn a_server_error_that_outlasts_the_retries_is_an_error_not_drift() {
    let t = Test::new().org("acme").webhook();
    t.once(&[]).code(0);
    t.sim
        .inject(Fault::new("/api/v1/supportEmailDomain", FaultResponse::status(503, "{}")).org("acme"));
    let run = t.once(&[]);
    run.code(3);
    assert_eq!(run.source("acme", "desk.support_email_domain")["status"], "error");
    assert_eq!(
        run.source("acme", "desk.reply_addresses")["status"],
        "ok",
        "other sources still audited"
    );
    let calls = t
        .sim
        .requests("acme")
        .iter()
        .filter(|r| r.path == "/api/v1/supportEmailDomain")
        .count();
    assert_eq!(calls, 1 + 1 + 3, "baseline call, then one try and three retries");
    assert!(t.webhooks().is_empty());
}

#[test]
fn a_password_in_the_opaque_mail_config_never_leaks_but_its_change_is_reported() {
    let t = Test::new().org("acme").webhook().email();
    let old_password = OrgData::sample(1).crm_mail_config.unwrap().to_string();
    assert!(
        old_password.contains("s3cr3t-smtp-pass"),
        "sample data carries a password"
    );
    let first = t.run(&["--once", "--json"]);
    first.code(0);
    t.sim.update("acme", |d| {
        let text = d
            .crm_mail_config
            .take()
            .unwrap()
            .to_string()
            .replace("s3cr3t-smtp-pass", "n3w-r0tated-pass");
        d.crm_mail_config = Some(serde_json::from_str(&text).unwrap());
    });
    let run = t.run(&["--once", "--json"]);
    run.code(2);
    let src = run.source("acme", "crm.mail_config");
    assert_eq!(src["status"], "drift");
    let hook = &t.webhooks()[0];
    let change = &hook.json()["sources"][0]["changes"][0];
    assert!(change["path"].as_str().unwrap().ends_with("/password"), "{change}");
    assert!(change["old"].as_str().unwrap().starts_with("redacted:"));
    assert_ne!(change["old"], change["new"], "a rotation shows up as a change");

    let mut haystacks: Vec<(String, Vec<u8>)> = vec![
        ("database".into(), t.database_bytes()),
        ("stdout".into(), format!("{}{}", first.stdout, run.stdout).into_bytes()),
        ("stderr".into(), format!("{}{}", first.stderr, run.stderr).into_bytes()),
    ];
    haystacks.extend(t.webhooks().into_iter().map(|h| ("webhook".to_string(), h.body)));
    haystacks.extend(t.emails().into_iter().map(|m| ("email".to_string(), m)));
    for needle in ["s3cr3t-smtp-pass", "n3w-r0tated-pass"]
        .into_iter()
        .map(String::from)
        .chain(t.secrets())
    {
        for (name, hay) in &haystacks {
            assert!(!contains(hay, needle.as_bytes()), "{needle:?} leaked into the {name}");
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_second_auditing_process_on_the_same_database_exits_1() {
    let t = Test::new().org("acme");
    // Hold the lock from another process: a daemon-like `--once` that is slowed down by the simulator.
    t.sim.inject(Fault::new(
        "/api/v1/supportEmailDomain",
        FaultResponse::Delay(std::time::Duration::from_secs(3)),
    ));
    let mut slow = t.spawn(&["--once"]);
    assert!(wait_until(std::time::Duration::from_secs(10), || t
        .sim
        .requests("acme")
        .len()
        > 2));
    let second = t.once(&[]);
    second.code(1).stderr_contains("another auditd process");
    let doc = second.json();
    assert_eq!(
        doc["exit_code"], 1,
        "--json prints one document even when the run cannot start"
    );
    assert!(
        doc["error"].as_str().unwrap().contains("another auditd process"),
        "{doc}"
    );
    assert!(slow.wait().unwrap().success());
    // Read-only commands work beside an auditing process.
    t.run(&["status"]).code(0);
}

#[test]
fn the_database_is_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let t = Test::new().org("acme");
    t.once(&[]).code(0);
    assert_eq!(
        std::fs::metadata(t.db_path()).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn org_selection_audits_only_the_named_orgs_and_rejects_unknown_names() {
    let t = Test::new().org("acme").org("globex");
    let run = t.once(&["--org", "globex"]);
    run.code(0);
    assert_eq!(run.json()["orgs"].as_array().unwrap().len(), 1);
    assert!(t.sim.requests("acme").is_empty());
    t.once(&["--org", "nope"]).code(64).stderr_contains("--org nope");
}

#[test]
fn no_notify_records_alerts_as_suppressed_and_sends_nothing() {
    let t = Test::new().org("acme").webhook();
    t.once(&[]).code(0);
    t.reply_host("acme", "mail.attacker.example");
    let run = t.once(&["--no-notify"]);
    run.code(2);
    assert_eq!(run.json()["alerts"]["suppressed"], 1);
    assert_eq!(run.json()["alerts"]["pending"], 0);
    assert!(t.webhooks().is_empty());
    t.once(&[]).code(0);
    assert!(t.webhooks().is_empty(), "suppressed alerts are never sent later");
}

#[test]
fn an_invalid_config_exits_78_naming_file_and_key() {
    let t = Test::new().org_with("acme", OrgData::sample(1), "bogus_key = 1");
    let run = t.once(&[]);
    run.code(78).stderr_contains("bogus_key").stderr_contains("auditd.toml");
    assert_eq!(run.json()["exit_code"], 78);
    for command in [
        &["check-config"][..],
        &["status"],
        &["alerts"],
        &["history", "acme"],
        &["connect", "acme"],
    ] {
        t.run(command).code(78);
    }
}

#[test]
fn check_config_prints_the_effective_config_with_secrets_masked() {
    let t = Test::new().org("acme").webhook().email();
    let run = t.run(&["check-config"]);
    run.code(0);
    assert!(run.stdout.contains("name = \"acme\""));
    assert!(run.stdout.contains("from $AUDITD_TEST_SMTP_PASSWORD"));
    assert!(
        !run.stdout.contains("/hook"),
        "a webhook URL's path can be a credential (Slack): hidden"
    );
    for s in t.secrets() {
        assert!(!run.stdout.contains(&s) && !run.stderr.contains(&s), "{s} leaked");
    }
}

#[test]
fn a_429_with_retry_after_is_retried_after_that_long() {
    let t = Test::new().org("acme");
    let throttle = FaultResponse::status(429, r#"{"errorCode":"TOO_MANY_REQUESTS","message":"slow down"}"#)
        .header("Retry-After", "1");
    t.sim
        .inject(Fault::new("/api/v1/supportEmailDomain", throttle).org("acme").times(1));
    t.once(&[]).code(0);
    let calls: Vec<_> = t
        .sim
        .requests("acme")
        .into_iter()
        .filter(|r| r.path == "/api/v1/supportEmailDomain")
        .collect();
    assert_eq!(calls.iter().map(|c| c.status).collect::<Vec<_>>(), [429, 200]);
    let waited = calls[1].at - calls[0].at;
    assert!(waited >= std::time::Duration::from_secs(1), "retried after {waited:?}");
}

#[test]
fn desk_daily_limit_stops_the_org_for_this_pass_without_retrying() {
    let t = Test::new().org("acme");
    t.once(&[]).code(0);
    let limit = FaultResponse::status(429, r#"{"errorCode":"THRESHOLD_EXCEEDED","message":"daily limit"}"#)
        .header("Retry-After", "3600");
    t.sim
        .inject(Fault::new("/api/v1/mailConfigurations", limit).org("acme"));
    let before = t.sim.requests("acme").len();
    let run = t.once(&[]);
    run.code(3);
    assert_eq!(run.source("acme", "desk.mail_configurations")["status"], "skipped");
    assert_eq!(run.source("acme", "desk.reply_addresses")["status"], "skipped");
    for s in run.org("acme")["sources"].as_array().unwrap() {
        assert!(
            s["status"] == "ok" || s["status"] == "skipped",
            "audited before the limit, or not at all: {s}"
        );
    }
    let limited = t.sim.requests("acme")[before..]
        .iter()
        .filter(|r| r.path == "/api/v1/mailConfigurations")
        .count();
    assert_eq!(limited, 1, "THRESHOLD_EXCEEDED is not retried");
}

#[test]
fn a_timeout_is_an_error_of_that_source_and_no_snapshot() {
    let t = Test::new().org("acme").daemon("http_timeout = \"1s\"").webhook();
    t.once(&[]).code(0);
    t.sim.inject(
        Fault::new(
            "/api/v1/supportEmailDomain",
            FaultResponse::Delay(std::time::Duration::from_secs(3)),
        )
        .org("acme")
        .times(4),
    );
    let run = t.once(&[]);
    run.code(3);
    let src = run.source("acme", "desk.support_email_domain");
    assert_eq!(src["status"], "error");
    assert!(src["error"].as_str().unwrap().contains("timed out"), "{src}");
    assert_eq!(
        t.count("SELECT COUNT(*) FROM snapshots WHERE source = 'desk.support_email_domain'"),
        1
    );
    assert!(t.webhooks().is_empty());
}

#[test]
fn kill_9_mid_pass_loses_no_drift() {
    let t = Test::new().org("acme").webhook();
    t.once(&[]).code(0);
    let snapshots = t.count("SELECT COUNT(*) FROM snapshots");
    t.reply_host("acme", "mail.attacker.example");
    t.sim.inject(
        Fault::new(
            "/api/v1/supportEmailDomain",
            FaultResponse::Delay(std::time::Duration::from_secs(20)),
        )
        .org("acme")
        .times(1),
    );
    let before = t.sim.requests("acme").len();
    let mut child = t.spawn(&["--once"]);
    // Wait until the reply addresses (with the change) have been fetched, then kill without warning.
    assert!(wait_until(std::time::Duration::from_secs(10), || {
        t.sim.requests("acme")[before..]
            .iter()
            .any(|r| r.path == "/api/v1/mailReplyAddress")
    }));
    std::thread::sleep(std::time::Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        t.count("SELECT COUNT(*) FROM snapshots"),
        snapshots,
        "nothing half-written"
    );
    assert!(t.webhooks().is_empty());
    t.sim.clear_faults();
    let run = t.once(&[]);
    run.code(2);
    assert_eq!(run.source("acme", "desk.reply_addresses")["status"], "drift");
    assert_eq!(t.webhooks().len(), 1);
}

#[test]
fn several_desk_orgs_without_desk_org_id_is_an_error_that_lists_them() {
    let mut data = OrgData::sample(1);
    let mut second = data.desk_portals[0].clone();
    second["id"] = json!("99887766554");
    second["companyName"] = json!("Other Portal");
    data.desk_portals.push(second);
    let t = Test::new().org_with("acme", data, "");
    let run = t.once(&[]);
    run.code(3);
    let err = run.source("acme", "desk.reply_addresses")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.contains("99887766554 (Other Portal)") && err.contains("desk_org_id"),
        "{err}"
    );
    assert_eq!(
        run.source("acme", "crm.from_addresses")["status"],
        "baseline",
        "CRM is unaffected"
    );
}

#[test]
fn no_secret_reaches_trace_logs_errors_or_json_even_when_things_fail() {
    let t = Test::new().org("acme").org("revoked").webhook().email();
    t.sim.inject(
        Fault::new("/api/v1/departments", FaultResponse::status(500, "{}"))
            .org("acme")
            .times(2),
    );
    t.sim
        .inject(Fault::new("/crm/v8/settings/mail_config", FaultResponse::MalformedJson).org("acme"));
    t.sim.revoke_refresh_tokens("revoked");
    let mut cmd = t.command(&["--once", "--json"]);
    cmd.env("AUDITD_LOG", "trace");
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.lines().count() > 20, "trace logging is on");
    let tokens: Vec<String> = t
        .sim
        .authorization_headers()
        .iter()
        .map(|h| h.trim_start_matches("Zoho-oauthtoken ").to_string())
        .collect();
    assert!(!tokens.is_empty());
    for secret in t.secrets().into_iter().chain(tokens) {
        assert!(!stdout.contains(&secret), "{secret} in stdout");
        assert!(!stderr.contains(&secret), "{secret} in stderr");
    }
}

#[test]
fn crm_compose_is_all_three_types_or_nothing() {
    let t = Test::new().org("acme").webhook();
    t.once(&[]).code(0);
    let not_enabled =
        r#"{"code":"FEATURE_NOT_ENABLED","details":{},"message":"mass mail is not enabled","status":"error"}"#;
    t.sim.inject(
        Fault::new(
            "/crm/email/v8/settings/compose",
            FaultResponse::status(403, not_enabled),
        )
        .org("acme")
        .nth(3),
    );
    let run = t.once(&[]);
    run.code(0);
    assert_eq!(run.source("acme", "crm.compose")["status"], "unavailable");
    assert_eq!(
        t.count("SELECT COUNT(*) FROM snapshots WHERE source = 'crm.compose'"),
        1
    );
    let back = t.once(&[]);
    back.code(0);
    assert_eq!(
        back.source("acme", "crm.compose")["status"],
        "ok",
        "no remove-then-add drift"
    );
    assert!(t.webhooks().is_empty());
}

#[test]
fn environment_overrides_keep_strings_as_strings_and_numbers_as_numbers() {
    let t = Test::new().org("acme");
    let mut cmd = t.command(&["check-config"]);
    cmd.env("AUDITD__DAEMON__CONCURRENCY", "4")
        .env("AUDITD__ZOHO__CLIENT_ID", "000123");
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("concurrency = 4\n"), "{stdout}");
    assert!(stdout.contains("client_id = \"000123\""), "{stdout}");
}

#[test]
fn crm_204_is_an_empty_list_and_a_later_address_is_one_add() {
    let mut data = OrgData::sample(1);
    data.from_addresses.clear();
    let t = Test::new().org_with("acme", data, "").webhook();
    let first = t.once(&[]);
    first.code(0);
    assert_eq!(first.source("acme", "crm.from_addresses")["status"], "baseline");
    assert!(t
        .sim
        .requests("acme")
        .iter()
        .any(|r| r.path.ends_with("/from_addresses") && r.status == 204));
    t.sim.update("acme", |d| {
        d.from_addresses
            .push(json!({"user_name": "Mallory", "type": "imap", "email": "mallory@attacker.example"}))
    });
    let run = t.once(&[]);
    run.code(2);
    let change = &t.webhooks()[0].json()["sources"][0]["changes"][0];
    assert_eq!(change["op"], "add");
    assert_eq!(change["path"], "/from_addresses/mallory@attacker.example");
    assert_eq!(change["new"]["email"], "mallory@attacker.example");
}

#[test]
fn status_reads_without_writing() {
    let t = Test::new().org("acme").org("globex");
    t.once(&["--org", "acme"]).code(0);
    let rows = t.count("SELECT COUNT(*) FROM orgs");
    let status = t.run(&["status", "--json"]);
    status.code(0);
    let orgs = status.json()["orgs"].clone();
    assert_eq!(orgs[1]["org"], "globex");
    assert_eq!(orgs[1]["reason"], "not audited yet");
    assert_eq!(t.count("SELECT COUNT(*) FROM orgs"), rows, "status created no rows");
}
