//! Comparisons: the most significant bit of arithmetic shares, and the way
//! back from bits to arithmetic.
//!
//! `msb` works on a reduced ring Z_2^k: when the caller guarantees
//! `|x| < 2^(k-1)`, reducing every component mod 2^k keeps `x mod 2^k`, whose
//! top bit is the sign.  P0 knows `v = x_0 + x_1` and P1, P2 know `x_2`, so
//! `x = v + x_2` is a two-operand addition: P0 shares `v` bit-sliced (one
//! message of `k` bits per value), then a parallel-prefix carry tree computes
//! only the carry into bit `k-1`, halving the planes at every level.
//! Rounds: `2 + ⌈log2(k-1)⌉` (7 for k = 32); bits sent per value: about
//! `k + 3·(3k - 4)`.

use super::Result;
use super::arith::AShare;
use super::bits::{BShare, and, plane_bits, to_planes, words_for};
use super::context::Ctx;
use super::transport::Dir;

fn low_mask(k: u32) -> u64 {
    if k == 64 { u64::MAX } else { (1u64 << k) - 1 }
}

/// Boolean sharing of the sign bit of `x`, one bit per value (packed).
/// Requires `|x| < 2^(k-1)` for every value; `k` in `2..=64`.
pub fn msb(ctx: &mut Ctx, x: &AShare, k: u32) -> Result<BShare> {
    msb_coarse(ctx, x, CompareWidth { drop: 0, k })
}

/// Which bits of a ring element a comparison reads: `k` bits above the
/// lowest `drop`.  Exact comparisons have `drop = 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompareWidth {
    /// Low bits ignored.
    pub drop: u32,
    /// Ring width of the comparison proper.
    pub k: u32,
}

impl CompareWidth {
    /// Keep `keep_frac` of the `frac` fractional bits and `k` bits in all:
    /// resolution `2^-keep_frac`, range `|x| < 2^(k-1-keep_frac)`.
    pub fn coarse(frac: u32, keep_frac: u32, k: u32) -> Self {
        CompareWidth {
            drop: frac.saturating_sub(keep_frac),
            k,
        }
    }
}

