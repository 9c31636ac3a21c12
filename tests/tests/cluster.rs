//! Several nodes on one PostgreSQL store (DESIGN §6 "Several nodes"), end to end: real daemons,
//! a real throwaway PostgreSQL server, SIP over UDP and the HTTP API.
//!
//! One server per test binary, shared by the tests (each takes a database of its own) and
//! stopped when the last test using it lets go. The store-restart test has a server of its own.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate_tests::daemon::{temp_dir, Daemon, Options, SipRequest};
use tollgate_tests::postgres::Postgres;
use tollgate_tests::{repo_root, tollgate_output};

/// The shared server, alive while a test holds it.
fn postgres() -> Arc<Postgres> {
    static PG: Mutex<Weak<Postgres>> = Mutex::new(Weak::new());
    let mut slot = PG.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(pg) = slot.upgrade() {
        return pg;
    }
    let pg = Arc::new(Postgres::start());
    *slot = Arc::downgrade(&pg);
    pg
}

/// These tests drain pools with many calls of few users, faster than the default per-user
/// limits allow (`[tenant.limits]`, tested in `abuse.rs`): every tenant here lifts them.
const NO_USER_LIMITS: &str =
    "[tenant.limits]\nuser_concurrent_calls = 0\nuser_calls_per_minute = 0\n";

/// `acme`: three US users on the 120-minute plan (a 21,600 s pool); `cred`: one user on
/// Communications Credits only, 1.00 at 0.019 a minute in the US (52 one-minute grants);
/// `lim`: plenty of credits, but a user spend limit of 0.50 (26 one-minute grants).
fn directory() -> PathBuf {
    let dir = temp_dir("cluster-dir");
    let config = repo_root().join("config");
    for f in ["catalog.toml", "rates.csv"] {
        std::fs::copy(config.join(f), dir.join(f)).expect("copy directory file");
    }
    std::fs::write(
        dir.join("tenants.toml"),
        format!(
            "[[tenant]]\nid = \"acme\"\ndomains = [\"acme.example\"]\ncredits = \"0.00\"\n{NO_USER_LIMITS}\n\
             [[tenant]]\nid = \"cred\"\ndomains = [\"cred.example\"]\ncredits = \"1.00\"\n{NO_USER_LIMITS}\n\
             [[tenant]]\nid = \"lim\"\ndomains = [\"lim.example\"]\ncredits = \"100.00\"\n\
             user_spend_limit = \"0.50\"\n{NO_USER_LIMITS}",
        ),
    )
    .expect("tenants");
    std::fs::write(
        dir.join("users.csv"),
        "tenant,user,usage_location,licenses\n\
         acme,a1@acme.example,US,MCOEV;MCOPSTN5\n\
         acme,a2@acme.example,US,MCOEV;MCOPSTN5\n\
         acme,a3@acme.example,US,MCOEV;MCOPSTN5\n\
         cred,c1@cred.example,US,MCOEV;MCOPSTNC\n\
         lim,l1@lim.example,US,MCOEV;MCOPSTNC\n",
    )
    .expect("users");
    dir
}

/// Whole seconds of the acme pool, and one grant.
const POOL: u64 = 3 * 120 * 60;
const GRANT: u64 = 60;

struct Node {
    daemon: Daemon,
    id: String,
}

fn start(
    url: &str,
    id: &str,
    directory: &std::path::Path,
    ledger: Option<&std::path::Path>,
) -> Node {
    start_at(url, id, directory, ledger, None)
}

/// [`start`], the node's wall clock starting at `clock` (see [`Options::clock`]).
fn start_at(
    url: &str,
    id: &str,
    directory: &std::path::Path,
    ledger: Option<&std::path::Path>,
    clock: Option<&str>,
) -> Node {
    let extra = format!(
        "[grants]\ngrant_seconds = {GRANT}\n[cluster]\nstore = \"{url}\"\nnode_id = \"{id}\"\nlease_seconds = 10\n"
    );
    let daemon = Daemon::start_opts(&Options {
        directory: Some(directory),
        directory_extra: "watch = false",
        ledger,
        extra: &extra,
        clock,
        ..Options::default()
    });
    Node {
        daemon,
        id: id.into(),
    }
}

