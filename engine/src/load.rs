//! Reading the directory files of DESIGN §3 (`tenants.toml`, `users.csv`, `catalog.toml`,
//! `rates.csv`) into plain records.
//!
//! Every problem is a [`LoadError`] naming the file, the line and the field, and a load collects
//! *all* of them ([`LoadErrors`]) rather than stopping at the first. Semantic checks (unknown
//! tenant, bad region, ...) happen when the records are built into a snapshot
//! ([`crate::directory::Snapshot::build`]), with the same error type.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use toml::Spanned;

/// One problem in one input file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    /// The file name, e.g. `users.csv`.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The field (column or key) at fault, when known.
    pub field: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: ", self.file, l)?,
            None => write!(f, "{}: ", self.file)?,
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a load, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl LoadErrors {
    /// Records one problem.
    pub fn push(
        &mut self,
        file: &str,
        line: Option<usize>,
        field: &str,
        message: impl Into<String>,
    ) {
        self.0.push(LoadError {
            file: file.to_string(),
            line,
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// Whether nothing was wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when no error was collected.
    pub fn into_result<T>(self, value: T) -> Result<T, LoadErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

/// Tenants, their domains, credits and Direct Routing gateways (DESIGN §3).
pub const TENANTS_FILE: &str = "tenants.toml";
/// One row per user: UPN, line URI, usage location, licenses, routing, dial-out policy.
pub const USERS_FILE: &str = "users.csv";
/// What each SKU grants, pooling and domestic regions, free and barred numbers.
pub const CATALOG_FILE: &str = "catalog.toml";
/// Communications Credits prices per destination and number type.
pub const RATES_FILE: &str = "rates.csv";

/// A `[[tenant]]` table of `tenants.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRecord {
    /// `id`: the tenant id `users.csv` refers to.
    pub id: String,
    /// `name`: display name.
    #[serde(default)]
    pub name: String,
    /// `domains`: the tenant's UPN domains.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Communications Credits balance, a decimal string (`"250.00"`).
    #[serde(default)]
    pub credits: Option<String>,
    /// `currency` of the balance and rates (informational).
    #[serde(default)]
    pub currency: Option<String>,
    /// Per-user monthly cap on credits spending (decimal string), if any.
    #[serde(default)]
    pub user_spend_limit: Option<String>,
    /// Gateway id → `host[:port][;params]`, for `direct_routing:<id>` users.
    #[serde(default)]
    pub direct_routing: BTreeMap<String, String>,
    /// `[tenant.limits]`: the abuse controls ([`crate::limits`]); absent, their defaults.
    #[serde(default)]
    pub limits: Option<crate::limits::LimitsRecord>,
    /// `[[tenant.velocity]]`: calls to a destination in a window ([`crate::limits`]).
    #[serde(default)]
    pub velocity: Vec<crate::limits::VelocityRecord>,
    /// Line of the `[[tenant]]` table (filled by the loader).
    #[serde(skip)]
    pub line: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantsFile {
    #[serde(default)]
    tenant: Vec<Spanned<TenantRecord>>,
}

/// A row of `users.csv`. All fields are kept as text; they are checked in
/// [`crate::directory::Snapshot::build`].
#[derive(Clone, Debug, Default)]
pub struct UserRecord {
    /// 1-based line of the row, for errors.
    pub line: usize,
    /// `tenant`: a tenant id of `tenants.toml`.
    pub tenant: String,
    /// `user`: the UPN (`alice@contoso.com`).
    pub user: String,
    /// `line_uri`: `tel:+14255550101` or `+14255550101`; may be empty.
    pub line_uri: String,
    /// `usage_location`: ISO 3166 alpha-2, the license location.
    pub usage_location: String,
    /// `licenses`: `;`-separated SKU part numbers (`MCOEV;MCOPSTN1`).
    pub licenses: String,
    /// `voice_routing`: `calling_plan` (empty: the same), `direct_routing:<gateway id>` or
    /// `policy:<id>` (a voice routing policy of `routing.toml`).
    pub voice_routing: String,
    /// `dial_out_policy`: an OnlineDialOutPolicy name (empty: the default).
    pub dial_out_policy: String,
    /// `dial_plan`: a dial plan of `dialplans.toml` (empty: the tenant's default plan).
    pub dial_plan: String,
    /// `concurrent_calls`: the user's own live-call limit (empty: the tenant's
    /// `user_concurrent_calls`; 0: none).
    pub concurrent_calls: String,
}

/// The `[regions]` table of `catalog.toml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionsRecord {
    /// Region → the region whose pool its users share (`PR = "US"`).
    #[serde(default)]
    pub pool_with: BTreeMap<String, String>,
    /// Groups of regions domestic for each other (`[["US", "CA", "PR"]]`).
    #[serde(default)]
    pub domestic_groups: Vec<Vec<String>>,
    /// Reachable international destinations; empty: all (rule 6 bars the rest).
    #[serde(default)]
    pub international: Vec<String>,
    /// Audio Conferencing's Zone A: where a meeting's dial-out may draw on the tenant's
    /// conferencing pool ([`crate::conference`]).
    #[serde(default)]
    pub zone_a: Vec<String>,
}

/// The `[numbers]` table of `catalog.toml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumbersRecord {
    /// Number type names free when domestic (rule 8).
    #[serde(default)]
    pub free_domestic: Vec<String>,
    /// Number type names barred everywhere (rule 6).
    #[serde(default)]
    pub barred: Vec<String>,
    /// E.164 prefixes barred (`+449`, rule 6).
    #[serde(default)]
    pub barred_prefixes: Vec<String>,
    /// E.164 prefixes callable with Communications Credits only (UK shared cost).
    #[serde(default)]
    pub credits_only_prefixes: Vec<String>,
    /// High-risk E.164 prefixes, blocked unless a tenant allows them
    /// (`[tenant.limits].high_risk`).
    #[serde(default)]
    pub high_risk_prefixes: Vec<String>,
}

/// A `[[sku]]` table of `catalog.toml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkuRecord {
    /// The part number (`MCOPSTN1`).
    pub name: String,
    /// Free text for operators.
    #[serde(default)]
    pub description: String,
    /// Whether it includes Phone System (rule 3).
    #[serde(default)]
    pub phone_system: bool,
    /// `domestic`, `international` or `payg`.
    #[serde(default)]
    pub plan: Option<String>,
    /// Usage locations it is sold for (a PAYG plan's country zone); empty: everywhere.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Minutes per user per calendar month: `default` plus per-region overrides.
    #[serde(default)]
    pub minutes: BTreeMap<String, u32>,
    /// International minutes per user per month (an International plan's second pool).
    #[serde(default)]
    pub international_minutes: u32,
    /// Whether it is Communications Credits (rule 10).
    #[serde(default)]
    pub credits: bool,
    /// Audio Conferencing dial-out minutes per license per month, pooled tenant-wide
    /// ([`crate::conference`]).
    #[serde(default)]
    pub conferencing_minutes: u32,
    /// Line of the `[[sku]]` table (filled by the loader).
    #[serde(skip)]
    pub line: usize,
}

/// `catalog.toml`, with the line of each section for error messages.
#[derive(Clone, Debug, Default)]
pub struct CatalogRecord {
    /// `[regions]`.
    pub regions: RegionsRecord,
    /// Line of `[regions]`.
    pub regions_line: usize,
    /// `[numbers]`.
    pub numbers: NumbersRecord,
    /// Line of `[numbers]`.
    pub numbers_line: usize,
    /// The `[[sku]]` tables, in file order.
    pub skus: Vec<SkuRecord>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    regions: Option<Spanned<RegionsRecord>>,
    #[serde(default)]
    numbers: Option<Spanned<NumbersRecord>>,
    #[serde(default)]
    sku: Vec<Spanned<SkuRecord>>,
}

/// A row of `rates.csv`.
#[derive(Clone, Debug, Default)]
pub struct RateRecord {
    /// 1-based line of the row.
    pub line: usize,
    /// A region code, or `*`.
    pub destination: String,
    /// A [`crate::numbering::NumberType`] name, or `*` (empty: `*`).
    pub number_type: String,
    /// A decimal amount of the tenant currency (`0.019`).
    pub price_per_minute: String,
}

/// Everything read from a directory, not yet checked.
#[derive(Clone, Debug, Default)]
pub struct Records {
    /// From [`parse_tenants`].
    pub tenants: Vec<TenantRecord>,
    /// From [`parse_users`].
    pub users: Vec<UserRecord>,
    /// From [`parse_catalog`].
    pub catalog: CatalogRecord,
    /// From [`parse_rates`].
    pub rates: Vec<RateRecord>,
}

/// The four files of a directory as the daemon read them: each one's bytes, or why it could not
/// be read (`cannot read PATH: ERROR`). The engine does no I/O of its own (DESIGN §1): the edge
/// reads, the engine parses.
#[derive(Clone, Debug)]
pub struct DirectoryFiles {
    /// [`TENANTS_FILE`].
    pub tenants: Result<Vec<u8>, String>,
    /// [`USERS_FILE`].
    pub users: Result<Vec<u8>, String>,
    /// [`CATALOG_FILE`].
    pub catalog: Result<Vec<u8>, String>,
    /// [`RATES_FILE`].
    pub rates: Result<Vec<u8>, String>,
    /// [`crate::routing::ROUTING_FILE`], an optional file: `None` when the directory has none.
    pub routing: Option<Result<Vec<u8>, String>>,
    /// [`crate::dialplan::DIALPLANS_FILE`], an optional file: `None` when the directory has
    /// none.
    pub dialplans: Option<Result<Vec<u8>, String>>,
}

impl DirectoryFiles {
    /// The files, each got from `read` by its name ([`TENANTS_FILE`], ...).
    pub fn with(mut read: impl FnMut(&'static str) -> Result<Vec<u8>, String>) -> DirectoryFiles {
        DirectoryFiles {
            tenants: read(TENANTS_FILE),
            users: read(USERS_FILE),
            catalog: read(CATALOG_FILE),
            rates: read(RATES_FILE),
            routing: None,
            dialplans: None,
        }
    }
}

/// Parses the four files; collects every syntax error of every file.
pub fn read_dir(files: DirectoryFiles) -> Result<Records, LoadErrors> {
    let (mut rec, users, mut errors) = read_dir_deferred(files);
    if let Some(users) = users {
        rec.users = parse_users(&users, &mut errors);
    }
    errors.into_result(rec)
}

/// Like [`read_dir`], but returns the text of `users.csv` unparsed (the records' `users` stay
/// empty), for a snapshot build that streams users one row at a time
/// ([`crate::directory::Snapshot::from_files`]), and the errors found so far.
pub(crate) fn read_dir_deferred(files: DirectoryFiles) -> (Records, Option<String>, LoadErrors) {
    let mut errors = LoadErrors::default();
    let tenants = text(TENANTS_FILE, files.tenants, &mut errors)
        .map(|t| parse_tenants(&t, &mut errors))
        .unwrap_or_default();
    let users = text(USERS_FILE, files.users, &mut errors);
    let catalog = text(CATALOG_FILE, files.catalog, &mut errors)
        .map(|t| parse_catalog(&t, &mut errors))
        .unwrap_or_default();
    let rates = text(RATES_FILE, files.rates, &mut errors)
        .map(|t| parse_rates(&t, &mut errors))
        .unwrap_or_default();
    let rec = Records {
        tenants,
        users: Vec::new(),
        catalog,
        rates,
    };
    (rec, users, errors)
}

/// A file's bytes as text. Bytes that are not UTF-8 are an error at their line; the rest of the
/// file is still read (with U+FFFD in their place) so that its other errors are reported too.
pub(crate) fn text(
    name: &str,
    file: Result<Vec<u8>, String>,
    errors: &mut LoadErrors,
) -> Option<String> {
    match file {
        Ok(bytes) => Some(match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
                errors.push(name, Some(line_of(&text, at)), "", "not UTF-8 text");
                text
            }
        }),
        Err(why) => {
            errors.push(name, None, "", why);
            None
        }
    }
}

