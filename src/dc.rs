//! The data-centre table (`zoho-api.md`): the one place that knows Zoho's hosts.

use std::fmt;
use std::str::FromStr;

/// A Zoho data centre.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dc {
    Us,
    Eu,
    In,
    Au,
    Jp,
    Ca,
    Sa,
    Uk,
    Cn,
}

/// One row of the table.
struct DcEntry {
    dc: Dc,
    name: &'static str,
    accounts: &'static str,
    /// The CRM API domain; sandbox orgs use the same host with `sandbox.` instead of `www.`.
    api_domain: &'static str,
    /// The Desk base URL (the API lives under `/api/v1`); `None` where Zoho documents no Desk.
    desk: Option<&'static str>,
}

const DATA_CENTRES: [DcEntry; 9] = [
    DcEntry {
        dc: Dc::Us,
        name: "us",
        accounts: "https://accounts.zoho.com",
        api_domain: "https://www.zohoapis.com",
        desk: Some("https://desk.zoho.com"),
    },
    DcEntry {
        dc: Dc::Eu,
        name: "eu",
        accounts: "https://accounts.zoho.eu",
        api_domain: "https://www.zohoapis.eu",
        desk: Some("https://desk.zoho.eu"),
    },
    DcEntry {
        dc: Dc::In,
        name: "in",
        accounts: "https://accounts.zoho.in",
        api_domain: "https://www.zohoapis.in",
        desk: Some("https://desk.zoho.in"),
    },
    DcEntry {
        dc: Dc::Au,
        name: "au",
        accounts: "https://accounts.zoho.com.au",
        api_domain: "https://www.zohoapis.com.au",
        desk: Some("https://desk.zoho.com.au"),
    },
    DcEntry {
        dc: Dc::Jp,
        name: "jp",
        accounts: "https://accounts.zoho.jp",
        api_domain: "https://www.zohoapis.jp",
        desk: Some("https://desk.zoho.jp"),
    },
    DcEntry {
        dc: Dc::Ca,
        name: "ca",
        accounts: "https://accounts.zohocloud.ca",
        api_domain: "https://www.zohoapis.ca",
        desk: Some("https://desk.zohocloud.ca"),
    },
    DcEntry {
        dc: Dc::Sa,
        name: "sa",
        accounts: "https://accounts.zoho.sa",
        api_domain: "https://www.zohoapis.sa",
        desk: Some("https://desk.zoho.sa"),
    },
    DcEntry {
        dc: Dc::Uk,
        name: "uk",
        accounts: "https://accounts.zoho.uk",
        api_domain: "https://www.zohoapis.uk",
        desk: None,
    },
    DcEntry {
        dc: Dc::Cn,
        name: "cn",
        accounts: "https://accounts.zoho.com.cn",
        api_domain: "https://www.zohoapis.com.cn",
        desk: Some("https://desk.zoho.com.cn"),
    },
];

impl Dc {
    fn entry(self) -> &'static DcEntry {
        DATA_CENTRES.iter().find(|e| e.dc == self).expect("every Dc has a row")
    }

    /// The short name used in config (`"eu"`).
    pub fn as_str(self) -> &'static str {
        self.entry().name
    }

    /// The accounts server (OAuth).
    pub fn accounts_url(self) -> &'static str {
        self.entry().accounts
    }

    /// The CRM API domain.
    pub fn api_domain(self) -> &'static str {
        self.entry().api_domain
    }

    /// The Desk base URL, when Zoho documents one for this DC.
    pub fn desk_url(self) -> Option<&'static str> {
        self.entry().desk
    }

    /// Is `url` (scheme + host, optional trailing slash) a Zoho CRM API domain of any DC, sandbox included?
    /// Used to decide whether the `api_domain` of a token response may receive the token.
    pub fn is_known_api_domain(url: &str) -> bool {
        let url = url.trim_end_matches('/');
        DATA_CENTRES
            .iter()
            .any(|e| url == e.api_domain || url == e.api_domain.replacen("https://www.", "https://sandbox.", 1))
    }

    /// Is `url` the accounts server of any DC?
    pub fn is_known_accounts_url(url: &str) -> bool {
        let url = url.trim_end_matches('/');
        DATA_CENTRES.iter().any(|e| url == e.accounts)
    }

    /// Every DC name, for error messages.
    pub fn names() -> Vec<&'static str> {
        DATA_CENTRES.iter().map(|e| e.name).collect()
    }
}

impl FromStr for Dc {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DATA_CENTRES
            .iter()
            .find(|e| e.name == s)
            .map(|e| e.dc)
            .ok_or_else(|| format!("unknown data centre `{s}` (expected one of {})", Dc::names().join(", ")))
    }
}

impl fmt::Display for Dc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_domains_of_every_dc_and_their_sandboxes_are_known() {
        for name in Dc::names() {
            let dc: Dc = name.parse().unwrap();
            assert!(Dc::is_known_api_domain(dc.api_domain()));
            assert!(Dc::is_known_accounts_url(dc.accounts_url()));
        }
        assert!(Dc::is_known_api_domain("https://sandbox.zohoapis.eu/"));
        assert!(!Dc::is_known_api_domain("https://www.zohoapis.com.attacker.example"));
        assert!(!Dc::is_known_api_domain("http://www.zohoapis.com"));
    }

    #[test]
    fn unknown_dc_names_the_known_ones() {
        assert!("xx".parse::<Dc>().unwrap_err().contains("us, eu"));
    }
}
