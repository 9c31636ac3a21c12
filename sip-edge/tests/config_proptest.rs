//! Property test of the `tollgate.toml` loader (issue 15): any file built from the real tables
//! and keys, unknown ones and values of every type and range, gets an answer — settings, or
//! errors that each name `tollgate.toml` — and never a panic. What `check` accepts is usable:
//! listen addresses parse, the reload guard is a percentage, the grants are consistent.

use proptest::prelude::*;
use tollgate::config::DaemonConfig;

const TABLES: &[(&str, &[&str])] = &[
    (
        "sip",
        &[
            "listen",
            "trusted_peers",
            "untrusted",
            "tcp_max_connections",
            "tcp_idle_timeout_seconds",
        ],
    ),
    ("http", &["listen", "token_file"]),
    ("directory", &["path", "watch", "reload_max_drop_percent"]),
    (
        "ledger",
        &[
            "enabled",
            "path",
            "synchronous",
            "queue",
            "batch",
            "linger_us",
        ],
    ),
    (
        "grants",
        &[
            "grant_seconds",
            "max_call_seconds",
            "settle_grace_seconds",
            "billing_increment_seconds",
        ],
    ),
    ("routes", &["calling_plan", "emergency"]),
    ("emergency", &["default_region"]),
    ("bogus", &["x"]),
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (0u64..200).prop_map(|n| n.to_string()),
        Just("18446744073709551616".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "[a-zA-Z0-9:./{}\\[\\] _-]{0,20}".prop_map(|s| format!("{s:?}")),
        Just("\"udp:127.0.0.1:5060\"".to_string()),
        Just("[\"udp:127.0.0.1:0\", \"tcp:[::1]:0\", \"sctp:1.2.3.4:5\"]".to_string()),
        Just("[\"10.0.0.0/8\", \"300.1.1.1/33\", \"::1/129\"]".to_string()),
        Just("\"GB\"".to_string()),
        Just("\"UK\"".to_string()),
        Just("[1, \"x\"]".to_string()),
        Just("{ a = 1 }".to_string()),
    ]
}

fn file() -> impl Strategy<Value = String> {
    let entry = (0..TABLES.len(), any::<usize>(), value());
    prop::collection::vec(entry, 0..12).prop_map(|entries| {
        let mut text = String::new();
        for (t, k, v) in entries {
            let (table, keys) = TABLES[t];
            text.push_str(&format!("[{table}]\n{} = {v}\n", keys[k % keys.len()]));
        }
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn every_tollgate_toml_gets_an_answer(text in file()) {
        let parsed = DaemonConfig::from_toml(&text);
        let checked = match parsed {
            Ok(c) => c.check(),
            Err(e) => {
                prop_assert!(e.to_string().starts_with("tollgate.toml"), "{e}");
                return Ok(());
            }
        };
        match checked {
            Ok(c) => {
                prop_assert!(c.file.directory.reload_max_drop_percent <= 100);
                let g = &c.engine.grants;
                prop_assert!(g.billing_increment_seconds >= 1);
                prop_assert!(g.grant_seconds <= g.max_call_seconds);
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in errors {
                    prop_assert!(e.to_string().starts_with("tollgate.toml"), "{e}");
                }
            }
        }
    }
}
