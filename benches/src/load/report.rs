//! The report of a run: a table on stdout for people, the same figures as JSON for scripts
//! (`benches/run.sh`, the end-to-end test). Field names are part of the tool's interface.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::run::{Outcome, Plan};

/// Latency percentiles, milliseconds (from the INVITE's first send to the final response).
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Everything a run reports.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub transport: &'static str,
    /// UDP sockets or TCP connections.
    pub workers: usize,
    /// Calls/s offered, or `"max"` (closed loop).
    pub rate_target: String,
    pub concurrency: Option<usize>,
    pub run_id: u32,
    /// Calls started.
    pub sent: u64,
    /// Calls with a final response.
    pub answered: u64,
    /// Final responses by status code.
    pub by_status: BTreeMap<String, u64>,
    pub retransmissions: u64,
    pub timeouts: u64,
    pub late_or_duplicate: u64,
    pub provisional: u64,
    pub acks: u64,
    pub unmatched: u64,
    pub send_errors: u64,
    /// Calls started per second over the sending phase.
    pub send_rate: f64,
    /// Final responses per second while calls were being sent (answers that came in after
    /// the sending phase, e.g. after retransmissions, are not counted here).
    pub achieved_rate: f64,
    /// Final responses per second from the start to the last final response.
    pub answered_rate: f64,
    pub send_secs: f64,
    pub total_secs: f64,
    pub latency: Latency,
}

impl Report {
    pub fn new(plan: &Plan, o: &Outcome) -> Report {
        let t = &o.totals;
        let ms = |q: f64| t.latency.value_at_quantile(q) as f64 / 1000.0;
        let by_status = t
            .by_status
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(s, n)| (s.to_string(), *n))
            .collect();
        let answer_window = o.answer_secs.max(o.send_secs);
        Report {
            target: plan.target.to_string(),
            transport: match plan.transport {
                super::invite::Via::Udp => "udp",
                super::invite::Via::Tcp => "tcp",
            },
            workers: plan.workers,
            rate_target: plan
                .rate
                .map_or_else(|| "max".to_string(), |r| format!("{r}")),
            concurrency: plan.rate.is_none().then_some(plan.concurrency),
            run_id: plan.run_id,
            sent: t.sent,
            answered: t.answered,
            by_status,
            retransmissions: t.retransmissions,
            timeouts: t.timeouts,
            late_or_duplicate: t.late_or_duplicate,
            provisional: t.provisional,
            acks: t.acks,
            unmatched: t.unmatched,
            send_errors: t.send_errors,
            send_rate: rate(t.sent, o.send_secs),
            achieved_rate: rate(t.answered_while_sending, o.send_secs),
            answered_rate: rate(t.answered, answer_window),
            send_secs: round3(o.send_secs),
            total_secs: round3(o.total_secs),
            latency: Latency {
                p50_ms: ms(0.50),
                p90_ms: ms(0.90),
                p99_ms: ms(0.99),
                p999_ms: ms(0.999),
                max_ms: t.latency.max() as f64 / 1000.0,
                mean_ms: round3(t.latency.mean() / 1000.0),
            },
        }
    }

    /// The table for stdout.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let concurrency = self
            .concurrency
            .map_or(String::new(), |c| format!(" (concurrency {c})"));
        let _ = writeln!(
            s,
            "tollgate-load: {} x{} {} → {}, rate {}{concurrency}",
            self.transport,
            self.workers,
            if self.transport == "udp" {
                "sockets"
            } else {
                "connections"
            },
            self.target,
            self.rate_target
        );
        let row = |s: &mut String, k: &str, v: String| {
            let _ = writeln!(s, "  {k:<22} {v}");
        };
        row(&mut s, "calls sent", self.sent.to_string());
        row(&mut s, "answered", self.answered.to_string());
        for (status, n) in &self.by_status {
            row(&mut s, &format!("  {status}"), n.to_string());
        }
        row(&mut s, "timeouts", self.timeouts.to_string());
        row(&mut s, "retransmissions", self.retransmissions.to_string());
        row(
            &mut s,
            "late or duplicate",
            self.late_or_duplicate.to_string(),
        );
        row(&mut s, "acks sent", self.acks.to_string());
        if self.unmatched > 0 || self.send_errors > 0 {
            row(&mut s, "unmatched", self.unmatched.to_string());
            row(&mut s, "send errors", self.send_errors.to_string());
        }
        row(
            &mut s,
            "send rate",
            format!("{:.0} calls/s over {:.2} s", self.send_rate, self.send_secs),
        );
        row(
            &mut s,
            "achieved rate",
            format!(
                "{:.0} final responses/s while sending ({:.0}/s to the last answer)",
                self.achieved_rate, self.answered_rate
            ),
        );
        let l = &self.latency;
        row(
            &mut s,
            "latency ms",
            format!(
                "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
                l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms
            ),
        );
        s
    }
}

fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        (n as f64 / secs).round()
    } else {
        0.0
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
