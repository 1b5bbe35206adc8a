//! GroupNorm on shares: mean, variance, normalised inverse square root,
//! affine — `21 + msb` rounds (31 for the default variance range, whose
//! comparisons need a 40-bit ring; 6 of them make the variance's and the
//! normalisation's truncations exact, one keeps the mean's small).
//!
//! The squares are summed per group before their one truncation (one word
//! per group on the wire), the `1/m` of the variance is folded into the
//! inverse square root as the public factor `sqrt(m)`, and `γ` is multiplied
//! into the per-group scale in the same round as the normalisation; the
//! centred input is multiplied by that scale while the series of the inverse
//! square root runs, and by the series' result last.

use super::recip::InversePower;
use crate::mpc::arith::{self, AShare};
use crate::mpc::{Ctx, Result};

/// Shape and constants of a GroupNorm over an `N×C×H×W` tensor.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    pub batch: usize,
    pub channels: usize,
    /// `H·W`.
    pub hw: usize,
    pub groups: usize,
    pub eps: f64,
    /// Largest supported group variance, as a power of two.
    pub var_max_exp: i32,
    rsqrt: InversePower,
}

/// Default bound on a group's variance: 2^12.
pub const DEFAULT_VAR_MAX_EXP: i32 = 12;

impl GroupNorm {
    pub fn new(batch: usize, channels: usize, hw: usize, groups: usize, eps: f64) -> Self {
        assert!(
            groups > 0 && channels % groups == 0,
            "channels must split into groups"
        );
        let m = (channels / groups * hw) as f64;
        let var_max_exp = DEFAULT_VAR_MAX_EXP;
        // v = m·var + m·eps lies in [m·eps, m·2^var_max_exp].
        let lo = (m * eps).log2().floor() as i32;
        let hi = m.log2().ceil() as i32 + var_max_exp + 1;
        GroupNorm {
            batch,
            channels,
            hw,
            groups,
            eps,
            var_max_exp,
            rsqrt: InversePower::inverse_sqrt(lo, hi).with_factor(m.sqrt()),
        }
    }

    fn group_len(&self) -> usize {
        self.channels / self.groups * self.hw
    }

    /// Normalises `x` (`N·C·H·W` entries, row-major) with the per-channel
    /// `gamma` and `beta` (`C` entries each).
    pub fn eval(&self, ctx: &mut Ctx, x: &AShare, gamma: &AShare, beta: &AShare) -> Result<AShare> {
        let (m, fx) = (self.group_len(), ctx.fx());
        assert_eq!(x.len(), self.batch * self.channels * self.hw);
        // Mean: the sums shifted by s = ⌈log2 m⌉ first, then times 2^s/m.
        // One product of sum and round(2^(f+s)/m) would sit near
        // |mean|·2^(2f+s) before its truncation — too likely to wrap.
        let s = (m as f64).log2().ceil() as u32;
        let scaled_sum = arith::trunc(ctx, &x.sum_runs(m), s)?;
        let mean = arith::mul_public_scalar_fx(ctx, &scaled_sum, f64::from(1u32 << s) / m as f64)?;
        let d = x.sub(&mean.repeat_each(m));
        let m_eps = fx.encode(m as f64 * self.eps).expect("m·eps in range");
        let v = arith::sum_squares_runs(ctx, &d, m)?.add_public_scalar(ctx, m_eps);
        // γ_c · rsqrt(var_(b,g)) for every (b, c): `per` channels per group.
        let per = self.channels / self.groups;
        let gammas = AShare::concat(&vec![gamma; self.batch]);
        let nrm = self.rsqrt.normalize(ctx, &v, Some((&gammas, per)))?;
        // While the series runs, scale the centred input by γ·2^(-E/2).
        let (g, dy) = ctx.join(
            |c| self.rsqrt.series(c, &nrm.t),
            |c| arith::mul_fx(c, &d, &nrm.scaled.repeat_each(self.hw)),
        )?;
        let y = arith::mul_fx(ctx, &dy, &g.repeat_each(per * self.hw))?;
        let betas = AShare::concat(&vec![beta; self.batch]).repeat_each(self.hw);
        Ok(y.add(&betas))
    }
}

