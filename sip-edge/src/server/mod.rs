//! The per-message logic of `tollgate serve` (DESIGN §2), independent of the transport: bytes
//! and a source address in, response bytes (or nothing) out.
//!
//! parse → trusted-peer check → method dispatch:
//! - INVITE: transaction cache ([`transactions`]), else caller and dialed number
//!   ([`identity`]) → `Engine::authorize` → `302` or the reject of the DESIGN §2 table;
//! - OPTIONS: `200` (RFC 3261 §11; also with `Max-Forwards: 0`, as §16.3 step 2 allows);
//! - ACK: absorbed (RFC 3261 §17.2.1: the ACK of a non-2xx final response ends the
//!   transaction; nothing is sent);
//! - CANCEL: `200` (RFC 3261 §9.2) and the Call-ID's reservation is released;
//! - anything else: `405` with `Allow` (RFC 3261 §8.2.1); `Max-Forwards: 0`: `483` (§16.3).
//!
//! Answers always go back to the source address and port (RFC 3581 §4, DESIGN §2 step 8): the
//! caller of [`Server::handle`] sends `out` to where the bytes came from. With the durable
//! ledger, a 302 (and a CANCEL's 200) is not in `out`: it is held with the call's row and sent
//! to the [`ReplyTo`] once the row is committed ([`Server::apply`], see [`durable`]).

mod durable;
pub mod identity;
mod park;
pub mod reconfigure;
pub mod status;
pub mod transactions;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use tollgate_engine::{
    Decision, Engine, Outcome, Reason, Request as EngineRequest, Route, Rule, StoredCall,
};

use tollgate_engine::reload_guard::ReloadGuard;

use crate::config::{DaemonConfig, Untrusted};
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::peers::Cidr;
use crate::sip::{
    parse_message, write_response, Headers, Message, Method, ParseError, Request, ResponseExtras,
    Transport,
};
use durable::Held;
pub use durable::{Collector, ReplyTo, Waiter};
use park::Origin;
use reconfigure::{ConfigFile, Peers};
use status::SipStatus;
use transactions::{Answer, Transactions};

/// Cached INVITE answers at most (see [`transactions`]): ~80 bytes of map entry each, and a
/// 302 also its ~700 bytes (a reject is kept as its reason), so ~200 MB at most if all admit;
/// the full 32 s up to 8,000 INVITEs/s, 1.3–2.6 s at 100,000/s (Timer A's first
/// retransmissions come 0.5, 1 and 2 s after the INVITE).
const MAX_TRANSACTIONS: usize = 262_144;
/// How long an ended call stays in memory (settling it again answers from there; later, from
/// the ledger), seconds.
const KEEP_ENDED: u64 = 600;
/// The `rule` of the decision log for rejects the engine did not decide.
const RULE_UNTRUSTED: &str = "peer: the source is not in [sip].trusted_peers";
const RULE_SHARE_SHORT: &str =
    "several nodes: this node's share was short and the cluster store gave no more in time";
const RULE_SHED: &str = "overload: the receive queue is deep, new INVITEs are shed";

/// `Retry-After` on a 503, seconds.
const RETRY_AFTER: u32 = 5;

/// The extra headers of a reject (DESIGN §2 table): `Reason` (RFC 3326), `X-Tollgate-Reason`,
/// and `Retry-After` on 503 (RFC 3261 §20.33).
fn reject_extras(reason: Reason) -> ResponseExtras<'static> {
    ResponseExtras {
        q850_cause: status::q850_cause(reason),
        reason: Some(reason.as_str()),
        retry_after: (reason.sip_status() == 503).then_some(RETRY_AFTER),
        ..Default::default()
    }
}

/// Writes the reject of `reason` to the request with `headers` from `source`: the same bytes
/// for the same request (the transaction cache relies on it, see `transactions`).
fn write_reject(out: &mut Vec<u8>, headers: &Headers<'_>, reason: Reason, source: SocketAddr) {
    write_reject_after(out, headers, reason, None, source);
}

/// [`write_reject`] with a `Retry-After` of its own: `rate_limit_reached` says when one more
/// call fits (DESIGN §2).
fn write_reject_after(
    out: &mut Vec<u8>,
    headers: &Headers<'_>,
    reason: Reason,
    retry_after: Option<u64>,
    source: SocketAddr,
) {
    let mut extras = reject_extras(reason);
    if let Some(r) = retry_after {
        extras.retry_after = Some(u32::try_from(r).unwrap_or(u32::MAX));
    }
    write_response(out, headers, reason.sip_status(), None, source, &extras);
}

thread_local! {
    /// The 302's Contact URI, written here on each SIP thread: no allocation per call.
    static CONTACT: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(128));
    /// A request whose header section is not UTF-8, repaired ([`crate::sip::latin1_head`]):
    /// reused on each SIP thread, so that rare path does not allocate per message either.
    static REPAIRED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The daemon's shared state.
