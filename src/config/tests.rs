use super::*;
use std::io::Write;

fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("auditd.toml");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    path
}

fn load(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    Config::load(&write(&dir, text))
}

const MINIMAL: &str = r#"
[zoho]
client_id = "1000.X"
client_secret = "s"
[[orgs]]
name = "a"
dc = "eu"
"#;

fn problems(text: &str) -> Vec<String> {
    match load(text) {
        Err(ConfigError::Invalid { problems, .. }) => problems.iter().map(|p| p.to_string()).collect(),
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn the_shipped_example_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/auditd.example.toml");
    let config = Config::load(&path).unwrap();
    assert_eq!(config.orgs.len(), 2);
    assert_eq!(config.orgs[0].schedule.as_deref(), Some("0 0 * * * *"));
    assert_eq!(
        config.orgs[1]
            .sources
            .iter()
            .filter(|s| s.product() == Product::Crm)
            .count(),
        0
    );
    assert_eq!(config.channels.len(), 2);
}

#[test]
fn defaults_fill_a_minimal_file() {
    let c = load(MINIMAL).unwrap();
    let org = &c.orgs[0];
    assert_eq!(org.sources.len(), 6);
    assert_eq!(org.accounts_url, "https://accounts.zoho.eu");
    assert_eq!(org.desk_url.as_deref(), Some("https://desk.zoho.eu"));
    assert_eq!(org.crm_api_version, "v8");
    assert_eq!(c.daemon.schedule, "0 */15 * * * *");
    assert_eq!(c.daemon.concurrency, 8);
}

#[test]
fn unknown_keys_are_errors_that_name_the_file_and_key() {
    let err = load(&format!("{MINIMAL}\nbogus = 1\n")).unwrap_err().to_string();
    assert!(err.contains("auditd.toml") && err.contains("bogus"), "{err}");
    let err = load(&MINIMAL.replace("dc = \"eu\"", "dc = \"eu\"\nsmtp = 1"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("smtp"), "{err}");
}

#[test]
fn every_problem_is_listed_with_its_key() {
    let p = problems(
        r#"
[daemon]
schedule = "every minute"
jitter = "soon"
[zoho]
client_id = "1000.X"
client_secret = "s"
[[orgs]]
name = "Bad Name"
dc = "us"
[[orgs]]
name = "b"
dc = "mars"
alerts = ["nope"]
ignore = ["displayName"]
api_domain = "http://zoho.example.com"
"#,
    );
    let all = p.join("\n");
    for needle in [
        "daemon.schedule",
        "daemon.jitter",
        "orgs[Bad Name].name",
        "orgs[b].dc: unknown data centre `mars`",
        "orgs[b].alerts: names channel `nope`",
        "orgs[b].ignore",
        "orgs[b].api_domain",
    ] {
        assert!(all.contains(needle), "missing {needle} in:\n{all}");
    }
}

#[test]
fn five_field_cron_is_taken_as_second_zero() {
    assert_eq!(normalise_schedule("*/15 * * * *").unwrap(), "0 */15 * * * *");
    assert_eq!(normalise_schedule("*/5 * * * * *").unwrap(), "*/5 * * * * *");
    assert!(normalise_schedule("* * *").unwrap_err().contains("3 fields"));
    assert!(normalise_schedule("0 99 * * * *").is_err());
}

#[test]
fn duplicate_org_names_and_secret_forms_are_rejected() {
    let twice = format!("{MINIMAL}\n[[orgs]]\nname = \"a\"\ndc = \"us\"\n");
    assert!(problems(&twice).join("\n").contains("used by more than one org"));
    let both = MINIMAL.replace(
        "client_secret = \"s\"",
        "client_secret = \"s\"\nclient_secret_env = \"X\"",
    );
    assert!(problems(&both).join("\n").contains("give only one of"));
}

#[test]
fn plain_smtp_only_to_loopback_and_webhooks_need_https() {
    let text = format!(
        "{MINIMAL}\n[alerts.m]\nkind = \"email\"\nsmtp_host = \"smtp.example.com\"\ntls = \"none\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\n[alerts.h]\nkind = \"webhook\"\nurl = \"http://hooks.example.com/x\"\nsmtp_port = 25\n"
    );
    let all = problems(&text).join("\n");
    assert!(all.contains("alerts.m.tls"), "{all}");
    assert!(all.contains("alerts.h.url"), "{all}");
    assert!(
        all.contains("alerts.h.smtp_port: is not a key of a `webhook` channel"),
        "{all}"
    );
    let ok = text
        .replace("smtp.example.com", "127.0.0.1")
        .replace("http://hooks", "https://hooks")
        .replace("smtp_port = 25\n", "");
    load(&ok).unwrap();
}

#[test]
fn environment_overrides_use_the_double_underscore_prefix() {
    // A unique key so parallel tests do not see it.
    std::env::set_var("AUDITD__DAEMON__SHUTDOWN_GRACE", "7s");
    let c = load(MINIMAL);
    std::env::remove_var("AUDITD__DAEMON__SHUTDOWN_GRACE");
    assert_eq!(c.unwrap().daemon.shutdown_grace, Duration::from_secs(7));
}

#[test]
fn a_shared_zoho_secret_problem_is_reported_once_under_its_own_key() {
    let text = r#"
[zoho]
client_id = "1000.X"
client_secret_file = "/nonexistent/auditd-test-secret"
[[orgs]]
name = "a"
dc = "eu"
[[orgs]]
name = "b"
dc = "us"
"#;
    let err = load(text).unwrap().check_secrets().unwrap_err();
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("{err}")
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "zoho.client_secret");
}

#[test]
fn a_relative_secret_file_is_read_from_the_credentials_directory() {
    // The only test that sets CREDENTIALS_DIRECTORY; the others use absolute paths or none.
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("zoho-client-secret"), "from-systemd\n").unwrap();
    std::env::set_var("CREDENTIALS_DIRECTORY", creds.path());
    let config = load(&MINIMAL.replace("client_secret = \"s\"", "client_secret_file = \"zoho-client-secret\""));
    std::env::remove_var("CREDENTIALS_DIRECTORY");
    let config = config.unwrap();
    assert_eq!(
        config.orgs[0].client.client_secret,
        SecretRef::File(creds.path().join("zoho-client-secret"))
    );
    assert_eq!(
        config.orgs[0].client.client_secret.resolve().unwrap().expose(),
        "from-systemd"
    );
}

