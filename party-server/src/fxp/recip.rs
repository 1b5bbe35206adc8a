//! `x^-1` and `x^-1/2` for positive shared `x` with a public range
//! `[2^lo_exp, 2^hi_exp)`.
//!
//! Normalisation instead of long Newton chains: one batched comparison
//! against the public thresholds `2^j` gives the bits `[x ≥ 2^j]`; their
//! arithmetic forms make `2^-E` (with `2^(E-1) ≤ x < 2^E`, `E` even for the
//! square root) a local linear combination, so `c = x·2^-E` lies in
//! `[1/2, 1)` (`[1/4, 1)`), where a short Chebyshev series of `c^-p` is
//! accurate; the result is `c^-p · 2^(-pE)`.  The Chebyshev mapping is folded
//! into the normalising constants, and an optional factor (GroupNorm's `γ`)
//! is multiplied into `2^(-pE)` in the same round.
//! The products with normalising constants that carry extra fraction bits
//! truncate exactly (3 more rounds each).  Rounds:
//! `msb + 2 (B2A) + 2 + 2⌈log2 d⌉ + 1 + 2`, plus those.

use super::poly::{self, Chebyshev};
use crate::mpc::arith::{self, AShare};
use crate::mpc::compare;
use crate::mpc::{Ctx, Result};

/// Which inverse power.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    /// `1/x`.
    Reciprocal,
    /// `1/sqrt(x)`.
    InverseSqrt,
}

/// A normalised inverse power over a public range of `x`.
#[derive(Debug, Clone)]
pub struct InversePower {
    power: Power,
    lo_exp: i32,
    hi_exp: i32,
    series: Chebyshev,
    /// Public factor multiplied into the result.
    out_factor: f64,
}

/// An input normalised for the series, see [`InversePower::normalize`].
pub struct Normalized {
    /// `c` mapped to `[-1, 1]`.
    pub t: AShare,
    /// `2^(-pE)` (times `y` when given), one entry per `y` entry.
    pub scaled: AShare,
    /// Fraction bits of `scaled`.
    pub scaled_frac_bits: u32,
    /// Entries of `scaled` per input.
    pub per: usize,
}

/// Significant bits wanted in the smallest normalising constant.
const CONSTANT_BITS: i32 = 14;
/// Cap on the extra fraction bits of the normalising constants (the
/// products that use them truncate exactly, see
/// [`arith::reshare_trunc_exact`], so extra bits cost no failure rate).
const MAX_EXTRA_BITS: i32 = 10;

/// Default series degrees: relative error 1.5e-6 (1/c on [1/2, 1], degree 7)
/// and 2.6e-5 (c^-1/2 on [1/4, 1], degree 8), both three product levels.
pub const RECIPROCAL_DEGREE: usize = 7;
pub const INVERSE_SQRT_DEGREE: usize = 8;

impl InversePower {
    /// For `x` in `[2^lo_exp, 2^hi_exp)`; smaller inputs are treated as
    /// `2^lo_exp`-scaled (their result saturates the series domain).
    pub fn new(power: Power, lo_exp: i32, hi_exp: i32, degree: usize) -> Self {
        assert!(lo_exp < hi_exp, "empty range");
        let series = match power {
            Power::Reciprocal => Chebyshev::fit(|c| 1.0 / c, 0.5, 1.0, degree),
            Power::InverseSqrt => Chebyshev::fit(|c| 1.0 / c.sqrt(), 0.25, 1.0, degree),
        };
        InversePower {
            power,
            lo_exp,
            hi_exp,
            series,
            out_factor: 1.0,
        }
    }

    /// Multiplies the result by the public `factor` (free: it is folded
    /// into the normalising constants).
    pub fn with_factor(mut self, factor: f64) -> Self {
        self.out_factor = factor;
        self
    }

    /// Extra fraction bits for a normalising constant whose smallest value
    /// (at the top of the range) is `smallest`, so it keeps
    /// [`CONSTANT_BITS`].  Each constant gets only what it needs: extra bits
    /// raise the truncation failure rate of the product that uses them.
    fn extra_bits(smallest: f64, frac_bits: u32) -> u32 {
        let have = smallest.log2().floor() as i32 + frac_bits as i32;
        (CONSTANT_BITS - have).clamp(0, MAX_EXTRA_BITS) as u32
    }

