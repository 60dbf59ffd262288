-- Version 1. Times are Unix seconds (UTC).

-- Per-database facts: the random key that fingerprints credentials in snapshots.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;

-- One row per org ever audited or connected.
CREATE TABLE orgs (
    name                    TEXT PRIMARY KEY,
    needs_reconnect         INTEGER NOT NULL DEFAULT 0,
    reconnect_reason        TEXT,
    -- Fingerprint of the refresh token that failed: a different token clears needs_reconnect.
    failed_token_fp         TEXT,
    -- Set when needs_reconnect was cleared; the next successful audit sends `recovered`.
    recovered_pending       INTEGER NOT NULL DEFAULT 0,
    -- Stored by `auditd connect`; wins over the config's refresh token.
    stored_refresh_token    TEXT,
    connected_at            INTEGER,
    access_token            TEXT,
    access_token_expires_at INTEGER,
    -- Fingerprint of the refresh token the cached access token was minted from.
    access_token_source_fp  TEXT,
    api_domain              TEXT,
    desk_org_id             TEXT,
    -- Zoho throttled token minting: do not ask again before this time.
    backoff_until           INTEGER,
    -- When each access token was minted, a JSON list, for the local budget.
    token_mints             TEXT NOT NULL DEFAULT '[]'
) STRICT;

-- Canonical snapshot bodies, stored once per content.
CREATE TABLE bodies (
    hash TEXT PRIMARY KEY,
    body TEXT NOT NULL
) STRICT;

-- One row per distinct content observed for an org and source, in order.
CREATE TABLE snapshots (
    id           INTEGER PRIMARY KEY,
    org          TEXT NOT NULL REFERENCES orgs(name),
    source       TEXT NOT NULL,
    hash         TEXT NOT NULL REFERENCES bodies(hash),
    taken_at     INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
) STRICT;
CREATE INDEX snapshots_by_org_source ON snapshots(org, source, id);

-- The latest outcome per org and source (what `status` shows).
CREATE TABLE source_state (
    org             TEXT NOT NULL REFERENCES orgs(name),
    source          TEXT NOT NULL,
    status          TEXT NOT NULL,
    error           TEXT,
    snapshot_id     INTEGER REFERENCES snapshots(id),
    last_audit_at   INTEGER NOT NULL,
    last_success_at INTEGER,
    last_change_at  INTEGER,
    PRIMARY KEY (org, source)
) STRICT;

-- One alert per org per pass (drift) or per state change; its payload is the webhook body v1.
CREATE TABLE alerts (
    id         INTEGER PRIMARY KEY,
    event_id   TEXT NOT NULL UNIQUE,
    org        TEXT NOT NULL REFERENCES orgs(name),
    kind       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    payload    TEXT NOT NULL
) STRICT;

-- One drift per org, source and pass.
CREATE TABLE drifts (
    id            INTEGER PRIMARY KEY,
    org           TEXT NOT NULL REFERENCES orgs(name),
    source        TEXT NOT NULL,
    from_snapshot INTEGER NOT NULL REFERENCES snapshots(id),
    to_snapshot   INTEGER NOT NULL REFERENCES snapshots(id),
    changes       TEXT NOT NULL,
    diff          TEXT NOT NULL,
    detected_at   INTEGER NOT NULL,
    alert_id      INTEGER NOT NULL REFERENCES alerts(id)
) STRICT;

-- One row per alert and channel: the durable delivery queue.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    alert_id        INTEGER NOT NULL REFERENCES alerts(id),
    channel         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead', 'suppressed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    delivered_at    INTEGER,
    UNIQUE (alert_id, channel)
) STRICT;
CREATE INDEX outbox_by_status ON outbox(status, next_attempt_at);
