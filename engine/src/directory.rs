//! The directory snapshot: tenants, users, the catalog and rates, checked and indexed
//! (DESIGN §3).
//!
//! A [`Snapshot`] is immutable. The engine keeps the live one behind `arc-swap`: a reload builds
//! a new snapshot off to the side and swaps it in, so readers never wait on a reload. Lookups go
//! by UPN (`alice@contoso.com`, case-insensitive, alias domains of the tenant accepted) and by
//! line URI (E.164, held as an integer so a lookup allocates nothing).

use std::collections::HashMap;
use std::sync::Arc;

use crate::bytes::{find_either, trim};
use crate::catalog::{Catalog, PlanKind};
use crate::conference::Cpc;
use crate::credits::{Money, Rates};
use crate::dialplan::{DialPlans, DIALPLANS_FILE};
use crate::fxhash::FxMap;
use crate::load::{
    self, DirectoryFiles, LoadErrors, Records, TenantRecord, UserRecord, TENANTS_FILE, USERS_FILE,
};
use crate::numbering::{metadata, Region};
use crate::pools::{PoolKey, PoolKind};
use crate::routing::{Routing, ROUTING_FILE};

/// The optional files' text: `None`, the directory has none; `Some(None)`, it could not be
/// read (reported already).
#[derive(Clone, Copy, Default)]
struct Optional<'a> {
    routing: Option<Option<&'a str>>,
    dialplans: Option<Option<&'a str>>,
}

/// A tenant of `tenants.toml`, checked: the unit pools, credits and limits belong to.
#[derive(Clone, Debug)]
pub struct Tenant {
    /// The id users refer to in `users.csv`, and pools and the ledger carry.
    pub id: Arc<str>,
    /// Display name.
    pub name: String,
    /// The tenant's SIP domains, lower case: a UPN's domain must be one of them, and a caller
    /// under any of them matches (alias domains).
    pub domains: Vec<String>,
    /// The configured Communications Credits balance (rule 10); the live one is the engine's
    /// ([`crate::Engine::credits_balance`]).
    pub credits: Money,
    /// The currency of `credits` and `rates.csv` prices (informational).
    pub currency: String,
    /// Per-user monthly cap on credits spending (`-CallingSpendUserLimit`, calling-plan-rules
    /// §3): [`crate::Reason::SpendLimitReached`] beyond it.
    pub user_spend_limit: Option<Money>,
    /// Direct Routing gateways: (id, route).
    pub gateways: Vec<(String, Arc<str>)>,
    /// `[tenant.limits]` and `[[tenant.velocity]]`: the abuse controls ([`crate::limits`]).
    pub limits: crate::limits::Limits,
}

/// The `PSTN…` axis of an OnlineDialOutPolicy (DESIGN §4 rule 5;
/// `outbound-calling-restriction-policies.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialOut {
    /// `…PSTNInternational`, the default: any destination.
    International,
    /// `…PSTNDomestic`: domestic destinations only.
    Domestic,
    /// `…PSTNDisabled`: no PSTN call "besides emergency numbers".
    Disabled,
}

impl DialOut {
    /// Reads the PSTN part of one of the 12 policy names, e.g.
    /// `DialoutCPCInternationalPSTNDomestic` → `Domestic`. Empty → the default
    /// (`DialoutCPCandPSTNInternational`: "By default, both controls are set to allow
    /// international and domestic outbound calls").
    pub fn from_policy(name: &str) -> Option<DialOut> {
        let n = name.trim();
        if n.is_empty() {
            return Some(DialOut::International);
        }
        let lower = n.to_ascii_lowercase();
        let rest = lower.strip_prefix("dialoutcpc")?;
        let (cpc, pstn) = rest.split_once("pstn")?;
        if !matches!(
            cpc,
            "and" | "international" | "domestic" | "disabled" | "zonea"
        ) {
            return None;
        }
        match pstn {
            "international" => Some(DialOut::International),
            "domestic" => Some(DialOut::Domestic),
            "disabled" => Some(DialOut::Disabled),
            _ => None,
        }
    }
}

