//! Tests of the simulator through real HTTP, as auditd sees it.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn refresh(sim: &Simulator, refresh_token: &str) -> Value {
    let resp = client()
        .post(format!("{}/oauth/v2/token", sim.url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "OAuth answers are HTTP 200");
    resp.json().await.unwrap()
}

async fn access_token(sim: &Simulator, refresh_token: &str) -> String {
    let body = refresh(sim, refresh_token).await;
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {body}"))
        .to_owned()
}

/// GET with the Zoho auth header and, when given, the Desk orgId header.
async fn get(sim: &Simulator, path_and_query: &str, token: &str, org_id: Option<&str>) -> reqwest::Response {
    let mut req = client()
        .get(format!("{}{path_and_query}", sim.url()))
        .header("Authorization", format!("Zoho-oauthtoken {token}"));
    if let Some(id) = org_id {
        req = req.header("orgId", id);
    }
    req.send().await.unwrap()
}

fn sim_with_org() -> (Simulator, String) {
    let sim = Simulator::start();
    let rt = sim.add_org("acme", OrgData::sample(1));
    (sim, rt)
}

#[tokio::test]
async fn refresh_grant_succeeds_then_invalid_code_after_revoke() {
    let (sim, rt) = sim_with_org();
    assert!(rt.starts_with("1000."));
    let body = refresh(&sim, &rt).await;
    let at = body["access_token"].as_str().unwrap();
    assert!(at.starts_with("1000.") && at.len() == 5 + 32, "{at}");
    assert_eq!(body["api_domain"], json!(sim.url()));
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body.get("refresh_token").is_none());
    assert_eq!(sim.tokens_minted("acme"), 1);

    sim.revoke_refresh_tokens("acme");
    assert_eq!(refresh(&sim, &rt).await, json!({"error": "invalid_code"}));
    assert_eq!(refresh(&sim, "1000.unknown").await, json!({"error": "invalid_code"}));
    // The unknown token is attributed to nobody.
    assert_eq!(sim.token_requests("acme"), 2);
    assert_eq!(sim.tokens_minted("acme"), 1);
}

#[tokio::test]
async fn wrong_client_credentials_and_millisecond_expiry() {
    let (sim, rt) = sim_with_org();
    let post = |id: &'static str, secret: &'static str| {
        client()
            .post(format!("{}/oauth/v2/token", sim.url()))
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", id),
                ("client_secret", secret),
                ("refresh_token", rt.as_str()),
            ])
            .send()
    };
    let body: Value = post("1000.OTHER", CLIENT_SECRET).await.unwrap().json().await.unwrap();
    assert_eq!(body, json!({"error": "invalid_client"}));
    let body: Value = post(CLIENT_ID, "nope").await.unwrap().json().await.unwrap();
    assert_eq!(body, json!({"error": "invalid_client_secret"}));

    sim.set_token_lifetime(1800);
    sim.set_expires_in_millis(true);
    let body = refresh(&sim, &rt).await;
    assert_eq!(body["expires_in_sec"], 1800);
    assert_eq!(body["expires_in"], 1_800_000);
    assert_eq!(sim.token_requests("acme"), 3);
}

#[tokio::test]
async fn throttles_the_eleventh_token_in_ten_minutes() {
    let (sim, rt) = sim_with_org();
    for _ in 0..10 {
        access_token(&sim, &rt).await;
    }
    let body = refresh(&sim, &rt).await;
    assert_eq!(body["error"], "Access Denied");
    assert_eq!(body["status"], "failure");
    assert!(body.get("access_token").is_none());
    assert_eq!(sim.tokens_minted("acme"), 10);
    assert_eq!(sim.token_requests("acme"), 11);
    // The budget is per refresh token: another one for the same org still works.
    let rt2 = sim.add_org("acme", OrgData::sample(1));
    access_token(&sim, &rt2).await;
}

#[tokio::test]
async fn access_tokens_expire_and_can_be_invalidated() {
    let (sim, rt) = sim_with_org();
    sim.set_token_lifetime(1);
    let short = access_token(&sim, &rt).await;
    let path = "/crm/v8/settings/emails/actions/from_addresses";
    assert_eq!(get(&sim, path, &short, None).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&sim, path, &short, None).await.status(), 401);

    sim.set_token_lifetime(3600);
    let long = access_token(&sim, &rt).await;
    assert_eq!(get(&sim, path, &long, None).await.status(), 200);
    sim.invalidate_access_tokens("acme");
    assert_eq!(get(&sim, path, &long, None).await.status(), 401);
    let fresh = access_token(&sim, &rt).await;
    assert_eq!(get(&sim, path, &fresh, None).await.status(), 200);

    let statuses: Vec<u16> = sim.requests("acme").iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 401, 200, 401, 200]);
}

