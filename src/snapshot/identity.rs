//! How the items of a list are told apart: by `id`, else `address`, else `email`; items with none of
//! these by their content.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Lists whose items are all objects are ordered and addressed by identity; any other list keeps its order.
pub fn is_identity_list(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(Value::is_object)
}

/// The identity of one object. An item without a natural identity is named by a short hash of its
/// canonical content (`content`), so inserting another item never renames it; an edit to it shows as
/// one removal and one addition, which is all that can be known.
pub fn identity(item: &Value, content: &str) -> String {
    for key in ["id", "address", "email"] {
        match item.get(key) {
            Some(Value::String(s)) if !s.is_empty() => return s.clone(),
            Some(Value::Number(n)) => return n.to_string(),
            _ => {}
        }
    }
    format!("~{}", &hex::encode(Sha256::digest(content.as_bytes()))[..12])
}

/// The path segment of each item, given their identities in canonical order: items sharing an
/// identity get `#1`, `#2`, ...
pub fn disambiguate(identities: &[String]) -> Vec<String> {
    let mut totals: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for id in identities {
        *totals.entry(id).or_default() += 1;
    }
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    identities
        .iter()
        .map(|id| {
            if totals[id.as_str()] > 1 {
                let nth = seen.entry(id).or_default();
                *nth += 1;
                format!("{id}#{nth}")
            } else {
                id.clone()
            }
        })
        .collect()
}

/// The path segments of a canonical list (already in canonical order).
pub fn segments(items: &[Value]) -> Vec<String> {
    let ids: Vec<String> = items.iter().map(|item| identity(item, &item.to_string())).collect();
    disambiguate(&ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shared_identities_are_numbered() {
        let items = [json!({"id": "1"}), json!({"id": "1", "x": 2}), json!({"email": "a@x"})];
        assert_eq!(segments(&items), ["1#1", "1#2", "a@x"]);
    }

    #[test]
    fn null_id_falls_back_to_email_then_content() {
        assert_eq!(identity(&json!({"id": null, "email": "e@x"}), ""), "e@x");
        assert!(identity(&json!({"name": "n"}), "{\"name\":\"n\"}").starts_with('~'));
    }
}
