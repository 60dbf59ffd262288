//! How an alert reads: plain text and HTML for email, a short message for Slack.

use super::payload::{AlertKind, AlertPayload, SourceDrift};
use crate::snapshot::Op;
use std::fmt::Write;

pub use super::payload::MAX_DIFF_CHARS;
/// A changed value longer than this is shortened in the change list.
const MAX_VALUE_CHARS: usize = 300;
/// Slack truncates long messages; keep to a readable summary.
const MAX_SLACK_CHANGES: usize = 20;

/// A value as JSON (escaped already), with what JSON lets through (C1 controls, DEL, bidi overrides)
/// escaped as well.
fn short_value(v: &serde_json::Value) -> String {
    let text = crate::inert::escape_controls(&v.to_string()).into_owned();
    if text.chars().count() > MAX_VALUE_CHARS {
        let cut: String = text.chars().take(MAX_VALUE_CHARS).collect();
        format!("{cut}... ({} chars)", text.chars().count())
    } else {
        text
    }
}

/// One line per change. Paths come from Zoho's keys and ids: their control characters are escaped
/// so that no line of an alert can be forged (values are JSON, escaped already).
fn change_lines(a: &AlertPayload, s: &SourceDrift) -> Vec<String> {
    let mut lines: Vec<String> = s
        .changes
        .iter()
        .map(|c| {
            let path = crate::inert::escape_controls(&c.path);
            match c.op {
                Op::Add => format!("+ {path}  {}", short_value(&c.new)),
                Op::Remove => format!("- {path}  (was {})", short_value(&c.old)),
                Op::Replace => format!("~ {path}  {} -> {}", short_value(&c.old), short_value(&c.new)),
            }
        })
        .collect();
    if s.changes_omitted > 0 {
        lines.push(format!(
            "... and {} more change(s): {}",
            s.changes_omitted,
            s.diff_command(&a.org)
        ));
    }
    lines
}

/// The reason an org needs reconnect, from Zoho's error codes: one line, inert.
fn reason(a: &AlertPayload) -> std::borrow::Cow<'_, str> {
    crate::inert::escape_controls(a.reason.as_deref().unwrap_or("unknown"))
}

/// The diff as the alert carries it: already cut when the alert was made; alerts stored by earlier
/// versions are cut here the same way.
fn bounded_diff(org: &str, s: &SourceDrift) -> String {
    crate::inert::escape_controls_in_lines(&super::payload::bounded_diff(&s.diff, &s.diff_command(org)))
}

/// The opening paragraph. `quote` shows the reconnect reason (Zoho's words): as is in email, in a code
/// span in Slack, where a bare URL would otherwise become a link.
fn headline(a: &AlertPayload, quote: fn(&str) -> String) -> String {
    match a.kind {
        AlertKind::Drift => format!(
            "The mail configuration of Zoho org {} changed: {} change(s) in {} source(s), detected at {}.",
            a.org,
            a.change_count(),
            a.sources.len(),
            a.detected_at
        ),
        AlertKind::ReconnectRequired => format!(
            "auditd can no longer read Zoho org {} and has stopped auditing it (since {}).\nReason: {}\nFix: run `auditd connect {}` (or update its refresh token).",
            a.org,
            a.detected_at,
            quote(&reason(a)),
            a.org
        ),
        AlertKind::Recovered => format!("Zoho org {} is readable again and audited as usual (since {}).", a.org, a.detected_at),
    }
}

