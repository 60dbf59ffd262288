//! Alerts: the payload every channel renders from, the durable outbox, and the email and webhook
//! senders (SPEC §6).

pub mod email;
pub mod outbox;
pub mod payload;
pub mod render;
pub mod webhook;

pub use outbox::{deliver_due, DeliveryMode, DeliveryReport, Dispatcher};
pub use payload::{AlertKind, AlertPayload, SourceDrift};

/// Why one delivery attempt failed. Never contains a password or key.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{message}")]
    Failed {
        message: String,
        /// The receiver's `Retry-After`, honoured when it is later than our own backoff.
        retry_after: Option<std::time::Duration>,
    },
    /// The receiver said never to try again (webhook 410).
    #[error("{0}")]
    Gone(String),
}

impl DeliveryError {
    /// A failure worth retrying on the usual schedule.
    pub fn failed(message: impl Into<String>) -> DeliveryError {
        DeliveryError::Failed {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// A channel that cannot be set up (bad CA file, missing secret).
#[derive(Debug, thiserror::Error)]
#[error("alert channel `{channel}`: {message}")]
pub struct ChannelSetupError {
    pub channel: String,
    pub message: String,
}
