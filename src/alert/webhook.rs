//! Webhooks: `POST` of the payload (or a Slack message), signed with HMAC-SHA256 over the exact body.

use super::payload::AlertPayload;
use super::{render, ChannelSetupError, DeliveryError};
use crate::config::{WebhookChannel, WebhookFormat};
use crate::secret::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

/// A receiver that has not answered by then has failed this attempt.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// A ready-to-use webhook channel.
pub struct WebhookSender {
    http: reqwest::Client,
    /// A secret (Slack's URLs are credentials): never logged; transport errors name only their cause.
    url: Secret,
    secret: Option<Secret>,
    format: WebhookFormat,
}

/// `sha256=HEX` of the body under `key`: what `X-Auditd-Signature` carries.
pub fn signature(key: &Secret, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl WebhookSender {
    pub fn new(name: &str, cfg: &WebhookChannel) -> Result<WebhookSender, ChannelSetupError> {
        let secret = match &cfg.secret {
            Some(s) => Some(s.resolve().map_err(|message| ChannelSetupError {
                channel: name.to_string(),
                message,
            })?),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .user_agent(concat!("zoho-auditd/", env!("CARGO_PKG_VERSION")))
            // A redirect would re-send the alert somewhere nobody configured.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the TLS backend is compiled in");
        Ok(WebhookSender {
            http,
            url: cfg.url.resolve().map_err(|message| ChannelSetupError {
                channel: name.to_string(),
                message,
            })?,
            secret,
            format: cfg.format,
        })
    }

    /// Sends `stored_json` (the alert exactly as stored) or its Slack rendering.
    pub async fn send(&self, alert: &AlertPayload, stored_json: &str) -> Result<(), DeliveryError> {
        let body: Vec<u8> = match self.format {
            WebhookFormat::Json => stored_json.as_bytes().to_vec(),
            WebhookFormat::Slack => render::slack(alert).to_string().into_bytes(),
        };
        let mut req = self
            .http
            .post(self.url.expose())
            .header("Content-Type", "application/json")
            .header("X-Auditd-Event", alert.kind.as_str())
            .header("X-Auditd-Delivery", &alert.event_id);
        if let Some(key) = &self.secret {
            req = req.header("X-Auditd-Signature", signature(key, &body));
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| DeliveryError::failed(crate::zoho::http::describe_transport("webhook POST", &e)))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else if status.as_u16() == 410 {
            Err(DeliveryError::Gone("webhook answered HTTP 410 Gone".into()))
        } else {
            let retry_after = crate::zoho::http::retry_after(&resp);
            Err(DeliveryError::Failed {
                message: format!("webhook answered HTTP {}", status.as_u16()),
                retry_after,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex_of_the_body() {
        // RFC 4231 test case 2.
        let sig = signature(&Secret::new("Jefe"), b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
