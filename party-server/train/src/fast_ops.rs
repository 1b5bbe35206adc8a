#![allow(clippy::needless_range_loop)] // index-heavy kernels read clearer with explicit indices
//! Fused CPU kernels with hand-written backward passes, used by the candle
//! back end for training speed on a small CPU: candle's generic conv2d
//! backward (conv-transpose + a conv with a batch-sized kernel) and its
//! composed softmax / SiLU / Mish allocate and traverse large tensors many
//! times. These ops compute the same functions (tests compare them with the
//! f32 reference back end) in one pass each, forward and backward.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail,
};
use party_server::model::Activation;
use party_server::model::cpu::gemm_strided;
use rayon::prelude::*;

fn contiguous<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("fast ops support f32 only")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("fast ops need contiguous input"),
    }
}

fn vec_of(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

// ---------------------------------------------------------------- conv2d

/// Square-kernel 2-D convolution without bias (`x: [N,Cin,H,W]`, `w: [Cout,Cin,k,k]`).
#[derive(Clone, Copy, Debug)]
pub struct Conv2d {
    /// Stride.
    pub stride: usize,
    /// Zero padding.
    pub padding: usize,
}

struct Geo {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    k: usize,
    ho: usize,
    wo: usize,
    s: usize,
    p: usize,
}

impl Geo {
    fn new(op: &Conv2d, xd: &[usize], wd: &[usize]) -> Result<Geo> {
        if xd.len() != 4 || wd.len() != 4 || xd[1] != wd[1] || wd[2] != wd[3] {
            bail!("conv2d shapes {xd:?} {wd:?}")
        }
        let (k, s, p) = (wd[2], op.stride, op.padding);
        Ok(Geo {
            n: xd[0],
            cin: xd[1],
            h: xd[2],
            w: xd[3],
            cout: wd[0],
            k,
            ho: (xd[2] + 2 * p - k) / s + 1,
            wo: (xd[3] + 2 * p - k) / s + 1,
            s,
            p,
        })
    }
    fn kk(&self) -> usize {
        self.cin * self.k * self.k
    }
    fn hw(&self) -> usize {
        self.ho * self.wo
    }
    /// Output columns `ox` whose input column `ox·s + kx − p` is inside the
    /// image: the branch-free middle of every im2col row.
    fn valid_cols(&self, kx: usize) -> std::ops::Range<usize> {
        let lo = self.p.saturating_sub(kx).div_ceil(self.s);
        let hi = (self.w + self.p).saturating_sub(kx).div_ceil(self.s);
        lo.min(self.wo)..hi.min(self.wo).max(lo.min(self.wo))
    }
    /// im2col of one image into `cols [K, HoWo]`.
    fn im2col(&self, x: &[f32], cols: &mut [f32]) {
        let (k, hw, s) = (self.k, self.hw(), self.s);
        for c in 0..self.cin {
            for ky in 0..k {
                for kx in 0..k {
                    let row = (c * k + ky) * k + kx;
                    let dst = &mut cols[row * hw..(row + 1) * hw];
                    let r = self.valid_cols(kx);
                    for oy in 0..self.ho {
                        let iy = (oy * s + ky) as isize - self.p as isize;
                        let d = &mut dst[oy * self.wo..(oy + 1) * self.wo];
                        if iy < 0 || iy as usize >= self.h || r.is_empty() {
                            d.fill(0.0);
                            continue;
                        }
                        let src = &x[(c * self.h + iy as usize) * self.w..][..self.w];
                        d[..r.start].fill(0.0);
                        d[r.end..].fill(0.0);
                        let ix0 = r.start * s + kx - self.p;
                        if s == 1 {
                            d[r.clone()].copy_from_slice(&src[ix0..ix0 + r.len()]);
                        } else {
                            for (j, dv) in d[r.clone()].iter_mut().enumerate() {
                                *dv = src[ix0 + j * s];
                            }
                        }
                    }
                }
            }
        }
    }
    /// Scatter-add of `cols [K, HoWo]` back into one image's gradient.
    fn col2im(&self, cols: &[f32], gx: &mut [f32]) {
        let (k, hw, s) = (self.k, self.hw(), self.s);
        for c in 0..self.cin {
            for ky in 0..k {
                for kx in 0..k {
                    let row = (c * k + ky) * k + kx;
                    let src = &cols[row * hw..(row + 1) * hw];
                    let r = self.valid_cols(kx);
                    if r.is_empty() {
                        continue;
                    }
                    let ix0 = r.start * s + kx - self.p;
                    for oy in 0..self.ho {
                        let iy = (oy * s + ky) as isize - self.p as isize;
                        if iy < 0 || iy as usize >= self.h {
                            continue;
                        }
                        let dst = &mut gx[(c * self.h + iy as usize) * self.w..][..self.w];
                        let sr = &src[oy * self.wo + r.start..oy * self.wo + r.end];
                        for (j, v) in sr.iter().enumerate() {
                            dst[ix0 + j * s] += v;
                        }
                    }
                }
            }
        }
    }
}

/// Dot product with 8 independent accumulators (vectorises).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

fn conv_fwd(g: &Geo, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let (kk, hw) = (g.kk(), g.hw());
    let img = g.cin * g.h * g.w;
    let mut out = vec![0f32; g.n * g.cout * hw];
    out.par_chunks_mut(g.cout * hw).enumerate().for_each_init(
        || vec![0f32; kk * hw],
        |cols, (i, o)| {
            g.im2col(&x[i * img..(i + 1) * img], cols);
            for (co, bv) in b.iter().enumerate() {
                o[co * hw..(co + 1) * hw].fill(*bv);
            }
            gemm_strided(g.cout, kk, hw, (w, kk, 1), (cols, hw, 1), o, 1.0);
        },
    );
    out
}

impl CustomOp3 for Conv2d {
    fn name(&self) -> &'static str {
        "fast-conv2d"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geo::new(self, l1.dims(), l2.dims())?;
        let b = contiguous(s3, l3)?;
        if b.len() != g.cout {
            bail!(
                "conv2d bias has {} entries for {} channels",
                b.len(),
                g.cout
            )
        }
        let out = conv_fwd(&g, contiguous(s1, l1)?, contiguous(s2, l2)?, b);
        Ok((
            CpuStorage::F32(out),
            Shape::from_dims(&[g.n, g.cout, g.ho, g.wo]),
        ))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = Geo::new(self, x.dims(), w.dims())?;
        let (xv, wv, gv) = (vec_of(x)?, vec_of(w)?, vec_of(grad)?);
        let (kk, hw) = (g.kk(), g.hw());
        let img = g.cin * g.h * g.w;
        let mut gx = vec![0f32; g.n * img];
        let gw = gx
            .par_chunks_mut(img)
            .enumerate()
            .fold(
                || {
                    (
                        vec![0f32; g.cout * kk],
                        vec![0f32; kk * hw],
                        vec![0f32; kk * hw],
                    )
                },
                |(mut gw, mut cols, mut gcols), (i, gxi)| {
                    let gy = &gv[i * g.cout * hw..(i + 1) * g.cout * hw];
                    g.im2col(&xv[i * img..(i + 1) * img], &mut cols);
                    // gW[co, r] += Σ_p gy[co, p] · cols[r, p]  (gy · colsᵀ)
                    gemm_strided(g.cout, hw, kk, (gy, hw, 1), (&cols, 1, hw), &mut gw, 1.0);
                    // gcols = Wᵀ · gy, then col2im.
                    gemm_strided(kk, g.cout, hw, (&wv, 1, kk), (gy, hw, 1), &mut gcols, 0.0);
                    g.col2im(&gcols, gxi);
                    (gw, cols, gcols)
                },
            )
            .map(|(gw, _, _)| gw)
            .reduce(
                || vec![0f32; g.cout * kk],
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(b) {
                        *x += y;
                    }
                    a
                },
            );
        let mut gb = vec![0f32; g.cout];
        for i in 0..g.n {
            for (co, gbv) in gb.iter_mut().enumerate() {
                let o = (i * g.cout + co) * hw;
                *gbv += gv[o..o + hw].iter().sum::<f32>();
            }
        }
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(gx, x.dims(), dev)?),
            Some(Tensor::from_vec(gw, w.dims(), dev)?),
            Some(Tensor::from_vec(gb, b.dims(), dev)?),
        ))
    }
}

