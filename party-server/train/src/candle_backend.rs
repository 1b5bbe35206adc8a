//! The candle back end of the U-Net builder: the same architecture
//! description as the f32 reference, differentiable (training) and batched.
//!
//! Every op is composed of candle primitives that have a backward pass
//! (softmax, GroupNorm, SiLU/Mish and the 2× upsampling are written out
//! rather than calling fused kernels without gradients).

use std::collections::HashMap;

use candle_core::{D, DType, Device, Tensor, Var};
use party_server::model::{
    Activation, Backend, Init, ModelError, Result, SplitMix64, attention_composed,
};

fn ce(e: candle_core::Error) -> ModelError {
    ModelError::Backend(e.to_string())
}

/// Where parameters come from.
pub enum ParamSource {
    /// Trainable variables, created on first request from their [`Init`]
    /// (seeded) or taken from a checkpoint if present.
    Trainable {
        /// Variables by name (filled on creation).
        vars: HashMap<String, Var>,
        /// Names in creation order.
        order: Vec<String>,
        /// PRNG for initialisation.
        rng: SplitMix64,
    },
    /// Fixed tensors (evaluation).
    Fixed(HashMap<String, Tensor>),
}

/// The candle back end.
pub struct CandleBackend {
    /// Device the tensors live on.
    pub device: Device,
    /// Parameter source.
    pub source: ParamSource,
    /// Use the fused kernels of [`crate::fast_ops`] (default) instead of
    /// candle's generic ops for conv2d, GroupNorm, attention and the activations.
    pub fast: bool,
}

impl CandleBackend {
    /// A training back end whose fresh parameters are initialised from `seed`;
    /// `initial` (e.g. a checkpoint) overrides the initialiser by name.
    pub fn trainable(seed: u64, initial: HashMap<String, Tensor>) -> Result<Self> {
        let mut vars = HashMap::new();
        for (k, t) in initial {
            vars.insert(k, Var::from_tensor(&t).map_err(ce)?);
        }
        Ok(CandleBackend {
            device: Device::Cpu,
            fast: true,
            source: ParamSource::Trainable {
                vars,
                order: Vec::new(),
                rng: SplitMix64(seed),
            },
        })
    }

    /// An inference back end over fixed tensors.
    pub fn fixed(weights: HashMap<String, Tensor>) -> Self {
        CandleBackend {
            device: Device::Cpu,
            fast: true,
            source: ParamSource::Fixed(weights),
        }
    }

    /// The trainable variables in the order the builder requested them.
    pub fn vars(&self) -> Vec<(String, Var)> {
        match &self.source {
            ParamSource::Trainable { vars, order, .. } => {
                order.iter().map(|n| (n.clone(), vars[n].clone())).collect()
            }
            ParamSource::Fixed(_) => Vec::new(),
        }
    }

    /// Convert a candle tensor to f32 values.
    pub fn values(t: &Tensor) -> Result<Vec<f32>> {
        t.flatten_all()
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(ce)
    }
}

fn silu(x: &Tensor) -> candle_core::Result<Tensor> {
    // x · sigmoid(x) = x / (1 + e^{−x})
    x / (x.neg()?.exp()? + 1.0)?
}

