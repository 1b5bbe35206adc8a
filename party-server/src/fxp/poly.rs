//! Chebyshev approximations: fitted by code (no typed-in coefficients) and
//! evaluated on shares with a log-depth tree.
//!
//! A function on `[lo, hi]` is approximated by `Σ c_k T_k(t)` in the mapped
//! variable `t = (2x - lo - hi) / (hi - lo) ∈ [-1, 1]`.  Working in `t` and in
//! the Chebyshev basis keeps every intermediate in `[-1, 1]` and every
//! coefficient small, so 18 fraction bits suffice (the power basis in `x` on
//! `[-14, 0]` would need coefficients below 2^-18).

use crate::mpc::arith::{self, AShare};
use crate::mpc::{Ctx, Result};

/// `f(x) ≈ Σ_k coeffs[k] · T_k(t)` on `[lo, hi]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Chebyshev {
    pub lo: f64,
    pub hi: f64,
    pub coeffs: Vec<f64>,
}

impl Chebyshev {
    /// Interpolates `f` at the `degree + 1` Chebyshev nodes of `[lo, hi]`
    /// (near-minimax: within a small factor of the best polynomial).
    pub fn fit(f: impl Fn(f64) -> f64, lo: f64, hi: f64, degree: usize) -> Self {
        let n = degree + 1;
        let nodes: Vec<f64> = (0..n)
            .map(|j| (std::f64::consts::PI * (j as f64 + 0.5) / n as f64).cos())
            .collect();
        let values: Vec<f64> = nodes
            .iter()
            .map(|&t| f(0.5 * (hi - lo) * t + 0.5 * (hi + lo)))
            .collect();
        let coeffs = (0..n)
            .map(|k| {
                let s: f64 = (0..n)
                    .map(|j| {
                        values[j]
                            * (std::f64::consts::PI * k as f64 * (j as f64 + 0.5) / n as f64).cos()
                    })
                    .sum();
                s * if k == 0 { 1.0 } else { 2.0 } / n as f64
            })
            .collect();
        Chebyshev { lo, hi, coeffs }
    }

    pub fn degree(&self) -> usize {
        self.coeffs.len() - 1
    }

    /// Maps `x` to `t`: `t = scale·x + offset`.
    pub fn map(&self) -> (f64, f64) {
        let scale = 2.0 / (self.hi - self.lo);
        (scale, -(self.hi + self.lo) / (self.hi - self.lo))
    }

    /// Plaintext evaluation (Clenshaw).
    pub fn eval(&self, x: f64) -> f64 {
        let (s, o) = self.map();
        let t = s * x + o;
        let (mut b1, mut b2) = (0.0, 0.0);
        for &c in self.coeffs.iter().skip(1).rev() {
            let b = 2.0 * t * b1 - b2 + c;
            b2 = b1;
            b1 = b;
        }
        t * b1 - b2 + self.coeffs[0]
    }

    /// Largest `|f - self|` over `samples` evenly spaced points of the domain.
    pub fn max_error(&self, f: impl Fn(f64) -> f64, samples: usize) -> f64 {
        (0..samples)
            .map(|i| self.lo + (self.hi - self.lo) * i as f64 / (samples - 1) as f64)
            .map(|x| (f(x) - self.eval(x)).abs())
            .fold(0.0, f64::max)
    }
}

/// `T_1(t) .. T_d(t)` on shares.  Level `L` doubles the known range with
/// `T_{m+j} = 2 T_m T_j - T_{m-j}` (`m = 2^L`), one batched product per
/// level: `2·⌈log2 d⌉` rounds.
pub fn chebyshev_basis(ctx: &mut Ctx, t: &AShare, degree: usize) -> Result<Vec<AShare>> {
    let one = ctx.fx().encode(1.0).expect("1 is encodable");
    // ts[k] = T_k; T_0 = 1 is public.
    let mut ts: Vec<AShare> = vec![AShare::from_public(ctx, &vec![one; t.len()]), t.clone()];
    // 2·p − l, element-wise, for one component.
    let twice_minus = |v: &[u64], l: &[u64]| -> Vec<u64> {
        v.iter()
            .zip(l)
            .map(|(&v, &l)| v.wrapping_mul(2).wrapping_sub(l))
            .collect()
    };
    while ts.len() <= degree {
        let m = ts.len() - 1;
        let count = (degree - m).min(m);
        // The products T_m·T_j (j = 1..=count), reshared as one batch.
        let mut terms = Vec::with_capacity(count * t.len());
        for j in 1..=count {
            terms.extend(arith::product_terms(&ts[m], &ts[j]));
        }
        let prod = arith::reshare_trunc(ctx, terms, ctx.frac_bits())?;
        let n = t.len();
        for j in 1..=count {
            // T_(m+j) = 2·T_m·T_j − T_(m−j).
            let (low, at) = (&ts[m - j], (j - 1) * n..j * n);
            ts.push(AShare {
                a: twice_minus(&prod.a[at.clone()], &low.a),
                b: twice_minus(&prod.b[at], &low.b),
            });
        }
    }
    ts.truncate(degree + 1);
    Ok(ts)
}

