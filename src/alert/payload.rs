//! The alert document (webhook payload version 1). It is built once, stored with the alert, and sent
//! byte for byte on every retry, so `event_id` and signatures never change.

use crate::snapshot::Change;
use serde::{Deserialize, Serialize};

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Drift,
    ReconnectRequired,
    Recovered,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Drift => "drift",
            AlertKind::ReconnectRequired => "reconnect_required",
            AlertKind::Recovered => "recovered",
        }
    }
}

/// The drift of one source within an alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceDrift {
    pub source: String,
    pub from_snapshot: i64,
    pub to_snapshot: i64,
    pub changes: Vec<Change>,
    /// Changes left out of `changes` to keep the alert deliverable (see [`SourceDrift::bounded`]);
    /// `auditd diff` shows them all.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub changes_omitted: usize,
    /// Unified diff of the canonical JSON.
    pub diff: String,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A diff longer than this (per source) is cut in alerts; `auditd diff` shows the whole of it.
pub const MAX_DIFF_CHARS: usize = 64 * 1024;
/// A changed value whose JSON is longer than this is replaced in the alert by a note.
const MAX_VALUE_BYTES: usize = 8 * 1024;
/// A change path longer than this is cut in the alert.
const MAX_PATH_CHARS: usize = 1024;
/// The changes of one source take at most about this much of an alert; the rest are counted in
/// `changes_omitted`. With six sources the whole alert stays under about 1.2 MiB, within what SMTP servers
/// and webhook receivers commonly accept.
const MAX_CHANGES_BYTES: usize = 128 * 1024;

impl SourceDrift {
    /// The command that shows all of this drift.
    pub fn diff_command(&self, org: &str) -> String {
        format!(
            "auditd diff {org} --source {} --from {} --to {}",
            self.source, self.from_snapshot, self.to_snapshot
        )
    }

    /// This drift cut to what an alert can carry to any receiver (SPEC §12: nothing from Zoho may
    /// make an alert undeliverable): the diff at [`MAX_DIFF_CHARS`], each value at
    /// [`MAX_VALUE_BYTES`], the change list at [`MAX_CHANGES_BYTES`]. Every cut says where the whole
    /// of it is; the drift record in the database keeps everything.
    pub fn bounded(&self, org: &str) -> SourceDrift {
        let see = self.diff_command(org);
        let bound_value = |v: &serde_json::Value| {
            let len = v.to_string().len();
            if len > MAX_VALUE_BYTES {
                serde_json::Value::String(format!("[a value of {len} bytes, left out of this alert; see: {see}]"))
            } else {
                v.clone()
            }
        };
        let mut changes = Vec::new();
        let mut budget = MAX_CHANGES_BYTES;
        for c in &self.changes {
            let change = Change {
                path: crate::inert::truncate_chars(&c.path, MAX_PATH_CHARS),
                op: c.op,
                old: bound_value(&c.old),
                new: bound_value(&c.new),
            };
            let size = change.path.len() + change.old.to_string().len() + change.new.to_string().len() + 32;
            if size > budget {
                break;
            }
            budget -= size;
            changes.push(change);
        }
        SourceDrift {
            source: self.source.clone(),
            from_snapshot: self.from_snapshot,
            to_snapshot: self.to_snapshot,
            changes_omitted: self.changes_omitted + self.changes.len() - changes.len(),
            changes,
            diff: bounded_diff(&self.diff, &see),
        }
    }
}

/// The diff cut at [`MAX_DIFF_CHARS`] (with the note) on a line boundary, note included.
pub(crate) fn bounded_diff(diff: &str, see: &str) -> String {
    if diff.len() <= MAX_DIFF_CHARS {
        return diff.to_string();
    }
    let room = MAX_DIFF_CHARS - 512;
    let mut cut = room;
    while !diff.is_char_boundary(cut) {
        cut -= 1;
    }
    let cut = diff[..cut].rfind('\n').map(|i| i + 1).unwrap_or(cut);
    format!(
        "{}[diff cut at {cut} of {} bytes; see the whole of it with: {see}]\n",
        &diff[..cut],
        diff.len()
    )
}

/// The whole alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertPayload {
    pub version: u32,
    /// A ULID, identical across retries and channels, for receivers to deduplicate on.
    pub event_id: String,
    pub kind: AlertKind,
    pub org: String,
    /// RFC 3339.
    pub detected_at: String,
    pub sources: Vec<SourceDrift>,
    /// Why the org needs reconnect; `null` otherwise.
    pub reason: Option<String>,
}

impl AlertPayload {
    pub fn new(
        kind: AlertKind,
        org: &str,
        detected_at: String,
        sources: Vec<SourceDrift>,
        reason: Option<String>,
    ) -> AlertPayload {
        AlertPayload {
            version: 1,
            event_id: ulid::Ulid::new().to_string(),
            kind,
            org: org.to_string(),
            detected_at,
            sources,
            reason,
        }
    }

    /// Total changes over every source, those left out of the alert included.
    pub fn change_count(&self) -> usize {
        self.sources.iter().map(|s| s.changes.len() + s.changes_omitted).sum()
    }

    /// The subject line of SPEC §6.
    pub fn subject(&self) -> String {
        match self.kind {
            AlertKind::Drift => format!("[auditd] drift in {}: {} change(s)", self.org, self.change_count()),
            AlertKind::ReconnectRequired => format!("[auditd] {} needs reconnect", self.org),
            AlertKind::Recovered => format!("[auditd] {} recovered", self.org),
        }
    }

    /// The exact JSON text stored and sent.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an alert always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Op;
    use serde_json::json;

    fn drift(changes: Vec<Change>, diff: String) -> SourceDrift {
        SourceDrift {
            source: "desk.support_email_domain".into(),
            from_snapshot: 1,
            to_snapshot: 2,
            changes,
            changes_omitted: 0,
            diff,
        }
    }

    #[test]
    fn a_small_drift_is_carried_whole() {
        let c = Change {
            path: "/a".into(),
            op: Op::Replace,
            old: json!("x"),
            new: json!("y"),
        };
        let d = drift(vec![c], "-x\n+y\n".into());
        assert_eq!(d.bounded("acme"), d);
    }

    #[test]
    fn huge_values_diffs_and_change_lists_are_cut_with_a_pointer_to_auditd_diff() {
        let big = "v".repeat(10 * 1024 * 1024);
        let mut changes = vec![Change {
            path: "/big".into(),
            op: Op::Replace,
            old: json!(big),
            new: json!(format!("{big}!")),
        }];
        changes.extend((0..50_000).map(|i| Change {
            path: format!("/items/{i}"),
            op: Op::Add,
            old: json!(null),
            new: json!({"address": format!("a{i}@example.com")}),
        }));
        let b = drift(changes, format!("-{big}\n+{big}!\n")).bounded("acme");
        let size = serde_json::to_string(&b).unwrap().len();
        assert!(size < 400 * 1024, "{size} bytes");
        assert!(b.changes[0]
            .new
            .as_str()
            .unwrap()
            .contains("auditd diff acme --source desk.support_email_domain"));
        assert_eq!(b.changes.len() + b.changes_omitted, 50_001);
        assert!(b.changes_omitted > 0);
        assert!(b.diff.len() <= MAX_DIFF_CHARS && b.diff.contains("auditd diff acme"));
    }
}
