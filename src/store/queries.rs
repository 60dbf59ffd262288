//! Typed queries. Each takes a connection (or a transaction, which derefs to one), so callers decide
//! what belongs in one transaction.

use crate::secret::Secret;
use crate::states::SourceStatus;
use rusqlite::{params, Connection, OptionalExtension, Row};

/// Creates the database's random fingerprint key once.
pub fn ensure_redaction_key(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('redaction_key', randomblob(32))",
        [],
    )?;
    Ok(())
}

/// The key that fingerprints credentials in snapshots (random per database, never leaves it).
pub fn redaction_key(conn: &Connection) -> rusqlite::Result<Vec<u8>> {
    conn.query_row("SELECT value FROM meta WHERE key = 'redaction_key'", [], |r| r.get(0))
}

/// What the database knows about one org.
#[derive(Debug, Clone, Default)]
pub struct OrgRow {
    pub name: String,
    pub needs_reconnect: bool,
    pub reconnect_reason: Option<String>,
    /// Fingerprint of the refresh token that failed.
    pub failed_token_fp: Option<String>,
    /// The next successful audit sends `recovered`.
    pub recovered_pending: bool,
    /// Stored by `auditd connect`.
    pub stored_refresh_token: Option<Secret>,
    pub access_token: Option<Secret>,
    pub access_token_expires_at: Option<i64>,
    /// Fingerprint of the refresh token the cached access token came from.
    pub access_token_source_fp: Option<String>,
    pub api_domain: Option<String>,
    pub desk_org_id: Option<String>,
    pub backoff_until: Option<i64>,
    /// When access tokens were minted (Unix seconds), newest last.
    pub token_mints: Vec<i64>,
}

const ORG_COLUMNS: &str = "name, needs_reconnect, reconnect_reason, failed_token_fp, recovered_pending, \
     stored_refresh_token, access_token, access_token_expires_at, access_token_source_fp, api_domain, \
     desk_org_id, backoff_until, token_mints";

fn org_from_row(r: &Row) -> rusqlite::Result<OrgRow> {
    let mints: String = r.get(12)?;
    Ok(OrgRow {
        name: r.get(0)?,
        needs_reconnect: r.get(1)?,
        reconnect_reason: r.get(2)?,
        failed_token_fp: r.get(3)?,
        recovered_pending: r.get(4)?,
        stored_refresh_token: r.get::<_, Option<String>>(5)?.map(Secret::new),
        access_token: r.get::<_, Option<String>>(6)?.map(Secret::new),
        access_token_expires_at: r.get(7)?,
        access_token_source_fp: r.get(8)?,
        api_domain: r.get(9)?,
        desk_org_id: r.get(10)?,
        backoff_until: r.get(11)?,
        token_mints: serde_json::from_str(&mints).unwrap_or_default(),
    })
}

/// The org's row, created empty on first use.
pub fn org(conn: &Connection, name: &str) -> rusqlite::Result<OrgRow> {
    conn.execute("INSERT OR IGNORE INTO orgs (name) VALUES (?1)", [name])?;
    conn.query_row(
        &format!("SELECT {ORG_COLUMNS} FROM orgs WHERE name = ?1"),
        [name],
        org_from_row,
    )
}

/// The org's row if the database knows it (read-only commands must not create rows).
pub fn org_if_known(conn: &Connection, name: &str) -> rusqlite::Result<Option<OrgRow>> {
    conn.query_row(
        &format!("SELECT {ORG_COLUMNS} FROM orgs WHERE name = ?1"),
        [name],
        org_from_row,
    )
    .optional()
}

/// Every org the database knows, by name.
pub fn all_orgs(conn: &Connection) -> rusqlite::Result<Vec<OrgRow>> {
    let mut stmt = conn.prepare(&format!("SELECT {ORG_COLUMNS} FROM orgs ORDER BY name"))?;
    let rows = stmt.query_map([], org_from_row)?;
    rows.collect()
}

/// Caches a freshly minted access token.
pub fn save_access_token(
    conn: &Connection,
    org: &str,
    token: &Secret,
    expires_at: i64,
    source_fp: &str,
    api_domain: Option<&str>,
    mints: &[i64],
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE orgs SET access_token = ?2, access_token_expires_at = ?3, access_token_source_fp = ?4, \
         api_domain = ?5, token_mints = ?6 WHERE name = ?1",
        params![
            org,
            token.expose(),
            expires_at,
            source_fp,
            api_domain,
            serde_json::to_string(mints).unwrap_or_default()
        ],
    )?;
    Ok(())
}

