//! The source catalog: the one table of every piece of mail configuration auditd knows how to read.
//!
//! Everything that varies per source (its id, its product, the name of the list inside its snapshot
//! document) lives here, so that config validation, fetching, canonicalisation and reporting agree.

use std::fmt;
use std::str::FromStr;

/// A Zoho product whose mail settings auditd reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Product {
    Crm,
    Desk,
}

impl Product {
    /// Every product, in the order sources are audited.
    pub const ALL: [Product; 2] = [Product::Crm, Product::Desk];

    /// The name used in config files (`products = ["crm", "desk"]`).
    pub fn as_str(self) -> &'static str {
        match self {
            Product::Crm => "crm",
            Product::Desk => "desk",
        }
    }
}

impl FromStr for Product {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Product::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown product `{s}` (expected \"crm\" or \"desk\")"))
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One named piece of mail configuration of one org (SPEC §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceId {
    CrmMailConfig,
    CrmFromAddresses,
    CrmCompose,
    DeskMailConfigurations,
    DeskReplyAddresses,
    DeskSupportEmailDomain,
}

/// One row of the catalog.
struct SourceEntry {
    id: SourceId,
    name: &'static str,
    product: Product,
}

const CATALOG: [SourceEntry; 6] = [
    SourceEntry {
        id: SourceId::CrmMailConfig,
        name: "crm.mail_config",
        product: Product::Crm,
    },
    SourceEntry {
        id: SourceId::CrmFromAddresses,
        name: "crm.from_addresses",
        product: Product::Crm,
    },
    SourceEntry {
        id: SourceId::CrmCompose,
        name: "crm.compose",
        product: Product::Crm,
    },
    SourceEntry {
        id: SourceId::DeskMailConfigurations,
        name: "desk.mail_configurations",
        product: Product::Desk,
    },
    SourceEntry {
        id: SourceId::DeskReplyAddresses,
        name: "desk.reply_addresses",
        product: Product::Desk,
    },
    SourceEntry {
        id: SourceId::DeskSupportEmailDomain,
        name: "desk.support_email_domain",
        product: Product::Desk,
    },
];

impl SourceId {
    /// Every source, in catalog order.
    pub fn all() -> impl Iterator<Item = SourceId> {
        CATALOG.iter().map(|e| e.id)
    }

    fn entry(self) -> &'static SourceEntry {
        CATALOG
            .iter()
            .find(|e| e.id == self)
            .expect("every SourceId has a catalog row")
    }

    /// The id used in config, the database, summaries and alerts (`desk.reply_addresses`).
    pub fn as_str(self) -> &'static str {
        self.entry().name
    }

    /// The product that serves this source.
    pub fn product(self) -> Product {
        self.entry().product
    }

    /// Desk answers `"true"`/`"false"` and `"465"` where it means booleans and numbers; such type
    /// flapping is normalised away for Desk sources only (SPEC §5).
    pub fn normalises_scalar_types(self) -> bool {
        self.product() == Product::Desk
    }
}

impl FromStr for SourceId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CATALOG.iter().find(|e| e.name == s).map(|e| e.id).ok_or_else(|| {
            let known: Vec<&str> = CATALOG.iter().map(|e| e.name).collect();
            format!("unknown source `{s}` (known: {})", known.join(", "))
        })
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_round_trips_through_its_name() {
        for id in SourceId::all() {
            assert_eq!(id.as_str().parse::<SourceId>(), Ok(id));
            assert!(id.as_str().starts_with(id.product().as_str()));
        }
        assert_eq!(SourceId::all().count(), 6);
    }

    #[test]
    fn unknown_source_lists_the_known_ones() {
        let err = "desk.bogus".parse::<SourceId>().unwrap_err();
        assert!(err.contains("desk.reply_addresses"), "{err}");
    }
}
