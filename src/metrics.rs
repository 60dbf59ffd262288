//! Prometheus metrics of the daemon (`/metrics`, served by `daemon::http`).
//!
//! What the database already records — the last success per source, drift events, orgs needing
//! reconnect, the outbox backlog — is read from it at scrape time instead of being mirrored in memory:
//! the figures then survive restarts, agree with `auditd status`, and include what `--once` runs did.
//! Only what the database does not keep is counted in this process: API requests, pass durations and
//! skipped ticks.

use crate::store::queries::{self, ChannelBacklog};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

/// `Content-Type` of the classic Prometheus text format (0.0.4), served unless OpenMetrics is asked for.
pub const PROMETHEUS_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// `Content-Type` of OpenMetrics text, served when the scraper's `Accept` header names it.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of `auditd_api_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    /// `crm` or `desk` (`other` for a URL that is neither, which would be a bug).
    product: &'static str,
    /// `ok` (a 2xx answer) or `error` (anything else, retried attempts included).
    outcome: &'static str,
}

/// Label of the per-org series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OrgLabel {
    org: String,
}

/// Labels of `auditd_last_success_timestamp_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OrgSourceLabels {
    org: String,
    source: String,
}

/// Label of the outbox gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabel {
    channel: String,
}

/// The metrics counted in this process. Static because the HTTP client records into them from deep
/// inside the Zoho module, which should not have to carry a handle around for it.
struct InProcess {
    api_requests: Family<ApiLabels, Counter>,
    pass_duration: Histogram,
    ticks_skipped: Family<OrgLabel, Counter>,
}

static IN_PROCESS: LazyLock<InProcess> = LazyLock::new(|| InProcess {
    api_requests: Family::default(),
    // 0.25 s to about 8.5 minutes: a pass is a handful of HTTP requests, but retries and slow Desk
    // paging can stretch it to minutes.
    pass_duration: Histogram::new(exponential_buckets(0.25, 2.0, 12)),
    ticks_skipped: Family::default(),
});

/// Counts one HTTP attempt at a CRM or Desk API (`url` tells which product; `outcome` is `ok` or the
/// class of the failure, `ZohoError::kind`).
pub fn record_api_request(url: &str, outcome: &'static str) {
    let labels = ApiLabels {
        product: product_of(url),
        outcome,
    };
    IN_PROCESS.api_requests.get_or_create(&labels).inc();
}

/// Records how long one org's pass took, delivery included.
pub fn observe_pass_duration(elapsed: Duration) {
    IN_PROCESS.pass_duration.observe(elapsed.as_secs_f64());
}

/// Counts a tick that found its org still being audited.
pub fn record_tick_skipped(org: &str) {
    IN_PROCESS
        .ticks_skipped
        .get_or_create(&OrgLabel { org: org.to_string() })
        .inc();
}

fn product_of(url: &str) -> &'static str {
    let path = url::Url::parse(url).map(|u| u.path().to_string()).unwrap_or_default();
    // An `api_domain`/`desk_url` override may carry a path prefix, hence `contains`.
    if path.contains("/crm/") {
        "crm"
    } else if path.contains("/api/v1/") {
        "desk"
    } else {
        "other"
    }
}

/// What the database says, read in one go at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbFigures {
    /// (org, source) → Unix seconds of the last successful audit.
    pub last_success: BTreeMap<(String, String), i64>,
    /// org → drift events ever recorded (every configured org is present, 0 included).
    pub drift_events: BTreeMap<String, u64>,
    /// Configured orgs marked as needing reconnect.
    pub orgs_needing_reconnect: i64,
    /// Pending and dead outbox rows per channel (every configured channel is present).
    pub outbox: Vec<ChannelBacklog>,
}

/// Reads the figures for the configured `orgs` and `channels`. Orgs that were removed from the config
/// are left out, so their series disappear instead of going stale forever; channels that still have
/// rows in the outbox stay, since those rows still matter.
pub fn read_figures(conn: &Connection, orgs: &[String], channels: &[String]) -> rusqlite::Result<DbFigures> {
    let mut figures = DbFigures::default();
    for state in queries::source_states(conn)? {
        if let (true, Some(at)) = (orgs.contains(&state.org), state.last_success_at) {
            figures.last_success.insert((state.org, state.source), at);
        }
    }
    for org in orgs {
        figures.drift_events.insert(org.clone(), 0);
    }
    // The typed queries have no aggregate of drifts per org; it is only needed here.
    let mut stmt = conn.prepare("SELECT org, COUNT(*) FROM drifts GROUP BY org")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (org, n) = row?;
        if let Some(count) = figures.drift_events.get_mut(&org) {
            *count = n.max(0) as u64;
        }
    }
    figures.orgs_needing_reconnect = queries::all_orgs(conn)?
        .iter()
        .filter(|o| o.needs_reconnect && orgs.contains(&o.name))
        .count() as i64;
    let mut backlog = queries::outbox_backlog(conn)?;
    for channel in channels {
        if !backlog.iter().any(|b| &b.channel == channel) {
            backlog.push(ChannelBacklog {
                channel: channel.clone(),
                pending: 0,
                dead: 0,
                last_error: None,
            });
        }
    }
    backlog.sort_by(|a, b| a.channel.cmp(&b.channel));
    figures.outbox = backlog;
    Ok(figures)
}