/// Forgets the cached access token (Zoho said it is no longer valid).
pub fn clear_access_token(conn: &Connection, org: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE orgs SET access_token = NULL, access_token_expires_at = NULL WHERE name = ?1",
        [org],
    )?;
    Ok(())
}

/// Records the token mints without a new token (a refused refresh still counts against Zoho's limit).
pub fn save_token_mints(conn: &Connection, org: &str, mints: &[i64]) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE orgs SET token_mints = ?2 WHERE name = ?1",
        params![org, serde_json::to_string(mints).unwrap_or_default()],
    )?;
    Ok(())
}

pub fn save_desk_org_id(conn: &Connection, org: &str, id: &str) -> rusqlite::Result<()> {
    conn.execute("UPDATE orgs SET desk_org_id = ?2 WHERE name = ?1", [org, id])?;
    Ok(())
}

/// Keeps a throttling back-off across runs.
pub fn set_backoff(conn: &Connection, org: &str, until: Option<i64>) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE orgs SET backoff_until = ?2 WHERE name = ?1",
        params![org, until],
    )?;
    Ok(())
}

/// Marks the org as needing reconnect. Returns whether it just entered that state (alert once).
pub fn mark_needs_reconnect(
    conn: &Connection,
    org: &str,
    reason: &str,
    failed_token_fp: &str,
) -> rusqlite::Result<bool> {
    let was: bool = conn.query_row("SELECT needs_reconnect FROM orgs WHERE name = ?1", [org], |r| r.get(0))?;
    conn.execute(
        "UPDATE orgs SET needs_reconnect = 1, reconnect_reason = ?2, failed_token_fp = ?3, recovered_pending = 0, \
         access_token = NULL, access_token_expires_at = NULL WHERE name = ?1",
        params![org, reason, failed_token_fp],
    )?;
    Ok(!was)
}

/// Clears needs-reconnect because the org now has a different refresh token; the next successful
/// audit sends `recovered`.
pub fn clear_needs_reconnect(conn: &Connection, org: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE orgs SET recovered_pending = recovered_pending OR needs_reconnect, needs_reconnect = 0, \
         reconnect_reason = NULL, failed_token_fp = NULL WHERE name = ?1",
        [org],
    )?;
    Ok(())
}

/// Consumes the pending `recovered` notice.
pub fn take_recovered_pending(conn: &Connection, org: &str) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE orgs SET recovered_pending = 0 WHERE name = ?1 AND recovered_pending = 1",
        [org],
    )?;
    Ok(n > 0)
}

/// Stores a refresh token obtained by `auditd connect`. The cached access token, the token budget and
/// any throttling back-off belonged to the old one and go with it.
pub fn store_refresh_token(conn: &Connection, org: &str, token: &Secret, now: i64) -> rusqlite::Result<()> {
    conn.execute("INSERT OR IGNORE INTO orgs (name) VALUES (?1)", [org])?;
    conn.execute(
        "UPDATE orgs SET stored_refresh_token = ?2, connected_at = ?3, access_token = NULL, backoff_until = NULL, token_mints = '[]', \
         access_token_expires_at = NULL WHERE name = ?1",
        params![org, token.expose(), now],
    )?;
    Ok(())
}

/// The newest snapshot of an org and source.
#[derive(Debug, Clone)]
pub struct StoredSnapshot {
    pub id: i64,
    pub hash: String,
    pub body: String,
    pub taken_at: i64,
}

fn snapshot_from_row(r: &Row) -> rusqlite::Result<StoredSnapshot> {
    Ok(StoredSnapshot {
        id: r.get(0)?,
        hash: r.get(1)?,
        body: r.get(2)?,
        taken_at: r.get(3)?,
    })
}

pub fn latest_snapshot(conn: &Connection, org: &str, source: &str) -> rusqlite::Result<Option<StoredSnapshot>> {
    conn.query_row(
        "SELECT s.id, s.hash, b.body, s.taken_at FROM snapshots s JOIN bodies b ON b.hash = s.hash \
         WHERE s.org = ?1 AND s.source = ?2 ORDER BY s.id DESC LIMIT 1",
        [org, source],
        snapshot_from_row,
    )
    .optional()
}