#[tokio::test]
async fn crm_and_desk_401_bodies() {
    let (sim, _) = sim_with_org();
    let resp = get(&sim, "/crm/v8/settings/mail_config", "1000.bogus", None).await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"code":"INVALID_TOKEN","details":{},"message":"invalid oauth token","status":"error"})
    );
    let resp = client()
        .get(format!("{}/api/v1/departments", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorCode"], "INVALID_OAUTH");
    assert_eq!(sim.authorization_headers(), ["Zoho-oauthtoken 1000.bogus".to_owned()]);
}

#[tokio::test]
async fn crm_endpoints() {
    let (sim, rt) = sim_with_org();
    let at = access_token(&sim, &rt).await;
    let resp = get(&sim, "/crm/v8/settings/mail_config", &at, None).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["mail_config"][0]["smtp"]["password"], "s3cr3t-smtp-pass");

    let body: Value = get(&sim, "/crm/v2/settings/emails/actions/from_addresses", &at, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["from_addresses"].as_array().unwrap().len(), 3);

    for kind in ["default", "emailin", "mass_mail"] {
        let body: Value = get(&sim, &format!("/crm/email/v8/settings/compose?type={kind}"), &at, None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["email_compose"][0]["type"], kind);
    }

    sim.update("acme", |d| {
        d.crm_mail_config = None;
        d.from_addresses.clear();
        d.compose.remove("mass_mail");
    });
    let resp = get(&sim, "/crm/v8/settings/mail_config", &at, None).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "INVALID_URL_PATTERN");
    let resp = get(&sim, "/crm/v8/settings/emails/actions/from_addresses", &at, None).await;
    assert_eq!(resp.status(), 204);
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = get(&sim, "/crm/email/v8/settings/compose?type=mass_mail", &at, None).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "FEATURE_NOT_ENABLED");
    let resp = get(&sim, "/crm/v8/nothing/here", &at, None).await;
    assert_eq!(resp.status(), 404);

    let recorded = sim.requests("acme");
    assert_eq!(recorded.len(), 9);
    assert_eq!(recorded[2].path, "/crm/email/v8/settings/compose");
    assert_eq!(recorded[2].query, "type=default");
    assert_eq!(recorded[2].method, "GET");
}

