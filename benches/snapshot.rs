//! How canonicalisation and diff scale with the size of a Desk reply-address list.
//!
//! Run: `cargo bench --bench snapshot`. Prints, per list size, the median time of canonicalise and of
//! diff (one edited item), the cost per item, the ratio to the previous size (≈ size ratio means
//! linear), and the number of changes found (must be 1: one edited address is one change).

use serde_json::{json, Value};
use std::hint::black_box;
use std::time::{Duration, Instant};
use zoho_auditd::catalog::SourceId;
use zoho_auditd::snapshot::{self, Redactor, Rules};

fn addresses(n: usize) -> Value {
    let items: Vec<Value> = (0..n)
        .rev()
        .map(|i| {
            json!({
                "id": format!("4000000{i:06}"), "address": format!("alias{i}@example.com"), "displayName": "Support",
                "departmentId": "4000000007043", "isActive": "true", "isVerified": true, "isSmtpEnabled": true,
                "serviceProviderType": "CustomSMTP",
                "smtpDetails": {"host": "smtp.zoho.com", "port": "465", "userName": format!("alias{i}@example.com"), "connectionType": "SSL"},
                "createdBy": {"id": "4000000028043", "firstName": "Sam", "photoURL": "https://desk.zoho.com/p"},
                "createdTime": 1672998926000u64, "modifiedTime": 1673006126000u64
            })
        })
        .collect();
    json!({ "reply_addresses": items })
}

fn median(mut f: impl FnMut() -> Duration, runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs).map(|_| f()).collect();
    times.sort();
    times[runs / 2]
}

fn main() {
    let redactor = Redactor::new(vec![7; 32]);
    let rules = Rules {
        source: SourceId::DeskReplyAddresses,
        ignore: &[],
        redactor: &redactor,
    };
    println!(
        "{:>6} {:>14} {:>12} {:>8} {:>14} {:>12} {:>8} {:>8}",
        "items", "canonicalise", "per item", "ratio", "diff", "per item", "ratio", "changes"
    );
    let mut previous: Option<(usize, Duration, Duration)> = None;
    for n in [10usize, 100, 1000, 5000] {
        let raw = addresses(n);
        let mut edited = raw.clone();
        edited["reply_addresses"][n / 2]["smtpDetails"]["host"] = json!("mail.attacker.example");
        let runs = if n >= 1000 { 7 } else { 31 };
        let canon = median(
            || {
                let t = Instant::now();
                black_box(snapshot::canonicalize(black_box(&raw), &rules));
                t.elapsed()
            },
            runs,
        );
        let (a, b) = (
            snapshot::canonicalize(&raw, &rules),
            snapshot::canonicalize(&edited, &rules),
        );
        let mut changes = 0;
        let diff = median(
            || {
                let t = Instant::now();
                changes = black_box(snapshot::diff(black_box(&a), black_box(&b))).len();
                t.elapsed()
            },
            runs,
        );
        let ratio = |now: Duration, before: Duration| format!("{:.1}x", now.as_secs_f64() / before.as_secs_f64());
        let (cr, dr) = match previous {
            Some((_, pc, pd)) => (ratio(canon, pc), ratio(diff, pd)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{n:>6} {:>14?} {:>12?} {cr:>8} {:>14?} {:>12?} {dr:>8} {changes:>8}",
            canon,
            canon / n as u32,
            diff,
            diff / n as u32
        );
        assert_eq!(changes, 1, "one edited address must be one change");
        previous = Some((n, canon, diff));
    }
}