/// The sign of `x` judged on its bits above the lowest `drop`: both addends
/// `v` and `x_2` are shifted right before the `k`-bit addition, which yields
/// `⌊x/2^drop⌋ − δ` with `δ ∈ {0,1}` (the lost carry; the wrap-around term
/// `2^(64−drop)` vanishes mod `2^k`).  So the bit is exact for `x < 0` and
/// `x ≥ 2^drop` and may be either value for `0 ≤ x < 2^drop` — fine where
/// near-ties may go either way (a row maximum, a mask edge), and `drop`
/// bits cheaper.  Requires `|x| < 2^(drop+k-1)` and `drop + k ≤ 64`.
pub fn msb_coarse(ctx: &mut Ctx, x: &AShare, width: CompareWidth) -> Result<BShare> {
    let CompareWidth { drop, k } = width;
    assert!((2..=64).contains(&k), "ring width {k} outside 2..=64");
    assert!(drop + k <= 64, "drop {drop} + width {k} exceed 64 bits");
    let n = x.len();
    let w = words_for(n);
    let ku = k as usize;
    let mask = low_mask(k);

    // Round 1: P0 shares the bit planes of v = x_0 + x_1 as (c0, c1, 0), with
    // c0 drawn from the stream it shares with P2 and c1 = v ^ c0 sent to P1.
    // x_2 is the sharing (0, 0, x_2).
    let (mut v_share, mut x2_share) = match ctx.index() {
        0 => {
            let v: Vec<u64> = (0..n)
                .map(|j| (x.a[j].wrapping_add(x.b[j]) >> drop) & mask)
                .collect();
            let vp = to_planes(&v, ku);
            let c0 = ctx.prg(Dir::Prev).u64_vec(ku * w);
            let c1: Vec<u64> = vp.iter().zip(&c0).map(|(a, b)| a ^ b).collect();
            ctx.send(Dir::Next, c1.clone())?;
            (
                BShare { a: c0, b: c1 },
                BShare {
                    a: vec![0; ku * w],
                    b: vec![0; ku * w],
                },
            )
        }
        1 => {
            let c1 = ctx.recv(Dir::Prev, ku * w)?;
            let x2: Vec<u64> = x.b.iter().map(|v| (v >> drop) & mask).collect();
            (
                BShare {
                    a: c1,
                    b: vec![0; ku * w],
                },
                BShare {
                    a: vec![0; ku * w],
                    b: to_planes(&x2, ku),
                },
            )
        }
        _ => {
            let c0 = ctx.prg(Dir::Next).u64_vec(ku * w);
            let x2: Vec<u64> = x.a.iter().map(|v| (v >> drop) & mask).collect();
            (
                BShare {
                    a: vec![0; ku * w],
                    b: c0,
                },
                BShare {
                    a: to_planes(&x2, ku),
                    b: vec![0; ku * w],
                },
            )
        }
    };
    ctx.end_round();

    // Generate and propagate over bits 0..k-2: G = v & x2, P = v ^ x2.
    // Plane j of a bit-sliced sharing is words [j·w, (j+1)·w).
    let carry_bits = ku - 1;
    let lo = carry_bits * w;
    let mut p = v_share.xor(&x2_share);
    let p_top = p.slice(lo, lo + w);
    p.truncate(lo);
    v_share.truncate(lo);
    x2_share.truncate(lo);
    let mut g = and(ctx, &v_share, &x2_share)?;

    // Carry tree: combine adjacent blocks (lo, hi) into
    // G = G_hi ^ (P_hi & G_lo), P = P_hi & P_lo.  The lowest block never
    // needs P (no carry comes in below bit 0), so its P is not computed.
    let mut planes = carry_bits;
    while planes > 1 {
        let pairs = planes / 2;
        let mut left = BShare::with_capacity((2 * pairs - 1) * w);
        let mut right = BShare::with_capacity((2 * pairs - 1) * w);
        for i in 0..pairs {
            let (l, h) = (2 * i, 2 * i + 1);
            left.extend_from(&p, h * w, (h + 1) * w);
            right.extend_from(&g, l * w, (l + 1) * w);
            if i > 0 {
                left.extend_from(&p, h * w, (h + 1) * w);
                right.extend_from(&p, l * w, (l + 1) * w);
            }
        }
        let prod = and(ctx, &left, &right)?;
        let next = planes.div_ceil(2);
        let mut next_g = BShare::with_capacity(next * w);
        let mut next_p = BShare::with_capacity(next * w);
        let mut at = 0;
        for i in 0..pairs {
            let h = 2 * i + 1;
            next_g.extend_xor(&g, h * w, &prod, at * w, w);
            at += 1;
            if i > 0 {
                next_p.extend_from(&prod, at * w, (at + 1) * w);
                at += 1;
            } else {
                // Placeholder: the lowest block's P is never read.
                next_p.extend_from(&p, h * w, (h + 1) * w);
            }
        }
        if planes % 2 == 1 {
            next_g.extend_from(&g, (planes - 1) * w, planes * w);
            next_p.extend_from(&p, (planes - 1) * w, planes * w);
        }
        g = next_g;
        p = next_p;
        planes = next;
    }
    Ok(p_top.xor(&g))
}

