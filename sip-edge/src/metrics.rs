//! Prometheus metrics (DESIGN §5, prefix `tollgate_`), with `prometheus-client` (DESIGN §8).
//! Labels come only from bounded sets: reasons, bases, methods, statuses, transports.
//!
//! For an admit, `tollgate_decisions_total{outcome="admit"}` carries the basis in `reason`
//! (`emergency`, `domestic_pool`, ...), so one counter shows every answer.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use tollgate_engine::{Basis, Reason};

use crate::sip::Method;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub outcome: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    /// `in` or `out`.
    pub direction: &'static str,
    pub method_or_status: &'static str,
    /// `udp` or `tcp`.
    pub transport: &'static str,
}

/// A pool (DESIGN §4 rule 9); tenants and SKUs come from the directory, a bounded set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub tenant: String,
    pub region: String,
    pub sku: String,
    pub kind: &'static str,
}

/// A tenant of the directory (a bounded set; never a user).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
}

/// The labels of `tollgate_usage_threshold_crossings_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CrossingLabels {
    pub kind: &'static str,
    pub threshold: &'static str,
}

/// The labels of `tollgate_shadow_rejections_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowLabels {
    pub reason: &'static str,
}

/// A tenant's credits figures at a scrape ([`Metrics::set_credits`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TenantCredits {
    pub tenant: String,
    /// The live balance and the configured one, in units of the tenant's currency.
    pub balance: f64,
    pub configured: f64,
    /// Users whose credits spending this month reached `user_spend_limit` (0 without one).
    pub users_at_spend_limit: i64,
}

/// A gauge of money in currency units: a fraction, so not the `i64` gauge of the rest.
type MoneyGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// One of [`TCP_REFUSED_REASONS`].
    pub reason: &'static str,
}

/// The labels of `tollgate_tls_handshake_failures_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    /// `sip` (a `tls:` listener) or `https` (`[http].tls`).
    pub listener: &'static str,
    /// One of [`TLS_HANDSHAKE_FAILURES`].
    pub reason: &'static str,
}

/// `tollgate_tls_handshake_failures_total`.
pub type HandshakeFailures = Family<HandshakeLabels, Counter>;

/// Why a TLS handshake did not complete: the peer sent something that is not a TLS handshake
/// we accept (plain text, a certificate `client_ca` refuses, no common version or cipher), or
/// did not finish within [`crate::tls::HANDSHAKE_TIMEOUT`].
pub const TLS_HANDSHAKE_FAILURES: [&str; 2] = ["error", "timeout"];

/// Why a TCP connection was closed at `accept` (`transport::tcp`): the peer is not trusted
/// (and `untrusted = "drop"`, or the few connections kept to answer untrusted peers are in
/// use), its address holds `tcp_max_connections_per_peer` already, or all
/// `tcp_max_connections` are in use.
pub const TCP_REFUSED_REASONS: [&str; 3] = ["untrusted", "per_peer_limit", "connection_limit"];

/// The labels of `tollgate_sip_messages_total{direction="in"}`: methods, then `response`.
const IN_LABELS: [&str; 8] = [
    "INVITE", "ACK", "CANCEL", "OPTIONS", "BYE", "REGISTER", "other", "response",
];
/// `method_or_status="response"`, in [`IN_LABELS`].
const RESPONSE_IN: usize = 7;
/// The labels of `tollgate_sip_messages_total{direction="out"}`: the statuses Tollgate sends,
/// then `other`.
const OUT_LABELS: [&str; 14] = [
    "200", "302", "400", "403", "404", "405", "416", "420", "483", "484", "500", "503", "505",
    "other",
];
const TRANSPORTS: [&str; 2] = ["udp", "tcp"];

/// [`Metrics::cluster_store_up`] before the cluster driver first sets it (to 0 or 1).
const STORE_UP_UNSET: i64 = -1;

