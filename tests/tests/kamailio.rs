//! Tollgate behind a real proxy: Kamailio running the shipped `deploy/kamailio/kamailio.cfg`
//! (only its addresses set on the command line), real `tollgate serve` nodes, sipp as the
//! callers and as the gateway the 302 points at:
//!
//!   sipp caller -> Kamailio -> Tollgate (302: Contact = the sipp gateway, max duration)
//!               -> Kamailio -> sipp gateway; BYE or the cap; Kamailio -> POST .../end
//!
//! The tests run one at a time (a lock): several Kamailio instances, daemons and sipp runs at
//! once on a small machine would turn the timers under test (the cap, failover timeouts)
//! into a measure of the machine's load. Each has its own daemons, proxy and ports.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate_tests::daemon::{
    free_port, temp_dir, udp_responses, Daemon, Options, SipRequest, SipResponse,
};
use tollgate_tests::kamailio::{Kamailio, Node, Setup};
use tollgate_tests::postgres::Postgres;
use tollgate_tests::sipp::{Finished, Sipp};
use tollgate_tests::{repo_root, tollgate_output};

/// A domestic US number: admitted from the callers' US pool.
const US_NUMBER: &str = "+12125550100";
/// The longest a single-call sipp run may take.
const LIMIT: Duration = Duration::from_secs(30);

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// `acme`: two US users on the Domestic Calling Plan (a 360,000 s pool between them), and one
/// holding the plan without Phone System (refused: `no_phone_system`); per-user limits raised.
fn directory() -> PathBuf {
    let dir = temp_dir("kamailio-dir");
    let config = repo_root().join("config");
    for f in ["catalog.toml", "rates.csv"] {
        std::fs::copy(config.join(f), dir.join(f)).expect("copy directory file");
    }
    std::fs::write(
        dir.join("tenants.toml"),
        // The load runs send 50 calls a second from one user: above the default per-user
        // limits, which stay on at figures these runs stay under.
        "[[tenant]]\nid = \"acme\"\ndomains = [\"acme.example\"]\ncredits = \"0.00\"\n\
         [tenant.limits]\nuser_concurrent_calls = 500\nuser_calls_per_minute = 5000\n",
    )
    .expect("tenants");
    std::fs::write(
        dir.join("users.csv"),
        "tenant,user,usage_location,licenses\n\
         acme,a1@acme.example,US,MCOEV;MCOPSTN1\n\
         acme,a2@acme.example,US,MCOEV;MCOPSTN1\n\
         acme,nolicense@acme.example,US,MCOPSTN1\n",
    )
    .expect("users");
    dir
}

/// A node whose every route is the sipp gateway on `gateway`, granting `grant` seconds a call
/// and billing by the second; `extra` adds tables (e.g. `[cluster]`).
fn tollgate(
    dir: &std::path::Path,
    gateway: u16,
    grant: u32,
    ledger: Option<&std::path::Path>,
    extra: &str,
) -> Daemon {
    let tables = format!(
        "[grants]\ngrant_seconds = {grant}\nbilling_increment_seconds = 1\n\
         [routes]\ncalling_plan = \"127.0.0.1:{gateway}\"\nemergency = \"127.0.0.1:{gateway}\"\n{extra}"
    );
    Daemon::start_opts(&Options {
        directory: Some(dir),
        directory_extra: "watch = false",
        ledger,
        extra: &tables,
        ..Options::default()
    })
}

/// Kamailio over `nodes`, reporting to the admitting node, else to `api`.
fn proxy(nodes: &[&Daemon], api: &Daemon, emergency_gw: u16) -> Kamailio {
    proxy_over(nodes, api, emergency_gw, false, None)
}

/// [`proxy`], reaching the nodes over TCP with `tcp`, sending `http_header` with each report.
fn proxy_over(
    nodes: &[&Daemon],
    api: &Daemon,
    emergency_gw: u16,
    tcp: bool,
    http_header: Option<String>,
) -> Kamailio {
    Kamailio::start(&Setup {
        nodes: nodes
            .iter()
            .map(|d| Node {
                sip: d.sip,
                http: Some(d.http),
            })
            .collect(),
        api: api.http,
        emergency_gw: SocketAddr::from(([127, 0, 0, 1], emergency_gw)),
        tcp,
        http_header,
        conference_bridge: None,
    })
}

