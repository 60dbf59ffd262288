//! Zoho: OAuth, one HTTP client, and the CRM and Desk sources (the data-centre table is `crate::dc`).

pub mod crm;
pub mod desk;
pub mod error;
pub mod http;
pub mod oauth;
pub mod session;

pub use error::ZohoError;
pub use session::{Session, SessionError};

use crate::catalog::{Product, SourceId};
use serde_json::Value;

/// Fetches one source's snapshot document (SPEC §4): every request of it, or an error.
pub async fn fetch_source(session: &Session<'_>, source: SourceId) -> Result<Value, SessionError> {
    match source.product() {
        Product::Crm => crm::fetch(session, source).await,
        Product::Desk => desk::fetch(session, source).await,
    }
}
