//! Semi-honest three-party computation over replicated secret shares
//! (ABY3-style, honest majority).  This layer knows ring elements and bits
//! only: no tensors, no layers, no sockets.
//!
//! * [`transport`] — links to the two neighbours; in-memory implementation.
//! * [`context`] — a party's session state, correlated randomness, counters.
//! * [`arith`] — arithmetic shares: local ops, multiplication, truncation,
//!   matrix products on the ring GEMM.
//! * [`conv`] — 2-D convolution by im2col.
//! * [`max`] — row-wise maximum.
//! * [`bits`] — bit-packed boolean shares and AND.
//! * [`compare`] — most significant bit (A2B with a carry tree), B2A,
//!   bit injection, ReLU and select.
//! * [`local`] — running three parties as threads of one process.

pub mod arith;
pub mod bits;
pub mod compare;
pub mod context;
pub mod conv;
pub mod local;
pub mod max;
pub mod transport;

pub use arith::AShare;
pub use bits::BShare;
pub use context::{CommStats, Ctx, expected_trunc_failures};
pub use transport::{Dir, Transport, TransportError};

/// Errors of the protocols: they only fail when a link fails.
pub type Error = TransportError;
pub type Result<T> = std::result::Result<T, Error>;
