//! The deployment files of `deploy/` (DESIGN §8), checked by the tools that will read them and
//! against the real daemon:
//! - promtool checks the alert rules and runs their tests (`alerts_test.yml`), and parses every
//!   query of the Grafana dashboard;
//! - systemd-analyze verifies the unit, pointed at the built binary, without a warning;
//! - every metric the alerts, their tests and the dashboard name is in a live daemon's scrape;
//! - the Kubernetes manifests, the container recipe, the unit and the deployment's
//!   `tollgate.toml` files agree on ports, paths and probes, and those files pass `tollgate check`.
//!
//! promtool (Debian package `prometheus`) and systemd-analyze (`systemd`) are needed: a missing
//! one fails the test with a message saying to run `scripts/test`, which installs both. The
//! container image is not built here (no container engine in CI); deploy/README.md says so.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tollgate_tests::daemon::{temp_dir, Daemon};
use tollgate_tests::{repo_root, tollgate_bin};

/// The directory's files (DESIGN §3), which every deployment ships beside `tollgate.toml`.
use tollgate_tests::DIRECTORY_FILES;

fn deploy_path(rel: &str) -> PathBuf {
    repo_root().join("deploy").join(rel)
}

fn read(rel: &str) -> String {
    let path = deploy_path(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `name` on the PATH, or a failure that says how to get it: these tests do not skip.
fn tool(name: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} not found on PATH: run scripts/test, which installs it \
                 (Debian package {package})"
            )
        })
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Standard output and standard error together.
fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---- Prometheus --------------------------------------------------------------------------------

/// The names of `- alert: NAME` rules.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn promtool_checks_the_rules_and_passes_their_tests() {
    let promtool = tool("promtool", "prometheus");
    let dir = deploy_path("prometheus");
    let alerts = alert_names(&read("prometheus/alerts.yml"));
    let check = run(Command::new(&promtool)
        .args(["check", "rules", "alerts.yml"])
        .current_dir(&dir));
    let text = output_text(&check);
    assert!(check.status.success(), "promtool check rules:\n{text}");
    // Every rule was read: a rule promtool skipped would go untested.
    let found = format!("SUCCESS: {} rules found", alerts.len());
    assert!(text.contains(&found), "expected {found:?}:\n{text}");
    let test = run(Command::new(&promtool)
        .args(["test", "rules", "alerts_test.yml"])
        .current_dir(&dir));
    assert!(
        test.status.success(),
        "promtool test rules:\n{}",
        output_text(&test)
    );
}

#[test]
fn every_alert_is_tested_firing_and_not_firing_and_is_annotated() {
    let rules = read("prometheus/alerts.yml");
    let alerts = alert_names(&rules);
    assert!(alerts.len() >= 9, "too few alerts: {alerts:?}");
    // In alerts_test.yml each alert_rule_test names its alert, then `exp_alerts:`; `[]` there
    // is a case where it must not fire.
    let mut cases: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in read("prometheus/alerts_test.yml").lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("alertname:") {
            current = Some(name.trim().to_string());
        } else if let Some(rest) = t.strip_prefix("exp_alerts:") {
            let name = current
                .take()
                .expect("exp_alerts: without an alertname: before it");
            let case = cases.entry(name).or_default();
            if rest.trim() == "[]" {
                case.1 = true;
            } else {
                case.0 = true;
            }
        }
    }
    for alert in &alerts {
        assert_eq!(
            cases.get(alert),
            Some(&(true, true)),
            "{alert}: alerts_test.yml needs a case where it fires and one where it does not \
             (fires, does not fire)"
        );
    }
    let stale: Vec<_> = cases.keys().filter(|n| !alerts.contains(n)).collect();
    assert!(
        stale.is_empty(),
        "tests of alerts that do not exist: {stale:?}"
    );
    // Each rule waits (`for:`), says how bad (`severity`), and explains itself.
    for block in rules.split("- alert:").skip(1) {
        let name = block.lines().next().unwrap_or("").trim();
        for field in ["expr:", "for:", "severity:", "summary:", "description:"] {
            assert!(block.contains(field), "{name}: no {field}");
        }
    }
}

