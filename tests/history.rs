//! `history` and `diff`: what changed, when, read back from the database (SPEC §2, §5).

use crate::support::*;

#[test]
fn history_and_diff_show_what_changed() {
    let t = Test::new().org("acme");
    t.once(&[]).code(0);
    t.reply_host("acme", "mail.attacker.example");
    let run = t.once(&[]);
    run.code(2);
    let src = run.source("acme", "desk.reply_addresses");
    let history = t.run(&["history", "acme", "--source", "desk.reply_addresses", "--json"]);
    history.code(0);
    let snaps = history.json()["snapshots"].clone();
    assert_eq!(snaps.as_array().unwrap().len(), 2);
    assert_eq!(snaps[0]["snapshot"], src["snapshot"]);
    assert_eq!(snaps[0]["changes"], 1);
    assert_eq!(snaps[1]["changes"], serde_json::Value::Null, "the baseline");

    let diff = t.run(&["diff", "acme", "--source", "desk.reply_addresses"]);
    diff.code(0);
    assert!(diff.stdout.contains("smtpDetails/host"), "{}", diff.stdout);
    assert!(
        diff.stdout
            .lines()
            .any(|l| l.starts_with('+') && l.contains("mail.attacker.example")),
        "{}",
        diff.stdout
    );
    let from = src["previous_snapshot"].to_string();
    let to = src["snapshot"].to_string();
    let explicit = t.run(&[
        "diff",
        "acme",
        "--source",
        "desk.reply_addresses",
        "--from",
        &from,
        "--to",
        &to,
    ]);
    assert_eq!(explicit.code(0).stdout, diff.stdout);
    t.run(&["diff", "acme", "--source", "crm.compose", "--from", &from])
        .code(64)
        .stderr_contains("belongs to acme/desk.reply_addresses");
    t.run(&["history", "nope"]).code(64);
}
