//! Row-wise maximum by a tournament with several comparisons per level.
//!
//! A level splits each row's candidates into groups of at most `group`;
//! every pair of a group is compared in one batched [`msb`] call, a
//! candidate wins when it beats all others of its group (an AND tree over
//! its `group - 1` bits; ties go to the lower index), and the winners are
//! picked by bit injection.  Rounds per level: `msb + ⌈log2(group-1)⌉ + 2`;
//! levels: `⌈log_group(cols)⌉`.  Larger groups trade bytes
//! (`(group-1)/2` comparisons per candidate) for rounds.
//!
//! Coarse comparisons ([`CompareWidth`] with `drop > 0`) may order near-ties
//! either way and are then not transitive, so a group of three could have
//! no winner or two; they are allowed with pairs only, where the result is
//! within `levels · 2^drop` ring units below the true maximum.

use super::arith::AShare;
use super::bits::{BShare, and_all};
use super::compare::{CompareWidth, msb_coarse, mul_ba};
use super::{Ctx, Result};

/// Balanced split of `m` candidates into groups of at most `group`.
fn group_sizes(m: usize, group: usize) -> Vec<usize> {
    let count = m.div_ceil(group);
    (0..count)
        .map(|g| m / count + usize::from(g < m % count))
        .collect()
}