/// An INVITE from `user` to a US number: the status and `X-Tollgate-Reason`.
fn call(n: &Node, user: &str, call_id: &str) -> (u16, String) {
    let r = n
        .daemon
        .udp(&SipRequest::invite(&format!("sip:{user}"), "+12125550100", call_id).render());
    (
        r.status(),
        r.header("X-Tollgate-Reason").unwrap_or("").to_string(),
    )
}

/// Accounts of the store that break `used + reserved + held ≤ capacity`.
fn overdrawn(pg: &Postgres, db: &str) -> String {
    pg.psql(
        db,
        "SELECT coalesce(string_agg(account || ':' || (used + reserved + held - capacity), ','), '') \
         FROM tg_accounts WHERE used + reserved + held > capacity",
    )
}

fn json(n: &Node, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, text) = n.daemon.http(method, path, body);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Waits until `f` holds (at most `secs` seconds).
fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_nodes_never_overdraw_and_use_the_last_minutes_of_a_contended_pool() {
    let pg = postgres();
    let db = "contended";
    let url = pg.database(db);
    let dir = directory();
    let nodes: Vec<Arc<Node>> = ["n1", "n2", "n3"]
        .iter()
        .map(|id| Arc::new(start(&url, id, &dir, None)))
        .collect();
    let admitted = Arc::new(AtomicUsize::new(0));
    let before_first_exhausted = Arc::new(Mutex::new(None::<usize>));
    let unavailable = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    // The invariant, checked in the store all along.
    let checker = {
        let (pg, done) = (Arc::clone(&pg), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut checks = 0;
            while !done.load(Ordering::Relaxed) {
                assert_eq!(overdrawn(&pg, db), "", "overdraft in the store");
                checks += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            checks
        })
    };
    let callers: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let n = Arc::clone(n);
            let (admitted, first, unavailable) = (
                Arc::clone(&admitted),
                Arc::clone(&before_first_exhausted),
                Arc::clone(&unavailable),
            );
            std::thread::spawn(move || {
                let mut exhausted = 0;
                for k in 0..2000 {
                    let user = format!("a{}@acme.example", k % 3 + 1);
                    match call(&n, &user, &format!("cont-{i}-{k}")) {
                        (302, _) => {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                        (403, r) if r == "pool_exhausted" => {
                            let mut f = first.lock().unwrap();
                            f.get_or_insert(admitted.load(Ordering::SeqCst));
                            exhausted += 1;
                            if exhausted >= 5 {
                                return;
                            }
                        }
                        (503, r) if r == "store_unavailable" => {
                            let n = unavailable.fetch_add(1, Ordering::SeqCst);
                            assert!(n < 100, "the store is up: too many 503 store_unavailable");
                        }
                        other => panic!("unexpected answer {other:?}"),
                    }
                }
            })
        })
        .collect();
    for c in callers {
        c.join().expect("caller");
    }
    done.store(true, Ordering::Relaxed);
    let checks = checker.join().expect("checker");
    let total = admitted.load(Ordering::SeqCst) as u64;
    let first = before_first_exhausted.lock().unwrap().unwrap_or(0) as u64;
    let grants = POOL / GRANT;
    eprintln!(
        "admitted {total} of {grants} grants, {first} before the first pool_exhausted, {} store_unavailable, {checks} invariant checks",
        unavailable.load(Ordering::SeqCst)
    );
    assert!(
        total <= grants,
        "admitted {total} grants of {grants}: overdraft"
    );
    assert!(
        first * 100 >= grants * 95,
        "only {first} of {grants} grants admitted before the first pool_exhausted"
    );
    // Every node shows the cluster-wide figures (within a couple of seconds).
    for n in &nodes {
        eventually(5, "the pool's figures on every node", || {
            let (status, v) = json(n, "GET", "/v1/pools?tenant=acme", "");
            let p = &v["pools"][0];
            status == 200
                && p["capacity_seconds"] == POOL
                && p["reserved_seconds"].as_u64().unwrap_or(0)
                    + p["held_seconds"].as_u64().unwrap_or(0)
                    == total * GRANT
        });
    }
    assert_eq!(overdrawn(&pg, db), "");
    let (status, v) = json(&nodes[0], "GET", "/v1/cluster", "");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(3), "{v}");
    let seen: Vec<&str> = v["nodes"]
        .as_array()
        .map(|ns| ns.iter().filter_map(|n| n["node_id"].as_str()).collect())
        .unwrap_or_default();
    let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(seen, ids, "{v}");
}

