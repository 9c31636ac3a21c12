//! Shared helpers for Tollgate's benchmarks: workload generators used by the criterion benches
//! (and, later, by the load generator).

pub mod directory_gen;
pub mod sip;
pub mod workload;