/// Maximum of each row of a `rows × cols` row-major matrix, for
/// `|x_i - x_j| < 2^(drop+k-1)` (ring units).
pub fn max_rows(
    ctx: &mut Ctx,
    x: &AShare,
    rows: usize,
    cols: usize,
    width: CompareWidth,
    group: usize,
) -> Result<AShare> {
    assert!(group >= 2, "groups of at least two");
    assert!(
        group == 2 || width.drop == 0,
        "coarse comparisons are not transitive: use pairs"
    );
    assert_eq!(x.len(), rows * cols);
    let mut cand = x.clone();
    let mut m = cols;
    while m > 1 {
        let sizes = group_sizes(m, group);
        // Pairwise differences of every group of every row.
        let (mut left, mut right) = (Vec::new(), Vec::new());
        // For each candidate in a group of size ≥ 2: (bit position, negate?).
        let mut wins: Vec<Vec<(usize, bool)>> = Vec::new();
        let mut in_groups = Vec::new(); // candidates that need selecting
        let mut layout = Vec::new(); // per output: Ok(candidate) or Err(range in in_groups)
        for r in 0..rows {
            let mut start = r * m;
            for &s in &sizes {
                if s == 1 {
                    layout.push(Err(start));
                    start += 1;
                    continue;
                }
                let base_pair = left.len();
                let pair_pos = |i: usize, j: usize| {
                    // index of pair (i<j) in lexicographic order within the group
                    base_pair + i * (2 * s - i - 1) / 2 + (j - i - 1)
                };
                for i in 0..s {
                    for j in i + 1..s {
                        left.push(start + i);
                        right.push(start + j);
                    }
                }
                let first = in_groups.len();
                for i in 0..s {
                    let list = (0..s)
                        .filter(|&j| j != i)
                        .map(|j| {
                            if i < j {
                                (pair_pos(i, j), false)
                            } else {
                                (pair_pos(j, i), true)
                            }
                        })
                        .collect();
                    wins.push(list);
                    in_groups.push(start + i);
                }
                layout.push(Ok((first, s)));
                start += s;
            }
        }
        let next_m = sizes.len();
        if !left.is_empty() {
            let d = cand.gather(&left).sub(&cand.gather(&right));
            // ge = [x_i ≥ x_j] = not msb(x_i - x_j); lt = its complement.
            let ge = msb_coarse(ctx, &d, width)?.not(ctx);
            let picked = if group == 2 {
                // A pair needs one bit injection: (ge·(x_i − x_j), x_j) sum to the winner.
                let diff = mul_ba(ctx, &ge, &d)?;
                let mut both = Vec::with_capacity(2 * left.len());
                for (p, &j) in right.iter().enumerate() {
                    both.push(p);
                    both.push(left.len() + j);
                }
                AShare::concat(&[&diff, &cand]).gather(&both)
            } else {
                let lt = ge.not(ctx);
                let lt_at = 64 * ge.words();
                let bits = BShare::concat(&[&ge, &lt]);
                let lists: Vec<Vec<usize>> = wins
                    .iter()
                    .map(|l| {
                        l.iter()
                            .map(|&(p, neg)| if neg { lt_at + p } else { p })
                            .collect()
                    })
                    .collect();
                let winner = and_all(ctx, &bits, &lists)?;
                mul_ba(ctx, &winner, &cand.gather(&in_groups))?
            };
            let mut out = Vec::with_capacity(rows * next_m);
            for l in &layout {
                out.push(match *l {
                    Ok((first, s)) => {
                        let idx: Vec<usize> = (first..first + s).collect();
                        picked.gather(&idx).sum_runs(s)
                    }
                    Err(c) => cand.gather(&[c]),
                });
            }
            cand = AShare::concat(&out.iter().collect::<Vec<_>>());
        }
        m = next_m;
    }
    Ok(cand)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::arith::tests::{deal, dec, enc, fx, open};
    use crate::mpc::local;
    use proptest::prelude::*;

    const EXACT: CompareWidth = CompareWidth { drop: 0, k: 32 };

    #[test]
    fn coarse_pairwise_max_is_within_the_stated_bound() {
        // 196 values within 0.01 of each other plus spread: many near-ties.
        let xs: Vec<f64> = (0..2 * 196)
            .map(|i| ((i * 7919) % 197) as f64 * 0.003 + (i % 3) as f64 * 0.004 - 3.0)
            .collect();
        let sx = deal(&enc(&xs), 21);
        let width = CompareWidth::coarse(fx().frac_bits(), 6, 16);
        let out = local::run(fx(), Some(21), |ctx| {
            max_rows(ctx, &sx[ctx.index()], 2, 196, width, 2).unwrap()
        });
        let got = dec(&open(&out));
        let levels = 8.0; // 196 → 98 → 49 → 25 → 13 → 7 → 4 → 2 → 1
        for r in 0..2 {
            let want = xs[r * 196..(r + 1) * 196]
                .iter()
                .cloned()
                .fold(f64::MIN, f64::max);
            assert!(
                got[r] <= want + 1e-5 && got[r] >= want - levels / 64.0,
                "{} vs {want}",
                got[r]
            );
            // The result is one of the inputs.
            assert!(
                xs[r * 196..(r + 1) * 196]
                    .iter()
                    .any(|v| (v - got[r]).abs() < 1e-5)
            );
        }
    }

    #[test]
    fn groups_are_balanced() {
        assert_eq!(group_sizes(196, 14), vec![14; 14]);
        assert_eq!(group_sizes(7, 4), vec![4, 3]);
        assert_eq!(group_sizes(3, 2), vec![2, 1]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn row_max_matches_plaintext(rows in 1usize..4, cols in 1usize..40, group in 2usize..9, seed in any::<u64>(), ties in any::<bool>()) {
            let xs: Vec<f64> = (0..rows * cols)
                .map(|i| {
                    let v = ((i as u64).wrapping_mul(seed | 1) % 2000) as f64 / 50.0 - 20.0;
                    if ties { v.round() } else { v }
                })
                .collect();
            let sx = deal(&enc(&xs), seed);
            let out = local::run(fx(), Some(seed), |ctx| max_rows(ctx, &sx[ctx.index()], rows, cols, EXACT, group).unwrap());
            let got = dec(&open(&out));
            for r in 0..rows {
                let want = xs[r * cols..(r + 1) * cols].iter().cloned().fold(f64::MIN, f64::max);
                prop_assert!((got[r] - fx().decode(enc(&[want])[0])).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn rounds_per_level() {
        let xs: Vec<f64> = (0..196).map(|i| ((i * 37) % 196) as f64 * 0.1).collect();
        let sx = deal(&enc(&xs), 1);
        let out = local::run(fx(), Some(1), |ctx| {
            let before = ctx.stats();
            let m = max_rows(ctx, &sx[ctx.index()], 1, 196, EXACT, 14).unwrap();
            (m, (ctx.stats() - before).rounds)
        });
        assert_eq!(dec(&open(&out.clone().map(|o| o.0)))[0], 19.5);
        assert_eq!(out[0].1, 2 * (7 + 4 + 2));
    }
}
