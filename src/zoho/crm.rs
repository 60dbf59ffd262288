//! Zoho CRM mail sources.

use super::session::{Session, SessionError, Target};
use super::ZohoError;
use crate::catalog::SourceId;
use serde_json::{json, Map, Value};

/// The `type` values of the compose settings, each one request.
pub const COMPOSE_TYPES: [&str; 3] = ["default", "emailin", "mass_mail"];

pub async fn fetch(s: &Session<'_>, source: SourceId) -> Result<Value, SessionError> {
    let v = s.org.crm_api_version.clone();
    match source {
        SourceId::CrmMailConfig => {
            let path = format!("/crm/{v}/settings/mail_config");
            let body = get(s, &path, Vec::new()).await?;
            // Not in Zoho's public API files: the body is opaque, stored as returned.
            Ok(body.unwrap_or_else(|| json!({})))
        }
        SourceId::CrmFromAddresses => {
            let path = format!("/crm/{v}/settings/emails/actions/from_addresses");
            let list = match get(s, &path, Vec::new()).await? {
                None => Vec::new(),
                Some(body) => array_member(&body, "from_addresses", &format!("GET {path}"))?,
            };
            Ok(json!({ "from_addresses": list }))
        }
        SourceId::CrmCompose => {
            let path = format!("/crm/email/{v}/settings/compose");
            // All three types or nothing: a type missing from one pass would read as removed, so an
            // empty answer (204, or an empty `email_compose`) for one of them is an error of the
            // source, never a document without it. (404 and "not in this edition" are classified
            // below, as unavailable.)
            let mut doc = Map::new();
            for kind in COMPOSE_TYPES {
                let what = format!("GET {path}?type={kind}");
                let empty = || ZohoError::Malformed {
                    what: what.clone(),
                    detail: "answered with no compose settings (one of the three types is never left out)".into(),
                };
                let body = get(s, &path, vec![("type", kind.to_string())])
                    .await?
                    .ok_or_else(empty)?;
                let first = array_member(&body, "email_compose", &what)?
                    .into_iter()
                    .next()
                    .ok_or_else(empty)?;
                doc.insert(kind.to_string(), first);
            }
            Ok(Value::Object(doc))
        }
        other => unreachable!("{other} is not a CRM source"),
    }
}

async fn get(s: &Session<'_>, path: &str, query: Vec<(&str, String)>) -> Result<Option<Value>, SessionError> {
    s.get(Target::Crm(path), query).await
}

/// The list under `key`, or a malformed-response error: a body without it must not look like an
/// empty list (which would read as every address removed).
pub fn array_member(body: &Value, key: &str, what: &str) -> Result<Vec<Value>, ZohoError> {
    match body.get(key) {
        Some(Value::Array(items)) => Ok(items.clone()),
        _ => Err(ZohoError::Malformed {
            what: what.to_string(),
            detail: format!("no `{key}` list in the body"),
        }),
    }
}
