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
    /// Unified diff of the canonical JSON.
    pub diff: String,
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

    /// Total changes over every source.
    pub fn change_count(&self) -> usize {
        self.sources.iter().map(|s| s.changes.len()).sum()
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
