//! Dialed-number workloads for the numbering benches.
