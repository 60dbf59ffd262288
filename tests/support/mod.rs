//! The integration-test builder: a temporary directory, the Zoho simulator, optional webhook and SMTP
//! receivers, a config pointing at them, and the real `auditd` binary run as a child process.
//!
//! ```ignore
//! let t = Test::new().org("acme").webhook();
//! t.once(&[]).code(0);
//! ```

mod prometheus;
mod smtp;

pub use prometheus::{http_get, scrape, Series};
pub use smtp::SmtpSink;
pub use zoho_auditd::sim::{Fault, FaultResponse, OrgData, Simulator, WebhookSink};

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zoho_auditd::sim::ReceivedWebhook;

/// Secret values the tests hand to auditd through the environment; none may ever show up in output.
pub const CLIENT_SECRET_ENV: &str = "AUDITD_TEST_CLIENT_SECRET";
pub const WEBHOOK_SECRET: &str = "whsec-test-9f8e7d6c5b4a";
pub const SMTP_USER: &str = "auditd@example.com";
pub const SMTP_PASSWORD: &str = "smtp-pass-1a2b3c4d5e";

/// One org in the test config.
struct TestOrg {
    name: String,
    refresh_token: String,
    extra: String,
    /// Whether the config pins `api_domain` to the simulator (else the token response decides).
    pin_api_domain: bool,
}

/// A test scenario.
pub struct Test {
    pub dir: tempfile::TempDir,
    pub sim: Simulator,
    pub hook: Option<WebhookSink>,
    pub smtp: Option<SmtpSink>,
    hook_url_override: Option<String>,
    /// `format` of the `hook` channel: `json` or `slack`.
    hook_format: &'static str,
    orgs: Vec<TestOrg>,
    /// Extra TOML appended to the config (more channels, [daemon] keys, ...).
    extra: String,
    daemon_extra: String,
}

impl Default for Test {
    fn default() -> Self {
        Self::new()
    }
}

impl Test {
    pub fn new() -> Test {
        Test {
            dir: tempfile::tempdir().expect("temp dir"),
            sim: Simulator::start(),
            hook: None,
            smtp: None,
            hook_url_override: None,
            hook_format: "json",
            orgs: Vec::new(),
            extra: String::new(),
            daemon_extra: String::new(),
        }
    }

    /// An org served by the simulator with sample data (ids differ per org).
    pub fn org(self, name: &str) -> Test {
        let seed = self.orgs.len() as u32 + 1;
        self.org_with(name, OrgData::sample(seed), "")
    }

    /// An org with the given data and extra `[[orgs]]` keys.
    pub fn org_with(mut self, name: &str, data: OrgData, extra: &str) -> Test {
        let refresh_token = self.sim.add_org(name, data);
        self.orgs.push(TestOrg {
            name: name.to_string(),
            refresh_token,
            extra: extra.to_string(),
            pin_api_domain: true,
        });
        self
    }

    /// An org whose CRM API domain comes from the token response (`OrgData::api_domain`), not the config.
    pub fn org_trusting_token_api_domain(mut self, name: &str, data: OrgData) -> Test {
        self = self.org_with(name, data, "");
        self.orgs.last_mut().unwrap().pin_api_domain = false;
        self
    }

    /// A webhook channel `hook`, signed with [`WEBHOOK_SECRET`].
    pub fn webhook(mut self) -> Test {
        self.hook = Some(WebhookSink::start());
        self
    }

    /// A webhook channel `hook` in Slack format.
    pub fn slack_webhook(mut self) -> Test {
        self.hook_format = "slack";
        self.webhook()
    }

    /// Points the `hook` channel somewhere else (a black hole, a dead port) until called with `None`.
    pub fn retarget_webhook(&mut self, url: Option<String>) {
        self.hook_url_override = url;
    }

    /// An email channel `mail` to a real SMTP server (aiosmtpd) with STARTTLS and AUTH, trusted via `ca_file`.
    pub fn email(self) -> Test {
        self.email_with_tls("starttls")
    }

    /// An email channel whose server speaks `tls_mode` (`starttls`, `tls` or `none`).
    pub fn email_with_tls(mut self, tls_mode: &str) -> Test {
        self.smtp = Some(SmtpSink::start(&self.dir.path().join("smtp"), tls_mode));
        self
    }

