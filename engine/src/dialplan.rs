//! Tenant dial plans: `dialplans.toml` (DESIGN §3), the normalization rules that turn what a
//! user dials into a number before it is classified (`teams-pstn-features.md` §2.3).
//!
//! "A dial plan is a named set of normalization rules that translate dialed phone numbers …
//! into an alternate format (typically E.164)"; "Normalization rules are matched from top to
//! bottom … If a match is made, that rule is used" (`what-are-dial-plans.md`); "The number of
//! normalization rules cannot exceed 50 per TenantDialPlan" (`New-CsTenantDialPlan`). An
//! outside-line prefix is a rule of its own (`^9(\d+)$`), as Teams has it since
//! `ExternalAccessPrefix` was removed.
//!
//! A user's plan is the one `users.csv` `dial_plan` names, else their tenant's `default`
//! plan, else none. What a rule sees is the dialed string as the edge passes it (the
//! Request-URI user part without its parameters) with the visual separators of RFC 3966 §5.1.1
//! (`-`, `.`, `(`, `)`) and spaces left out: `9 1 206 555 0100` is matched as `912065550100`.
//! A pattern may match anywhere unless anchored (`^…$`), as .NET `Regex.IsMatch` does.
//!
//! The translation is written as Teams writes it: `$1`…`$9` insert a group (one digit: `$10`
//! is group 1 then `0`), `${12}` any group, `$$` a dollar; a group the pattern does not have
//! is a load error. Patterns compile once at load (the `regex` crate: no look-around or
//! back-references; such a pattern is a load error naming the rule).
//!
//! Emergency numbers are recognised before and after: the engine classifies the string as
//! dialed first, and an emergency number is admitted as such whatever a rule would make of it
//! (`911` is never rewritten into something else); and a number that **any** rule of the plan
//! turns into an emergency number (`9911` → `911` by an outside-line rule) is admitted as one,
//! even when an earlier rule matches too (a 4-digit extension rule would make `9911` an
//! extension): first-match order must never cost an emergency call. Only strings that short
//! can become emergency numbers (at most the longest emergency number plus an access prefix of
//! four characters, the most Teams ever allowed), so only those are tried against every rule.
//!
//! Per call: nothing is allocated when no rule matches (the separators are left out into a
//! buffer of the calling thread, and each pattern is tried with `is_match`); a match builds
//! the translated number once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use regex::{Regex, RegexSet};
use serde::Deserialize;
use toml::Spanned;

use crate::load::{line_of, LoadErrors};

/// The optional file of tenant dial plans in the directory.
pub const DIALPLANS_FILE: &str = "dialplans.toml";

/// Normalization rules a plan may hold at most ("cannot exceed 50 per TenantDialPlan").
pub const MAX_RULES: usize = 50;

/// One normalization rule.
#[derive(Debug)]
pub struct NormalizationRule {
    /// Its name, shown by `decide` and in the log.
    pub name: Arc<str>,
    pattern: Regex,
    translation: Vec<Piece>,
}

/// Visual separators (RFC 3966 §5.1.1) and spaces: left out before the rules see the string.
fn is_separator(b: u8) -> bool {
    matches!(b, b'-' | b'.' | b'(' | b')' | b' ')
}

/// A piece of a translation: text, or a capture group of the pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Group(usize),
}

/// A tenant's dial plan.
#[derive(Debug)]
pub struct DialPlan {
    /// The id users name it by (`dial_plan` of `users.csv`).
    pub id: String,
    /// The tenant it belongs to (index into the snapshot's tenants).
    pub tenant: u32,
    /// In order: the first that matches rewrites the number.
    pub rules: Vec<NormalizationRule>,
    /// Every rule's pattern in one automaton: a string no rule matches (most calls) costs one
    /// pass, not one per rule. `None` (the set too large to build): every rule is tried.
    any: Option<RegexSet>,
}

/// What a plan made of a dialed string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalized {
    /// The rule that matched.
    pub rule: Arc<str>,
    /// The dialed string as the rule rewrote it (then classified).
    pub number: Arc<str>,
}

/// Every dial plan of the directory.
#[derive(Debug, Default)]
pub struct DialPlans {
    plans: Vec<DialPlan>,
    by_id: HashMap<(u32, String), u32>,
    /// Tenant index → its default plan.
    defaults: HashMap<u32, u32>,
    /// The file was there but could not be read or parsed (already reported): users naming a
    /// plan are not reported again.
    broken: bool,
}

thread_local! {
    /// The dialed string without visual separators, per thread: no allocation per call.
    static DIGITS: RefCell<String> = RefCell::new(String::with_capacity(32));
}

impl DialPlans {
    /// Every plan, in file order.
    pub fn plans(&self) -> &[DialPlan] {
        &self.plans
    }