#[test]
fn a_call_ends_exactly_once_on_any_node() {
    let pg = postgres();
    let url = pg.database("anynode");
    let dir = directory();
    let a = start(&url, "a", &dir, None);
    let b = start(&url, "b", &dir, None);
    assert_eq!(call(&a, "a1@acme.example", "x-1").0, 302);
    assert_eq!(call(&a, "a2@acme.example", "x-2").0, 302);
    // The call reaches the store about a second after its 302; B waits for it.
    let (status, v) = json(&b, "GET", "/v1/calls/x-1", "");
    assert_eq!(
        (status, v["state"].as_str()),
        (200, Some("reserved")),
        "{v}"
    );
    let (status, v) = json(
        &b,
        "POST",
        "/v1/calls/x-1/end",
        r#"{"billable_seconds": 61}"#,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["charged_seconds"].as_u64(), v["changed"].as_bool()),
        (Some(60), Some(true)),
        "{v}"
    );
    // Again, on either node: the same figures, nothing charged twice.
    for n in [&a, &b] {
        let (status, v) = json(n, "POST", "/v1/calls/x-1/end", r#"{"billable_seconds": 5}"#);
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            (v["charged_seconds"].as_u64(), v["changed"].as_bool()),
            (Some(60), Some(false)),
            "{v}"
        );
    }
    // A release on B gives x-2's reservation back.
    let (status, v) = json(&b, "POST", "/v1/calls/x-2/release", "");
    assert_eq!(
        (status, v["state"].as_str()),
        (200, Some("released")),
        "{v}"
    );
    // A learns that its calls ended elsewhere; the pool shows one minute used on both nodes.
    eventually(5, "A sees x-1 settled", || {
        json(&a, "GET", "/v1/calls/x-1", "").1["state"] == "settled"
    });
    for n in [&a, &b] {
        eventually(5, "one minute used", || {
            let v = json(n, "GET", "/v1/pools?tenant=acme", "").1;
            v["pools"][0]["used_seconds"] == 60 && v["pools"][0]["reserved_seconds"] == 0
        });
    }
    // The CLI reads the cluster: every node's calls, the pools cluster-wide.
    let month = json(&a, "GET", "/v1/calls/x-1", "").1["month"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let config = b.daemon.config_path();
    let cli = |cmd: &str, args: &[&str]| tollgate_output(cmd, &config, args);
    let cdrs = cli("cdrs", &["--month", &month, "--format", "json"]);
    assert!(
        cdrs.contains("\"x-1\"") && cdrs.contains("\"x-2\""),
        "{cdrs}"
    );
    let pools: Value = serde_json::from_str(&cli("pools", &["--month", &month])).expect("json");
    assert_eq!(pools["pools"][0]["used_seconds"], 60, "{pools}");
    // Unknown everywhere: 404 after the wait for a late delivery.
    let (status, v) = json(
        &b,
        "POST",
        "/v1/calls/nope/end",
        r#"{"billable_seconds": 5}"#,
    );
    assert_eq!(
        (status, v["reason"].as_str()),
        (404, Some("unknown_call")),
        "{v}"
    );
    assert_eq!(overdrawn(&pg, "anynode"), "");
}

/// The pool figures of acme as `n` shows them: (used, reserved).
fn acme_pool(n: &Node) -> (Value, Value) {
    let v = json(n, "GET", "/v1/pools?tenant=acme", "").1;
    (
        v["pools"][0]["used_seconds"].clone(),
        v["pools"][0]["reserved_seconds"].clone(),
    )
}

/// A proxy that times out on one node sends the same INVITE to another (dispatcher failover):
/// both may admit it. The Call-ID names one call: its end settles one admission and releases
/// the other, whichever arrives at the store first.
#[test]
fn the_same_invite_admitted_on_two_nodes_is_charged_once() {
    let pg = postgres();
    let db = "duplicate";
    let url = pg.database(db);
    let dir = directory();
    let a = start(&url, "a", &dir, None);
    let b = start(&url, "b", &dir, None);
    let rows = |id: &str| {
        pg.psql(
            db,
            &format!(
                "SELECT string_agg(node_id || ':' || state, ',' ORDER BY node_id) FROM tg_calls \
                 WHERE call_id = '{id}'"
            ),
        )
    };
    // Both admissions in the store, then the end on B: B's settled, A's released.
    assert_eq!(call(&a, "a1@acme.example", "dup-1").0, 302);
    assert_eq!(call(&b, "a1@acme.example", "dup-1").0, 302);
    eventually(5, "both admissions in the store", || {
        rows("dup-1") == "a:reserved,b:reserved"
    });
    let (status, v) = json(
        &b,
        "POST",
        "/v1/calls/dup-1/end",
        r#"{"billable_seconds": 61}"#,
    );
    assert_eq!(
        (status, v["charged_seconds"].as_u64()),
        (200, Some(60)),
        "{v}"
    );
    eventually(5, "B's settlement in the store", || {
        rows("dup-1") == "a:released,b:settled"
    });
    eventually(5, "A releases its admission", || {
        json(&a, "GET", "/v1/calls/dup-1", "").1["state"] == "released"
    });
    // Any node answers for the Call-ID with the settled admission.
    let v = json(
        &a,
        "POST",
        "/v1/calls/dup-1/end",
        r#"{"billable_seconds": 5}"#,
    )
    .1;
    assert_eq!(
        (v["charged_seconds"].as_u64(), v["changed"].as_bool()),
        (Some(60), Some(false)),
        "{v}"
    );
    // The second admission reaches the store after the end: released on delivery.
    assert_eq!(call(&a, "a2@acme.example", "dup-2").0, 302);
    let (status, v) = json(
        &a,
        "POST",
        "/v1/calls/dup-2/end",
        r#"{"billable_seconds": 60}"#,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(call(&b, "a2@acme.example", "dup-2").0, 302);
    eventually(5, "B releases its late admission", || {
        rows("dup-2") == "a:settled,b:released"
    });
    eventually(5, "B's record released", || {
        json(&b, "GET", "/v1/calls/dup-2", "").1["state"] == "released"
    });
    for n in [&a, &b] {
        eventually(5, "two minutes used, nothing reserved", || {
            acme_pool(n) == (Value::from(120), Value::from(0))
        });
    }
    assert_eq!(overdrawn(&pg, db), "");
}

/// An extension sent to a node that did not admit the call takes the grant from the pool of
/// record; the admitting node adopts it (it neither expires the call early nor refunds more
/// than was reserved) and the call settles once.
#[test]
fn a_call_is_extended_on_any_node() {
    let pg = postgres();
    let db = "extend";
    let url = pg.database(db);
    let dir = directory();
    let a = start(&url, "a", &dir, None);
    let b = start(&url, "b", &dir, None);
    assert_eq!(call(&a, "a1@acme.example", "ext-1").0, 302);
    let (status, v) = json(&b, "POST", "/v1/calls/ext-1/extend", "");
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["granted_seconds"].as_u64(), v["max_duration"].as_u64()),
        (Some(GRANT), Some(2 * GRANT)),
        "{v}"
    );
    eventually(5, "A adopts the extension", || {
        json(&a, "GET", "/v1/calls/ext-1", "").1["reserved_seconds"] == 2 * GRANT
    });
    // And once more on A, from its own share: three grants in all.
    let (status, v) = json(&a, "POST", "/v1/calls/ext-1/extend", "");
    assert_eq!(
        (status, v["max_duration"].as_u64()),
        (200, Some(3 * GRANT)),
        "{v}"
    );
    eventually(5, "three grants reserved in the store", || {
        acme_pool(&b) == (Value::from(0), Value::from(3 * GRANT))
    });
    let (status, v) = json(
        &b,
        "POST",
        "/v1/calls/ext-1/end",
        r#"{"billable_seconds": 150}"#,
    );
    assert_eq!(
        (status, v["charged_seconds"].as_u64()),
        (200, Some(3 * GRANT)),
        "{v}"
    );
    for n in [&a, &b] {
        eventually(5, "three grants used, nothing reserved", || {
            acme_pool(n) == (Value::from(3 * GRANT), Value::from(0))
        });
    }
    // An ended call is not extended, on either node (once A has learned of the end).
    eventually(5, "A sees the call settled", || {
        json(&a, "GET", "/v1/calls/ext-1", "").1["state"] == "settled"
    });
    for n in [&a, &b] {
        let (status, v) = json(n, "POST", "/v1/calls/ext-1/extend", "");
        assert_eq!(
            (status, v["reason"].as_str()),
            (409, Some("settled")),
            "{v}"
        );
    }
    assert_eq!(overdrawn(&pg, db), "");
}