// ---------------------------------------------------------------- softmax

/// Softmax over the last dimension.
#[derive(Clone, Copy, Debug)]
pub struct SoftmaxLast;

impl CustomOp1 for SoftmaxLast {
    fn name(&self) -> &'static str {
        "fast-softmax-last"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l)?;
        let d = *l.dims().last().unwrap_or(&1);
        let mut out = x.to_vec();
        out.par_chunks_mut(d).for_each(|row| {
            let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for v in row.iter_mut() {
                *v = (*v - mx).exp();
                sum += *v;
            }
            let inv = 1.0 / sum;
            for v in row.iter_mut() {
                *v *= inv;
            }
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let d = *res.dims().last().unwrap_or(&1);
        let y = vec_of(res)?;
        let mut g = vec_of(grad)?;
        g.par_chunks_mut(d)
            .zip(y.par_chunks(d))
            .for_each(|(gr, yr)| {
                let d = dot(gr, yr);
                for (gv, yv) in gr.iter_mut().zip(yr) {
                    *gv = yv * (*gv - d);
                }
            });
        Ok(Some(Tensor::from_vec(g, res.dims(), res.device())?))
    }
}

// ---------------------------------------------------------------- activation

/// Element-wise activation with its exact derivative.
#[derive(Clone, Copy, Debug)]
pub struct Act(pub Activation);

