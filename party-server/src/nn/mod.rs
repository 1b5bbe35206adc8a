//! The secure back end: the U-Net's layers on secret shares, implementing
//! [`crate::model::Backend`] with the protocols of [`crate::mpc`] and
//! [`crate::fxp`]; and its plaintext emulation.  Knows tensors and layers;
//! knows nothing of sockets.

pub mod emulated;
pub mod in_process;
pub mod layout;
pub mod secure;

pub use emulated::EmulatedBackend;
pub use secure::{OpProfile, SecureBackend, SecureConfig, SecureTensor};