/// Panics with the run's report and the proxy's log unless every call of the run succeeded.
fn assert_ok(f: &Finished, k: &Kamailio) {
    assert!(
        f.status.success(),
        "sipp failed ({}):\n{}\n--- kamailio log ---\n{}",
        f.status,
        f.report,
        tail(&k.log(), 60)
    );
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Percent-encodes a Call-ID for a path segment (everything but RFC 3986's unreserved).
fn encode(call_id: &str) -> String {
    call_id
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `GET /v1/calls/{id}`: the status and the call.
fn call(d: &Daemon, call_id: &str) -> (u16, Value) {
    let (status, body) = d.http("GET", &format!("/v1/calls/{}", encode(call_id)), "");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// acme's pool of this month (there is one: every caller is on the same plan).
fn pool(d: &Daemon) -> Value {
    let (status, v) = d.get_json("/v1/pools?tenant=acme");
    assert_eq!(status, 200, "{v}");
    v["pools"][0].clone()
}

fn u64_of(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

/// Waits until `f` holds (at most `secs` seconds); else panics with the proxy's log.
fn eventually(k: &Kamailio, secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n--- kamailio log ---\n{}",
            tail(&k.log(), 60)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An INVITE from the test itself to the proxy: every answer up to the final one. The ACK of
/// a final non-2xx answer is sent, so the proxy stops retransmitting it.
fn invite(k: &Kamailio, from: &str, dial: &str, call_id: &str) -> Vec<SipResponse> {
    invite_with(k, SipRequest::invite(from, dial, call_id))
}

/// [`invite`] of a request built by the caller (extra headers).
fn invite_with(k: &Kamailio, req: SipRequest) -> Vec<SipResponse> {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let answers = udp_responses(&socket, k.addr, req.render().as_bytes());
    if let Some(last) = answers.last().filter(|r| r.status() >= 300) {
        let to = last.header("To").unwrap_or_default();
        let ack = req
            .render()
            .replacen("INVITE ", "ACK ", 1)
            .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
            .replace(&format!("To: <{}>", req.request_uri), &format!("To: {to}"));
        let _ = socket.send_to(ack.as_bytes(), k.addr);
    }
    answers
}

/// The final answer of [`invite`], with the proxy's log if there was none.
fn final_answer(k: &Kamailio, answers: &[SipResponse]) -> SipResponse {
    answers
        .last()
        .filter(|r| r.status() >= 200)
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no final answer: {answers:?}\n--- kamailio log ---\n{}",
                tail(&k.log(), 40)
            )
        })
}

/// One call of a1 through the proxy to the sipp gateway on `gw`, answered and hung up by the
/// caller after `hold_ms`; panics unless both sides completed it. Returns its Call-ID.
fn one_call(k: &Kamailio, gw: u16, prefix: &str, hold_ms: u64) -> String {
    let gateway = Sipp::gateway("uas_answer.xml", gw, 1, LIMIT);
    let hold = hold_ms.to_string();
    let caller = Sipp::caller(
        "uac_call.xml",
        k.addr,
        "a1@acme.example",
        US_NUMBER,
        prefix,
        1,
        1,
        &["-d", &hold],
        LIMIT,
    );
    assert_ok(&caller.wait(LIMIT), k);
    // The gateway got the call, the ACK and the caller's BYE through the proxy.
    assert_ok(&gateway.wait(LIMIT), k);
    format!("{prefix}-1@127.0.0.1")
}

#[test]
fn an_answered_call_is_settled_with_its_real_duration() {
    let _serial = serial();
    let dir = directory();
    let gw = free_port();
    let tg = tollgate(&dir, gw, 60, None, "");
    let k = proxy(&[&tg], &tg, gw);
    // The caller hangs up after 3 s.
    let id = one_call(&k, gw, "held", 3000);
    eventually(&k, 5, "the call settled", || {
        call(&tg, &id).1["state"] == "settled"
    });
    let (_, v) = call(&tg, &id);
    // From the 200 OK to the BYE: 3 s and a little, in whole seconds as the proxy counts them.
    let billable = u64_of(&v, "billable_seconds");
    assert!((3..=4).contains(&billable), "billable {billable}: {v}");
    assert_eq!(u64_of(&v, "charged_seconds"), billable, "{v}");
    assert_eq!(u64_of(&v, "reserved_seconds"), 60, "{v}");
    let p = pool(&tg);
    assert_eq!(u64_of(&p, "used_seconds"), billable, "{p}");
    assert_eq!(u64_of(&p, "reserved_seconds"), 0, "{p}");
}

/// The number of SIP messages `d` counted over `transport` in `direction`.
fn sip_messages(d: &Daemon, transport: &str, direction: &str) -> u64 {
    let (status, text) = d.http("GET", "/metrics", "");
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| {
            l.starts_with("tollgate_sip_messages_total{")
                && l.contains(&format!("transport=\"{transport}\""))
                && l.contains(&format!("direction=\"{direction}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// With `LISTEN_TCP` and `;transport=tcp` in the dispatcher list, Kamailio reaches Tollgate
/// over TCP: the INVITE, its 302 and the OPTIONS probes all go over the connection, and the call
/// is settled as over UDP. The API is guarded by a token (`[http].token_file`), which the
/// proxy sends as `TOLLGATE_HTTP_HEADER`.
#[test]
fn the_proxy_reaches_tollgate_over_tcp_with_a_token() {
    let _serial = serial();
    let dir = directory();
    let gw = free_port();
    std::fs::write(dir.join("api-token"), "k4m-t0ken\n").expect("token");
    let tg = Daemon::start_opts(&Options {
        directory: Some(&dir),
        directory_extra: "watch = false",
        http: &format!("token_file = \"{}\"", dir.join("api-token").display()),
        extra: &format!(
            "[grants]\ngrant_seconds = 60\nbilling_increment_seconds = 1\n\
             [routes]\ncalling_plan = \"127.0.0.1:{gw}\"\nemergency = \"127.0.0.1:{gw}\"\n"
        ),
        ..Options::default()
    });
    let k = proxy_over(
        &[&tg],
        &tg,
        gw,
        true,
        Some("Authorization: Bearer k4m-t0ken".into()),
    );
    let id = one_call(&k, gw, "tcp", 1000);
    let auth = "Authorization: Bearer k4m-t0ken\r\n";
    let call = |id: &str| -> Value {
        let (_, body) = tg.http_with("GET", &format!("/v1/calls/{}", encode(id)), auth, "");
        serde_json::from_str(&body).unwrap_or(Value::Null)
    };
    eventually(&k, 5, "the call settled", || {
        call(&id)["state"] == "settled"
    });
    let v = call(&id);
    let billable = u64_of(&v, "billable_seconds");
    assert!((1..=2).contains(&billable), "billable {billable}: {v}");
    let (_, body) = tg.http_with("GET", "/v1/pools?tenant=acme", auth, "");
    let pools: Value = serde_json::from_str(&body).expect("pools");
    assert_eq!(u64_of(&pools["pools"][0], "used_seconds"), billable);
    // Everything Tollgate saw and answered came over TCP.
    assert!(
        sip_messages(&tg, "tcp", "in") >= 1,
        "{}",
        tg.http("GET", "/metrics", "").1
    );
    assert!(sip_messages(&tg, "tcp", "out") >= 1);
    assert_eq!(sip_messages(&tg, "udp", "in"), 0);
}

/// `X-Tollgate-Service: conference-dialout` reaches Tollgate only from `CONFERENCE_BRIDGE_IP`:
/// from anyone else the proxy removes it, and the INVITE is decided as the caller's own call.
/// The caller here holds a calling plan without Phone System: as a call `no_phone_system`, as a
/// meeting's dial-out (no conferencing licence, no credits) `no_calling_plan`.
#[test]
fn only_the_conferencing_bridge_may_mark_a_dial_out() {
    let _serial = serial();
    let dir = directory();
    let gw = free_port();
    let tg = tollgate(&dir, gw, 60, None, "");
    let marked = |id: &str| {
        SipRequest::invite("sip:nolicense@acme.example", US_NUMBER, id)
            .header("X-Tollgate-Service: conference-dialout")
    };
    for (bridge, want) in [
        (None, "no_phone_system"),
        (Some([127, 0, 0, 1].into()), "no_calling_plan"),
    ] {
        let k = Kamailio::start(&Setup {
            nodes: vec![Node {
                sip: tg.sip,
                http: Some(tg.http),
            }],
            api: tg.http,
            emergency_gw: SocketAddr::from(([127, 0, 0, 1], gw)),
            tcp: false,
            http_header: None,
            conference_bridge: bridge,
        });
        let id = format!("bridge-{}@test", bridge.is_some());
        let r = final_answer(&k, &invite_with(&k, marked(&id)));
        assert_eq!(r.status(), 403, "{}", r.text);
        assert_eq!(r.header("X-Tollgate-Reason"), Some(want), "{}", r.text);
    }
}

/// A Direct Routing user whose voice routing policy has two routes: the 302 carries both
/// gateways, the first route's at q=1.0 and the backup's at q=0.9. The first gateway answers
/// 503, and the proxy tries the next Contact, which takes the call; Tollgate settles it.
#[test]
fn a_failing_gateway_is_passed_over_for_the_next_contact_by_q() {
    let _serial = serial();
    let (first, backup) = (free_port(), free_port());
    let dir = temp_dir("kamailio-routing");
    let config = repo_root().join("config");
    for f in ["catalog.toml", "rates.csv"] {
        std::fs::copy(config.join(f), dir.join(f)).expect("copy directory file");
    }
    std::fs::write(
        dir.join("tenants.toml"),
        format!(
            "[[tenant]]\nid = \"acme\"\ndomains = [\"acme.example\"]\ncredits = \"0.00\"\n\
             [tenant.direct_routing]\nfirst = \"127.0.0.1:{first}\"\nbackup = \"127.0.0.1:{backup}\"\n"
        ),
    )
    .expect("tenants");
    std::fs::write(
        dir.join("users.csv"),
        "tenant,user,usage_location,licenses,voice_routing\n\
         acme,a1@acme.example,US,MCOEV,policy:failover\n",
    )
    .expect("users");
    std::fs::write(
        dir.join("routing.toml"),
        "[[voice_route]]\ntenant = \"acme\"\nname = \"first\"\nusage = \"all\"\n\
         pattern = '^\\+1'\npriority = 1\ngateways = [\"first\"]\n\
         [[voice_route]]\ntenant = \"acme\"\nname = \"backup\"\nusage = \"all\"\n\
         pattern = '^\\+1'\npriority = 2\ngateways = [\"backup\"]\n\
         [[voice_routing_policy]]\ntenant = \"acme\"\nid = \"failover\"\nusages = [\"all\"]\n",
    )
    .expect("routing");
    let tg = tollgate(&dir, backup, 60, None, "");
    let k = proxy(&[&tg], &tg, backup);
    let refusing = Sipp::gateway("uas_unavailable.xml", first, 1, LIMIT);
    let id = one_call(&k, backup, "failover", 1000);
    // The first gateway was tried, and refused.
    assert_ok(&refusing.wait(LIMIT), &k);
    eventually(&k, 5, "the call settled", || {
        call(&tg, &id).1["state"] == "settled"
    });
    let (_, v) = call(&tg, &id);
    assert_eq!(v["basis"], "direct_routing", "{v}");
    let billable = u64_of(&v, "billable_seconds");
    assert!((1..=2).contains(&billable), "billable {billable}: {v}");
}

#[test]
fn a_refusal_reaches_the_caller_with_its_reason() {
    let _serial = serial();
    let dir = directory();
    let gw = free_port();
    let tg = tollgate(&dir, gw, 60, None, "");
    let k = proxy(&[&tg], &tg, gw);
    // Without Phone System; then a premium-rate number, barred.
    let cases = [
        (
            "sip:nolicense@acme.example",
            US_NUMBER,
            "no_phone_system",
            "Q.850;cause=57;text=\"no_phone_system\"",
        ),
        (
            "sip:a1@acme.example",
            "+19005550100",
            "destination_not_supported",
            "Q.850;cause=21;text=\"destination_not_supported\"",
        ),
    ];
    for (i, (from, dial, reason, q850)) in cases.iter().enumerate() {
        let id = format!("refused-{i}@test");
        let answers = invite(&k, from, dial, &id);
        let r = final_answer(&k, &answers);
        assert_eq!(r.status(), 403, "{}", r.text);
        assert_eq!(r.header("X-Tollgate-Reason"), Some(*reason), "{}", r.text);
        assert_eq!(r.header("Reason"), Some(*q850), "{}", r.text);
        // Nothing was reserved, so there is nothing to report.
        assert_eq!(call(&tg, &id).0, 404);
    }
    let p = pool(&tg);
    assert_eq!(u64_of(&p, "reserved_seconds"), 0, "{p}");
    assert_eq!(u64_of(&p, "used_seconds"), 0, "{p}");
}

#[test]
fn a_call_is_cut_at_its_max_duration_and_settled() {
    let _serial = serial();
    let dir = directory();
    let gw = free_port();
    // A 3 s grant: X-Tollgate-Max-Duration: 3.
    let tg = tollgate(&dir, gw, 3, None, "");
    let k = proxy(&[&tg], &tg, gw);
    let gateway = Sipp::gateway("uas_answer.xml", gw, 1, LIMIT);
    // This caller never hangs up: its run ends only with the proxy's BYE.
    let caller = Sipp::caller(
        "uac_capped.xml",
        k.addr,
        "a1@acme.example",
        US_NUMBER,
        "capped",
        1,
        1,
        &[],
        LIMIT,
    );
    let c = caller.wait(LIMIT);
    assert_ok(&c, &k);
    // Both sides got the BYE.
    assert_ok(&gateway.wait(LIMIT), &k);
    // Kamailio's dialog timer counts whole seconds and looks once a second: the cap fires
    // within a second of the maximum duration, either way.
    assert!(
        c.elapsed >= Duration::from_secs(2) && c.elapsed < Duration::from_secs(10),
        "the call lasted {:?}",
        c.elapsed
    );
    assert!(
        k.log().contains("reached its maximum duration"),
        "{}",
        tail(&k.log(), 40)
    );

    let id = "capped-1@127.0.0.1";
    eventually(&k, 5, "the call settled", || {
        call(&tg, id).1["state"] == "settled"
    });
    let (_, v) = call(&tg, id);
    assert_eq!(u64_of(&v, "reserved_seconds"), 3, "{v}");
    let billable = u64_of(&v, "billable_seconds");
    assert!((2..=4).contains(&billable), "billable {billable}: {v}");
    // Never charged past the grant.
    let charged = u64_of(&v, "charged_seconds");
    assert_eq!(charged, billable.min(3), "{v}");
    let p = pool(&tg);
    assert_eq!(u64_of(&p, "used_seconds"), charged, "{p}");
    assert_eq!(u64_of(&p, "reserved_seconds"), 0, "{p}");
}

#[test]
fn an_unanswered_call_is_released() {
    let _serial = serial();
    let dir = directory();
    let gw = free_port();
    let tg = tollgate(&dir, gw, 60, None, "");
    let k = proxy(&[&tg], &tg, gw);
    let gateway = Sipp::gateway("uas_busy.xml", gw, 1, LIMIT);
    let caller = Sipp::caller(
        "uac_busy.xml",
        k.addr,
        "a2@acme.example",
        US_NUMBER,
        "busy",
        1,
        1,
        &[],
        LIMIT,
    );
    // The caller saw the gateway's 486.
    assert_ok(&caller.wait(LIMIT), &k);
    assert_ok(&gateway.wait(LIMIT), &k);

    let id = "busy-1@127.0.0.1";
    eventually(&k, 5, "the call released", || {
        call(&tg, id).1["state"] == "released"
    });
    let (_, v) = call(&tg, id);
    assert_eq!(u64_of(&v, "charged_seconds"), 0, "{v}");
    let p = pool(&tg);
    assert_eq!(u64_of(&p, "used_seconds"), 0, "{p}");
    assert_eq!(u64_of(&p, "reserved_seconds"), 0, "{p}");
}

/// `tollgate cdrs` of this month, as JSON, from what `d` reads (its ledger, or the cluster
/// store).
fn cdrs(d: &Daemon, month: &str) -> Vec<Value> {
    tollgate_output(
        "cdrs",
        &d.config_path(),
        &["--month", month, "--format", "json"],
    )
    .lines()
    .map(|l| serde_json::from_str(l).expect("a JSON call record"))
    .collect()
}

/// Every call `prefix`-1 … `prefix`-`n` was settled once, for `hold` seconds, charged what it
/// used; the pool's used seconds are the sum of the charges and nothing is left reserved.
/// A Call-ID may have a second admission (a node that died after its commit and before its
/// 302 left: the proxy asked another node), which the end released.
fn assert_all_settled(d: &Daemon, prefix: &str, n: usize, hold: std::ops::RangeInclusive<u64>) {
    let month = pool(d)["month"].as_str().unwrap_or_default().to_string();
    let records = cdrs(d, &month);
    let mut ours = 0;
    for i in 1..=n {
        let id = format!("{prefix}-{i}@127.0.0.1");
        let of_call: Vec<&Value> = records
            .iter()
            .filter(|c| c["call_id"] == id.as_str())
            .collect();
        ours += of_call.len();
        let settled: Vec<&&Value> = of_call.iter().filter(|c| c["state"] == "settled").collect();
        assert_eq!(settled.len(), 1, "{id}: one settlement: {of_call:?}");
        let c = settled[0];
        let billable = u64_of(c, "billable_seconds");
        assert!(hold.contains(&billable), "{id}: billable {billable}: {c}");
        assert_eq!(u64_of(c, "charged_seconds"), billable, "{c}");
        for other in of_call.iter().filter(|c| c["state"] != "settled") {
            assert_eq!(other["state"], "released", "{id}: {other}");
        }
    }
    let all_ours = records
        .iter()
        .filter(|c| {
            c["call_id"]
                .as_str()
                .is_some_and(|id| id.starts_with(&format!("{prefix}-")))
        })
        .count();
    assert_eq!(all_ours, ours, "records of calls that were never made");
    let charged: u64 = records.iter().map(|c| u64_of(c, "charged_seconds")).sum();
    let p = pool(d);
    assert_eq!(u64_of(&p, "used_seconds"), charged, "{p}");
    assert_eq!(u64_of(&p, "reserved_seconds"), 0, "{p}");
}

#[test]
fn a_load_run_is_settled_call_by_call() {
    let _serial = serial();
    const CALLS: usize = 300;
    let limit = Duration::from_secs(60);
    let dir = directory();
    let gw = free_port();
    let tg = tollgate(&dir, gw, 60, None, "");
    let k = proxy(&[&tg], &tg, gw);
    let gateway = Sipp::gateway("uas_answer.xml", gw, CALLS, limit);
    // 300 calls at 50 calls/s, each held 1 s.
    let caller = Sipp::caller(
        "uac_call.xml",
        k.addr,
        "a1@acme.example",
        US_NUMBER,
        "load",
        CALLS,
        50,
        &["-d", "1000"],
        limit,
    );
    assert_ok(&caller.wait(limit), &k);
    assert_ok(&gateway.wait(limit), &k);
    eventually(&k, 10, "every call reported", || {
        u64_of(&pool(&tg), "reserved_seconds") == 0
    });
    assert_all_settled(&tg, "load", CALLS, 1..=3);
}

/// A fake Tollgate node that answers every INVITE with a 302 lacking X-Tollgate-Max-Duration
/// (and OPTIONS with 200), and a fake gateway that counts the INVITEs it gets.
fn fake_node_without_max_duration(gateway: SocketAddr) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind fake node");
    let addr = socket.local_addr().expect("addr");
    // The node stops after 30 s without a request.
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_535];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned();
            let copy: String = text
                .split("\r\n")
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    ["via:", "from:", "to:", "call-id:", "cseq:"]
                        .iter()
                        .any(|h| l.starts_with(h))
                })
                .map(|l| format!("{l}\r\n"))
                .collect();
            let answer = if text.starts_with("INVITE ") {
                format!("SIP/2.0 302 Moved Temporarily\r\n{copy}Contact: <sip:+12125550100@{gateway};user=phone>\r\nX-Tollgate-Basis: domestic_pool\r\nContent-Length: 0\r\n\r\n")
            } else if text.starts_with("OPTIONS ") {
                format!("SIP/2.0 200 OK\r\n{copy}Content-Length: 0\r\n\r\n")
            } else {
                continue;
            };
            let _ = socket.send_to(answer.as_bytes(), from);
        }
    });
    addr
}

