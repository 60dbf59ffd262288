//! The canonical form: sorted keys, identity-ordered lists, volatile fields out, nulls out,
//! Desk type flapping normalised, credentials replaced by keyed fingerprints.

use super::identity;
use crate::catalog::SourceId;
use crate::pointer::PathPattern;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// Fields that change without anyone changing the configuration. `modifiedBy`/`updatedBy` stay:
/// they say who made a change.
pub const VOLATILE_FIELDS: [&str; 5] = [
    "modifiedTime",
    "modified_time",
    "updatedTime",
    "lastModifiedTime",
    "photoURL",
];

/// Replaces credential values by `redacted:<16 hex of HMAC-SHA256(key, value)>`: a rotation still
/// shows up as a change, and neither value can be read back.
#[derive(Clone)]
pub struct Redactor {
    key: Vec<u8>,
}

impl Redactor {
    /// `key` is the database's own random key.
    pub fn new(key: Vec<u8>) -> Redactor {
        Redactor { key }
    }

    pub fn fingerprint(&self, value: &Value) -> String {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(text.as_bytes());
        format!("redacted:{}", &hex::encode(mac.finalize().into_bytes())[..16])
    }
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor(***)")
    }
}

/// A field holds a credential when its name, lower-cased with `_` and `-` removed, contains one of
/// these or ends with `token`.
pub fn is_credential_name(name: &str) -> bool {
    let n: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    ["password", "passwd", "secret", "privatekey", "apikey", "accesskey"]
        .iter()
        .any(|w| n.contains(w))
        || n.ends_with("token")
}

/// What canonicalisation needs to know about the org and source.
pub struct Rules<'a> {
    pub source: SourceId,
    /// The org's extra `ignore` patterns.
    pub ignore: &'a [PathPattern],
    pub redactor: &'a Redactor,
}

/// The canonical form of a source document.
pub fn canonicalize(doc: &Value, rules: &Rules) -> Value {
    let mut path = Vec::new();
    canon(doc, &mut path, rules).unwrap_or(Value::Object(Map::new()))
}

/// `None` means "absent" (a null member is the same as a missing one).
fn canon(value: &Value, path: &mut Vec<String>, rules: &Rules) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, member) in map {
                if member.is_null() || VOLATILE_FIELDS.contains(&key.as_str()) {
                    continue;
                }
                path.push(key.clone());
                if !rules.ignore.iter().any(|p| p.matches(path)) {
                    let canonical = if is_credential_name(key) {
                        Some(Value::String(rules.redactor.fingerprint(member)))
                    } else if key == "port" && rules.source.normalises_scalar_types() {
                        Some(port_as_number(member))
                    } else {
                        canon(member, path, rules)
                    };
                    if let Some(v) = canonical {
                        out.insert(key.clone(), v);
                    }
                }
                path.pop();
            }
            Some(Value::Object(out))
        }
        Value::Array(items) if identity::is_identity_list(items) => {
            Some(Value::Array(canon_identity_list(items, path, rules)))
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                out.push(canon(item, path, rules).unwrap_or(Value::Null));
                path.pop();
            }
            Some(Value::Array(out))
        }
        Value::String(s) if rules.source.normalises_scalar_types() => Some(match s.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => value.clone(),
        }),
        _ => Some(value.clone()),
    }
}

fn port_as_number(value: &Value) -> Value {
    match value {
        Value::String(s) => s.parse::<u64>().map(Value::from).unwrap_or_else(|_| value.clone()),
        other => other.clone(),
    }
}

