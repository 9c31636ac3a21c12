//! Voice routing policies for Direct Routing: `routing.toml` (DESIGN §3) and the Contact set of
//! a call they route (DESIGN §2, §4 rule 7).
//!
//! The Teams model (teams-pstn-features §2.4, `direct-routing-voice-routing.md`): a user's voice
//! routing policy is an ordered list of **PSTN usages**; a usage holds **voice routes**, each a
//! number pattern, a priority and a list of gateways (SBCs). For a call:
//! - the usages are tried in order, and "if a match is found in the first usage, then other
//!   usages are never evaluated";
//! - within the deciding usage, every route whose pattern matches takes part, "the lowest
//!   priority will be applied first" (`New-CsOnlineVoiceRoute`): the 302 carries one Contact
//!   per gateway, those of the first matching route sharing the highest `q` (1.0), then each
//!   further matching route a lower one (0.9, 0.8, …), so the proxy fails over route by route
//!   (RFC 3261 §20.10: `q` is 0–1 with at most three decimals). A gateway already listed keeps
//!   its first (highest) `q`;
//! - nothing matches: a user with a Calling Plan (or Communications Credits) falls back to it
//!   ("applies automatically as the last route"); anyone else's call is "dropped": `no_route`.
//!
//! Patterns are compiled once at load (the `regex` crate: no look-around or back-references,
//! which Teams' .NET patterns may use; such a pattern is a load error naming the route). A
//! pattern is tested against the E.164 form of the number (`+14255550100`) and, as .NET
//! `Regex.IsMatch` does, may match anywhere unless anchored (`^…$`).
//!
//! Per call nothing is allocated: the decision carries the usage (an `Arc` clone) and a bit set
//! of its routes that matched, and [`PolicyRoute::contacts`] walks them when the 302 is written.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use crate::directory::Tenant;
use crate::load::{line_of, LoadErrors};

/// The optional file of voice routing policies in the directory.
pub const ROUTING_FILE: &str = "routing.toml";

/// At most this many routes in one usage of a tenant: a call's matching routes are a bit set.
pub const MAX_ROUTES_PER_USAGE: usize = 64;

/// The `q` of each failover level (RFC 3261 §20.10: 0 to 1, at most three decimals): ten steps
/// of 0.1, then of 0.01, then of 0.001. Any level beyond shares the last value (the Contacts
/// stay in order).
const Q: [&str; 28] = [
    "1.0", "0.9", "0.8", "0.7", "0.6", "0.5", "0.4", "0.3", "0.2", "0.1", "0.09", "0.08", "0.07",
    "0.06", "0.05", "0.04", "0.03", "0.02", "0.01", "0.009", "0.008", "0.007", "0.006", "0.005",
    "0.004", "0.003", "0.002", "0.001",
];

/// The `q` of failover level `level` (0: the first matching route).
pub fn q_value(level: usize) -> &'static str {
    Q.get(level).copied().unwrap_or(Q[Q.len() - 1])
}

/// A gateway a route sends calls to: its id in `[tenant.direct_routing]` and its host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gateway {
    /// The id (`sbc1`); empty for a route read back from the ledger.
    pub id: Arc<str>,
    /// The Contact host (`sbc1.contoso.com:5061;transport=tls`).
    pub host: Arc<str>,
}

/// A checked `[[voice_route]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoiceRoute {
    /// `name` (unique in its tenant); empty for a route read back from the ledger.
    pub name: Arc<str>,
    /// `priority`: the lowest is tried first.
    pub priority: u32,
    /// `gateways`, in file order; they share one `q`.
    pub gateways: Vec<Gateway>,
}

/// A PSTN usage of one tenant: its routes by priority, lowest first, and their patterns.
#[derive(Debug)]
pub struct Usage {
    /// The usage's name (`US and Canada`).
    pub name: Arc<str>,
    /// The routes that name this usage, by priority (lowest first).
    pub routes: Vec<VoiceRoute>,
    /// `routes[i]`'s compiled pattern (empty for a usage read back from the ledger).
    patterns: Vec<Regex>,
}

/// A checked `[[voice_routing_policy]]`.
#[derive(Debug)]
pub struct Policy {
    /// Index of the tenant in [`crate::Snapshot::tenants`].
    pub tenant: u32,
    /// `id`, unique in its tenant; users.csv `voice_routing = policy:<id>` names it.
    pub id: Arc<str>,
    /// `usages`, in order: the first with a matching route decides.
    pub usages: Vec<Arc<Usage>>,
}