/// Arithmetic sharing (0 or 1 per value) of boolean-shared bits, packed one
/// bit per value for `n` values.  2 rounds, four words per value in total.
///
/// With `u = b_0 ^ b_1` (known to P0) and `b_2` (known to P1 and P2),
/// `b = u + b_2 - 2·u·b_2`: P0 shares `u` arithmetically, the product with the
/// public-to-two `b_2` is a local 3-out-of-3 sharing, resharing it finishes.
pub fn b2a_bit(ctx: &mut Ctx, b: &BShare, n: usize) -> Result<AShare> {
    match ctx.index() {
        0 => {
            let ub: Vec<u64> = b.a.iter().zip(&b.b).map(|(x, y)| x ^ y).collect();
            let u = plane_bits(&ub, n);
            let u0 = ctx.prg(Dir::Prev).u64_vec(n);
            let u1: Vec<u64> = u.iter().zip(&u0).map(|(x, y)| x.wrapping_sub(*y)).collect();
            let g0 = ctx.zero_share(n);
            ctx.send(Dir::Next, u1.clone())?;
            ctx.send(Dir::Prev, g0.clone())?;
            ctx.end_round();
            let g1 = ctx.recv(Dir::Next, n)?;
            ctx.end_round();
            Ok(AShare {
                a: (0..n)
                    .map(|j| u0[j].wrapping_sub(g0[j].wrapping_mul(2)))
                    .collect(),
                b: (0..n)
                    .map(|j| u1[j].wrapping_sub(g1[j].wrapping_mul(2)))
                    .collect(),
            })
        }
        1 => {
            let b2 = plane_bits(&b.b, n);
            let u1 = ctx.recv(Dir::Prev, n)?;
            let g2 = ctx.recv(Dir::Next, n)?;
            ctx.end_round();
            let mut g1: Vec<u64> = (0..n).map(|j| u1[j].wrapping_mul(b2[j])).collect();
            ctx.add_zero_share(&mut g1);
            ctx.send(Dir::Prev, g1.clone())?;
            ctx.end_round();
            Ok(AShare {
                a: (0..n)
                    .map(|j| u1[j].wrapping_sub(g1[j].wrapping_mul(2)))
                    .collect(),
                b: (0..n)
                    .map(|j| b2[j].wrapping_sub(g2[j].wrapping_mul(2)))
                    .collect(),
            })
        }
        _ => {
            let b2 = plane_bits(&b.a, n);
            let u0 = ctx.prg(Dir::Next).u64_vec(n);
            let mut g2: Vec<u64> = (0..n).map(|j| u0[j].wrapping_mul(b2[j])).collect();
            ctx.add_zero_share(&mut g2);
            ctx.send(Dir::Prev, g2.clone())?;
            let g0 = ctx.recv(Dir::Next, n)?;
            ctx.end_round();
            ctx.end_round();
            Ok(AShare {
                a: (0..n)
                    .map(|j| b2[j].wrapping_sub(g2[j].wrapping_mul(2)))
                    .collect(),
                b: (0..n)
                    .map(|j| u0[j].wrapping_sub(g0[j].wrapping_mul(2)))
                    .collect(),
            })
        }
    }
}

/// `b · x` for boolean-shared bits `b` and arithmetic `x` (bit injection).
/// 2 rounds.
pub fn mul_ba(ctx: &mut Ctx, b: &BShare, x: &AShare) -> Result<AShare> {
    inject_sum(ctx, b, x, &AShare::zeros(x.len()), 0)
}