/// The files of `dir`, read with `std::fs` (tests only: the daemon reads them itself).
#[cfg(test)]
pub(crate) fn read_for_tests(dir: &std::path::Path) -> DirectoryFiles {
    let mut files = DirectoryFiles::with(|name| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    });
    files.routing = std::fs::read(dir.join(crate::routing::ROUTING_FILE))
        .ok()
        .map(Ok);
    files.dialplans = std::fs::read(dir.join(crate::dialplan::DIALPLANS_FILE))
        .ok()
        .map(Ok);
    files
}

/// 1-based line of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

pub(crate) fn toml_error(file: &str, text: &str, e: &toml::de::Error, errors: &mut LoadErrors) {
    let line = e.span().map(|s| line_of(text, s.start));
    // The message of toml names the key ("unknown field `x`", "missing field `id`").
    let msg = e.message().to_string();
    let field = msg
        .split('`')
        .nth(1)
        .filter(|_| msg.contains("field"))
        .unwrap_or("")
        .to_string();
    errors.push(file, line, &field, msg);
}

/// The value of a spanned TOML item and the line it starts on.
fn spanned<T>(text: &str, s: Spanned<T>) -> (T, usize) {
    let line = line_of(text, s.span().start);
    (s.into_inner(), line)
}

/// Parses `tenants.toml`.
pub fn parse_tenants(text: &str, errors: &mut LoadErrors) -> Vec<TenantRecord> {
    match toml::from_str::<TenantsFile>(text) {
        Ok(f) => f
            .tenant
            .into_iter()
            .map(|s| {
                let (t, line) = spanned(text, s);
                TenantRecord { line, ..t }
            })
            .collect(),
        Err(e) => {
            toml_error(TENANTS_FILE, text, &e, errors);
            Vec::new()
        }
    }
}

