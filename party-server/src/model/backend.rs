//! The arithmetic interface that the U-Net builder and the samplers are written against.
//!
//! One architecture description ([`super::UNet`]) drives several back ends:
//! the plaintext f32 reference ([`super::CpuBackend`]), candle (training, in
//! the `train` crate), and later the fixed-point emulation and the secure 3PC
//! engine. The trait is shaped so that a secret-shared back end can implement
//! it:
//!
//! * every op takes `&mut self` — a secure back end holds channels, PRG state
//!   and counters;
//! * tensors carry their shape (NCHW for images) and the back end reports it
//!   through [`Backend::dims`]; shapes are public;
//! * weights come in through [`Backend::param`] by name, so a secure back end
//!   loads its shares of the named tensor, a plaintext one reads the
//!   safetensors file and a training one creates a trainable variable;
//! * ops are coarse where the secure engine wants to batch (a whole
//!   `group_norm`, a whole `softmax_last`, one `activation` call per tensor);
//! * everything public is explicit: the scalars of [`Backend::scale`],
//!   [`Backend::lincomb`] and [`Backend::clamp`], and the data of
//!   [`Backend::from_public`] (the sinusoidal time embedding, computed in the
//!   clear because timesteps are public);
//! * layout ops (reshape, transpose, narrow, concat) are explicit ops, not
//!   hidden in others, so that a back end may implement them as pure
//!   re-indexing of its shares.

use super::Result;
pub use super::config::Activation;

/// How a training back end should initialise a parameter that it creates.
/// Plaintext and secure back ends ignore it: the parameter must exist in
/// their weight source.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Uniform in `[-bound, bound]` (PyTorch's default for conv/linear uses
    /// `bound = 1/sqrt(fan_in)`).
    Uniform(f32),
    /// All ones (GroupNorm scale).
    Ones,
    /// All zeros (biases where zero is conventional, GroupNorm shift).
    Zeros,
}

/// Arithmetic back end for the U-Net and the samplers.
///
/// Shapes used by the builder: images `[N, C, H, W]`; conv weights
/// `[C_out, C_in, k, k]`; linear weights `[out, in]` (PyTorch layout) applied
/// to the last dimension; GroupNorm affine `[C]`; per-(batch, channel) vectors `[N, C]`.
pub trait Backend {
    /// A (possibly secret-shared) tensor with a public shape.
    type Tensor: Clone;

    /// The public shape of a tensor.
    fn dims(&self, x: &Self::Tensor) -> Vec<usize>;

    /// A named model parameter of the given shape (see [`Init`]).
    fn param(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Self::Tensor>;

    /// A tensor from public data (row-major, `data.len()` = product of `shape`).
    #[allow(clippy::wrong_self_convention)] // `&mut self`: a secure back end shares it.
    fn from_public(&mut self, data: &[f32], shape: &[usize]) -> Result<Self::Tensor>;

    /// Read the values back (plaintext back ends; a secure back end reveals or refuses).
    fn read(&mut self, x: &Self::Tensor) -> Result<Vec<f32>>;

    /// 2-D convolution, `x: [N, C_in, H, W]`, `w: [C_out, C_in, k, k]`,
    /// optional bias `[C_out]`, symmetric zero padding.
    fn conv2d(
        &mut self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: Option<&Self::Tensor>,
        stride: usize,
        padding: usize,
    ) -> Result<Self::Tensor>;

    /// `x · wᵀ + b` over the last dimension: `x: [..., in]`, `w: [out, in]`, `b: [out]`.
    fn linear(
        &mut self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: Option<&Self::Tensor>,
    ) -> Result<Self::Tensor>;

    /// GroupNorm over `x: [N, C, ...]` with `groups` groups (biased variance),
    /// then the per-channel affine `gamma`, `beta` (`[C]`).
    fn group_norm(
        &mut self,
        x: &Self::Tensor,
        groups: usize,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        eps: f32,
    ) -> Result<Self::Tensor>;

    /// Element-wise activation.
    fn activation(&mut self, x: &Self::Tensor, act: Activation) -> Result<Self::Tensor>;

    /// Batched matrix product `[B, M, K] × [B, K, N] → [B, M, N]` (both operands may be secret).
    fn matmul(&mut self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;

    /// Softmax over the last dimension.
    fn softmax_last(&mut self, x: &Self::Tensor) -> Result<Self::Tensor>;

    /// The attention core `softmax(q kᵀ) v` for `q`, `k`, `v` of shape
    /// `[B, L, d]` (`q` already scaled by `1/√d`).  The default composes
    /// [`matmul`](Self::matmul) and [`softmax_last`](Self::softmax_last), so
    /// the secure back end batches and accounts each of them; a training
    /// back end may fuse it and never store the `L × L` weights.
    fn attention(
        &mut self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
    ) -> Result<Self::Tensor> {
        attention_composed(self, q, k, v)
    }

    /// Element-wise sum of two tensors of the same shape.
    fn add(&mut self, x: &Self::Tensor, y: &Self::Tensor) -> Result<Self::Tensor>;

    /// `x: [N, C, H, W]` plus `v: [N, C]` broadcast over `H × W`
    /// (time/class embedding injection).
    fn add_channel_vector(&mut self, x: &Self::Tensor, v: &Self::Tensor) -> Result<Self::Tensor>;

    /// Concatenate along the channel dimension (dim 1): `[N, Ca, ...] ++ [N, Cb, ...]`.
    fn concat_channels(&mut self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;

    /// Nearest-neighbour 2× upsampling of `[N, C, H, W]` → `[N, C, 2H, 2W]`.
    fn upsample_nearest2x(&mut self, x: &Self::Tensor) -> Result<Self::Tensor>;

    /// Multiply by a public scalar.
    fn scale(&mut self, x: &Self::Tensor, c: f32) -> Result<Self::Tensor>;

    /// `a·x + b·y` with public scalars (sampler updates).
    fn lincomb(
        &mut self,
        a: f32,
        x: &Self::Tensor,
        b: f32,
        y: &Self::Tensor,
    ) -> Result<Self::Tensor>;

    /// Clamp to the public range `[lo, hi]`.
    fn clamp(&mut self, x: &Self::Tensor, lo: f32, hi: f32) -> Result<Self::Tensor>;

    /// Reinterpret with a new shape of the same number of elements (row-major).
    fn reshape(&mut self, x: &Self::Tensor, shape: &[usize]) -> Result<Self::Tensor>;

    /// Swap two dimensions (materialising the new row-major layout).
    fn transpose(&mut self, x: &Self::Tensor, d0: usize, d1: usize) -> Result<Self::Tensor>;

    /// The slice `start..start+len` along dimension `dim` (split).
    fn narrow(
        &mut self,
        x: &Self::Tensor,
        dim: usize,
        start: usize,
        len: usize,
    ) -> Result<Self::Tensor>;
}

/// [`Backend::attention`] as `matmul(softmax_last(matmul(q, kᵀ)), v)`.
pub fn attention_composed<B: Backend + ?Sized>(
    be: &mut B,
    q: &B::Tensor,
    k: &B::Tensor,
    v: &B::Tensor,
) -> Result<B::Tensor> {
    let kt = be.transpose(k, 1, 2)?; // [B, d, L]
    let s = be.matmul(q, &kt)?; // [B, L, L]
    let p = be.softmax_last(&s)?;
    be.matmul(&p, v)
}