    /// Stops the SMTP server (an outage); [`Test::restart_smtp`] brings a new one up.
    pub fn stop_smtp(&mut self) {
        self.smtp.as_mut().expect("test has an SMTP server").stop();
    }

    /// A fresh SMTP server (new port and folder, same channel name), as after an outage.
    pub fn restart_smtp(&mut self) {
        let mode = self
            .smtp
            .as_ref()
            .map(|s| s.tls_mode.clone())
            .unwrap_or_else(|| "starttls".into());
        let n = std::fs::read_dir(self.dir.path()).map(|d| d.count()).unwrap_or(0);
        self.smtp = Some(SmtpSink::start(&self.dir.path().join(format!("smtp-{n}")), &mode));
    }

    fn channels_text(&self) -> String {
        let mut t = String::new();
        if let Some(hook) = &self.hook {
            let url = self.hook_url_override.clone().unwrap_or_else(|| hook.url());
            t.push_str(&format!(
                "\n[alerts.hook]\nkind = \"webhook\"\nurl = \"{url}\"\nsecret_env = \"AUDITD_TEST_WEBHOOK_SECRET\"\nformat = \"{}\"\n",
                self.hook_format
            ));
        }
        if let Some(smtp) = &self.smtp {
            t.push_str(&format!(
                "\n[alerts.mail]\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"{}\"\nusername = \"{SMTP_USER}\"\npassword_env = \"AUDITD_TEST_SMTP_PASSWORD\"\nfrom = \"auditd <auditd@example.com>\"\nto = [\"ops@example.com\"]\n",
                smtp.port, smtp.tls_mode
            ));
            if let Some(ca) = &smtp.ca_file {
                t.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
            }
        }
        t
    }

    /// Changes the SMTP host of `org`'s first reply address in the simulator (the classic drift).
    pub fn reply_host(&self, org: &str, host: &str) {
        self.sim
            .update(org, |d| d.reply_addresses[0]["smtpDetails"]["host"] = json!(host));
    }

    /// Extra `[daemon]` keys.
    pub fn daemon(mut self, toml: &str) -> Test {
        self.daemon_extra.push_str(toml);
        self.daemon_extra.push('\n');
        self
    }

    /// Any extra TOML at the end of the config.
    pub fn raw(mut self, toml: &str) -> Test {
        self.extra.push_str(toml);
        self
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("auditd.db")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("auditd.toml")
    }

    /// Gives `org` a different refresh token in the config from now on.
    pub fn set_refresh_token(&mut self, org: &str, token: &str) {
        self.orgs
            .iter_mut()
            .find(|o| o.name == org)
            .expect("known org")
            .refresh_token = token.to_string();
    }

    fn env_var_for(org: &str) -> String {
        format!("AUDITD_TEST_REFRESH_{}", org.to_uppercase().replace('-', "_"))
    }

    pub fn config_text(&self) -> String {
        let url = self.sim.url();
        let mut t = format!(
            "[daemon]\ndatabase = \"{}\"\njitter = \"0s\"\n{}\n[zoho]\nclient_id = \"{}\"\nclient_secret_env = \"{CLIENT_SECRET_ENV}\"\n",
            self.db_path().display(),
            if self.daemon_extra.contains("http_timeout") {
                self.daemon_extra.clone()
            } else {
                format!("http_timeout = \"5s\"\n{}", self.daemon_extra)
            },
            zoho_auditd::sim::CLIENT_ID
        );
        for o in &self.orgs {
            t.push_str(&format!(
                "\n[[orgs]]\nname = \"{}\"\ndc = \"us\"\nrefresh_token_env = \"{}\"\naccounts_url = \"{url}\"\n{}desk_url = \"{url}\"\n{}\n",
                o.name,
                Self::env_var_for(&o.name),
                if o.pin_api_domain { format!("api_domain = \"{url}\"\n") } else { String::new() },
                o.extra
            ));
        }
        t.push_str(&self.channels_text());
        t.push_str(&self.extra);
        t
    }

    /// Writes the config (mode 0600) and returns its path.
    pub fn write_config(&self) -> PathBuf {
        let path = self.config_path();
        std::fs::write(&path, self.config_text()).expect("write config");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        path
    }

