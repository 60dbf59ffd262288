//! Zoho Desk mail sources. Lists are paged with `from`/`limit`; every page must arrive, or the
//! source fails as a whole.

use super::crm::array_member;
use super::session::{Session, SessionError, Target};
use super::ZohoError;
use crate::catalog::SourceId;
use serde_json::{json, Value};

/// Desk's largest page for most lists.
pub const PAGE_LIMIT: usize = 100;
/// Departments may be read 200 at a time.
pub const DEPARTMENT_PAGE_LIMIT: usize = 200;
/// A list longer than this is a runaway pager, not a mail configuration.
const MAX_PAGES: usize = 1000;

pub async fn fetch(s: &Session<'_>, source: SourceId) -> Result<Value, SessionError> {
    match source {
        SourceId::DeskMailConfigurations => {
            let list = paged(s, "/api/v1/mailConfigurations", Vec::new(), PAGE_LIMIT).await?;
            Ok(json!({ "mail_configurations": list }))
        }
        SourceId::DeskReplyAddresses => {
            let departments = paged(s, "/api/v1/departments", Vec::new(), DEPARTMENT_PAGE_LIMIT).await?;
            let mut addresses = Vec::new();
            for dept in &departments {
                let id = match dept.get("id") {
                    Some(Value::String(id)) => id.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => {
                        return Err(ZohoError::Malformed {
                            what: "GET /api/v1/departments".into(),
                            detail: "a department without an id".into(),
                        }
                        .into())
                    }
                };
                let query = vec![("departmentId", id)];
                addresses.extend(paged(s, "/api/v1/mailReplyAddress", query, PAGE_LIMIT).await?);
            }
            Ok(json!({ "reply_addresses": addresses }))
        }
        SourceId::DeskSupportEmailDomain => {
            let path = "/api/v1/supportEmailDomain";
            match s.get(Target::Desk(path), Vec::new()).await? {
                Some(body @ Value::Object(_)) => Ok(body),
                Some(_) => Err(ZohoError::Malformed {
                    what: format!("GET {path}"),
                    detail: "not a JSON object".into(),
                }
                .into()),
                None => Ok(json!({})),
            }
        }
        other => unreachable!("{other} is not a Desk source"),
    }
}

/// Every item of a paged list. Only an empty page or HTTP 204 ends it (zoho-api.md): a short page
/// may be a server-side cap, and stopping there would store a partial list as the whole.
async fn paged(
    s: &Session<'_>,
    path: &str,
    query: Vec<(&str, String)>,
    limit: usize,
) -> Result<Vec<Value>, SessionError> {
    let mut items = Vec::new();
    for page in 0..MAX_PAGES {
        let mut q = query.clone();
        q.push(("from", (page * limit).to_string()));
        q.push(("limit", limit.to_string()));
        let what = format!("GET {path} (page {})", page + 1);
        let Some(body) = s.get(Target::Desk(path), q).await? else {
            return Ok(items);
        };
        let batch = array_member(&body, "data", &what)?;
        if batch.is_empty() {
            return Ok(items);
        }
        items.extend(batch);
    }
    Err(ZohoError::Malformed {
        what: format!("GET {path}"),
        detail: format!("more than {MAX_PAGES} pages"),
    }
    .into())
}
