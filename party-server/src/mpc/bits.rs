//! Boolean replicated shares, bit-packed 64 to a word.
//!
//! Comparisons use a bit-sliced layout: for `n` values of `k` bits, plane `j`
//! holds bit `j` of every value (value `e` at bit `e % 64` of word `e / 64`),
//! so one AND call on whole planes serves every value and every position at
//! once, and a carry tree can drop planes as it goes.

use super::Result;
use super::arith::{carries_public, concat_words};
use super::context::Ctx;
use super::transport::Dir;

/// One party's pair of components of a boolean-shared bit vector.
#[derive(Clone, PartialEq, Eq)]
pub struct BShare {
    pub a: Vec<u64>,
    pub b: Vec<u64>,
}

impl std::fmt::Debug for BShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BShare({} words)", self.a.len())
    }
}

impl BShare {
    pub fn words(&self) -> usize {
        self.a.len()
    }

    pub fn xor(&self, o: &BShare) -> BShare {
        BShare {
            a: self.a.iter().zip(&o.a).map(|(x, y)| x ^ y).collect(),
            b: self.b.iter().zip(&o.b).map(|(x, y)| x ^ y).collect(),
        }
    }

    /// Complements every bit (XOR with public ones on component 0).
    pub fn not(&self, ctx: &Ctx) -> BShare {
        self.xor_public(ctx, &vec![u64::MAX; self.words()])
    }

    /// XOR with a public bit vector (on the components that carry public
    /// values, see [`carries_public`]).
    pub fn xor_public(&self, ctx: &Ctx, mask: &[u64]) -> BShare {
        let mut s = self.clone();
        let [on_a, on_b] = carries_public(ctx);
        for (comp, on) in [(&mut s.a, on_a), (&mut s.b, on_b)] {
            if on {
                comp.iter_mut().zip(mask).for_each(|(w, m)| *w ^= m);
            }
        }
        s
    }

    /// The bits at positions `idx`, packed in that order.  Local: XOR
    /// sharing is bitwise, so moving bits moves their shares.
    pub fn gather(&self, idx: &[usize]) -> BShare {
        let pick = |src: &[u64]| {
            let mut out = vec![0u64; words_for(idx.len())];
            for (o, &i) in idx.iter().enumerate() {
                out[o / 64] |= ((src[i / 64] >> (i % 64)) & 1) << (o % 64);
            }
            out
        };
        BShare {
            a: pick(&self.a),
            b: pick(&self.b),
        }
    }

    /// Word range `[from, to)` of the packed bits.
    pub fn slice(&self, from: usize, to: usize) -> BShare {
        let mut s = BShare::with_capacity(to - from);
        s.extend_from(self, from, to);
        s
    }

    /// An empty sharing with room for `words` words.
    pub fn with_capacity(words: usize) -> BShare {
        BShare {
            a: Vec::with_capacity(words),
            b: Vec::with_capacity(words),
        }
    }

    /// Appends words `[from, to)` of `src`.
    pub fn extend_from(&mut self, src: &BShare, from: usize, to: usize) {
        self.a.extend_from_slice(&src.a[from..to]);
        self.b.extend_from_slice(&src.b[from..to]);
    }

    /// Appends `len` words of `x` from `at_x` XORed with those of `y` from
    /// `at_y`.
    pub fn extend_xor(&mut self, x: &BShare, at_x: usize, y: &BShare, at_y: usize, len: usize) {
        for (dst, xs, ys) in [(&mut self.a, &x.a, &y.a), (&mut self.b, &x.b, &y.b)] {
            let (xs, ys) = (&xs[at_x..at_x + len], &ys[at_y..at_y + len]);
            dst.extend(xs.iter().zip(ys).map(|(u, v)| u ^ v));
        }
    }

    /// Keeps the first `words` words.
    pub fn truncate(&mut self, words: usize) {
        self.a.truncate(words);
        self.b.truncate(words);
    }

    pub fn concat(parts: &[&BShare]) -> BShare {
        BShare {
            a: concat_words(parts.iter().map(|p| p.a.as_slice())),
            b: concat_words(parts.iter().map(|p| p.b.as_slice())),
        }
    }
}

