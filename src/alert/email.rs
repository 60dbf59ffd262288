//! Email through lettre: STARTTLS, implicit TLS, or plain to loopback; AUTH when a username is set.

use super::payload::AlertPayload;
use super::{render, ChannelSetupError, DeliveryError};
use crate::config::{EmailChannel, SmtpTls};
use lettre::message::{header, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// One SMTP conversation may take this long before the attempt counts as failed.
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

/// A ready-to-use email channel.
pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

/// `Auto-Submitted: auto-generated` (RFC 3834): keeps vacation responders from answering.
#[derive(Clone)]
struct AutoSubmitted;

impl header::Header for AutoSubmitted {
    fn name() -> header::HeaderName {
        header::HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }
    fn display(&self) -> header::HeaderValue {
        header::HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}

impl EmailSender {
    pub fn new(name: &str, cfg: &EmailChannel) -> Result<EmailSender, ChannelSetupError> {
        let fail = |message: String| ChannelSetupError {
            channel: name.to_string(),
            message,
        };
        let tls_params = || -> Result<TlsParameters, ChannelSetupError> {
            let mut builder = TlsParameters::builder(cfg.smtp_host.clone());
            if let Some(path) = &cfg.ca_file {
                let pem =
                    std::fs::read(path).map_err(|e| fail(format!("cannot read ca_file {}: {e}", path.display())))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| fail(format!("ca_file {} is not a PEM certificate: {e}", path.display())))?;
                builder = builder.add_root_certificate(cert);
            }
            builder
                .build_rustls()
                .map_err(|e| fail(format!("TLS setup failed: {e}")))
        };
        let tls = match cfg.tls {
            SmtpTls::StartTls => Tls::Required(tls_params()?),
            SmtpTls::Tls => Tls::Wrapper(tls_params()?),
            SmtpTls::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.smtp_host.clone())
            .port(cfg.smtp_port)
            .tls(tls)
            .timeout(Some(SMTP_TIMEOUT));
        if let Some(user) = &cfg.username {
            let password = match &cfg.password {
                Some(p) => p.resolve().map_err(fail)?.expose().to_string(),
                None => String::new(),
            };
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        let from = cfg.from.parse().map_err(|e| fail(format!("from: {e}")))?;
        let to = cfg
            .to
            .iter()
            .map(|t| t.parse().map_err(|e| fail(format!("to `{t}`: {e}"))))
            .collect::<Result<_, _>>()?;
        Ok(EmailSender {
            transport: builder.build(),
            from,
            to,
        })
    }

    /// Builds the message: `multipart/alternative` with text and HTML.
    pub fn message(&self, alert: &AlertPayload) -> Result<Message, DeliveryError> {
        let domain = self.from.email.domain().to_string();
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(alert.subject())
            .message_id(Some(format!("<{}@{}>", alert.event_id, domain)))
            .date_now()
            .header(AutoSubmitted);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(header::ContentType::TEXT_PLAIN)
                            .body(render::text(alert)),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(header::ContentType::TEXT_HTML)
                            .body(render::html(alert)),
                    ),
            )
            .map_err(|e| DeliveryError::failed(format!("cannot build the message: {e}")))
    }

    pub async fn send(&self, alert: &AlertPayload) -> Result<(), DeliveryError> {
        let message = self.message(alert)?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| {
            // lettre's errors name the server and the SMTP reply, never the credentials.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            DeliveryError::failed(format!("SMTP: {text}"))
        })
    }
}