/// Every voice routing policy of the directory.
#[derive(Debug, Default)]
pub struct Routing {
    policies: Vec<Policy>,
    by_id: HashMap<(u32, String), u32>,
    /// The file could not be read or parsed: users naming a policy are not reported again.
    broken: bool,
}

/// Where a call admitted by a voice routing policy goes: the deciding usage and which of its
/// routes matched. Cloning copies an `Arc` and two words.
#[derive(Clone, Debug)]
pub struct PolicyRoute {
    /// The user's policy id (empty for a route read back from the ledger).
    pub policy: Arc<str>,
    /// The first usage of the policy with a matching route.
    pub usage: Arc<Usage>,
    /// Bit `i` set: `usage.routes[i]` matched.
    pub matched: u64,
}

/// Two routes are the same when they send the call to the same Contacts with the same `q`: what
/// the ledger keeps of a route (its names are for `decide` and the log).
impl PartialEq for PolicyRoute {
    fn eq(&self, other: &Self) -> bool {
        self.contacts()
            .map(|c| (&*c.gateway.host, c.q))
            .eq(other.contacts().map(|c| (&*c.gateway.host, c.q)))
    }
}

impl Eq for PolicyRoute {}

/// One Contact of a 302: a gateway, the route that put it there, and its `q`.
#[derive(Clone, Copy, Debug)]
pub struct Contact<'a> {
    /// The matching route.
    pub route: &'a VoiceRoute,
    /// The gateway.
    pub gateway: &'a Gateway,
    /// Its `q` (`"1.0"`, `"0.9"`, …).
    pub q: &'static str,
}

impl PolicyRoute {
    /// The deciding route: the matching one with the lowest priority.
    pub fn first_route(&self) -> Option<&VoiceRoute> {
        self.usage
            .routes
            .get(self.matched.trailing_zeros() as usize)
    }

    /// The Contacts of the 302, highest `q` first, each gateway once.
    pub fn contacts(&self) -> Contacts<'_> {
        Contacts {
            route: self,
            at: (0, 0),
            level: 0,
            contributed: false,
        }
    }

    /// The host of the first Contact (what `route` says in `decide` and the log).
    pub fn first_host(&self) -> &str {
        self.contacts().next().map_or("", |c| &c.gateway.host)
    }

    /// The ledger's form of the Contacts: `q host` pairs joined by `,` (`1.0
    /// sbc1.contoso.com:5061;transport=tls,0.9 sbc3.contoso.com`). A gateway host holds neither
    /// a space nor a comma ([`crate::config::check_gateway`]), so it reads back unchanged.
    pub fn push_text(&self, out: &mut String) {
        for (i, c) in self.contacts().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(c.q);
            out.push(' ');
            out.push_str(&c.gateway.host);
        }
    }

    /// Reads [`PolicyRoute::push_text`] back (a call restored from the ledger): one unnamed
    /// route per `q`, in order. `None` when the text is not of that form.
    pub fn from_text(text: &str) -> Option<PolicyRoute> {
        let mut routes: Vec<(&str, VoiceRoute)> = Vec::new();
        for entry in text.split(',') {
            let (q, host) = entry.split_once(' ')?;
            if host.is_empty() || !Q.contains(&q) {
                return None;
            }
            let gateway = Gateway {
                id: Arc::from(""),
                host: Arc::from(host),
            };
            match routes.last_mut() {
                Some((last, r)) if *last == q => r.gateways.push(gateway),
                _ => routes.push((
                    q,
                    VoiceRoute {
                        name: Arc::from(""),
                        priority: routes.len() as u32,
                        gateways: vec![gateway],
                    },
                )),
            }
        }
        if routes.is_empty() || routes.len() > MAX_ROUTES_PER_USAGE {
            return None;
        }
        let matched = u64::MAX >> (64 - routes.len());
        Some(PolicyRoute {
            policy: Arc::from(""),
            usage: Arc::new(Usage {
                name: Arc::from(""),
                routes: routes.into_iter().map(|(_, r)| r).collect(),
                patterns: Vec::new(),
            }),
            matched,
        })
    }
}

/// The iterator of [`PolicyRoute::contacts`]: matching routes in priority order, the gateways
/// of each in file order, one failover level (`q`) per route that added a gateway.
pub struct Contacts<'a> {
    route: &'a PolicyRoute,
    /// The next (route, gateway) position.
    at: (usize, usize),
    level: usize,
    contributed: bool,
}

