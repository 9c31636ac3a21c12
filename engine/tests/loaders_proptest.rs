//! Property test of the directory loaders (issue 15): the shipped files, damaged the ways files
//! get damaged (cut short, a line lost or doubled, bytes overwritten, a stray line), always get
//! an answer — a snapshot or errors that name their file — and never a panic. A snapshot that
//! loads holds only what the call path can serve: every user's usage location is a region of
//! the numbering plan, and every user is found under their UPN.

use proptest::prelude::*;
use tollgate_engine::load::{DirectoryFiles, LoadErrors};
use tollgate_engine::numbering::metadata::is_builtin_region;
use tollgate_engine::Snapshot;

const TENANTS: &str = include_str!("../../config/tenants.toml");
const USERS: &str = include_str!("../../config/users.csv");
const CATALOG: &str = include_str!("../../config/catalog.toml");
const RATES: &str = include_str!("../../config/rates.csv");
const ROUTING: &str = include_str!("../../config/routing.toml");
const DIALPLANS: &str = include_str!("../../config/dialplans.toml");
const FILES: [&str; 6] = [
    "tenants.toml",
    "users.csv",
    "catalog.toml",
    "rates.csv",
    "routing.toml",
    "dialplans.toml",
];

/// How a file gets damaged.
#[derive(Clone, Debug)]
enum Damage {
    CutAt(usize),
    DropLine(usize),
    DoubleLine(usize),
    Overwrite(usize, String),
    InsertLine(usize, String),
    /// A CSV field (line, column) replaced.
    Field(usize, usize, String),
}

fn junk() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 ,;:\"'=#\\[\\]{}._@+-]{0,24}",
        "[\\PC]{0,12}",
        Just("MCOEV MCOPSTN1".to_string()),
        Just("UK".to_string()),
        Just("XX".to_string()),
        Just("99999999999999999999999".to_string()),
        Just(",,,,,,,,,,".to_string()),
        Just("\"".to_string()),
    ]
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::CutAt),
        any::<usize>().prop_map(Damage::DropLine),
        any::<usize>().prop_map(Damage::DoubleLine),
        (any::<usize>(), junk()).prop_map(|(at, s)| Damage::Overwrite(at, s)),
        (any::<usize>(), junk()).prop_map(|(at, s)| Damage::InsertLine(at, s)),
        (any::<usize>(), any::<usize>(), junk()).prop_map(|(l, c, s)| Damage::Field(l, c, s)),
    ]
}

fn floor_char_boundary(s: &str, mut at: usize) -> usize {
    at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &str, d: &Damage) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len().max(1);
    let join = |ls: Vec<&str>| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
    match d {
        Damage::CutAt(at) => text[..floor_char_boundary(text, at % (text.len() + 1))].to_string(),
        Damage::DropLine(i) => {
            let mut ls = lines.clone();
            if !ls.is_empty() {
                ls.remove(i % n);
            }
            join(ls)
        }
        Damage::DoubleLine(i) => {
            let mut ls = lines.clone();
            if !ls.is_empty() {
                ls.insert(i % n, lines[i % n]);
            }
            join(ls)
        }
        Damage::Overwrite(at, s) => {
            let start = floor_char_boundary(text, at % (text.len() + 1));
            let end = floor_char_boundary(text, start + s.len());
            format!("{}{s}{}", &text[..start], &text[end..])
        }
        Damage::Field(i, c, s) => {
            let line = lines.get(i % n).copied().unwrap_or("");
            let mut fields: Vec<&str> = line.split(',').collect();
            let k = c % fields.len();
            fields[k] = s;
            let line = fields.join(",");
            let mut ls = lines.clone();
            if !ls.is_empty() {
                ls[i % n] = &line;
            }
            join(ls)
        }
        Damage::InsertLine(i, s) => {
            let mut ls = lines.clone();
            ls.insert(i % (lines.len() + 1), s);
            join(ls)
        }
    }
}

fn load(files: &[String; 6]) -> Result<Snapshot, LoadErrors> {
    let mut dir = DirectoryFiles::with(|name| {
        let i = FILES.iter().position(|f| *f == name).unwrap_or(0);
        Ok(files[i].as_bytes().to_vec())
    });
    dir.routing = Some(Ok(files[4].as_bytes().to_vec()));
    dir.dialplans = Some(Ok(files[5].as_bytes().to_vec()));
    Snapshot::from_files(dir)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn damaged_directories_get_an_answer(which in 0..6usize, damages in prop::collection::vec(damage(), 1..4)) {
        let mut files = [TENANTS, USERS, CATALOG, RATES, ROUTING, DIALPLANS].map(str::to_string);
        for d in &damages {
            files[which] = apply(&files[which], d);
        }
        match load(&files) {
            Ok(snap) => {
                for u in &snap.users {
                    prop_assert!(is_builtin_region(u.usage_location), "{}", u.usage_location.as_str());
                    let found = snap.lookup(&u.upn).map(|(_, f)| &*f.upn);
                    prop_assert_eq!(found, Some(&*u.upn));
                }
            }
            Err(e) => {
                prop_assert!(!e.is_empty());
                for err in &e.0 {
                    prop_assert!(FILES.contains(&err.file.as_str()), "{err}");
                    prop_assert!(!err.message.is_empty(), "{err}");
                }
            }
        }
    }
}

#[test]
fn the_shipped_directory_loads() {
    let files = [TENANTS, USERS, CATALOG, RATES, ROUTING, DIALPLANS].map(str::to_string);
    let snap = load(&files).unwrap_or_else(|e| panic!("{e}"));
    assert!(!snap.users.is_empty());
}
