//! Realistic sample data for one org, shaped like the examples in `zoho-api.md`.

use std::collections::BTreeMap;

use serde_json::json;

use super::OrgData;

impl OrgData {
    /// Realistic sample data, with ids and names derived from `seed` so two orgs differ.
    ///
    /// 2 departments; 3 reply addresses (2 in the first department, 1 in the second) with string
    /// `port`, `smtpDetails`, `createdBy.photoURL` and `modifiedTime`; an opaque CRM mail config that
    /// contains an SMTP password (so tests can check secrets are masked or at least not leaked);
    /// 3 CRM from-addresses (one with `"id": null`, one without `id`); all three compose types;
    /// 2 Desk mail configurations; a support email domain.
    pub fn sample(seed: u32) -> OrgData {
        let s = u64::from(seed);
        // Desk ids exceed 32 bits; keep them as strings like Zoho's JSON does.
        let desk_org_id = (60_000_000_000 + s * 1_000_003).to_string();
        let base = 4_000_000_000_000 + s * 1_000_000;
        let id = |n: u64| (base + n).to_string();
        let crm_base = 3_652_397_000_000_000_000 + s * 1_000_000;
        let crm_id = |n: u64| (crm_base + n).to_string();
        let domain = format!("zylker{seed}.com");
        let portal = format!("zylker{seed}");
        let (dept1, dept2) = (id(7043), id(7044));
        let agent = json!({
            "id": id(28043),
            "firstName": "Sam",
            "lastName": "Steve",
            "email": format!("steve@{domain}"),
            "photoURL": format!("https://desk.zoho.com/api/v1/agents/{}/photo?orgId={desk_org_id}", id(28043)),
        });
        let reply = |n: u64, dept: &str, local: &str, name: &str, provider: &str, host: &str, conn: &str| {
            json!({
                "id": id(n),
                "address": format!("{local}@{domain}"),
                "displayName": name,
                "departmentId": dept,
                "isActive": true,
                "isVerified": true,
                "isSmtpEnabled": true,
                "serviceProviderType": provider,
                "smtpDetails": {
                    "host": host,
                    "port": "465",
                    "userName": format!("{local}@{domain}"),
                    "connectionType": conn,
                },
                "createdBy": agent,
                "createdTime": 1_672_998_926_000u64,
                "modifiedTime": 1_673_006_126_000u64,
            })
        };

        let mut compose = BTreeMap::new();
        for (kind, from_type, reply_type) in [
            ("default", "org_email", "primary"),
            ("emailin", "primary", "primary"),
            ("mass_mail", "org_email", "org_email"),
        ] {
            compose.insert(
                kind.to_owned(),
                json!({
                    "type": kind,
                    "default_from_address": {"type": from_type, "user_name": "Support", "email": format!("support@{domain}")},
                    "default_replyto_address": {"type": reply_type, "user_name": "Pat", "email": format!("pat@{domain}")},
                    "font": {"size": 12, "family": "Arial"},
                }),
            );
        }

        OrgData {
            desk_org_id: desk_org_id.clone(),
            desk_portals: vec![json!({
                "id": desk_org_id,
                "companyName": format!("Zylker {seed} Inc."),
                "portalName": portal,
                "edition": "ENTERPRISE",
                "isDefault": "false",
            })],
            crm_mail_config: Some(json!({
                "mail_config": [{
                    "id": crm_id(2_381_101),
                    "email": format!("crm@{domain}"),
                    "type": "org_email",
                    "smtp": {
                        "host": "smtp.zoho.com",
                        "port": 465,
                        "username": format!("crm@{domain}"),
                        "password": "s3cr3t-smtp-pass",
                        "ssl": true,
                    },
                }]
            })),
            from_addresses: vec![
                json!({"user_name": "Patricia Boyle", "type": "primary", "email": format!("pat.boyle@{domain}"), "id": null}),
                json!({"user_name": "user2", "type": "imap", "email": format!("user2.{seed}@gmail.com")}),
                json!({"user_name": "J Smith", "id": crm_id(2_381_001), "type": "org_email", "email": format!("j.smith@{domain}"), "default": true}),
            ],
            compose,
            mail_configurations: Some(vec![
                json!({
                    "id": id(31001),
                    "name": "Support mailbox",
                    "address": format!("support@{domain}"),
                    "departmentId": dept1,
                    "serviceProviderType": "ZohoSMTP",
                    "isActive": true,
                }),
                json!({
                    "id": id(31002),
                    "name": "Sales mailbox",
                    "address": format!("sales@{domain}"),
                    "departmentId": dept2,
                    "serviceProviderType": "CustomSMTP",
                    "isActive": true,
                }),
            ]),
            departments: vec![
                json!({"id": dept1, "name": "Support", "isEnabled": true, "isDefault": true}),
                json!({"id": dept2, "name": "Sales", "isEnabled": true, "isDefault": false}),
            ],
            reply_addresses: vec![
                reply(
                    25003,
                    &dept1,
                    "support",
                    "Support",
                    "CustomSMTP",
                    "smtp.zoho.com",
                    "SSL",
                ),
                reply(25004, &dept1, "help", "Help Desk", "ZohoSMTP", "smtp.zoho.com", "SSL"),
                reply(25005, &dept2, "sales", "Sales", "Office", "smtp.office365.com", "TLS"),
            ],
            support_email_domain: json!({
                "supportEmailDomain": format!("{portal}new.zohodesk.com"),
                "oldDomain": format!("{portal}.zohodesk.com"),
                "updatedTime": 1_383_564_067_000u64,
                "updatedBy": id(7089),
            }),
            api_domain: None,
            location: "us".to_owned(),
        }
    }
}