pub fn snapshot_by_id(conn: &Connection, id: i64) -> rusqlite::Result<Option<StoredSnapshot>> {
    conn.query_row(
        "SELECT s.id, s.hash, b.body, s.taken_at FROM snapshots s JOIN bodies b ON b.hash = s.hash WHERE s.id = ?1",
        [id],
        snapshot_from_row,
    )
    .optional()
}

/// Stores a new snapshot (its body once per content) and returns its id.
pub fn insert_snapshot(
    conn: &Connection,
    org: &str,
    source: &str,
    hash: &str,
    body: &str,
    now: i64,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT OR IGNORE INTO bodies (hash, body) VALUES (?1, ?2)",
        [hash, body],
    )?;
    conn.execute(
        "INSERT INTO snapshots (org, source, hash, taken_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?4)",
        params![org, source, hash, now],
    )?;
    Ok(conn.last_insert_rowid())
}

/// An unchanged pass only records that the content was seen again.
pub fn touch_snapshot(conn: &Connection, id: i64, now: i64) -> rusqlite::Result<()> {
    conn.execute("UPDATE snapshots SET last_seen_at = ?2 WHERE id = ?1", params![id, now])?;
    Ok(())
}

/// The latest outcome of one source.
#[derive(Debug, Clone)]
pub struct SourceState {
    pub org: String,
    pub source: String,
    pub status: SourceStatus,
    pub error: Option<String>,
    pub snapshot_id: Option<i64>,
    pub last_audit_at: i64,
    pub last_success_at: Option<i64>,
    pub last_change_at: Option<i64>,
}

/// A source's outcome in one pass, as `source_state` records it.
#[derive(Debug, Clone, Copy)]
pub struct SourceOutcome<'a> {
    pub org: &'a str,
    pub source: &'a str,
    pub status: SourceStatus,
    /// Why it was not audited (`error`, `skipped`, `unavailable`).
    pub error: Option<&'a str>,
    /// The snapshot it now stands at; `None` keeps the previous one.
    pub snapshot_id: Option<i64>,
    /// When it was audited (Unix seconds).
    pub at: i64,
}

/// Records a source's outcome. A read that succeeded (`baseline`, `ok`, `drift`) moves
/// `last_success_at`; `drift` also moves `last_change_at`.
pub fn record_source_state(conn: &Connection, o: &SourceOutcome<'_>) -> rusqlite::Result<()> {
    let success = matches!(
        o.status,
        SourceStatus::Baseline | SourceStatus::Ok | SourceStatus::Drift
    );
    let changed = o.status == SourceStatus::Drift;
    conn.execute(
        "INSERT INTO source_state (org, source, status, error, snapshot_id, last_audit_at, last_success_at, last_change_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, CASE WHEN ?7 THEN ?6 END, CASE WHEN ?8 THEN ?6 END) \
         ON CONFLICT (org, source) DO UPDATE SET status = excluded.status, error = excluded.error, \
           snapshot_id = COALESCE(excluded.snapshot_id, snapshot_id), last_audit_at = excluded.last_audit_at, \
           last_success_at = COALESCE(excluded.last_success_at, last_success_at), \
           last_change_at = COALESCE(excluded.last_change_at, last_change_at)",
        params![o.org, o.source, o.status, o.error, o.snapshot_id, o.at, success, changed],
    )?;
    Ok(())
}

pub fn source_states(conn: &Connection) -> rusqlite::Result<Vec<SourceState>> {
    let mut stmt = conn.prepare(
        "SELECT org, source, status, error, snapshot_id, last_audit_at, last_success_at, last_change_at \
         FROM source_state ORDER BY org, source",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(SourceState {
            org: r.get(0)?,
            source: r.get(1)?,
            status: r.get(2)?,
            error: r.get(3)?,
            snapshot_id: r.get(4)?,
            last_audit_at: r.get(5)?,
            last_success_at: r.get(6)?,
            last_change_at: r.get(7)?,
        })
    })?;
    rows.collect()
}

/// Stores an alert; its payload is the webhook body, byte for byte, so every retry is identical.
pub fn insert_alert(
    conn: &Connection,
    event_id: &str,
    org: &str,
    kind: &str,
    now: i64,
    payload: &str,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO alerts (event_id, org, kind, created_at, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![event_id, org, kind, now, payload],
    )?;
    Ok(conn.last_insert_rowid())
}

