//! Prometheus metrics (DESIGN §5, prefix `tollgate_`), with `prometheus-client` (DESIGN §8).
//! Labels come only from bounded sets: reasons, bases, methods, statuses, transports.
//!
//! For an admit, `tollgate_decisions_total{outcome="admit"}` carries the basis in `reason`
//! (`emergency`, `domestic_pool`, ...), so one counter shows every answer.

use prometheus_client::encoding::EncodeLabelSet;
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// Every metric of the daemon, registered once.
pub struct Metrics {
    registry: Registry,
    pub decisions: Family<DecisionLabels, Counter>,
    pub decision_seconds: Histogram,
    pub sip_messages: Family<MessageLabels, Counter>,
    pub sip_parse_errors: Counter,
    pub reservations_active: Gauge,
    pub directory_users: Gauge,
    pub pool_remaining_seconds: Family<PoolLabels, Gauge>,
    pub reloads: Family<ResultLabels, Counter>,
    pub ledger_commit_seconds: Histogram,
    /// Batches the ledger could not commit (beyond DESIGN §5's list: the alarm for
    /// `store_unavailable`).
    pub ledger_commit_errors: Counter,
    /// Calls committed by the ledger, to tell batch sizes (beyond DESIGN §5's list).
    pub ledger_records: Counter,
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
        // Every series of the bounded sets exists from the start, at 0.
        for reason in Reason::ALL {
            let labels = DecisionLabels {
                outcome: "reject",
                reason: reason.as_str(),
            };
            drop(decisions.get_or_create(&labels));
        }
        for basis in Basis::ALL {
            let labels = DecisionLabels {
                outcome: "admit",
                reason: basis.as_str(),
            };
            drop(decisions.get_or_create(&labels));
        }
        for result in ["ok", "error"] {
            drop(reloads.get_or_create(&ResultLabels { result }));
        }
        Metrics {
            registry,
            decisions,
            decision_seconds,
            sip_messages,
            sip_parse_errors,
            reservations_active,
            directory_users,
            pool_remaining_seconds,
            reloads,
            ledger_commit_seconds,
            ledger_commit_errors,
            ledger_records,
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
        self.sip_messages
            .get_or_create(&MessageLabels {
                direction: "in",
                method_or_status: method_label(method),
                transport,
            })
            .inc();
    }

    /// A response received (counted as `method_or_status="response"`, then dropped).
    pub fn response_in(&self, transport: &'static str) {
        self.sip_messages
            .get_or_create(&MessageLabels {
                direction: "in",
                method_or_status: "response",
                transport,
            })
            .inc();
    }

    pub fn message_out(&self, status: u16, transport: &'static str) {
        self.sip_messages
            .get_or_create(&MessageLabels {
                direction: "out",
                method_or_status: status_label(status),
                transport,
            })
            .inc();
    }

    /// Sets the pool gauges to `pools` (the series of pools gone since are removed).
    pub fn set_pools(&self, pools: &[tollgate_engine::pools::PoolStatus]) {
        self.pool_remaining_seconds.clear();
        for p in pools {
            let labels = PoolLabels {
                tenant: p.key.tenant.to_string(),
                region: p.key.region.as_str().to_string(),
                sku: p.key.sku.to_string(),
                kind: p.key.kind.as_str(),
            };
            let remaining = i64::try_from(p.remaining_seconds).unwrap_or(i64::MAX);
            self.pool_remaining_seconds
                .get_or_create(&labels)
                .set(remaining);
        }
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }
}

/// Known methods by name; any other token is `other` (labels stay bounded).
fn method_label(m: &Method<'_>) -> &'static str {
    match m {
        Method::Invite => "INVITE",
        Method::Ack => "ACK",
        Method::Cancel => "CANCEL",
        Method::Options => "OPTIONS",
        Method::Bye => "BYE",
        Method::Register => "REGISTER",
        Method::Other(_) => "other",
    }
}

/// The statuses Tollgate sends; anything else is `other`.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        302 => "302",
        400 => "400",
        403 => "403",
        404 => "404",
        405 => "405",
        416 => "416",
        420 => "420",
        483 => "483",
        484 => "484",
        500 => "500",
        503 => "503",
        505 => "505",
        _ => "other",
    }
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
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}
