//! The engine's settings: the `[grants]` and `[routes]` tables of `tollgate.toml` (DESIGN §3).
//! Every field has a default; unknown fields are errors.

use serde::Deserialize;

use crate::limits::ReasonSet;
use crate::numbering::Region;

/// The longest duration any `[grants]` setting or a reported `billable_seconds` may have:
/// 10^9 s, about 31.7 years, far beyond any call. Bounding them keeps every time the engine
/// computes (`now` + grant + grace, extensions) far inside `u64` and inside the ledger's
/// signed 64-bit integers, so no setting or report can produce a row SQLite cannot store.
pub const MAX_SECONDS: u64 = 1_000_000_000;

/// `[grants]`: how much is reserved per admission and how usage is billed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grants {
    /// Seconds reserved per admission (at most what is left). DESIGN §4 "Reservations".
    pub grant_seconds: u64,
    /// Longest call, over all extensions; also the cap of calls with no pool (emergency,
    /// Direct Routing, free).
    pub max_call_seconds: u64,
    /// An unreported reservation settles as fully used after grant + this.
    pub settle_grace_seconds: u64,
    /// Usage rounds up to this ("In all cases, the unit used is the minute", issue #7824).
    pub billing_increment_seconds: u64,
}

impl Grants {
    /// The seconds an extension of a call that holds `reserved_seconds` asks for: one grant,
    /// within `max_call_seconds` (0 once the call is at it).
    pub fn extension(&self, reserved_seconds: u64) -> u64 {
        self.grant_seconds
            .min(self.max_call_seconds.saturating_sub(reserved_seconds))
    }
}

impl Default for Grants {
    fn default() -> Self {
        Grants {
            grant_seconds: 1800,
            max_call_seconds: 14_400,
            settle_grace_seconds: 120,
            billing_increment_seconds: 60,
        }
    }
}

/// `[routes]`: where admitted calls go.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Routes {
    /// Calling-plan gateway; `{region}` = lower-case ISO code of the caller's pool region.
    pub calling_plan: String,
    /// Where emergency calls go (rule 1), whoever the caller.
    pub emergency: String,
    /// Where a call to a user of the caller's own tenant goes (basis `internal`, DESIGN §2):
    /// the Teams side, not the PSTN.
    pub internal: String,
}

impl Default for Routes {
    fn default() -> Self {
        Routes {
            calling_plan: "pstn-{region}.example.net".into(),
            emergency: "emergency.example.net".into(),
            internal: "teams.example.net".into(),
        }
    }
}

impl Routes {
    /// The calling-plan host for a pool region (`pstn-us.example.net`), appended to `out`: no
    /// allocation on the call path.
    pub fn push_calling_plan_host(&self, region: Region, out: &mut String) {
        let b = region.to_lowercase_bytes();
        let len = if b[2] == 0 { 2 } else { 3 };
        let code = std::str::from_utf8(&b[..len]).unwrap_or("xx");
        let mut parts = self.calling_plan.split("{region}");
        if let Some(first) = parts.next() {
            out.push_str(first);
        }
        for part in parts {
            out.push_str(code);
            out.push_str(part);
        }
    }
}

/// `[emergency]`: how rule 1 places a caller the directory cannot place.
///
/// Emergency numbers are national (999 in GB, 15 in FR), so the engine needs the caller's region
/// to recognise them. It takes, in this order: the usage location of the caller's directory
/// entry; the region of the caller's own E.164 number (`P-Asserted-Identity` or `From`,
/// `+44…` → GB); this default. 112 and 911 are emergency numbers everywhere, whatever the region.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Emergency {
    /// ISO 3166-1 alpha-2 region for callers placed neither by the directory nor by their own
    /// number; empty: none (only 112 and 911 are then known for them).
    pub default_region: String,
}

impl Emergency {
    /// The default region, when one is set (checked by [`EngineConfig::validate`]).
    pub fn default_region(&self) -> Option<Region> {
        Region::new(self.default_region.trim())
            .filter(|r| crate::numbering::metadata::is_builtin_region(*r))
    }
}