/// The text exposition of every metric: classic Prometheus text, or OpenMetrics when `openmetrics`.
pub fn render(figures: &DbFigures, openmetrics: bool) -> String {
    let mut registry = Registry::default();

    let last_success = Family::<OrgSourceLabels, Gauge>::default();
    for ((org, source), at) in &figures.last_success {
        last_success
            .get_or_create(&OrgSourceLabels {
                org: org.clone(),
                source: source.clone(),
            })
            .set(*at);
    }
    registry.register(
        "auditd_last_success_timestamp_seconds",
        "When each org's source was last audited successfully (Unix time)",
        last_success,
    );

    let drifts = Family::<OrgLabel, Counter>::default();
    for (org, n) in &figures.drift_events {
        drifts.get_or_create(&OrgLabel { org: org.clone() }).inc_by(*n);
    }
    registry.register("auditd_drift_events", "Drift events recorded per org", drifts);

    let reconnect = Gauge::<i64>::default();
    reconnect.set(figures.orgs_needing_reconnect);
    registry.register(
        "auditd_orgs_needing_reconnect",
        "Configured orgs that are skipped until someone reconnects them",
        reconnect,
    );

    let pending = Family::<ChannelLabel, Gauge>::default();
    let dead = Family::<ChannelLabel, Gauge>::default();
    for b in &figures.outbox {
        let label = ChannelLabel {
            channel: b.channel.clone(),
        };
        pending.get_or_create(&label).set(b.pending);
        dead.get_or_create(&label).set(b.dead);
    }
    registry.register(
        "auditd_outbox_pending",
        "Alerts waiting for delivery per channel",
        pending,
    );
    registry.register(
        "auditd_outbox_dead",
        "Alerts given up on per channel (see `auditd alerts`)",
        dead,
    );

    // Clones of the in-process metrics share their values with the statics.
    let live = &*IN_PROCESS;
    registry.register(
        "auditd_api_requests",
        "HTTP attempts at the CRM and Desk APIs by this process",
        live.api_requests.clone(),
    );
    registry.register(
        "auditd_pass_duration_seconds",
        "How long one org's audit pass took, delivery included",
        live.pass_duration.clone(),
    );
    registry.register(
        "auditd_ticks_skipped",
        "Scheduled audits skipped because the org's previous audit was still running",
        live.ticks_skipped.clone(),
    );

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, &registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn api_requests_are_told_apart_by_product() {
        assert_eq!(product_of("https://www.zohoapis.eu/crm/v8/settings/mail_config"), "crm");
        assert_eq!(product_of("http://127.0.0.1:9900/crm/email/v8/settings/compose"), "crm");
        assert_eq!(product_of("https://desk.zoho.com/api/v1/departments"), "desk");
        assert_eq!(product_of("not a url"), "other");
    }

    #[test]
    fn figures_come_from_the_database_for_configured_orgs_and_channels() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("auditd.db")).unwrap();
        let figures = store
            .call_blocking(|c| {
                for org in ["acme", "gone"] {
                    queries::org(c, org)?;
                    queries::record_source_state(
                        c,
                        &queries::SourceOutcome {
                            org,
                            source: "desk.reply_addresses",
                            status: crate::states::SourceStatus::Ok,
                            error: None,
                            snapshot_id: None,
                            at: 1_700_000_000,
                        },
                    )?;
                    queries::mark_needs_reconnect(c, org, "invalid_code", "fp")?;
                }
                let a = queries::insert_alert(c, "01EVENT", "acme", "drift", 1, "{}")?;
                queries::enqueue(c, a, "hook", queries::OutboxStatus::Pending, 1)?;
                let s1 = queries::insert_snapshot(c, "acme", "desk.reply_addresses", "h1", "{}", 1)?;
                let s2 = queries::insert_snapshot(c, "acme", "desk.reply_addresses", "h2", "[]", 2)?;
                queries::insert_drift(
                    c,
                    &queries::NewDrift {
                        org: "acme",
                        source: "desk.reply_addresses",
                        from_snapshot: s1,
                        to_snapshot: s2,
                        changes_json: "[]",
                        diff: "",
                        detected_at: 2,
                        alert_id: a,
                    },
                )?;
                Ok(read_figures(
                    c,
                    &["acme".into(), "globex".into()],
                    &["hook".into(), "mail".into()],
                )?)
            })
            .unwrap();
        assert_eq!(
            figures.last_success,
            BTreeMap::from([(("acme".into(), "desk.reply_addresses".into()), 1_700_000_000)])
        );
        assert_eq!(
            figures.drift_events,
            BTreeMap::from([("acme".into(), 1), ("globex".into(), 0)])
        );
        assert_eq!(figures.orgs_needing_reconnect, 1, "the removed org does not count");
        assert_eq!(
            figures.outbox,
            vec![
                ChannelBacklog {
                    channel: "hook".into(),
                    pending: 1,
                    dead: 0,
                    last_error: None
                },
                ChannelBacklog {
                    channel: "mail".into(),
                    pending: 0,
                    dead: 0,
                    last_error: None
                },
            ]
        );

        record_api_request("https://desk.zoho.com/api/v1/departments", "ok");
        let text = render(&figures, false);
        for line in [
            "auditd_last_success_timestamp_seconds{org=\"acme\",source=\"desk.reply_addresses\"} 1700000000",
            "auditd_drift_events_total{org=\"acme\"} 1",
            "auditd_drift_events_total{org=\"globex\"} 0",
            "auditd_orgs_needing_reconnect 1",
            "auditd_outbox_pending{channel=\"hook\"} 1",
            "auditd_outbox_dead{channel=\"mail\"} 0",
            "# TYPE auditd_pass_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        }
        assert!(
            text.lines()
                .any(|l| l.starts_with("auditd_api_requests_total{product=\"desk\",outcome=\"ok\"} ")),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "classic text has no EOF marker");
        assert!(render(&figures, true).ends_with("# EOF\n"));
    }
}
