//! 2-D convolution on shares: im2col (local re-indexing of both share
//! components) and one fixed-point matrix product, so a convolution costs
//! what its output costs: 2 rounds, three words per output element.

use super::arith::{self, AShare, MatShape};
use super::{Ctx, Result};

/// Public shape of a convolution over `N×C_in×H×W` with `C_out×C_in×k×k`
/// weights, symmetric zero padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dShape {
    pub batch: usize,
    pub c_in: usize,
    pub height: usize,
    pub width: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2dShape {
    pub fn out_hw(&self) -> (usize, usize) {
        let o = |d: usize| (d + 2 * self.padding - self.kernel) / self.stride + 1;
        (o(self.height), o(self.width))
    }

    pub fn out_len(&self) -> usize {
        let (ho, wo) = self.out_hw();
        self.batch * self.c_out * ho * wo
    }
}

/// Columns `[C_in·k·k, N·H_o·W_o]` of a plaintext-shaped vector (zeros in
/// the padding).
fn im2col(x: &[u64], s: &Conv2dShape) -> Vec<u64> {
    let (ho, wo) = s.out_hw();
    let cols = s.batch * ho * wo;
    let kk = s.kernel * s.kernel;
    let mut out = vec![0u64; s.c_in * kk * cols];
    for c in 0..s.c_in {
        for ky in 0..s.kernel {
            for kx in 0..s.kernel {
                let row = (c * kk + ky * s.kernel + kx) * cols;
                for b in 0..s.batch {
                    let plane = &x[(b * s.c_in + c) * s.height * s.width..][..s.height * s.width];
                    for oy in 0..ho {
                        let iy = (oy * s.stride + ky) as isize - s.padding as isize;
                        if iy < 0 || iy >= s.height as isize {
                            continue;
                        }
                        let dst = &mut out[row + (b * ho + oy) * wo..][..wo];
                        let src = &plane[iy as usize * s.width..][..s.width];
                        // Outputs whose tap ix = ox·stride + kx − padding is
                        // inside the row; the others stay zero (padding).
                        let first = s.padding.saturating_sub(kx).div_ceil(s.stride);
                        let end = (s.width + s.padding)
                            .saturating_sub(kx)
                            .div_ceil(s.stride)
                            .min(wo);
                        if first < end {
                            let ix0 = first * s.stride + kx - s.padding;
                            if s.stride == 1 {
                                dst[first..end].copy_from_slice(&src[ix0..ix0 + end - first]);
                            } else {
                                for (d, v) in dst[first..end]
                                    .iter_mut()
                                    .zip(src[ix0..].iter().step_by(s.stride))
                                {
                                    *d = *v;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// `[C_out, N·P]` → `[N, C_out, P]`.
fn to_batch_major(v: &[u64], c_out: usize, batch: usize, p: usize) -> Vec<u64> {
    let mut out = vec![0u64; v.len()];
    for c in 0..c_out {
        for b in 0..batch {
            out[(b * c_out + c) * p..][..p].copy_from_slice(&v[(c * batch + b) * p..][..p]);
        }
    }
    out
}

/// Fixed-point convolution with an optional bias `[C_out]`.  2 rounds.
pub fn conv2d_fx(
    ctx: &mut Ctx,
    x: &AShare,
    w: &AShare,
    bias: Option<&AShare>,
    s: Conv2dShape,
) -> Result<AShare> {
    assert_eq!(
        x.len(),
        s.batch * s.c_in * s.height * s.width,
        "input shape"
    );
    assert_eq!(
        w.len(),
        s.c_out * s.c_in * s.kernel * s.kernel,
        "weight shape"
    );
    let (ho, wo) = s.out_hw();
    let cols = AShare {
        a: im2col(&x.a, &s),
        b: im2col(&x.b, &s),
    };
    let shape = MatShape {
        m: s.c_out,
        k: s.c_in * s.kernel * s.kernel,
        n: s.batch * ho * wo,
        y_transposed: false,
    };
    let y = arith::matmul_fx(ctx, w, &cols, shape)?;
    let p = ho * wo;
    let mut y = AShare {
        a: to_batch_major(&y.a, s.c_out, s.batch, p),
        b: to_batch_major(&y.b, s.c_out, s.batch, p),
    };
    if let Some(b) = bias {
        assert_eq!(b.len(), s.c_out, "bias shape");
        let per_image = b.repeat_each(p);
        y = y.add(&AShare::concat(&vec![&per_image; s.batch]));
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::arith::tests::{deal, dec, enc, fx, open};
    use crate::mpc::local;

    fn conv_plain(x: &[f64], w: &[f64], b: &[f64], s: &Conv2dShape) -> Vec<f64> {
        let (ho, wo) = s.out_hw();
        let mut out = vec![0.0; s.out_len()];
        for n in 0..s.batch {
            for co in 0..s.c_out {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut acc = b[co];
                        for ci in 0..s.c_in {
                            for ky in 0..s.kernel {
                                for kx in 0..s.kernel {
                                    let iy = (oy * s.stride + ky) as isize - s.padding as isize;
                                    let ix = (ox * s.stride + kx) as isize - s.padding as isize;
                                    if iy < 0
                                        || ix < 0
                                        || iy >= s.height as isize
                                        || ix >= s.width as isize
                                    {
                                        continue;
                                    }
                                    acc += x[((n * s.c_in + ci) * s.height + iy as usize)
                                        * s.width
                                        + ix as usize]
                                        * w[((co * s.c_in + ci) * s.kernel + ky) * s.kernel + kx];
                                }
                            }
                        }
                        out[((n * s.c_out + co) * ho + oy) * wo + ox] = acc;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_direct_convolution_with_stride_and_padding() {
        for (stride, padding, kernel) in [(1, 1, 3), (2, 1, 3), (1, 0, 1), (2, 0, 3)] {
            let s = Conv2dShape {
                batch: 2,
                c_in: 3,
                height: 7,
                width: 6,
                c_out: 4,
                kernel,
                stride,
                padding,
            };
            let q = |v: Vec<f64>| dec(&enc(&v));
            let x = q((0..2 * 3 * 7 * 6)
                .map(|i| ((i * 37) % 23) as f64 / 7.0 - 1.5)
                .collect());
            let w = q((0..4 * 3 * kernel * kernel)
                .map(|i| ((i * 11) % 13) as f64 / 13.0 - 0.5)
                .collect());
            let b = q(vec![0.25, -0.5, 1.0, 0.0]);
            let (sx, sw, sb) = (deal(&enc(&x), 1), deal(&enc(&w), 2), deal(&enc(&b), 3));
            let out = local::run(fx(), Some(4), |ctx| {
                let i = ctx.index();
                conv2d_fx(ctx, &sx[i], &sw[i], Some(&sb[i]), s).unwrap()
            });
            let got = dec(&open(&out));
            let want = conv_plain(&x, &w, &b, &s);
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 2.0 / fx().scale(),
                    "stride {stride} pad {padding}: {g} vs {w}"
                );
            }
        }
    }
}
