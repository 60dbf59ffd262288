//! Snapshots: a source's JSON in canonical form, and the drift between two of them (SPEC §5).
//!
//! Pure: JSON in, JSON and changes out, no I/O. That keeps it easy to property-test and benchmark.

mod canonical;
mod diff;
mod identity;

pub use canonical::{canonicalize, is_credential_name, Redactor, Rules, VOLATILE_FIELDS};
pub use diff::{diff, unified_diff, Change, Op};

use sha2::{Digest, Sha256};

/// Pretty JSON of a canonical document: the stored body and the input of the unified diff.
/// serde_json's map is ordered by key (the build does not enable `preserve_order`), so this is stable.
pub fn to_canonical_text(doc: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(doc).expect("a Value always serialises");
    text.push('\n');
    text
}

/// The content hash under which a canonical body is stored once.
pub fn content_hash(canonical_text: &str) -> String {
    hex::encode(Sha256::digest(canonical_text.as_bytes()))
}

#[cfg(test)]
mod proptests;
