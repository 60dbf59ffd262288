//! Drift: the structured difference between two canonical snapshots, and its unified text diff.

use super::identity;
use crate::pointer;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// What happened at a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Add,
    Remove,
    Replace,
}

/// One change. An added or removed list item is one change carrying the whole item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// JSON pointer; list items are addressed by identity (`/reply_addresses/4000000025003/smtpDetails/host`).
    pub path: String,
    pub op: Op,
    /// `null` for `add`.
    pub old: Value,
    /// `null` for `remove`.
    pub new: Value,
}

/// Every change from `old` to `new`, in path order.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut changes = Vec::new();
    walk(old, new, &mut Vec::new(), &mut changes);
    changes
}

fn walk(old: &Value, new: &Value, path: &mut Vec<String>, out: &mut Vec<Change>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                path.push(key.clone());
                member(a.get(key), b.get(key), path, out);
                path.pop();
            }
        }
        (Value::Array(a), Value::Array(b))
            if (identity::is_identity_list(a) || a.is_empty()) && (identity::is_identity_list(b) || b.is_empty()) =>
        {
            // Keyed by identity: lists of thousands of addresses stay linear-logarithmic.
            let a_items: BTreeMap<String, &Value> = identity::segments(a).into_iter().zip(a).collect();
            let b_items: BTreeMap<String, &Value> = identity::segments(b).into_iter().zip(b).collect();
            let segs: BTreeSet<&String> = a_items.keys().chain(b_items.keys()).collect();
            for seg in segs {
                path.push(seg.clone());
                member(a_items.get(seg).copied(), b_items.get(seg).copied(), path, out);
                path.pop();
            }
        }
        _ if old != new => out.push(Change {
            path: pointer::join(path),
            op: Op::Replace,
            old: old.clone(),
            new: new.clone(),
        }),
        _ => {}
    }
}

fn member(old: Option<&Value>, new: Option<&Value>, path: &mut Vec<String>, out: &mut Vec<Change>) {
    match (old, new) {
        (Some(a), Some(b)) => walk(a, b, path, out),
        (None, Some(b)) => out.push(Change {
            path: pointer::join(path),
            op: Op::Add,
            old: Value::Null,
            new: b.clone(),
        }),
        (Some(a), None) => out.push(Change {
            path: pointer::join(path),
            op: Op::Remove,
            old: a.clone(),
            new: Value::Null,
        }),
        (None, None) => {}
    }
}

/// A unified diff (three lines of context) of the canonical pretty JSON, made with `similar`.
pub fn unified_diff(old_text: &str, new_text: &str, old_label: &str, new_label: &str) -> String {
    similar::TextDiff::from_lines(old_text, new_text)
        .unified_diff()
        .context_radius(3)
        .header(old_label, new_label)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_edited_item_is_addressed_by_identity() {
        let old = json!({"reply_addresses": [{"id": "4000000025003", "smtpDetails": {"host": "smtp.zoho.com"}}, {"id": "5"}]});
        let new = json!({"reply_addresses": [{"id": "4000000025003", "smtpDetails": {"host": "mail.attacker.example"}}, {"id": "5"}]});
        assert_eq!(
            diff(&old, &new),
            vec![Change {
                path: "/reply_addresses/4000000025003/smtpDetails/host".into(),
                op: Op::Replace,
                old: json!("smtp.zoho.com"),
                new: json!("mail.attacker.example"),
            }]
        );
    }

    #[test]
    fn added_and_removed_items_are_one_change_each_with_the_whole_item() {
        let old = json!({"l": [{"id": "1", "a": 1}, {"id": "2", "a": 2}]});
        let new = json!({"l": [{"id": "2", "a": 2}, {"id": "3", "a": 3}]});
        let changes = diff(&old, &new);
        assert_eq!(changes.len(), 2);
        assert_eq!((changes[0].path.as_str(), changes[0].op), ("/l/1", Op::Remove));
        assert_eq!(changes[0].old, json!({"id": "1", "a": 1}));
        assert_eq!((changes[1].path.as_str(), changes[1].op), ("/l/3", Op::Add));
        let from_empty = diff(&json!({"l": []}), &json!({"l": [{"id": "1"}]}));
        assert_eq!(from_empty[0].path, "/l/1");
    }

    #[test]
    fn identical_documents_have_no_changes_and_members_appear() {
        let a = json!({"x": [1, 2], "y": {"z": true}});
        assert!(diff(&a, &a).is_empty());
        let b = json!({"x": [2, 1], "y": {"z": true, "w": "n"}});
        let c = diff(&a, &b);
        assert_eq!(
            c.iter().map(|c| (c.path.as_str(), c.op)).collect::<Vec<_>>(),
            [("/x", Op::Replace), ("/y/w", Op::Add)]
        );
    }

    #[test]
    fn unified_diff_marks_the_changed_line() {
        let d = unified_diff("{\n  \"host\": \"a\"\n}\n", "{\n  \"host\": \"b\"\n}\n", "old", "new");
        assert!(d.starts_with("--- old\n+++ new\n"), "{d}");
        assert!(
            d.contains("-  \"host\": \"a\"") && d.contains("+  \"host\": \"b\""),
            "{d}"
        );
    }
}