impl GroupNorm {
    /// Plaintext model of [`eval`](Self::eval) (same inverse square root,
    /// fixed-point rounding aside), for emulation.
    pub fn eval_plain(&self, x: &[f64], gamma: &[f64], beta: &[f64]) -> Vec<f64> {
        let (m, per) = (self.group_len(), self.channels / self.groups);
        let mut y = Vec::with_capacity(x.len());
        for (gi, grp) in x.chunks(m).enumerate() {
            let mean = grp.iter().sum::<f64>() / m as f64;
            let ss: f64 = grp.iter().map(|v| (v - mean) * (v - mean)).sum();
            let r = self.rsqrt.eval_plain(ss + m as f64 * self.eps);
            for (i, v) in grp.iter().enumerate() {
                let c = (gi % self.groups) * per + i / self.hw;
                y.push((v - mean) * r * gamma[c] + beta[c]);
            }
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::arith::tests::{deal, dec, enc, fx, open};
    use crate::mpc::local;

    #[test]
    fn matches_group_norm_within_stated_bound() {
        let (b, c, hw, g) = (2, 8, 49, 4);
        let xs: Vec<f64> = (0..b * c * hw)
            .map(|i| {
                let grp = i / (c / g * hw);
                let scale = [0.05, 1.0, 7.0, 30.0, 0.3, 2.0, 12.0, 0.01][grp];
                scale * ((i as f64 * 0.731).sin() + 0.3 * (i as f64 * 0.117).cos()) + grp as f64
            })
            .collect();
        let gam: Vec<f64> = (0..c).map(|i| 0.5 + 0.2 * i as f64).collect();
        let bet: Vec<f64> = (0..c).map(|i| -0.3 + 0.1 * i as f64).collect();
        let (sx, sg, sb) = (deal(&enc(&xs), 1), deal(&enc(&gam), 2), deal(&enc(&bet), 3));
        let gn = GroupNorm::new(b, c, hw, g, 1e-5);
        let out = local::run(fx(), Some(2), |ctx| {
            let i = ctx.index();
            let before = ctx.stats();
            let y = gn.eval(ctx, &sx[i], &sg[i], &sb[i]).unwrap();
            (y, (ctx.stats() - before).rounds)
        });
        let got = dec(&open(&out.clone().map(|o| o.0)));
        // Reference on the fixed-point inputs (the smallest group has
        // σ = 0.007, where input quantization alone is 5e-4 of σ).
        let xs = dec(&enc(&xs));
        let m = c / g * hw;
        for grp in 0..b * g {
            let xsg = &xs[grp * m..(grp + 1) * m];
            let mean = xsg.iter().sum::<f64>() / m as f64;
            let var = xsg.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m as f64;
            // Bound: 1e-3 relative, or 4 ulps of the input scale σ where the
            // fixed-point resolution dominates (σ below ~0.015 at f = 18).
            let bound = 1e-3f64.max(4.0 / fx().scale() / var.sqrt());
            let mut worst: f64 = 0.0;
            for j in 0..m {
                let ch = (grp % g) * (c / g) + j / hw;
                let norm = (xsg[j] - mean) / (var + 1e-5).sqrt();
                let want = gam[ch] * norm + bet[ch];
                // Relative to the normalised scale γ (outputs are O(γ)).
                worst = worst.max((got[grp * m + j] - want).abs() / gam[ch]);
            }
            assert!(
                worst < bound,
                "group {grp} (var {var}): relative error {worst} > {bound}"
            );
        }
        // mean 2 + squares 5 + normalise (msb 8 at k = 40, B2A 2, scale 5)
        // + series (basis 6, combine 1) beside d·scale (2) + final 2; the
        // squares and the scales truncate exactly.
        assert_eq!(out[0].1, 2 + 5 + (8 + 2 + 5) + (6 + 1) + 2);
    }
}