#[tokio::test]
async fn desk_requires_the_org_id_header() {
    let (sim, rt) = sim_with_org();
    let at = access_token(&sim, &rt).await;
    let org_id = OrgData::sample(1).desk_org_id;
    assert!(org_id.parse::<u64>().unwrap() > u64::from(u32::MAX));

    // organizations is the one call that needs no orgId.
    let body: Value = get(&sim, "/api/v1/organizations", &at, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"][0]["id"], json!(org_id));

    for bad in [None, Some("12345")] {
        let resp = get(&sim, "/api/v1/supportEmailDomain", &at, bad).await;
        assert_eq!(resp.status(), 400);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["errorCode"], "INVALID_DATA");
    }
    let resp = get(&sim, "/api/v1/supportEmailDomain", &at, Some(&org_id)).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["supportEmailDomain"], "zylker1new.zohodesk.com");

    let resp = get(&sim, "/api/v1/nope", &at, Some(&org_id)).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap()["errorCode"], "URL_NOT_FOUND");

    sim.update("acme", |d| d.mail_configurations = None);
    let resp = get(&sim, "/api/v1/mailConfigurations", &at, Some(&org_id)).await;
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn desk_reply_addresses_are_filtered_and_paged() {
    let (sim, rt) = sim_with_org();
    let at = access_token(&sim, &rt).await;
    let sample = OrgData::sample(1);
    let org_id = sample.desk_org_id.clone();
    let dept1 = sample.departments[0]["id"].as_str().unwrap().to_owned();
    let dept2 = sample.departments[1]["id"].as_str().unwrap().to_owned();

    let body: Value = get(&sim, "/api/v1/departments?from=0&limit=200", &at, Some(&org_id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let resp = get(&sim, "/api/v1/departments?limit=201", &at, Some(&org_id)).await;
    assert_eq!(resp.status(), 422);
    let resp = get(
        &sim,
        &format!("/api/v1/mailReplyAddress?departmentId={dept1}&limit=101"),
        &at,
        Some(&org_id),
    )
    .await;
    assert_eq!(resp.status(), 422);

    let body: Value = get(
        &sim,
        &format!("/api/v1/mailReplyAddress?departmentId={dept2}"),
        &at,
        Some(&org_id),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["smtpDetails"]["port"], "465");

    sim.update("acme", |d| {
        let template = d.reply_addresses[0].clone();
        d.reply_addresses = (0..150)
            .map(|i| {
                let mut a = template.clone();
                a["id"] = json!(format!("77{i:05}"));
                a
            })
            .collect();
    });
    let mut ids = Vec::new();
    let mut from = 0;
    loop {
        let resp = get(
            &sim,
            &format!("/api/v1/mailReplyAddress?departmentId={dept1}&from={from}&limit=100"),
            &at,
            Some(&org_id),
        )
        .await;
        if resp.status() == 204 {
            assert!(resp.bytes().await.unwrap().is_empty());
            break;
        }
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        let page = body["data"].as_array().unwrap();
        ids.extend(page.iter().map(|a| a["id"].as_str().unwrap().to_owned()));
        from += page.len();
    }
    assert_eq!(ids.len(), 150);
    assert_eq!(ids[0], "7700000");
    assert_eq!(ids[149], "7700149");
    let pages: Vec<u16> = sim
        .requests("acme")
        .iter()
        .filter(|r| r.path == "/api/v1/mailReplyAddress" && r.query.contains("from="))
        .map(|r| r.status)
        .collect();
    assert_eq!(pages, [200, 200, 204]);
    // The other department has nothing now.
    let resp = get(
        &sim,
        &format!("/api/v1/mailReplyAddress?departmentId={dept2}"),
        &at,
        Some(&org_id),
    )
    .await;
    assert_eq!(resp.status(), 204);
}

#[tokio::test]
async fn nth_fault_fires_once_on_that_request() {
    let (sim, rt) = sim_with_org();
    let other_rt = sim.add_org("other", OrgData::sample(2));
    let at = access_token(&sim, &rt).await;
    let other_at = access_token(&sim, &other_rt).await;
    let org_id = OrgData::sample(1).desk_org_id;
    let other_org_id = OrgData::sample(2).desk_org_id;
    let path = "/api/v1/supportEmailDomain";
    sim.inject(
        Fault::new(
            path,
            FaultResponse::status(429, r#"{"errorCode":"THRESHOLD_EXCEEDED"}"#).header("Retry-After", "7"),
        )
        .org("acme")
        .nth(2),
    );
    // Requests of another org neither fire nor count.
    assert_eq!(get(&sim, path, &other_at, Some(&other_org_id)).await.status(), 200);
    assert_eq!(get(&sim, path, &at, Some(&org_id)).await.status(), 200);
    let resp = get(&sim, path, &at, Some(&org_id)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(get(&sim, path, &at, Some(&org_id)).await.status(), 200);
    let statuses: Vec<u16> = sim.requests("acme").iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 429, 200]);

    // A fault on the token endpoint, limited by `times`.
    sim.inject(Fault::new("/oauth/v2/token", FaultResponse::status(500, "boom")).times(1));
    let resp = client()
        .post(format!("{}/oauth/v2/token", sim.url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("refresh_token", rt.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    access_token(&sim, &rt).await;
    assert_eq!(sim.token_requests("acme"), 3);
    assert_eq!(sim.tokens_minted("acme"), 2);
}

#[tokio::test]
async fn malformed_json_and_delay_faults() {
    let (sim, rt) = sim_with_org();
    let at = access_token(&sim, &rt).await;
    let path = "/crm/v8/settings/mail_config";
    sim.inject(Fault::new(path, FaultResponse::MalformedJson).times(1));
    let resp = get(&sim, path, &at, None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let text = resp.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

    sim.inject(Fault::new(path, FaultResponse::Delay(Duration::from_millis(300))));
    let started = std::time::Instant::now();
    let resp = get(&sim, path, &at, None).await;
    assert_eq!(resp.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    sim.clear_faults();
    let started = std::time::Instant::now();
    get(&sim, path, &at, None).await;
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn consent_redirect_and_code_exchange() {
    let (sim, old_rt) = sim_with_org();
    let redirect = "http://127.0.0.1:9/callback";
    let consent = |access_type: &'static str| {
        client()
            .get(format!("{}/oauth/v2/auth", sim.url()))
            .query(&[
                ("client_id", CLIENT_ID),
                ("response_type", "code"),
                ("redirect_uri", redirect),
                ("scope", "ZohoCRM.settings.emails.READ,Desk.settings.READ"),
                ("access_type", access_type),
                ("prompt", "consent"),
                ("state", "st8 &x"),
            ])
            .send()
    };
    // No consent org yet.
    assert_eq!(consent("offline").await.unwrap().status(), 400);

    sim.update("acme", |d| d.location = "eu".to_owned());
    sim.set_consent_org("acme");
    let resp = consent("offline").await.unwrap();
    assert_eq!(resp.status(), 302);
    let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with("http://127.0.0.1:9/callback?state="));
    let q: std::collections::HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "st8 &x");
    assert_eq!(q["location"], "eu");
    assert_eq!(q["accounts-server"], sim.url());
    assert!(location.as_str().contains("accounts-server=http%3A%2F%2F127.0.0.1%3A"));
    let code = q["code"].clone();

    let exchange = |code: String, redirect_uri: &'static str| {
        client()
            .post(format!("{}/oauth/v2/token", q["accounts-server"]))
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("redirect_uri", redirect_uri),
                ("code", code.as_str()),
            ])
            .send()
    };
    let body: Value = exchange(code.clone(), "http://elsewhere/cb")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body, json!({"error": "invalid_redirect_uri"}));
    let body: Value = exchange(code.clone(), redirect).await.unwrap().json().await.unwrap();
    let new_rt = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(body["access_token"].as_str().unwrap().starts_with("1000."));
    // Single use.
    let body: Value = exchange(code, redirect).await.unwrap().json().await.unwrap();
    assert_eq!(body, json!({"error": "invalid_code"}));
    assert_eq!(sim.token_requests("acme"), 3);

    // Both the new and the old refresh token work.
    access_token(&sim, &new_rt).await;
    access_token(&sim, &old_rt).await;
    assert_eq!(sim.tokens_minted("acme"), 3);

    // access_type=online: no refresh token.
    let resp = consent("online").await.unwrap();
    let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let body: Value = exchange(code, redirect).await.unwrap().json().await.unwrap();
    assert!(body.get("access_token").is_some() && body.get("refresh_token").is_none());
}

#[tokio::test]
async fn foreign_api_domain_is_reported() {
    let sim = Simulator::start();
    let mut data = OrgData::sample(3);
    data.api_domain = Some("https://evil.example".to_owned());
    let rt = sim.add_org("x", data);
    assert_eq!(refresh(&sim, &rt).await["api_domain"], "https://evil.example");
}

#[test]
fn sample_orgs_differ_and_match_the_documented_shapes() {
    let (a, b) = (OrgData::sample(1), OrgData::sample(2));
    assert_ne!(a.desk_org_id, b.desk_org_id);
    assert_ne!(a.reply_addresses[0]["id"], b.reply_addresses[0]["id"]);
    assert_eq!(a.desk_portals[0]["id"], json!(a.desk_org_id));
    assert_eq!(a.departments.len(), 2);
    assert_eq!(a.reply_addresses.len(), 3);
    let dept1 = &a.departments[0]["id"];
    assert_eq!(
        a.reply_addresses.iter().filter(|r| &r["departmentId"] == dept1).count(),
        2
    );
    assert!(a.reply_addresses[0]["createdBy"]["photoURL"].is_string());
    assert!(a.from_addresses.iter().any(|f| f.get("id") == Some(&Value::Null)));
    assert_eq!(a.compose.len(), 3);
    assert_eq!(a.mail_configurations.as_ref().unwrap().len(), 2);
    assert_eq!(a.location, "us");
    assert!(a.api_domain.is_none());
}

#[test]
fn usable_from_sync_code_and_stops_on_drop() {
    let sim = Simulator::start();
    let addr = sim.url().trim_start_matches("http://").to_owned();
    assert!(std::net::TcpStream::connect(&addr).is_ok());
    drop(sim);
    assert!(std::net::TcpStream::connect(&addr).is_err());
}

#[tokio::test]
async fn webhook_sink_follows_its_script() {
    let sink = WebhookSink::start();
    assert!(sink.url().ends_with("/hook"));
    sink.respond_with(vec![503, 500]);
    let mut answered = Vec::new();
    for i in 0..3 {
        let resp = client()
            .post(sink.url())
            .header("X-Signature", format!("sig{i}"))
            .json(&json!({"n": i}))
            .send()
            .await
            .unwrap();
        answered.push(resp.status().as_u16());
    }
    assert_eq!(answered, [503, 500, 200]);
    let got = sink.received();
    assert_eq!(got.len(), 3);
    assert_eq!(got.iter().map(|r| r.answered).collect::<Vec<_>>(), [503, 500, 200]);
    assert_eq!(got[1].path, "/hook");
    assert_eq!(got[1].header("x-signature"), Some("sig1"));
    assert_eq!(got[1].header("Content-Type"), Some("application/json"));
    assert!(got[1].headers.iter().all(|(k, _)| k == &k.to_lowercase()));
    assert_eq!(got[2].json(), json!({"n": 2}));
}
