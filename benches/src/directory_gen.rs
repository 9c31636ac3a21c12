//! A synthetic directory for the engine benches: `n` users spread over tenants of ~200 users,
//! usage locations US/PR/CA/GB/DE/FR, every license combination, some Direct Routing users and
//! every dial-out policy; the shipped `catalog.toml` and `rates.csv`.

use tollgate_engine::load::{self, LoadErrors, Records, UserRecord};

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

/// The `users.csv` fields of user `i`: tenant, user, line_uri, usage_location, licenses,
/// voice_routing, dial_out_policy.
fn user_fields(i: usize) -> [String; 7] {
    [
        format!("t{}", i / TENANT_SIZE),
        upn(i),
        line_uri(i),
        region(i).into(),
        LICENSES[(i / 3) % LICENSES.len()].into(),
        if i % 50 == 7 {
            "direct_routing:sbc".into()
        } else {
            String::new()
        },
        POLICIES[(i / 7) % POLICIES.len()].into(),
    ]
}

/// The tenants of a directory of `n` users, as `tenants.toml` text.
pub fn tenants_toml(n: usize) -> String {
    let mut s = String::new();
    for t in 0..n.div_ceil(TENANT_SIZE).max(1) {
        s.push_str(&format!(
            "[[tenant]]\nid = \"t{t}\"\nname = \"Tenant {t}\"\ndomains = [\"t{t}.example\"]\n\
             credits = \"1000000.00\"\ncurrency = \"USD\"\n\
             [tenant.direct_routing]\nsbc = \"sbc.t{t}.example:5061\"\n\n"
        ));
    }
    s
}

/// Records of a synthetic directory of `n` users.
pub fn records(n: usize) -> Records {
    let mut e = LoadErrors::default();
    let tenants = load::parse_tenants(&tenants_toml(n), &mut e);
    let users = (0..n)
        .map(|i| {
            let [tenant, user, line_uri, usage_location, licenses, voice_routing, dial_out_policy] =
                user_fields(i);
            UserRecord {
                line: i + 2,
                tenant,
                user,
                line_uri,
                usage_location,
                licenses,
                voice_routing,
                dial_out_policy,
                dial_plan: String::new(),
                concurrent_calls: String::new(),
            }
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
    let mut s = String::with_capacity(n * 100);
    s.push_str("tenant,user,line_uri,usage_location,licenses,voice_routing,dial_out_policy\n");
    for i in 0..n {
        s.push_str(&user_fields(i).join(","));
        s.push('\n');
    }
    s
}

/// Writes a directory of `n` users (the four files) to `dir`.
pub fn write_dir(dir: &std::path::Path, n: usize) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("tenants.toml"), tenants_toml(n))?;
    std::fs::write(dir.join("users.csv"), users_csv(n))?;
    std::fs::write(
        dir.join("catalog.toml"),
        include_str!("../../config/catalog.toml"),
    )?;
    std::fs::write(
        dir.join("rates.csv"),
        include_str!("../../config/rates.csv"),
    )
}

/// The directory of `n` users with the Teams routing features in use (issue 19's bench): with
/// `plans_on`, every tenant has a default dial plan of five rules (extension, operator, site
/// prefix, outside line, a national form); with `routing_on`, a voice routing policy of two
/// usages and three routes, by which one user in five routes (`policy:dr`) instead of their
/// calling plan. The files as the daemon would read them.
pub fn files_with_teams(
    n: usize,
    plans_on: bool,
    routing_on: bool,
) -> tollgate_engine::load::DirectoryFiles {
    let tenants = n.div_ceil(TENANT_SIZE).max(1);
    let mut users = String::from(
        "tenant,user,line_uri,usage_location,licenses,voice_routing,dial_out_policy\n",
    );
    for i in 0..n {
        let mut f = user_fields(i);
        if routing_on && i % 5 == 2 && f[5].is_empty() {
            f[5] = "policy:dr".into();
        }
        users.push_str(&f.join(","));
        users.push('\n');
    }
    let mut routing = String::new();
    let mut plans = String::new();
    for t in 0..tenants {
        routing.push_str(&format!(
            "[[voice_route]]\ntenant = \"t{t}\"\nname = \"nanp\"\nusage = \"domestic\"\n\
             pattern = '^\\+1(\\d{{10}})$'\npriority = 1\ngateways = [\"sbc\"]\n\
             [[voice_route]]\ntenant = \"t{t}\"\nname = \"nanp backup\"\nusage = \"domestic\"\n\
             pattern = '^\\+1'\npriority = 2\ngateways = [\"sbc\"]\n\
             [[voice_route]]\ntenant = \"t{t}\"\nname = \"world\"\nusage = \"international\"\n\
             pattern = '^\\+[2-9]'\npriority = 1\ngateways = [\"sbc\"]\n\
             [[voice_routing_policy]]\ntenant = \"t{t}\"\nid = \"dr\"\nusages = [\"domestic\", \"international\"]\n\n"
        ));
        plans.push_str(&format!(
            "[[dial_plan]]\nid = \"main\"\ntenant = \"t{t}\"\ndefault = true\n\
             [[dial_plan.rule]]\nname = \"extension\"\npattern = '^(\\d{{4}})$'\ntranslation = \"+1206555$1\"\n\
             [[dial_plan.rule]]\nname = \"operator\"\npattern = '^0$'\ntranslation = \"+12065550100\"\n\
             [[dial_plan.rule]]\nname = \"site\"\npattern = '^6222(\\d{{4}})$'\ntranslation = \"+1425555$1\"\n\
             [[dial_plan.rule]]\nname = \"outside line\"\npattern = '^9(\\d{{11}})$'\ntranslation = \"+$1\"\n\
             [[dial_plan.rule]]\nname = \"seven digits\"\npattern = '^(\\d{{7}})$'\ntranslation = \"+1206$1\"\n\n"
        ));
    }
    let bytes = |s: String| Ok(s.into_bytes());
    let mut files = tollgate_engine::load::DirectoryFiles::with(|name| match name {
        load::TENANTS_FILE => bytes(tenants_toml(n)),
        load::USERS_FILE => bytes(std::mem::take(&mut users)),
        load::CATALOG_FILE => bytes(include_str!("../../config/catalog.toml").to_string()),
        _ => bytes(include_str!("../../config/rates.csv").to_string()),
    });
    files.routing = routing_on.then(|| bytes(routing));
    files.dialplans = plans_on.then(|| bytes(plans));
    files
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