/// A pool while the snapshot is built: (tenant index, pool region, SKU index, kind).
type PoolIx = (u32, Region, u16, PoolKind);

/// Sentinel for "no pool".
pub(crate) const NO_POOL: u32 = u32::MAX;

/// A user, with everything the decision needs precomputed (pools by id, no map on the hot path).
#[derive(Clone, Debug)]
pub struct User {
    /// The user principal name, lower case (`alice@contoso.com`).
    pub upn: Arc<str>,
    /// Index of the user's tenant in [`Snapshot::tenants`].
    pub tenant: u32,
    /// E.164 digits of the line URI as an integer (`+14255550101` → 14255550101).
    pub line: Option<u64>,
    /// The license location, not the billing address (calling-plan-rules §5): what is
    /// domestic for the user, which emergency numbers apply, how national numbers read.
    pub usage_location: Region,
    /// The region whose pools the user draws on: the usage location, or the region it pools
    /// with (`PR` → `US`, calling-plan-rules §2).
    pub pool_region: Region,
    /// Holds Phone System (MCOEV, or an E5 that includes it): rule 3.
    pub phone_system: bool,
    /// The calling-plan SKU that decides the pools (the best one held), and its kind.
    pub plan: Option<(u16, PlanKind)>,
    /// Holds Communications Credits (MCOPSTNC).
    pub credits: bool,
    /// Direct Routing gateway (index into the tenant's gateways).
    pub gateway: Option<u32>,
    /// The user's dial plan (index into [`DialPlans::plans`]): the one they name, else their
    /// tenant's default.
    pub dial_plan: Option<u32>,
    /// Voice routing policy (`policy:<id>`; index into [`Routing::policies`]).
    pub voice_policy: Option<u32>,
    /// The PSTN axis of the user's OnlineDialOutPolicy (rule 5).
    pub dial_out: DialOut,
    /// The CPC axis of the same policy: their meetings' dial-out ([`crate::conference`]).
    pub cpc: Cpc,
    /// The user's own live-call limit (`users.csv` `concurrent_calls`; `Some(0)`: none);
    /// `None`: the tenant's `user_concurrent_calls`.
    pub concurrent_calls: Option<u32>,
    pub(crate) domestic_pool: u32,
    pub(crate) international_pool: u32,
    pub(crate) conference_pool: u32,
}

impl User {
    /// The id of the user's domestic pool in [`Snapshot::pools`], if their plan has one.
    pub fn domestic_pool(&self) -> Option<u32> {
        (self.domestic_pool != NO_POOL).then_some(self.domestic_pool)
    }

    /// The id of the user's international pool (International plan only, rule 9).
    pub fn international_pool(&self) -> Option<u32> {
        (self.international_pool != NO_POOL).then_some(self.international_pool)
    }

    /// The id of the tenant's Audio Conferencing pool, if the user holds a licence that
    /// draws on it ([`crate::conference`]).
    pub fn conference_pool(&self) -> Option<u32> {
        (self.conference_pool != NO_POOL).then_some(self.conference_pool)
    }
}

/// The SKU slot of a tenant's Audio Conferencing pool while the snapshot is built: one pool
/// for every conferencing SKU (MCOMEETADV, E5), named [`CONFERENCE_SKU_NAME`].
const CONFERENCE_SKU: u16 = u16::MAX;

/// A user's `conference_pool` while the snapshot is built: they hold a conferencing licence,
/// and the pool's id is not known yet.
const LICENSED: u32 = u32::MAX - 1;

/// The SKU name of a tenant's Audio Conferencing pool in its [`PoolKey`].
pub const CONFERENCE_SKU_NAME: &str = "AudioConferencing";