#[test]
fn a_302_without_max_duration_is_not_routed() {
    let _serial = serial();
    let gateway = UdpSocket::bind("127.0.0.1:0").expect("bind fake gateway");
    gateway
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    let node = fake_node_without_max_duration(gateway.local_addr().expect("addr"));
    let dir = directory();
    // A real node only for the API address the proxy needs; it never sees the call.
    let tg = tollgate(&dir, free_port(), 60, None, "");
    let k = Kamailio::start(&Setup {
        nodes: vec![Node {
            sip: node,
            http: None,
        }],
        api: tg.http,
        emergency_gw: gateway.local_addr().expect("addr"),
        tcp: false,
        http_header: None,
        conference_bridge: None,
    });
    let answers = invite(&k, "sip:a1@acme.example", US_NUMBER, "uncapped@test");
    let r = final_answer(&k, &answers);
    assert_eq!(r.status(), 500, "{}", r.text);
    assert!(
        r.header("Reason")
            .is_some_and(|v| v.contains("X-Tollgate-Max-Duration")),
        "{}",
        r.text
    );
    let mut buf = [0u8; 2048];
    assert!(
        gateway.recv_from(&mut buf).is_err(),
        "the gateway got the uncapped call"
    );
}

#[test]
fn with_no_node_answering_emergency_calls_still_route_and_others_get_503() {
    let _serial = serial();
    let dir = directory();
    let gw = free_port();
    // A node for the API address only; the dispatcher set is a port where nothing listens.
    let tg = tollgate(&dir, gw, 60, None, "");
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let k = Kamailio::start(&Setup {
        nodes: vec![Node {
            sip: dead,
            http: None,
        }],
        api: tg.http,
        emergency_gw: SocketAddr::from(([127, 0, 0, 1], gw)),
        tcp: false,
        http_header: None,
        conference_bridge: None,
    });
    // The emergency gateway answers busy: a 486 at the caller shows the call got there.
    let gateway = Sipp::gateway("uas_busy.xml", gw, 2, LIMIT);
    // First with the node still in the set (it times out), then with it taken out.
    let r = final_answer(&k, &invite(&k, "sip:a2@acme.example", "911", "sos-1@test"));
    assert_eq!(r.status(), 486, "{}", r.text);
    let r = final_answer(
        &k,
        &invite(&k, "sip:a2@acme.example", US_NUMBER, "n-1@test"),
    );
    assert_eq!(r.status(), 503, "{}", r.text);
    assert_eq!(
        r.header("Reason"),
        Some("Q.850;cause=41;text=\"no Tollgate node answered\""),
        "{}",
        r.text
    );
    let r = final_answer(&k, &invite(&k, "sip:a2@acme.example", "112", "sos-2@test"));
    assert_eq!(r.status(), 486, "{}", r.text);
    assert_ok(&gateway.wait(LIMIT), &k);
}

