//! `auditd connect ORG`: the OAuth authorization-code flow that gives an org its refresh token.
//!
//! Prints the consent URL, takes the redirect on a loopback listener (or a pasted code or redirect
//! URL), exchanges the code at the accounts server the redirect names (only a Zoho one, or the org's
//! configured override), stores the refresh token in the database and clears needs-reconnect.

use super::{load_config, report};
use crate::config::OrgConfig;
use crate::dc::Dc;
use crate::exit::ExitCode;
use crate::secret::Secret;
use crate::snapshot::Redactor;
use crate::store::queries;
use crate::time_util::now_unix;
use crate::zoho::session::{choose_api_domain, fingerprint};
use crate::zoho::{http, oauth};
use anyhow::{anyhow, bail, Context as _};
use rand::Rng;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the listener waits for the browser to come back.
const CONSENT_TIMEOUT: Duration = Duration::from_secs(300);

/// What the redirect (or the pasted text) gave us.
struct Authorization {
    code: Secret,
    /// The accounts server Zoho says the code must be exchanged at.
    accounts_server: Option<String>,
    location: Option<String>,
}

pub async fn run(config_path: &Path, org_name: &str, listen: Option<String>, code: Option<String>) -> ExitCode {
    let config = match load_config(config_path, false) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(org) = config.org(org_name) else {
        return report(
            &anyhow!("no org named `{org_name}` in {}", config.path.display()),
            ExitCode::Usage,
        );
    };
    let client_secret = match org.client.client_secret.resolve() {
        Ok(s) => s,
        Err(m) => return report(&anyhow!("orgs[{org_name}].client_secret: {m}"), ExitCode::Config),
    };
    // `connect` may be the first command run on a new deployment: it creates the database.
    let store = match crate::store::Store::open(&config.daemon.database) {
        Ok(s) => s,
        Err(e) => return report(&anyhow::Error::new(e), ExitCode::Fatal),
    };
    match connect(org, &store, &client_secret, listen, code, config.daemon.http_timeout).await {
        Ok(()) => ExitCode::Clean,
        Err(e) => report(&e, ExitCode::Fatal),
    }
}

