//! The plan catalog (`catalog.toml`, DESIGN §3): what each SKU grants, which regions share a
//! pool, which count as domestic for each other, and which number types are free or barred.
//!
//! Figures and rules come from the Teams documentation (see
//! `docs/reference/calling-plan-rules.md`): minutes "per calendar month" per user by usage
//! location (§1), PR pooling with the US (§2), US ↔ CA ↔ PR domestic (§5), premium rate and UK
//! `449` barred (§4).

use std::collections::HashMap;

use crate::fxhash::FxMap;
use crate::load::{CatalogRecord, LoadErrors, CATALOG_FILE};
use crate::numbering::{NumberType, Region};

/// The kind of a Calling Plan SKU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlanKind {
    /// Domestic minutes only (MCOPSTN1, MCOPSTN5, MCOPSTN6).
    Domestic,
    /// Domestic minutes plus a separate international pool (MCOPSTN2).
    International,
    /// Pay-As-You-Go (MCOPSTN_PAYG_1, _2): "No outgoing minutes are included. All outgoing
    /// calls are charged" — every call paid by Communications Credits, no pool.
    Payg,
}

/// What one SKU grants.
#[derive(Clone, Debug)]
pub struct Sku {
    /// The Microsoft part number, upper case (`MCOPSTN1`): what `users.csv` `licenses` lists.
    pub name: String,
    /// Includes Phone System (MCOEV, E5): DESIGN §4 rule 3.
    pub phone_system: bool,
    /// The calling plan it is, if any: which pools its holders draw on (rule 9).
    pub plan: Option<PlanKind>,
    /// Domestic minutes per user per month where no override applies.
    pub minutes_default: u32,
    /// Per-usage-location overrides (MCOPSTN1: 3000 in US/PR/CA/GB; calling-plan-rules §1).
    pub minutes: HashMap<Region, u32>,
    /// International minutes per user per month (International plan only).
    pub international_minutes: u32,
    /// Communications Credits (MCOPSTNC): DESIGN §4 rule 10.
    pub credits: bool,
    /// Audio Conferencing dial-out minutes per license per month (MCOMEETADV, E5: 60),
    /// added to the tenant's conferencing pool ([`crate::conference`]).
    pub conferencing_minutes: u32,
    /// The usage locations it is sold for (a PAYG plan's country zone); empty: everywhere. A
    /// licence held by a user licensed elsewhere grants nothing.
    pub regions: Vec<Region>,
}

impl Sku {
    /// Whether it grants anything to a user licensed in `region`.
    pub fn sold_in(&self, region: Region) -> bool {
        self.regions.is_empty() || self.regions.contains(&region)
    }
}

/// Whether `e164` starts with one of `prefixes` (`+` and at least one digit). Every call asks,
/// and most numbers share not even their first three bytes (`+44`) with any prefix: those are
/// compared inline first, the rest only for a prefix that agrees on them.
fn has_prefix(prefixes: &[String], e164: &[u8]) -> bool {
    let head = e164.first_chunk::<3>();
    prefixes.iter().any(|p| {
        let p = p.as_bytes();
        match (p.first_chunk::<3>(), head) {
            (Some(a), Some(b)) if a != b => false,
            _ => e164.starts_with(p),
        }
    })
}

/// A set of regions, one bit each: membership in a few instructions on the call path (the
/// international list holds ~200 regions).
#[derive(Clone, Debug, Default)]
pub struct RegionSet {
    /// Alpha-2 codes: bit `(a - 'A') * 26 + (b - 'A')`; then `001`.
    bits: [u64; 11],
    len: usize,
}

impl RegionSet {
    fn index(r: Region) -> Option<usize> {
        if r == Region::NON_GEO {
            return Some(26 * 26);
        }
        let [a, b, _] = r.bytes();
        (a.is_ascii_uppercase() && b.is_ascii_uppercase())
            .then(|| usize::from(a - b'A') * 26 + usize::from(b - b'A'))
    }