/// Parses `catalog.toml`.
pub fn parse_catalog(text: &str, errors: &mut LoadErrors) -> CatalogRecord {
    match toml::from_str::<CatalogFile>(text) {
        Ok(f) => {
            let (regions, regions_line) = f.regions.map(|s| spanned(text, s)).unwrap_or_default();
            let (numbers, numbers_line) = f.numbers.map(|s| spanned(text, s)).unwrap_or_default();
            let skus = f
                .sku
                .into_iter()
                .map(|s| {
                    let (k, line) = spanned(text, s);
                    SkuRecord { line, ..k }
                })
                .collect();
            CatalogRecord {
                regions,
                regions_line,
                numbers,
                numbers_line,
                skus,
            }
        }
        Err(e) => {
            toml_error(CATALOG_FILE, text, &e, errors);
            CatalogRecord::default()
        }
    }
}

/// Reads a CSV file row by row, calling `row(line, fields)` with the `required` then `optional`
/// columns in that order (`""` where absent). Column order is free; unknown columns are ignored;
/// `required` columns must be present; blank rows are skipped.
fn read_csv(
    file: &str,
    text: &str,
    required: &[&str],
    optional: &[&str],
    errors: &mut LoadErrors,
    mut row: impl FnMut(usize, &[&str]),
) {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let headers = match rdr.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            errors.push(file, Some(1), "", format!("bad header row: {e}"));
            return;
        }
    };
    let mut index = Vec::new();
    let mut missing = false;
    for (i, name) in required.iter().chain(optional).enumerate() {
        let pos = headers.iter().position(|h| h.eq_ignore_ascii_case(name));
        if pos.is_none() && i < required.len() {
            errors.push(file, Some(1), name, "required column is missing");
            missing = true;
        }
        index.push(pos);
    }
    if missing {
        return;
    }
    // At most 9 columns are asked for (a fixed array: no allocation per row).
    index.truncate(9);
    let mut rec = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                if rec.iter().all(|f| f.is_empty()) {
                    continue;
                }
                let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
                // A short row would leave its last columns empty without a word (a user
                // silently losing their licenses); a long one means a value with an unquoted
                // comma. Either way the row is not what the operator meant.
                if rec.len() != headers.len() {
                    let (field, what) = match headers.get(rec.len()) {
                        Some(missing) => (missing, "missing"),
                        None => ("", "too many"),
                    };
                    errors.push(
                        file,
                        Some(line),
                        field,
                        format!(
                            "{} fields, the header has {}: {what} (quote a value that holds a comma)",
                            rec.len(),
                            headers.len()
                        ),
                    );
                    continue;
                }
                let mut fields = [""; 9];
                for (f, i) in fields.iter_mut().zip(&index) {
                    *f = i.and_then(|i| rec.get(i)).unwrap_or("");
                }
                row(line, &fields[..index.len()]);
            }
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize);
                errors.push(file, line, "", format!("malformed CSV: {e}"));
                if !matches!(
                    e.kind(),
                    csv::ErrorKind::Utf8 { .. } | csv::ErrorKind::UnequalLengths { .. }
                ) {
                    break;
                }
            }
        }
    }
}