#[test]
fn secrets_resolve_from_env_and_files_without_printing_values() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cs"), "from-file\n").unwrap();
    let file = SecretRef::File(dir.path().join("cs"));
    assert_eq!(file.resolve().unwrap().expose(), "from-file");
    let missing = SecretRef::Env("AUDITD_TEST_SURELY_UNSET_VAR".into());
    assert!(missing.resolve().unwrap_err().contains("AUDITD_TEST_SURELY_UNSET_VAR"));
    assert!(!SecretRef::Inline(crate::secret::Secret::new("v4lue"))
        .describe()
        .contains("v4lue"));
}

#[cfg(unix)]
#[test]
fn inline_secret_in_a_world_readable_file_warns() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, MINIMAL);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(Config::load(&path).unwrap().warnings.len(), 1);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Config::load(&path).unwrap().warnings.is_empty());
}

#[test]
fn a_webhook_url_is_a_secret_and_messages_never_show_its_path() {
    let slack = "http://hooks.slack.com/services/T000/B000/XXXXSECRET";
    let text = format!("{MINIMAL}\n[alerts.s]\nkind = \"webhook\"\nurl = \"{slack}\"\nformat = \"slack\"\n");
    let all = problems(&text).join("\n");
    assert!(
        all.contains("alerts.s.url") && all.contains("http://hooks.slack.com/…"),
        "{all}"
    );
    assert!(!all.contains("XXXXSECRET"), "{all}");

    std::env::set_var("AUDITD_TEST_HOOK_URL_BAD", slack);
    let from_env = format!("{MINIMAL}\n[alerts.s]\nkind = \"webhook\"\nurl_env = \"AUDITD_TEST_HOOK_URL_BAD\"\n");
    let err = load(&from_env).unwrap().check_secrets().unwrap_err().to_string();
    assert!(
        err.contains("alerts.s.url") && err.contains("must use https") && !err.contains("XXXXSECRET"),
        "{err}"
    );
    std::env::set_var("AUDITD_TEST_HOOK_URL_GOOD", slack.replace("http:", "https:"));
    let good = from_env.replace("_BAD", "_GOOD");
    load(&good).unwrap().check_secrets().unwrap();
}