/// `tollgate_cluster_store_up`, with a sample only once the cluster driver has set it: a node
/// without a store would otherwise show `0`, "the store is down", and an alert on it would fire
/// for every single-node deployment. The `# HELP`/`# TYPE` lines are always there.
#[derive(Debug)]
struct StoreUp(Gauge);

impl Collector for StoreUp {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let metric = encoder.encode_descriptor(
            "cluster_store_up",
            "1 while the cluster store answers this node (no sample without a store)",
            None,
            self.0.metric_type(),
        )?;
        if self.0.get() != STORE_UP_UNSET {
            self.0.encode(metric)?;
        }
        Ok(())
    }
}

/// The counters of the call path, looked up once at start. `Family::get_or_create` hashes the
/// label set under a read lock every thread shares: a few hundred instructions and a contended
/// cache line per message, four times per call. These are clones of the family's counters
/// (the same atomics), indexed by label.
struct Hot {
    /// `[label][transport]`, labels as in [`IN_LABELS`].
    messages_in: Vec<[Counter; 2]>,
    /// `[label][transport]`, labels as in [`OUT_LABELS`].
    messages_out: Vec<[Counter; 2]>,
    /// As [`Reason::ALL`].
    rejects: Vec<Counter>,
    /// As [`Basis::ALL`].
    admits: Vec<Counter>,
}

