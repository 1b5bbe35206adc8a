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
                        if s == 1 {
                            for (d, v) in dst[ix0..ix0 + sr.len()].iter_mut().zip(sr) {
                                *d += v;
                            }
                        } else {
                            for (j, v) in sr.iter().enumerate() {
                                dst[ix0 + j * s] += v;
                            }
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

// ---------------------------------------------------------------- attention

/// `e^x` for `x` in `[-87, 88]` (clamped there), written to vectorise —
/// libm's `expf` is one scalar call per element and dominated the softmax.
/// Cody–Waite reduction `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, then a
/// degree-6 Taylor series: relative error below 3e-7 (tested).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer
    const LN2_HI: f32 = 0.693_359_4; // exact in 9 bits, so n·LN2_HI is exact
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + SHIFT;
    let n = t - SHIFT;
    let ni = t.to_bits() as i32 - SHIFT.to_bits() as i32;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((ni + 127) << 23) as u32)
}

/// The attention core `softmax(q kᵀ) v` (`q`, `k`, `v`: `[B, L, d]`, `q`
/// already scaled), one batch item at a time: the item's `L × L` weights
/// live in a reused scratch buffer (L2-sized) and are never stored — the
/// backward pass recomputes them — which removes the largest tensors of a
/// training step, their copies and their gradient accumulation.
#[derive(Clone, Copy, Debug)]
pub struct Attention;

impl Attention {
    fn dims(dq: &[usize], dk: &[usize], dv: &[usize]) -> Result<(usize, usize, usize)> {
        if dq.len() != 3 || dq != dk || dq != dv {
            bail!("attention shapes {dq:?} {dk:?} {dv:?}")
        }
        Ok((dq[0], dq[1], dq[2]))
    }
}

/// `x` reduced by `f` over 8 independent lanes, so that the loop
/// vectorises instead of waiting on one accumulator.
fn fold_lanes(x: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            acc[l] = f(acc[l], c[l]);
        }
    }
    acc.iter().chain(rest).fold(init, |a, &b| f(a, b))
}

/// The weights `p = softmax(q kᵀ)` of one item (`q`, `k`: `[L, d]`) into
/// `p: [L, L]`.
fn attention_weights(q: &[f32], k: &[f32], l: usize, d: usize, p: &mut [f32]) {
    gemm_strided(l, d, l, (q, d, 1), (k, 1, d), p, 0.0);
    for row in p.chunks_mut(l) {
        let m = fold_lanes(row, f32::NEG_INFINITY, |a, b| if b > a { b } else { a });
        for v in row.iter_mut() {
            *v = exp_f32(*v - m);
        }
        let inv = 1.0 / fold_lanes(row, 0.0, |a, b| a + b);
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "fast-attention"
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
        let (q, k, v) = (
            contiguous(s1, l1)?,
            contiguous(s2, l2)?,
            contiguous(s3, l3)?,
        );
        let (_, l, d) = Self::dims(l1.dims(), l2.dims(), l3.dims())?;
        let ld = l * d;
        let mut out = vec![0f32; q.len()];
        out.par_chunks_mut(ld).enumerate().for_each_init(
            || vec![0f32; l * l],
            |p, (b, ob)| {
                let item = b * ld..(b + 1) * ld;
                attention_weights(&q[item.clone()], &k[item.clone()], l, d, p);
                gemm_strided(l, l, d, (p, l, 1), (&v[item], d, 1), ob, 0.0);
            },
        );
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (_, l, d) = Self::dims(q.dims(), k.dims(), v.dims())?;
        let (qv, kv, vv) = (vec_of(q)?, vec_of(k)?, vec_of(v)?);
        let (o, g) = (vec_of(res)?, vec_of(grad)?);
        let ld = l * d;
        let zeros = || vec![0f32; qv.len()];
        let (mut gq, mut gk, mut gv) = (zeros(), zeros(), zeros());
        gq.par_chunks_mut(ld)
            .zip(gk.par_chunks_mut(ld))
            .zip(gv.par_chunks_mut(ld))
            .enumerate()
            .for_each_init(
                || (vec![0f32; l * l], vec![0f32; l * l]),
                |(p, ds), (b, ((gqb, gkb), gvb))| {
                    let item = b * ld..(b + 1) * ld;
                    let (qb, kb, vb) = (&qv[item.clone()], &kv[item.clone()], &vv[item.clone()]);
                    let (ob, gb) = (&o[item.clone()], &g[item]);
                    attention_weights(qb, kb, l, d, p);
                    // dS = P ∘ (dP − rowsum(P ∘ dP)) with dP = dO vᵀ; the
                    // row sum equals dO·o.
                    gemm_strided(l, d, l, (gb, d, 1), (vb, 1, d), ds, 0.0);
                    for i in 0..l {
                        let di = dot(&gb[i * d..(i + 1) * d], &ob[i * d..(i + 1) * d]);
                        let rows = i * l..(i + 1) * l;
                        for (s, &pj) in ds[rows.clone()].iter_mut().zip(&p[rows]) {
                            *s = pj * (*s - di);
                        }
                    }
                    gemm_strided(l, l, d, (ds, l, 1), (kb, d, 1), gqb, 0.0);
                    gemm_strided(l, l, d, (ds, 1, l), (qb, d, 1), gkb, 0.0);
                    gemm_strided(l, l, d, (p, 1, l), (gb, d, 1), gvb, 0.0);
                },
            );
        let (dims, dev) = (q.dims(), q.device());
        Ok((
            Some(Tensor::from_vec(gq, dims, dev)?),
            Some(Tensor::from_vec(gk, dims, dev)?),
            Some(Tensor::from_vec(gv, dims, dev)?),
        ))
    }
}