/// One drift of one source, linked to the alert that reports it.
pub struct NewDrift<'a> {
    pub org: &'a str,
    pub source: &'a str,
    pub from_snapshot: i64,
    pub to_snapshot: i64,
    pub changes_json: &'a str,
    pub diff: &'a str,
    pub detected_at: i64,
    pub alert_id: i64,
}

pub fn insert_drift(conn: &Connection, d: &NewDrift) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO drifts (org, source, from_snapshot, to_snapshot, changes, diff, detected_at, alert_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            d.org,
            d.source,
            d.from_snapshot,
            d.to_snapshot,
            d.changes_json,
            d.diff,
            d.detected_at,
            d.alert_id
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// The state of an outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    Pending,
    Delivered,
    Dead,
    /// Recorded by a `--no-notify` run; never sent.
    Suppressed,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Delivered => "delivered",
            OutboxStatus::Dead => "dead",
            OutboxStatus::Suppressed => "suppressed",
        }
    }
}

pub fn enqueue(
    conn: &Connection,
    alert_id: i64,
    channel: &str,
    status: OutboxStatus,
    now: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO outbox (alert_id, channel, status, next_attempt_at) VALUES (?1, ?2, ?3, ?4)",
        params![alert_id, channel, status.as_str(), now],
    )?;
    Ok(())
}

/// An outbox row with what delivery needs.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: i64,
    pub event_id: String,
    pub org: String,
    pub kind: String,
    pub channel: String,
    pub payload: String,
    pub attempts: i64,
    /// Where the dead-letter age counts from: the alert's creation, or its last requeue.
    pub age_from: i64,
}

/// Pending rows whose timer is due (or every pending row when `ignore_timer`), oldest first.
pub fn due_outbox(conn: &Connection, now: i64, ignore_timer: bool) -> rusqlite::Result<Vec<OutboxItem>> {
    let mut stmt = conn.prepare(
        "SELECT o.id, a.event_id, a.org, a.kind, o.channel, a.payload, o.attempts, COALESCE(o.requeued_at, a.created_at) \
         FROM outbox o JOIN alerts a ON a.id = o.alert_id \
         WHERE o.status = 'pending' AND (?2 OR o.next_attempt_at <= ?1) ORDER BY o.id",
    )?;
    let rows = stmt.query_map(params![now, ignore_timer], |r| {
        Ok(OutboxItem {
            id: r.get(0)?,
            event_id: r.get(1)?,
            org: r.get(2)?,
            kind: r.get(3)?,
            channel: r.get(4)?,
            payload: r.get(5)?,
            attempts: r.get(6)?,
            age_from: r.get(7)?,
        })
    })?;
    rows.collect()
}

pub fn mark_delivered(conn: &Connection, id: i64, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE outbox SET status = 'delivered', attempts = attempts + 1, delivered_at = ?2, last_error = NULL WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

/// Records a failed attempt: the row waits until `next_attempt_at`, or is dead.
pub fn mark_failed(conn: &Connection, id: i64, error: &str, next_attempt_at: i64, dead: bool) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE outbox SET status = CASE WHEN ?4 THEN 'dead' ELSE 'pending' END, attempts = attempts + 1, \
         last_error = ?2, next_attempt_at = ?3 WHERE id = ?1",
        params![id, error, next_attempt_at, dead],
    )?;
    Ok(())
}

/// Pending and dead rows per channel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChannelBacklog {
    pub channel: String,
    pub pending: i64,
    pub dead: i64,
    /// The error of the newest dead row: why the channel gave up.
    pub last_error: Option<String>,
}

