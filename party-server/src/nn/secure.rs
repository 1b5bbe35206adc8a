//! [`Backend`] on replicated secret shares: one party's side of the U-Net.
//!
//! Shapes and timesteps are public; weights, inputs and every activation
//! are shares.  The back end never reconstructs: [`Backend::read`] refuses.
//! Element-wise ops on a whole tensor are one protocol call, so each layer
//! costs the rounds of its op, not of its size.

use super::layout;
use crate::fxp::Variant;
use crate::fxp::activation;
use crate::fxp::norm::GroupNorm;
use crate::fxp::softmax::{Softmax, SoftmaxConfig};
use crate::model::backend::{Activation, Backend, Init};
use crate::model::{ModelError, Result};
use crate::mpc::arith::{self, AShare, MatShape};
use crate::mpc::conv::{Conv2dShape, conv2d_fx};
use crate::mpc::local::thread_cpu_seconds;
use crate::mpc::{CommStats, Ctx, compare};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// A shared tensor with its public shape.
#[derive(Clone, Debug)]
pub struct SecureTensor {
    pub shape: Vec<usize>,
    pub data: AShare,
}

impl SecureTensor {
    pub fn new(shape: &[usize], data: AShare) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(ModelError::Shape(format!(
                "{} shares for shape {shape:?}",
                data.len()
            )));
        }
        Ok(SecureTensor {
            shape: shape.to_vec(),
            data,
        })
    }

    fn gathered(&self, idx: &[usize], shape: Vec<usize>) -> Self {
        SecureTensor {
            shape,
            data: self.data.gather(idx),
        }
    }
}

/// Protocol choices of the secure back end.
#[derive(Debug, Clone)]
pub struct SecureConfig {
    /// Baseline (SPU-like) or CipherDM protocols for the non-linear ops.
    pub variant: Variant,
    /// Ring width of ReLU/clamp comparisons: activations must stay below
    /// `2^(k-1-f)` in magnitude (8192 at k = 32, f = 18).
    pub relu_ring_bits: u32,
    pub softmax: SoftmaxConfig,
}

impl SecureConfig {
    pub fn new(variant: Variant) -> Self {
        SecureConfig {
            variant,
            relu_ring_bits: 32,
            softmax: SoftmaxConfig::default(),
        }
    }
}

/// Cost of one kind of op, summed over its calls (this party's view).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OpProfile {
    pub calls: u64,
    /// Wall time.
    pub seconds: f64,
    /// CPU time of this party's thread (wall minus it is waiting; the
    /// threads of concurrent sub-protocols are not counted).
    pub cpu_seconds: f64,
    pub bytes_sent: u64,
    pub rounds: u64,
    /// Wrapped truncations, in an audited in-process run (P0 counts).
    pub trunc_failures: u64,
    /// Their risk, as [`crate::mpc::CommStats::trunc_risk`].
    pub trunc_risk: u128,
}

/// One party's secure back end.
pub struct SecureBackend<'a> {
    ctx: &'a mut Ctx,
    weights: HashMap<String, SecureTensor>,
    cfg: SecureConfig,
    profile: BTreeMap<&'static str, OpProfile>,
    /// The op kind and call number of the first wrapped truncation (audit).
    first_trunc_failure: Option<(&'static str, u64)>,
}

fn link(e: crate::mpc::Error) -> ModelError {
    ModelError::Backend(e.to_string())
}

impl<'a> SecureBackend<'a> {
    /// `weights`: this party's shares of the model's named tensors.
    pub fn new(
        ctx: &'a mut Ctx,
        weights: HashMap<String, SecureTensor>,
        cfg: SecureConfig,
    ) -> Self {
        SecureBackend {
            ctx,
            weights,
            cfg,
            profile: BTreeMap::new(),
            first_trunc_failure: None,
        }
    }

    pub fn ctx(&mut self) -> &mut Ctx {
        self.ctx
    }

    /// Time, bytes and rounds per op kind so far.
    /// In an audited run: the op kind and its call number (1-based) where a
    /// truncation first wrapped — later failures are often its consequence.
    pub fn first_trunc_failure(&self) -> Option<(&'static str, u64)> {
        self.first_trunc_failure
    }