/// An immutable, indexed directory.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Tenants in `tenants.toml` order; [`User::tenant`] indexes it.
    pub tenants: Vec<Tenant>,
    /// Users in `users.csv` order.
    pub users: Vec<User>,
    /// The checked `catalog.toml`.
    pub catalog: Catalog,
    /// The checked `rates.csv`.
    pub rates: Rates,
    /// Pools by id: key and capacity in seconds for the month.
    pub pools: Vec<(PoolKey, u64)>,
    /// The voice routing policies of `routing.toml` (none without the file).
    pub routing: Routing,
    /// The tenant dial plans of `dialplans.toml` (none without the file).
    pub dial_plans: DialPlans,
    by_upn: FxMap<Arc<str>, u32>,
    by_line: FxMap<u64, u32>,
    by_domain: FxMap<String, u32>,
}

/// Parses `+` and 1–15 digits (after an optional `tel:`) into an integer.
pub(crate) fn e164_digits(s: &str) -> Option<u64> {
    let s = s.strip_prefix("tel:").unwrap_or(s);
    let s = s.split(';').next().unwrap_or(s);
    let d = s.strip_prefix('+')?;
    if d.len() < 4 || d.len() > 15 || !d.bytes().all(|b| b.is_ascii_digit()) || d.starts_with('0') {
        return None;
    }
    d.parse().ok()
}

impl Snapshot {
    /// Parses and checks the four files of a directory (read by the caller: the engine does no
    /// I/O); every error of every file is reported. `users.csv` is streamed: one row at a time
    /// is parsed, checked and indexed.
    pub fn from_files(mut files: DirectoryFiles) -> Result<Snapshot, LoadErrors> {
        let routing = files.routing.take();
        let dialplans = files.dialplans.take();
        let (rec, users, mut read_errors) = load::read_dir_deferred(files);
        // Present but unreadable: `Some(None)` (its users are not reported again).
        let routing = routing.map(|f| load::text(ROUTING_FILE, f, &mut read_errors));
        let dialplans = dialplans.map(|f| load::text(DIALPLANS_FILE, f, &mut read_errors));
        // Without tenants or the catalog every user would be an error: stop at those.
        let blocking = [load::TENANTS_FILE, load::CATALOG_FILE];
        if read_errors
            .0
            .iter()
            .any(|e| blocking.contains(&e.file.as_str()))
        {
            return Err(read_errors);
        }
        let users = users.unwrap_or_default();
        let hint = users.bytes().filter(|&b| b == b'\n').count();
        let mut csv_errors = LoadErrors::default();
        let optional = Optional {
            routing: routing.as_ref().map(|t| t.as_deref()),
            dialplans: dialplans.as_ref().map(|t| t.as_deref()),
        };
        let (snap, mut errors) = Snapshot::build_with(rec, optional, hint, |add| {
            if !users.is_empty() {
                load::for_each_user(&users, &mut csv_errors, add)
            }
        });
        errors.0.extend(read_errors.0);
        errors.0.extend(csv_errors.0);
        finish(snap, errors)
    }

    /// Checks and indexes parsed records.
    pub fn build(mut rec: Records) -> Result<Snapshot, LoadErrors> {
        let users = std::mem::take(&mut rec.users);
        let (snap, errors) = Snapshot::build_with(rec, Optional::default(), users.len(), |add| {
            // Consumed one by one: each record's strings are freed as soon as it is indexed.
            for u in users {
                add(&u);
            }
        });
        finish(snap, errors)
    }