    pub fn reciprocal(lo_exp: i32, hi_exp: i32) -> Self {
        Self::new(Power::Reciprocal, lo_exp, hi_exp, RECIPROCAL_DEGREE)
    }

    pub fn inverse_sqrt(lo_exp: i32, hi_exp: i32) -> Self {
        Self::new(Power::InverseSqrt, lo_exp, hi_exp, INVERSE_SQRT_DEGREE)
    }

    /// `E` for `2^e ≤ x < 2^(e+1)`.
    fn norm_exp(&self, e: i32) -> i32 {
        match self.power {
            Power::Reciprocal => e + 1,
            Power::InverseSqrt => (e + 1) + (e + 1).rem_euclid(2),
        }
    }

    fn out_scale(&self, e: i32) -> f64 {
        let big_e = self.norm_exp(e) as f64;
        self.out_factor
            * match self.power {
                Power::Reciprocal => (-big_e).exp2(),
                Power::InverseSqrt => (-big_e / 2.0).exp2(),
            }
    }

    /// Comparison ring width needed for `x < 2^hi_exp` at `f` fraction bits.
    pub fn ring_bits(&self, frac_bits: u32) -> u32 {
        (self.hi_exp + frac_bits as i32 + 2).clamp(2, 64) as u32
    }

    /// Plaintext model of the protocol (same normalisation and series).
    pub fn eval_plain(&self, x: f64) -> f64 {
        let e = x
            .log2()
            .floor()
            .clamp(self.lo_exp as f64, (self.hi_exp - 1) as f64) as i32;
        let c = x * (-self.norm_exp(e) as f64).exp2();
        self.series.eval(c) * self.out_scale(e)
    }

    /// `x^-p`; with `times = Some((y, per))`, instead `y_j · x_(j/per)^-p`
    /// (each `x` scales `per` consecutive entries of `y`: GroupNorm's `γ`),
    /// at no extra round.
    pub fn eval(
        &self,
        ctx: &mut Ctx,
        x: &AShare,
        times: Option<(&AShare, usize)>,
    ) -> Result<AShare> {
        let nrm = self.normalize(ctx, x, times)?;
        let g = self.series(ctx, &nrm.t)?;
        scale_product(
            ctx,
            &g.repeat_each(nrm.per),
            &nrm.scaled,
            nrm.scaled_frac_bits,
        )
    }

    /// `c^-p` from the mapped normalised input: the Chebyshev series.
    pub fn series(&self, ctx: &mut Ctx, t: &AShare) -> Result<AShare> {
        poly::eval_mapped(ctx, t, &self.series.coeffs)
    }

    /// The first half of [`eval`](Self::eval): comparisons, the mapped
    /// normalised input, and the output scale (times `y`).  The result is
    /// `series(t)` (repeated `per` times) times `scaled`; callers may
    /// multiply more into `scaled` while the series runs.
    pub fn normalize(
        &self,
        ctx: &mut Ctx,
        x: &AShare,
        times: Option<(&AShare, usize)>,
    ) -> Result<Normalized> {
        let fx = ctx.fx();
        let n = x.len();
        // Bits [x ≥ 2^j] for j = lo+1 .. hi-1, all in one comparison call.
        let thresholds: Vec<i32> = (self.lo_exp + 1..self.hi_exp).collect();
        let shifted: Vec<AShare> = thresholds
            .iter()
            .map(|&j| {
                let t = fx.encode((j as f64).exp2()).expect("threshold in range");
                x.add_public_scalar(ctx, t.wrapping_neg())
            })
            .collect();
        let k = self.ring_bits(fx.frac_bits());
        let ge =
            compare::msb(ctx, &AShare::concat(&shifted.iter().collect::<Vec<_>>()), k)?.not(ctx);
        let ge = compare::b2a_bit(ctx, &ge, n * thresholds.len())?;
        let ge = ge.split(&vec![n; thresholds.len()]);

        // Step functions of e as linear combinations of the bits:
        // v(e) = v(lo) + Σ_j [x ≥ 2^j] (v(j) - v(j-1)).
        let (map_scale, map_offset) = self.series.map();
        let f = fx.frac_bits();
        let top = self.hi_exp - 1;
        let d_t = f + Self::extra_bits(map_scale * (-self.norm_exp(top) as f64).exp2(), f);
        let d_out = f + Self::extra_bits(self.out_scale(top), f);
        let step = |ctx: &Ctx, bits: u32, v: &dyn Fn(i32) -> f64| -> AShare {
            let wide = shared::FixedPoint::new(bits).expect("extra bits within range");
            let base = wide.encode(v(self.lo_exp)).expect("scale in range");
            let mut acc = AShare::from_public(ctx, &vec![base; n]);
            for (b, &j) in ge.iter().zip(&thresholds) {
                let d = wide.encode(v(j) - v(j - 1)).expect("scale in range");
                acc = acc.add(&b.mul_public_scalar(d));
            }
            acc
        };
        let to_t = step(ctx, d_t, &|e| map_scale * (-self.norm_exp(e) as f64).exp2());
        let out = step(ctx, d_out, &|e| self.out_scale(e));

        // t = x·(scale·2^-E) + offset, and y·2^(-pE), side by side.
        let (t, out, per) = match times {
            Some((y, per)) => {
                assert_eq!(y.len(), n * per, "y must have `per` entries per x");
                let (t, yo) = ctx.join(
                    |c| scale_product(c, x, &to_t, d_t),
                    |c| scale_product(c, &out.repeat_each(per), y, d_out),
                )?;
                (t, yo, per)
            }
            None => (scale_product(ctx, x, &to_t, d_t)?, out, 1),
        };
        Ok(Normalized {
            t: t.add_public_scalar(ctx, fx.encode(map_offset).expect("offset")),
            scaled: out,
            // `out` still has its extra bits when no `y` absorbed them.
            scaled_frac_bits: if times.is_some() { f } else { d_out },
            per,
        })
    }
}

