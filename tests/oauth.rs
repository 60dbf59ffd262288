//! OAuth lifecycle, `auditd connect`, and a client that is polite to Zoho (SPEC §4, §7; issue 4).

use crate::support::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

/// A plain HTTP GET that does not follow redirects: returns (status, Location).
fn get(url: &str) -> (u16, Option<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let resp = client.get(url).send().await.unwrap();
        let location = resp.headers().get("location").map(|v| v.to_str().unwrap().to_string());
        (resp.status().as_u16(), location)
    })
}

/// Starts `auditd connect ORG ARGS`, returns the child and the consent URL it printed.
fn start_connect(t: &Test, org: &str, args: &[&str]) -> (std::process::Child, String) {
    let mut all = vec!["connect", org];
    all.extend_from_slice(args);
    let mut child = t
        .command(&all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let consent = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.starts_with("http"))
        .expect("a consent URL");
    // Keep reading stdout in the background so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, consent)
}

fn with_redirect(port: u16) -> String {
    format!("redirect_uri = \"http://127.0.0.1:{port}/callback\"")
}

#[test]
fn connect_takes_the_redirect_on_a_loopback_listener_and_the_org_recovers() {
    let port = free_port();
    let t = Test::new()
        .org_with("acme", OrgData::sample(1), &with_redirect(port))
        .webhook();
    t.sim.set_consent_org("acme");
    t.once(&[]).code(0);
    t.sim.revoke_refresh_tokens("acme");
    t.sim.invalidate_access_tokens("acme");
    t.once(&[]).code(3);

    let (child, consent) = start_connect(&t, "acme", &[]);
    let params: std::collections::HashMap<String, String> =
        url::Url::parse(&consent).unwrap().query_pairs().into_owned().collect();
    assert_eq!(params["access_type"], "offline");
    assert_eq!(params["prompt"], "consent");
    assert_eq!(
        params["scope"],
        "ZohoCRM.settings.ALL,ZohoCRM.org.READ,Desk.settings.READ,Desk.basic.READ"
    );
    assert_eq!(params["state"].len(), 32);
    // The "browser": Zoho's consent redirects to our listener.
    let (status, location) = get(&consent);
    assert_eq!(status, 302);
    let redirect = location.unwrap();
    assert!(redirect.starts_with(&format!("http://127.0.0.1:{port}/callback?")));
    assert!(wait_until(Duration::from_secs(5), || std::net::TcpStream::connect((
        "127.0.0.1",
        port
    ))
    .is_ok()));
    assert_eq!(get(&redirect).0, 200);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let minted = t.sim.tokens_minted("acme");
    let run = t.once(&[]);
    run.code(0);
    assert_eq!(run.org("acme")["state"], "ok");
    assert_eq!(
        t.sim.tokens_minted("acme"),
        minted,
        "the access token from the exchange was kept"
    );
    let kinds: Vec<String> = t
        .webhooks()
        .iter()
        .map(|w| w.header("x-auditd-event").unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["reconnect_required", "recovered"]);
    // The stored token is in the database (mode 0600), and wins over the dead one in the config.
    let stored: Option<String> = t
        .db()
        .query_row("SELECT stored_refresh_token FROM orgs WHERE name = 'acme'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(stored.unwrap().starts_with("1000."));
}

#[test]
fn connect_with_a_pasted_redirect_url_prints_dc_and_api_domain() {
    let port = free_port();
    let t = Test::new().org_with("acme", OrgData::sample(1), &with_redirect(port));
    t.sim.set_consent_org("acme");
    let (_, consent) = {
        // Any consent URL will do: the simulator only needs client, redirect_uri and access_type.
        let mut c = t.command(&["connect", "acme", "--code", "placeholder"]);
        c.stdout(Stdio::piped()).stderr(Stdio::null());
        let out = c.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (out, text.lines().find(|l| l.starts_with("http")).unwrap().to_string())
    };
    let (_, location) = get(&consent);
    let run = t.run(&["connect", "acme", "--code", &location.unwrap()]);
    run.code(0);
    assert!(
        run.stdout
            .contains("connected acme: data centre us, API domain http://127.0.0.1"),
        "{}",
        run.stdout
    );
    t.once(&[]).code(0);
}

#[test]
fn connect_refuses_an_accounts_server_that_is_not_zoho() {
    let t = Test::new().org("acme");
    let pasted = "http://127.0.0.1:8765/callback?state=x&code=1000.abc&location=us&accounts-server=https%3A%2F%2Faccounts.zoho.com.attacker.example";
    t.run(&["connect", "acme", "--code", pasted])
        .code(1)
        .stderr_contains("refusing accounts-server");
}

#[test]
fn connect_rejects_a_redirect_with_someone_elses_state() {
    let port = free_port();
    let t = Test::new().org_with("acme", OrgData::sample(1), &with_redirect(port));
    let (child, _) = start_connect(&t, "acme", &[]);
    assert!(wait_until(Duration::from_secs(5), || std::net::TcpStream::connect((
        "127.0.0.1",
        port
    ))
    .is_ok()));
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}/callback?state=forged&code=1000.abc")).0,
        400
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("state mismatch"));
    assert_eq!(t.sim.token_requests("acme"), 0, "the forged code was never exchanged");
}

