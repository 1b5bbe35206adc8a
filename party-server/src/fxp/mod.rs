//! Fixed-point approximations of the non-linear functions, on shares.
//! Built on [`crate::mpc`]; knows nothing of layers.

pub mod activation;
pub mod exp;
pub mod norm;
pub mod poly;
pub mod recip;
pub mod softmax;

/// Which protocol a non-linear op uses: the paper's tables compare both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// What SPU does by default (the paper's baseline).
    Baseline,
    /// The paper's protocols, with corrected approximations.
    CipherDm,
}