    /// The plan of a user: the one `users.csv` names (`Some(id)`, in the user's tenant), else
    /// the tenant's default. An unknown id is an error at the user's `dial_plan` field.
    pub(crate) fn user_plan(
        &self,
        named: &str,
        tenant: Option<(u32, &str)>,
        line: usize,
        errors: &mut LoadErrors,
    ) -> Option<u32> {
        let (t, tenant_id) = tenant?;
        let named = named.trim();
        if named.is_empty() {
            return self.defaults.get(&t).copied();
        }
        let found = self.by_id.get(&(t, named.to_string())).copied();
        if found.is_none() && !self.broken {
            errors.push(
                crate::load::USERS_FILE,
                Some(line),
                "dial_plan",
                format!("tenant {tenant_id} has no dial plan {named:?} in {DIALPLANS_FILE}"),
            );
        }
        found
    }

    /// `dialed` rewritten by the first rule of plan `plan` that matches, if any.
    pub fn normalize(&self, plan: u32, dialed: &str) -> Option<Normalized> {
        self.each_rewrite(plan, dialed, Some)
    }

    /// Calls `f` with what each rule of plan `plan` that matches `dialed` makes of it, in
    /// order, until `f` returns `Some` (then that), or the rules run out (`None`).
    pub fn each_rewrite<T>(
        &self,
        plan: u32,
        dialed: &str,
        mut f: impl FnMut(Normalized) -> Option<T>,
    ) -> Option<T> {
        let plan = self.plans.get(plan as usize)?;
        let mut apply = |digits: &str| {
            if plan.any.as_ref().is_some_and(|set| !set.is_match(digits)) {
                return None;
            }
            plan.rules
                .iter()
                .filter(|r| r.pattern.is_match(digits))
                .find_map(|rule| f(rule.rewrite(digits)?))
        };
        // Most numbers come without separators: matched as they are, nothing copied.
        if !dialed.bytes().any(is_separator) {
            return apply(dialed);
        }
        DIGITS.with_borrow_mut(|digits| {
            digits.clear();
            // Separators are ASCII: what is left of valid UTF-8 stays valid.
            digits.extend(
                dialed
                    .chars()
                    .filter(|c| !c.is_ascii() || !is_separator(*c as u8)),
            );
            apply(digits)
        })
    }

    /// Checks `dialplans.toml` (`text`; `None`: the directory has none; `Some(None)`: it could
    /// not be read, which is reported already) against the tenants.
    pub(crate) fn build(
        text: Option<Option<&str>>,
        tenant_ix: &HashMap<String, u32>,
        errors: &mut LoadErrors,
    ) -> DialPlans {
        let broken = DialPlans {
            broken: true,
            ..DialPlans::default()
        };
        let text = match text {
            None => return DialPlans::default(),
            Some(None) => return broken,
            Some(Some(text)) => text,
        };
        let file: DialPlansFile = match toml::from_str(text) {
            Ok(f) => f,
            Err(e) => {
                crate::load::toml_error(DIALPLANS_FILE, text, &e, errors);
                return broken;
            }
        };
        let mut out = DialPlans::default();
        for p in file.dial_plan {
            let err = |errors: &mut LoadErrors, at: usize, field: &str, msg: String| {
                errors.push(DIALPLANS_FILE, Some(line_of(text, at)), field, msg)
            };
            let Some(&tenant) = tenant_ix.get(p.tenant.get_ref().trim()) else {
                err(
                    errors,
                    p.tenant.span().start,
                    "tenant",
                    format!("unknown tenant {:?}", p.tenant.get_ref()),
                );
                continue;
            };
            let id = p.id.get_ref().trim().to_string();
            if id.is_empty() {
                err(errors, p.id.span().start, "id", "must not be empty".into());
                continue;
            }
            if p.rule.len() > MAX_RULES {
                err(
                    errors,
                    p.id.span().start,
                    "rule",
                    format!(
                        "{} rules: a dial plan has at most {MAX_RULES} (as a Teams tenant dial plan)",
                        p.rule.len()
                    ),
                );
            }
            let mut rules = Vec::with_capacity(p.rule.len());
            for r in &p.rule {
                match NormalizationRule::build(r) {
                    Ok(rule) => rules.push(rule),
                    Err((at, field, msg)) => err(errors, at, field, msg),
                }
            }
            let ix = out.plans.len() as u32;
            if out.by_id.insert((tenant, id.clone()), ix).is_some() {
                err(
                    errors,
                    p.id.span().start,
                    "id",
                    format!(
                        "tenant {} has two dial plans {id:?}",
                        p.tenant.get_ref().trim()
                    ),
                );
            }
            if p.default {
                if let Some(&other) = out.defaults.get(&tenant) {
                    let other = &out.plans[other as usize].id;
                    err(
                        errors,
                        p.id.span().start,
                        "default",
                        format!(
                            "tenant {} has a default plan already: {other:?}",
                            p.tenant.get_ref().trim()
                        ),
                    );
                } else {
                    out.defaults.insert(tenant, ix);
                }
            }
            // The patterns compiled one by one, so together they do too (a size limit aside:
            // then every rule is tried in turn).
            let any = RegexSet::new(rules.iter().map(|r| r.pattern.as_str())).ok();
            out.plans.push(DialPlan {
                id,
                tenant,
                rules,
                any,
            });
        }
        out
    }
}