#[test]
fn twelve_consecutive_runs_mint_at_most_two_tokens_even_with_millisecond_expiry() {
    let t = Test::new().org("acme");
    t.sim.set_expires_in_millis(true);
    for _ in 0..12 {
        t.once(&[]).code(0);
    }
    assert!(
        t.sim.tokens_minted("acme") <= 2,
        "minted {}",
        t.sim.tokens_minted("acme")
    );
    let expires_at: i64 = t
        .db()
        .query_row("SELECT access_token_expires_at FROM orgs", [], |r| r.get(0))
        .unwrap();
    let left = expires_at - zoho_auditd::time_util::now_unix();
    assert!(
        (3500..=3600).contains(&left),
        "expires_in_sec wins over a millisecond expires_in: {left}"
    );
}

#[test]
fn token_endpoint_throttling_backs_off_across_runs_without_hammering() {
    let t = Test::new().org("acme").org("healthy");
    let denied = r#"{"error":"Access Denied","error_description":"You have made too many requests continuously. Please try again after some time.","status":"failure"}"#;
    t.sim
        .inject(Fault::new("/oauth/v2/token", FaultResponse::status(200, denied)).org("acme"));
    let run = t.once(&[]);
    run.code(3);
    assert!(run.org("acme")["sources"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["status"] == "skipped"));
    assert_eq!(run.org("healthy")["state"], "ok");
    assert_eq!(t.sim.token_requests("acme"), 1);
    let again = t.once(&[]);
    again.code(3);
    assert!(
        again.org("acme")["reason"].as_str().unwrap().contains("backing off"),
        "{}",
        again.stdout
    );
    assert_eq!(t.sim.token_requests("acme"), 1, "the back-off is kept in the database");
}

#[test]
fn the_local_budget_stops_refreshing_before_zoho_would_throttle() {
    let t = Test::new().org("acme");
    let mut codes = Vec::new();
    for _ in 0..11 {
        t.sim.invalidate_access_tokens("acme");
        codes.push(t.once(&[]).code);
    }
    assert_eq!(
        t.sim.tokens_minted("acme"),
        9,
        "nine per ten minutes, one short of Zoho's ten"
    );
    assert_eq!(codes[..9], [0; 9]);
    assert_eq!(codes[9..], [3, 3]);
    assert_eq!(
        t.sim.token_requests("acme"),
        9,
        "no request that Zoho would answer with Access Denied"
    );
}

#[test]
fn a_scope_mismatch_needs_reconnect_with_reason_scope() {
    let t = Test::new().org("acme").webhook();
    let body = r#"{"code":"OAUTH_SCOPE_MISMATCH","details":{},"message":"invalid oauth scope","status":"error"}"#;
    t.sim.inject(
        Fault::new(
            "/crm/v8/settings/emails/actions/from_addresses",
            FaultResponse::status(401, body),
        )
        .org("acme"),
    );
    let run = t.once(&[]);
    run.code(3);
    assert_eq!(run.org("acme")["state"], "needs_reconnect");
    assert!(
        run.org("acme")["reason"].as_str().unwrap().starts_with("scope"),
        "{}",
        run.stdout
    );
    assert_eq!(
        t.sim.tokens_minted("acme"),
        1,
        "refreshing does not help a missing scope"
    );
    assert_eq!(t.webhooks()[0].header("x-auditd-event"), Some("reconnect_required"));
}