/// A product with a normalising constant of `d` fraction bits, truncated by
/// `d`.  With extra bits (`d > f`) the untruncated value nears `2^(2f+extra)`,
/// too likely to wrap for a probabilistic truncation, so it truncates
/// exactly (3 more rounds).
fn scale_product(ctx: &mut Ctx, x: &AShare, c: &AShare, d: u32) -> Result<AShare> {
    if d > ctx.frac_bits() {
        arith::mul_trunc_exact(ctx, x, c, d)
    } else {
        arith::mul_trunc(ctx, x, c, d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::arith::tests::{deal, dec, enc, fx, open};
    use crate::mpc::local;

    #[test]
    fn plaintext_model_is_accurate_over_the_range() {
        let r = InversePower::reciprocal(0, 8);
        let s = InversePower::inverse_sqrt(-6, 10);
        for i in 0..2000 {
            let x = 1.0 + 254.0 * i as f64 / 1999.0;
            assert!((r.eval_plain(x) * x - 1.0).abs() < 2e-6, "x={x}");
            let y = 0.02 + 1000.0 * i as f64 / 1999.0;
            assert!((s.eval_plain(y) * y.sqrt() - 1.0).abs() < 3e-5, "y={y}");
        }
    }

    #[test]
    fn secure_reciprocal_and_rsqrt_match() {
        let xs: Vec<f64> = (0..100).map(|i| 1.0 + 2.5 * i as f64).collect();
        let gs: Vec<f64> = (0..100).map(|i| 0.5 + 0.01 * i as f64).collect();
        let (sx, sg) = (deal(&enc(&xs), 4), deal(&enc(&gs), 5));
        let r = InversePower::reciprocal(0, 9);
        let s = InversePower::inverse_sqrt(-2, 9);
        let out = local::run(fx(), Some(4), |ctx| {
            let i = ctx.index();
            let before = ctx.stats();
            let a = r.eval(ctx, &sx[i], None).unwrap();
            let rounds = (ctx.stats() - before).rounds;
            (a, s.eval(ctx, &sx[i], Some((&sg[i], 1))).unwrap(), rounds)
        });
        let rec = dec(&open(&out.clone().map(|o| o.0)));
        let rs = dec(&open(&out.clone().map(|o| o.1)));
        for j in 0..xs.len() {
            // Relative 1.5e-6 series error; absolute fixed-point error of a
            // few ulps (2^-18 = 3.8e-6) dominates for small results.
            assert!(
                (rec[j] - 1.0 / xs[j]).abs() < 2e-5,
                "1/{} = {}",
                xs[j],
                rec[j]
            );
            assert!(
                (rs[j] - gs[j] / xs[j].sqrt()).abs() < 4e-5,
                "rsqrt {}",
                xs[j]
            );
        }
        // msb, B2A, exact scaling (5), series (6 + 1), exact product (5).
        assert_eq!(out[0].2, 7 + 2 + 5 + 6 + 1 + 5);
    }
}