async fn connect(
    org: &OrgConfig,
    store: &crate::store::Store,
    client_secret: &Secret,
    listen: Option<String>,
    pasted: Option<String>,
    http_timeout: Duration,
) -> anyhow::Result<()> {
    let state = hex::encode(rand::rng().random::<[u8; 16]>());
    let consent = consent_url(org, &state);
    println!(
        "Open this URL in a browser signed in to the Zoho org `{}` and approve:\n\n{consent}\n",
        org.name
    );
    let auth = match pasted {
        Some(text) => parse_pasted(&text)?,
        None => {
            let addr = match listen {
                Some(a) => a,
                None => listen_addr_of(&org.client.redirect_uri)?,
            };
            println!("Waiting for Zoho's redirect on http://{addr} (Ctrl-C to give up; or rerun with --code)...");
            tokio::time::timeout(
                CONSENT_TIMEOUT,
                receive_redirect(&addr, &org.client.redirect_uri, &state),
            )
            .await
            .map_err(|_| anyhow!("no redirect arrived within {} s", CONSENT_TIMEOUT.as_secs()))??
        }
    };

    let accounts = match &auth.accounts_server {
        None => org.accounts_url.clone(),
        Some(a) => {
            let a = a.trim_end_matches('/').to_string();
            if a != org.accounts_url && !Dc::is_known_accounts_url(&a) {
                bail!("refusing accounts-server `{a}`: not a Zoho accounts server nor this org's accounts_url");
            }
            a
        }
    };
    let client = http::client(http_timeout);
    let grant = oauth::exchange_code(&client, &accounts, &org.client, client_secret, &auth.code)
        .await
        .context("the code exchange failed (codes live about two minutes and work once)")?;
    let refresh = grant.refresh_token.clone().ok_or_else(|| {
        anyhow!("Zoho returned no refresh token; approve again (the consent URL asks for access_type=offline)")
    })?;
    // The refresh token is kept even when the api_domain check below fails: Zoho keeps only 20 per
    // user and client, and throwing one away would waste one.
    let api_domain = choose_api_domain(org, grant.api_domain.as_deref());

    let (name, now) = (org.name.clone(), now_unix());
    let expires_at = now + grant.expires_in.as_secs() as i64;
    let (domain, access) = (api_domain.as_ref().ok().cloned(), grant.access_token.clone());
    store
        .call(move |c| {
            let key = queries::redaction_key(c)?;
            let fp = fingerprint(&Redactor::new(key), &refresh);
            let tx = c.transaction()?;
            queries::store_refresh_token(&tx, &name, &refresh, now)?;
            queries::clear_needs_reconnect(&tx, &name)?;
            // The exchange minted an access token too: keep it, so the next pass needs no refresh.
            if let Some(domain) = domain {
                queries::save_access_token(&tx, &name, &access, expires_at, &fp, Some(&domain), &[now])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await?;
    let api_domain = api_domain.context("the refresh token is stored, but CRM cannot be audited")?;

    let dc = auth.location.as_deref().and_then(|l| l.parse::<Dc>().ok());
    println!(
        "connected {}: data centre {}, API domain {api_domain}; the refresh token is stored in {}",
        org.name,
        dc.map(|d| d.as_str()).unwrap_or(org.dc.as_str()),
        store.path().display()
    );
    if let Some(dc) = dc.filter(|d| *d != org.dc) {
        eprintln!(
            "auditd: warning: Zoho put this org in data centre `{dc}`, the config says `{}`: set dc = \"{dc}\"",
            org.dc
        );
    }
    Ok(())
}

/// The consent URL (zoho-api.md): comma-separated scopes, offline access, forced consent, our `state`.
fn consent_url(org: &OrgConfig, state: &str) -> String {
    let mut url = url::Url::parse(&format!("{}/oauth/v2/auth", org.accounts_url)).expect("accounts_url was validated");
    url.query_pairs_mut()
        .append_pair("client_id", &org.client.client_id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", &org.client.redirect_uri)
        .append_pair("scope", &org.client.scopes.join(","))
        .append_pair("access_type", "offline")
        .append_pair("prompt", "consent")
        .append_pair("state", state);
    url.to_string()
}

/// `host:port` of the redirect URI, where the listener binds by default.
fn listen_addr_of(redirect_uri: &str) -> anyhow::Result<String> {
    let u = url::Url::parse(redirect_uri).context("redirect_uri")?;
    let host = u
        .host_str()
        .ok_or_else(|| anyhow!("redirect_uri `{redirect_uri}` has no host"))?;
    let port = u.port_or_known_default().unwrap_or(80);
    Ok(format!("{host}:{port}"))
}

/// A pasted whole redirect URL, or a bare code.
fn parse_pasted(text: &str) -> anyhow::Result<Authorization> {
    let text = text.trim();
    match url::Url::parse(text) {
        Ok(u) => {
            let get = |k: &str| u.query_pairs().find(|(key, _)| key == k).map(|(_, v)| v.into_owned());
            if let Some(e) = get("error") {
                bail!("Zoho refused the consent: {e}");
            }
            Ok(Authorization {
                code: Secret::new(get("code").ok_or_else(|| anyhow!("the pasted URL has no `code` parameter"))?),
                accounts_server: get("accounts-server"),
                location: get("location"),
            })
        }
        Err(_) => Ok(Authorization {
            code: Secret::new(text),
            accounts_server: None,
            location: None,
        }),
    }
}

/// Serves the loopback redirect once: checks the path and our `state`, answers the browser, returns the code.
async fn receive_redirect(addr: &str, redirect_uri: &str, state: &str) -> anyhow::Result<Authorization> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let expected_path = url::Url::parse(redirect_uri)
        .map(|u| u.path().to_string())
        .unwrap_or_else(|_| "/".into());
    loop {
        let (mut stream, _) = listener.accept().await?;
        let mut buf = vec![0u8; 8192];
        let n = stream.read(&mut buf).await?;
        let head = String::from_utf8_lossy(&buf[..n]);
        let target = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("/")
            .to_string();
        let url = url::Url::parse(&format!("http://localhost{target}"))?;
        if url.path() != expected_path {
            // Browsers ask for /favicon.ico and the like: not ours, keep waiting.
            let _ = stream
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
            continue;
        }
        let get = |k: &str| url.query_pairs().find(|(key, _)| key == k).map(|(_, v)| v.into_owned());
        let (status, body, result) = if get("state").as_deref() != Some(state) {
            (
                "400 Bad Request",
                "state mismatch: this redirect does not belong to the consent auditd started.",
                Err(anyhow!(
                    "state mismatch: the redirect does not belong to the consent this process started"
                )),
            )
        } else if let Some(e) = get("error") {
            (
                "400 Bad Request",
                "Zoho refused the consent.",
                Err(anyhow!("Zoho refused the consent: {e}")),
            )
        } else if let Some(code) = get("code") {
            (
                "200 OK",
                "auditd received the authorization. You can close this tab.",
                Ok(Authorization {
                    code: Secret::new(code),
                    accounts_server: get("accounts-server"),
                    location: get("location"),
                }),
            )
        } else {
            (
                "400 Bad Request",
                "no code in the redirect.",
                Err(anyhow!("the redirect carried no code")),
            )
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(reply.as_bytes()).await;
        return result;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pasted_redirect_url_gives_code_server_and_location() {
        let a = parse_pasted("http://127.0.0.1:8765/callback?state=s&code=1000.abc&location=eu&accounts-server=https%3A%2F%2Faccounts.zoho.eu").unwrap();
        assert_eq!(a.code.expose(), "1000.abc");
        assert_eq!(a.accounts_server.as_deref(), Some("https://accounts.zoho.eu"));
        assert_eq!(a.location.as_deref(), Some("eu"));
        let bare = parse_pasted(" 1000.xyz \n").unwrap();
        assert_eq!((bare.code.expose(), bare.accounts_server), ("1000.xyz", None));
        assert!(parse_pasted("http://x/cb?error=access_denied").is_err());
    }

    #[test]
    fn the_listener_defaults_to_the_redirect_uri() {
        assert_eq!(
            listen_addr_of("http://127.0.0.1:8765/callback").unwrap(),
            "127.0.0.1:8765"
        );
        assert_eq!(listen_addr_of("http://localhost/cb").unwrap(), "localhost:80");
    }
}