    /// The `auditd` command with the config and every secret in its environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let config = self.write_config();
        self.command_with_config(&config, args)
    }

    /// Writes a copy of the config whose database is `db` (a link, a mistyped path, ...).
    pub fn config_with_database(&self, db: &Path) -> PathBuf {
        let text = self.config_text().replace(
            &format!("database = \"{}\"", self.db_path().display()),
            &format!("database = \"{}\"", db.display()),
        );
        let path = self.dir.path().join(format!("with-db-{}.toml", ulid_like()));
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// `auditd ARGS` with another config file (secrets in the environment as usual).
    pub fn command_with_config(&self, config: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_auditd"));
        cmd.arg("--config").arg(config).args(args);
        cmd.env_remove("AUDITD_CONFIG").env("AUDITD_LOG", "info");
        cmd.env(CLIENT_SECRET_ENV, zoho_auditd::sim::CLIENT_SECRET);
        cmd.env("AUDITD_TEST_WEBHOOK_SECRET", WEBHOOK_SECRET);
        cmd.env("AUDITD_TEST_SMTP_PASSWORD", SMTP_PASSWORD);
        for o in &self.orgs {
            cmd.env(Self::env_var_for(&o.name), &o.refresh_token);
        }
        cmd
    }

    /// Runs `auditd ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::of(self.command(args))
    }

    /// Runs `auditd ARGS` with another config file to completion.
    pub fn run_with_config(&self, config: &Path, args: &[&str]) -> Run {
        Run::of(self.command_with_config(config, args))
    }

    /// Starts `auditd ARGS` in the background with its output discarded (to kill or outwait it).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start auditd")
    }

    /// `auditd --once --json ARGS`.
    pub fn once(&self, args: &[&str]) -> Run {
        let mut all = vec!["--once", "--json"];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// Every secret value this test handed out, for leak checks.
    pub fn secrets(&self) -> Vec<String> {
        let mut s = vec![
            zoho_auditd::sim::CLIENT_SECRET.to_string(),
            WEBHOOK_SECRET.to_string(),
            SMTP_PASSWORD.to_string(),
        ];
        s.extend(self.orgs.iter().map(|o| o.refresh_token.clone()));
        s
    }

    /// The database file and its WAL, as bytes.
    pub fn database_bytes(&self) -> Vec<u8> {
        let mut bytes = std::fs::read(self.db_path()).unwrap_or_default();
        let mut wal = self.db_path().into_os_string();
        wal.push("-wal");
        bytes.extend(std::fs::read(PathBuf::from(wal)).unwrap_or_default());
        bytes
    }

    /// Webhook requests received so far.
    pub fn webhooks(&self) -> Vec<ReceivedWebhook> {
        self.hook.as_ref().expect("test has a webhook").received()
    }

    /// Emails received so far.
    pub fn emails(&self) -> Vec<Vec<u8>> {
        self.smtp.as_ref().expect("test has an SMTP server").messages()
    }

    /// Opens the database read-only for assertions.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(self.db_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db")
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).expect(sql)
    }
}

/// A finished run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Runs `cmd` to completion.
    pub fn of(mut cmd: Command) -> Run {
        let out = cmd.output().expect("run auditd");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Run {
        assert_eq!(
            self.code, expected,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n--- stderr\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The summary entry of `org`'s `source`.
    pub fn source(&self, org: &str, source: &str) -> Value {
        let j = self.json();
        let o = j["orgs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["org"] == org)
            .unwrap_or_else(|| panic!("no org {org}"))
            .clone();
        o["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["source"] == source)
            .unwrap_or_else(|| panic!("no source {source}"))
            .clone()
    }

    pub fn org(&self, org: &str) -> Value {
        let j = self.json();
        j["orgs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["org"] == org)
            .unwrap_or_else(|| panic!("no org {org}"))
            .clone()
    }

    #[track_caller]
    pub fn stderr_contains(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }
}

/// A name no other call in this process gets.
fn ulid_like() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed).to_string()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Verifies `X-Auditd-Signature` the way a receiver would.
pub fn signature_ok(body: &[u8], header: &str) -> bool {
    use hmac::{Hmac, Mac};
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else { return false };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}