/// Capacities follow the directory: a license added and reloaded on one node changes the pool
/// of record for every node, and the other node, reloaded from the same files, agrees.
#[test]
fn a_reload_changes_the_pool_of_record_for_every_node() {
    let pg = postgres();
    let db = "reload";
    let url = pg.database(db);
    let dir = directory();
    let a = start(&url, "a", &dir, None);
    let b = start(&url, "b", &dir, None);
    let capacity = |n: &Node| {
        json(n, "GET", "/v1/pools?tenant=acme", "").1["pools"][0]["capacity_seconds"].clone()
    };
    for n in [&a, &b] {
        eventually(5, "the pool of record", || capacity(n) == POOL);
    }
    let users = dir.join("users.csv");
    let mut text = std::fs::read_to_string(&users).expect("users.csv");
    text.push_str("acme,a4@acme.example,US,MCOEV;MCOPSTN5\n");
    std::fs::write(&users, text).expect("users.csv");
    let (status, v) = json(&a, "POST", "/v1/reload", "");
    assert_eq!(status, 200, "{v}");
    let four = POOL / 3 * 4;
    for n in [&a, &b] {
        eventually(5, "four licenses' minutes on every node", || {
            capacity(n) == four
        });
    }
    assert_eq!(call(&a, "a4@acme.example", "new-user").0, 302);
    // B reloads the same files: the same figure, nothing changes.
    let (status, v) = json(&b, "POST", "/v1/reload", "");
    assert_eq!(status, 200, "{v}");
    assert_eq!(call(&b, "a4@acme.example", "new-user-b").0, 302);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        pg.psql(
            db,
            "SELECT capacity FROM tg_accounts WHERE account LIKE 'pool/%/acme/%'"
        ),
        four.to_string()
    );
    assert_eq!(overdrawn(&pg, db), "");
}