    /// Builds from `rec` (its `users` ignored), the text of `routing.toml` if there is one
    /// (`Some(None)`: there is one, but it could not be read), and the users `feed` passes to
    /// its argument.
    fn build_with(
        rec: Records,
        optional: Optional<'_>,
        hint: usize,
        feed: impl FnOnce(&mut dyn FnMut(&UserRecord)),
    ) -> (Snapshot, LoadErrors) {
        let mut errors = LoadErrors::default();
        let catalog = Catalog::build(&rec.catalog, &mut errors);
        let rates = Rates::build(&rec.rates, &mut errors);
        let mut s = Snapshot {
            catalog,
            rates,
            ..Snapshot::default()
        };
        let mut tenant_ix: HashMap<String, u32> = HashMap::new();
        for t in rec.tenants {
            s.add_tenant(t, &mut tenant_ix, &mut errors);
        }
        // After the tenants (routes name their gateways), before the users (who name policies).
        s.routing = Routing::build(optional.routing, &s.tenants, &tenant_ix, &mut errors);
        s.dial_plans = DialPlans::build(optional.dialplans, &tenant_ix, &mut errors);
        let mut pool_ix: FxMap<PoolIx, u64> = FxMap::default();
        s.users.reserve(hint);
        s.by_upn.reserve(hint);
        s.by_line.reserve(hint);
        let mut skus: Vec<u16> = Vec::new();
        feed(&mut |u| s.add_user(u, &tenant_ix, &mut pool_ix, &mut skus, &mut errors));
        // Pool ids in a stable order (tenant, region, SKU, kind), then stored on each user.
        let mut pools: Vec<(PoolIx, u64)> = pool_ix.into_iter().collect();
        pools.sort_unstable_by_key(|(k, _)| *k);
        let ids: FxMap<PoolIx, u32> = pools
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (*k, i as u32))
            .collect();
        for u in &mut s.users {
            if u.conference_pool == LICENSED {
                u.conference_pool = ids
                    .get(&(
                        u.tenant,
                        Region::NON_GEO,
                        CONFERENCE_SKU,
                        PoolKind::Conference,
                    ))
                    .copied()
                    .unwrap_or(NO_POOL);
            }
            if let Some((sku, kind)) = u.plan {
                let id = |k| ids.get(&(u.tenant, u.pool_region, sku, k)).copied();
                u.domestic_pool = id(PoolKind::Domestic).unwrap_or(NO_POOL);
                if kind == PlanKind::International {
                    u.international_pool = id(PoolKind::International).unwrap_or(NO_POOL);
                }
            }
        }
        let sku_names: Vec<Arc<str>> = s
            .catalog
            .skus
            .iter()
            .map(|k| Arc::from(k.name.as_str()))
            .collect();
        let conference: Arc<str> = Arc::from(CONFERENCE_SKU_NAME);
        s.pools = pools
            .into_iter()
            .filter_map(|((t, region, sku, kind), cap)| {
                let sku = match sku {
                    CONFERENCE_SKU => Arc::clone(&conference),
                    i => Arc::clone(sku_names.get(i as usize)?),
                };
                let key = PoolKey {
                    tenant: Arc::clone(&s.tenants.get(t as usize)?.id),
                    region,
                    sku,
                    kind,
                };
                Some((key, cap))
            })
            .collect();
        (s, errors)
    }

    fn add_tenant(
        &mut self,
        t: TenantRecord,
        ix: &mut HashMap<String, u32>,
        errors: &mut LoadErrors,
    ) {
        let f = TENANTS_FILE;
        let line = Some(t.line);
        let id = t.id.trim().to_string();
        if id.is_empty() {
            errors.push(f, line, "id", "empty tenant id");
            return;
        }
        if ix.contains_key(&id) {
            errors.push(f, line, "id", format!("tenant {id:?} is defined twice"));
            return;
        }
        let money = |v: &Option<String>, field: &str, errors: &mut LoadErrors| match v {
            None => Some(Money::ZERO),
            Some(s) => {
                let m = Money::parse(s);
                if m.is_none() {
                    errors.push(f, line, field, format!("{s:?} is not a decimal amount"));
                }
                m
            }
        };
        let credits = money(&t.credits, "credits", errors).unwrap_or_default();
        let user_spend_limit = match t.user_spend_limit {
            None => None,
            ref v => money(v, "user_spend_limit", errors),
        };
        let n = self.tenants.len() as u32;
        let mut domains = Vec::new();
        for d in &t.domains {
            let d = d.trim().to_ascii_lowercase();
            if d.is_empty() || d.contains('@') || !d.contains('.') {
                errors.push(f, line, "domains", format!("{d:?} is not a domain name"));
            } else if let Some(&other) = self.by_domain.get(&d) {
                let owner = self
                    .tenants
                    .get(other as usize)
                    .map(|t| &*t.id)
                    .unwrap_or("?");
                errors.push(
                    f,
                    line,
                    "domains",
                    format!("{d} already belongs to tenant {owner}"),
                );
            } else {
                self.by_domain.insert(d.clone(), n);
                domains.push(d);
            }
        }
        // A gateway becomes the host part of the 302's Contact for every call of its users:
        // one that cannot (a space, `>`, an empty host) is refused here, not on the wire.
        let mut gateways = Vec::with_capacity(t.direct_routing.len());
        for (k, v) in t.direct_routing {
            match crate::config::check_gateway(v.trim()) {
                Ok(()) => gateways.push((k, Arc::from(v.trim()))),
                Err(m) => errors.push(
                    f,
                    line,
                    &format!("direct_routing.{k}"),
                    format!("{v:?}: {m}"),
                ),
            }
        }
        let limits = crate::limits::Limits::build(t.limits.as_ref(), &t.velocity, t.line, errors);
        ix.insert(id.clone(), n);
        self.tenants.push(Tenant {
            id: id.into(),
            name: t.name,
            domains,
            credits,
            currency: t.currency.unwrap_or_default(),
            user_spend_limit,
            gateways,
            limits,
        });
    }

    fn add_user(
        &mut self,
        u: &UserRecord,
        tenant_ix: &HashMap<String, u32>,
        pools: &mut FxMap<PoolIx, u64>,
        skus: &mut Vec<u16>,
        errors: &mut LoadErrors,
    ) {
        let f = USERS_FILE;
        let line = Some(u.line);
        let before = errors.0.len();
        let tenant = tenant_ix.get(u.tenant.trim()).copied();
        if tenant.is_none() {
            errors.push(f, line, "tenant", format!("unknown tenant {:?}", u.tenant));
        }
        let upn = u.user.trim().to_ascii_lowercase();
        match upn.split_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                if let Some(t) = tenant {
                    if self.by_domain.get(domain) != Some(&t) {
                        errors.push(
                            f,
                            line,
                            "user",
                            format!(
                                "domain {domain} is not a domain of tenant {}",
                                u.tenant.trim()
                            ),
                        );
                    }
                }
            }
            _ => errors.push(
                f,
                line,
                "user",
                format!("{:?} is not a UPN (user@domain)", u.user),
            ),
        }
        if self.by_upn.contains_key(upn.as_str()) {
            errors.push(f, line, "user", format!("{upn} appears twice"));
        }
        let lu = u.line_uri.trim();
        let line_no = if lu.is_empty() {
            None
        } else {
            let n = e164_digits(lu);
            match n {
                None => errors.push(
                    f,
                    line,
                    "line_uri",
                    format!("{lu:?} is not an E.164 number (+ and digits)"),
                ),
                Some(n) if self.by_line.contains_key(&n) => {
                    errors.push(f, line, "line_uri", format!("{lu} is assigned twice"))
                }
                _ => {}
            }
            n
        };
        // A usage location the numbering plan does not know would make its users' national
        // numbers, 999 and 15 among them, unreadable (`UK` is not ISO 3166: `GB` is).
        let usage_location =
            Region::new(u.usage_location.trim()).filter(|r| metadata::is_builtin_region(*r));
        if usage_location.is_none() {
            errors.push(
                f,
                line,
                "usage_location",
                format!(
                    "{:?} is not an ISO 3166-1 alpha-2 region of the numbering plan",
                    u.usage_location
                ),
            );
        }
        // Licenses: `;`-separated SKU part numbers; unknown SKUs are ignored (DESIGN §3), but a
        // token that cannot be a part number (`MCOEV MCOPSTN1`, `MCOEV,MCOPSTN1`) is refused:
        // read as one unknown SKU it would silently take every license of the user away.
        skus.clear();
        for l in u
            .licenses
            .split(';')
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            if !l
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                errors.push(
                    f,
                    line,
                    "licenses",
                    format!("{l:?} is not a SKU part number: separate licenses with `;`"),
                );
                continue;
            }
            skus.extend(self.catalog.sku_index(l));
        }
        let mut phone_system = false;
        let mut credits = false;
        let mut conferencing_minutes = 0;
        let mut plan: Option<(u16, PlanKind)> = None;
        for &i in skus.iter() {
            let Some(sku) = self.catalog.sku(i) else {
                continue;
            };
            // A plan sold for other usage locations (a PAYG plan of another zone) grants
            // nothing here.
            if usage_location.is_some_and(|r| !sku.sold_in(r)) {
                continue;
            }
            phone_system |= sku.phone_system;
            // A Pay-As-You-Go plan pays every call from Communications Credits, MCOPSTNC or not.
            credits |= sku.credits || sku.plan == Some(PlanKind::Payg);
            conferencing_minutes = conferencing_minutes.max(sku.conferencing_minutes);
            if let Some(kind) = sku.plan {
                plan = Some(match plan {
                    Some(best) if self.better_plan(best, (i, kind), usage_location) => best,
                    _ => (i, kind),
                });
            }
        }
        let dial_plan = self.dial_plans.user_plan(
            &u.dial_plan,
            tenant.map(|t| (t, u.tenant.trim())),
            u.line,
            errors,
        );
        let mut voice_policy = None;
        let gateway = match u.voice_routing.trim() {
            "" | "calling_plan" => None,
            v if v.starts_with("policy:") => {
                let id = &v["policy:".len()..];
                let t = tenant.map(|t| (t, u.tenant.trim()));
                voice_policy = self.routing.user_policy(id, t, u.line, errors);
                None
            }
            v => match (v.strip_prefix("direct_routing:"), tenant) {
                (Some(gw), Some(t)) => {
                    let g = self.tenants[t as usize]
                        .gateways
                        .iter()
                        .position(|(id, _)| id == gw.trim());
                    if g.is_none() {
                        errors.push(
                            f,
                            line,
                            "voice_routing",
                            format!(
                                "tenant {} has no Direct Routing gateway {gw:?}",
                                u.tenant.trim()
                            ),
                        );
                    }
                    g.map(|g| g as u32)
                }
                (Some(_), None) => None,
                (None, _) => {
                    errors.push(
                        f,
                        line,
                        "voice_routing",
                        format!(
                            "{v:?} is none of `calling_plan`, `direct_routing:<gateway>`, \
                             `policy:<id>`"
                        ),
                    );
                    None
                }
            },
        };
        let concurrent_calls = match u.concurrent_calls.trim() {
            "" => None,
            n => match n.parse::<u32>() {
                Ok(n) => Some(n),
                Err(_) => {
                    errors.push(
                        f,
                        line,
                        "concurrent_calls",
                        format!("{n:?} is not a whole number of calls (0: no limit)"),
                    );
                    None
                }
            },
        };
        let dial_out = DialOut::from_policy(&u.dial_out_policy);
        let cpc = Cpc::from_policy(&u.dial_out_policy);
        if dial_out.is_none() || cpc.is_none() {
            errors.push(
                f,
                line,
                "dial_out_policy",
                format!("{:?} is not an OnlineDialOutPolicy name", u.dial_out_policy),
            );
        }
        let (Some(tenant), Some(usage_location), Some(dial_out), Some(cpc), true) = (
            tenant,
            usage_location,
            dial_out,
            cpc,
            errors.0.len() == before,
        ) else {
            return;
        };
        // The tenant's conferencing pool: licences × their minutes, whatever the country
        // ("shared regardless of organizer location"). A user holding two conferencing SKUs
        // (E5 and MCOMEETADV) counts once, with the larger figure.
        if conferencing_minutes > 0 {
            *pools
                .entry((
                    tenant,
                    Region::NON_GEO,
                    CONFERENCE_SKU,
                    PoolKind::Conference,
                ))
                .or_insert(0) += u64::from(conferencing_minutes) * 60;
        }
        let pool_region = self.catalog.pool_region(usage_location);
        // Capacity counts assigned licenses: minutes(SKU, usage location) per user holding it.
        // A Pay-As-You-Go plan has no minutes, so no pool.
        if let Some((sku_i, kind)) = plan.filter(|(_, k)| *k != PlanKind::Payg) {
            if let Some(sku) = self.catalog.sku(sku_i) {
                let mut add = |k: PoolKind, minutes: u32| {
                    *pools.entry((tenant, pool_region, sku_i, k)).or_insert(0) +=
                        u64::from(minutes) * 60;
                };
                add(PoolKind::Domestic, sku.minutes_for(usage_location));
                if kind == PlanKind::International {
                    add(PoolKind::International, sku.international_minutes);
                }
            }
        }
        let upn: Arc<str> = upn.into();
        let idx = self.users.len() as u32;
        self.by_upn.insert(Arc::clone(&upn), idx);
        if let Some(n) = line_no {
            self.by_line.insert(n, idx);
        }
        self.users.push(User {
            upn,
            tenant,
            line: line_no,
            usage_location,
            pool_region,
            phone_system,
            plan,
            credits,
            gateway,
            voice_policy,
            dial_plan,
            dial_out,
            cpc,
            concurrent_calls,
            domestic_pool: NO_POOL,
            international_pool: NO_POOL,
            // Its id once pool ids are known.
            conference_pool: if conferencing_minutes > 0 {
                LICENSED
            } else {
                NO_POOL
            },
        });
    }

    /// When a user holds several calling-plan SKUs, the International plan wins, then the one
    /// with the most domestic minutes; a Pay-As-You-Go plan last (its credits still pay once
    /// the bundled minutes run out: "overages on plans with bundled minutes").
    fn better_plan(&self, a: (u16, PlanKind), b: (u16, PlanKind), region: Option<Region>) -> bool {
        let rank = |(i, k): (u16, PlanKind)| {
            let m = match (self.catalog.sku(i), region) {
                (Some(s), Some(r)) => s.minutes_for(r),
                _ => 0,
            };
            (k != PlanKind::Payg, k == PlanKind::International, m)
        };
        rank(a) >= rank(b)
    }

    /// Finds a caller: `alice@contoso.com`, `sip:alice@contoso.com`, `+14255550101`,
    /// `tel:+14255550101`, `sip:+14255550101@contoso.com;user=phone`. A UPN under an alias
    /// domain of the same tenant matches; an E.164 user part with a domain of another tenant
    /// does not.
    pub fn lookup(&self, id: &str) -> Option<(u32, &User)> {
        let id = trim(id);
        let id = match id.as_bytes().first() {
            Some(b's') => id
                .strip_prefix("sip:")
                .or_else(|| id.strip_prefix("sips:"))
                .unwrap_or(id),
            Some(b't') => id.strip_prefix("tel:").unwrap_or(id),
            _ => id,
        };
        // The end of the user part (`;` starts URI parameters) and the first `@` before it,
        // eight bytes at a time: this runs for every INVITE.
        let bytes = id.as_bytes();
        let (at, end) = match find_either(bytes, b';', b'@') {
            None => (None, bytes.len()),
            Some(i) if bytes[i] == b';' => (None, i),
            Some(i) => {
                let end =
                    find_either(&bytes[i + 1..], b';', b';').map_or(bytes.len(), |j| i + 1 + j);
                (Some(i), end)
            }
        };
        let id = &id[..end];
        let (local, domain) = match at {
            Some(i) => (&id[..i], Some(&id[i + 1..])),
            None => (id, None),
        };
        if local.starts_with('+') {
            let i = *self.by_line.get(&e164_digits(local)?)?;
            let user = self.users.get(i as usize)?;
            if let Some(d) = domain {
                // A domain that belongs to another tenant makes the identity inconsistent.
                if let Some(t) = self.domain_tenant(d) {
                    if t != user.tenant {
                        return None;
                    }
                }
            }
            return Some((i, user));
        }
        let domain = domain?;
        let i = match self.by_upn.get(id) {
            Some(&i) => i,
            None => {
                let lower = id.to_ascii_lowercase();
                match self.by_upn.get(lower.as_str()) {
                    Some(&i) => i,
                    None => {
                        // Alias domain: the same local part under another domain of the tenant.
                        let t = self.domain_tenant(domain)?;
                        let tenant = self.tenants.get(t as usize)?;
                        let local = local.to_ascii_lowercase();
                        tenant.domains.iter().find_map(|d| {
                            self.by_upn.get(format!("{local}@{d}").as_str()).copied()
                        })?
                    }
                }
            }
        };
        self.users.get(i as usize).map(|u| (i, u))
    }

    fn domain_tenant(&self, domain: &str) -> Option<u32> {
        self.by_domain
            .get(domain)
            .or_else(|| self.by_domain.get(&domain.to_ascii_lowercase()))
            .copied()
    }

    /// The tenant at index `i` ([`User::tenant`]).
    pub fn tenant(&self, i: u32) -> Option<&Tenant> {
        self.tenants.get(i as usize)
    }

    /// Whether `e164` is the line URI of a user of `caller`'s tenant (another one, or the
    /// caller's own line: a user may call their voicemail). One hash lookup, no allocation.
    pub fn is_internal(&self, caller: &User, e164: &[u8]) -> bool {
        if self.by_line.is_empty() {
            return false;
        }
        // `+` and the digits as one integer, as line URIs are indexed ([`e164_digits`]),
        // without going through text.
        let Some((b'+', digits)) = e164.split_first() else {
            return false;
        };
        if digits.len() < 4 || digits.len() > 15 || digits.first() == Some(&b'0') {
            return false;
        }
        let mut n = 0u64;
        for &b in digits {
            if !b.is_ascii_digit() {
                return false;
            }
            n = n * 10 + u64::from(b - b'0');
        }
        Some(n)
            .and_then(|n| self.by_line.get(&n))
            .and_then(|&i| self.users.get(i as usize))
            .is_some_and(|callee| callee.tenant == caller.tenant)
    }

    /// The route of a Direct Routing user.
    pub fn gateway_route(&self, user: &User) -> Option<&Arc<str>> {
        let g = user.gateway?;
        self.tenants
            .get(user.tenant as usize)?
            .gateways
            .get(g as usize)
            .map(|(_, r)| r)
    }
}

/// Errors in file order (catalog, rates, tenants, users), then line order.
fn finish(snap: Snapshot, mut errors: LoadErrors) -> Result<Snapshot, LoadErrors> {
    let rank = |f: &str| match f {
        load::CATALOG_FILE => 0,
        load::RATES_FILE => 1,
        load::TENANTS_FILE => 2,
        ROUTING_FILE => 3,
        DIALPLANS_FILE => 4,
        _ => 5,
    };
    errors.0.sort_by_key(|e| (rank(&e.file), e.line));
    errors.into_result(snap)
}

#[cfg(test)]
#[path = "directory_tests.rs"]
mod tests;
