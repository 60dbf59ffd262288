//! Alerts are never lost and never sent twice for one event (SPEC §6, issue 3).

use crate::support::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn smtp_down_during_a_drifting_pass_then_up_delivers_exactly_one_email() {
    let mut t = Test::new().org("acme").email();
    t.once(&[]).code(0);
    t.reply_host("acme", "mail.attacker.example");
    t.stop_smtp();
    let down = t.once(&[]);
    down.code(2);
    assert_eq!(down.json()["alerts"]["delivered"], 0);
    assert_eq!(down.json()["alerts"]["pending"], 1, "the alert waits in the outbox");
    let listed = t.run(&["alerts", "--json"]).json();
    assert!(
        listed["alerts"][0]["last_error"].as_str().unwrap().contains("SMTP"),
        "{listed}"
    );

    t.restart_smtp();
    let up = t.once(&[]);
    up.code(0);
    assert_eq!(up.json()["alerts"]["delivered"], 1);
    assert_eq!(up.json()["alerts"]["pending"], 0);
    assert_eq!(t.emails().len(), 1);
    t.once(&[]).code(0);
    assert_eq!(t.emails().len(), 1, "the run after that sends none");
}

#[test]
fn a_webhook_answering_500_twice_then_200_gets_one_accepted_delivery_with_one_event_id() {
    let t = Test::new().org("acme").webhook();
    t.once(&[]).code(0);
    t.hook.as_ref().unwrap().respond_with(vec![500, 500]);
    t.reply_host("acme", "mail.attacker.example");
    assert_eq!(t.once(&[]).code(2).json()["alerts"]["pending"], 1);
    assert_eq!(t.once(&[]).code(0).json()["alerts"]["pending"], 1);
    let third = t.once(&[]);
    third.code(0);
    assert_eq!(third.json()["alerts"]["delivered"], 1);
    t.once(&[]).code(0);
    let got = t.webhooks();
    assert_eq!(got.iter().map(|w| w.answered).collect::<Vec<_>>(), [500, 500, 200]);
    let ids: Vec<String> = got
        .iter()
        .map(|w| w.header("x-auditd-delivery").unwrap().to_string())
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "same event id on every attempt: {ids:?}"
    );
    assert!(got.iter().all(|w| w.body == got[0].body), "the same bytes every time");
    assert_eq!(got[0].json()["event_id"], ids[0].as_str());
}

#[test]
fn a_process_killed_after_storing_the_drift_but_before_delivery_delivers_it_once_next_run() {
    let mut t = Test::new().org("acme").webhook();
    t.once(&[]).code(0);
    // A receiver that accepts the connection and never answers: delivery hangs after the commit.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    t.retarget_webhook(Some(format!("http://{}/hook", black_hole.local_addr().unwrap())));
    t.reply_host("acme", "mail.attacker.example");
    let mut child = t.spawn(&["--once"]);
    assert!(wait_until(Duration::from_secs(10), || t.db_path().exists()
        && t.count("SELECT COUNT(*) FROM outbox") == 1));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(t.count("SELECT COUNT(*) FROM outbox WHERE status = 'pending'"), 1);
    let stored_event: String = t
        .db()
        .query_row("SELECT event_id FROM alerts", [], |r| r.get(0))
        .unwrap();

    t.retarget_webhook(None);
    let next = t.once(&[]);
    next.code(0);
    assert_eq!(next.json()["alerts"]["delivered"], 1);
    t.once(&[]).code(0);
    let got = t.webhooks();
    assert_eq!(got.len(), 1, "delivered once");
    assert_eq!(got[0].header("x-auditd-delivery"), Some(stored_event.as_str()));
    drop(black_hole);
}

