//! The engine's settings: the `[grants]` and `[routes]` tables of `tollgate.toml` (DESIGN §3).
//! Every field has a default; unknown fields are errors.

use serde::Deserialize;

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
    pub emergency: String,
}

impl Default for Routes {
    fn default() -> Self {
        Routes {
            calling_plan: "pstn-{region}.example.net".into(),
            emergency: "emergency.example.net".into(),
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

/// The engine's part of `tollgate.toml`. Other tables (`[sip]`, `[http]`, ...) belong to the
/// daemon and are ignored here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    pub grants: Grants,
    pub routes: Routes,
    pub emergency: Emergency,
}

/// A setting that makes no sense.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("tollgate.toml:{line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("tollgate.toml: [{table}].{field}: {message}")]
    Invalid {
        table: &'static str,
        field: &'static str,
        message: &'static str,
    },
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

    pub fn validate(&self) -> Result<(), ConfigError> {
        let g = &self.grants;
        let bad = |field, message| {
            Err(ConfigError::Invalid {
                table: "grants",
                field,
                message,
            })
        };
        if g.billing_increment_seconds == 0 {
            return bad("billing_increment_seconds", "must be at least 1");
        }
        if g.grant_seconds < g.billing_increment_seconds {
            return bad("grant_seconds", "must be at least one billing increment");
        }
        if g.max_call_seconds < g.grant_seconds {
            return bad("max_call_seconds", "must be at least grant_seconds");
        }
        if g.max_call_seconds > MAX_SECONDS {
            return bad("max_call_seconds", "must be at most 1000000000 (~31 years)");
        }
        if g.settle_grace_seconds > MAX_SECONDS {
            return bad(
                "settle_grace_seconds",
                "must be at most 1000000000 (~31 years)",
            );
        }
        if !self.emergency.default_region.trim().is_empty()
            && self.emergency.default_region().is_none()
        {
            return Err(ConfigError::Invalid {
                table: "emergency",
                field: "default_region",
                message: "must be an ISO 3166-1 alpha-2 region of the numbering plan (GB, not UK)",
            });
        }
        Ok(())
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
}