/// The alert expressions of a rules file: `expr: …` on one line, or the block under `expr: |`.
fn rule_exprs(rules: &str) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest != "|" && rest != ">" && rest != "|-" && rest != ">-" {
            exprs.push(rest.to_string());
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let mut block = String::new();
        while let Some(next) = lines.peek() {
            let deeper = next.len() - next.trim_start().len() > indent;
            if !(deeper || next.trim().is_empty()) {
                break;
            }
            block.push_str(next.trim());
            block.push('\n');
            lines.next();
        }
        exprs.push(block);
    }
    exprs
}

/// The `series:` of a promtool test file.
fn test_series(tests: &str) -> Vec<String> {
    tests
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- series:"))
        .map(|s| s.trim().trim_matches('\'').to_string())
        .collect()
}

/// The dashboard: its panels' queries, and the queries of its template variables.
fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read("grafana/tollgate.json"))
        .unwrap_or_else(|e| panic!("grafana/tollgate.json: {e}"))
}

fn dashboard_exprs(dash: &serde_json::Value) -> Vec<String> {
    let mut exprs = Vec::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap_or("").to_string());
        }
    }
    exprs
}

fn dashboard_variable_queries(dash: &serde_json::Value) -> Vec<String> {
    dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter_map(|v| v["definition"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn dashboard_panels_query_prometheus_and_their_queries_parse() {
    let promtool = tool("promtool", "prometheus");
    let dash = dashboard();
    assert!(dash["uid"].is_string() && dash["title"].is_string());
    let panels = dash["panels"].as_array().expect("panels");
    let mut shown = 0;
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap_or("?");
        // The data source is the dashboard's variable, so the file imports into any Grafana.
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().map_or(0, Vec::len);
        assert!(targets > 0, "{title}: no query");
        shown += 1;
    }
    assert!(shown >= 15, "only {shown} panels");
    // Grafana's variables stand for a range and label values; with those put in, each query is
    // a recording rule promtool can parse.
    let rules: Vec<serde_json::Value> = dashboard_exprs(&dash)
        .iter()
        .enumerate()
        .map(|(i, e)| {
            assert!(!e.trim().is_empty(), "an empty query");
            let expr = e
                .replace("$__rate_interval", "5m")
                .replace("$instance", ".*")
                .replace("$tenant", ".*");
            serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": expr})
        })
        .collect();
    let dir = temp_dir("dashboard");
    let file = dir.join("dashboard_rules.json");
    let doc = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(&file, doc.to_string()).expect("write rules");
    let out = run(Command::new(&promtool).arg("check").arg("rules").arg(&file));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "a dashboard query does not parse:\n{}",
        output_text(&out)
    );
}

/// Every `tollgate_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find("tollgate_").map(|i| i + from) {
        let glued = at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let end = text[at..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |i| i + at);
        if !glued {
            names.insert(text[at..end].to_string());
        }
        from = end.max(at + 1);
    }
    names
}

/// Whether a query's `name` has samples of a family the scrape declares (`# TYPE family type`):
/// a gauge by its own name, a counter as `family_total`, a histogram as `family_bucket`,
/// `_sum` and `_count`. A family with no series yet still has its `# TYPE` line.
fn sample_of_family(name: &str, families: &HashMap<String, String>) -> bool {
    let family_is = |family: &str, kind: &str| families.get(family).is_some_and(|t| t == kind);
    if families
        .get(name)
        .is_some_and(|t| t != "counter" && t != "histogram")
    {
        return true;
    }
    if let Some(family) = name.strip_suffix("_total") {
        if family_is(family, "counter") {
            return true;
        }
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|family| family_is(family, "histogram"))
    })
}