const USER_REQUIRED: [&str; 4] = ["tenant", "user", "usage_location", "licenses"];
const USER_OPTIONAL: [&str; 5] = [
    "line_uri",
    "voice_routing",
    "dial_out_policy",
    "dial_plan",
    "concurrent_calls",
];

/// Calls `f` with each row of `users.csv`, reusing one record (no allocation per row once the
/// strings have grown).
pub fn for_each_user(text: &str, errors: &mut LoadErrors, mut f: impl FnMut(&UserRecord)) {
    let mut u = UserRecord::default();
    read_csv(
        USERS_FILE,
        text,
        &USER_REQUIRED,
        &USER_OPTIONAL,
        errors,
        |line, c| {
            u.line = line;
            for (dst, src) in [
                (&mut u.tenant, c[0]),
                (&mut u.user, c[1]),
                (&mut u.usage_location, c[2]),
                (&mut u.licenses, c[3]),
                (&mut u.line_uri, c[4]),
                (&mut u.voice_routing, c[5]),
                (&mut u.dial_out_policy, c[6]),
                (&mut u.dial_plan, c[7]),
                (&mut u.concurrent_calls, c[8]),
            ] {
                dst.clear();
                dst.push_str(src);
            }
            f(&u);
        },
    );
}

/// Parses `users.csv`.
pub fn parse_users(text: &str, errors: &mut LoadErrors) -> Vec<UserRecord> {
    let mut out = Vec::new();
    for_each_user(text, errors, |u| out.push(u.clone()));
    out
}