/// `[enforcement]`: which refusals are report-only (DESIGN §2 "Shadow mode"), so an operator
/// can turn a rule on, watch what it would refuse (`X-Tollgate-Shadow`,
/// `tollgate_shadow_rejections_total`), and only then enforce it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Enforcement {
    /// The reasons, by their DESIGN §2 names; only [`ReasonSet::SHADOWABLE`] ones.
    #[serde(deserialize_with = "shadow_reasons")]
    pub shadow: ReasonSet,
}

/// Reads `shadow = ["call_limit_reached", ...]`: a name that is no reason, or a reason that
/// cannot be shadowed, is an error at its line.
fn shadow_reasons<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ReasonSet, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    let mut set = ReasonSet::EMPTY;
    for n in names {
        let r = crate::Reason::from_name(n.trim()).ok_or_else(|| {
            serde::de::Error::custom(format!("[enforcement].shadow: {n:?} is not a reason code"))
        })?;
        if !ReasonSet::SHADOWABLE.contains(&r) {
            let can: Vec<&str> = ReasonSet::SHADOWABLE.iter().map(|r| r.as_str()).collect();
            return Err(serde::de::Error::custom(format!(
                "[enforcement].shadow: {n:?} cannot be shadowed (a call refused for it cannot \
                 be admitted as if the rule had not fired); these can: {}",
                can.join(", ")
            )));
        }
        set.insert(r);
    }
    Ok(set)
}

/// The engine's part of `tollgate.toml`. Other tables (`[sip]`, `[http]`, ...) belong to the
/// daemon and are ignored here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    /// `[grants]`.
    pub grants: Grants,
    /// `[routes]`.
    pub routes: Routes,
    /// `[emergency]`.
    pub emergency: Emergency,
    /// `[enforcement]`.
    pub enforcement: Enforcement,
    /// Pools and credit balances are kept by a store shared by several nodes (the daemon's
    /// `[cluster].store`): this node admits against its [shares](crate::shares).
    #[serde(skip)]
    pub shares: bool,
}

/// A setting that makes no sense.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The file is not TOML, or a field is unknown or of the wrong type.
    #[error("tollgate.toml:{line}: {message}")]
    Syntax {
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// What the TOML reader said.
        message: String,
    },
    /// A value out of range, or `[grants]` figures that contradict each other.
    #[error("tollgate.toml: [{table}].{field}: {message}")]
    Invalid {
        /// The table, without brackets (`grants`).
        table: &'static str,
        /// The key in it.
        field: &'static str,
        /// What is wrong, and what would be right.
        message: &'static str,
    },
    /// A `[routes]` value that cannot make a Contact URI ([`check_route`]).
    #[error("tollgate.toml: [routes].{field}: {value:?}: {message}")]
    Route {
        /// The key of `[routes]`.
        field: &'static str,
        /// The value as written.
        value: String,
        /// Why it cannot be a route.
        message: String,
    },
}

impl ConfigError {
    /// The table and field the error is about, to find its line (`None` for syntax errors,
    /// which carry their line).
    pub fn field(&self) -> Option<(&'static str, &'static str)> {
        match self {
            ConfigError::Syntax { .. } => None,
            ConfigError::Invalid { table, field, .. } => Some((table, field)),
            ConfigError::Route { field, .. } => Some(("routes", field)),
        }
    }
}

/// The placeholder `[routes].calling_plan` may hold: the caller's pool region, lower case.
pub const REGION_PLACEHOLDER: &str = "{region}";