#[test]
fn every_metric_in_the_alerts_and_the_dashboard_is_exported() {
    let d = Daemon::start();
    let (status, scrape) = d.http("GET", "/metrics", "");
    assert_eq!(status, 200, "{scrape}");
    let families: HashMap<String, String> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let (name, kind) = l.split_once(' ')?;
            Some((name.to_string(), kind.trim().to_string()))
        })
        .collect();
    assert!(families.len() >= 10, "# TYPE lines in\n{scrape}");

    let dash = dashboard();
    let mut used: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    let mut note = |texts: Vec<String>, source: &'static str| {
        for text in texts {
            for name in metric_names(&text) {
                used.entry(name).or_default().insert(source);
            }
        }
    };
    note(rule_exprs(&read("prometheus/alerts.yml")), "alerts.yml");
    note(
        test_series(&read("prometheus/alerts_test.yml")),
        "alerts_test.yml",
    );
    note(dashboard_exprs(&dash), "tollgate.json");
    note(dashboard_variable_queries(&dash), "tollgate.json variables");
    assert!(used.len() >= 15, "too few metric names found: {used:?}");
    let missing: Vec<_> = used
        .iter()
        .filter(|(name, _)| !sample_of_family(name, &families))
        .collect();
    assert!(
        missing.is_empty(),
        "not exported by the daemon (name, used in): {missing:?}\nexported: {families:?}"
    );

    // The dashboard shows what an operator looks for first.
    let in_dashboard: BTreeSet<String> = dashboard_exprs(&dash)
        .iter()
        .flat_map(|e| metric_names(e))
        .collect();
    for name in [
        "tollgate_decisions_total",
        "tollgate_decision_seconds_bucket",
        "tollgate_pool_remaining_seconds",
        "tollgate_credits_balance",
        "tollgate_users_at_spend_limit",
        "tollgate_pool_used_seconds",
        "tollgate_reservations_active",
        "tollgate_ledger_commit_errors_total",
        "tollgate_ledger_rejected_writes_total",
        "tollgate_sip_messages_total",
        "tollgate_cluster_parked_calls_total",
        "tollgate_cluster_store_up",
    ] {
        assert!(
            in_dashboard.contains(name),
            "the dashboard does not show {name}"
        );
    }
}

// ---- systemd -----------------------------------------------------------------------------------

/// `systemd-analyze verify` of `unit` (written as `tollgate.service` in a fresh directory): the
/// exit status and the lines it printed about the unit.
fn verify_unit(unit: &str) -> (bool, Vec<String>) {
    let analyze = tool("systemd-analyze", "systemd");
    let dir = temp_dir("unit");
    let path = dir.join("tollgate.service");
    std::fs::write(&path, unit).expect("write unit");
    let out = run(Command::new(analyze).arg("verify").arg(&path));
    let _ = std::fs::remove_dir_all(&dir);
    let about_unit = output_text(&out)
        .lines()
        .filter(|l| l.contains("tollgate.service"))
        .map(str::to_string)
        .collect();
    (out.status.success(), about_unit)
}

#[test]
fn systemd_unit_verifies_without_a_warning() {
    let unit = read("systemd/tollgate.service");
    let lines: BTreeSet<&str> = unit.lines().map(str::trim).collect();
    for line in [
        "Type=simple",
        "ExecStart=/usr/local/bin/tollgate serve --config /etc/tollgate/tollgate.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "DynamicUser=yes",
        "StateDirectory=tollgate",
        "ConfigurationDirectory=tollgate",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
        "LockPersonality=yes",
    ] {
        assert!(lines.contains(line), "tollgate.service lacks {line:?}");
    }
    // The daemon does not speak sd_notify: Type=simple and nothing else.
    let types: Vec<&&str> = lines.iter().filter(|l| l.starts_with("Type=")).collect();
    assert_eq!(types, [&"Type=simple"]);

    // The binary the unit starts must exist for verify: the one just built, in a copy.
    let bin = tollgate_bin();
    let shipped = "/usr/local/bin/tollgate ";
    assert!(
        unit.matches(shipped).count() >= 2,
        "ExecStart and ExecReload"
    );
    let local = unit.replace(shipped, &format!("{} ", bin.display()));
    let (ok, about_unit) = verify_unit(&local);
    assert!(
        ok && about_unit.is_empty(),
        "systemd-analyze verify: ok={ok}\n{}",
        about_unit.join("\n")
    );
    // The same check sees a mistake: an unknown key is reported about the unit.
    let broken = local.replace("[Service]\n", "[Service]\nNoSuchSetting=yes\n");
    let (_, about_broken) = verify_unit(&broken);
    assert!(
        about_broken.iter().any(|l| l.contains("NoSuchSetting")),
        "systemd-analyze did not report an unknown key: {about_broken:?}"
    );

    // The command line of ExecStart is the CLI's.
    let help = run(Command::new(&bin).args(["serve", "--help"]));
    assert!(help.status.success() && output_text(&help).contains("--config"));
}

// ---- tollgate.toml of the deployments ----------------------------------------------------------

fn toml_of(rel: &str) -> toml::Table {
    read(rel)
        .parse()
        .unwrap_or_else(|e| panic!("deploy/{rel}: {e}"))
}