pub struct Server {
    pub engine: Engine,
    pub metrics: Metrics,
    /// `[sip].trusted_peers` and `untrusted`: a reload may change them ([`reconfigure`]).
    peers: ArcSwap<Peers>,
    /// `[sip].tcp_*`: a reload may change them too.
    tcp_limits: ArcSwap<crate::transport::tcp::Limits>,
    /// The bearer token of `/v1` (`[http].token_file`): a reload reads it again.
    api_token: ArcSwap<Option<Arc<str>>>,
    /// The `tollgate.toml` a reload re-reads (none: only the directory reloads).
    config_file: Option<ConfigFile>,
    /// The `[tls]` certificate when something serves TLS; a reload reads its files again.
    tls: Option<Arc<crate::tls::Tls>>,
    pub transactions: Transactions,
    /// The directory reloaded on SIGHUP and `POST /v1/reload`.
    directory: PathBuf,
    /// How much a reload may take away unless forced (`[directory].reload_max_drop_percent`).
    reload_guard: ReloadGuard,
    pub ledger: Ledger<Waiter>,
    /// Whether the last ledger commit succeeded (`/readyz`).
    store_ok: std::sync::atomic::AtomicBool,
    /// When shedding was last logged (unix seconds), to log it at most once a second.
    shed_logged: std::sync::atomic::AtomicU64,
    /// INVITEs answered `503 overloaded` since shedding was last logged.
    shed: std::sync::atomic::AtomicU64,
    /// When a full ledger queue was last logged (unix seconds), and the admissions it refused
    /// since: logged at most once a second with that count.
    queue_full_logged: std::sync::atomic::AtomicU64,
    queue_full: std::sync::atomic::AtomicU64,
    /// When a ledger error was last logged (unix seconds), to log at most one a second.
    store_logged: std::sync::atomic::AtomicU64,
    /// The month whose pool capacities the ledger has, and whether a reload changed them.
    pools_written: std::sync::atomic::AtomicU32,
    /// Several nodes: the cluster driver ([`Server::start_cluster`]).
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::driver::Driver>>,
    /// Pools' and credits' 80 % and 100 % marks ([`crate::usage`]), looked at on the tick.
    usage: std::sync::Mutex<crate::usage::Watch>,
    /// This server, for parked calls to come back to.
    me: std::sync::OnceLock<std::sync::Weak<Server>>,
}

/// What a reject's log line says about why ([`Server::reject`]).
struct Why<'a> {
    /// The rule that fired, in words.
    rule: &'static str,
    /// The caller's dial plan rule, if one rewrote the number.
    dial_plan: Option<&'a tollgate_engine::dialplan::Normalized>,
    /// The limit that fired, with its figures.
    limit: Option<&'a tollgate_engine::limits::LimitHit>,
    /// `Retry-After` of a `rate_limit_reached` ([`Decision::retry_after`]).
    retry_after: Option<u64>,
}

/// The metric label of a transport.
pub fn transport_label(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    }
}

impl Server {
    pub fn new(
        engine: Engine,
        trusted: Vec<Cidr>,
        untrusted: Untrusted,
        directory: PathBuf,
        ledger: Ledger<Waiter>,
    ) -> Server {
        let metrics = Metrics::default();
        metrics
            .directory_users
            .set(engine.snapshot().users.len() as i64);
        Server {
            engine,
            metrics,
            peers: ArcSwap::from_pointee(Peers { trusted, untrusted }),
            tcp_limits: ArcSwap::from_pointee(crate::transport::tcp::Limits::of(
                &crate::config::SipTable::default(),
            )),
            api_token: ArcSwap::from_pointee(None),
            config_file: None,
            tls: None,
            transactions: Transactions::new(MAX_TRANSACTIONS),
            directory,
            reload_guard: ReloadGuard::default(),
            ledger,
            store_ok: std::sync::atomic::AtomicBool::new(true),
            store_logged: std::sync::atomic::AtomicU64::new(0),
            shed_logged: std::sync::atomic::AtomicU64::new(0),
            shed: std::sync::atomic::AtomicU64::new(0),
            queue_full_logged: std::sync::atomic::AtomicU64::new(0),
            queue_full: std::sync::atomic::AtomicU64::new(0),
            usage: std::sync::Mutex::new(crate::usage::Watch::default()),
            pools_written: std::sync::atomic::AtomicU32::new(0),
            cluster: std::sync::OnceLock::new(),
            me: std::sync::OnceLock::new(),
        }
    }

    /// Sets how much a reload may take away unless forced.
    pub fn with_reload_guard(mut self, guard: ReloadGuard) -> Server {
        self.reload_guard = guard;
        self
    }

    /// Makes reloads re-read `path`, the file `running` came from ([`reconfigure`]).
    pub fn with_config_file(mut self, path: PathBuf, running: DaemonConfig) -> Server {
        self.config_file = Some(ConfigFile::new(path, running));
        self
    }

    /// Judges TCP and TLS connections by `limits` (until a reload changes them).
    pub fn with_tcp_limits(self, limits: crate::transport::tcp::Limits) -> Server {
        self.tcp_limits.store(Arc::new(limits));
        self
    }

