//! Shared helpers for Tollgate's benchmarks: workload generators used by the criterion benches
//! (and, later, by the load generator).

pub mod sip;
pub mod workload;