/// A store written by the first schema (calls keyed by Call-ID alone) is migrated in place by
/// the first node that starts.
#[test]
fn a_store_of_schema_1_is_migrated() {
    let pg = postgres();
    let db = "schema1";
    let url = pg.database(db);
    pg.psql(
        db,
        "CREATE TABLE tg_meta (version integer NOT NULL); INSERT INTO tg_meta VALUES (1); \
         CREATE TABLE tg_calls (call_id text PRIMARY KEY, node_id text NOT NULL, account text, \
         state text NOT NULL, version integer NOT NULL, reserved bigint NOT NULL, \
         charged bigint NOT NULL, month text NOT NULL, seq bigint NOT NULL, ended_by text, \
         changed bigint NOT NULL, row jsonb NOT NULL); \
         INSERT INTO tg_calls VALUES ('old', 'z', NULL, 'settled', 2, 0, 0, '2026-01', 1, 'y', \
         1, '[]');",
    );
    let dir = directory();
    let a = start(&url, "a", &dir, None);
    eventually(5, "the migration", || {
        pg.psql(db, "SELECT max(version) FROM tg_meta") == "2"
    });
    assert_eq!(
        pg.psql(
            db,
            "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) \
             FROM information_schema.key_column_usage WHERE constraint_name = 'tg_calls_pkey'"
        ),
        "call_id,node_id"
    );
    assert_eq!(
        pg.psql(db, "SELECT written_by FROM tg_calls WHERE call_id = 'old'"),
        "y"
    );
    assert_eq!(call(&a, "a1@acme.example", "after-migration").0, 302);
}