    /// Guards `/v1` with `token` (until a reload reads another).
    pub fn with_api_token(self, token: Option<Arc<str>>) -> Server {
        self.api_token.store(Arc::new(token));
        self
    }

    /// The bearer token `/v1` needs now, if any.
    pub fn api_token(&self) -> Arc<Option<Arc<str>>> {
        self.api_token.load_full()
    }

    /// The TCP connection limits in effect, for a connection being accepted.
    pub fn tcp_limits(&self) -> crate::transport::tcp::Limits {
        **self.tcp_limits.load()
    }

    /// Serves TLS with `tls`, whose files a reload reads again.
    pub fn with_tls(mut self, tls: Option<Arc<crate::tls::Tls>>) -> Server {
        self.tls = tls;
        self
    }

    /// The TLS config of `tls:` listeners and HTTPS, if any.
    pub fn tls(&self) -> Option<&Arc<crate::tls::Tls>> {
        self.tls.as_ref()
    }

    /// Whether `ip` is a trusted peer, and what to do with it if not: the live
    /// `[sip].trusted_peers` and `untrusted`, which a reload may change ([`reconfigure`]).
    /// For the TCP transport, which judges a peer once at `accept`.
    pub fn peer_policy(&self, ip: std::net::IpAddr) -> (bool, Untrusted) {
        let peers = self.peers.load();
        (peers.trusts(ip), peers.untrusted)
    }

    /// Handles one datagram or TCP frame from `source`; returns `true` when `out` holds a
    /// response to send back to `source` now. A response that waits for the ledger goes to
    /// `reply` later. With `here` (a UDP worker that commits its own calls) the ledger write
    /// waits there for the caller's [`Server::commit`]; without, it goes to the writer thread.
    pub fn handle(
        &self,
        buf: &[u8],
        source: SocketAddr,
        transport: Transport,
        reply: &ReplyTo,
        here: Option<&mut Collector>,
        out: &mut Vec<u8>,
    ) -> bool {
        let label = transport_label(transport);
        let (trusted, untrusted) = {
            let peers = self.peers.load();
            (peers.trusts(source.ip()), peers.untrusted)
        };
        if !trusted && untrusted == Untrusted::Drop {
            // DESIGN §2 step 1: silence, no lookup, no parse.
            tracing::debug!(%source, "untrusted peer, dropped");
            return false;
        }
        if buf.starts_with(b"ACK ") {
            // An ACK is never answered (RFC 3261 §17.1.1.3, §17.2.1) and Tollgate keeps no
            // state it would change: the ACK of a 302 or a reject only ends the client's
            // transaction. So it is counted and dropped unparsed, well formed or not; parsing
            // it was a third of the cost of parsing a call.
            self.metrics.message_in(&Method::Ack, label);
            return false;
        }
        let req = match parse_message(buf, transport) {
            Ok(Message::Request(r)) => r,
            Ok(Message::Response(_)) => {
                // A redirect server sends no requests, so expects no responses: dropped.
                self.metrics.response_in(label);
                return false;
            }
            Err(e) => {
                if let Some(sent) = self.handle_repaired(buf, source, transport, reply, here, out) {
                    return sent;
                }
                return self.parse_error(&e, trusted, source, label, out);
            }
        };
        self.metrics.message_in(&req.method, label);
        if !trusted {
            if req.method == Method::Ack {
                return false;
            }
            let why = Why {
                rule: RULE_UNTRUSTED,
                dial_plan: None,
                limit: None,
                retry_after: None,
            };
            self.reject(out, &req, Reason::UntrustedPeer, why, source, label);
            return true;
        }
        match req.method {
            Method::Ack => false,
            Method::Options => {
                self.plain(out, &req, 200, source, label);
                true
            }
            _ if req.max_forwards == Some(0) => {
                self.plain(out, &req, 483, source, label);
                true
            }
            Method::Invite => {
                let from = Origin {
                    buf,
                    source,
                    transport,
                    reply,
                    may_park: true,
                };
                self.invite(out, &req, &from, here)
            }
            Method::Cancel => self.cancel(out, &req, source, label, reply, here),
            _ => {
                let extras = ResponseExtras {
                    allow: true,
                    ..Default::default()
                };
                self.respond(out, &req.headers, 405, None, source, label, &extras);
                true
            }
        }
    }

    /// A request whose header section is not UTF-8 (a Latin-1 display name, `From: "Jos\xe9"
    /// <sip:...>`; RFC 3261 §25 asks for UTF-8, real user agents do not always comply) is
    /// handled from a copy with those bytes read as Latin-1 ([`crate::sip::latin1_head`]): it
    /// gets its answer instead of silence. `None` when the head is UTF-8 (the error is another)
    /// or the copy is already in use (the copy itself failed to parse).
    fn handle_repaired(
        &self,
        buf: &[u8],
        source: SocketAddr,
        transport: Transport,
        reply: &ReplyTo,
        here: Option<&mut Collector>,
        out: &mut Vec<u8>,
    ) -> Option<bool> {
        latin1_repaired(buf, |copy| {
            self.handle(copy, source, transport, reply, here, out)
        })
    }

