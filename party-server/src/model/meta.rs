//! A shape-only back end: runs the builder and the forward pass on shapes,
//! counting parameters and the elements of the costly (non-linear) secure
//! ops. Useful to check a config and to estimate secure cost before any
//! weights exist.

use super::backend::{Activation, Backend, Init};
use super::{ModelError, Result};

/// Per-forward element counts of the ops that dominate secure cost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Elements passed through an activation.
    pub activation_elems: usize,
    /// Elements normalised by GroupNorm.
    pub group_norm_elems: usize,
    /// Softmax input elements.
    pub softmax_elems: usize,
    /// Multiply-accumulates of conv/linear/matmul.
    pub macs: usize,
}

/// The shape-only back end (its tensors are shapes).
#[derive(Default)]
pub struct MetaBackend {
    /// Parameters requested so far (name, shape), in order.
    pub params: Vec<(String, Vec<usize>)>,
    /// Op counts accumulated by forward passes.
    pub counts: OpCounts,
}

impl MetaBackend {
    /// An empty meta back end.
    pub fn new() -> Self {
        Self::default()
    }
    /// Total number of parameters requested.
    pub fn param_count(&self) -> usize {
        self.params
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }
}

fn err<T>(m: String) -> Result<T> {
    Err(ModelError::Shape(m))
}

impl Backend for MetaBackend {
    type Tensor = Vec<usize>;

    fn dims(&self, x: &Vec<usize>) -> Vec<usize> {
        x.clone()
    }
    fn param(&mut self, name: &str, shape: &[usize], _init: Init) -> Result<Vec<usize>> {
        if self.params.iter().any(|(n, _)| n == name) {
            return err(format!("parameter {name} requested twice"));
        }
        self.params.push((name.to_string(), shape.to_vec()));
        Ok(shape.to_vec())
    }
    fn from_public(&mut self, data: &[f32], shape: &[usize]) -> Result<Vec<usize>> {
        if data.len() != shape.iter().product::<usize>() {
            return err(format!("{} values for {shape:?}", data.len()));
        }
        Ok(shape.to_vec())
    }
    fn read(&mut self, _x: &Vec<usize>) -> Result<Vec<f32>> {
        Err(ModelError::Backend(
            "the meta back end has no values".into(),
        ))
    }
    fn conv2d(
        &mut self,
        x: &Vec<usize>,
        w: &Vec<usize>,
        _b: Option<&Vec<usize>>,
        stride: usize,
        padding: usize,
    ) -> Result<Vec<usize>> {
        if x.len() != 4 || w.len() != 4 || x[1] != w[1] {
            return err(format!("conv2d {x:?} {w:?}"));
        }
        let ho = (x[2] + 2 * padding - w[2]) / stride + 1;
        let wo = (x[3] + 2 * padding - w[3]) / stride + 1;
        self.counts.macs += x[0] * w[0] * ho * wo * w[1] * w[2] * w[3];
        Ok(vec![x[0], w[0], ho, wo])
    }
    fn linear(
        &mut self,
        x: &Vec<usize>,
        w: &Vec<usize>,
        _b: Option<&Vec<usize>>,
    ) -> Result<Vec<usize>> {
        if x.last() != w.get(1) {
            return err(format!("linear {x:?} {w:?}"));
        }
        let mut s = x.clone();
        *s.last_mut().expect("non-empty") = w[0];
        self.counts.macs += s.iter().product::<usize>() * w[1];
        Ok(s)
    }
    fn group_norm(
        &mut self,
        x: &Vec<usize>,
        groups: usize,
        _g: &Vec<usize>,
        _b: &Vec<usize>,
        _eps: f32,
    ) -> Result<Vec<usize>> {
        if x.len() < 2 || x[1] % groups != 0 {
            return err(format!("group_norm {x:?} / {groups}"));
        }
        self.counts.group_norm_elems += x.iter().product::<usize>();
        Ok(x.clone())
    }
    fn activation(&mut self, x: &Vec<usize>, _act: Activation) -> Result<Vec<usize>> {
        self.counts.activation_elems += x.iter().product::<usize>();
        Ok(x.clone())
    }
    fn matmul(&mut self, a: &Vec<usize>, b: &Vec<usize>) -> Result<Vec<usize>> {
        if a.len() != 3 || b.len() != 3 || a[0] != b[0] || a[2] != b[1] {
            return err(format!("matmul {a:?} {b:?}"));
        }
        self.counts.macs += a[0] * a[1] * a[2] * b[2];
        Ok(vec![a[0], a[1], b[2]])
    }
    fn softmax_last(&mut self, x: &Vec<usize>) -> Result<Vec<usize>> {
        self.counts.softmax_elems += x.iter().product::<usize>();
        Ok(x.clone())
    }
    fn add(&mut self, x: &Vec<usize>, y: &Vec<usize>) -> Result<Vec<usize>> {
        if x != y {
            return err(format!("add {x:?} {y:?}"));
        }
        Ok(x.clone())
    }
    fn add_channel_vector(&mut self, x: &Vec<usize>, v: &Vec<usize>) -> Result<Vec<usize>> {
        if x.len() < 2 || v[..] != x[..2] {
            return err(format!("add_channel_vector {x:?} {v:?}"));
        }
        Ok(x.clone())
    }
    fn concat_channels(&mut self, a: &Vec<usize>, b: &Vec<usize>) -> Result<Vec<usize>> {
        if a.len() != b.len() || a[0] != b[0] || a[2..] != b[2..] {
            return err(format!("concat {a:?} {b:?}"));
        }
        let mut s = a.clone();
        s[1] += b[1];
        Ok(s)
    }
    fn upsample_nearest2x(&mut self, x: &Vec<usize>) -> Result<Vec<usize>> {
        Ok(vec![x[0], x[1], 2 * x[2], 2 * x[3]])
    }
    fn scale(&mut self, x: &Vec<usize>, _c: f32) -> Result<Vec<usize>> {
        Ok(x.clone())
    }
    fn lincomb(&mut self, _a: f32, x: &Vec<usize>, _b: f32, y: &Vec<usize>) -> Result<Vec<usize>> {
        self.add(x, y)
    }
    fn clamp(&mut self, x: &Vec<usize>, _lo: f32, _hi: f32) -> Result<Vec<usize>> {
        Ok(x.clone())
    }
    fn reshape(&mut self, x: &Vec<usize>, shape: &[usize]) -> Result<Vec<usize>> {
        if x.iter().product::<usize>() != shape.iter().product::<usize>() {
            return err(format!("reshape {x:?} -> {shape:?}"));
        }
        Ok(shape.to_vec())
    }
    fn transpose(&mut self, x: &Vec<usize>, d0: usize, d1: usize) -> Result<Vec<usize>> {
        let mut s = x.clone();
        s.swap(d0, d1);
        Ok(s)
    }
    fn narrow(
        &mut self,
        x: &Vec<usize>,
        dim: usize,
        start: usize,
        len: usize,
    ) -> Result<Vec<usize>> {
        if start + len > x[dim] {
            return err(format!("narrow {x:?}"));
        }
        let mut s = x.clone();
        s[dim] = len;
        Ok(s)
    }
}