/// Two nodes cross a month end together (their clocks set to the last seconds of December):
/// each opens January's pools from the same directory (the same capacities), gives back its
/// December shares, and a call admitted in December still ends in December's pool, on either
/// node.
#[test]
fn the_month_rolls_over_on_every_node_alike() {
    let pg = postgres();
    let db = "rollover";
    let url = pg.database(db);
    let dir = directory();
    let clock = Some("2026-12-31 23:59:52");
    let a = start_at(&url, "a", &dir, None, clock);
    let b = start_at(&url, "b", &dir, None, clock);
    let month = |n: &Node| {
        json(n, "GET", "/v1/pools?tenant=acme", "").1["pools"][0]["month"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!((month(&a), month(&b)), ("2026-12".into(), "2026-12".into()));
    assert_eq!(call(&a, "a1@acme.example", "dec-a").0, 302);
    assert_eq!(call(&b, "a2@acme.example", "dec-b").0, 302);
    for n in [&a, &b] {
        eventually(15, "January on every node", || month(n) == "2027-01");
    }
    assert_eq!(call(&a, "a3@acme.example", "jan-a").0, 302);
    assert_eq!(call(&b, "a1@acme.example", "jan-b").0, 302);
    let figures = |m: &str| {
        pg.psql(
            db,
            &format!(
                "SELECT capacity || ':' || used || ':' || reserved FROM tg_accounts \
                 WHERE account LIKE 'pool/{m}/acme/%'"
            ),
        )
    };
    eventually(5, "both months' reservations in the store", || {
        figures("2026-12") == format!("{POOL}:0:{}", 2 * GRANT)
            && figures("2027-01") == format!("{POOL}:0:{}", 2 * GRANT)
    });
    // December's shares go back once no node holds December's pools any more.
    eventually(5, "December's shares returned", || {
        pg.psql(
            db,
            "SELECT count(*) FROM tg_shares WHERE account LIKE 'pool/2026-12/%' AND held > 0",
        ) == "0"
    });
    // December's calls end in December's pool, each on the other node.
    for (n, id) in [(&b, "dec-a"), (&a, "dec-b")] {
        let (status, v) = json(
            n,
            "POST",
            &format!("/v1/calls/{id}/end"),
            r#"{"billable_seconds": 30}"#,
        );
        assert_eq!(
            (status, v["charged_seconds"].as_u64()),
            (200, Some(GRANT)),
            "{v}"
        );
    }
    eventually(5, "December settled", || {
        figures("2026-12") == format!("{POOL}:{}:0", 2 * GRANT)
    });
    let v = json(&a, "GET", "/v1/pools?tenant=acme&month=2026-12", "").1;
    assert_eq!(v["pools"][0]["used_seconds"], 2 * GRANT, "{v}");
    assert_eq!(overdrawn(&pg, db), "");
}

#[test]
fn a_node_killed_with_9_loses_nothing_and_its_share_returns() {
    let pg = postgres();
    let db = "killed";
    let url = pg.database(db);
    let dir = directory();
    let ledger_dir = temp_dir("cluster-ledger");
    let ledger = ledger_dir.join("a.db");
    let a = start(&url, "a", &dir, Some(&ledger));
    let b = start(&url, "b", &dir, None);
    let ids: Vec<String> = (0..20).map(|i| format!("k-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(call(&a, &format!("a{}@acme.example", i % 3 + 1), id).0, 302);
    }
    std::thread::sleep(Duration::from_millis(1500));
    a.daemon.kill9();
    // Every call A admitted ends on B, once.
    for id in &ids {
        let (status, v) = json(
            &b,
            "POST",
            &format!("/v1/calls/{id}/end"),
            r#"{"billable_seconds": 30}"#,
        );
        assert_eq!(
            (status, v["changed"].as_bool()),
            (200, Some(true)),
            "{id}: {v}"
        );
    }
    let used = || {
        pg.psql(
            db,
            "SELECT used FROM tg_accounts WHERE account LIKE 'pool/%/acme/%'",
        )
    };
    assert_eq!(used(), (20 * GRANT).to_string());
    // A's unused share goes back once its lease (10 s) runs out.
    eventually(20, "A's share to return", || {
        pg.psql(db, "SELECT count(*) FROM tg_shares WHERE node_id = 'a'") == "0"
    });
    assert_eq!(overdrawn(&pg, db), "");
    // A restarts on its ledger: its rows are delivered again, nothing is counted twice, and it
    // learns that its calls ended on B.
    let a = start(&url, "a", &dir, Some(&ledger));
    eventually(5, "A to see its calls ended elsewhere", || {
        json(&a, "GET", "/v1/calls/k-0", "").1["state"] == "settled"
    });
    assert_eq!(used(), (20 * GRANT).to_string());
    assert_eq!(
        pg.psql(
            db,
            "SELECT reserved FROM tg_accounts WHERE account LIKE 'pool/%/acme/%'"
        ),
        "0"
    );
    assert_eq!(call(&a, "a1@acme.example", "after-restart").0, 302);
    assert_eq!(overdrawn(&pg, db), "");
}

#[test]
fn the_store_away_then_back() {
    // A server of its own: it is stopped and started.
    let pg = Postgres::start();
    let url = pg.database("away");
    let dir = directory();
    let a = start(&url, "a", &dir, None);
    // Warm up: A burns, so it holds a share beyond the next call.
    for i in 0..5 {
        assert_eq!(call(&a, "a1@acme.example", &format!("w-{i}")).0, 302);
    }
    eventually(5, "a share of more than one grant", || {
        let v = json(&a, "GET", "/v1/cluster", "").1;
        v["shares"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["free"].as_u64().unwrap_or(0) > GRANT))
    });
    pg.stop();
    // From the share while it lasts, then 503 store_unavailable; emergency calls always.
    let mut answers = Vec::new();
    for i in 0..200 {
        let (status, reason) = call(&a, "a2@acme.example", &format!("d-{i}"));
        answers.push(status);
        if status == 503 {
            assert_eq!(reason, "store_unavailable");
            break;
        }
    }
    assert_eq!(
        answers.first(),
        Some(&302),
        "the share admits while the store is away: {answers:?}"
    );
    assert_eq!(answers.last(), Some(&503), "beyond the share: {answers:?}");
    let r = a
        .daemon
        .udp(&SipRequest::invite("sip:a3@acme.example", "911", "sos").render());
    assert_eq!(r.status(), 302, "{}", r.text);
    pg.start_again();
    eventually(20, "service to resume", || {
        call(&a, "a3@acme.example", &format!("back-{}", rand_id())).0 == 302
    });
    assert_eq!(overdrawn(&pg, "away"), "");
}

#[test]
fn two_nodes_race_on_the_last_credits() {
    let pg = postgres();
    let db = "credits";
    let url = pg.database(db);
    let dir = directory();
    let nodes: Vec<Arc<Node>> = ["c1", "c2"]
        .iter()
        .map(|id| Arc::new(start(&url, id, &dir, None)))
        .collect();
    // 1.00 at 0.019 a minute: 52 one-minute grants at most.
    let n = race(&nodes, "c1@cred.example", "credits_exhausted");
    eprintln!("credits: {n} of 52 grants admitted");
    assert!(n <= 52, "{n} grants paid from 1.00: overdraft");
    assert!(n >= 49, "only {n} of 52 grants admitted");
    // A user spend limit holds across the nodes too: 0.50 is 26 grants, not 26 per node.
    let n = race(&nodes, "l1@lim.example", "spend_limit_reached");
    eprintln!("spend limit: {n} of 26 grants admitted");
    assert!(n <= 26, "{n} grants within a 0.50 limit: overdraft");
    assert!(n >= 24, "only {n} of 26 grants admitted");
    assert_eq!(overdrawn(&pg, db), "");
}

/// Two threads call as `user` on the nodes until one hears `reason`; returns how many calls
/// were admitted.
fn race(nodes: &[Arc<Node>], user: &str, reason: &'static str) -> usize {
    let admitted = Arc::new(AtomicUsize::new(0));
    let racers: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let (n, admitted, user) = (Arc::clone(n), Arc::clone(&admitted), user.to_string());
            std::thread::spawn(move || {
                for k in 0..200 {
                    match call(&n, &user, &format!("{user}-{i}-{k}")) {
                        (302, _) => {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                        (403, r) if r == reason => return,
                        (503, r) if r == "store_unavailable" => {}
                        other => panic!("unexpected answer {other:?}"),
                    }
                }
            })
        })
        .collect();
    for r in racers {
        r.join().expect("racer");
    }
    admitted.load(Ordering::SeqCst)
}

/// A fresh suffix for Call-IDs of retried calls.
fn rand_id() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