#[test]
fn a_mixed_config_audits_the_healthy_orgs_normally() {
    let t = Test::new().org("revoked").org("one").org("two").webhook();
    t.once(&[]).code(0);
    t.sim.revoke_refresh_tokens("revoked");
    t.sim.invalidate_access_tokens("revoked");
    t.sim.update("one", |d| {
        d.support_email_domain["supportEmailDomain"] = json!("evil.zohodesk.com")
    });
    let run = t.once(&[]);
    run.code(3);
    assert_eq!(run.org("revoked")["state"], "needs_reconnect");
    assert_eq!(run.org("one")["state"], "ok");
    assert_eq!(run.source("one", "desk.support_email_domain")["status"], "drift");
    assert_eq!(run.org("two")["state"], "ok");
    let mut kinds: Vec<(String, String)> = t
        .webhooks()
        .iter()
        .map(|w| {
            (
                w.json()["org"].as_str().unwrap().to_string(),
                w.header("x-auditd-event").unwrap().to_string(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("one".to_string(), "drift".to_string()),
            ("revoked".to_string(), "reconnect_required".to_string())
        ]
    );
}

#[test]
fn requests_in_flight_per_org_stay_within_the_limit() {
    let t = Test::new().org_with("acme", OrgData::sample(1), "max_in_flight = 2");
    for path in [
        "/crm/v8/settings/mail_config",
        "/crm/v8/settings/emails/actions/from_addresses",
        "/api/v1/supportEmailDomain",
        "/api/v1/mailConfigurations",
    ] {
        t.sim
            .inject(Fault::new(path, FaultResponse::Delay(Duration::from_millis(300))).org("acme"));
    }
    t.once(&[]).code(0);
    assert_eq!(
        t.sim.max_concurrent_requests("acme"),
        2,
        "sources run concurrently, at most max_in_flight at once"
    );
    assert_eq!(t.sim.tokens_minted("acme"), 1, "one token for all concurrent sources");
}

#[test]
fn a_401_on_a_freshly_minted_token_still_gets_one_refresh_and_retry() {
    let t = Test::new().org("acme");
    let body = r#"{"code":"INVALID_TOKEN","details":{},"message":"invalid oauth token","status":"error"}"#;
    t.sim.inject(
        Fault::new(
            "/crm/v8/settings/emails/actions/from_addresses",
            FaultResponse::status(401, body),
        )
        .org("acme")
        .times(1),
    );
    let run = t.once(&[]);
    run.code(0);
    assert_eq!(run.org("acme")["state"], "ok");
    assert_eq!(run.source("acme", "crm.from_addresses")["status"], "baseline");
    assert_eq!(
        t.sim.tokens_minted("acme"),
        2,
        "the first token, then one fresh one after the 401"
    );
}

#[test]
fn a_refused_refresh_is_asked_once_per_pass_and_reported_as_itself() {
    let t = Test::new().org("acme");
    let refused = FaultResponse::status(200, r#"{"error":"invalid_client_secret"}"#);
    t.sim.inject(Fault::new("/oauth/v2/token", refused).org("acme"));
    for pass in 1..=3 {
        let run = t.once(&[]);
        run.code(3);
        assert_eq!(run.org("acme")["state"], "error");
        let reason = run.org("acme")["reason"].as_str().unwrap().to_string();
        assert!(reason.contains("invalid_client_secret"), "pass {pass}: {reason}");
        assert_eq!(
            t.sim.token_requests("acme"),
            pass,
            "one token request per pass, not one per source"
        );
    }
    t.sim.clear_faults();
    t.once(&[]).code(0);
}

#[test]
fn a_token_endpoint_5xx_is_one_request_per_pass_and_nothing_is_recorded() {
    let t = Test::new().org("acme");
    t.sim.inject(
        Fault::new(
            "/oauth/v2/token",
            FaultResponse::status(502, "<html>bad gateway</html>"),
        )
        .org("acme"),
    );
    let run = t.once(&[]);
    run.code(3);
    assert_eq!(t.sim.token_requests("acme"), 1);
    assert!(run.org("acme")["sources"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["snapshot"].is_null()));
    assert_eq!(t.count("SELECT COUNT(*) FROM snapshots"), 0);
}

#[test]
fn connect_clears_a_throttling_back_off_of_the_old_token() {
    let port = free_port();
    let t = Test::new().org_with("acme", OrgData::sample(1), &with_redirect(port));
    t.sim.set_consent_org("acme");
    let denied = r#"{"error":"Access Denied","error_description":"too many","status":"failure"}"#;
    t.sim.inject(
        Fault::new("/oauth/v2/token", FaultResponse::status(200, denied))
            .org("acme")
            .times(1),
    );
    t.once(&[]).code(3);
    // Only for a consent URL: the pasted redirect below goes to a second `connect`.
    let (mut child, consent) = start_connect(&t, "acme", &[]);
    child.kill().unwrap();
    child.wait().unwrap();
    let (_, location) = get(&consent);
    t.run(&["connect", "acme", "--code", &location.unwrap()]).code(0);
    // Force a refresh with the new token: the old token's back-off must not block it.
    t.sim.invalidate_access_tokens("acme");
    let run = t.once(&[]);
    run.code(0);
    assert_eq!(run.org("acme")["state"], "ok");
}

#[test]
fn a_revoked_refresh_token_exits_3_alerts_once_and_stops_calling_zoho() {
    let t = Test::new().org("acme").org("healthy").webhook();
    t.once(&[]).code(0);
    t.sim.revoke_refresh_tokens("acme");
    t.sim.invalidate_access_tokens("acme");
    let run = t.once(&[]);
    run.code(3);
    let acme = run.org("acme");
    assert_eq!(acme["state"], "needs_reconnect");
    assert!(acme["reason"].as_str().unwrap().contains("invalid_code"), "{acme}");
    assert_eq!(run.org("healthy")["state"], "ok", "other orgs are audited normally");
    let reconnects: Vec<_> = t
        .webhooks()
        .into_iter()
        .filter(|h| h.header("x-auditd-event") == Some("reconnect_required"))
        .collect();
    assert_eq!(reconnects.len(), 1);
    assert_eq!(reconnects[0].json()["org"], "acme");

    let api_calls = t.sim.requests("acme").len();
    let token_calls = t.sim.token_requests("acme");
    let again = t.once(&[]);
    again.code(3);
    assert_eq!(again.org("acme")["state"], "needs_reconnect");
    assert!(again.org("acme")["sources"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["status"] == "skipped"));
    assert_eq!(
        t.sim.requests("acme").len(),
        api_calls,
        "no API call for an org that needs reconnect"
    );
    assert_eq!(t.sim.token_requests("acme"), token_calls, "no token call either");
    assert_eq!(t.webhooks().len(), 1, "the reconnect alert is sent once");
    let status = t.run(&["status", "--json"]);
    status.code(0);
    let acme_status = status.json()["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["org"] == "acme")
        .unwrap()
        .clone();
    assert_eq!(acme_status["state"], "needs_reconnect");
}

#[test]
fn an_org_without_any_refresh_token_needs_reconnect_as_not_connected() {
    let t = Test::new().org("acme");
    let mut cmd = t.command(&["--once", "--json"]);
    cmd.env_remove("AUDITD_TEST_REFRESH_ACME");
    // The config names the variable, so a missing one is a config error (78)...
    assert_eq!(cmd.output().unwrap().status.code(), Some(78));
    // ...while an org with no refresh token configured at all is "not connected".
    let t = Test::new().raw(&format!(
        "\n[[orgs]]\nname = \"fresh\"\ndc = \"us\"\naccounts_url = \"{u}\"\napi_domain = \"{u}\"\ndesk_url = \"{u}\"\n",
        u = "http://127.0.0.1:9"
    ));
    let run = t.once(&[]);
    run.code(3);
    assert_eq!(run.org("fresh")["state"], "needs_reconnect");
    assert_eq!(run.org("fresh")["reason"], "not connected");
}

#[test]
fn an_invalidated_access_token_is_recovered_by_one_refresh() {
    let t = Test::new().org("acme");
    t.once(&[]).code(0);
    let minted = t.sim.tokens_minted("acme");
    t.sim.invalidate_access_tokens("acme");
    let run = t.once(&[]);
    run.code(0);
    assert_eq!(run.org("acme")["state"], "ok");
    assert_eq!(t.sim.tokens_minted("acme"), minted + 1);
}

#[test]
fn access_tokens_are_cached_across_runs() {
    let t = Test::new().org("acme");
    for _ in 0..4 {
        t.once(&[]).code(0);
    }
    assert_eq!(t.sim.tokens_minted("acme"), 1);
}

#[test]
fn an_api_domain_that_is_not_zoho_is_refused_and_crm_gets_no_token() {
    let mut data = OrgData::sample(1);
    data.api_domain = Some("https://www.zohoapis.com.attacker.example".into());
    let t = Test::new().org_trusting_token_api_domain("acme", data);
    let run = t.once(&[]);
    run.code(3);
    let src = run.source("acme", "crm.mail_config");
    assert_eq!(src["status"], "error");
    assert!(
        src["error"]
            .as_str()
            .unwrap()
            .contains("api_domain `https://www.zohoapis.com.attacker.example`"),
        "{src}"
    );
    for crm in ["crm.from_addresses", "crm.compose"] {
        assert_eq!(run.source("acme", crm)["status"], "error");
    }
    // Desk never goes to api_domain: it is audited as usual.
    assert_eq!(run.source("acme", "desk.reply_addresses")["status"], "baseline");
    assert!(
        t.sim.requests("acme").iter().all(|r| r.path.starts_with("/api/v1/")),
        "no CRM call was made with that token"
    );
    let cached: Option<String> = t
        .db()
        .query_row("SELECT access_token FROM orgs WHERE name = 'acme'", [], |r| r.get(0))
        .unwrap();
    assert!(
        cached.is_none(),
        "a token that came with a foreign api_domain is not cached"
    );
}
