//! `auditd demo`: the whole job against the bundled Zoho simulator, no Zoho account needed.
//! A baseline pass, a simulated SMTP host swap, a second pass that finds the drift and delivers the
//! alert to a local webhook receiver.

use super::once::human_summary;
use super::report;
use crate::alert::{render, AlertPayload, DeliveryMode};
use crate::audit::{run_pass, Context};
use crate::config::Config;
use crate::exit::ExitCode;
use crate::sim::{OrgData, Simulator, WebhookSink, CLIENT_ID, CLIENT_SECRET};
use crate::store::Store;
use anyhow::Context as _;
use std::sync::Arc;

pub async fn run() -> ExitCode {
    match demo().await {
        Ok(true) => ExitCode::Clean,
        Ok(false) => ExitCode::Fatal,
        Err(e) => report(&e, ExitCode::Fatal),
    }
}

async fn demo() -> anyhow::Result<bool> {
    let dir = std::env::temp_dir().join(format!("auditd-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = demo_in(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn demo_in(dir: &std::path::Path) -> anyhow::Result<bool> {
    let sim = Simulator::start();
    let hook = WebhookSink::start();
    let acme = sim.add_org("acme-us", OrgData::sample(1));
    let globex = sim.add_org("globex-eu", OrgData::sample(2));
    let url = sim.url();
    let config_text = format!(
        r#"[daemon]
database = "{db}"
[zoho]
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
[[orgs]]
name = "acme-us"
dc = "us"
refresh_token = "{acme}"
accounts_url = "{url}"
api_domain = "{url}"
desk_url = "{url}"
[[orgs]]
name = "globex-eu"
dc = "eu"
refresh_token = "{globex}"
accounts_url = "{url}"
api_domain = "{url}"
desk_url = "{url}"
[alerts.hook]
kind = "webhook"
url = "{hook}"
secret = "demo-signing-key"
"#,
        db = dir.join("auditd.db").display(),
        hook = hook.url(),
    );
    let config_path = dir.join("auditd.toml");
    write_private(&config_path, &config_text)?;
    let config = Arc::new(Config::load(&config_path)?);
    let store = Store::open(&config.daemon.database)?;
    let ctx = Context::new(config.clone(), store, true).await?;
    let orgs: Vec<String> = config.orgs.iter().map(|o| o.name.clone()).collect();

    println!("auditd demo: a Zoho simulator at {url} serves two orgs, acme-us and globex-eu.\n");
    println!("== pass 1: the first audit records a baseline ==");
    let first = run_pass(&ctx, &orgs, DeliveryMode::AllPending).await?;
    print!("{}", human_summary(&first));

    println!("\n== someone swaps the SMTP host of acme-us's first reply address ==");
    sim.update("acme-us", |d| {
        if let Some(addr) = d.reply_addresses.first_mut() {
            println!(
                "   {} : smtp.zoho.com -> mail.attacker.example",
                addr["address"].as_str().unwrap_or("?")
            );
            addr["smtpDetails"]["host"] = "mail.attacker.example".into();
        }
    });

    println!("\n== pass 2: the drift is found, stored and alerted ==");
    let second = run_pass(&ctx, &orgs, DeliveryMode::AllPending).await?;
    print!("{}", human_summary(&second));

    let received = hook.received();
    println!("\n== the webhook receiver got {} request(s) ==", received.len());
    let mut alerted = false;
    for r in &received {
        println!("X-Auditd-Event: {}", r.header("x-auditd-event").unwrap_or("-"));
        println!("X-Auditd-Signature: {}", r.header("x-auditd-signature").unwrap_or("-"));
        if let Ok(alert) = serde_json::from_slice::<AlertPayload>(&r.body) {
            println!("\n{}\n", alert.subject());
            print!("{}", render::text(&alert));
            alerted |= alert.change_count() > 0;
        }
    }
    let ok = first.exit_code == ExitCode::Clean && second.exit_code == ExitCode::Drift && alerted;
    println!(
        "\n{}",
        if ok {
            "demo finished: baseline exit 0, drift exit 2, one alert delivered."
        } else {
            "demo did NOT behave as expected (see above)."
        }
    );
    Ok(ok)
}

/// The demo config holds inline secrets: keep it private like a real one should be.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    crate::store::private_file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?
        .write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