    pub fn profile(&self) -> &BTreeMap<&'static str, OpProfile> {
        &self.profile
    }

    /// Runs a protocol, charging its cost to `op` in the profile.
    fn run<T>(
        &mut self,
        op: &'static str,
        f: impl FnOnce(&mut Ctx, &SecureConfig) -> crate::mpc::Result<T>,
    ) -> Result<T> {
        let (t0, c0, s0): (Instant, f64, CommStats) =
            (Instant::now(), thread_cpu_seconds(), self.ctx.stats());
        let out = f(self.ctx, &self.cfg).map_err(link)?;
        let st = self.ctx.stats() - s0;
        let p = self.profile.entry(op).or_default();
        p.calls += 1;
        p.seconds += t0.elapsed().as_secs_f64();
        p.cpu_seconds += thread_cpu_seconds() - c0;
        p.bytes_sent += st.bytes_sent;
        p.rounds += st.rounds;
        p.trunc_failures += st.trunc_failures;
        p.trunc_risk += st.trunc_risk;
        if st.trunc_failures > 0 && self.first_trunc_failure.is_none() {
            self.first_trunc_failure = Some((op, p.calls));
        }
        Ok(out)
    }

    fn same_shape(a: &SecureTensor, b: &SecureTensor) -> Result<()> {
        if a.shape != b.shape {
            return Err(ModelError::Shape(format!("{:?} vs {:?}", a.shape, b.shape)));
        }
        Ok(())
    }

    fn encode(&self, c: f32) -> Result<u64> {
        self.ctx
            .fx()
            .encode(c as f64)
            .map_err(|e| ModelError::Backend(e.to_string()))
    }
}