#[test]
fn calls_fail_over_when_a_node_is_killed() {
    let _serial = serial();
    const CALLS: usize = 150;
    let limit = Duration::from_secs(60);
    let pg = Postgres::start();
    let url = pg.database("kamailio_failover");
    let dir = directory();
    let gw = free_port();
    let ledger_a = temp_dir("kamailio-ledger").join("a.db");
    let cluster = |id: &str| {
        format!("[cluster]\nstore = \"{url}\"\nnode_id = \"{id}\"\nlease_seconds = 10\n")
    };
    let a = tollgate(&dir, gw, 60, Some(&ledger_a), &cluster("n1"));
    let b = tollgate(&dir, gw, 60, None, &cluster("n2"));
    // End reports go to the admitting node, else to b (in production: an address in front of
    // every node; any node ends any call of the cluster).
    let k = proxy(&[&a, &b], &b, gw);
    let gateway = Sipp::gateway("uas_answer.xml", gw, CALLS, limit);
    // 150 calls at 30 calls/s, each held 1 s; a is killed 2 s in.
    let caller = Sipp::caller(
        "uac_call.xml",
        k.addr,
        "a1@acme.example",
        US_NUMBER,
        "fo",
        CALLS,
        30,
        &["-d", "1000"],
        limit,
    );
    std::thread::sleep(Duration::from_secs(2));
    a.kill9();
    // Every call went through: the ones sent to the dead node after it died were sent again to
    // the other one.
    assert_ok(&caller.wait(limit), &k);
    assert_ok(&gateway.wait(limit), &k);
    assert!(
        k.log().contains("trying the next Tollgate node"),
        "no failover in the proxy's log:\n{}",
        tail(&k.log(), 60)
    );
    // a comes back on its ledger (new ports) and delivers what it admitted in its last moments;
    // the proxy's retries of those ends then find them in the store.
    let _a = tollgate(&dir, gw, 60, Some(&ledger_a), &cluster("n1"));
    eventually(&k, 30, "every call settled in the store", || {
        u64_of(&pool(&b), "reserved_seconds") == 0
    });
    assert_all_settled(&b, "fo", CALLS, 1..=3);
}
