//! `e^x` on shares.
//!
//! * [`exp_baseline`] — SPU's default: `(1 + x/2^n)^(2^n)` with `n = 8`,
//!   valid for any `x ≤ 0` down to `-2^n`; one truncation and `n` squarings
//!   (`1 + 2n` rounds).
//! * [`exp_chebyshev`] — CipherDM: a Chebyshev series on
//!   `[T_exp, 0] = [-14, 0]` (`e^-14 < 2^-18`), evaluated in the mapped
//!   variable with a log-depth basis split around its middle term
//!   ([`poly::eval_mapped`]), and masked to 0 below `T_exp`; the mask's
//!   comparison runs concurrently with the series, so the rounds are those
//!   of the longer.  The coefficients are the true
//!   Chebyshev projection fitted in code ([`ExpCoefficients::Fitted`]), or the
//!   paper's Table 3 ([`ExpCoefficients::Paper`], kept to reproduce its
//!   accuracy: 0.95 at x = 0 and negative below x ≈ -4.5).

use super::poly::{self, Chebyshev};
use crate::mpc::arith::{self, AShare};
use crate::mpc::compare::{self, CompareWidth};
use crate::mpc::{Ctx, Result};

/// Squarings of the baseline exponential (SPU's default iteration count).
pub const BASELINE_SQUARINGS: u32 = 8;

/// Lower end of the Chebyshev domain: below it `e^x < 2^-18` is taken as 0.
pub const T_EXP: f64 = -14.0;

/// Which coefficients the Chebyshev exponential uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpCoefficients {
    /// Interpolation at Chebyshev nodes of the given degree.
    Fitted(usize),
    /// The paper's Table 3, degree 7.
    Paper,
}

/// The paper's Table 3 coefficients (printed there without the leading
/// "0."), reproduced only to measure their error.
const PAPER_TABLE3: [f64; 8] = [
    0.140_218_78,
    0.275_412_78,
    0.221_228_65,
    0.149_342_21,
    0.090_773_60,
    0.043_696_14,
    0.020_878_68,
    0.009_965_35,
];

/// Default degree of the fitted exponential: max error 2.4e-3 on [-14, 0]
/// with three product levels.  (Measured by the fit: degree 7: 7.3e-3,
/// 9: 7.2e-4, 12: 1.3e-5 — degrees 9 to 16 need a fourth level.)
pub const DEFAULT_EXP_DEGREE: usize = 8;

impl ExpCoefficients {
    pub fn series(self) -> Chebyshev {
        match self {
            ExpCoefficients::Fitted(d) => Chebyshev::fit(f64::exp, T_EXP, 0.0, d),
            ExpCoefficients::Paper => Chebyshev {
                lo: T_EXP,
                hi: 0.0,
                coeffs: PAPER_TABLE3.to_vec(),
            },
        }
    }
}

/// `(1 + x/2^n)^(2^n)`.  For `x ≤ 0`; rounds `1 + 2n`.
pub fn exp_baseline(ctx: &mut Ctx, x: &AShare) -> Result<AShare> {
    let one = ctx.fx().encode(1.0).expect("1 is encodable");
    let mut y = arith::trunc(ctx, x, BASELINE_SQUARINGS)?.add_public_scalar(ctx, one);
    for _ in 0..BASELINE_SQUARINGS {
        y = arith::square_fx(ctx, &y)?;
    }
    Ok(y)
}

/// Plaintext model of [`exp_baseline`].
pub fn exp_baseline_plain(x: f64) -> f64 {
    (1.0 + x / f64::from(1u32 << BASELINE_SQUARINGS)).powi(1 << BASELINE_SQUARINGS)
}

/// Chebyshev `e^x` for `x ≤ 0`, 0 below [`T_EXP`].  The mask compares at
/// `width` (requires `|x - T_EXP|` within its range; a coarse width blurs
/// the mask edge by `2^drop` units, where `e^x ≈ 8e-7`).
pub fn exp_chebyshev(
    ctx: &mut Ctx,
    x: &AShare,
    series: &Chebyshev,
    width: CompareWidth,
) -> Result<AShare> {
    let t_exp = ctx.fx().encode(-series.lo).expect("T_exp encodable");
    // The mask and the series are independent: run them side by side.
    let (keep, z) = ctx.join(
        |c| {
            // keep = x ≥ T_exp, i.e. the sign bit of x - T_exp is clear.
            let keep = compare::msb_coarse(c, &x.add_public_scalar(c, t_exp), width)?.not(c);
            compare::b2a_bit(c, &keep, x.len())
        },
        |c| poly::eval(c, x, series),
    )?;
    arith::mul(ctx, &keep, &z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::arith::tests::{deal, dec, enc, fx, open};
    use crate::mpc::local;

    #[test]
    fn fitted_series_meets_the_error_target_and_the_paper_does_not() {
        let fitted = ExpCoefficients::Fitted(DEFAULT_EXP_DEGREE).series();
        let err = fitted.max_error(f64::exp, 10_001);
        assert!(err < 2.5e-3, "fitted error {err}");
        assert!(
            ExpCoefficients::Fitted(12)
                .series()
                .max_error(f64::exp, 10_001)
                < 1.4e-5
        );
        let paper = ExpCoefficients::Paper.series();
        assert!((paper.eval(0.0) - 0.9515).abs() < 1e-3);
        assert!(paper.eval(-6.0) < 0.0);
        assert!(paper.max_error(f64::exp, 10_001) > 0.04);
    }

    #[test]
    fn secure_exponentials_match_exp() {
        let xs: Vec<f64> = (0..300).map(|i| -20.0 + 20.0 * i as f64 / 299.0).collect();
        let sx = deal(&enc(&xs), 3);
        let series = ExpCoefficients::Fitted(DEFAULT_EXP_DEGREE).series();
        let out = local::run(fx(), Some(3), |ctx| {
            let x = &sx[ctx.index()];
            (
                exp_baseline(ctx, x).unwrap(),
                exp_chebyshev(ctx, x, &series, CompareWidth { drop: 0, k: 32 }).unwrap(),
            )
        });
        let base = dec(&open(&out.clone().map(|o| o.0)));
        let cheb = dec(&open(&out.map(|o| o.1)));
        for (i, x) in xs.iter().enumerate() {
            // Baseline: (1+x/256)^256 is within 1.1e-3 of e^x for x ≤ 0, plus
            // fixed-point error doubled by each squaring (2^8 · 2^-18).
            assert!(
                (base[i] - x.exp()).abs() < 3e-3,
                "baseline x={x}: {}",
                base[i]
            );
            // Chebyshev: 2.4e-3 fit error + a few ulps; 0 below -14.
            let want = if *x < T_EXP { 0.0 } else { x.exp() };
            assert!((cheb[i] - want).abs() < 2.5e-3, "cheb x={x}: {}", cheb[i]);
        }
    }
}
