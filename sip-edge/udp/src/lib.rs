//! `tollgate-udp`: UDP batch I/O, many datagrams per system call, for the daemon's UDP workers,
//! the load generator `tollgate-load` and the floor server (`benches/examples/floor_302.rs`).
//!
//! Why a crate of its own (DESIGN §1, "the UDP batch I/O"): the three need the same
//! `recvmmsg(2)`/`sendmmsg(2)` plumbing, and that plumbing is raw pointers handed to the kernel.
//! All the socket `unsafe` of the project lives here, once, next to its tests, instead of in
//! four hand-written copies. It depends on `libc` and `socket2` only: no tokio, no SIP, no
//! engine.
//!
//! - [`Inbox`]: reusable receive slots and their source addresses, filled by one `recvmmsg`
//!   ([`Inbox::recv`]); optionally with each datagram's kernel receive time.
//! - [`Outbox`]: reusable message headers; a [`Batch`] of `(bytes, destination)` borrowed for
//!   one `sendmmsg` ([`Batch::send`]), answering an [`Inbox`]'s sources without copying their
//!   addresses.
//! - [`send_many`], [`send_one`]: one-off sends without blocking (the ledger writer's path).
//! - Socket setup: [`bind_reuse_port`], [`set_receive_times`], [`queued_bytes`] (the receive
//!   queue's depth, for overload detection), [`wait_ready`] (`poll(2)` on one descriptor).
//!
//! Nothing here allocates per datagram or per batch: the buffers and headers are allocated
//! when an [`Inbox`] or [`Outbox`] is made and reused for every call. Where `recvmmsg` and
//! `sendmmsg` do not exist (not Linux), the same interface moves one datagram per system call.

#![warn(missing_docs)]

mod inbox;
mod outbox;
mod socket;

pub use inbox::Inbox;
pub use outbox::{send_many, send_one, Batch, Outbox, Sent, To};
#[cfg(unix)]
pub use socket::wait_ready;
pub use socket::{bind_reuse_port, queued_bytes, set_receive_times};