/// Orders a list of objects by identity. Ignore patterns below the list see the item's identity as its
/// path segment, so each item is canonicalised once more under its final name.
fn canon_identity_list(items: &[Value], path: &mut Vec<String>, rules: &Rules) -> Vec<Value> {
    // A first pass without ignore patterns gives the content that names identity-less items and that
    // breaks ties between items sharing an identity, so the order never depends on the input order.
    let plain_rules = Rules {
        source: rules.source,
        ignore: &[],
        redactor: rules.redactor,
    };
    let mut keyed: Vec<(String, String, &Value)> = items
        .iter()
        .map(|item| {
            let plain = canon(item, &mut Vec::new(), &plain_rules).unwrap_or(Value::Null);
            let text = plain.to_string();
            (identity::identity(&plain, &text), text, item)
        })
        .collect();
    keyed.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let ids: Vec<String> = keyed.iter().map(|(id, _, _)| id.clone()).collect();
    keyed
        .iter()
        .zip(identity::disambiguate(&ids))
        .map(|((_, _, item), seg)| {
            path.push(seg);
            let v = canon(item, path, rules).unwrap_or(Value::Null);
            path.pop();
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules<'a>(source: SourceId, ignore: &'a [PathPattern], redactor: &'a Redactor) -> Rules<'a> {
        Rules {
            source,
            ignore,
            redactor,
        }
    }

    #[test]
    fn keys_sorted_nulls_and_volatile_fields_gone() {
        let r = Redactor::new(vec![1; 32]);
        let doc = json!({"b": 1, "a": {"modifiedTime": 5, "z": null, "y": "x", "photoURL": "u", "modifiedBy": "7"}});
        let c = canonicalize(&doc, &rules(SourceId::CrmMailConfig, &[], &r));
        assert_eq!(
            super::super::to_canonical_text(&c).replace([' ', '\n'], ""),
            r#"{"a":{"modifiedBy":"7","y":"x"},"b":1}"#
        );
    }

    #[test]
    fn lists_of_objects_are_ordered_by_identity() {
        let r = Redactor::new(vec![1; 32]);
        let a = json!({"reply_addresses": [{"id": "2", "address": "b@x"}, {"id": "1", "address": "a@x"}]});
        let b = json!({"reply_addresses": [{"id": "1", "address": "a@x"}, {"id": "2", "address": "b@x"}]});
        let rl = rules(SourceId::DeskReplyAddresses, &[], &r);
        assert_eq!(canonicalize(&a, &rl), canonicalize(&b, &rl));
    }

    #[test]
    fn desk_type_flapping_is_normalised_but_ids_stay_strings() {
        let r = Redactor::new(vec![1; 32]);
        let doc = json!({"x": [{"id": "4000000025003", "isActive": "true", "smtpDetails": {"port": "465"}}]});
        let c = canonicalize(&doc, &rules(SourceId::DeskReplyAddresses, &[], &r));
        assert_eq!(
            c,
            json!({"x": [{"id": "4000000025003", "isActive": true, "smtpDetails": {"port": 465}}]})
        );
        let crm = canonicalize(&doc, &rules(SourceId::CrmMailConfig, &[], &r));
        assert_eq!(crm["x"][0]["isActive"], json!("true"));
    }

    #[test]
    fn credentials_become_keyed_fingerprints() {
        let r = Redactor::new(vec![7; 32]);
        let other = Redactor::new(vec![8; 32]);
        for name in [
            "password",
            "smtp_Password",
            "client-secret",
            "refresh_token",
            "apiKey",
            "private_key",
            "AccessKeyId",
        ] {
            assert!(is_credential_name(name), "{name}");
        }
        for name in ["tokenType", "host", "userName", "port"] {
            assert!(!is_credential_name(name), "{name}");
        }
        let doc = json!({"smtp": {"password": "hunter2", "host": "h"}});
        let c = canonicalize(&doc, &rules(SourceId::CrmMailConfig, &[], &r));
        let fp = c["smtp"]["password"].as_str().unwrap();
        assert!(fp.starts_with("redacted:") && fp.len() == "redacted:".len() + 16);
        assert!(!c.to_string().contains("hunter2"));
        let c2 = canonicalize(&doc, &rules(SourceId::CrmMailConfig, &[], &other));
        assert_ne!(c, c2, "the fingerprint is keyed");
    }

    #[test]
    fn ignore_patterns_see_identity_segments() {
        let r = Redactor::new(vec![1; 32]);
        let ignore = [PathPattern::parse("/reply_addresses/*/displayName").unwrap()];
        let doc = json!({"reply_addresses": [{"id": "9", "displayName": "S", "address": "a@x"}]});
        let c = canonicalize(&doc, &rules(SourceId::DeskReplyAddresses, &ignore, &r));
        assert_eq!(c, json!({"reply_addresses": [{"id": "9", "address": "a@x"}]}));
        let only_9 = [PathPattern::parse("/reply_addresses/9/address").unwrap()];
        let c = canonicalize(&doc, &rules(SourceId::DeskReplyAddresses, &only_9, &r));
        assert!(c["reply_addresses"][0].get("address").is_none());
    }
}
