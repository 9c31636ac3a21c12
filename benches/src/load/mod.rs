//! The load generator `tollgate-load` (issue 7): SIP INVITEs over UDP or TCP at a fixed rate
//! or closed loop, ACKs for every final response, retransmissions and timeouts as an RFC 3261
//! INVITE client transaction does, and a latency report.
//!
//! One module per concept: [`mix`] (who calls what), [`invite`] (the messages), [`response`]
//! (parsing the answers), [`calls`] (per-call state and timers), [`wire`] (UDP and TCP
//! sockets), [`worker`] (one thread's loop), [`run`] (threads and progress), [`stats`] and
//! [`report`] (what is counted and printed), [`directory`] (`--write-directory`).

pub mod calls;
pub mod directory;
pub mod invite;
pub mod mix;
pub mod report;
pub mod response;
pub mod run;
pub mod stats;
pub mod wire;
pub mod worker;