pub fn outbox_backlog(conn: &Connection) -> rusqlite::Result<Vec<ChannelBacklog>> {
    let mut stmt = conn.prepare(
        "SELECT o.channel, SUM(o.status = 'pending'), SUM(o.status = 'dead'), \
           (SELECT d.last_error FROM outbox d WHERE d.channel = o.channel AND d.status = 'dead' ORDER BY d.id DESC LIMIT 1) \
         FROM outbox o GROUP BY o.channel ORDER BY o.channel",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ChannelBacklog {
            channel: r.get(0)?,
            pending: r.get(1)?,
            dead: r.get(2)?,
            last_error: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// One outbox row as `auditd alerts` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OutboxEntry {
    pub id: i64,
    pub event_id: String,
    pub channel: String,
    pub org: String,
    pub kind: String,
    pub status: String,
    pub attempts: i64,
    pub created_at: i64,
    pub next_attempt_at: Option<i64>,
    pub last_error: Option<String>,
}

/// Pending and dead rows, oldest first.
pub fn undelivered(conn: &Connection) -> rusqlite::Result<Vec<OutboxEntry>> {
    let mut stmt = conn.prepare(
        "SELECT o.id, a.event_id, o.channel, a.org, a.kind, o.status, o.attempts, a.created_at, \
         CASE WHEN o.status = 'pending' THEN o.next_attempt_at END, o.last_error \
         FROM outbox o JOIN alerts a ON a.id = o.alert_id WHERE o.status IN ('pending', 'dead') ORDER BY o.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(OutboxEntry {
            id: r.get(0)?,
            event_id: r.get(1)?,
            channel: r.get(2)?,
            org: r.get(3)?,
            kind: r.get(4)?,
            status: r.get(5)?,
            attempts: r.get(6)?,
            created_at: r.get(7)?,
            next_attempt_at: r.get(8)?,
            last_error: r.get(9)?,
        })
    })?;
    rows.collect()
}

/// Which dead rows to requeue.
#[derive(Debug, Clone, Copy)]
pub enum Requeue {
    One(i64),
    AllDead,
}

/// Requeues dead rows with a fresh set of attempts; returns how many. Rows that are not dead are left
/// alone (a delivered alert is never sent twice).
pub fn requeue_dead(conn: &Connection, which: Requeue, now: i64) -> rusqlite::Result<usize> {
    let sql = "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?1, requeued_at = ?1 \
               WHERE status = 'dead' AND (?2 IS NULL OR id = ?2)";
    let id = match which {
        Requeue::One(id) => Some(id),
        Requeue::AllDead => None,
    };
    conn.execute(sql, params![now, id])
}

/// The status of one outbox row, if it exists.
pub fn outbox_status(conn: &Connection, id: i64) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT status FROM outbox WHERE id = ?1", [id], |r| r.get(0))
        .optional()
}

/// One snapshot in `auditd history`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryEntry {
    pub snapshot: i64,
    pub source: String,
    pub taken_at: i64,
    pub last_seen_at: i64,
    /// Changes against the previous snapshot; `None` for a baseline.
    pub changes: Option<i64>,
    pub event_id: Option<String>,
}

/// Snapshots of an org, newest first.
pub fn history(conn: &Connection, org: &str, source: Option<&str>, limit: i64) -> rusqlite::Result<Vec<HistoryEntry>> {
    let mut stmt = conn.prepare(
        "SELECT s.id, s.source, s.taken_at, s.last_seen_at, json_array_length(d.changes), a.event_id \
         FROM snapshots s LEFT JOIN drifts d ON d.to_snapshot = s.id LEFT JOIN alerts a ON a.id = d.alert_id \
         WHERE s.org = ?1 AND (?2 IS NULL OR s.source = ?2) ORDER BY s.id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![org, source, limit], |r| {
        Ok(HistoryEntry {
            snapshot: r.get(0)?,
            source: r.get(1)?,
            taken_at: r.get(2)?,
            last_seen_at: r.get(3)?,
            changes: r.get(4)?,
            event_id: r.get(5)?,
        })
    })?;
    rows.collect()
}

/// The snapshot of an org and source just before `id`.
pub fn snapshot_before(
    conn: &Connection,
    org: &str,
    source: &str,
    id: i64,
) -> rusqlite::Result<Option<StoredSnapshot>> {
    conn.query_row(
        "SELECT s.id, s.hash, b.body, s.taken_at FROM snapshots s JOIN bodies b ON b.hash = s.hash \
         WHERE s.org = ?1 AND s.source = ?2 AND s.id < ?3 ORDER BY s.id DESC LIMIT 1",
        params![org, source, id],
        snapshot_from_row,
    )
    .optional()
}

/// Which org and source a snapshot belongs to.
pub fn snapshot_owner(conn: &Connection, id: i64) -> rusqlite::Result<Option<(String, String)>> {
    conn.query_row("SELECT org, source FROM snapshots WHERE id = ?1", [id], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()
}
