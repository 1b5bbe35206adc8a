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
use super::compare::{CompareWidth, inject_sum, msb_coarse, mul_ba};
use super::{Ctx, Result};
use std::borrow::Cow;

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
    let mut cand = Cow::Borrowed(x);
    let mut m = cols;
    while m > 1 {
        cand = Cow::Owned(if group == 2 {
            pair_level(ctx, &cand, rows, m, width)?
        } else {
            group_level(ctx, &cand, rows, m, width, group)?
        });
        m = m.div_ceil(group);
    }
    Ok(cand.into_owned())
}

/// A level of pairs: candidates `2i` and `2i + 1` of each row meet, the
/// winner is `x_j + [x_i ≥ x_j]·(x_i − x_j)` (one bit injection per pair),
/// and an odd candidate out passes after its row's winners — the layout
/// [`group_level`] gives for groups of two, without index lists.
fn pair_level(
    ctx: &mut Ctx,
    cand: &AShare,
    rows: usize,
    m: usize,
    width: CompareWidth,
) -> Result<AShare> {
    let half = m / 2;
    // x_i − x_j and x_j of every pair, row by row.
    let pairs = |v: &[u64]| {
        let (mut diff, mut right) = (
            Vec::with_capacity(rows * half),
            Vec::with_capacity(rows * half),
        );
        for row in v.chunks_exact(m) {
            for p in row[..2 * half].chunks_exact(2) {
                diff.push(p[0].wrapping_sub(p[1]));
                right.push(p[1]);
            }
        }
        (diff, right)
    };
    let ((da, ra), (db, rb)) = (pairs(&cand.a), pairs(&cand.b));
    let d = AShare { a: da, b: db };
    // ge = [x_i ≥ x_j] = not msb(x_i - x_j).
    let ge = msb_coarse(ctx, &d, width)?.not(ctx);
    let winners = inject_sum(ctx, &ge, &d, &AShare { a: ra, b: rb }, 0)?;
    if m % 2 == 0 {
        return Ok(winners);
    }
    let merge = |w: &[u64], c: &[u64]| {
        let mut out = Vec::with_capacity(rows * (half + 1));
        for (w, row) in w.chunks_exact(half).zip(c.chunks_exact(m)) {
            out.extend_from_slice(w);
            out.push(row[m - 1]);
        }
        out
    };
    Ok(AShare {
        a: merge(&winners.a, &cand.a),
        b: merge(&winners.b, &cand.b),
    })
}

/// A level of groups of up to `group` candidates (see the module docs).
fn group_level(
    ctx: &mut Ctx,
    cand: &AShare,
    rows: usize,
    m: usize,
    width: CompareWidth,
    group: usize,
) -> Result<AShare> {
    let sizes = group_sizes(m, group);
    // Every pair (i < j) of every group of every row, and where each
    // output of the level comes from.
    let (mut left, mut right) = (Vec::new(), Vec::new());
    let mut groups = Vec::new(); // (first candidate, size) of groups of ≥ 2
    let mut layout = Vec::with_capacity(rows * sizes.len());
    for r in 0..rows {
        let mut start = r * m;
        for &s in &sizes {
            if s == 1 {
                layout.push(Slot::Bye(start));
            } else {
                layout.push(Slot::Winner(groups.len()));
                groups.push((start, s));
                for i in start..start + s {
                    for j in i + 1..start + s {
                        left.push(i);
                        right.push(j);
                    }
                }
            }
            start += s;
        }
    }
    let winners = if groups.is_empty() {
        AShare::zeros(0)
    } else {
        let d = pair_differences(cand, &left, &right);
        let ge = msb_coarse(ctx, &d, width)?.not(ctx);
        group_winners(ctx, cand, &ge, &groups)?
    };
    let mut next = AShare {
        a: Vec::with_capacity(layout.len()),
        b: Vec::with_capacity(layout.len()),
    };
    for slot in layout {
        let (from, i) = match slot {
            Slot::Winner(g) => (&winners, g),
            Slot::Bye(c) => (cand, c),
        };
        next.a.push(from.a[i]);
        next.b.push(from.b[i]);
    }
    Ok(next)
}

/// Where an output of a tournament level comes from.
#[derive(Clone, Copy)]
enum Slot {
    /// The winner of the group with this index.
    Winner(usize),
    /// A candidate alone in its group.
    Bye(usize),
}

/// `x[left[p]] - x[right[p]]` for every pair `p` (local).
fn pair_differences(x: &AShare, left: &[usize], right: &[usize]) -> AShare {
    let diff = |v: &[u64]| {
        left.iter()
            .zip(right)
            .map(|(&i, &j)| v[i].wrapping_sub(v[j]))
            .collect()
    };
    AShare {
        a: diff(&x.a),
        b: diff(&x.b),
    }
}

/// The winner of each group of more than two candidates, given
/// `ge[p] = [x_i ≥ x_j]` for its pairs `p = (i < j)` in lexicographic order
/// (groups consecutive): a candidate wins when it beats all others of its
/// group, ties going to the lower index.
fn group_winners(
    ctx: &mut Ctx,
    cand: &AShare,
    ge: &BShare,
    groups: &[(usize, usize)],
) -> Result<AShare> {
    let lt_at = 64 * ge.words();
    let bits = BShare::concat(&[ge, &ge.not(ctx)]);
    let (mut lists, mut members) = (Vec::new(), Vec::new());
    let mut base = 0; // index of the group's first pair
    for &(start, s) in groups {
        let pair = |i: usize, j: usize| base + i * (2 * s - i - 1) / 2 + (j - i - 1);
        for i in 0..s {
            lists.push(
                (0..s)
                    .filter(|&j| j != i)
                    .map(|j| {
                        if i < j {
                            pair(i, j)
                        } else {
                            lt_at + pair(j, i)
                        }
                    })
                    .collect::<Vec<_>>(),
            );
            members.push(start + i);
        }
        base += s * (s - 1) / 2;
    }
    let winner = and_all(ctx, &bits, &lists)?;
    let picked = mul_ba(ctx, &winner, &cand.gather(&members))?;
    // Exactly one member of a group has a non-zero pick.
    let mut out = AShare::zeros(groups.len());
    let mut at = 0;
    for (g, &(_, s)) in groups.iter().enumerate() {
        for k in at..at + s {
            out.a[g] = out.a[g].wrapping_add(picked.a[k]);
            out.b[g] = out.b[g].wrapping_add(picked.b[k]);
        }
        at += s;
    }
    Ok(out)
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
