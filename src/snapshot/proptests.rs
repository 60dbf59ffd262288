//! Properties of canonical form and diff over generated reply-address lists.

use super::*;
use crate::catalog::SourceId;
use proptest::prelude::*;
use serde_json::{json, Value};

fn address() -> impl Strategy<Value = Value> {
    (
        0u32..40,
        "[a-z]{1,6}",
        prop::sample::select(vec!["smtp.zoho.com", "mail.example", "smtp.office365.com"]),
        1u16..1000,
        any::<bool>(),
    )
        .prop_map(|(id, user, host, port, active)| {
            json!({
                "id": format!("40000000{id:04}"),
                "address": format!("{user}@example.com"),
                "isActive": if active { json!("true") } else { json!(false) },
                "modifiedTime": 1_700_000_000_000u64 + u64::from(port),
                "smtpDetails": {"host": host, "port": port.to_string(), "password": format!("pw-{port}-x")},
            })
        })
}

fn doc() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(address(), 0..12)
}

fn canon(items: &[Value]) -> Value {
    let redactor = Redactor::new(vec![3; 32]);
    let rules = Rules {
        source: SourceId::DeskReplyAddresses,
        ignore: &[],
        redactor: &redactor,
    };
    canonicalize(&json!({ "reply_addresses": items }), &rules)
}

proptest! {
    #[test]
    fn order_never_matters(items in doc(), seed in any::<u64>()) {
        let mut shuffled = items.clone();
        // A deterministic shuffle driven by the seed.
        let n = shuffled.len();
        for i in (1..n).rev() {
            let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % (i as u64 + 1)) as usize;
            shuffled.swap(i, j);
        }
        prop_assert_eq!(canon(&items), canon(&shuffled));
    }

    #[test]
    fn diff_is_empty_exactly_when_canonical_forms_are_equal(a in doc(), b in doc()) {
        let (ca, cb) = (canon(&a), canon(&b));
        prop_assert_eq!(diff(&ca, &cb).is_empty(), ca == cb);
        prop_assert!(diff(&ca, &ca).is_empty());
    }

    #[test]
    fn canonical_text_is_secret_and_volatile_free(items in doc()) {
        let c = canon(&items);
        let text = to_canonical_text(&c);
        prop_assert!(!text.contains("pw-"), "no password value survives: {}", text);
        prop_assert!(!text.contains("\"true\""), "Desk string booleans are normalised");
        prop_assert!(!text.contains("modifiedTime"));
    }

    #[test]
    fn change_paths_are_unique(a in doc(), b in doc()) {
        let changes = diff(&canon(&a), &canon(&b));
        let mut paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
        paths.sort();
        let before = paths.len();
        paths.dedup();
        prop_assert_eq!(before, paths.len());
    }
}

#[test]
fn canonical_text_has_sorted_keys() {
    // Guards against a dependency switching serde_json to insertion order (`preserve_order`).
    let v: Value = serde_json::from_str(r#"{"b": 1, "a": {"d": 1, "c": 2}}"#).unwrap();
    assert_eq!(
        to_canonical_text(&v).replace([' ', '\n'], ""),
        r#"{"a":{"c":2,"d":1},"b":1}"#
    );
}
