//! Code shared by the browser client (wasm32) and the party servers (native).
//!
//! * [`fixed`] — fixed-point encoding of reals into the ring Z_2^64.
//! * [`party`] — the three party indices and their replicated-sharing neighbours.
//! * [`prg`] — the AES-128-CTR pseudo-random generator both sides expand seeds with.
//! * [`proto`] — the versioned client ↔ server messages and their checked decoder.
//! * [`request`] — one generation from the client's side, without I/O: inputs,
//!   their shares, and the servers' replies up to the reconstructed image.
//! * [`share`] — 2-out-of-3 replicated sharing, reconstruction, and the
//!   seed-compressed form a client sends to the servers.

pub mod fixed;
pub mod party;
pub mod prg;
pub mod proto;
pub mod request;
pub mod share;

pub use fixed::{FixedPoint, FixedPointError};
pub use party::Party;
pub use prg::{Prg, Seed};
pub use share::{Component, PartyBundle, PartyShares, ShareError};