/// `Σ c_k T_k` over `basis[..coeffs.len()]` at double scale: local
/// products by the public coefficients, no truncation yet.  Summed in an
/// L1-sized block, so each output word is written once.
fn combine_wide(ctx: &Ctx, basis: &[AShare], coeffs: &[f64]) -> AShare {
    const BLOCK: usize = 512;
    let fx = ctx.fx();
    let cs: Vec<u64> = coeffs
        .iter()
        .map(|&c| fx.encode(c).expect("coefficient within range"))
        .collect();
    let n = basis[0].len();
    let combine = |comp: fn(&AShare) -> &[u64]| -> Vec<u64> {
        let mut out = Vec::with_capacity(n);
        let mut block = [0u64; BLOCK];
        for start in (0..n).step_by(BLOCK) {
            let acc = &mut block[..BLOCK.min(n - start)];
            acc.fill(0);
            for (b, &c) in basis.iter().zip(&cs) {
                for (s, &v) in acc.iter_mut().zip(&comp(b)[start..]) {
                    *s = s.wrapping_add(v.wrapping_mul(c));
                }
            }
            out.extend_from_slice(acc);
        }
        out
    };
    AShare {
        a: combine(|s| &s.a),
        b: combine(|s| &s.b),
    }
}

/// `Σ c_k T_k(t)` on shares of the mapped variable `t ∈ [-1, 1]`.
///
/// Degrees above 2 split the series around `T_m` (`m = ⌈d/2⌉`) with
/// `T_(m+j) = 2·T_m·T_j − T_(m−j)`:
/// `p = Σ_(k≤m) c_k T_k − Σ_j c_(m+j) T_(m−j) + T_m · (2 Σ_j c_(m+j) T_j)`,
/// so only the basis up to `T_m` is built and the last product is summed
/// with the low part before one truncation (a Paterson–Stockmeyer step).
/// Degree 8 takes 4 products instead of 7 in the same rounds:
/// `2·⌈log2 m⌉ + 3` (`2·⌈log2 d⌉ + 1` up to degree 2).
pub fn eval_mapped(ctx: &mut Ctx, t: &AShare, coeffs: &[f64]) -> Result<AShare> {
    let d = coeffs.len() - 1;
    let f = ctx.frac_bits();
    if d <= 2 {
        let basis = chebyshev_basis(ctx, t, d)?;
        return arith::trunc(ctx, &combine_wide(ctx, &basis, coeffs), f);
    }
    let m = d.div_ceil(2);
    let basis = chebyshev_basis(ctx, t, m)?;
    let high = &coeffs[m + 1..];
    // Low part: c_k for k ≤ m, minus c_(m+j) folded onto T_(m-j).
    let mut low = coeffs[..=m].to_vec();
    for (j, &c) in high.iter().enumerate() {
        low[m - (j + 1)] -= c;
    }
    let twice: Vec<f64> = std::iter::once(0.0)
        .chain(high.iter().map(|c| 2.0 * c))
        .collect();
    let q = arith::trunc(ctx, &combine_wide(ctx, &basis, &twice), f)?;
    // A replicated share's first component is a 3-out-of-3 sharing.
    let mut terms = combine_wide(ctx, &basis, &low).a;
    for (v, p) in terms.iter_mut().zip(arith::product_terms(&basis[m], &q)) {
        *v = v.wrapping_add(p);
    }
    arith::reshare_trunc(ctx, terms, f)
}