impl<'a> Contacts<'a> {
    /// Whether `host` was listed before position `at` (a gateway in two matching routes keeps
    /// its first, highest `q`).
    fn listed_before(&self, at: (usize, usize), host: &str) -> bool {
        let p = self.route;
        p.usage
            .routes
            .iter()
            .enumerate()
            .take(at.0 + 1)
            .filter(|(i, _)| p.matched & (1u64 << i) != 0)
            .any(|(i, r)| {
                let n = if i == at.0 { at.1 } else { r.gateways.len() };
                r.gateways[..n.min(r.gateways.len())]
                    .iter()
                    .any(|g| &*g.host == host)
            })
    }
}

impl<'a> Iterator for Contacts<'a> {
    type Item = Contact<'a>;

    fn next(&mut self) -> Option<Contact<'a>> {
        let p: &'a PolicyRoute = self.route;
        loop {
            let (ri, gi) = self.at;
            if ri >= MAX_ROUTES_PER_USAGE {
                return None;
            }
            let r = p.usage.routes.get(ri)?;
            if p.matched & (1u64 << ri) == 0 || gi >= r.gateways.len() {
                if self.contributed {
                    self.level += 1;
                    self.contributed = false;
                }
                self.at = (ri + 1, 0);
                continue;
            }
            self.at = (ri, gi + 1);
            let g = &r.gateways[gi];
            if self.listed_before((ri, gi), &g.host) {
                continue;
            }
            self.contributed = true;
            return Some(Contact {
                route: r,
                gateway: g,
                q: q_value(self.level),
            });
        }
    }
}

impl Routing {
    /// The routes of policy `policy` ([`crate::directory::User::voice_policy`]) for the E.164
    /// number `e164`: the first usage with a matching route, and every matching route of it;
    /// `None` when no route of any usage matches.
    pub fn select(&self, policy: u32, e164: &str) -> Option<PolicyRoute> {
        let p = self.policies.get(policy as usize)?;
        for usage in &p.usages {
            let mut matched = 0u64;
            for (i, re) in usage.patterns.iter().enumerate() {
                if re.is_match(e164) {
                    matched |= 1u64 << i;
                }
            }
            if matched != 0 {
                return Some(PolicyRoute {
                    policy: Arc::clone(&p.id),
                    usage: Arc::clone(usage),
                    matched,
                });
            }
        }
        None
    }

    /// The policies, in file order.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// The policy a user row names (`policy:<id>` of `users.csv`, `id` given here), in its
    /// tenant; an unknown id is an error at the user's `voice_routing` field.
    pub(crate) fn user_policy(
        &self,
        id: &str,
        tenant: Option<(u32, &str)>,
        line: usize,
        errors: &mut LoadErrors,
    ) -> Option<u32> {
        let (t, tenant_id) = tenant?;
        let found = self.by_id.get(&(t, id.trim().to_string())).copied();
        if found.is_none() && !self.broken {
            errors.push(
                crate::load::USERS_FILE,
                Some(line),
                "voice_routing",
                format!("tenant {tenant_id} has no voice routing policy {id:?} in {ROUTING_FILE}"),
            );
        }
        found
    }

    /// Checks `routing.toml` (`text`; `None`: the directory has none; `Some(None)`: it could not
    /// be read, which is reported already) against the tenants.
    pub(crate) fn build(
        text: Option<Option<&str>>,
        tenants: &[Tenant],
        tenant_ix: &HashMap<String, u32>,
        errors: &mut LoadErrors,
    ) -> Routing {
        let text = match text {
            None => return Routing::default(),
            Some(None) => {
                return Routing {
                    broken: true,
                    ..Routing::default()
                }
            }
            Some(Some(text)) => text,
        };
        let file: RoutingFile = match toml::from_str(text) {
            Ok(f) => f,
            Err(e) => {
                crate::load::toml_error(ROUTING_FILE, text, &e, errors);
                return Routing {
                    broken: true,
                    ..Routing::default()
                };
            }
        };
        let mut b = Builder {
            text,
            errors,
            tenants,
            tenant_ix,
        };
        let usages = b.usages(file.voice_route);
        let mut routing = Routing::default();
        for p in file.voice_routing_policy {
            b.policy(p, &usages, &mut routing);
        }
        routing
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutingFile {
    #[serde(default)]
    voice_route: Vec<RouteRecord>,
    #[serde(default)]
    voice_routing_policy: Vec<PolicyRecord>,
}

/// A `[[voice_route]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteRecord {
    tenant: Spanned<String>,
    name: Spanned<String>,
    usage: Spanned<String>,
    pattern: Spanned<String>,
    priority: Spanned<u32>,
    gateways: Spanned<Vec<Spanned<String>>>,
}

/// A `[[voice_routing_policy]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyRecord {
    tenant: Spanned<String>,
    id: Spanned<String>,
    usages: Spanned<Vec<Spanned<String>>>,
}