    /// [`Server::handle`] while the transport's queue is too deep (DESIGN §2 "Overload"): a new
    /// INVITE gets `503 overloaded` with `Retry-After` and no decision, so the queue drains and
    /// the proxy backs off. Everything else is handled as usual: ACK, CANCEL, OPTIONS, an
    /// INVITE the transaction cache or the engine already knows (a retransmission), one from
    /// an untrusted peer, and whatever the engine says may not be shed
    /// ([`tollgate_engine::Engine::may_shed`]: emergency calls always go through, DESIGN §4
    /// rule 1).
    pub fn handle_overloaded(
        &self,
        buf: &[u8],
        source: SocketAddr,
        transport: Transport,
        reply: &ReplyTo,
        here: Option<&mut Collector>,
        out: &mut Vec<u8>,
    ) -> bool {
        // Only INVITEs are shed: anything else is handled as usual, parsed once, there.
        if !buf.starts_with(b"INVITE ") {
            return self.handle(buf, source, transport, reply, here, out);
        }
        let Ok(Message::Request(req)) = parse_message(buf, transport) else {
            return self.handle(buf, source, transport, reply, here, out);
        };
        let usual = req.method != Method::Invite
            || req.max_forwards == Some(0)
            || !self.peers.load().trusts(source.ip())
            || !self
                .engine
                .may_shed(&identity::caller(&req), identity::dialed(&req.uri), now())
            || self.engine.reservations().contains(req.call_id)
            || self.answered(&req);
        if usual {
            return self.handle(buf, source, transport, reply, here, out);
        }
        let label = transport_label(transport);
        self.metrics.message_in(&req.method, label);
        self.metrics.rejected(Reason::Overloaded);
        // Under overload these come by the thousand a second: each one at debug only, and the
        // once-a-second warning of `shedding` carries their count.
        self.shed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(
            call_id = req.call_id,
            caller = &*identity::caller(&req),
            dialed = identity::dialed(&req.uri),
            reason = Reason::Overloaded.as_str(),
            rule = RULE_SHED,
            "reject"
        );
        write_reject(out, &req.headers, Reason::Overloaded, source);
        self.metrics
            .message_out(Reason::Overloaded.sip_status(), label);
        true
    }

    /// A transport found its queue too deep and sheds this batch: logged at most once a second,
    /// with the INVITEs shed since the previous such line (`rejected_since_last`).
    pub fn shedding(&self) {
        let t = now();
        if self
            .shed_logged
            .swap(t, std::sync::atomic::Ordering::AcqRel)
            != t
        {
            let rejected = self.shed.swap(0, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                reason = Reason::Overloaded.as_str(),
                rejected_since_last = rejected,
                "overloaded: receive queue deep, new INVITEs answered 503 overloaded"
            );
        }
    }

    /// A message that does not parse: the status of the error when it can be addressed and the
    /// peer is trusted (never answer garbage from outside: no reflection), else dropped; counted.
    fn parse_error(
        &self,
        e: &ParseError<'_>,
        trusted: bool,
        source: SocketAddr,
        label: &'static str,
        out: &mut Vec<u8>,
    ) -> bool {
        self.metrics.sip_parse_errors.inc();
        tracing::debug!(%source, status = e.status, reason = e.reason, "unparsable");
        match (&e.headers, trusted) {
            (Some(h), true) => {
                let extras = ResponseExtras::default();
                self.respond(out, h, e.status, Some(e.reason), source, label, &extras);
                true
            }
            _ => false,
        }
    }

    /// A TCP stream that cannot be framed any more (RFC 3261 §18.3): answers the head's error
    /// if it can be addressed. The caller closes the connection.
    pub fn unframeable(&self, buf: &[u8], source: SocketAddr, out: &mut Vec<u8>) -> bool {
        let trusted = self.peers.load().trusts(source.ip());
        // A head that is not UTF-8 is read as Latin-1 first, as in `handle_repaired`.
        latin1_repaired(buf, |copy| {
            self.answer_unframeable(copy, trusted, source, out)
        })
        .unwrap_or_else(|| self.answer_unframeable(buf, trusted, source, out))
    }

    fn answer_unframeable(
        &self,
        buf: &[u8],
        trusted: bool,
        source: SocketAddr,
        out: &mut Vec<u8>,
    ) -> bool {
        match parse_message(buf, Transport::Tcp) {
            Err(e) => self.parse_error(&e, trusted, source, "tcp", out),
            Ok(_) => {
                self.metrics.sip_parse_errors.inc();
                false
            }
        }
    }

