//! The plaintext f32 back end: the reference implementation of every op
//! (the paper's "CPU" column). Straightforward loops; convolutions go
//! through im2col and a cache-friendly GEMM.

use std::collections::HashMap;

use super::backend::{Activation, Backend, Init};
use super::{ModelError, Result};

/// A dense row-major f32 tensor with its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuTensor {
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

impl CpuTensor {
    /// A tensor from data and shape (checked).
    pub fn new(data: Vec<f32>, shape: &[usize]) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(ModelError::Shape(format!(
                "{} values for shape {shape:?}",
                data.len()
            )));
        }
        Ok(CpuTensor {
            shape: shape.to_vec(),
            data,
        })
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// Small deterministic PRNG (SplitMix64) for random initialisation in tests.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Where [`CpuBackend::param`] gets its tensors.
enum Source {
    /// Named tensors (e.g. loaded from safetensors); missing names are an error.
    Weights(HashMap<String, CpuTensor>),
    /// Create parameters from their [`Init`] with a seeded PRNG (tests, benchmarks).
    Random(SplitMix64),
}

/// The plaintext f32 back end.
pub struct CpuBackend {
    source: Source,
    /// Parameters handed out so far, in order (name, shape).
    loaded: Vec<(String, Vec<usize>)>,
    /// Parameters created by the random source (so they can be saved).
    created: HashMap<String, CpuTensor>,
}

impl CpuBackend {
    /// A back end that serves the given named weights.
    pub fn with_weights(weights: HashMap<String, CpuTensor>) -> Self {
        CpuBackend {
            source: Source::Weights(weights),
            loaded: Vec::new(),
            created: HashMap::new(),
        }
    }

    /// A back end that creates parameters at random (uniform per [`Init`]),
    /// deterministically from `seed`.
    pub fn random(seed: u64) -> Self {
        CpuBackend {
            source: Source::Random(SplitMix64(seed)),
            loaded: Vec::new(),
            created: HashMap::new(),
        }
    }

    /// Load weights from a safetensors file.
    pub fn from_safetensors(path: impl AsRef<std::path::Path>) -> Result<Self> {
        Ok(Self::with_weights(super::weights::load_safetensors(path)?))
    }

    /// Names and shapes of the parameters handed out so far.
    pub fn loaded_params(&self) -> &[(String, Vec<usize>)] {
        &self.loaded
    }

    /// The parameters created by a random back end.
    pub fn created_params(&self) -> &HashMap<String, CpuTensor> {
        &self.created
    }

    /// Names in the weight source that no `param` call asked for (a config/weights mismatch).
    pub fn unused_weights(&self) -> Vec<String> {
        match &self.source {
            Source::Weights(w) => {
                let mut v: Vec<String> = w
                    .keys()
                    .filter(|k| !self.loaded.iter().any(|(n, _)| n == *k))
                    .cloned()
                    .collect();
                v.sort();
                v
            }
            Source::Random(_) => Vec::new(),
        }
    }
}

fn shape_err<T>(m: String) -> Result<T> {
    Err(ModelError::Shape(m))
}

/// `c[m×n] += a[m×k] · b[k×n]` (row-major).
pub fn gemm_acc(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    gemm_strided(m, k, n, (a, k, 1), (b, n, 1), c, 1.0);
}

/// `c[m×n] = beta·c + A·B` for row-major `c`, where `A` and `B` are given as
/// `(data, row stride, column stride)`, so transposed operands cost nothing.
/// matrixmultiply's packed, vectorised kernel: the training convolutions'
/// shapes (e.g. 16×144×784) run several times faster than a row-axpy loop.
pub fn gemm_strided(
    m: usize,
    k: usize,
    n: usize,
    (a, rsa, csa): (&[f32], usize, usize),
    (b, rsb, csb): (&[f32], usize, usize),
    c: &mut [f32],
    beta: f32,
) {
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * rs + (cols - 1) * cs + 1
        }
    };
    assert!(a.len() >= last(m, k, rsa, csa), "gemm: A too short");
    assert!(b.len() >= last(k, n, rsb, csb), "gemm: B too short");
    assert!(c.len() >= m * n, "gemm: C too short");
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above keep every index the kernel touches inside
    // the slices (A: i·rsa + p·csa, B: p·rsb + j·csb, C: i·n + j).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

impl Backend for CpuBackend {
    type Tensor = CpuTensor;

    fn dims(&self, x: &CpuTensor) -> Vec<usize> {
        x.shape.clone()
    }