fn act_grad(a: Activation, x: f32) -> f32 {
    match a {
        Activation::Relu => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::Silu => {
            let s = 1.0 / (1.0 + (-x).exp());
            s * (1.0 + x * (1.0 - s))
        }
        Activation::Mish => {
            let sp = x.max(0.0) + (-x.abs()).exp().ln_1p();
            let t = sp.tanh();
            let s = 1.0 / (1.0 + (-x).exp());
            t + x * (1.0 - t * t) * s
        }
    }
}

impl CustomOp1 for Act {
    fn name(&self) -> &'static str {
        "fast-activation"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l)?;
        let a = self.0;
        let out: Vec<f32> = x.iter().map(|&v| a.apply(v)).collect();
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let xv = vec_of(x)?;
        let mut g = vec_of(grad)?;
        let a = self.0;
        for (gv, &xv) in g.iter_mut().zip(&xv) {
            *gv *= act_grad(a, xv);
        }
        Ok(Some(Tensor::from_vec(g, x.dims(), x.device())?))
    }
}

// ---------------------------------------------------------------- group norm

/// GroupNorm with affine (`x: [N, C, ...]`, `gamma`, `beta`: `[C]`).
#[derive(Clone, Copy, Debug)]
pub struct GroupNorm {
    /// Groups.
    pub groups: usize,
    /// ε.
    pub eps: f32,
}

impl GroupNorm {
    /// Per (n, group): mean and 1/σ.
    fn stats(&self, x: &[f32], n: usize, c: usize, sp: usize) -> Vec<(f32, f32)> {
        let cg = c / self.groups;
        (0..n * self.groups)
            .map(|ng| {
                let seg = &x[ng * cg * sp..(ng + 1) * cg * sp];
                let m = seg.len() as f64;
                let mean = seg.iter().map(|&v| v as f64).sum::<f64>() / m;
                let var = seg.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / m;
                (mean as f32, (1.0 / (var + self.eps as f64).sqrt()) as f32)
            })
            .collect()
    }
}