fn toml_str<'a>(t: &'a toml::Table, table: &str, key: &str) -> &'a str {
    t.get(table)
        .and_then(|v| v.get(key))
        .and_then(toml::Value::as_str)
        .unwrap_or_else(|| panic!("[{table}].{key} missing"))
}

/// `[sip].listen` and `[http].listen` as `port/protocol` (`5060/udp`, `9090/tcp`).
fn ports_of(t: &toml::Table) -> BTreeSet<String> {
    let mut ports = BTreeSet::new();
    let listen = t
        .get("sip")
        .and_then(|s| s.get("listen"))
        .and_then(toml::Value::as_array)
        .expect("[sip].listen");
    for l in listen.iter().filter_map(toml::Value::as_str) {
        let (proto, addr) = l.split_once(':').expect("proto:host:port");
        let port = addr.rsplit(':').next().expect("port");
        ports.insert(format!("{port}/{proto}"));
    }
    let http = toml_str(t, "http", "listen");
    ports.insert(format!("{}/tcp", http.rsplit(':').next().expect("port")));
    ports
}

/// The port of `[http].listen`.
fn http_port(t: &toml::Table) -> String {
    toml_str(t, "http", "listen")
        .rsplit(':')
        .next()
        .expect("port")
        .to_string()
}

#[test]
fn deployment_configs_pass_tollgate_check() {
    for rel in ["tollgate.toml", "kubernetes/tollgate.toml"] {
        let text = read(rel);
        let t = toml_of(rel);
        // Installed at /etc/tollgate/tollgate.toml, a relative path would resolve under /etc.
        assert_eq!(toml_str(&t, "directory", "path"), "/etc/tollgate", "{rel}");
        let ledger = toml_str(&t, "ledger", "path");
        assert!(ledger.starts_with("/var/lib/tollgate/"), "{rel}: {ledger}");
        // Reachable from the proxies, not just from the host itself.
        assert!(
            toml_str(&t, "http", "listen").starts_with("0.0.0.0:"),
            "{rel}"
        );

        // The same file with its absolute paths moved into a scratch directory holding the
        // shipped directory and a token: `check` reads every file serve would.
        let dir = temp_dir("deploy-config");
        for f in DIRECTORY_FILES {
            std::fs::copy(repo_root().join("config").join(f), dir.join(f)).expect("copy");
        }
        std::fs::write(dir.join("token"), "test-token\n").expect("token");
        let local = text
            .replace("/etc/tollgate", &dir.display().to_string())
            .replace(
                "/var/lib/tollgate",
                &dir.join("state").display().to_string(),
            );
        let config = dir.join("tollgate.toml");
        std::fs::write(&config, local).expect("write config");
        let out = run(Command::new(tollgate_bin())
            .arg("check")
            .arg("--config")
            .arg(&config));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "deploy/{rel}: tollgate check:\n{}",
            output_text(&out)
        );
    }
    // Several replicas share pools only through a store.
    let k8s = toml_of("kubernetes/tollgate.toml");
    assert!(toml_str(&k8s, "cluster", "store").starts_with("postgres://"));
    assert!(toml_str(&k8s, "http", "token_file").starts_with("/etc/tollgate/"));
}

// ---- container ---------------------------------------------------------------------------------

