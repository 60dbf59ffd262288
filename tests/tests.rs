//! The integration tests: the real `auditd` binary, run as a child process against the Zoho simulator,
//! a webhook receiver and a real SMTP server, through the builder in `support`. One test binary, one
//! module per area; test names read as the rules of SPEC.md they check.

mod support;

/// `auditd --once`: passes, exit codes, sources, snapshots and drift (SPEC §2, §4, §5).
mod once;

/// Alerts are never lost and never sent twice for one event: the outbox, email, webhooks (SPEC §6).
mod alerts;

/// `history` and `diff` (SPEC §2, §5).
mod history;

/// OAuth, reconnect and `auditd connect`, and a client polite to Zoho (SPEC §4, §7).
mod oauth;

/// The daemon: schedule, signals, systemd notify, `/metrics` (SPEC §8).
mod daemon;

/// Hostile input and careless operators (SPEC §12).
mod hostile;