/// Checks a route of `[routes]` (DESIGN §3: "a route is a host or host:port, checked at
/// load"): it becomes the host part of the 302's Contact, `sip:+E164@<route>;user=phone`
/// (DESIGN §2), so it must be an RFC 3261 §25.1 `hostport` — a host name, an IPv4 address or
/// a bracketed IPv6 reference, then an optional `:port` (1–65535). White space, `<`, `>`,
/// `"`, `;`, `@`, control characters or an empty host would break the Contact header, or
/// send the call elsewhere, for every call taking that route; at load they are a clear error
/// instead. With `region_placeholder`, [`REGION_PLACEHOLDER`] may stand in the host (it is
/// replaced by a lower-case region code, e.g. `us`, before the check); any other `{…}` is an
/// error.
pub fn check_route(route: &str, region_placeholder: bool) -> Result<(), String> {
    if route.is_empty() {
        return Err("empty: a route is a host or host:port".into());
    }
    let has_placeholder = route.contains(REGION_PLACEHOLDER);
    if has_placeholder && !region_placeholder {
        return Err(format!(
            "{REGION_PLACEHOLDER} is only for [routes].calling_plan: this route is used as written"
        ));
    }
    // The widest code the placeholder becomes ("001", non-geographic) stands in for it.
    let filled = route.replace(REGION_PLACEHOLDER, "001");
    if filled.contains(['{', '}']) {
        return Err(format!(
            "{REGION_PLACEHOLDER} is the only placeholder (a brace is not allowed otherwise)"
        ));
    }
    if split_hostport(route)?
        .1
        .is_some_and(|p| p.contains(REGION_PLACEHOLDER))
    {
        return Err(format!(
            "{REGION_PLACEHOLDER} may stand in the host, not the port"
        ));
    }
    let (host, port) = split_hostport(&filled)?;
    check_host(host)?;
    if let Some(port) = port {
        let ok = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65_535).contains(&p));
        if !ok {
            return Err(format!(
                "port {port:?} is not a number from 1 to 65535 (a route is a host or host:port)"
            ));
        }
    }
    Ok(())
}

/// Checks a Direct Routing gateway of `tenants.toml` (`[tenant.direct_routing]`, DESIGN §3:
/// `sbc1 = "sbc1.contoso.com:5061;transport=tls"`): a route ([`check_route`], no placeholder)
/// followed by any number of RFC 3261 §19.1.1 `uri-parameter`s, `;name[=value]` of
/// `paramchar`s. For the directory loader, which reports the error with its file and line.
pub fn check_gateway(gateway: &str) -> Result<(), String> {
    let mut parts = gateway.split(';');
    check_route(parts.next().unwrap_or_default(), false)?;
    for param in parts {
        let (name, value) = param.split_once('=').unwrap_or((param, "x"));
        let paramchar = |c: char| c.is_ascii_alphanumeric() || "-_.!~*'()[]/:&+$%".contains(c);
        if name.is_empty() || !name.chars().all(paramchar) || !value.chars().all(paramchar) {
            return Err(format!(
                "parameter {param:?} is not name[=value] of URI parameter characters (RFC 3261 §19.1.1)"
            ));
        }
    }
    Ok(())
}

/// `host` and the text after its `:`, if any; an IPv6 reference keeps its brackets.
fn split_hostport(s: &str) -> Result<(&str, Option<&str>), String> {
    if s.starts_with('[') {
        let end = s
            .find(']')
            .ok_or("an IPv6 reference needs its closing ']'")?;
        let (host, rest) = s.split_at(end + 1);
        return match rest.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if rest.is_empty() => Ok((host, None)),
            None => Err(format!(
                "{rest:?} after the host: a route is a host or host:port"
            )),
        };
    }
    Ok(match s.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    })
}