    fn param(&mut self, name: &str, shape: &[usize], init: Init) -> Result<CpuTensor> {
        let t = match &mut self.source {
            Source::Weights(w) => {
                let t = w
                    .get(name)
                    .ok_or_else(|| ModelError::MissingWeight(name.to_string()))?;
                if t.shape != shape {
                    return shape_err(format!(
                        "weight {name} has shape {:?}, the config needs {shape:?}",
                        t.shape
                    ));
                }
                t.clone()
            }
            Source::Random(rng) => {
                let n: usize = shape.iter().product();
                let data = match init {
                    Init::Uniform(b) => (0..n)
                        .map(|_| ((rng.uniform() * 2.0 - 1.0) as f32) * b)
                        .collect(),
                    Init::Ones => vec![1.0; n],
                    Init::Zeros => vec![0.0; n],
                };
                let t = CpuTensor::new(data, shape)?;
                self.created.insert(name.to_string(), t.clone());
                t
            }
        };
        self.loaded.push((name.to_string(), shape.to_vec()));
        Ok(t)
    }

    fn from_public(&mut self, data: &[f32], shape: &[usize]) -> Result<CpuTensor> {
        CpuTensor::new(data.to_vec(), shape)
    }

    fn read(&mut self, x: &CpuTensor) -> Result<Vec<f32>> {
        Ok(x.data.clone())
    }

    fn conv2d(
        &mut self,
        x: &CpuTensor,
        w: &CpuTensor,
        b: Option<&CpuTensor>,
        stride: usize,
        padding: usize,
    ) -> Result<CpuTensor> {
        let (xs, ws) = (&x.shape, &w.shape);
        if xs.len() != 4 || ws.len() != 4 || xs[1] != ws[1] || ws[2] != ws[3] || stride == 0 {
            return shape_err(format!("conv2d: x {xs:?}, w {ws:?}, stride {stride}"));
        }
        let (n, cin, h, wd) = (xs[0], xs[1], xs[2], xs[3]);
        let (cout, k) = (ws[0], ws[2]);
        if h + 2 * padding < k || wd + 2 * padding < k {
            return shape_err(format!(
                "conv2d: kernel {k} larger than padded input {xs:?}"
            ));
        }
        let ho = (h + 2 * padding - k) / stride + 1;
        let wo = (wd + 2 * padding - k) / stride + 1;
        if let Some(b) = b
            && b.shape != [cout]
        {
            return shape_err(format!("conv2d: bias {:?}, expected [{cout}]", b.shape));
        }
        let kk = cin * k * k;
        let hw = ho * wo;
        let mut out = vec![0.0f32; n * cout * hw];
        let mut cols = vec![0.0f32; kk * hw];
        for bi in 0..n {
            let xin = &x.data[bi * cin * h * wd..(bi + 1) * cin * h * wd];
            // im2col
            for c in 0..cin {
                for ky in 0..k {
                    for kx in 0..k {
                        let row = (c * k + ky) * k + kx;
                        let dst = &mut cols[row * hw..(row + 1) * hw];
                        for oy in 0..ho {
                            let iy = (oy * stride + ky) as isize - padding as isize;
                            for ox in 0..wo {
                                let ix = (ox * stride + kx) as isize - padding as isize;
                                dst[oy * wo + ox] = if iy >= 0
                                    && (iy as usize) < h
                                    && ix >= 0
                                    && (ix as usize) < wd
                                {
                                    xin[(c * h + iy as usize) * wd + ix as usize]
                                } else {
                                    0.0
                                };
                            }
                        }
                    }
                }
            }
            let o = &mut out[bi * cout * hw..(bi + 1) * cout * hw];
            if let Some(b) = b {
                for co in 0..cout {
                    o[co * hw..(co + 1) * hw].fill(b.data[co]);
                }
            }
            gemm_acc(&w.data, &cols, o, cout, kk, hw);
        }
        CpuTensor::new(out, &[n, cout, ho, wo])
    }

    fn linear(&mut self, x: &CpuTensor, w: &CpuTensor, b: Option<&CpuTensor>) -> Result<CpuTensor> {
        let din = *x.shape.last().unwrap_or(&0);
        if w.shape.len() != 2 || w.shape[1] != din {
            return shape_err(format!("linear: x {:?}, w {:?}", x.shape, w.shape));
        }
        let dout = w.shape[0];
        if let Some(b) = b
            && b.shape != [dout]
        {
            return shape_err(format!("linear: bias {:?}, expected [{dout}]", b.shape));
        }
        let rows = x.numel() / din.max(1);
        let mut out = vec![0.0f32; rows * dout];
        for r in 0..rows {
            let xr = &x.data[r * din..(r + 1) * din];
            for o in 0..dout {
                let wr = &w.data[o * din..(o + 1) * din];
                let mut s = b.map_or(0.0, |b| b.data[o]);
                for (a, c) in xr.iter().zip(wr) {
                    s += a * c;
                }
                out[r * dout + o] = s;
            }
        }
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("non-empty") = dout;
        CpuTensor::new(out, &shape)
    }