/// Bitwise AND of two boolean sharings.  1 round, one word per word.
pub fn and(ctx: &mut Ctx, x: &BShare, y: &BShare) -> Result<BShare> {
    let n = x.words();
    debug_assert_eq!(n, y.words());
    let mut t: Vec<u64> = (0..n)
        .map(|j| (x.a[j] & (y.a[j] ^ y.b[j])) ^ (x.b[j] & y.a[j]))
        .collect();
    ctx.xor_zero_share(&mut t);
    ctx.send(Dir::Prev, t.clone())?;
    let next = ctx.recv(Dir::Next, n)?;
    ctx.end_round();
    Ok(BShare { a: t, b: next })
}

/// AND of each list of bit positions of `bits` (lists must be non-empty),
/// packed one result per list.  A balanced tree over all lists at once:
/// `⌈log2(longest list)⌉` rounds.
pub fn and_all(ctx: &mut Ctx, bits: &BShare, lists: &[Vec<usize>]) -> Result<BShare> {
    let mut cur = bits.clone();
    let mut lists: Vec<Vec<usize>> = lists.to_vec();
    while lists.iter().any(|l| l.len() > 1) {
        let (mut left, mut right, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        for l in &lists {
            for pair in l.chunks(2) {
                match pair {
                    [x, y] => {
                        left.push(*x);
                        right.push(*y);
                    }
                    [x] => rest.push(*x),
                    _ => unreachable!("chunks of two"),
                }
            }
        }
        let prod = and(ctx, &cur.gather(&left), &cur.gather(&right))?;
        let rest_at = 64 * prod.words();
        cur = BShare::concat(&[&prod, &cur.gather(&rest)]);
        let (mut p, mut r) = (0, 0);
        for l in lists.iter_mut() {
            let pairs = l.len() / 2;
            let odd = l.len() % 2 == 1;
            l.clear();
            l.extend(p..p + pairs);
            p += pairs;
            if odd {
                l.push(rest_at + r);
                r += 1;
            }
        }
    }
    let firsts: Vec<usize> = lists.iter().map(|l| l[0]).collect();
    Ok(cur.gather(&firsts))
}

/// Transposes a 64×64 bit matrix in place: afterwards bit `e` of row `j` is
/// bit `j` of the former row `e`.
pub fn transpose64(m: &mut [u64; 64]) {
    transpose64_low(m, 64);
}

/// The first `k` rows of [`transpose64`] for a matrix whose bits from `k`
/// up are zero (later rows are left unspecified).  Each stage of width `w`
/// swaps blocks of `w` rows; once `k ≤ w`, the lower block of the live rows
/// can only receive zero bits, so it drops out: for `k = 16` a third of the
/// full network's work.
pub fn transpose64_low(m: &mut [u64; 64], k: usize) {
    let mut width = 32;
    let mut mask: u64 = 0x0000_0000_FFFF_FFFF;
    let mut live = 64;
    while width != 0 {
        if k <= width && live == 2 * width {
            // Rows r + width hold no bit at or above `width` within each
            // 2·width group, and r none above it either: a plain merge.
            for r in 0..width {
                m[r] |= (m[r + width] & mask) << width;
            }
            live = width;
        } else {
            for row in (0..live).step_by(2 * width) {
                for r in row..row + width {
                    let t = ((m[r] >> width) ^ m[r + width]) & mask;
                    m[r] ^= t << width;
                    m[r + width] ^= t;
                }
            }
        }
        width >>= 1;
        mask ^= mask << width;
    }
}

/// Number of 64-bit words that hold `n` bits.
pub fn words_for(n: usize) -> usize {
    n.div_ceil(64)
}

/// Bit-slices the low `k` bits of `values`: `k` planes of `words_for(n)`
/// words, concatenated plane after plane.
pub fn to_planes(values: &[u64], k: usize) -> Vec<u64> {
    let w = words_for(values.len());
    let mut planes = vec![0u64; k * w];
    let low = if k >= 64 { u64::MAX } else { (1u64 << k) - 1 };
    let mut block = [0u64; 64];
    for (bi, chunk) in values.chunks(64).enumerate() {
        for (b, &v) in block.iter_mut().zip(chunk) {
            *b = v & low;
        }
        block[chunk.len()..].fill(0);
        transpose64_low(&mut block, k);
        for j in 0..k {
            planes[j * w + bi] = block[j];
        }
    }
    planes
}

/// Unpacks one plane into per-value bits (0 or 1).
pub fn plane_bits(plane: &[u64], n: usize) -> Vec<u64> {
    (0..n).map(|e| (plane[e / 64] >> (e % 64)) & 1).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mpc::local;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    use shared::FixedPoint;

    pub use crate::mpc::local::{deal_bits, open_bits};

    #[test]
    fn transpose_matches_naive() {
        let mut rng = StdRng::seed_from_u64(1);
        let orig: [u64; 64] = std::array::from_fn(|_| rng.random());
        let mut m = orig;
        transpose64(&mut m);
        for (j, row) in m.iter().enumerate() {
            for (e, col) in orig.iter().enumerate() {
                assert_eq!((row >> e) & 1, (col >> j) & 1);
            }
        }
    }

    #[test]
    fn low_transpose_matches_the_full_one_on_its_rows() {
        let mut rng = StdRng::seed_from_u64(2);
        for k in 1..=64 {
            let low = if k == 64 { u64::MAX } else { (1u64 << k) - 1 };
            let orig: [u64; 64] = std::array::from_fn(|_| rng.random::<u64>() & low);
            let (mut full, mut part) = (orig, orig);
            transpose64(&mut full);
            transpose64_low(&mut part, k);
            assert_eq!(full[..k], part[..k], "k = {k}");
        }
    }

    #[test]
    fn planes_hold_bit_j_of_value_e() {
        let values: Vec<u64> = (0..130u64).map(|i| i * 0x9e37_79b9 + 3).collect();
        let p = to_planes(&values, 40);
        let w = words_for(130);
        for j in 0..40 {
            assert_eq!(
                plane_bits(&p[j * w..(j + 1) * w], 130),
                values.iter().map(|v| (v >> j) & 1).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn and_all_over_lists_of_any_length() {
        let x: Vec<u64> = vec![0xffff_ffff_ffff_fff7, 0x0f];
        let sx = deal_bits(&x, 5);
        let lists: Vec<Vec<usize>> = vec![
            vec![0, 1, 2],
            vec![0, 3],
            vec![4, 5, 6, 7, 8, 9, 10],
            vec![64, 65, 66, 67],
            vec![64, 68],
            vec![5],
        ];
        let out = local::run(FixedPoint::default(), Some(4), |ctx| {
            let before = ctx.stats();
            let r = and_all(ctx, &sx[ctx.index()], &lists).unwrap();
            (r, (ctx.stats() - before).rounds)
        });
        let got = open_bits(&out.clone().map(|o| o.0))[0];
        let bit = |i: usize| (x[i / 64] >> (i % 64)) & 1;
        for (o, l) in lists.iter().enumerate() {
            let want = l.iter().all(|&i| bit(i) == 1) as u64;
            assert_eq!((got >> o) & 1, want, "list {o}");
        }
        assert_eq!(out[0].1, 3);
    }

    #[test]
    fn and_xor_not_match_plaintext() {
        let x: Vec<u64> = (0..9).map(|i| 0xdead_beef_u64.rotate_left(i * 7)).collect();
        let y: Vec<u64> = (0..9)
            .map(|i| 0x0123_4567_89ab_cdef_u64.rotate_left(i))
            .collect();
        let (sx, sy) = (deal_bits(&x, 2), deal_bits(&y, 3));
        let out = local::run(FixedPoint::default(), Some(4), |ctx| {
            let i = ctx.index();
            let z = and(ctx, &sx[i], &sy[i]).unwrap();
            (z.clone(), z.xor(&sx[i]).not(ctx))
        });
        let want_and: Vec<u64> = x.iter().zip(&y).map(|(a, b)| a & b).collect();
        assert_eq!(open_bits(&out.clone().map(|o| o.0)), want_and);
        let want: Vec<u64> = want_and.iter().zip(&x).map(|(a, b)| !(a ^ b)).collect();
        assert_eq!(open_bits(&out.map(|o| o.1)), want);
    }
}
