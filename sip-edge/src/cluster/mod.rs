//! Several nodes (DESIGN §6 "Several nodes"): the cluster store in PostgreSQL ([`store`]) and
//! the task that keeps this node in step with it ([`driver`]).

pub mod driver;
pub mod store;