/// Evaluates `p` on shares of `x` (which must lie in `[p.lo, p.hi]`).
/// Rounds: 1 + those of [`eval_mapped`].
pub fn eval(ctx: &mut Ctx, x: &AShare, p: &Chebyshev) -> Result<AShare> {
    let t = to_mapped(ctx, x, p)?;
    eval_mapped(ctx, &t, &p.coeffs)
}

/// `t = scale·x + offset` on shares.  1 round.
pub fn to_mapped(ctx: &mut Ctx, x: &AShare, p: &Chebyshev) -> Result<AShare> {
    let (s, o) = p.map();
    let t = arith::mul_public_scalar_fx(ctx, x, s)?;
    let o = ctx.fx().encode(o).expect("offset within range");
    Ok(t.add_public_scalar(ctx, o))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::arith::tests::{deal, dec, enc, fx, open};
    use crate::mpc::local;

    #[test]
    fn fit_reproduces_polynomials_exactly() {
        let f = |x: f64| 3.0 * x * x * x - x + 0.5;
        let p = Chebyshev::fit(f, -2.0, 5.0, 3);
        assert!(p.max_error(f, 1001) < 1e-12);
    }

    #[test]
    fn exp_on_minus_14_0_matches_the_bessel_projection() {
        // Chebyshev coefficients of e^x on [-14, 0] are 2 e^-7 I_k(7) (k ≥ 1);
        // compare with the series of the modified Bessel function.
        let bessel = |k: i32, z: f64| -> f64 {
            (0..60)
                .map(|m| {
                    let lg = (1..=m).map(|i| (i as f64).ln()).sum::<f64>()
                        + (1..=(m + k)).map(|i| (i as f64).ln()).sum::<f64>();
                    ((2 * m + k) as f64 * (z / 2.0).ln() - lg).exp()
                })
                .sum()
        };
        let p = Chebyshev::fit(f64::exp, -14.0, 0.0, 20);
        for k in 1..8 {
            let want = 2.0 * (-7.0f64).exp() * bessel(k, 7.0);
            assert!((p.coeffs[k as usize] - want).abs() < 1e-12, "k={k}");
        }
    }

    /// Every degree from 1 to 12 (direct and split forms) within 40 ulps of
    /// the plaintext series; degree 8 sends 4 products' and 2 truncations'
    /// worth of words: 14 per element over the three parties.
    #[test]
    fn split_evaluation_matches_plaintext_for_every_degree() {
        let xs: Vec<f64> = (0..64).map(|i| -14.0 * i as f64 / 63.0).collect();
        let sx = deal(&enc(&xs), 5);
        for d in 1..=12 {
            let p = Chebyshev::fit(f64::exp, -14.0, 0.0, d);
            let out = local::run(fx(), Some(5), |ctx| {
                let before = ctx.stats();
                let y = eval(ctx, &sx[ctx.index()], &p).unwrap();
                (y, ctx.stats() - before)
            });
            let got = dec(&open(&out.clone().map(|o| o.0)));
            for (g, x) in got.iter().zip(&xs) {
                assert!(
                    (g - p.eval(*x)).abs() < 40.0 / fx().scale(),
                    "degree {d}, x={x}: {g} vs {}",
                    p.eval(*x)
                );
            }
            if d == 8 {
                let words: u64 = out.iter().map(|o| o.1.bytes_sent).sum::<u64>() / 8;
                assert_eq!(words, 14 * xs.len() as u64);
            }
        }
    }

    #[test]
    fn secure_evaluation_matches_plaintext() {
        let p = Chebyshev::fit(f64::exp, -14.0, 0.0, 9);
        let xs: Vec<f64> = (0..200).map(|i| -14.0 * i as f64 / 199.0).collect();
        let sx = deal(&enc(&xs), 1);
        let out = local::run(fx(), Some(1), |ctx| {
            let before = ctx.stats();
            let y = eval(ctx, &sx[ctx.index()], &p).unwrap();
            (y, ctx.stats() - before)
        });
        let got = dec(&open(&out.clone().map(|o| o.0)));
        // Fixed-point error: each T_k carries a few ulps, times |c_k| < 1.
        for (g, x) in got.iter().zip(&xs) {
            assert!(
                (g - p.eval(*x)).abs() < 40.0 / fx().scale(),
                "x={x}: {g} vs {}",
                p.eval(*x)
            );
        }
        // Degree 9: mapping, basis to T_5 (3 levels), truncation, product.
        assert_eq!(out[0].1.rounds, 1 + 2 * 3 + 3);
    }
}