    fn group_norm(
        &mut self,
        x: &CpuTensor,
        groups: usize,
        gamma: &CpuTensor,
        beta: &CpuTensor,
        eps: f32,
    ) -> Result<CpuTensor> {
        if x.shape.len() < 2 || groups == 0 || x.shape[1] % groups != 0 {
            return shape_err(format!("group_norm: x {:?}, groups {groups}", x.shape));
        }
        let (n, c) = (x.shape[0], x.shape[1]);
        if gamma.shape != [c] || beta.shape != [c] {
            return shape_err(format!(
                "group_norm: gamma {:?} beta {:?} for {c} channels",
                gamma.shape, beta.shape
            ));
        }
        let sp: usize = x.shape[2..].iter().product();
        let cg = c / groups;
        let mut out = vec![0.0f32; x.numel()];
        for bi in 0..n {
            for g in 0..groups {
                let start = (bi * c + g * cg) * sp;
                let seg = &x.data[start..start + cg * sp];
                let m = seg.len() as f64;
                let mean = seg.iter().map(|&v| v as f64).sum::<f64>() / m;
                let var = seg
                    .iter()
                    .map(|&v| (v as f64 - mean) * (v as f64 - mean))
                    .sum::<f64>()
                    / m;
                let inv = 1.0 / (var + eps as f64).sqrt();
                for ci in 0..cg {
                    let ch = g * cg + ci;
                    let (ga, be) = (gamma.data[ch] as f64, beta.data[ch] as f64);
                    for s in 0..sp {
                        let i = start + ci * sp + s;
                        out[i] = ((x.data[i] as f64 - mean) * inv * ga + be) as f32;
                    }
                }
            }
        }
        CpuTensor::new(out, &x.shape)
    }

    fn activation(&mut self, x: &CpuTensor, act: Activation) -> Result<CpuTensor> {
        Ok(CpuTensor {
            shape: x.shape.clone(),
            data: x.data.iter().map(|&v| act.apply(v)).collect(),
        })
    }

    fn matmul(&mut self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        if a.shape.len() != 3
            || b.shape.len() != 3
            || a.shape[0] != b.shape[0]
            || a.shape[2] != b.shape[1]
        {
            return shape_err(format!("matmul: {:?} × {:?}", a.shape, b.shape));
        }
        let (bs, m, k, n) = (a.shape[0], a.shape[1], a.shape[2], b.shape[2]);
        let mut out = vec![0.0f32; bs * m * n];
        for i in 0..bs {
            gemm_acc(
                &a.data[i * m * k..(i + 1) * m * k],
                &b.data[i * k * n..(i + 1) * k * n],
                &mut out[i * m * n..(i + 1) * m * n],
                m,
                k,
                n,
            );
        }
        CpuTensor::new(out, &[bs, m, n])
    }