impl NormalizationRule {
    /// What the rule makes of `digits` (`None` if it does not match).
    fn rewrite(&self, digits: &str) -> Option<Normalized> {
        let caps = self.pattern.captures(digits)?;
        let mut number = String::with_capacity(digits.len() + 8);
        for piece in &self.translation {
            match piece {
                Piece::Text(t) => number.push_str(t),
                Piece::Group(g) => number.push_str(caps.get(*g).map_or("", |m| m.as_str())),
            }
        }
        Some(Normalized {
            rule: Arc::clone(&self.name),
            number: number.into(),
        })
    }

    /// A checked rule, or where it is wrong: (offset in the file, field, message).
    fn build(r: &RuleRecord) -> Result<NormalizationRule, (usize, &'static str, String)> {
        let name = r.name.get_ref().trim();
        if name.is_empty() {
            return Err((r.name.span().start, "name", "must not be empty".into()));
        }
        let pattern = Regex::new(r.pattern.get_ref()).map_err(|e| {
            let first = e
                .to_string()
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_string();
            (
                r.pattern.span().start,
                "pattern",
                format!(
                    "rule {name:?}: {:?} is not a pattern Tollgate can use: {first}",
                    r.pattern.get_ref()
                ),
            )
        })?;
        let translation = parse_translation(r.translation.get_ref()).map_err(|m| {
            (
                r.translation.span().start,
                "translation",
                format!("rule {name:?}: {m}"),
            )
        })?;
        let groups = pattern.captures_len();
        if let Some(g) = translation.iter().find_map(|p| match p {
            Piece::Group(g) if *g >= groups => Some(*g),
            _ => None,
        }) {
            return Err((
                r.translation.span().start,
                "translation",
                format!(
                    "rule {name:?}: ${g} names a group the pattern does not have ({} groups)",
                    groups - 1
                ),
            ));
        }
        Ok(NormalizationRule {
            name: name.into(),
            pattern,
            translation,
        })
    }
}

/// `+1425555$1` → text `+1425555`, group 1.
fn parse_translation(t: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            text.push(c);
            continue;
        }
        let group = match chars.next() {
            Some('$') => {
                text.push('$');
                continue;
            }
            Some(d) if d.is_ascii_digit() => d as usize - '0' as usize,
            Some('{') => {
                let mut n = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(d) if d.is_ascii_digit() => n.push(d),
                        _ => return Err(format!("{t:?}: `${{` must hold a group number and `}}`")),
                    }
                }
                n.parse()
                    .map_err(|_| format!("{t:?}: `${{}}` must hold a group number"))?
            }
            _ => {
                return Err(format!(
                    "{t:?}: `$` must be followed by a group number, `{{n}}` or `$`"
                ))
            }
        };
        if !text.is_empty() {
            out.push(Piece::Text(std::mem::take(&mut text)));
        }
        out.push(Piece::Group(group));
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DialPlansFile {
    #[serde(default)]
    dial_plan: Vec<PlanRecord>,
}

/// A `[[dial_plan]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanRecord {
    id: Spanned<String>,
    tenant: Spanned<String>,
    #[serde(default)]
    default: bool,
    #[serde(default)]
    rule: Vec<RuleRecord>,
}

/// A `[[dial_plan.rule]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleRecord {
    name: Spanned<String>,
    pattern: Spanned<String>,
    translation: Spanned<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLANS: &str = r#"
[[dial_plan]]
id = "redmond"
tenant = "t"
default = true

[[dial_plan.rule]]
name = "outside line"
pattern = '^9(\d{11})$'
translation = "+$1"

[[dial_plan.rule]]
name = "extension"
pattern = '^(\d{4})$'
translation = "+1425555$1"

[[dial_plan.rule]]
name = "operator"
pattern = '^0$'
translation = "+14255550100"

[[dial_plan]]
id = "site-b"
tenant = "t"