// ---------------------------------------------------------------- activation

/// Element-wise activation with its exact derivative.
#[derive(Clone, Copy, Debug)]
pub struct Act(pub Activation);

/// The activation and its derivative at `x`, from one [`exp_f32`] so that
/// the loops vectorise (libm's `exp`, `ln_1p` and `tanh` are scalar calls
/// and made Mish training 2.5× slower than ReLU).  Mish's
/// `tanh(softplus(x))` is `n / (n + 2)` with `n = eˣ(eˣ + 2)`; above
/// `x = 20` it is 1 in f32.
#[inline(always)]
fn act_value_grad(a: Activation, x: f32) -> (f32, f32) {
    match a {
        Activation::Relu => {
            if x > 0.0 {
                (x, 1.0)
            } else {
                (0.0, 0.0)
            }
        }
        Activation::Silu => {
            let s = 1.0 / (1.0 + exp_f32(-x));
            (x * s, s * (1.0 + x * (1.0 - s)))
        }
        Activation::Mish => {
            let u = exp_f32(x.min(20.0));
            let n = u * (u + 2.0);
            let t = n / (n + 2.0);
            let s = u / (1.0 + u);
            (x * t, t + x * (1.0 - t * t) * s)
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
        let out: Vec<f32> = x.iter().map(|&v| act_value_grad(a, v).0).collect();
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let xv = vec_of(x)?;
        let mut g = vec_of(grad)?;
        let a = self.0;
        for (gv, &xv) in g.iter_mut().zip(&xv) {
            *gv *= act_value_grad(a, xv).1;
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn exp_f32_has_relative_error_below_3e_7() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * i as f64 / 200_000.0;
            let got = exp_f32(x as f32) as f64;
            let want = (x as f32 as f64).exp();
            worst = worst.max((got / want - 1.0).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
    }

    #[test]
    fn activations_and_derivatives_match_f64() {
        let f64_act = |a: Activation, x: f64| match a {
            Activation::Relu => x.max(0.0),
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::Mish => x * (x.max(0.0) + (-x.abs()).exp().ln_1p()).tanh(),
        };
        for a in [Activation::Relu, Activation::Silu, Activation::Mish] {
            for i in 0..=60_000 {
                let x = (-30.0 + i as f64 / 1000.0) as f32;
                let (v, g) = act_value_grad(a, x);
                let x = x as f64;
                let want = f64_act(a, x);
                let h = 1e-6;
                let want_g = (f64_act(a, x + h) - f64_act(a, x - h)) / (2.0 * h);
                assert!(
                    (v as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{a:?}({x}) = {v}, want {want}"
                );
                // ReLU's kink: the difference quotient straddles it at 0.
                if !(a == Activation::Relu && x == 0.0) {
                    assert!(
                        (g as f64 - want_g).abs() <= 1e-5,
                        "{a:?}'({x}) = {g}, want {want_g}"
                    );
                }
            }
        }
    }

    /// The fused op against candle's composed matmul/softmax/matmul, values
    /// and all three gradients, on a row length that is not a multiple of 8.
    #[test]
    fn attention_matches_composed_ops() {
        let (b, l, d) = (3, 37, 5);
        let mut rng = party_server::model::SplitMix64(11);
        let mut var = |scale: f32| {
            let v: Vec<f32> = (0..b * l * d)
                .map(|_| scale * (rng.uniform() as f32 - 0.5))
                .collect();
            Var::from_vec(v, (b, l, d), &Device::Cpu).unwrap()
        };
        let (q, k, v) = (var(6.0), var(6.0), var(2.0));
        let w = Tensor::from_vec(
            (0..b * l * d)
                .map(|i| ((i * 7) % 11) as f32 - 5.0)
                .collect::<Vec<f32>>(),
            (b, l, d),
            &Device::Cpu,
        )
        .unwrap();
        let run = |fused: bool| {
            let o = if fused {
                q.apply_op3(&k, &v, Attention).unwrap()
            } else {
                let s = q.matmul(&k.t().unwrap()).unwrap();
                candle_nn::ops::softmax(&s, candle_core::D::Minus1)
                    .unwrap()
                    .matmul(&v)
                    .unwrap()
            };
            let g = (&o * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let mut out = vec![vec_of(&o).unwrap()];
            for x in [&q, &k, &v] {
                out.push(vec_of(g.get(x.as_tensor()).unwrap()).unwrap());
            }
            out
        };
        let (fused, composed) = (run(true), run(false));
        for (name, (a, c)) in ["out", "dq", "dk", "dv"]
            .iter()
            .zip(fused.iter().zip(&composed))
        {
            let scale = c.iter().map(|v| v.abs()).fold(0f32, f32::max);
            let diff = a
                .iter()
                .zip(c)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(
                diff <= 1e-5 * scale.max(1.0),
                "{name}: max diff {diff} (scale {scale})"
            );
        }
    }
}