    /// Adds `r`.
    pub fn insert(&mut self, r: Region) {
        if let Some(i) = Self::index(r) {
            if self.bits[i / 64] & (1 << (i % 64)) == 0 {
                self.len += 1;
            }
            self.bits[i / 64] |= 1 << (i % 64);
        }
    }

    /// Whether `r` is in the set.
    pub fn contains(&self, r: Region) -> bool {
        Self::index(r).is_some_and(|i| self.bits[i / 64] & (1 << (i % 64)) != 0)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Sku {
    /// Domestic minutes per user per month for a user licensed in `region`.
    pub fn minutes_for(&self, region: Region) -> u32 {
        self.minutes
            .get(&region)
            .copied()
            .unwrap_or(self.minutes_default)
    }
}

/// The checked catalog.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// Every SKU of `catalog.toml`, in file order; a user's licenses index into it.
    pub skus: Vec<Sku>,
    by_name: FxMap<String, u16>,
    pool_with: FxMap<Region, Region>,
    /// Region → domestic group id.
    domestic_group: FxMap<Region, u16>,
    /// Reachable international destinations; empty = all.
    international: RegionSet,
    /// Audio Conferencing Zone A ([`crate::conference`]).
    zone_a: Vec<Region>,
    free_domestic: Vec<NumberType>,
    barred: Vec<NumberType>,
    barred_prefixes: Vec<String>,
    /// E.164 prefixes callable only with Communications Credits, whatever their number type
    /// (UK shared-cost numbers, classified premium rate).
    credits_only: PrefixSet,
    /// High-risk prefixes (`[numbers].high_risk_prefixes`): refused with
    /// `high_risk_destination` unless the caller's tenant allows them ([`crate::limits`]).
    high_risk: PrefixSet,
}

/// E.164 prefixes, most numbers ruled out at a glance by their first two digits.
#[derive(Clone, Debug, Default)]
struct PrefixSet {
    prefixes: Vec<String>,
    /// Bit `10·a + b` is set when a prefix starts `+ab`: one test rules out every number whose
    /// first two digits no prefix has.
    heads: u128,
    /// Some prefix is shorter than three bytes (`+1`): then every prefix is compared.
    short: bool,
}

/// The two digits after `+`, as 0–99.
fn head_of(e164: &[u8]) -> Option<u32> {
    match e164 {
        [b'+', a, b, ..] if a.is_ascii_digit() && b.is_ascii_digit() => {
            Some(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
        }
        _ => None,
    }
}

impl PrefixSet {
    fn new(prefixes: Vec<String>) -> PrefixSet {
        let heads = prefixes
            .iter()
            .filter_map(|p| head_of(p.as_bytes()))
            .fold(0u128, |set, h| set | 1 << h);
        let short = prefixes.iter().any(|p| p.len() < 3);
        PrefixSet {
            prefixes,
            heads,
            short,
        }
    }

    fn contains(&self, e164: &[u8]) -> bool {
        let head_matches = head_of(e164).is_some_and(|h| self.heads & (1 << h) != 0);
        (self.short || head_matches) && has_prefix(&self.prefixes, e164)
    }

    /// The longest prefix `e164` starts with (for an operator: which entry matched).
    fn matching(&self, e164: &[u8]) -> Option<&str> {
        self.prefixes
            .iter()
            .filter(|p| e164.starts_with(p.as_bytes()))
            .max_by_key(|p| p.len())
            .map(String::as_str)
    }
}

impl Catalog {
    /// Checks a parsed `catalog.toml`; every error is added to `errors`.
    pub(crate) fn build(rec: &CatalogRecord, errors: &mut LoadErrors) -> Catalog {
        let f = CATALOG_FILE;
        let mut c = Catalog::default();
        let rl = Some(rec.regions_line);
        let region = |code: &str, field: &str, line: Option<usize>, errors: &mut LoadErrors| {
            let r = Region::new(code);
            if r.is_none() {
                errors.push(
                    f,
                    line,
                    field,
                    format!("{code:?} is not an ISO 3166 alpha-2 region"),
                );
            }
            r
        };
        for (from, to) in &rec.regions.pool_with {
            let a = region(from, "regions.pool_with", rl, errors);
            let b = region(to, "regions.pool_with", rl, errors);
            if let (Some(a), Some(b)) = (a, b) {
                c.pool_with.insert(a, b);
            }
        }
        for (gid, group) in rec.regions.domestic_groups.iter().enumerate() {
            for code in group {
                if let Some(r) = region(code, "regions.domestic_groups", rl, errors) {
                    if c.domestic_group.insert(r, gid as u16).is_some() {
                        errors.push(
                            f,
                            rl,
                            "regions.domestic_groups",
                            format!("{code} is in two groups"),
                        );
                    }
                }
            }
        }
        for code in &rec.regions.international {
            if let Some(r) = region(code, "regions.international", rl, errors) {
                c.international.insert(r);
            }
        }
        for code in &rec.regions.zone_a {
            if let Some(r) = region(code, "regions.zone_a", rl, errors) {
                c.zone_a.push(r);
            }
        }
        let nl = Some(rec.numbers_line);
        let types = |names: &[String], field: &str, errors: &mut LoadErrors| {
            let mut out = Vec::new();
            for n in names {
                match NumberType::from_name(n) {
                    Some(t) => out.push(t),
                    None => errors.push(f, nl, field, format!("unknown number type {n:?}")),
                }
            }
            out
        };
        c.free_domestic = types(&rec.numbers.free_domestic, "numbers.free_domestic", errors);
        c.barred = types(&rec.numbers.barred, "numbers.barred", errors);
        let prefixes = |list: &[String], field: &str, errors: &mut LoadErrors| {
            let mut out = Vec::new();
            for p in list {
                let ok =
                    p.len() > 1 && p.starts_with('+') && p[1..].bytes().all(|b| b.is_ascii_digit());
                if ok {
                    out.push(p.clone());
                } else {
                    errors.push(f, nl, field, format!("{p:?} is not `+` and digits"));
                }
            }
            out
        };
        c.barred_prefixes = prefixes(
            &rec.numbers.barred_prefixes,
            "numbers.barred_prefixes",
            errors,
        );
        c.credits_only = PrefixSet::new(prefixes(
            &rec.numbers.credits_only_prefixes,
            "numbers.credits_only_prefixes",
            errors,
        ));
        c.high_risk = PrefixSet::new(prefixes(
            &rec.numbers.high_risk_prefixes,
            "numbers.high_risk_prefixes",
            errors,
        ));
        for s in &rec.skus {
            let line = Some(s.line);
            let plan = match s.plan.as_deref() {
                None => None,
                Some("domestic") => Some(PlanKind::Domestic),
                Some("international") => Some(PlanKind::International),
                Some("payg") => Some(PlanKind::Payg),
                Some(other) => {
                    errors.push(
                        f,
                        line,
                        "plan",
                        format!("{other:?} is none of `domestic`, `international`, `payg`"),
                    );
                    None
                }
            };
            let regions = s
                .regions
                .iter()
                .filter_map(|code| region(code, "regions", line, errors))
                .collect();
            let mut minutes = HashMap::new();
            let mut minutes_default = 0;
            for (k, v) in &s.minutes {
                if k == "default" {
                    minutes_default = *v;
                } else if let Some(r) = region(k, "minutes", line, errors) {
                    minutes.insert(r, *v);
                }
            }
            if matches!(plan, Some(PlanKind::Domestic | PlanKind::International))
                && !s.minutes.contains_key("default")
            {
                errors.push(f, line, "minutes", "a calling plan needs `minutes.default`");
            }
            if plan == Some(PlanKind::International) && s.international_minutes == 0 {
                errors.push(
                    f,
                    line,
                    "international_minutes",
                    "an international plan needs international minutes",
                );
            }
            let name = s.name.trim().to_ascii_uppercase();
            if c.by_name.contains_key(&name) {
                errors.push(f, line, "name", format!("SKU {name} is defined twice"));
                continue;
            }
            c.by_name.insert(name.clone(), c.skus.len() as u16);
            c.skus.push(Sku {
                name,
                phone_system: s.phone_system,
                plan,
                minutes_default,
                minutes,
                international_minutes: s.international_minutes,
                credits: s.credits,
                conferencing_minutes: s.conferencing_minutes,
                regions,
            });
        }
        c
    }

    /// Whether `region` is in Audio Conferencing's Zone A, where a meeting's dial-out may draw
    /// on the tenant's conferencing pool.
    pub fn is_zone_a(&self, region: Region) -> bool {
        self.zone_a.contains(&region)
    }

    /// Index of a SKU by part number (case-insensitive). Unknown SKUs are `None` and ignored by
    /// the directory: real license exports carry dozens.
    pub fn sku_index(&self, name: &str) -> Option<u16> {
        if let Some(&i) = self.by_name.get(name) {
            return Some(i);
        }
        if !name.bytes().any(|b| b.is_ascii_lowercase()) {
            return None;
        }
        self.by_name.get(&name.to_ascii_uppercase()).copied()
    }

    /// The SKU at an index of [`Catalog::sku_index`].
    pub fn sku(&self, i: u16) -> Option<&Sku> {
        self.skus.get(i as usize)
    }

    /// The region whose pool users of `usage_location` draw from (`PR` → `US`).
    pub fn pool_region(&self, usage_location: Region) -> Region {
        self.pool_with
            .get(&usage_location)
            .copied()
            .unwrap_or(usage_location)
    }

    /// Whether `dest` is domestic for a caller licensed in `caller` (DESIGN §4 rule 8): the same
    /// region, or the same domestic group (US ↔ CA ↔ PR).
    pub fn is_domestic(&self, caller: Region, dest: Region) -> bool {
        if caller == dest {
            return true;
        }
        match (
            self.domestic_group.get(&caller),
            self.domestic_group.get(&dest),
        ) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }

    /// Whether a domestic call to this type is free (toll-free by default).
    pub fn is_free_domestic(&self, t: NumberType) -> bool {
        self.free_domestic.contains(&t)
    }

    /// DESIGN §4 rule 6: premium rate, barred prefixes (UK `+449`), and international
    /// destinations outside the reachable list.
    pub fn is_barred(&self, e164: &str, t: NumberType, dest: Region, domestic: bool) -> bool {
        self.is_barred_bytes(e164.as_bytes(), t, dest, domestic)
    }

    /// [`Catalog::is_barred`] on the bytes of the E.164 string: the decision path has them
    /// at hand ([`crate::numbering::Destination::e164_bytes`]) and need not check UTF-8.
    pub(crate) fn is_barred_bytes(
        &self,
        e164: &[u8],
        t: NumberType,
        dest: Region,
        domestic: bool,
    ) -> bool {
        if has_prefix(&self.barred_prefixes, e164)
            || (self.barred.contains(&t) && !self.is_credits_only(e164))
        {
            return true;
        }
        !domestic && !self.international.is_empty() && !self.international.contains(dest)
    }

    /// Whether `e164` may be called only with Communications Credits
    /// (`[numbers].credits_only_prefixes`: UK shared-cost numbers "are supported using
    /// Communications Credits to pay per minute", calling-plan-rules §4). The number type
    /// barred for the rest of its kind (premium rate) does not bar it.
    pub fn is_credits_only(&self, e164: &[u8]) -> bool {
        self.credits_only.contains(e164)
    }

    /// Whether `e164` starts with one of `[numbers].high_risk_prefixes` (satellite and
    /// international networks, revenue-share ranges; rule 6, [`crate::limits`]).
    pub fn is_high_risk(&self, e164: &[u8]) -> bool {
        self.high_risk.contains(e164)
    }

    /// The entry of `[numbers].high_risk_prefixes` that `e164` matches (the longest).
    pub fn high_risk_prefix(&self, e164: &[u8]) -> Option<&str> {
        self.high_risk.matching(e164)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse_catalog;

    #[test]
    fn region_sets() {
        let mut set = RegionSet::default();
        assert!(set.is_empty());
        for c in ["GB", "us", "001", "ZZ", "AA"] {
            set.insert(Region::new(c).unwrap());
        }
        set.insert(Region::new("GB").unwrap());
        assert_eq!(set.len, 5);
        for c in ["GB", "US", "001", "ZZ", "AA"] {
            assert!(set.contains(Region::new(c).unwrap()), "{c}");
        }
        for c in ["GA", "FR", "AB"] {
            assert!(!set.contains(Region::new(c).unwrap()), "{c}");
        }
    }

    fn shipped() -> Catalog {
        let text = include_str!("../../config/catalog.toml");
        let mut errors = LoadErrors::default();
        let rec = parse_catalog(text, &mut errors);
        let c = Catalog::build(&rec, &mut errors);
        assert!(errors.is_empty(), "{errors}");
        c
    }

    fn r(s: &str) -> Region {
        Region::new(s).unwrap()
    }

    #[test]
    fn shipped_figures() {
        let c = shipped();
        let p1 = c.sku(c.sku_index("MCOPSTN1").unwrap()).unwrap();
        assert_eq!(p1.minutes_for(r("US")), 3000);
        assert_eq!(p1.minutes_for(r("GB")), 3000);
        assert_eq!(p1.minutes_for(r("DE")), 1200);
        let p2 = c.sku(c.sku_index("mcopstn2").unwrap()).unwrap();
        assert_eq!(p2.plan, Some(PlanKind::International));
        assert_eq!(p2.international_minutes, 600);
        assert_eq!(
            c.sku(c.sku_index("MCOPSTN5").unwrap())
                .unwrap()
                .minutes_for(r("US")),
            120
        );
        assert_eq!(
            c.sku(c.sku_index("MCOPSTN6").unwrap())
                .unwrap()
                .minutes_for(r("FR")),
            240
        );
        assert!(c.sku_index("ENTERPRISEPACK").is_none());
    }

    #[test]
    fn regions_and_numbers() {
        let c = shipped();
        assert_eq!(c.pool_region(r("PR")), r("US"));
        assert_eq!(c.pool_region(r("DE")), r("DE"));
        assert!(c.is_domestic(r("US"), r("CA")));
        assert!(c.is_domestic(r("CA"), r("US")));
        assert!(c.is_domestic(r("PR"), r("US")));
        assert!(!c.is_domestic(r("US"), r("MX")));
        assert!(!c.is_domestic(r("GB"), r("FR")));
        assert!(c.is_free_domestic(NumberType::TollFree));
        assert!(c.is_barred("+19005550100", NumberType::PremiumRate, r("US"), true));
        assert!(c.is_barred("+449012345678", NumberType::Unknown, r("GB"), true));
        assert!(!c.is_barred("+442079460000", NumberType::FixedLine, r("GB"), false));
    }

    #[test]
    fn bad_catalog_reports_every_error() {
        let text = "[regions]\npool_with = { PRX = \"US\" }\n[numbers]\nbarred = [\"nope\"]\n\
                    [[sku]]\nname = \"X\"\nplan = \"weird\"\n";
        let mut errors = LoadErrors::default();
        let rec = parse_catalog(text, &mut errors);
        Catalog::build(&rec, &mut errors);
        let fields: Vec<_> = errors
            .0
            .iter()
            .map(|e| (e.line, e.field.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                (Some(1), "regions.pool_with"),
                (Some(3), "numbers.barred"),
                (Some(5), "plan")
            ]
        );
    }
}