impl Backend for SecureBackend<'_> {
    type Tensor = SecureTensor;

    fn dims(&self, x: &SecureTensor) -> Vec<usize> {
        x.shape.clone()
    }

    fn param(&mut self, name: &str, shape: &[usize], _init: Init) -> Result<SecureTensor> {
        let w = self
            .weights
            .get(name)
            .ok_or_else(|| ModelError::MissingWeight(name.into()))?;
        if w.shape != shape {
            return Err(ModelError::Shape(format!(
                "weight {name}: {:?}, expected {shape:?}",
                w.shape
            )));
        }
        Ok(w.clone())
    }

    fn from_public(&mut self, data: &[f32], shape: &[usize]) -> Result<SecureTensor> {
        let enc = data
            .iter()
            .map(|&v| self.encode(v))
            .collect::<Result<Vec<u64>>>()?;
        SecureTensor::new(shape, AShare::from_public(self.ctx, &enc))
    }

    fn read(&mut self, _x: &SecureTensor) -> Result<Vec<f32>> {
        Err(ModelError::Backend(
            "a party never reconstructs a secret; only the client does".into(),
        ))
    }

    fn conv2d(
        &mut self,
        x: &SecureTensor,
        w: &SecureTensor,
        b: Option<&SecureTensor>,
        stride: usize,
        padding: usize,
    ) -> Result<SecureTensor> {
        let (xs, ws) = (&x.shape, &w.shape);
        if xs.len() != 4 || ws.len() != 4 || xs[1] != ws[1] || ws[2] != ws[3] {
            return Err(ModelError::Shape(format!("conv2d {xs:?} with {ws:?}")));
        }
        let s = Conv2dShape {
            batch: xs[0],
            c_in: xs[1],
            height: xs[2],
            width: xs[3],
            c_out: ws[0],
            kernel: ws[2],
            stride,
            padding,
        };
        let (ho, wo) = s.out_hw();
        let data = self.run("conv2d", |c, _| {
            conv2d_fx(c, &x.data, &w.data, b.map(|b| &b.data), s)
        })?;
        SecureTensor::new(&[s.batch, s.c_out, ho, wo], data)
    }

    fn linear(
        &mut self,
        x: &SecureTensor,
        w: &SecureTensor,
        b: Option<&SecureTensor>,
    ) -> Result<SecureTensor> {
        let (k, out) = (*x.shape.last().unwrap_or(&0), w.shape[0]);
        if w.shape.len() != 2 || w.shape[1] != k {
            return Err(ModelError::Shape(format!(
                "linear {:?} with {:?}",
                x.shape, w.shape
            )));
        }
        let rows = x.data.len() / k.max(1);
        let shape = MatShape {
            m: rows,
            k,
            n: out,
            y_transposed: true,
        };
        let mut y = self.run("linear", |c, _| {
            arith::matmul_fx(c, &x.data, &w.data, shape)
        })?;
        if let Some(b) = b {
            y = y.add(&AShare::concat(&vec![&b.data; rows]));
        }
        let mut s = x.shape.clone();
        *s.last_mut().expect("non-empty shape") = out;
        SecureTensor::new(&s, y)
    }

    fn group_norm(
        &mut self,
        x: &SecureTensor,
        groups: usize,
        gamma: &SecureTensor,
        beta: &SecureTensor,
        eps: f32,
    ) -> Result<SecureTensor> {
        let (n, c) = (x.shape[0], x.shape[1]);
        let hw: usize = x.shape[2..].iter().product();
        if groups == 0 || c % groups != 0 || gamma.data.len() != c || beta.data.len() != c {
            return Err(ModelError::Shape(format!(
                "group_norm {:?}, {groups} groups",
                x.shape
            )));
        }
        let gn = GroupNorm::new(n, c, hw, groups, eps as f64);
        let y = self.run("group_norm", |ctx, _| {
            gn.eval(ctx, &x.data, &gamma.data, &beta.data)
        })?;
        SecureTensor::new(&x.shape, y)
    }

    fn activation(&mut self, x: &SecureTensor, act: Activation) -> Result<SecureTensor> {
        let y = match act {
            Activation::Relu => self.run("relu", |c, cfg| {
                compare::relu(c, &x.data, cfg.relu_ring_bits)
            })?,
            Activation::Silu => {
                self.run("silu", |c, cfg| activation::silu(c, &x.data, cfg.variant))?
            }
            Activation::Mish => {
                self.run("mish", |c, cfg| activation::mish(c, &x.data, cfg.variant))?
            }
        };
        SecureTensor::new(&x.shape, y)
    }

    fn matmul(&mut self, a: &SecureTensor, b: &SecureTensor) -> Result<SecureTensor> {
        let (sa, sb) = (&a.shape, &b.shape);
        if sa.len() != 3 || sb.len() != 3 || sa[0] != sb[0] || sa[2] != sb[1] {
            return Err(ModelError::Shape(format!("matmul {sa:?} × {sb:?}")));
        }
        let shape = MatShape {
            m: sa[1],
            k: sa[2],
            n: sb[2],
            y_transposed: false,
        };
        let y = self.run("matmul", |c, _| {
            arith::matmul_batched_fx(c, &a.data, &b.data, shape, sa[0])
        })?;
        SecureTensor::new(&[sa[0], sa[1], sb[2]], y)
    }

    fn softmax_last(&mut self, x: &SecureTensor) -> Result<SecureTensor> {
        let cols = *x.shape.last().unwrap_or(&1);
        let rows = x.data.len() / cols.max(1);
        let y = self.run("softmax", |c, cfg| {
            Softmax::new(cfg.variant, cols, cfg.softmax.clone()).eval(c, &x.data, rows, cols)
        })?;
        SecureTensor::new(&x.shape, y)
    }

    fn add(&mut self, x: &SecureTensor, y: &SecureTensor) -> Result<SecureTensor> {
        Self::same_shape(x, y)?;
        SecureTensor::new(&x.shape, x.data.add(&y.data))
    }

    fn add_channel_vector(&mut self, x: &SecureTensor, v: &SecureTensor) -> Result<SecureTensor> {
        if x.shape.len() < 2 || v.shape != x.shape[..2] {
            return Err(ModelError::Shape(format!(
                "add {:?} to {:?}",
                v.shape, x.shape
            )));
        }
        let hw: usize = x.shape[2..].iter().product();
        SecureTensor::new(&x.shape, x.data.add(&v.data.repeat_each(hw)))
    }

    fn concat_channels(&mut self, a: &SecureTensor, b: &SecureTensor) -> Result<SecureTensor> {
        if a.shape.len() < 2 || a.shape[0] != b.shape[0] || a.shape[2..] != b.shape[2..] {
            return Err(ModelError::Shape(format!(
                "concat {:?} ++ {:?}",
                a.shape, b.shape
            )));
        }
        let (idx, shape) = layout::concat_channels(&a.shape, &b.shape);
        let both = SecureTensor {
            shape: vec![],
            data: AShare::concat(&[&a.data, &b.data]),
        };
        Ok(both.gathered(&idx, shape))
    }

    fn upsample_nearest2x(&mut self, x: &SecureTensor) -> Result<SecureTensor> {
        if x.shape.len() != 4 {
            return Err(ModelError::Shape(format!("upsample {:?}", x.shape)));
        }
        let (idx, shape) = layout::upsample2x(&x.shape);
        Ok(x.gathered(&idx, shape))
    }

    fn scale(&mut self, x: &SecureTensor, c: f32) -> Result<SecureTensor> {
        let y = self.run("scale", |ctx, _| {
            arith::mul_public_scalar_fx(ctx, &x.data, c as f64)
        })?;
        SecureTensor::new(&x.shape, y)
    }

    fn lincomb(
        &mut self,
        a: f32,
        x: &SecureTensor,
        b: f32,
        y: &SecureTensor,
    ) -> Result<SecureTensor> {
        Self::same_shape(x, y)?;
        let (ea, eb) = (self.encode(a)?, self.encode(b)?);
        // Both products at double scale, one truncation.
        let sum = x
            .data
            .mul_public_scalar(ea)
            .add(&y.data.mul_public_scalar(eb));
        let z = self.run("lincomb", |c, _| arith::trunc(c, &sum, c.frac_bits()))?;
        SecureTensor::new(&x.shape, z)
    }

    fn clamp(&mut self, x: &SecureTensor, lo: f32, hi: f32) -> Result<SecureTensor> {
        let (elo, ehi) = (self.encode(lo)?, self.encode(hi)?);
        let n = x.data.len();
        // clamp(x) = lo + relu(x - lo) - relu(x - hi): both ReLUs in one call.
        let y = self.run("clamp", |c, cfg| {
            let shifted = AShare::concat(&[
                &x.data.add_public_scalar(c, elo.wrapping_neg()),
                &x.data.add_public_scalar(c, ehi.wrapping_neg()),
            ]);
            let r = compare::relu(c, &shifted, cfg.relu_ring_bits)?.split(&[n, n]);
            Ok(r[0].sub(&r[1]).add_public_scalar(c, elo))
        })?;
        SecureTensor::new(&x.shape, y)
    }

    fn reshape(&mut self, x: &SecureTensor, shape: &[usize]) -> Result<SecureTensor> {
        SecureTensor::new(shape, x.data.clone())
    }

    fn transpose(&mut self, x: &SecureTensor, d0: usize, d1: usize) -> Result<SecureTensor> {
        if d0 >= x.shape.len() || d1 >= x.shape.len() {
            return Err(ModelError::Shape(format!(
                "transpose {d0},{d1} of {:?}",
                x.shape
            )));
        }
        let (idx, shape) = layout::transpose(&x.shape, d0, d1);
        Ok(x.gathered(&idx, shape))
    }

    fn narrow(
        &mut self,
        x: &SecureTensor,
        dim: usize,
        start: usize,
        len: usize,
    ) -> Result<SecureTensor> {
        if dim >= x.shape.len() || start + len > x.shape[dim] {
            return Err(ModelError::Shape(format!(
                "narrow {dim} {start}+{len} of {:?}",
                x.shape
            )));
        }
        let (idx, shape) = layout::narrow(&x.shape, dim, start, len);
        Ok(x.gathered(&idx, shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::local;
    use shared::FixedPoint;

    #[test]
    fn a_party_refuses_to_reconstruct() {
        let refused = local::run(FixedPoint::default(), Some(1), |ctx| {
            let cfg = SecureConfig::new(Variant::CipherDm);
            let mut be = SecureBackend::new(ctx, HashMap::new(), cfg);
            let x = be.from_public(&[0.5, -1.0], &[2]).expect("public input");
            be.read(&x).is_err()
        });
        assert_eq!(refused, [true; 3]);
    }
}
