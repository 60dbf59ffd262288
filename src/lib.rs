//! zoho-auditd: watches the mail configuration of Zoho CRM and Zoho Desk orgs, snapshots it in SQLite,
//! and alerts when it drifts.
//!
//! The crate is laid out in floors (see the README's architecture section): `config`, `store` and the
//! pure `catalog`/`secret` types at the bottom; `zoho`, `snapshot` and `alert` above them; `audit` (one
//! pass over the orgs) on top of those; and `cli`, the edge where errors become exit codes.

pub mod alert;
pub mod audit;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dc;
pub mod exit;
pub mod inert;
pub mod metrics;
pub mod pointer;
pub mod secret;
pub mod sim;
pub mod snapshot;
pub mod states;
pub mod store;
pub mod time_util;
pub mod zoho;