    fn softmax_last(&mut self, x: &CpuTensor) -> Result<CpuTensor> {
        let d = *x.shape.last().unwrap_or(&0);
        if d == 0 {
            return shape_err(format!("softmax over an empty last dim {:?}", x.shape));
        }
        let mut out = x.data.clone();
        for row in out.chunks_mut(d) {
            let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let mut s = 0.0f32;
            for v in row.iter_mut() {
                *v = (*v - mx).exp();
                s += *v;
            }
            let inv = 1.0 / s;
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
        CpuTensor::new(out, &x.shape)
    }

    fn add(&mut self, x: &CpuTensor, y: &CpuTensor) -> Result<CpuTensor> {
        if x.shape != y.shape {
            return shape_err(format!("add: {:?} + {:?}", x.shape, y.shape));
        }
        Ok(CpuTensor {
            shape: x.shape.clone(),
            data: x.data.iter().zip(&y.data).map(|(a, b)| a + b).collect(),
        })
    }

    fn add_channel_vector(&mut self, x: &CpuTensor, v: &CpuTensor) -> Result<CpuTensor> {
        if x.shape.len() < 2 || v.shape != x.shape[..2] {
            return shape_err(format!("add_channel_vector: {:?} + {:?}", x.shape, v.shape));
        }
        let sp: usize = x.shape[2..].iter().product();
        let mut out = x.data.clone();
        for (i, chunk) in out.chunks_mut(sp).enumerate() {
            let a = v.data[i];
            for e in chunk {
                *e += a;
            }
        }
        CpuTensor::new(out, &x.shape)
    }

    fn concat_channels(&mut self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        if a.shape.len() < 2
            || a.shape.len() != b.shape.len()
            || a.shape[0] != b.shape[0]
            || a.shape[2..] != b.shape[2..]
        {
            return shape_err(format!("concat_channels: {:?} ++ {:?}", a.shape, b.shape));
        }
        let n = a.shape[0];
        let (sa, sb) = (a.numel() / n.max(1), b.numel() / n.max(1));
        let mut out = Vec::with_capacity(a.numel() + b.numel());
        for i in 0..n {
            out.extend_from_slice(&a.data[i * sa..(i + 1) * sa]);
            out.extend_from_slice(&b.data[i * sb..(i + 1) * sb]);
        }
        let mut shape = a.shape.clone();
        shape[1] += b.shape[1];
        CpuTensor::new(out, &shape)
    }

    fn upsample_nearest2x(&mut self, x: &CpuTensor) -> Result<CpuTensor> {
        if x.shape.len() != 4 {
            return shape_err(format!("upsample: {:?}", x.shape));
        }
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
        let mut out = vec![0.0f32; n * c * 4 * h * w];
        for p in 0..n * c {
            for y in 0..2 * h {
                for xx in 0..2 * w {
                    out[(p * 2 * h + y) * 2 * w + xx] = x.data[(p * h + y / 2) * w + xx / 2];
                }
            }
        }
        CpuTensor::new(out, &[n, c, 2 * h, 2 * w])
    }

    fn scale(&mut self, x: &CpuTensor, c: f32) -> Result<CpuTensor> {
        Ok(CpuTensor {
            shape: x.shape.clone(),
            data: x.data.iter().map(|v| v * c).collect(),
        })
    }

    fn lincomb(&mut self, a: f32, x: &CpuTensor, b: f32, y: &CpuTensor) -> Result<CpuTensor> {
        if x.shape != y.shape {
            return shape_err(format!("lincomb: {:?}, {:?}", x.shape, y.shape));
        }
        Ok(CpuTensor {
            shape: x.shape.clone(),
            data: x
                .data
                .iter()
                .zip(&y.data)
                .map(|(p, q)| a * p + b * q)
                .collect(),
        })
    }

    fn clamp(&mut self, x: &CpuTensor, lo: f32, hi: f32) -> Result<CpuTensor> {
        Ok(CpuTensor {
            shape: x.shape.clone(),
            data: x.data.iter().map(|v| v.clamp(lo, hi)).collect(),
        })
    }

    fn reshape(&mut self, x: &CpuTensor, shape: &[usize]) -> Result<CpuTensor> {
        CpuTensor::new(x.data.clone(), shape)
    }

    fn transpose(&mut self, x: &CpuTensor, d0: usize, d1: usize) -> Result<CpuTensor> {
        let r = x.shape.len();
        if d0 >= r || d1 >= r {
            return shape_err(format!("transpose({d0},{d1}) of {:?}", x.shape));
        }
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(d0, d1);
        Ok(permute(x, &perm))
    }

    fn narrow(&mut self, x: &CpuTensor, dim: usize, start: usize, len: usize) -> Result<CpuTensor> {
        if dim >= x.shape.len() || start + len > x.shape[dim] {
            return shape_err(format!("narrow(dim {dim}, {start}+{len}) of {:?}", x.shape));
        }
        let outer: usize = x.shape[..dim].iter().product();
        let inner: usize = x.shape[dim + 1..].iter().product();
        let d = x.shape[dim];
        let mut out = Vec::with_capacity(outer * len * inner);
        for o in 0..outer {
            let s = (o * d + start) * inner;
            out.extend_from_slice(&x.data[s..s + len * inner]);
        }
        let mut shape = x.shape.clone();
        shape[dim] = len;
        CpuTensor::new(out, &shape)
    }
}

/// General permutation of dimensions (output dim i = input dim `perm[i]`).
fn permute(x: &CpuTensor, perm: &[usize]) -> CpuTensor {
    let r = x.shape.len();
    let mut in_strides = vec![1usize; r];
    for i in (0..r.saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * x.shape[i + 1];
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let n = x.numel();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; r];
    for _ in 0..n {
        let off: usize = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.push(x.data[off]);
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < out_shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    CpuTensor {
        shape: out_shape,
        data: out,
    }
}
