//! A synthetic directory for the engine benches: `n` users spread over tenants of ~200 users,
//! usage locations US/PR/CA/GB/DE/FR, every license combination, some Direct Routing users and
//! every dial-out policy; the shipped `catalog.toml` and `rates.csv`.

use tollgate_engine::load::{self, LoadErrors, Records, TenantRecord, UserRecord};

const REGIONS: [&str; 8] = ["US", "US", "US", "PR", "CA", "GB", "DE", "FR"];
const LICENSES: [&str; 8] = [
    "MCOEV;MCOPSTN1",
    "SPE_E5;MCOPSTN2",
    "MCOEV;MCOPSTN1;MCOPSTNC",
    "ENTERPRISEPREMIUM;MCOPSTN1",
    "MCOEV;MCOPSTN5",
    "MCOEV;MCOPSTN6;MCOPSTNC",
    "MCOEV;MCOPSTN2;ENTERPRISEPACK",
    "MCOEV",
];
const POLICIES: [&str; 4] = [
    "",
    "DialoutCPCandPSTNInternational",
    "DialoutCPCInternationalPSTNDomestic",
    "DialoutCPCandPSTNDisabled",
];

/// Users per tenant.
pub const TENANT_SIZE: usize = 200;

/// The UPN of user `i`.
pub fn upn(i: usize) -> String {
    format!("user{i}@t{}.example", i / TENANT_SIZE)
}

/// The line URI of user `i` (unique, E.164).
pub fn line_uri(i: usize) -> String {
    format!("+1206{:07}", i)
}

/// The usage location of user `i`.
pub fn region(i: usize) -> &'static str {
    REGIONS[i % REGIONS.len()]
}

/// Records of a synthetic directory of `n` users.
pub fn records(n: usize) -> Records {
    let mut e = LoadErrors::default();
    let tenants = n.div_ceil(TENANT_SIZE).max(1);
    let tenants = (0..tenants)
        .map(|t| TenantRecord {
            id: format!("t{t}"),
            name: format!("Tenant {t}"),
            domains: vec![format!("t{t}.example")],
            credits: Some("1000000.00".into()),
            currency: Some("USD".into()),
            user_spend_limit: None,
            direct_routing: [("sbc".to_string(), format!("sbc.t{t}.example:5061"))].into(),
            line: t + 1,
        })
        .collect();
    let users = (0..n)
        .map(|i| UserRecord {
            line: i + 2,
            tenant: format!("t{}", i / TENANT_SIZE),
            user: upn(i),
            line_uri: line_uri(i),
            usage_location: region(i).into(),
            licenses: LICENSES[(i / 3) % LICENSES.len()].into(),
            voice_routing: if i % 50 == 7 {
                "direct_routing:sbc".into()
            } else {
                String::new()
            },
            dial_out_policy: POLICIES[(i / 7) % POLICIES.len()].into(),
        })
        .collect();
    let catalog = load::parse_catalog(include_str!("../../config/catalog.toml"), &mut e);
    let rates = load::parse_rates(include_str!("../../config/rates.csv"), &mut e);
    assert!(e.is_empty(), "{e}");
    Records {
        tenants,
        users,
        catalog,
        rates,
    }
}

/// The same users as `users.csv` text.
pub fn users_csv(n: usize) -> String {
    let rec = records(n);
    let mut s = String::with_capacity(n * 100);
    s.push_str("tenant,user,line_uri,usage_location,licenses,voice_routing,dial_out_policy\n");
    for u in &rec.users {
        s.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            u.tenant,
            u.user,
            u.line_uri,
            u.usage_location,
            u.licenses,
            u.voice_routing,
            u.dial_out_policy
        ));
    }
    s
}

/// Mixed dialed strings for a caller in `region`: domestic national and E.164, international,
/// toll-free, emergency, premium rate.
pub fn dialed(region: &str, k: usize) -> &'static str {
    const US: [&str; 6] = [
        "2125550100",
        "+1 416 555 0100",
        "+442079460000",
        "1-800-555-0100",
        "+1 900 555 0100",
        "911",
    ];
    const GB: [&str; 6] = [
        "020 7946 0000",
        "07700 900123",
        "+1 212 555 0100",
        "0800 123 4567",
        "+49 30 1234567",
        "999",
    ];
    const DE: [&str; 6] = [
        "030 1234567",
        "0151 23456789",
        "+33 1 55 55 01 04",
        "+44 20 7946 0000",
        "+1 212 555 0100",
        "112",
    ];
    const FR: [&str; 6] = [
        "01 55 55 01 04",
        "06 12 34 56 78",
        "+49 30 1234567",
        "+1 212 555 0100",
        "+44 20 7946 0000",
        "112",
    ];
    let set = match region {
        "GB" => &GB,
        "DE" => &DE,
        "FR" => &FR,
        _ => &US,
    };
    set[k % set.len()]
}
