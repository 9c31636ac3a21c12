//! Shared helpers for Tollgate's benchmarks: workload generators used by the criterion benches
//! and the load generator `tollgate-load` ([`load`]).

pub mod directory_gen;
pub mod load;
pub mod sip;
pub mod workload;