#[test]
fn containerfile_builds_the_daemon_and_exposes_the_configured_ports() {
    let file = read("container/Containerfile");
    let lines: Vec<&str> = file
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let instruction = |name: &str| -> Vec<&str> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .collect()
    };
    assert!(
        file.contains("cargo build --release --locked -p tollgate"),
        "the release build"
    );
    let froms = instruction("FROM");
    assert_eq!(
        froms.len(),
        2,
        "a build stage and a runtime stage: {froms:?}"
    );
    assert!(froms[1].contains("debian:bookworm-slim"), "{froms:?}");

    let exposed: BTreeSet<String> = instruction("EXPOSE")
        .iter()
        .flat_map(|l| l.split_whitespace())
        .map(str::to_string)
        .collect();
    assert_eq!(exposed, ports_of(&toml_of("tollgate.toml")));

    // Every file copied from the context is in the repository; the directory and the config
    // land where the config says.
    let mut copied = BTreeSet::new();
    for copy in instruction("COPY")
        .iter()
        .filter(|c| !c.starts_with("--from"))
    {
        let words: Vec<&str> = copy.split_whitespace().collect();
        let (dest, sources) = words.split_last().expect("COPY src… dest");
        for src in sources {
            assert!(
                repo_root().join(src).exists() || *src == "./",
                "COPY {src}: not in the repository"
            );
            copied.insert(((*src).to_string(), (*dest).to_string()));
        }
    }
    for f in DIRECTORY_FILES {
        let src = format!("config/{f}");
        assert!(
            copied.contains(&(src.clone(), "/etc/tollgate/".to_string())),
            "{src} is not copied to /etc/tollgate/"
        );
    }
    assert!(copied.contains(&(
        "deploy/tollgate.toml".to_string(),
        "/etc/tollgate/tollgate.toml".to_string()
    )));
    assert!(file.contains("\"--config\", \"/etc/tollgate/tollgate.toml\""));
    assert_eq!(instruction("STOPSIGNAL"), ["SIGTERM"]);
    assert_eq!(
        instruction("USER"),
        ["10001:10001"],
        "a fixed non-root user"
    );
}

// ---- Kubernetes --------------------------------------------------------------------------------

/// The documents of a YAML file as `path = value` pairs
/// (`spec.template.spec.containers[0].name = tollgate`), for the block style the manifests are
/// written in: mappings, sequences (`- `), plain and quoted scalars, flow sequences kept as
/// they are written, `#` comments, `---` between documents. Anything else (tabs, flow mappings,
/// anchors, multi-line scalars, a line that is neither a key nor an item) fails, so the
/// manifests stay within what this reads.
fn yaml_documents(text: &str, file: &str) -> Vec<BTreeMap<String, String>> {
    enum Frame {
        Key(usize, String),
        Seq(usize, usize),
    }
    let indent_of = |f: &Frame| match f {
        Frame::Key(i, _) | Frame::Seq(i, _) => *i,
    };
    let path_of = |stack: &[Frame]| {
        let mut path = String::new();
        for f in stack {
            match f {
                Frame::Key(_, k) if path.is_empty() => path.push_str(k),
                Frame::Key(_, k) => {
                    path.push('.');
                    path.push_str(k);
                }
                Frame::Seq(_, n) => path.push_str(&format!("[{n}]")),
            }
        }
        path
    };
    let mut docs = vec![BTreeMap::new()];
    let mut stack: Vec<Frame> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let at = format!("{file}:{}", n + 1);
        let line = strip_yaml_comment(raw);
        if line.trim().is_empty() {
            continue;
        }
        if line.trim_end() == "---" {
            docs.push(BTreeMap::new());
            stack.clear();
            continue;
        }
        assert!(!line.contains('\t'), "{at}: a tab");
        let mut indent = line.len() - line.trim_start().len();
        let mut rest = line.trim();
        while let Some(item) = rest.strip_prefix("- ") {
            // A key at the same indent is the sequence's parent (`ports:` then `- name:`).
            while stack.last().is_some_and(|f| indent_of(f) > indent) {
                stack.pop();
            }
            match stack.last_mut() {
                Some(Frame::Seq(i, count)) if *i == indent => *count += 1,
                _ => stack.push(Frame::Seq(indent, 0)),
            }
            indent += 2 + (item.len() - item.trim_start().len());
            rest = item.trim_start();
        }
        assert!(
            !rest.starts_with(['{', '&', '*', '|', '>', '?', '!']),
            "{at}: outside the YAML this test reads: {rest}"
        );
        let keyed = rest
            .split_once(": ")
            .or_else(|| rest.strip_suffix(':').map(|k| (k, "")))
            .filter(|(k, _)| {
                !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
            });
        let doc = docs.last_mut().expect("a document");
        match keyed {
            Some((key, value)) => {
                while stack.last().is_some_and(|f| indent_of(f) >= indent) {
                    stack.pop();
                }
                let value = value.trim();
                assert!(
                    !value.starts_with(['{', '&', '*', '|', '>', '!']),
                    "{at}: outside the YAML this test reads: {value}"
                );
                if value.is_empty() {
                    stack.push(Frame::Key(indent, key.to_string()));
                } else {
                    let path = path_of(&stack);
                    let path = if path.is_empty() {
                        key.to_string()
                    } else {
                        format!("{path}.{key}")
                    };
                    doc.insert(path, unquote(value));
                }
            }
            None => {
                // A scalar item of a sequence (`- tenants.toml`).
                assert!(
                    matches!(stack.last(), Some(Frame::Seq(..))),
                    "{at}: neither a key nor an item: {rest}"
                );
                doc.insert(path_of(&stack), unquote(rest));
            }
        }
    }
    docs.retain(|d| !d.is_empty());
    docs
}