    /// An INVITE: the cached answer of a retransmission, or a decision. Returns whether `out`
    /// is to be sent now (a 302 waits for the ledger).
    fn invite(
        &self,
        out: &mut Vec<u8>,
        req: &Request<'_>,
        from: &Origin<'_>,
        here: Option<&mut Collector>,
    ) -> bool {
        let (source, reply) = (from.source, from.reply);
        let label = transport_label(from.transport);
        let at = Instant::now();
        let key = self
            .transactions
            .key(req.call_id, req.cseq.seq, branch(req));
        if let Some(answer) = self.transactions.get(key, at) {
            match answer {
                Answer::Bytes(bytes) => {
                    out.clear();
                    out.extend_from_slice(&bytes);
                }
                Answer::Reject(reason) => write_reject(out, &req.headers, reason, source),
            }
            self.metrics.message_out(status_of(out), label);
            return true;
        }
        let caller = identity::caller(req);
        let dialed = identity::dialed(&req.uri);
        let service = identity::service(req);
        let mut d = match service {
            Some(service) => self.engine.authorize_as(
                &EngineRequest {
                    call_id: req.call_id,
                    caller: &caller,
                    dialed,
                },
                service,
                now(),
            ),
            // A service Tollgate does not know: not to be decided, nor billed, as a user's call.
            None => Decision::reject(Reason::BadRequest, Rule::Request, None),
        };
        self.metrics
            .decision_seconds
            .observe(at.elapsed().as_secs_f64());
        let basis = match d.outcome {
            Outcome::Admit(basis) => basis,
            Outcome::Reject(_) if d.lacking.is_some() && from.may_park => {
                // Several nodes: this node's share is short; wait for more ([`park`]).
                if let Some(short) = d.lacking.take() {
                    if self.park(from, short) {
                        return false;
                    }
                }
                let why = Why {
                    rule: RULE_SHARE_SHORT,
                    dial_plan: d.dial_plan.as_deref(),
                    limit: None,
                    retry_after: None,
                };
                self.reject(out, req, Reason::StoreUnavailable, why, source, label);
                return true;
            }
            Outcome::Reject(reason) => {
                let why = Why {
                    rule: d.rule.describe(),
                    dial_plan: d.dial_plan.as_deref(),
                    limit: d.limit.as_deref(),
                    retry_after: d.retry_after(),
                };
                self.reject(out, req, reason, why, source, label);
                if d.lacking.is_none() {
                    // A `Retry-After` counts down: a retransmission gets the bytes first sent.
                    let answer = match d.retry_after() {
                        Some(_) => Answer::Bytes(out[..].into()),
                        None => Answer::Reject(reason),
                    };
                    self.transactions.insert(key, answer, at);
                }
                return true;
            }
        };
        if !d.is_replay() {
            self.limits_noted(&d, req.call_id, &caller, dialed);
        }
        if !d.is_replay() {
            // Once per decision: a retransmission is answered from the transaction cache, or
            // replayed by the engine (`Rule::Replay`), and logs nothing. The fields are only
            // evaluated when debug is on.
            let grant = d.grant.as_ref();
            tracing::debug!(
                call_id = req.call_id,
                caller = grant
                    .map(|g| &*g.user)
                    .filter(|u| !u.is_empty())
                    .unwrap_or(&caller),
                dialed,
                dial_plan_rule = d.dial_plan.as_ref().map(|n| &*n.rule),
                normalized = d.dial_plan.as_ref().map(|n| &*n.number),
                tenant = grant.map(|g| &*g.tenant).filter(|t| !t.is_empty()),
                basis = basis.as_str(),
                service = service.map(|s| s.as_str()),
                max_duration = d.max_duration,
                rule = d.rule.describe(),
                "admit"
            );
        }
        CONTACT.with_borrow_mut(|contact| {
            contact.clear();
            let several = self.contact(&d, dialed, contact);
            let extras = ResponseExtras {
                contact: (!several).then_some(contact.as_str()),
                contacts: several.then_some(contact.as_str()),
                basis: Some(basis.as_str()),
                max_duration: d.max_duration.map(|s| u32::try_from(s).unwrap_or(u32::MAX)),
                shadow: d.shadow.map(|r| r.as_str()),
                ..Default::default()
            };
            write_response(out, &req.headers, 302, None, source, &extras);
        });
        let grant = match d.grant.take() {
            Some(g) if self.ledger.is_durable() => g,
            _ => {
                // The in-memory seam: nothing to wait for.
                self.admitted(basis, req.call_id, label, out);
                self.transactions
                    .insert(key, Answer::Bytes(out[..].into()), at);
                return true;
            }
        };
        let held = Held::admission(out, reply, key, basis, !d.is_replay(), label);
        let call = StoredCall::admitted(req.call_id, grant);
        self.hold(call, held, here, out)
    }

    /// Whether the INVITE transaction of `req` (an INVITE, or the CANCEL of one: same Call-ID,
    /// CSeq number and top Via branch) has been answered.
    fn answered(&self, req: &Request<'_>) -> bool {
        let key = self
            .transactions
            .key(req.call_id, req.cseq.seq, branch(req));
        self.transactions.get(key, Instant::now()).is_some()
    }