/// The text part of an email.
pub fn text(a: &AlertPayload) -> String {
    let mut out = headline(a, str::to_string);
    out.push('\n');
    for s in &a.sources {
        let _ = write!(
            out,
            "\n== {} (snapshot {} -> {}) ==\n",
            s.source, s.from_snapshot, s.to_snapshot
        );
        for line in change_lines(a, s) {
            let _ = writeln!(out, "  {line}");
        }
        out.push('\n');
        out.push_str(&bounded_diff(&a.org, s));
    }
    let _ = write!(out, "\nevent {} · sent by zoho-auditd\n", a.event_id);
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML part: the same content, the diff coloured with inline styles only (mail clients drop
/// `<style>` blocks and classes).
pub fn html(a: &AlertPayload) -> String {
    let mut out = String::from(
        "<!DOCTYPE html><html><body style=\"font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#222\">",
    );
    for para in headline(a, str::to_string).lines() {
        let _ = write!(out, "<p style=\"margin:0 0 8px 0\">{}</p>", escape(para));
    }
    for s in &a.sources {
        let _ = write!(
            out,
            "<h3 style=\"margin:16px 0 6px 0;font-size:15px\">{} <span style=\"color:#777;font-weight:normal\">(snapshot {} &rarr; {})</span></h3><ul style=\"margin:0 0 8px 0;padding-left:20px;font-family:Consolas,Menlo,monospace;font-size:13px\">",
            escape(&s.source),
            s.from_snapshot,
            s.to_snapshot
        );
        for line in change_lines(a, s) {
            let _ = write!(out, "<li>{}</li>", escape(&line));
        }
        out.push_str("</ul><pre style=\"font-family:Consolas,Menlo,monospace;font-size:12px;line-height:1.4;background:#f6f8fa;padding:8px;border:1px solid #ddd;white-space:pre-wrap\">");
        for line in bounded_diff(&a.org, s).lines() {
            let style = if line.starts_with("+++") || line.starts_with("---") {
                "color:#555;font-weight:bold"
            } else if line.starts_with('+') {
                "background:#e6ffec;color:#116329"
            } else if line.starts_with('-') {
                "background:#ffebe9;color:#82071e"
            } else if line.starts_with("@@") {
                "color:#0550ae"
            } else {
                "color:#333"
            };
            let _ = writeln!(out, "<span style=\"{style}\">{}</span>", escape(line));
        }
        out.push_str("</pre>");
    }
    let _ = write!(
        out,
        "<p style=\"color:#999;font-size:12px\">event {} &middot; sent by zoho-auditd</p></body></html>",
        escape(&a.event_id)
    );
    out
}

/// A Slack-compatible message body. Slack reads `<...>` as mentions and links and `&` as the start of
/// an entity, so the whole text is escaped (none of our own text uses them): no Zoho value, key or
/// error code can ping a channel or plant a link.
pub fn slack(a: &AlertPayload) -> serde_json::Value {
    let code_span = |r: &str| format!("`{}`", r.replace('`', "'"));
    let mut text = format!("*{}*\n{}", a.subject(), headline(a, code_span));
    for s in &a.sources {
        let _ = write!(
            text,
            "\n*{}* (snapshot {} → {})",
            s.source, s.from_snapshot, s.to_snapshot
        );
        let lines = change_lines(a, s);
        for line in lines.iter().take(MAX_SLACK_CHANGES) {
            let _ = write!(text, "\n`{}`", line.replace('`', "'"));
        }
        if lines.len() > MAX_SLACK_CHANGES {
            let _ = write!(
                text,
                "\n… and {} more (auditd diff {} --source {})",
                lines.len() - MAX_SLACK_CHANGES,
                a.org,
                s.source
            );
        }
    }
    serde_json::json!({ "text": crate::inert::slack_escape(&text) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Change;
    use serde_json::json;

    fn sample() -> AlertPayload {
        AlertPayload {
            version: 1,
            event_id: "01JTESTEVENT".into(),
            kind: AlertKind::Drift,
            org: "acme-us".into(),
            detected_at: "2026-11-27T10:15:00Z".into(),
            sources: vec![SourceDrift {
                source: "desk.reply_addresses".into(),
                from_snapshot: 41,
                to_snapshot: 57,
                changes: vec![Change {
                    path: "/reply_addresses/4000000025003/smtpDetails/host".into(),
                    op: Op::Replace,
                    old: json!("smtp.zoho.com"),
                    new: json!("mail.attacker.example"),
                }],
                changes_omitted: 0,
                diff: "--- a\n+++ b\n@@ -1 +1 @@\n-  \"host\": \"smtp.zoho.com\"\n+  \"host\": \"<mail.attacker.example>\"\n".into(),
            }],
            reason: None,
        }
    }

    /// Golden files: set UPDATE_GOLDEN=1 to rewrite them after an intended change.
    fn golden(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, actual).unwrap();
        }
        let expected =
            std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
        assert_eq!(
            actual, expected,
            "rendering of {name} changed; rerun with UPDATE_GOLDEN=1 if intended"
        );
    }

    #[test]
    fn text_rendering_matches_golden() {
        golden("drift.txt", &text(&sample()));
    }

    #[test]
    fn html_rendering_matches_golden_and_escapes() {
        let h = html(&sample());
        assert!(h.contains("&lt;mail.attacker.example&gt;") && !h.contains("<mail.attacker"));
        assert!(!h.contains("<style") && !h.contains("class="), "inline styles only");
        golden("drift.html", &h);
    }

    #[test]
    fn slack_rendering_matches_golden() {
        golden(
            "drift.slack.json",
            &serde_json::to_string_pretty(&slack(&sample())).unwrap(),
        );
    }

    #[test]
    fn subjects_follow_the_spec() {
        let mut a = sample();
        assert_eq!(a.subject(), "[auditd] drift in acme-us: 1 change(s)");
        a.kind = AlertKind::ReconnectRequired;
        assert_eq!(a.subject(), "[auditd] acme-us needs reconnect");
        a.kind = AlertKind::Recovered;
        assert_eq!(a.subject(), "[auditd] acme-us recovered");
    }

    #[test]
    fn a_huge_diff_is_cut_with_a_pointer_to_auditd_diff() {
        let mut a = sample();
        a.sources[0].diff = "+ line\n".repeat(MAX_DIFF_CHARS);
        let t = text(&a);
        assert!(t.len() < MAX_DIFF_CHARS + 4096);
        assert!(t.contains("auditd diff acme-us --source desk.reply_addresses --from 41 --to 57"));
    }
}