/// `line` without a `#` comment (one at the start, or after white space, outside quotes).
fn strip_yaml_comment(line: &str) -> &str {
    let mut quote = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev.is_whitespace() => return &line[..i],
            None => {}
        }
        prev = c;
    }
    line
}

fn unquote(value: &str) -> String {
    let v = value.trim();
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner.to_string();
        }
    }
    v.to_string()
}

fn get<'a>(doc: &'a BTreeMap<String, String>, path: &str) -> &'a str {
    doc.get(path)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{path} missing in {doc:#?}"))
}

/// Indices `i` for which `{prefix}[i]{suffix}` is in `doc`.
fn items(doc: &BTreeMap<String, String>, prefix: &str, suffix: &str) -> Vec<usize> {
    (0..)
        .take_while(|i| doc.contains_key(&format!("{prefix}[{i}]{suffix}")))
        .collect()
}

#[test]
fn kubernetes_manifests_probe_the_configured_http_port_and_agree() {
    let dir = deploy_path("kubernetes");
    let kustomization = yaml_documents(&read("kubernetes/kustomization.yaml"), "kustomization");
    assert_eq!(kustomization.len(), 1);
    let k = &kustomization[0];
    assert_eq!(get(k, "kind"), "Kustomization");

    // Every resource, parsed; every generated file is there (the token is the operator's).
    let mut docs = Vec::new();
    for i in items(k, "resources", "") {
        let rel = get(k, &format!("resources[{i}]"));
        let text = std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        for doc in yaml_documents(&text, rel) {
            for field in ["apiVersion", "kind", "metadata.name"] {
                get(&doc, field);
            }
            docs.push(doc);
        }
    }
    let mut generated: HashMap<String, Vec<String>> = HashMap::new();
    for generator in ["configMapGenerator", "secretGenerator"] {
        for g in items(k, generator, ".name") {
            let name = get(k, &format!("{generator}[{g}].name")).to_string();
            for f in items(k, &format!("{generator}[{g}].files"), "") {
                let file = get(k, &format!("{generator}[{g}].files[{f}]")).to_string();
                if file != "token" {
                    assert!(
                        dir.join(&file).is_file(),
                        "{generator} {name}: {file} missing"
                    );
                }
                let base = Path::new(&file)
                    .file_name()
                    .map(|b| b.to_string_lossy().into_owned())
                    .unwrap_or_default();
                generated.entry(name.clone()).or_default().push(base);
            }
        }
    }
    let mut directory = generated
        .get("tollgate-directory")
        .cloned()
        .unwrap_or_default();
    directory.sort();
    let mut expected: Vec<String> = DIRECTORY_FILES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(directory, expected, "the directory ConfigMap");
    assert_eq!(
        generated.get("tollgate-settings"),
        Some(&vec!["tollgate.toml".to_string(), "token".to_string()])
    );
    let ignored = std::fs::read_to_string(dir.join(".gitignore")).unwrap_or_default();
    assert!(
        ignored.lines().any(|l| l.trim() == "token"),
        "the token stays out of git"
    );

    let config = toml_of("kubernetes/tollgate.toml");
    let by_kind = |kind: &str| -> Vec<&BTreeMap<String, String>> {
        docs.iter().filter(|d| get(d, "kind") == kind).collect()
    };
    let sets = by_kind("StatefulSet");
    assert_eq!(sets.len(), 1);
    let s = sets[0];
    assert_eq!(get(s, "spec.replicas"), "2");
    let c = "spec.template.spec.containers[0]";
    // Named container ports, checked against tollgate.toml.
    let ports: HashMap<&str, (&str, &str)> = items(s, &format!("{c}.ports"), ".name")
        .into_iter()
        .map(|i| {
            let p = format!("{c}.ports[{i}]");
            (
                get(s, &format!("{p}.name")),
                (
                    get(s, &format!("{p}.containerPort")),
                    get(s, &format!("{p}.protocol")),
                ),
            )
        })
        .collect();
    let declared: BTreeSet<String> = ports
        .values()
        .map(|(port, proto)| format!("{port}/{}", proto.to_lowercase()))
        .collect();
    assert_eq!(
        declared,
        ports_of(&config),
        "containerPorts vs tollgate.toml"
    );
    let http = http_port(&config);
    for (probe, path) in [
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
        ("startupProbe", "/healthz"),
    ] {
        assert_eq!(
            get(s, &format!("{c}.{probe}.httpGet.path")),
            path,
            "{probe}"
        );
        let port = get(s, &format!("{c}.{probe}.httpGet.port"));
        let number = ports.get(port).map_or(port, |(n, _)| n);
        assert_eq!(number, http, "{probe} is not on [http].listen's port");
    }
    // Non-root, read-only root file system, the ledger on a volume, the config where
    // tollgate.toml says.
    assert_eq!(
        get(s, "spec.template.spec.securityContext.runAsNonRoot"),
        "true"
    );
    assert_eq!(
        get(s, "spec.template.spec.securityContext.runAsUser"),
        "10001"
    );
    assert_eq!(
        get(s, &format!("{c}.securityContext.readOnlyRootFilesystem")),
        "true"
    );
    assert_eq!(
        get(s, &format!("{c}.securityContext.allowPrivilegeEscalation")),
        "false"
    );
    let mounts: HashMap<&str, &str> = items(s, &format!("{c}.volumeMounts"), ".name")
        .into_iter()
        .map(|i| {
            let m = format!("{c}.volumeMounts[{i}]");
            (
                get(s, &format!("{m}.mountPath")),
                get(s, &format!("{m}.name")),
            )
        })
        .collect();
    let ledger = toml_str(&config, "ledger", "path");
    let state = Path::new(ledger)
        .parent()
        .and_then(Path::to_str)
        .unwrap_or("");
    let claim = mounts
        .get(state)
        .unwrap_or_else(|| panic!("nothing mounted at {state}"));
    assert_eq!(get(s, "spec.volumeClaimTemplates[0].metadata.name"), *claim);
    assert!(mounts.contains_key(toml_str(&config, "directory", "path")));
    let args = get(s, &format!("{c}.args"));
    assert!(
        args.contains("\"--config\", \"/etc/tollgate/tollgate.toml\""),
        "{args}"
    );

    // The Services send SIP and HTTP to ports the container names.
    let services = by_kind("Service");
    assert!(services.len() >= 2);
    let mut protocols = BTreeSet::new();
    for svc in services {
        for i in items(svc, "spec.ports", ".targetPort") {
            let target = get(svc, &format!("spec.ports[{i}].targetPort"));
            let (_, proto) = ports
                .get(target)
                .unwrap_or_else(|| panic!("targetPort {target} is no container port"));
            assert_eq!(get(svc, &format!("spec.ports[{i}].protocol")), *proto);
            protocols.insert((*proto).to_string());
        }
        assert_eq!(
            get(svc, "spec.selector.app.kubernetes.io/name"),
            get(s, "spec.template.metadata.labels.app.kubernetes.io/name")
        );
    }
    assert_eq!(
        protocols,
        BTreeSet::from(["TCP".to_string(), "UDP".to_string()])
    );
}

#[test]
fn yaml_reader_reads_nested_sequences_and_refuses_what_it_cannot() {
    let docs = yaml_documents(
        "a:\n  b:\n    - name: x # note\n      port: 1\n    - name: 'y'\n  c: [\"p\", \"q\"]\nlist:\n- one\n- two\n---\nkind: K\n",
        "t",
    );
    assert_eq!(docs.len(), 2);
    assert_eq!(get(&docs[0], "a.b[0].name"), "x");
    assert_eq!(get(&docs[0], "a.b[0].port"), "1");
    assert_eq!(get(&docs[0], "a.b[1].name"), "y");
    assert_eq!(get(&docs[0], "a.c"), "[\"p\", \"q\"]");
    assert_eq!(get(&docs[0], "list[1]"), "two");
    assert_eq!(get(&docs[1], "kind"), "K");
    let refused = std::panic::catch_unwind(|| yaml_documents("a: &anchor 1\n", "t"));
    assert!(refused.is_err(), "an anchor must not pass unread");
}