/// A usage while it is built: (priority, route, pattern, line of its priority).
type Pending = Vec<(u32, VoiceRoute, Regex, usize)>;

struct Builder<'a> {
    text: &'a str,
    errors: &'a mut LoadErrors,
    tenants: &'a [Tenant],
    tenant_ix: &'a HashMap<String, u32>,
}

impl Builder<'_> {
    fn line<T>(&self, s: &Spanned<T>) -> usize {
        line_of(self.text, s.span().start)
    }

    fn error(&mut self, line: usize, field: &str, message: String) {
        self.errors.push(ROUTING_FILE, Some(line), field, message);
    }

    /// The tenant a record names, or an error at its `tenant` field.
    fn tenant(&mut self, t: &Spanned<String>) -> Option<u32> {
        let found = self.tenant_ix.get(t.get_ref().trim()).copied();
        if found.is_none() {
            let line = self.line(t);
            self.error(
                line,
                "tenant",
                format!("unknown tenant {:?} (not in tenants.toml)", t.get_ref()),
            );
        }
        found
    }

    /// A non-empty, trimmed name, or an error at `field`.
    fn name(&mut self, s: &Spanned<String>, field: &str) -> Option<String> {
        let v = s.get_ref().trim();
        if v.is_empty() {
            let line = self.line(s);
            self.error(line, field, format!("empty {field}"));
            return None;
        }
        Some(v.to_string())
    }

    /// The routes, checked and grouped into usages by (tenant, usage name), each sorted by
    /// priority.
    fn usages(&mut self, records: Vec<RouteRecord>) -> HashMap<(u32, String), Arc<Usage>> {
        let mut pending: HashMap<(u32, String), Pending> = HashMap::new();
        let mut names: HashSet<(u32, String)> = HashSet::new();
        for r in records {
            let tenant = self.tenant(&r.tenant);
            let name = self.name(&r.name, "name");
            let usage = self.name(&r.usage, "usage");
            if let (Some(t), Some(n)) = (tenant, &name) {
                if !names.insert((t, n.clone())) {
                    let line = self.line(&r.name);
                    self.error(
                        line,
                        "name",
                        format!(
                            "tenant {} has two voice routes named {n:?}",
                            r.tenant.get_ref()
                        ),
                    );
                }
            }
            let pattern = match Regex::new(r.pattern.get_ref()) {
                Ok(re) => Some(re),
                Err(e) => {
                    // The crate's message spans lines (the pattern, a caret, the error): keep
                    // the error.
                    let msg = e.to_string();
                    let why = msg.lines().last().unwrap_or("").trim();
                    let why = why.strip_prefix("error: ").unwrap_or(why);
                    let line = self.line(&r.pattern);
                    self.error(
                        line,
                        "pattern",
                        format!(
                            "{:?} is not a regular expression Tollgate can use: {why}",
                            r.pattern.get_ref()
                        ),
                    );
                    None
                }
            };
            let gateways = tenant.and_then(|t| self.gateways(t, &r.gateways));
            let (Some(t), Some(name), Some(usage), Some(pattern), Some(gateways)) =
                (tenant, name, usage, pattern, gateways)
            else {
                continue;
            };
            let priority = *r.priority.get_ref();
            let line = self.line(&r.priority);
            let routes = pending.entry((t, usage)).or_default();
            if let Some((_, other, _, _)) = routes.iter().find(|(p, ..)| *p == priority) {
                let other = Arc::clone(&other.name);
                self.error(
                    line,
                    "priority",
                    format!(
                        "route {other:?} of the same usage already has priority {priority}: \
                         each route of a usage needs its own"
                    ),
                );
                continue;
            }
            routes.push((
                priority,
                VoiceRoute {
                    name: name.into(),
                    priority,
                    gateways,
                },
                pattern,
                line,
            ));
        }
        let mut usages = HashMap::with_capacity(pending.len());
        for ((t, name), mut routes) in pending {
            routes.sort_by_key(|(p, ..)| *p);
            if routes.len() > MAX_ROUTES_PER_USAGE {
                let line = routes.get(MAX_ROUTES_PER_USAGE).map_or(0, |r| r.3);
                self.error(
                    line,
                    "usage",
                    format!(
                        "usage {name:?} has {} routes, at most {MAX_ROUTES_PER_USAGE} are supported",
                        routes.len()
                    ),
                );
                continue;
            }
            let (routes, patterns) = routes.into_iter().map(|(_, r, re, _)| (r, re)).unzip();
            let usage = Usage {
                name: Arc::from(name.as_str()),
                routes,
                patterns,
            };
            usages.insert((t, name), Arc::new(usage));
        }
        usages
    }

    /// A route's gateway ids resolved in its tenant's `[tenant.direct_routing]`; at least one,
    /// none twice.
    fn gateways(&mut self, t: u32, ids: &Spanned<Vec<Spanned<String>>>) -> Option<Vec<Gateway>> {
        let tenant = self.tenants.get(t as usize)?;
        if ids.get_ref().is_empty() {
            let line = self.line(ids);
            self.error(
                line,
                "gateways",
                "a route needs at least one gateway".into(),
            );
            return None;
        }
        let mut out: Vec<Gateway> = Vec::with_capacity(ids.get_ref().len());
        let mut ok = true;
        for id in ids.get_ref() {
            let line = self.line(id);
            let want = id.get_ref().trim();
            match tenant.gateways.iter().find(|(g, _)| g == want) {
                None => {
                    ok = false;
                    self.error(
                        line,
                        "gateways",
                        format!(
                            "tenant {} has no Direct Routing gateway {want:?} \
                             ([tenant.direct_routing] of tenants.toml)",
                            tenant.id
                        ),
                    );
                }
                Some(_) if out.iter().any(|g| &*g.id == want) => {
                    ok = false;
                    self.error(
                        line,
                        "gateways",
                        format!("gateway {want:?} is listed twice"),
                    );
                }
                Some((g, host)) => out.push(Gateway {
                    id: Arc::from(g.as_str()),
                    host: Arc::clone(host),
                }),
            }
        }
        ok.then_some(out)
    }

    /// Checks a policy and adds it. A policy with a bad usage is still registered (the load
    /// fails anyway), so its users are not reported as naming an unknown policy too.
    fn policy(
        &mut self,
        p: PolicyRecord,
        usages: &HashMap<(u32, String), Arc<Usage>>,
        routing: &mut Routing,
    ) {
        let (Some(t), Some(id)) = (self.tenant(&p.tenant), self.name(&p.id, "id")) else {
            return;
        };
        if routing.by_id.contains_key(&(t, id.clone())) {
            let line = self.line(&p.id);
            self.error(
                line,
                "id",
                format!(
                    "tenant {} has two voice routing policies {id:?}",
                    p.tenant.get_ref()
                ),
            );
            return;
        }
        if p.usages.get_ref().is_empty() {
            let line = self.line(&p.usages);
            self.error(
                line,
                "usages",
                "a policy needs at least one PSTN usage (a user without one says \
                 `calling_plan` in users.csv)"
                    .into(),
            );
        }
        let mut list: Vec<Arc<Usage>> = Vec::with_capacity(p.usages.get_ref().len());
        for u in p.usages.get_ref() {
            let line = self.line(u);
            let name = u.get_ref().trim();
            // A usage no route names would route nothing, silently: most likely a typo.
            match usages.get(&(t, name.to_string())) {
                _ if list.iter().any(|x| &*x.name == name) => {
                    self.error(line, "usages", format!("usage {name:?} is listed twice"))
                }
                Some(usage) => list.push(Arc::clone(usage)),
                None => self.error(
                    line,
                    "usages",
                    format!(
                        "no [[voice_route]] of tenant {} has usage {name:?}",
                        p.tenant.get_ref()
                    ),
                ),
            }
        }
        let ix = routing.policies.len() as u32;
        routing.by_id.insert((t, id.clone()), ix);
        routing.policies.push(Policy {
            tenant: t,
            id: id.into(),
            usages: list,
        });
    }
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