/// Every metric of the daemon, registered once.
pub struct Metrics {
    hot: Hot,
    registry: Registry,
    pub decisions: Family<DecisionLabels, Counter>,
    pub decision_seconds: Histogram,
    pub sip_messages: Family<MessageLabels, Counter>,
    pub sip_parse_errors: Counter,
    pub reservations_active: Gauge,
    pub directory_users: Gauge,
    pub pool_remaining_seconds: Family<PoolLabels, Gauge>,
    /// A pool's capacity, settled usage and live reservations (beyond DESIGN §5's list, with
    /// the labels of `pool_remaining_seconds`): an alert on a pool's share used needs the
    /// capacity it is a share of, which `remaining` alone does not give.
    pub pool_capacity_seconds: Family<PoolLabels, Gauge>,
    pub pool_used_seconds: Family<PoolLabels, Gauge>,
    pub pool_reserved_seconds: Family<PoolLabels, Gauge>,
    /// Communications Credits by tenant (beyond DESIGN §5's list): the live balance beside
    /// the configured one, so an alert can fire on a share spent; and the users held at their
    /// monthly `user_spend_limit` (a count per tenant: users are not a bounded label set).
    pub credits_balance: Family<TenantLabels, MoneyGauge>,
    pub credits_configured: Family<TenantLabels, MoneyGauge>,
    pub users_at_spend_limit: Family<TenantLabels, Gauge>,
    pub reloads: Family<ResultLabels, Counter>,
    pub ledger_commit_seconds: Histogram,
    /// Batches the ledger could not commit (beyond DESIGN §5's list: the alarm for
    /// `store_unavailable`).
    pub ledger_commit_errors: Counter,
    /// Calls committed by the ledger, to tell batch sizes (beyond DESIGN §5's list).
    pub ledger_records: Counter,
    /// Writes the ledger dropped because their row can never be stored (beyond DESIGN §5's
    /// list): each one is a call whose state lives in memory only; logged with its Call-ID.
    pub ledger_rejected_writes: Counter,
    /// Several nodes (beyond DESIGN §5's list): calls that waited for their share to be topped
    /// up, and exchanges with the cluster store for shares (draws and returns): the store round
    /// trips the call path causes, directly or not.
    pub parked: Counter,
    pub share_exchanges: Counter,
    /// 1 while the cluster store answers, 0 when it does not. With one node (no store) it is
    /// never set, and the family is exposed with no series ([`StoreUp`]).
    pub cluster_store_up: Gauge,
    /// TCP connections closed at `accept`, by [`TCP_REFUSED_REASONS`] (beyond DESIGN §5's
    /// list: the alarm for a peer hogging the connection slots).
    pub tcp_refused: Family<RefusedLabels, Counter>,
    /// TLS connections whose handshake failed or timed out, by listener and
    /// [`TLS_HANDSHAKE_FAILURES`]: a proxy with a wrong certificate or CA shows here, and only
    /// here (its connection never carries a request).
    pub tls_handshake_failures: HandshakeFailures,
    /// Calls shadow mode admitted that a rule would have refused, by that rule's reason
    /// (DESIGN §2 "Shadow mode"): what turning the rule on would refuse.
    pub shadow_rejections: Family<ShadowLabels, Counter>,
    /// Admissions past a velocity rule's `warn` threshold, by tenant (beyond DESIGN §5's
    /// list; the tenant label is bounded by the directory, as the pool gauges').
    pub velocity_warnings: Family<TenantLabels, Counter>,
    /// Pools and tenants' credits crossing 80 % and 100 % used ([`crate::usage`]), by kind
    /// (`pool`, `credits`) and threshold (beyond DESIGN §5's list).
    pub usage_crossings: Family<CrossingLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tollgate");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Authorization decisions by outcome and reason (basis for admits)",
            decisions.clone(),
        );
        // 5 µs .. ~80 ms.
        let decision_seconds = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(5e-6, 2.0, 15),
        );
        registry.register(
            "decision_seconds",
            "Time spent deciding one INVITE",
            decision_seconds.clone(),
        );
        let sip_messages = Family::<MessageLabels, Counter>::default();
        registry.register(
            "sip_messages",
            "SIP messages received (method) and sent (status)",
            sip_messages.clone(),
        );
        let sip_parse_errors = Counter::default();
        registry.register(
            "sip_parse_errors",
            "SIP messages that could not be parsed (answered or dropped)",
            sip_parse_errors.clone(),
        );
        let reservations_active = Gauge::default();
        registry.register(
            "reservations_active",
            "Calls holding a reservation",
            reservations_active.clone(),
        );
        let directory_users = Gauge::default();
        registry.register(
            "directory_users",
            "Users in the live directory snapshot",
            directory_users.clone(),
        );
        let pool_remaining_seconds = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "pool_remaining_seconds",
            "Seconds left unreserved in each pool this month",
            pool_remaining_seconds.clone(),
        );
        let pool_capacity_seconds = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "pool_capacity_seconds",
            "Seconds each pool holds this month (minutes of the SKU x licensed users)",
            pool_capacity_seconds.clone(),
        );
        let pool_used_seconds = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "pool_used_seconds",
            "Seconds of each pool settled (charged) this month",
            pool_used_seconds.clone(),
        );
        let pool_reserved_seconds = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "pool_reserved_seconds",
            "Seconds of each pool held by calls in progress",
            pool_reserved_seconds.clone(),
        );
        let credits_balance = Family::<TenantLabels, MoneyGauge>::default();
        registry.register(
            "credits_balance",
            "Communications Credits left to each tenant, in its currency",
            credits_balance.clone(),
        );
        let credits_configured = Family::<TenantLabels, MoneyGauge>::default();
        registry.register(
            "credits_configured",
            "Communications Credits each tenant is configured with (tenants.toml), in its currency",
            credits_configured.clone(),
        );
        let users_at_spend_limit = Family::<TenantLabels, Gauge>::default();
        registry.register(
            "users_at_spend_limit",
            "Users of each tenant whose credits spending this month reached user_spend_limit",
            users_at_spend_limit.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register("reloads", "Directory reloads by result", reloads.clone());
        // 10 µs .. ~160 ms.
        let ledger_commit_seconds = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(1e-5, 2.0, 15),
        );
        registry.register(
            "ledger_commit_seconds",
            "Time one ledger transaction (a group commit of a batch) took",
            ledger_commit_seconds.clone(),
        );
        let ledger_commit_errors = Counter::default();
        registry.register(
            "ledger_commit_errors",
            "Ledger batches that could not be committed",
            ledger_commit_errors.clone(),
        );
        let ledger_records = Counter::default();
        registry.register(
            "ledger_records",
            "Call records committed to the ledger",
            ledger_records.clone(),
        );
        let ledger_rejected_writes = Counter::default();
        registry.register(
            "ledger_rejected_writes",
            "Ledger writes dropped because their row can never be stored (see the error log)",
            ledger_rejected_writes.clone(),
        );
        let parked = Counter::default();
        registry.register(
            "cluster_parked_calls",
            "Calls that waited for this node's share of a pool or balance to be topped up",
            parked.clone(),
        );
        let share_exchanges = Counter::default();
        registry.register(
            "cluster_share_exchanges",
            "Draws from and returns to the cluster store of this node's shares",
            share_exchanges.clone(),
        );
        let cluster_store_up = Gauge::default();
        cluster_store_up.set(STORE_UP_UNSET);
        registry.register_collector(Box::new(StoreUp(cluster_store_up.clone())));
        let tcp_refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "tcp_refused",
            "TCP connections closed at accept, by reason",
            tcp_refused.clone(),
        );
        for reason in TCP_REFUSED_REASONS {
            drop(tcp_refused.get_or_create(&RefusedLabels { reason }));
        }
        let tls_handshake_failures = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out, by listener and reason",
            tls_handshake_failures.clone(),
        );
        for listener in ["sip", "https"] {
            for reason in TLS_HANDSHAKE_FAILURES {
                drop(tls_handshake_failures.get_or_create(&HandshakeLabels { listener, reason }));
            }
        }
        let shadow_rejections = Family::<ShadowLabels, Counter>::default();
        registry.register(
            "shadow_rejections",
            "Calls admitted under shadow mode that a rule would have refused, by reason",
            shadow_rejections.clone(),
        );
        for r in tollgate_engine::limits::ReasonSet::SHADOWABLE {
            drop(shadow_rejections.get_or_create(&ShadowLabels { reason: r.as_str() }));
        }
        let velocity_warnings = Family::<TenantLabels, Counter>::default();
        registry.register(
            "velocity_warnings",
            "Admissions past a velocity rule's warn threshold, by tenant",
            velocity_warnings.clone(),
        );
        let usage_crossings = Family::<CrossingLabels, Counter>::default();
        registry.register(
            "usage_threshold_crossings",
            "Pools and tenants' credits crossing 80 and 100 percent used, by kind and threshold",
            usage_crossings.clone(),
        );
        for kind in ["pool", "credits"] {
            for threshold in ["80", "100"] {
                drop(usage_crossings.get_or_create(&CrossingLabels { kind, threshold }));
            }
        }
        // Every series of the bounded sets exists from the start, at 0.
        let decision = |outcome, reason| {
            decisions
                .get_or_create(&DecisionLabels { outcome, reason })
                .clone()
        };
        let message = |direction, method_or_status| {
            TRANSPORTS.map(|transport| {
                sip_messages
                    .get_or_create(&MessageLabels {
                        direction,
                        method_or_status,
                        transport,
                    })
                    .clone()
            })
        };
        let hot = Hot {
            messages_in: IN_LABELS.iter().map(|l| message("in", l)).collect(),
            messages_out: OUT_LABELS.iter().map(|l| message("out", l)).collect(),
            rejects: Reason::ALL
                .iter()
                .map(|r| decision("reject", r.as_str()))
                .collect(),
            admits: Basis::ALL
                .iter()
                .map(|b| decision("admit", b.as_str()))
                .collect(),
        };
        for result in ["ok", "error"] {
            drop(reloads.get_or_create(&ResultLabels { result }));
        }
        Metrics {
            hot,
            registry,
            decisions,
            decision_seconds,
            sip_messages,
            sip_parse_errors,
            reservations_active,
            directory_users,
            pool_remaining_seconds,
            pool_capacity_seconds,
            pool_used_seconds,
            pool_reserved_seconds,
            credits_balance,
            credits_configured,
            users_at_spend_limit,
            reloads,
            ledger_commit_seconds,
            ledger_commit_errors,
            ledger_records,
            ledger_rejected_writes,
            parked,
            share_exchanges,
            cluster_store_up,
            tcp_refused,
            tls_handshake_failures,
            shadow_rejections,
            velocity_warnings,
            usage_crossings,
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn message_in(&self, method: &Method<'_>, transport: &'static str) {
        self.hot.messages_in[method_index(method)][transport_index(transport)].inc();
    }

    /// A response received (counted as `method_or_status="response"`, then dropped).
    pub fn response_in(&self, transport: &'static str) {
        self.hot.messages_in[RESPONSE_IN][transport_index(transport)].inc();
    }

    pub fn message_out(&self, status: u16, transport: &'static str) {
        self.hot.messages_out[status_index(status)][transport_index(transport)].inc();
    }

    /// `tollgate_decisions_total{outcome="reject",reason}`.
    pub fn rejected(&self, reason: Reason) {
        if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
            self.hot.rejects[i].inc();
        }
    }

    /// `tollgate_shadow_rejections_total{reason}`.
    pub fn shadow_rejected(&self, reason: Reason) {
        self.shadow_rejections
            .get_or_create(&ShadowLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// `tollgate_usage_threshold_crossings_total{kind,threshold}`.
    pub fn usage_crossed(&self, kind: &'static str, threshold: u8) {
        let threshold = if threshold >= 100 { "100" } else { "80" };
        self.usage_crossings
            .get_or_create(&CrossingLabels { kind, threshold })
            .inc();
    }

    /// Makes `tenant`'s series of `tollgate_velocity_warnings_total` exist (at 0 until a
    /// warning).
    pub fn velocity_warnings_of(&self, tenant: &str) {
        drop(self.velocity_warnings.get_or_create(&TenantLabels {
            tenant: tenant.to_string(),
        }));
    }

    /// `tollgate_velocity_warnings_total{tenant}`.
    pub fn velocity_warning(&self, tenant: &str) {
        self.velocity_warnings
            .get_or_create(&TenantLabels {
                tenant: tenant.to_string(),
            })
            .inc();
    }

    /// `tollgate_decisions_total{outcome="admit"}`, the basis in `reason`.
    pub fn admitted(&self, basis: Basis) {
        if let Some(i) = Basis::ALL.iter().position(|b| *b == basis) {
            self.hot.admits[i].inc();
        }
    }

    /// Sets the pool gauges to `pools` (the series of pools gone since are removed).
    pub fn set_pools(&self, pools: &[tollgate_engine::pools::PoolStatus]) {
        let families = [
            &self.pool_capacity_seconds,
            &self.pool_used_seconds,
            &self.pool_reserved_seconds,
            &self.pool_remaining_seconds,
        ];
        for family in families {
            family.clear();
        }
        for p in pools {
            let labels = PoolLabels {
                tenant: p.key.tenant.to_string(),
                region: p.key.region.as_str().to_string(),
                sku: p.key.sku.to_string(),
                kind: p.key.kind.as_str(),
            };
            let figures = [
                p.capacity_seconds,
                p.used_seconds,
                p.reserved_seconds,
                p.remaining_seconds,
            ];
            for (family, seconds) in families.into_iter().zip(figures) {
                family
                    .get_or_create(&labels)
                    .set(i64::try_from(seconds).unwrap_or(i64::MAX));
            }
        }
    }

    /// Sets the credits gauges to `tenants` (the series of tenants gone since are removed).
    pub fn set_credits(&self, tenants: &[TenantCredits]) {
        self.credits_balance.clear();
        self.credits_configured.clear();
        self.users_at_spend_limit.clear();
        for t in tenants {
            let labels = TenantLabels {
                tenant: t.tenant.clone(),
            };
            self.credits_balance.get_or_create(&labels).set(t.balance);
            self.credits_configured
                .get_or_create(&labels)
                .set(t.configured);
            self.users_at_spend_limit
                .get_or_create(&labels)
                .set(t.users_at_spend_limit);
        }
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }
}

/// Known methods by name; any other token is `other` (labels stay bounded): the index in
/// [`IN_LABELS`].
fn method_index(m: &Method<'_>) -> usize {
    match m {
        Method::Invite => 0,
        Method::Ack => 1,
        Method::Cancel => 2,
        Method::Options => 3,
        Method::Bye => 4,
        Method::Register => 5,
        Method::Other(_) => 6,
    }
}

/// The statuses Tollgate sends; anything else is `other`: the index in [`OUT_LABELS`].
fn status_index(status: u16) -> usize {
    let mut digits = [0u8; 3];
    if (100..1000).contains(&status) {
        digits = [
            b'0' + (status / 100) as u8,
            b'0' + (status / 10 % 10) as u8,
            b'0' + (status % 10) as u8,
        ];
    }
    OUT_LABELS
        .iter()
        .position(|l| l.as_bytes() == digits)
        .unwrap_or(OUT_LABELS.len() - 1)
}

fn transport_index(transport: &str) -> usize {
    usize::from(transport == "tcp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_exposition() {
        let m = Metrics::default();
        m.message_in(&Method::Other("FOO"), "udp");
        m.message_out(302, "tcp");
        m.reload(false);
        let text = m.encode();
        for name in [
            "tollgate_decisions_total{outcome=\"reject\",reason=\"unknown_caller\"} 0",
            "tollgate_decisions_total{outcome=\"admit\",reason=\"emergency\"} 0",
            "tollgate_decision_seconds",
            "tollgate_sip_messages_total{direction=\"in\",method_or_status=\"other\",transport=\"udp\"} 1",
            "tollgate_sip_parse_errors_total",
            "tollgate_reservations_active",
            "tollgate_directory_users",
            "tollgate_reloads_total{result=\"error\"} 1",
            "tollgate_ledger_rejected_writes_total 0",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }

    #[test]
    fn the_call_path_counts_the_series_its_labels_name() {
        let m = Metrics::default();
        m.message_in(&Method::Invite, "udp");
        m.message_in(&Method::Ack, "tcp");
        m.response_in("udp");
        m.message_out(302, "udp");
        m.message_out(503, "tcp");
        m.message_out(299, "udp");
        m.rejected(Reason::Overloaded);
        m.admitted(Basis::Emergency);
        let text = m.encode();
        for name in [
            "{direction=\"in\",method_or_status=\"INVITE\",transport=\"udp\"} 1",
            "{direction=\"in\",method_or_status=\"ACK\",transport=\"tcp\"} 1",
            "{direction=\"in\",method_or_status=\"response\",transport=\"udp\"} 1",
            "{direction=\"out\",method_or_status=\"302\",transport=\"udp\"} 1",
            "{direction=\"out\",method_or_status=\"503\",transport=\"tcp\"} 1",
            "{direction=\"out\",method_or_status=\"other\",transport=\"udp\"} 1",
            "{direction=\"out\",method_or_status=\"302\",transport=\"tcp\"} 0",
            "tollgate_decisions_total{outcome=\"reject\",reason=\"overloaded\"} 1",
            "tollgate_decisions_total{outcome=\"admit\",reason=\"emergency\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }

    #[test]
    fn pool_gauges_carry_every_figure_and_forget_gone_pools() {
        use tollgate_engine::numbering::Region;
        use tollgate_engine::pools::{MonthKey, PoolKey, PoolKind, PoolStatus};
        let m = Metrics::default();
        let pool = |tenant: &str| PoolStatus {
            key: PoolKey {
                tenant: tenant.into(),
                region: Region::new("US").expect("region"),
                sku: "MCOPSTN1".into(),
                kind: PoolKind::Domestic,
            },
            month: MonthKey(0),
            capacity_seconds: 10_800,
            used_seconds: 7_200,
            reserved_seconds: 1_800,
            remaining_seconds: 1_800,
        };
        m.set_pools(&[pool("contoso"), pool("fabrikam")]);
        let labels = "{tenant=\"contoso\",region=\"US\",sku=\"MCOPSTN1\",kind=\"domestic\"}";
        let text = m.encode();
        for (name, value) in [
            ("capacity", 10_800),
            ("used", 7_200),
            ("reserved", 1_800),
            ("remaining", 1_800),
        ] {
            let line = format!("tollgate_pool_{name}_seconds{labels} {value}");
            assert!(text.contains(&line), "{line} missing in\n{text}");
        }
        m.set_pools(&[pool("contoso")]);
        let text = m.encode();
        assert!(
            !text.contains("fabrikam"),
            "a gone pool's series stays:\n{text}"
        );
    }

    #[test]
    fn credits_gauges_per_tenant_and_forget_gone_tenants() {
        let m = Metrics::default();
        let t = |tenant: &str, balance, at_limit| TenantCredits {
            tenant: tenant.into(),
            balance,
            configured: 250.0,
            users_at_spend_limit: at_limit,
        };
        m.set_credits(&[t("contoso", 249.43, 1), t("fabrikam", 0.0, 0)]);
        let text = m.encode();
        for line in [
            "tollgate_credits_balance{tenant=\"contoso\"} 249.43\n",
            "tollgate_credits_configured{tenant=\"contoso\"} 250.0\n",
            "tollgate_users_at_spend_limit{tenant=\"contoso\"} 1\n",
            "tollgate_users_at_spend_limit{tenant=\"fabrikam\"} 0\n",
        ] {
            assert!(text.contains(line), "{line:?} missing in\n{text}");
        }
        m.set_credits(&[t("contoso", 1.0, 0)]);
        assert!(!m.encode().contains("fabrikam"));
    }

    #[test]
    fn usage_crossings_exist_from_0_and_count_by_kind_and_threshold() {
        let m = Metrics::default();
        let text = m.encode();
        for kind in ["pool", "credits"] {
            for threshold in ["80", "100"] {
                let line = format!(
                    "tollgate_usage_threshold_crossings_total{{kind=\"{kind}\",threshold=\"{threshold}\"}} 0\n"
                );
                assert!(text.contains(&line), "{line:?} missing in\n{text}");
            }
        }
        m.usage_crossed("pool", 100);
        m.usage_crossed("credits", 80);
        m.usage_crossed("credits", 80);
        let text = m.encode();
        for line in [
            "tollgate_usage_threshold_crossings_total{kind=\"pool\",threshold=\"100\"} 1\n",
            "tollgate_usage_threshold_crossings_total{kind=\"pool\",threshold=\"80\"} 0\n",
            "tollgate_usage_threshold_crossings_total{kind=\"credits\",threshold=\"80\"} 2\n",
        ] {
            assert!(text.contains(line), "{line:?} missing in\n{text}");
        }
    }

    #[test]
    fn cluster_store_up_has_a_sample_only_once_set() {
        let m = Metrics::default();
        let text = m.encode();
        assert!(
            text.contains("# TYPE tollgate_cluster_store_up gauge\n"),
            "{text}"
        );
        assert!(!text.contains("\ntollgate_cluster_store_up "), "{text}");
        for (up, line) in [
            (0, "\ntollgate_cluster_store_up 0\n"),
            (1, "\ntollgate_cluster_store_up 1\n"),
        ] {
            m.cluster_store_up.set(up);
            let text = m.encode();
            assert!(text.contains(line), "{line:?} missing in\n{text}");
        }
    }
}
