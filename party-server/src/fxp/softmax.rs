//! Softmax over the rows of a matrix (attention weights).
//!
//! * Baseline (SPU's default): pairwise max tournament, `exp` by repeated
//!   squaring, and the division of every element by its broadcast row sum —
//!   one reciprocal per element.
//! * CipherDM (Algorithm 1, corrected): Chebyshev `exp` on `[-14, 0]`
//!   masked below, and ONE reciprocal per row, kept at extra fraction bits
//!   and multiplied into the numerators: one product per element.  The row maximum only has to
//!   be close (softmax is shift-invariant; the largest term stays ≈ 1), so
//!   its pairwise tournament and the exp mask compare coarsely: 6
//!   fractional bits on a 16-bit ring instead of 32 bits.

use super::Variant;
use super::exp::{self, ExpCoefficients};
use super::poly::Chebyshev;
use super::recip::{InversePower, Power};
use crate::mpc::arith::{self, AShare};
use crate::mpc::compare::CompareWidth;
use crate::mpc::max::max_rows;
use crate::mpc::{Ctx, Result};

/// Tunables of the softmax protocols.
#[derive(Debug, Clone)]
pub struct SoftmaxConfig {
    /// Comparison ring width: logit differences must satisfy
    /// `|x_i - x_j| < 2^(k-1-keep_frac)` (the baseline: `keep_frac = f`).
    pub k: u32,
    /// Fractional bits the CipherDM comparisons read (the rest are dropped).
    pub keep_frac: u32,
    /// Candidates per tournament group in the CipherDM max (2 when coarse).
    pub max_group: usize,
    /// Exponential series of the CipherDM variant.
    pub exp: ExpCoefficients,
    /// Degree of the per-row reciprocal series (relative error 3e-4 at 4).
    pub recip_degree: usize,
}

impl Default for SoftmaxConfig {
    fn default() -> Self {
        SoftmaxConfig {
            k: 16,
            keep_frac: 6,
            max_group: 2,
            exp: ExpCoefficients::Fitted(exp::DEFAULT_EXP_DEGREE),
            recip_degree: 4,
        }
    }
}

/// A softmax protocol prepared for rows of a given width.
#[derive(Debug, Clone)]
pub struct Softmax {
    variant: Variant,
    cfg: SoftmaxConfig,
    exp_series: Chebyshev,
    recip: InversePower,
}

impl Softmax {
    pub fn new(variant: Variant, cols: usize, cfg: SoftmaxConfig) -> Self {
        // Row sums lie in [1 - ε, cols]: the maximum contributes e^0.
        let hi_exp = (cols as f64).log2().ceil() as i32 + 1;
        let degree = match variant {
            Variant::Baseline => super::recip::RECIPROCAL_DEGREE,
            Variant::CipherDm => cfg.recip_degree,
        };
        Softmax {
            variant,
            exp_series: cfg.exp.series(),
            recip: InversePower::new(Power::Reciprocal, -1, hi_exp, degree),
            cfg,
        }
    }

    /// Softmax of each row of a `rows × cols` row-major matrix.
    pub fn eval(&self, ctx: &mut Ctx, x: &AShare, rows: usize, cols: usize) -> Result<AShare> {
        let f = ctx.frac_bits();
        let (group, width) = match self.variant {
            Variant::Baseline => (2, CompareWidth { drop: 0, k: 32 }),
            Variant::CipherDm => (
                self.cfg.max_group,
                CompareWidth::coarse(f, self.cfg.keep_frac, self.cfg.k),
            ),
        };
        let max = max_rows(ctx, x, rows, cols, width, group)?;
        let d = x.sub(&max.repeat_each(cols));
        match self.variant {
            Variant::Baseline => {
                let e = exp::exp_baseline(ctx, &d)?;
                let sums = e.sum_runs(cols).repeat_each(cols);
                let inv = self.recip.eval(ctx, &sums, None)?;
                arith::mul_fx(ctx, &e, &inv)
            }
            Variant::CipherDm => {
                let e = exp::exp_chebyshev(ctx, &d, &self.exp_series, width)?;
                // 1/sum per row, kept at the normaliser's extra fraction
                // bits (exact truncation: a row sum's product is large),
                // then one product per element.  The products of a row sum
                // to at most 1, so their probabilistic truncations fail
                // with probability at most 2^(f+d-64) per row in total.
                let nrm = self.recip.normalize(ctx, &e.sum_runs(cols), None)?;
                let g = self.recip.series(ctx, &nrm.t)?;
                let inv = arith::mul_trunc_exact(ctx, &g, &nrm.scaled, f)?;
                arith::mul_trunc(ctx, &e, &inv.repeat_each(cols), nrm.scaled_frac_bits)
            }
        }
    }
}

impl Softmax {
    /// Plaintext model of [`eval`](Self::eval) (same exponential, mask and
    /// reciprocal; the exact maximum, fixed-point rounding aside), for
    /// emulation.
    pub fn eval_plain(&self, x: &[f64], cols: usize) -> Vec<f64> {
        x.chunks(cols)
            .flat_map(|row| {
                let m = row.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = row
                    .iter()
                    .map(|v| {
                        let d = v - m;
                        match self.variant {
                            Variant::Baseline => exp::exp_baseline_plain(d),
                            Variant::CipherDm if d < self.exp_series.lo => 0.0,
                            Variant::CipherDm => self.exp_series.eval(d),
                        }
                    })
                    .collect();
                let inv = self.recip.eval_plain(e.iter().sum());
                e.into_iter().map(move |v| v * inv)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::arith::tests::{deal, dec, enc, fx, open};
    use crate::mpc::local;

    fn softmax_plain(row: &[f64]) -> Vec<f64> {
        let m = row.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    /// Rows of 196 logits with spread up to 14 (one row spreads 30, to
    /// exercise the mask); max abs error of the probabilities ≤ 1e-2.
    #[test]
    fn both_variants_match_softmax() {
        let (rows, cols) = (3, 196);
        let xs: Vec<f64> = (0..rows * cols)
            .map(|i| {
                let (r, c) = (i / cols, i % cols);
                let spread = [14.0, 4.0, 30.0][r];
                spread * (((c * 7919 + r * 31) % 197) as f64 / 196.0) - spread / 2.0
            })
            .collect();
        let sx = deal(&enc(&xs), 8);
        for variant in [Variant::Baseline, Variant::CipherDm] {
            let sm = Softmax::new(variant, cols, SoftmaxConfig::default());
            let out = local::run(fx(), Some(8), |ctx| {
                sm.eval(ctx, &sx[ctx.index()], rows, cols).unwrap()
            });
            let got = dec(&open(&out));
            for r in 0..rows {
                let want = softmax_plain(&xs[r * cols..(r + 1) * cols]);
                for c in 0..cols {
                    let err = (got[r * cols + c] - want[c]).abs();
                    assert!(
                        err < 1e-2,
                        "{variant:?} row {r} col {c}: {} vs {}",
                        got[r * cols + c],
                        want[c]
                    );
                }
            }
        }
    }
}