fn mish(x: &Tensor) -> candle_core::Result<Tensor> {
    // softplus(x) = max(x, 0) + ln(1 + e^{−|x|})
    let sp = (x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    x * sp.tanh()?
}

impl Backend for CandleBackend {
    type Tensor = Tensor;

    fn dims(&self, x: &Tensor) -> Vec<usize> {
        x.dims().to_vec()
    }

    fn param(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        match &mut self.source {
            ParamSource::Fixed(w) => {
                let t = w
                    .get(name)
                    .ok_or_else(|| ModelError::MissingWeight(name.to_string()))?;
                if t.dims() != shape {
                    return Err(ModelError::Shape(format!(
                        "weight {name}: {:?} vs {shape:?}",
                        t.dims()
                    )));
                }
                Ok(t.clone())
            }
            ParamSource::Trainable { vars, order, rng } => {
                if !vars.contains_key(name) {
                    let n: usize = shape.iter().product();
                    let data: Vec<f32> = match init {
                        Init::Uniform(b) => (0..n)
                            .map(|_| ((rng.uniform() * 2.0 - 1.0) as f32) * b)
                            .collect(),
                        Init::Ones => vec![1.0; n],
                        Init::Zeros => vec![0.0; n],
                    };
                    let t = Tensor::from_vec(data, shape, &self.device).map_err(ce)?;
                    vars.insert(name.to_string(), Var::from_tensor(&t).map_err(ce)?);
                } else {
                    // Keep the PRNG stream identical whether or not a checkpoint exists.
                    let n: usize = shape.iter().product();
                    if let Init::Uniform(_) = init {
                        for _ in 0..n {
                            rng.uniform();
                        }
                    }
                }
                let v = &vars[name];
                if v.dims() != shape {
                    return Err(ModelError::Shape(format!(
                        "checkpoint {name}: {:?} vs {shape:?}",
                        v.dims()
                    )));
                }
                order.push(name.to_string());
                Ok(v.as_tensor().clone())
            }
        }
    }

    fn from_public(&mut self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_slice(data, shape, &self.device).map_err(ce)
    }

    fn read(&mut self, x: &Tensor) -> Result<Vec<f32>> {
        Self::values(x)
    }

    fn conv2d(
        &mut self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        stride: usize,
        padding: usize,
    ) -> Result<Tensor> {
        if self.fast {
            let c = w.dims()[0];
            let zero;
            let b = match b {
                Some(b) => b,
                None => {
                    zero = Tensor::zeros(c, DType::F32, &self.device).map_err(ce)?;
                    &zero
                }
            };
            return x
                .contiguous()
                .and_then(|x| {
                    x.apply_op3(
                        &w.contiguous()?,
                        &b.contiguous()?,
                        crate::fast_ops::Conv2d { stride, padding },
                    )
                })
                .map_err(ce);
        }
        let y = x.conv2d(w, padding, stride, 1, 1).map_err(ce)?;
        match b {
            Some(b) => {
                let c = b.dims()[0];
                y.broadcast_add(&b.reshape((1, c, 1, 1)).map_err(ce)?)
                    .map_err(ce)
            }
            None => Ok(y),
        }
    }

    fn linear(&mut self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let din = *dims
            .last()
            .ok_or_else(|| ModelError::Shape("linear on a scalar".into()))?;
        let rows = x.elem_count() / din.max(1);
        let x2 = x.reshape((rows, din)).map_err(ce)?;
        let mut y = x2.matmul(&w.t().map_err(ce)?).map_err(ce)?;
        if let Some(b) = b {
            y = y.broadcast_add(b).map_err(ce)?;
        }
        let mut out = dims;
        *out.last_mut().expect("non-empty") = w.dims()[0];
        y.reshape(out).map_err(ce)
    }

    fn group_norm(
        &mut self,
        x: &Tensor,
        groups: usize,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<Tensor> {
        if self.fast {
            return x
                .contiguous()
                .and_then(|x| {
                    x.apply_op3(
                        &gamma.contiguous()?,
                        &beta.contiguous()?,
                        crate::fast_ops::GroupNorm { groups, eps },
                    )
                })
                .map_err(ce);
        }
        let f = || -> candle_core::Result<Tensor> {
            let dims = x.dims().to_vec();
            let (n, c) = (dims[0], dims[1]);
            let xg = x.reshape((n, groups, ()))?;
            let mean = xg.mean_keepdim(D::Minus1)?;
            let xc = xg.broadcast_sub(&mean)?;
            let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
            let xn = xc.broadcast_div(&(var + eps as f64)?.sqrt()?)?;
            let mut bshape = vec![1usize; dims.len()];
            bshape[1] = c;
            let xn = xn.reshape(dims)?;
            xn.broadcast_mul(&gamma.reshape(bshape.clone())?)?
                .broadcast_add(&beta.reshape(bshape)?)
        };
        f().map_err(ce)
    }

    fn activation(&mut self, x: &Tensor, act: Activation) -> Result<Tensor> {
        if self.fast {
            return x
                .contiguous()
                .and_then(|x| x.apply_op1(crate::fast_ops::Act(act)))
                .map_err(ce);
        }
        match act {
            Activation::Relu => x.relu(),
            Activation::Silu => silu(x),
            Activation::Mish => mish(x),
        }
        .map_err(ce)
    }

    fn matmul(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        a.contiguous()
            .and_then(|a| a.matmul(&b.contiguous()?))
            .map_err(ce)
    }

    fn softmax_last(&mut self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::softmax(x, D::Minus1).map_err(ce)
    }

    fn attention(&mut self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        if !self.fast {
            return attention_composed(self, q, k, v);
        }
        let f = || {
            q.contiguous()?.apply_op3(
                &k.contiguous()?,
                &v.contiguous()?,
                crate::fast_ops::Attention,
            )
        };
        f().map_err(ce)
    }

    fn add(&mut self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        if x.dims() != y.dims() {
            return Err(ModelError::Shape(format!(
                "add {:?} {:?}",
                x.dims(),
                y.dims()
            )));
        }
        (x + y).map_err(ce)
    }

    fn add_channel_vector(&mut self, x: &Tensor, v: &Tensor) -> Result<Tensor> {
        if self.fast {
            return x
                .contiguous()
                .and_then(|x| x.apply_op2(&v.contiguous()?, crate::fast_ops::AddChannelVector))
                .map_err(ce);
        }
        let d = v.dims();
        v.reshape((d[0], d[1], 1, 1))
            .and_then(|v| x.broadcast_add(&v))
            .map_err(ce)
    }

    fn concat_channels(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        Tensor::cat(&[a, b], 1).map_err(ce)
    }

    fn upsample_nearest2x(&mut self, x: &Tensor) -> Result<Tensor> {
        let f = || -> candle_core::Result<Tensor> {
            let (n, c, h, w) = x.dims4()?;
            x.reshape((n, c, h, 1, w, 1))?
                .broadcast_as((n, c, h, 2, w, 2))?
                .contiguous()?
                .reshape((n, c, 2 * h, 2 * w))
        };
        f().map_err(ce)
    }

    fn scale(&mut self, x: &Tensor, c: f32) -> Result<Tensor> {
        (x * c as f64).map_err(ce)
    }

    fn lincomb(&mut self, a: f32, x: &Tensor, b: f32, y: &Tensor) -> Result<Tensor> {
        ((x * a as f64).and_then(|p| p + (y * b as f64)?)).map_err(ce)
    }

    fn clamp(&mut self, x: &Tensor, lo: f32, hi: f32) -> Result<Tensor> {
        x.clamp(lo, hi).map_err(ce)
    }

    fn reshape(&mut self, x: &Tensor, shape: &[usize]) -> Result<Tensor> {
        x.reshape(shape).map_err(ce)
    }

    fn transpose(&mut self, x: &Tensor, d0: usize, d1: usize) -> Result<Tensor> {
        x.transpose(d0, d1).and_then(|t| t.contiguous()).map_err(ce)
    }

    fn narrow(&mut self, x: &Tensor, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        x.narrow(dim, start, len)
            .and_then(|t| t.contiguous())
            .map_err(ce)
    }
}