/// `(p + Σ_j b_j·d_j) / 2^trunc` for boolean-shared bits `b` and
/// arithmetic `d` (`m·n` of each, threshold-major) and `p` (`n`).  Rounds:
/// 2 without truncation, 3 with; words sent in total: 4 per bit and 3 per
/// output.
///
/// Bit injection fused with the B2A: `b = u ⊕ b_2`, where P0 knows
/// `u = b_0 ⊕ b_1` and P1, P2 know `b_2`, so
/// `b·d = u·q + b_2·d` with `q = (1 - 2·b_2)·d`.  Round 1: P0 shares `u`
/// (P1 gets `u - u_0`, `u_0` comes from the stream P0 shares with P2) while
/// P1 and P2 reshare their local 3-out-of-3 `q`.  Then `Σ_j u_j·q_j`, the
/// local `b_2·d` terms and `p` add up to one 3-out-of-3 sum, reshared (with
/// truncation: 2 rounds): one round less than B2A then product.
pub fn inject_sum(ctx: &mut Ctx, b: &BShare, d: &AShare, p: &AShare, trunc: u32) -> Result<AShare> {
    let (total, n) = (d.len(), p.len());
    let me = ctx.index();
    // b_2 (packed; P0 does not hold it), and this party's part of a
    // 3-out-of-3 sharing of d: P1 holds (d_1, d_2), P2 holds (d_2, d_0).
    let b2: &[u64] = match me {
        1 => &b.b,
        2 => &b.a,
        _ => &[],
    };
    let bit = |e: usize| (b2[e / 64] >> (e % 64)) & 1;
    let d_part = |e: usize| match me {
        1 => d.a[e].wrapping_add(d.b[e]),
        2 => d.b[e],
        _ => 0,
    };
    let mut u = match me {
        0 => {
            let raw: Vec<u64> = b.a.iter().zip(&b.b).map(|(x, y)| x ^ y).collect();
            let u0 = ctx.prg(Dir::Prev).u64_vec(total);
            let u1: Vec<u64> = (0..total)
                .map(|e| ((raw[e / 64] >> (e % 64)) & 1).wrapping_sub(u0[e]))
                .collect();
            ctx.send(Dir::Next, u1.clone())?;
            AShare { a: u0, b: u1 }
        }
        1 => AShare::zeros(total), // (u_1, u_2 = 0); u_1 arrives below
        _ => AShare {
            a: vec![0; total],
            b: ctx.prg(Dir::Next).u64_vec(total),
        },
    };
    // q = (1 - 2·b_2)·d, 3-out-of-3 (P0's part is zero).
    let q_terms: Vec<u64> = if me == 0 {
        vec![0; total]
    } else {
        (0..total)
            .map(|e| d_part(e).wrapping_mul(1u64.wrapping_sub(bit(e) << 1)))
            .collect()
    };
    let q = super::arith::reshare(ctx, q_terms)?;
    if me == 1 {
        u.a = ctx.recv(Dir::Prev, total)?;
    }
    let mut t = p.a.clone();
    for e0 in (0..total).step_by(n.max(1)) {
        for (i, t) in t.iter_mut().enumerate() {
            let e = e0 + i;
            let mut v = u.a[e]
                .wrapping_mul(q.a[e].wrapping_add(q.b[e]))
                .wrapping_add(u.b[e].wrapping_mul(q.a[e]));
            if me != 0 {
                v = v.wrapping_add(bit(e).wrapping_mul(d_part(e)));
            }
            *t = t.wrapping_add(v);
        }
    }
    if trunc == 0 {
        super::arith::reshare(ctx, t)
    } else {
        super::arith::reshare_trunc(ctx, t, trunc)
    }
}

/// `b ? x : y`, element-wise.  2 rounds.
pub fn select(ctx: &mut Ctx, b: &BShare, x: &AShare, y: &AShare) -> Result<AShare> {
    Ok(y.add(&mul_ba(ctx, b, &x.sub(y))?))
}

