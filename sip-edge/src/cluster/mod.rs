//! Several nodes (DESIGN §6 "Several nodes"): the cluster store in PostgreSQL ([`store`]: the
//! accounts, the shares and the nodes; [`calls`]: every node's calls), the task that keeps this
//! node in step with it ([`driver`]), and the store's read side for the CLI ([`reader`]).

pub mod calls;
pub mod driver;
pub mod reader;
pub mod store;