/// Parses `rates.csv`.
pub fn parse_rates(text: &str, errors: &mut LoadErrors) -> Vec<RateRecord> {
    let mut out = Vec::new();
    let cols = ["destination", "number_type", "price_per_minute"];
    read_csv(RATES_FILE, text, &cols, &[], errors, |line, c| {
        out.push(RateRecord {
            line,
            destination: c[0].to_string(),
            number_type: c[1].to_string(),
            price_per_minute: c[2].to_string(),
        })
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_errors_name_line_and_field() {
        let mut errors = LoadErrors::default();
        let t = parse_tenants(
            "[[tenant]]\nid = \"a\"\n\n[[tenant]]\nid = \"b\"\nbogus = 1\n",
            &mut errors,
        );
        assert!(t.is_empty());
        assert_eq!(errors.0.len(), 1);
        assert_eq!(errors.0[0].file, "tenants.toml");
        assert_eq!(errors.0[0].line, Some(6));
        assert_eq!(errors.0[0].field, "bogus");
    }

    #[test]
    fn csv_columns_in_any_order_and_missing_columns_reported() {
        let mut errors = LoadErrors::default();
        let u = parse_users(
            "licenses,user,extra,tenant,usage_location\nMCOEV,a@x.com,zz,x,US\n",
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors}");
        assert_eq!(u[0].user, "a@x.com");
        assert_eq!(u[0].line, 2);
        assert_eq!(u[0].tenant, "x");
        let mut errors = LoadErrors::default();
        parse_users("user\na\n", &mut errors);
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["tenant", "usage_location", "licenses"]);
    }

    #[test]
    fn missing_files_are_all_reported() {
        let e = read_dir(read_for_tests(std::path::Path::new(
            "/nonexistent-tollgate",
        )))
        .unwrap_err();
        assert_eq!(e.0.len(), 4);
    }
}