/// `max(x, 0)`, for `|x| < 2^(k-1)`.  `4 + ⌈log2(k-1)⌉` rounds.
pub fn relu(ctx: &mut Ctx, x: &AShare, k: u32) -> Result<AShare> {
    let positive = msb(ctx, x, k)?.not(ctx);
    mul_ba(ctx, &positive, x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::arith::tests::{deal, dec, enc, fx, open};
    use crate::mpc::bits::tests::{deal_bits, open_bits};
    use crate::mpc::local;
    use proptest::prelude::*;

    fn run_msb(x: &[u64], k: u32, seed: u64) -> (Vec<u64>, crate::mpc::CommStats) {
        let sx = deal(x, seed);
        let out = local::run(fx(), Some(seed), |ctx| {
            let before = ctx.stats();
            let m = msb(ctx, &sx[ctx.index()], k).unwrap();
            (m, ctx.stats() - before)
        });
        let bits = plane_bits(&open_bits(&out.clone().map(|o| o.0)), x.len());
        (bits, out[0].1)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn msb_is_the_sign(xs in proptest::collection::vec(any::<i32>(), 1..200), k in prop::sample::select(vec![33u32, 40, 64]), seed in any::<u64>()) {
            let x: Vec<u64> = xs.iter().map(|&v| v as i64 as u64).collect();
            let (bits, _) = run_msb(&x, k, seed);
            for (b, v) in bits.iter().zip(&xs) {
                prop_assert_eq!(*b, (*v < 0) as u64);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn coarse_msb_is_the_sign_outside_the_dropped_band(xs in proptest::collection::vec(-(1i64 << 40)..(1i64 << 40), 1..200), drop in 0u32..20, seed in any::<u64>()) {
            let k = 42 - drop.min(20);
            let x: Vec<u64> = xs.iter().map(|&v| v as u64).collect();
            let sx = deal(&x, seed);
            let out = local::run(fx(), Some(seed), |ctx| msb_coarse(ctx, &sx[ctx.index()], CompareWidth { drop, k }).unwrap());
            let bits = plane_bits(&open_bits(&out), x.len());
            for (b, v) in bits.iter().zip(&xs) {
                if *v < 0 || *v >= 1 << drop {
                    prop_assert_eq!(*b, (*v < 0) as u64, "x = {}", v);
                }
            }
        }
    }

    #[test]
    fn msb_edge_values_and_cost() {
        let k = 32;
        let vals: Vec<i64> = vec![0, 1, -1, (1 << 31) - 1, -(1 << 31), 12345, -12345];
        let x: Vec<u64> = vals.iter().map(|&v| v as u64).collect();
        let (bits, stats) = run_msb(&x, k, 7);
        assert_eq!(
            bits,
            vals.iter().map(|&v| (v < 0) as u64).collect::<Vec<_>>()
        );
        assert_eq!(stats.rounds, 2 + 5);
    }

    #[test]
    fn b2a_and_mul_ba_match_plaintext() {
        let n = 150;
        let bits: Vec<u64> = (0..n).map(|i| ((i * 7 + 3) % 5 == 0) as u64).collect();
        let mut packed = vec![0u64; words_for(n)];
        for (e, b) in bits.iter().enumerate() {
            packed[e / 64] |= b << (e % 64);
        }
        let sb = deal_bits(&packed, 11);
        let xs: Vec<f64> = (0..n).map(|i| i as f64 * 0.5 - 30.0).collect();
        let sx = deal(&enc(&xs), 12);
        let out = local::run(fx(), Some(5), |ctx| {
            let i = ctx.index();
            let b2a = b2a_bit(ctx, &sb[i], n).unwrap();
            let before = ctx.stats();
            let prod = mul_ba(ctx, &sb[i], &sx[i]).unwrap();
            (b2a, prod, ctx.stats() - before)
        });
        assert_eq!(open(&out.clone().map(|o| o.0)), bits);
        // Bit injection: 2 rounds, 7 words per element over the three parties.
        assert_eq!(out[0].2.rounds, 2);
        let words: u64 = out.iter().map(|o| o.2.bytes_sent).sum::<u64>() / 8;
        assert_eq!(words, 7 * n as u64);
        let got = dec(&open(&out.map(|o| o.1)));
        for e in 0..n {
            assert_eq!(got[e], if bits[e] == 1 { xs[e] } else { 0.0 });
        }
    }

    #[test]
    fn relu_matches_plaintext_within_nine_rounds() {
        let xs: Vec<f64> = (0..300).map(|i| (i as f64 - 150.0) * 0.731).collect();
        let sx = deal(&enc(&xs), 13);
        let out = local::run(fx(), Some(6), |ctx| {
            let before = ctx.stats();
            let y = relu(ctx, &sx[ctx.index()], 32).unwrap();
            (y, ctx.stats() - before)
        });
        let got = dec(&open(&out.clone().map(|o| o.0)));
        for (g, x) in got.iter().zip(&xs) {
            assert_eq!(*g, fx().decode(enc(&[x.max(0.0)])[0]));
        }
        assert!(out.iter().all(|o| o.1.rounds <= 9));
    }
}