[[dial_plan.rule]]
name = "site prefix"
pattern = '^6222(\d{4})$'
translation = "+1206555${1}"
"#;

    fn tenants() -> HashMap<String, u32> {
        [("t".to_string(), 0), ("u".to_string(), 1)]
            .into_iter()
            .collect()
    }

    fn plans(text: &str) -> (DialPlans, LoadErrors) {
        let mut errors = LoadErrors::default();
        let p = DialPlans::build(Some(Some(text)), &tenants(), &mut errors);
        (p, errors)
    }

    #[test]
    fn the_first_matching_rule_rewrites_the_number() {
        let (p, e) = plans(PLANS);
        assert!(e.is_empty(), "{e}");
        let n = |dialed: &str| {
            p.normalize(0, dialed)
                .map(|n| (n.rule.to_string(), n.number.to_string()))
        };
        assert_eq!(
            n("9 1 206 555 0100"),
            Some(("outside line".into(), "+12065550100".into()))
        );
        assert_eq!(
            n("(9) 1-206-555-0100"),
            Some(("outside line".into(), "+12065550100".into()))
        );
        assert_eq!(n("0101"), Some(("extension".into(), "+14255550101".into())));
        assert_eq!(n("0"), Some(("operator".into(), "+14255550100".into())));
        assert_eq!(n("+442079460000"), None);
        assert_eq!(n("911"), None);
        assert_eq!(
            p.normalize(1, "62220100").map(|n| n.number.to_string()),
            Some("+12065550100".into())
        );
    }

    #[test]
    fn defaults_and_named_plans_per_user() {
        let (p, _) = plans(PLANS);
        let mut e = LoadErrors::default();
        assert_eq!(p.user_plan("", Some((0, "t")), 2, &mut e), Some(0));
        assert_eq!(p.user_plan("site-b", Some((0, "t")), 3, &mut e), Some(1));
        assert_eq!(p.user_plan("", Some((1, "u")), 4, &mut e), None);
        assert!(e.is_empty());
        assert_eq!(p.user_plan("site-b", Some((1, "u")), 5, &mut e), None);
        assert_eq!(e.0.len(), 1);
        assert_eq!(
            e.to_string(),
            "users.csv:5: dial_plan: tenant u has no dial plan \"site-b\" in dialplans.toml"
        );
    }

    #[test]
    fn bad_plans_name_file_line_and_field() {
        let cases = [
            ("[[dial_plan]]\nid = \"a\"\ntenant = \"nobody\"\n", "dialplans.toml:3: tenant: unknown tenant"),
            (
                "[[dial_plan]]\nid = \"a\"\ntenant = \"t\"\n[[dial_plan.rule]]\nname = \"r\"\npattern = '^(?=9)'\ntranslation = \"$1\"\n",
                "dialplans.toml:6: pattern: rule \"r\"",
            ),
            (
                "[[dial_plan]]\nid = \"a\"\ntenant = \"t\"\n[[dial_plan.rule]]\nname = \"r\"\npattern = '^(\\d)$'\ntranslation = \"+$2\"\n",
                "dialplans.toml:7: translation: rule \"r\": $2 names a group the pattern does not have (1 groups)",
            ),
            (
                "[[dial_plan]]\nid = \"a\"\ntenant = \"t\"\ndefault = true\n[[dial_plan]]\nid = \"b\"\ntenant = \"t\"\ndefault = true\n",
                "dialplans.toml:6: default: tenant t has a default plan already: \"a\"",
            ),
            (
                "[[dial_plan]]\nid = \"a\"\ntenant = \"t\"\n[[dial_plan]]\nid = \"a\"\ntenant = \"t\"\n",
                "dialplans.toml:5: id: tenant t has two dial plans \"a\"",
            ),
            ("[[dial_plan]]\nid = \"a\"\ntenant = \"t\"\nbogus = 1\n", "dialplans.toml:4"),
        ];
        for (text, want) in cases {
            let (_, e) = plans(text);
            assert!(e.to_string().starts_with(want), "{want}\n got: {e}");
        }
        let many: String = (0..51)
            .map(|i| format!("[[dial_plan.rule]]\nname = \"r{i}\"\npattern = '^{i}$'\ntranslation = \"+1\"\n"))
            .collect();
        let (_, e) = plans(&format!(
            "[[dial_plan]]\nid = \"a\"\ntenant = \"t\"\n{many}"
        ));
        assert!(
            e.to_string()
                .contains("rule: 51 rules: a dial plan has at most 50"),
            "{e}"
        );
    }

    #[test]
    fn translations() {
        assert_eq!(
            parse_translation("+1425555$1"),
            Ok(vec![Piece::Text("+1425555".into()), Piece::Group(1)])
        );
        assert_eq!(
            parse_translation("$10${12}$$"),
            Ok(vec![
                Piece::Group(1),
                Piece::Text("0".into()),
                Piece::Group(12),
                Piece::Text("$".into())
            ])
        );
        assert!(parse_translation("+1$").is_err());
        assert!(parse_translation("${x}").is_err());
    }
}
