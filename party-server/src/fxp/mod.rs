//! Fixed-point approximations of the non-linear functions, on shares.
//! Built on [`crate::mpc`]; knows nothing of layers.

pub mod exp;
pub mod poly;
pub mod recip;
