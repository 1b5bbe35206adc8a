//! Fixed-point emulation of the secure back end: plaintext arithmetic that
//! computes the secure protocols' approximations (activation fits, masked
//! exponential, normalised reciprocal and inverse square root) and rounds
//! every result to the fixed-point grid, so that sample quality under the
//! secure arithmetic can be studied without running three parties.
//!
//! What it leaves out: the ±1-unit error of probabilistic truncation (it
//! rounds to nearest instead), the coarse comparisons' near-tie choices
//! (it takes the exact maximum), and truncation failures (probability
//! `|v|·2^(2f-64)` per product).  `tests::emulation_tracks_the_secure_back_end`
//! states the agreement it is held to.

use std::collections::HashMap;

use super::SecureConfig;
use crate::fxp::activation::{self, Model};
use crate::fxp::norm::GroupNorm;
use crate::fxp::softmax::Softmax;
use crate::model::backend::{Activation, Backend, Init};
use crate::model::{CpuBackend, CpuTensor, Result};
use shared::FixedPoint;

/// The secure back end's arithmetic, emulated in the clear.
pub struct EmulatedBackend {
    inner: CpuBackend,
    fx: FixedPoint,
    cfg: SecureConfig,
    models: HashMap<Activation, Model>,
}

impl EmulatedBackend {
    /// Emulates [`super::SecureBackend`] with `cfg` at `fx`'s precision over
    /// the weights of `inner`.
    pub fn new(inner: CpuBackend, fx: FixedPoint, cfg: SecureConfig) -> Self {
        EmulatedBackend {
            inner,
            fx,
            cfg,
            models: HashMap::new(),
        }
    }

    /// Rounds every value to the fixed-point grid.
    fn q(&self, mut t: CpuTensor) -> CpuTensor {
        let s = self.fx.scale();
        for v in t.data.iter_mut() {
            *v = ((*v as f64 * s).round() / s) as f32;
        }
        t
    }

    fn map(&self, x: &CpuTensor, f: impl Fn(&[f64]) -> Vec<f64>) -> Result<CpuTensor> {
        let xs: Vec<f64> = x.data.iter().map(|&v| v as f64).collect();
        let y = f(&xs).into_iter().map(|v| v as f32).collect();
        Ok(self.q(CpuTensor::new(y, &x.shape)?))
    }
}

impl Backend for EmulatedBackend {
    type Tensor = CpuTensor;

    fn dims(&self, x: &CpuTensor) -> Vec<usize> {
        x.shape.clone()
    }

    fn param(&mut self, name: &str, shape: &[usize], init: Init) -> Result<CpuTensor> {
        let t = self.inner.param(name, shape, init)?;
        Ok(self.q(t))
    }

    fn from_public(&mut self, data: &[f32], shape: &[usize]) -> Result<CpuTensor> {
        let t = self.inner.from_public(data, shape)?;
        Ok(self.q(t))
    }

    fn read(&mut self, x: &CpuTensor) -> Result<Vec<f32>> {
        self.inner.read(x)
    }

    fn conv2d(
        &mut self,
        x: &CpuTensor,
        w: &CpuTensor,
        b: Option<&CpuTensor>,
        stride: usize,
        padding: usize,
    ) -> Result<CpuTensor> {
        let y = self.inner.conv2d(x, w, b, stride, padding)?;
        Ok(self.q(y))
    }

    fn linear(&mut self, x: &CpuTensor, w: &CpuTensor, b: Option<&CpuTensor>) -> Result<CpuTensor> {
        let y = self.inner.linear(x, w, b)?;
        Ok(self.q(y))
    }

    fn group_norm(
        &mut self,
        x: &CpuTensor,
        groups: usize,
        gamma: &CpuTensor,
        beta: &CpuTensor,
        eps: f32,
    ) -> Result<CpuTensor> {
        // Shape checks are the reference's.
        self.inner.group_norm(x, groups, gamma, beta, eps)?;
        let (n, c) = (x.shape[0], x.shape[1]);
        let hw = x.data.len() / (n * c);
        let gn = GroupNorm::new(n, c, hw, groups, eps as f64);
        let g: Vec<f64> = gamma.data.iter().map(|&v| v as f64).collect();
        let b: Vec<f64> = beta.data.iter().map(|&v| v as f64).collect();
        self.map(x, |xs| gn.eval_plain(xs, &g, &b))
    }

    fn activation(&mut self, x: &CpuTensor, act: Activation) -> Result<CpuTensor> {
        let fxp_act = match act {
            // ReLU is exact on shares.
            Activation::Relu => return self.inner.activation(x, act),
            Activation::Silu => activation::Activation::Silu,
            Activation::Mish => activation::Activation::Mish,
        };
        let variant = self.cfg.variant;
        let model = self
            .models
            .entry(act)
            .or_insert_with(|| fxp_act.model(variant))
            .clone();
        self.map(x, |xs| xs.iter().map(|&v| model.eval_plain(v)).collect())
    }

    fn matmul(&mut self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        let y = self.inner.matmul(a, b)?;
        Ok(self.q(y))
    }

    fn softmax_last(&mut self, x: &CpuTensor) -> Result<CpuTensor> {
        let cols = *x.shape.last().unwrap_or(&1);
        let sm = Softmax::new(self.cfg.variant, cols, self.cfg.softmax.clone());
        self.map(x, |xs| sm.eval_plain(xs, cols))
    }

    fn add(&mut self, x: &CpuTensor, y: &CpuTensor) -> Result<CpuTensor> {
        self.inner.add(x, y)
    }

    fn add_channel_vector(&mut self, x: &CpuTensor, v: &CpuTensor) -> Result<CpuTensor> {
        self.inner.add_channel_vector(x, v)
    }

    fn concat_channels(&mut self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        self.inner.concat_channels(a, b)
    }

    fn upsample_nearest2x(&mut self, x: &CpuTensor) -> Result<CpuTensor> {
        self.inner.upsample_nearest2x(x)
    }

    fn scale(&mut self, x: &CpuTensor, c: f32) -> Result<CpuTensor> {
        let y = self.inner.scale(x, c)?;
        Ok(self.q(y))
    }

    fn lincomb(&mut self, a: f32, x: &CpuTensor, b: f32, y: &CpuTensor) -> Result<CpuTensor> {
        let z = self.inner.lincomb(a, x, b, y)?;
        Ok(self.q(z))
    }

    fn clamp(&mut self, x: &CpuTensor, lo: f32, hi: f32) -> Result<CpuTensor> {
        self.inner.clamp(x, lo, hi)
    }

    fn reshape(&mut self, x: &CpuTensor, shape: &[usize]) -> Result<CpuTensor> {
        self.inner.reshape(x, shape)
    }

    fn transpose(&mut self, x: &CpuTensor, d0: usize, d1: usize) -> Result<CpuTensor> {
        self.inner.transpose(x, d0, d1)
    }

    fn narrow(&mut self, x: &CpuTensor, dim: usize, start: usize, len: usize) -> Result<CpuTensor> {
        self.inner.narrow(x, dim, start, len)
    }
}