    /// Counts and logs an admission whose 302 is leaving.
    fn admitted(
        &self,
        basis: tollgate_engine::Basis,
        call_id: &str,
        label: &'static str,
        out: &[u8],
    ) {
        self.metrics.admitted(basis);
        self.metrics.message_out(status_of(out), label);
        // The decision was logged when it was made (`invite`); this is the 302 leaving.
        tracing::trace!(call_id, basis = basis.as_str(), "302 sent");
    }

    /// CANCEL (RFC 3261 §9.2): the INVITE it names (same Call-ID, CSeq number and top Via
    /// branch) gets its reservation released and the CANCEL a 200; an INVITE already answered
    /// with a reject still makes it 200 ("the CANCEL has no effect"); no such INVITE at all,
    /// 481. Returns whether `out` is to be sent now (a release waits for the ledger).
    fn cancel(
        &self,
        out: &mut Vec<u8>,
        req: &Request<'_>,
        source: SocketAddr,
        label: &'static str,
        reply: &ReplyTo,
        here: Option<&mut Collector>,
    ) -> bool {
        let released = self.engine.release(req.call_id, now());
        let known = released.is_ok() || self.answered(req);
        self.plain(out, req, if known { 200 } else { 481 }, source, label);
        match released {
            Ok(s) if s.changed => !self.persist_now(req.call_id, out, reply, label, here),
            _ => true,
        }
    }