#[test]
fn a_row_that_runs_out_of_attempts_is_dead_until_alerts_retry_revives_it() {
    let t = Test::new().org("acme").webhook().daemon("alert_max_attempts = 2");
    t.once(&[]).code(0);
    t.hook.as_ref().unwrap().respond_with(vec![503, 503]);
    t.reply_host("acme", "mail.attacker.example");
    t.once(&[]).code(2);
    let second = t.once(&[]);
    second.code(0);
    assert_eq!(second.json()["alerts"]["dead"], 1);
    let listed = t.run(&["alerts", "--json"]).json();
    let row = &listed["alerts"][0];
    assert_eq!(row["status"], "dead");
    assert_eq!(row["attempts"], 2);
    assert_eq!(row["last_error"], "webhook answered HTTP 503");
    let status = t.run(&["status", "--json"]).json();
    assert_eq!(
        status["outbox"],
        json!([{"channel": "hook", "pending": 0, "dead": 1, "last_error": "webhook answered HTTP 503"}])
    );
    assert_eq!(
        t.once(&[]).code(0).json()["alerts"]["delivered"],
        0,
        "dead rows are not tried"
    );

    let id = row["id"].as_i64().unwrap().to_string();
    t.run(&["alerts", "retry", &id]).code(0);
    t.run(&["alerts", "retry", &id]).code(64).stderr_contains("not dead");
    let revived = t.once(&[]);
    revived.code(0);
    assert_eq!(revived.json()["alerts"]["delivered"], 1);
    assert_eq!(t.run(&["alerts", "--json"]).json()["alerts"], json!([]));
    assert_eq!(t.webhooks().iter().filter(|w| w.answered == 200).count(), 1);
}

#[test]
fn a_webhook_answering_410_is_dead_at_once() {
    let t = Test::new().org("acme").webhook();
    t.once(&[]).code(0);
    t.hook.as_ref().unwrap().respond_with(vec![410]);
    t.reply_host("acme", "mail.attacker.example");
    let run = t.once(&[]);
    run.code(2);
    assert_eq!(run.json()["alerts"]["dead"], 1);
    t.run(&["alerts", "retry", "--all-dead"]).code(0);
    assert_eq!(t.once(&[]).code(0).json()["alerts"]["delivered"], 1);
}

#[test]
fn email_over_implicit_tls_is_delivered_and_parses() {
    let t = Test::new().org("acme").email_with_tls("tls");
    t.once(&[]).code(0);
    t.reply_host("acme", "mail.attacker.example");
    let run = t.once(&[]);
    run.code(2);
    assert_eq!(run.json()["alerts"]["delivered"], 1, "{}", run.stderr);
    let mails = t.emails();
    assert_eq!(mails.len(), 1);
    let mail = mailparse::parse_mail(&mails[0]).unwrap();
    assert_eq!(mail.ctype.mimetype, "multipart/alternative");
}

#[test]
fn reconnect_required_goes_out_once_and_recovered_when_the_org_is_readable_again() {
    let mut t = Test::new().org("acme").webhook();
    t.once(&[]).code(0);
    t.sim.revoke_refresh_tokens("acme");
    t.sim.invalidate_access_tokens("acme");
    t.once(&[]).code(3);
    t.once(&[]).code(3);
    let kinds = |t: &Test| {
        t.webhooks()
            .iter()
            .map(|w| w.header("x-auditd-event").unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(kinds(&t), ["reconnect_required"]);
    let reason = t.webhooks()[0].json()["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("invalid_code"), "{reason}");

    // The operator puts a new refresh token in the config.
    let fresh = t.sim.add_org("acme", OrgData::sample(1));
    t.set_refresh_token("acme", &fresh);
    let back = t.once(&[]);
    back.code(0);
    assert_eq!(back.org("acme")["state"], "ok");
    assert_eq!(kinds(&t), ["reconnect_required", "recovered"]);
    let recovered = t.webhooks()[1].json();
    assert_eq!(recovered["org"], "acme");
    assert_eq!(recovered["sources"], json!([]));
    t.once(&[]).code(0);
    assert_eq!(t.webhooks().len(), 2, "recovered is sent once");
}

#[test]
fn a_hanging_webhook_never_holds_up_email() {
    let mut t = Test::new().org("acme").webhook().email();
    t.once(&[]).code(0);
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    t.retarget_webhook(Some(format!("http://{}/hook", black_hole.local_addr().unwrap())));
    t.reply_host("acme", "mail.attacker.example");
    let run = t.once(&[]);
    run.code(2);
    assert_eq!(run.json()["alerts"]["delivered"], 1, "the email went out");
    assert_eq!(
        run.json()["alerts"]["pending"],
        1,
        "the webhook waits for its next attempt"
    );
    assert_eq!(t.emails().len(), 1);
    let listed = t.run(&["alerts", "--json"]).json();
    assert_eq!(listed["alerts"][0]["channel"], "hook");
    assert!(
        listed["alerts"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{listed}"
    );
    drop(black_hole);
}