impl CustomOp3 for GroupNorm {
    fn name(&self) -> &'static str {
        "fast-group-norm"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(s1, l1)?;
        let (ga, be) = (contiguous(s2, l2)?, contiguous(s3, l3)?);
        let d = l1.dims();
        let (n, c) = (d[0], d[1]);
        if c % self.groups != 0 || ga.len() != c || be.len() != c {
            bail!("group norm shapes {d:?}, groups {}", self.groups)
        }
        let sp = x.len() / (n * c);
        let cg = c / self.groups;
        let st = self.stats(x, n, c, sp);
        let mut out = vec![0f32; x.len()];
        for i in 0..n {
            for ch in 0..c {
                let (mean, inv) = st[i * self.groups + ch / cg];
                let o = (i * c + ch) * sp;
                for k in o..o + sp {
                    out[k] = (x[k] - mean) * inv * ga[ch] + be[ch];
                }
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let xv = vec_of(x)?;
        let ga = vec_of(gamma)?;
        let g = vec_of(grad)?;
        let d = x.dims();
        let (n, c) = (d[0], d[1]);
        let sp = xv.len() / (n * c);
        let cg = c / self.groups;
        let st = self.stats(&xv, n, c, sp);
        let mut gx = vec![0f32; xv.len()];
        let mut gg = vec![0f32; c];
        let mut gb = vec![0f32; c];
        for i in 0..n {
            for grp in 0..self.groups {
                let (mean, inv) = st[i * self.groups + grp];
                let (mut s1, mut s2) = (0f64, 0f64);
                for ch in grp * cg..(grp + 1) * cg {
                    let o = (i * c + ch) * sp;
                    for k in o..o + sp {
                        let xh = (xv[k] - mean) * inv;
                        gg[ch] += g[k] * xh;
                        gb[ch] += g[k];
                        let gxh = (g[k] * ga[ch]) as f64;
                        s1 += gxh;
                        s2 += gxh * xh as f64;
                    }
                }
                let m = (cg * sp) as f64;
                let (m1, m2) = ((s1 / m) as f32, (s2 / m) as f32);
                for ch in grp * cg..(grp + 1) * cg {
                    let o = (i * c + ch) * sp;
                    for k in o..o + sp {
                        let xh = (xv[k] - mean) * inv;
                        gx[k] = inv * (g[k] * ga[ch] - m1 - xh * m2);
                    }
                }
            }
        }
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(gx, d, dev)?),
            Some(Tensor::from_vec(gg, gamma.dims(), dev)?),
            Some(Tensor::from_vec(gb, beta.dims(), dev)?),
        ))
    }
}

// ---------------------------------------------------------------- channel vector add

/// `x: [N, C, ...] + v: [N, C]` broadcast over the trailing dimensions.
#[derive(Clone, Copy, Debug)]
pub struct AddChannelVector;

impl CustomOp2 for AddChannelVector {
    fn name(&self) -> &'static str {
        "fast-add-channel-vector"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(s1, l1)?;
        let v = contiguous(s2, l2)?;
        let d = l1.dims();
        if d.len() < 2 || l2.dims() != &d[..2] {
            bail!("add_channel_vector {d:?} + {:?}", l2.dims())
        }
        let sp = x.len() / v.len().max(1);
        let mut out = x.to_vec();
        for (i, chunk) in out.chunks_mut(sp).enumerate() {
            for e in chunk {
                *e += v[i];
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = vec_of(grad)?;
        let sp = g.len() / v.elem_count().max(1);
        let gv: Vec<f32> = g.chunks(sp).map(|c| c.iter().sum()).collect();
        Ok((
            Some(grad.clone()),
            Some(Tensor::from_vec(gv, v.dims(), x.device())?),
        ))
    }
}