    /// `sip:{e164}@{route host};user=phone` (DESIGN §2 "SIP answer contract"). For a call a
    /// voice routing policy routes, the whole header value instead, one Contact per gateway
    /// with its `q` (`<sip:…@sbc1;user=phone>;q=1.0, <sip:…@sbc3;user=phone>;q=0.9`), and
    /// `true`: the proxy fails over by falling `q` (RFC 3261 §8.1.3.4, §20.10).
    fn contact(&self, d: &Decision, dialed: &str, out: &mut String) -> bool {
        let number = d.destination.as_ref().map_or(dialed, |x| x.e164());
        if let Some(Route::Policy(p)) = &d.route {
            for (i, c) in p.contacts().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str("<sip:");
                out.push_str(number);
                out.push('@');
                out.push_str(&c.gateway.host);
                out.push_str(";user=phone>;q=");
                out.push_str(c.q);
            }
            return true;
        }
        out.push_str("sip:");
        out.push_str(number);
        out.push('@');
        if let Some(r) = &d.route {
            self.engine.push_route_host(r, out);
        }
        out.push_str(";user=phone");
        false
    }

    /// The reject of the DESIGN §2 table: status, `Reason` (RFC 3326), `X-Tollgate-Reason`,
    /// `Retry-After` on 503 (RFC 3261 §20.33).
    /// Logged at info with what an operator needs to answer "why was this call refused"
    /// (DESIGN §2: `reason` is the `X-Tollgate-Reason` of the answer); the directory lookup
    /// for the caller's UPN and tenant only runs when the line is wanted.
    fn reject(
        &self,
        out: &mut Vec<u8>,
        req: &Request<'_>,
        reason: Reason,
        why: Why<'_>,
        source: SocketAddr,
        label: &'static str,
    ) {
        self.metrics.rejected(reason);
        let status = reason.sip_status();
        if tracing::enabled!(tracing::Level::INFO) {
            let (caller, tenant) = self.who(&identity::caller(req));
            tracing::info!(
                call_id = req.call_id,
                caller = &*caller,
                dialed = identity::dialed(&req.uri),
                dial_plan_rule = why.dial_plan.map(|n| &*n.rule),
                normalized = why.dial_plan.map(|n| &*n.number),
                tenant = tenant.as_deref(),
                reason = reason.as_str(),
                rule = why.rule,
                limit = why.limit.map(|l| l.describe()),
                status,
                %source,
                "reject"
            );
        }
        write_reject_after(out, &req.headers, reason, why.retry_after, source);
        self.metrics.message_out(status, label);
    }

    /// An admission that shadow mode let through, or that passed a velocity rule's `warn`:
    /// counted and logged (DESIGN §2 "Shadow mode"), once per decision.
    fn limits_noted(&self, d: &Decision, call_id: &str, caller: &str, dialed: &str) {
        let tenant = d.grant.as_ref().map(|g| &*g.tenant).unwrap_or("");
        if let Some(reason) = d.shadow {
            self.metrics.shadow_rejected(reason);
            tracing::info!(
                call_id,
                caller,
                dialed,
                tenant,
                shadow_reason = reason.as_str(),
                limit = d.limit.as_ref().map(|l| l.describe()),
                "shadow: would have been refused, admitted"
            );
        }
        if let Some(w) = &d.warning {
            self.metrics.velocity_warning(tenant);
            tracing::warn!(
                call_id,
                caller,
                dialed,
                tenant,
                destination = w.destination.as_deref(),
                warning = w.describe(),
                "velocity rule's warn threshold passed"
            );
        }
    }

    /// For the decision log: the directory's UPN and tenant of a caller as presented
    /// (`P-Asserted-Identity` or `From`), or that identity and no tenant when the directory
    /// does not know it.
    fn who(&self, presented: &str) -> (Arc<str>, Option<Arc<str>>) {
        let snap = self.engine.snapshot();
        match snap.lookup(presented) {
            Some((_, user)) => (
                Arc::clone(&user.upn),
                snap.tenant(user.tenant).map(|t| Arc::clone(&t.id)),
            ),
            None => (Arc::from(presented), None),
        }
    }

    /// A response with nothing but the copied headers.
    fn plain(
        &self,
        out: &mut Vec<u8>,
        req: &Request<'_>,
        status: u16,
        source: SocketAddr,
        label: &'static str,
    ) {
        let extras = ResponseExtras::default();
        self.respond(out, &req.headers, status, None, source, label, &extras);
    }

    #[allow(clippy::too_many_arguments)]
    fn respond(
        &self,
        out: &mut Vec<u8>,
        headers: &Headers<'_>,
        status: u16,
        reason: Option<&str>,
        source: SocketAddr,
        label: &'static str,
        extras: &ResponseExtras<'_>,
    ) {
        write_response(out, headers, status, reason, source, extras);
        self.metrics.message_out(status, label);
    }

    /// Reloads (SIGHUP, `POST /v1/reload`, a change to the directory's files): re-reads
    /// `tollgate.toml` when known ([`reconfigure`]) and the directory, and applies both, or
    /// nothing if either is bad (DESIGN §3: the old snapshot keeps serving), or if the new
    /// directory takes more away than the reload guard allows and `force` is not given
    /// ([`tollgate_engine::reload_guard`]). Blocking file I/O: call it off the reactor.
    /// Returns the user count.
    pub fn reload(&self, force: bool) -> Result<usize, Vec<String>> {
        let reread = self
            .config_file
            .as_ref()
            .map(ConfigFile::reread)
            .transpose();
        let loaded = crate::directory::load(&self.directory).map_err(|e| {
            e.0.iter()
                .map(|e| format!("{}: {e}", self.directory.display()))
                .collect::<Vec<_>>()
        });
        let loaded = loaded.and_then(|snap| match self.reload_guard.check(&self.engine.snapshot(), &snap) {
            // Logged and counted below with every other reason a reload fails.
            Err(shrink) if !force => Err(vec![format!("{}: {shrink}", self.directory.display())]),
            Err(shrink) => {
                tracing::warn!(running = %shrink.old, new = %shrink.new, "forced reload: {}", shrink.why);
                Ok(snap)
            }
            Ok(()) => Ok(snap),
        });
        // The TLS files named by the file as re-read; the running ones without a file, or when
        // the file no longer names any (turning TLS off takes a restart, as `[sip].listen` and
        // `[http]` do).
        let tls = match (&self.tls, &reread, &self.config_file) {
            (Some(tls), Ok(r), file) => {
                let files = match (r, file) {
                    (Some(r), Some(file)) if r.tls.configured() => {
                        crate::tls::TlsFiles::of(file.path(), &r.tls)
                    }
                    _ => tls.files(),
                };
                let origin = self.config_file.as_ref().map_or_else(
                    || "tollgate.toml".to_string(),
                    |f| f.path().display().to_string(),
                );
                tls.prepare(files)
                    .map(Some)
                    .map_err(|es| es.iter().map(|e| format!("{origin}: {e}")).collect())
            }
            _ => Ok(None),
        };
        let (reread, snap, tls) = match (reread, loaded, tls) {
            (Ok(r), Ok(snap), Ok(tls)) => (r, snap, tls),
            (r, l, t) => {
                let errors: Vec<String> = r
                    .err()
                    .into_iter()
                    .chain(l.err())
                    .chain(t.err())
                    .flatten()
                    .collect();
                self.metrics.reload(false);
                tracing::error!(errors = ?errors, "reload failed, keeping the running configuration and directory");
                return Err(errors);
            }
        };
        if let (Some(r), Some(file)) = (reread, &self.config_file) {
            if **self.peers.load() != r.peers {
                tracing::info!(trusted_peers = ?r.peers.trusted, untrusted = ?r.peers.untrusted, "peers reloaded");
                self.peers.store(Arc::new(r.peers.clone()));
            }
            if let Some(limits) = r.tcp_limits {
                tracing::info!(?limits, "tcp connection limits reloaded");
                self.tcp_limits.store(Arc::new(limits));
            }
            if let Some(config) = &r.engine {
                tracing::info!(grants = ?config.grants, routes = ?config.routes, emergency = ?config.emergency, "[grants], [routes] and [emergency] reloaded");
                self.engine.reconfigure(config.clone());
            }
            if **self.api_token.load() != r.token {
                // Never the token itself.
                tracing::info!(guarded = r.token.is_some(), "api token reloaded");
                self.api_token.store(Arc::new(r.token.clone()));
            }
            if let Some(level) = &r.log_level {
                match crate::logging::set_level(level) {
                    Ok(crate::logging::LevelChange::Overridden) => {
                        tracing::warn!(level = %level, "[log].level changed, but RUST_LOG is set and keeps deciding");
                    }
                    Ok(_) => tracing::info!(level = %level, "log level reloaded"),
                    Err(e) => tracing::error!(level = %level, error = %e, "log level not reloaded"),
                }
            }
            if !r.restart_needed.is_empty() {
                tracing::warn!(
                    config = %file.path().display(),
                    tables = ?r.restart_needed,
                    "changed in the configuration file; takes effect on restart"
                );
            }
            file.applied(&r);
        }
        if let (Some(running), Some(prepared)) = (&self.tls, tls) {
            running.apply(prepared);
            tracing::info!("tls certificate reloaded");
        }
        let users = snap.users.len();
        self.engine.reload(snap);
        self.pools_changed();
        self.metrics.directory_users.set(users as i64);
        self.metrics.reload(true);
        tracing::info!(users, directory = %self.directory.display(), "reloaded");
        Ok(users)
    }

    /// Settles every reservation past its grant + grace (DESIGN §4) and persists them; sweeps
    /// the transaction cache; forgets calls that ended [`KEEP_ENDED`] ago (the ledger has
    /// them). Call once a second.
    pub fn expire(&self) {
        let t = now();
        let settled = self.engine.expire(t);
        if !settled.is_empty() {
            tracing::info!(settled = settled.len(), "unreported reservations expired");
        }
        self.persist_expired(&settled);
        self.transactions.sweep(Instant::now());
        self.engine
            .reservations()
            .purge_ended(t.saturating_sub(KEEP_ENDED));
        self.watch_usage(t);
    }

    /// Logs and counts the pools and credits that crossed 80 % or 100 % used since the last
    /// tick ([`crate::usage`]). One node only: with several, this node's balance is its share
    /// and the pools of record are the store's, so the marks are the gauges' alerts' business
    /// (`deploy/prometheus/alerts.yml`).
    fn watch_usage(&self, t: u64) {
        if self.engine.config().shares {
            return;
        }
        let credits = self.engine.credits_balances();
        let pools = self.engine.pools(t);
        let crossings = self
            .usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .look(&pools, &credits);
        for c in crossings {
            c.log();
            self.metrics.usage_crossed(c.kind(), c.threshold());
        }
    }

    /// Refreshes the gauges read at scrape time.
    pub fn refresh_gauges(&self) {
        self.metrics
            .reservations_active
            .set(self.engine.reservations().active() as i64);
        let t = now();
        self.metrics.set_pools(&self.engine.pools(t));
        self.metrics.set_credits(&self.tenant_credits(t));
        // Each tenant's velocity warnings from 0, so an alert's increase() has a start.
        for tenant in &self.engine.snapshot().tenants {
            self.metrics.velocity_warnings_of(&tenant.id);
        }
    }

    /// Each tenant's credits for the gauges: balance, configured figure, and how many of its
    /// users this month's spending has brought to `user_spend_limit`.
    fn tenant_credits(&self, t: u64) -> Vec<crate::metrics::TenantCredits> {
        let units = |m: tollgate_engine::credits::Money| m.0 as f64 / 1e6;
        let snap = self.engine.snapshot();
        let spend = self.engine.user_spend(t);
        snap.tenants
            .iter()
            .map(|tenant| {
                let at_limit = tenant.user_spend_limit.map_or(0, |limit| {
                    spend
                        .iter()
                        .filter(|s| s.tenant == tenant.id && s.spent >= limit)
                        .count()
                });
                crate::metrics::TenantCredits {
                    tenant: tenant.id.to_string(),
                    balance: units(
                        self.engine
                            .credits_balance(&tenant.id)
                            .unwrap_or(tenant.credits),
                    ),
                    configured: units(tenant.credits),
                    users_at_spend_limit: i64::try_from(at_limit).unwrap_or(i64::MAX),
                }
            })
            .collect()
    }
}

/// `f` on a copy of `buf` whose header section, not UTF-8, is read as Latin-1
/// ([`crate::sip::latin1_head`]), in this thread's reused buffer: `None` when the head is UTF-8
/// already, or when the buffer is in use (the copy itself is being handled and failed again).
fn latin1_repaired<T>(buf: &[u8], f: impl FnOnce(&[u8]) -> T) -> Option<T> {
    REPAIRED.with(|cell| {
        let mut copy = cell.try_borrow_mut().ok()?;
        crate::sip::latin1_head(buf, &mut copy).then(|| f(&copy))
    })
}

/// The transaction's branch: the top Via's, or for an RFC 2543 request (no branch) the whole
/// top Via, which stands for it (RFC 3261 §17.2.3).
fn branch<'a>(req: &Request<'a>) -> &'a str {
    req.via
        .branch
        .or_else(|| req.vias().next())
        .unwrap_or_default()
}

/// The status code of response bytes we wrote (`SIP/2.0 NNN ...`).
fn status_of(bytes: &[u8]) -> u16 {
    bytes
        .get(8..11)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Unix seconds now (the engine never reads the clock, DESIGN §1).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