/// RFC 3261 §25.1 `host = hostname / IPv4address / IPv6reference`.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty host: a route is a host or host:port".into());
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| format!("{host:?} is not an IPv6 reference"));
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(());
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "{c:?} cannot be in a host name (letters, digits, '-' and '.'; a route is a host or \
             host:port, RFC 3261 §25.1)"
        ));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        let b = label.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && b.first().is_some_and(u8::is_ascii_alphanumeric)
            && b.last().is_some_and(u8::is_ascii_alphanumeric);
        if !ok {
            return Err(format!(
                "{host:?} is not a host name: label {label:?} must be 1-63 letters, digits or \
                 '-', not starting or ending with '-'"
            ));
        }
    }
    let top_is_alpha = labels
        .last()
        .and_then(|l| l.bytes().next())
        .is_some_and(|b| b.is_ascii_alphabetic());
    if !top_is_alpha {
        return Err(format!(
            "{host:?} is neither an IPv4 address nor a host name (the last label starts with a letter)"
        ));
    }
    Ok(())
}

impl EngineConfig {
    /// Reads `[grants]` and `[routes]` from the text of a `tollgate.toml`.
    pub fn from_toml(text: &str) -> Result<EngineConfig, ConfigError> {
        let c: EngineConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            line: e
                .span()
                .map(|s| crate::load::line_of(text, s.start))
                .unwrap_or(0),
            message: e.message().to_string(),
        })?;
        c.validate()?;
        Ok(c)
    }

    /// The first of [`EngineConfig::errors`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.errors().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every setting that makes no sense: `[grants]` figures that contradict each other (the
    /// first found) or exceed [`MAX_SECONDS`], each `[routes]` value that is not a route
    /// ([`check_route`]), and an `[emergency].default_region` outside the numbering plan.
    pub fn errors(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let g = &self.grants;
        let bad = |field, message| ConfigError::Invalid {
            table: "grants",
            field,
            message,
        };
        if g.billing_increment_seconds == 0 {
            errors.push(bad("billing_increment_seconds", "must be at least 1"));
        } else if g.grant_seconds < g.billing_increment_seconds {
            errors.push(bad(
                "grant_seconds",
                "must be at least one billing increment",
            ));
        } else if g.max_call_seconds < g.grant_seconds {
            errors.push(bad("max_call_seconds", "must be at least grant_seconds"));
        }
        let routes = [
            ("calling_plan", &self.routes.calling_plan, true),
            ("emergency", &self.routes.emergency, false),
            ("internal", &self.routes.internal, false),
        ];
        for (field, value, placeholder) in routes {
            if let Err(message) = check_route(value, placeholder) {
                errors.push(ConfigError::Route {
                    field,
                    value: value.clone(),
                    message,
                });
            }
        }
        if g.max_call_seconds > MAX_SECONDS {
            errors.push(bad(
                "max_call_seconds",
                "must be at most 1000000000 (~31 years)",
            ));
        }
        if g.settle_grace_seconds > MAX_SECONDS {
            errors.push(bad(
                "settle_grace_seconds",
                "must be at most 1000000000 (~31 years)",
            ));
        }
        if !self.emergency.default_region.trim().is_empty()
            && self.emergency.default_region().is_none()
        {
            errors.push(ConfigError::Invalid {
                table: "emergency",
                field: "default_region",
                message: "must be an ISO 3166-1 alpha-2 region of the numbering plan (GB, not UK)",
            });
        }
        errors
    }

    /// `seconds` rounded up to the billing increment.
    pub fn round_up(&self, seconds: u64) -> u64 {
        let inc = self.grants.billing_increment_seconds.max(1);
        seconds.div_ceil(inc).saturating_mul(inc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_and_defaults_agree() {
        let c = EngineConfig::from_toml(include_str!("../../config/tollgate.toml")).unwrap();
        assert_eq!(c, EngineConfig::default());
        let mut host = String::new();
        c.routes
            .push_calling_plan_host(Region::new("GB").unwrap(), &mut host);
        assert_eq!(host, "pstn-gb.example.net");
        assert_eq!(c.round_up(0), 0);
        assert_eq!(c.round_up(1), 60);
        assert_eq!(c.round_up(60), 60);
        assert_eq!(c.round_up(61), 120);
    }

    #[test]
    fn bad_settings() {
        let e = EngineConfig::from_toml("[grants]\nbilling_increment_seconds = 0\n").unwrap_err();
        assert!(matches!(
            e,
            ConfigError::Invalid {
                field: "billing_increment_seconds",
                ..
            }
        ));
        // Durations past MAX_SECONDS would push `now` + grant + grace out of what the ledger
        // can store (and, near `i64::MAX`, overflow).
        for (text, field) in [
            (
                "[grants]\nmax_call_seconds = 9223372036854775807\n",
                "max_call_seconds",
            ),
            (
                "[grants]\nsettle_grace_seconds = 1000000001\n",
                "settle_grace_seconds",
            ),
        ] {
            let e = EngineConfig::from_toml(text).unwrap_err();
            assert!(
                matches!(e, ConfigError::Invalid { field: f, .. } if f == field),
                "{e}"
            );
        }
        let c = EngineConfig::from_toml(
            "[grants]\nmax_call_seconds = 1000000000\nsettle_grace_seconds = 1000000000\n",
        );
        assert!(c.is_ok(), "{c:?}");
        let e = EngineConfig::from_toml("[emergency]\ndefault_region = \"UK\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "tollgate.toml: [emergency].default_region: must be an ISO 3166-1 alpha-2 region of \
             the numbering plan (GB, not UK)"
        );
        let c = EngineConfig::from_toml("[emergency]\ndefault_region = \"gb\"\n").unwrap();
        assert_eq!(c.emergency.default_region(), Region::new("GB"));
        let e = EngineConfig::from_toml("[grants]\nbogus = 1\n").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e}");
    }

    #[test]
    fn routes() {
        for ok in [
            "pstn-{region}.example.net",
            "{region}.pstn.example.net:5060",
            "pstn-{region}.example.net:5001",
            "gw.example.net.",
            "192.0.2.7",
            "192.0.2.7:5080",
            "[2001:db8::1]",
            "[2001:db8::1]:5061",
            "localhost",
        ] {
            assert_eq!(check_route(ok, true), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "pstn {region}.example.net",
            "pstn.example.net>",
            "<pstn.example.net",
            "\"pstn.example.net\"",
            "pstn\u{1}.example.net",
            "pstn.example.net\r\nX: y",
            ":5060",
            "pstn.example.net:",
            "pstn.example.net:0",
            "pstn.example.net:65536",
            "pstn.example.net:50a",
            "pstn.example.net:{region}",
            "pstn-{REGION}.example.net",
            "pstn-{country}.example.net",
            "pstn-{region.example.net",
            "user@pstn.example.net",
            "pstn.example.net;transport=tcp",
            "-pstn.example.net",
            "pstn..example.net",
            "10.0.0.300",
            "[2001:db8::1",
            "[nope]",
            "[::1]x",
        ] {
            assert!(check_route(bad, true).is_err(), "{bad:?}");
        }
        assert!(check_route("pstn-{region}.example.net", false).is_err());
        assert_eq!(check_gateway("sbc1.contoso.com:5061;transport=tls"), Ok(()));
        assert_eq!(check_gateway("sbc1.contoso.com;lr;maddr=192.0.2.1"), Ok(()));
        for bad in [
            "sbc1.contoso.com;",
            "sbc1 .contoso.com",
            "sbc1.contoso.com;a=b c",
            ";x=y",
        ] {
            assert!(check_gateway(bad).is_err(), "{bad:?}");
        }
        let c = EngineConfig {
            routes: Routes {
                calling_plan: "pstn {region}".into(),
                emergency: "sos-{region}.example.net".into(),
                internal: "teams example".into(),
            },
            ..EngineConfig::default()
        };
        let errors = c.errors();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert_eq!(errors[0].field(), Some(("routes", "calling_plan")));
        assert!(errors[0]
            .to_string()
            .starts_with("tollgate.toml: [routes].calling_plan: \"pstn {region}\": "));
        assert_eq!(errors[1].field(), Some(("routes", "emergency")));
        assert_eq!(errors[2].field(), Some(("routes", "internal")));
    }
}
