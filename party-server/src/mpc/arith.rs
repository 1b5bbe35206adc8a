//! Arithmetic replicated shares over Z_2^64 and the protocols on them.
//!
//! Party `i` holds `(x_i, x_{i+1})` of `x = x_0 + x_1 + x_2`.  Linear
//! operations are local.  A product is first a local 3-out-of-3 sharing
//! `t_i = x_i y_i + x_i y_{i+1} + x_{i+1} y_i + α_i`, then turned back into a
//! replicated sharing: either plainly (1 round, every party sends one word per
//! element) or truncated at the same time (2 rounds, the same three words).
//!
//! Truncation is ABY3's probabilistic `Π_trunc1`: the value is split into two
//! addends, `t_0` (uniform, known to P0 and P2) and `t_1 + t_2` (known to P1
//! after the first round), which are shifted separately and one unit added
//! back (the two floors lose one unit on average).  The result is
//! `⌊z / 2^d⌋` or one more, except with probability `|z| / 2^64` (`z` being the
//! untruncated ring value): when the uniform addend lands within `|z|` of the
//! signed boundary the two addends wrap, and the result is off by `±2^(64-d)`.
//! For a fixed-point product of two values with `f` fraction bits,
//! `|z| = |v|·2^(2f)`, so a real result `v` fails with probability
//! `|v|·2^(2f-64)` (`|v|·3.7e-9` at `f = 18`; a U-Net activation of magnitude
//! 4 fails once in ~7·10^7 truncations).

use super::Result;
use super::bits::BShare;
use super::context::Ctx;
use super::transport::Dir;
use shared::PartyShares;

/// One party's pair of components of a shared vector.
#[derive(Clone, PartialEq, Eq)]
pub struct AShare {
    /// Component `x_i`.
    pub a: Vec<u64>,
    /// Component `x_{i+1}`.
    pub b: Vec<u64>,
}

/// Share values are secret: print only the length.
impl std::fmt::Debug for AShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AShare(len {})", self.a.len())
    }
}

impl From<PartyShares> for AShare {
    fn from(s: PartyShares) -> Self {
        AShare {
            a: s.own,
            b: s.next,
        }
    }
}

fn zip_map(x: &[u64], y: &[u64], f: impl Fn(u64, u64) -> u64) -> Vec<u64> {
    debug_assert_eq!(x.len(), y.len());
    x.iter().zip(y).map(|(&u, &v)| f(u, v)).collect()
}

/// Which of this party's two components carry a public value: P0's first
/// and P2's second, P1's neither, so that it counts once in
/// `x_0 + x_1 + x_2` (and in `x_0 ⊕ x_1 ⊕ x_2`).
pub fn carries_public(ctx: &Ctx) -> [bool; 2] {
    [ctx.index() == 0, ctx.index() == 2]
}

/// The slices one after another, allocated once (a `flat_map` collect
/// would grow the vector step by step, copying it each time).
pub fn concat_words<'a>(parts: impl Iterator<Item = &'a [u64]> + Clone) -> Vec<u64> {
    let mut out = Vec::with_capacity(parts.clone().map(<[u64]>::len).sum());
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// Arithmetic right shift of a two's-complement ring element.
#[inline]
pub fn shift_right(v: u64, d: u32) -> u64 {
    ((v as i64) >> d) as u64
}

impl AShare {
    pub fn zeros(n: usize) -> Self {
        AShare {
            a: vec![0; n],
            b: vec![0; n],
        }
    }

    pub fn len(&self) -> usize {
        self.a.len()
    }

    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }

    /// A public vector as a sharing: component 0 holds it, the others are 0.
    pub fn from_public(ctx: &Ctx, v: &[u64]) -> Self {
        let mut s = AShare::zeros(v.len());
        let [on_a, on_b] = carries_public(ctx);
        if on_a {
            s.a.copy_from_slice(v);
        }
        if on_b {
            s.b.copy_from_slice(v);
        }
        s
    }

    pub fn add(&self, o: &AShare) -> AShare {
        AShare {
            a: zip_map(&self.a, &o.a, u64::wrapping_add),
            b: zip_map(&self.b, &o.b, u64::wrapping_add),
        }
    }

    pub fn sub(&self, o: &AShare) -> AShare {
        AShare {
            a: zip_map(&self.a, &o.a, u64::wrapping_sub),
            b: zip_map(&self.b, &o.b, u64::wrapping_sub),
        }
    }

    pub fn neg(&self) -> AShare {
        AShare {
            a: self.a.iter().map(|v| v.wrapping_neg()).collect(),
            b: self.b.iter().map(|v| v.wrapping_neg()).collect(),
        }
    }

    /// Adds a public vector (ring encoded) to the shared one.
    pub fn add_public(&self, ctx: &Ctx, v: &[u64]) -> AShare {
        self.add(&AShare::from_public(ctx, v))
    }

    /// Adds the same public ring element to every entry.
    pub fn add_public_scalar(&self, ctx: &Ctx, c: u64) -> AShare {
        self.add_public_scalars_concat(ctx, &[c])
    }

    /// `x + c` for each public `c` in turn, concatenated (local): what
    /// comparing `x` with several thresholds needs, built in one buffer.
    pub fn add_public_scalars_concat(&self, ctx: &Ctx, cs: &[u64]) -> AShare {
        let n = self.len();
        let mut out = AShare {
            a: Vec::with_capacity(n * cs.len()),
            b: Vec::with_capacity(n * cs.len()),
        };
        let [on_a, on_b] = carries_public(ctx).map(u64::from);
        for &c in cs {
            let (ca, cb) = (c * on_a, c * on_b);
            out.a.extend(self.a.iter().map(|v| v.wrapping_add(ca)));
            out.b.extend(self.b.iter().map(|v| v.wrapping_add(cb)));
        }
        out
    }

    /// Multiplies every entry by a public ring element (no truncation).
    pub fn mul_public_scalar(&self, c: u64) -> AShare {
        AShare {
            a: self.a.iter().map(|v| v.wrapping_mul(c)).collect(),
            b: self.b.iter().map(|v| v.wrapping_mul(c)).collect(),
        }
    }

    /// Element-wise product with a public ring vector (no truncation).
    pub fn mul_public(&self, c: &[u64]) -> AShare {
        AShare {
            a: zip_map(&self.a, c, u64::wrapping_mul),
            b: zip_map(&self.b, c, u64::wrapping_mul),
        }
    }

    /// Concatenates sharings, so that one protocol call serves them all.
    pub fn concat(parts: &[&AShare]) -> AShare {
        AShare {
            a: concat_words(parts.iter().map(|p| p.a.as_slice())),
            b: concat_words(parts.iter().map(|p| p.b.as_slice())),
        }
    }

    /// The entries at positions `idx`, in that order (local).
    pub fn gather(&self, idx: &[usize]) -> AShare {
        AShare {
            a: idx.iter().map(|&i| self.a[i]).collect(),
            b: idx.iter().map(|&i| self.b[i]).collect(),
        }
    }

    /// Sums of consecutive runs of `len` entries (local).
    pub fn sum_runs(&self, len: usize) -> AShare {
        let sum = |v: &[u64]| {
            v.chunks(len)
                .map(|c| c.iter().fold(0u64, |s, x| s.wrapping_add(*x)))
                .collect()
        };
        AShare {
            a: sum(&self.a),
            b: sum(&self.b),
        }
    }

    /// Repeats every entry `times` times (local).
    pub fn repeat_each(&self, times: usize) -> AShare {
        let rep = |v: &[u64]| {
            let mut out = Vec::with_capacity(v.len() * times);
            for &x in v {
                out.extend(std::iter::repeat_n(x, times));
            }
            out
        };
        AShare {
            a: rep(&self.a),
            b: rep(&self.b),
        }
    }

    /// Splits a sharing into consecutive pieces of the given lengths.
    pub fn split(&self, lens: &[usize]) -> Vec<AShare> {
        let mut at = 0;
        lens.iter()
            .map(|&n| {
                let s = AShare {
                    a: self.a[at..at + n].to_vec(),
                    b: self.b[at..at + n].to_vec(),
                };
                at += n;
                s
            })
            .collect()
    }
}

/// The local 3-out-of-3 product terms `x_i y_i + x_i y_{i+1} + x_{i+1} y_i`.
pub(crate) fn product_terms(x: &AShare, y: &AShare) -> Vec<u64> {
    debug_assert_eq!(x.len(), y.len());
    (0..x.len())
        .map(|j| {
            x.a[j]
                .wrapping_mul(y.a[j].wrapping_add(y.b[j]))
                .wrapping_add(x.b[j].wrapping_mul(y.a[j]))
        })
        .collect()
}

/// Turns a 3-out-of-3 sharing `t` (before masking) into a replicated one:
/// mask with a zero-sharing, send to the previous party.  1 round.
pub fn reshare(ctx: &mut Ctx, mut t: Vec<u64>) -> Result<AShare> {
    let n = t.len();
    ctx.add_zero_share(&mut t);
    ctx.send(Dir::Prev, t.clone())?;
    let next = ctx.recv(Dir::Next, n)?;
    ctx.end_round();
    Ok(AShare { a: t, b: next })
}

/// Turns a 3-out-of-3 sharing `t` of `z` into a replicated sharing of
/// `z / 2^d` (probabilistic truncation, see the module docs).  2 rounds, one
/// word per element sent by each party.
pub fn reshare_trunc(ctx: &mut Ctx, mut t: Vec<u64>, d: u32) -> Result<AShare> {
    let n = t.len();
    ctx.add_chain_zero_share(&mut t);
    match ctx.index() {
        0 => {
            // y_0 = t_0 >> d (+1, centring), shared with P2; y_1 arrives from P1.
            let y0 = truncated_centred(&t, d);
            // Only an audit needs the addend after it is sent.
            let own = ctx.audited().then(|| t.clone());
            ctx.send(Dir::Prev, t)?;
            ctx.end_round();
            let y1 = recv_audited(ctx, n, own.as_deref())?;
            ctx.end_round();
            Ok(AShare { a: y0, b: y1 })
        }
        1 => {
            // y_1 = (t_1 + t_2) >> d - r, y_2 = r with r shared with P2.
            let t2 = ctx.recv(Dir::Next, n)?;
            ctx.end_round();
            let r = ctx.prg(Dir::Next).u64_vec(n);
            let s = zip_map(&t, &t2, u64::wrapping_add);
            let y1 = zip_map(&s, &r, |v, r| shift_right(v, d).wrapping_sub(r));
            send_audited(ctx, y1.clone(), s)?;
            ctx.end_round();
            Ok(AShare { a: y1, b: r })
        }
        _ => {
            ctx.send(Dir::Prev, t)?;
            let t0 = ctx.recv(Dir::Next, n)?;
            ctx.end_round();
            let r = ctx.prg(Dir::Prev).u64_vec(n);
            ctx.end_round();
            Ok(AShare {
                a: r,
                b: truncated_centred(&t0, d),
            })
        }
    }
}

/// `v >> d` plus one unit: the two floors of a split truncation lose
/// `1` unit on average, which would otherwise accumulate as a bias.
fn truncated_centred(v: &[u64], d: u32) -> Vec<u64> {
    v.iter()
        .map(|&v| shift_right(v, d).wrapping_add(1))
        .collect()
}

/// P1's truncated addend to P0 — with, in an audited run, its untruncated
/// addend too.
fn send_audited(ctx: &mut Ctx, mut y1: Vec<u64>, addend: Vec<u64>) -> Result<()> {
    if ctx.audited() {
        y1.extend(addend);
    }
    ctx.send(Dir::Prev, y1)
}

/// P0's side of [`send_audited`]: in an audited run, counts the elements
/// whose two addends wrap (signed overflow), i.e. failed truncations, and
/// sums their wrap probabilities `|z| / 2^64` (as `Σ |z|`).
fn recv_audited(ctx: &mut Ctx, n: usize, own_addend: Option<&[u64]>) -> Result<Vec<u64>> {
    let Some(own) = own_addend.filter(|_| ctx.audited()) else {
        return ctx.recv(Dir::Next, n);
    };
    let mut got = ctx.recv(Dir::Next, 2 * n)?;
    let other = got.split_off(n);
    let (mut fails, mut risk) = (0, 0);
    for (&a, &b) in own.iter().zip(&other) {
        fails += u64::from((a as i64).overflowing_add(b as i64).1);
        risk += u128::from((a.wrapping_add(b) as i64).unsigned_abs());
    }
    ctx.record_trunc_audit(fails, risk);
    Ok(got)
}

/// Offset making every supported value non-negative in
/// [`reshare_trunc_exact`]: `|z| < 2^62`.
const EXACT_OFFSET: u64 = 1 << 62;

/// Packs the top bit of every value, one bit per value.
fn top_bits(v: &[u64]) -> Vec<u64> {
    let mut out = vec![0u64; super::bits::words_for(v.len())];
    for (j, &x) in v.iter().enumerate() {
        out[j / 64] |= (x >> 63) << (j % 64);
    }
    out
}

/// [`reshare_trunc`] without the failure case, for `|z| < 2^62`: always
/// `⌊z/2^d⌋` or one more.  With `z' = z + 2^62 ∈ [0, 2^63)` split into the
/// addends `a = t_0` and `b = t_1 + t_2 + 2^62`, `a + b = z' + w·2^64` where
/// the carry is `w = msb(a) ∨ msb(b)` (bit 63 of `z'` is clear), so logical
/// shifts of the addends give `⌊z'/2^d⌋ + w·2^(64-d)` up to the usual unit.
/// P1 XOR-shares `msb(b)` beside its round-2 word, one AND and a B2A make
/// `w` arithmetic.  5 rounds; per element 3 words, 4 words of B2A and 4
/// bits — worth it where a few large values (row sums, group variances,
/// normalisations) would otherwise fail with probability `|z|/2^64`.
pub fn reshare_trunc_exact(ctx: &mut Ctx, mut t: Vec<u64>, d: u32) -> Result<AShare> {
    assert!((1..64).contains(&d), "truncation by {d} bits");
    let n = t.len();
    let w = super::bits::words_for(n);
    ctx.add_chain_zero_share(&mut t);
    let logical = |v: &[u64]| -> Vec<u64> { v.iter().map(|&x| (x >> d).wrapping_add(1)).collect() };
    let zeros = || vec![0u64; w];
    // (y, shares of msb(a), shares of msb(b)); components as in any BShare.
    let (y, ma, mb) = match ctx.index() {
        0 => {
            let y0 = logical(&t);
            let ma = top_bits(&t);
            ctx.send(Dir::Prev, t)?;
            ctx.end_round();
            let mut got = ctx.recv(Dir::Next, n + w)?;
            let c1 = got.split_off(n);
            ctx.end_round();
            (
                AShare { a: y0, b: got },
                BShare { a: ma, b: zeros() },
                BShare { a: zeros(), b: c1 },
            )
        }
        1 => {
            let t2 = ctx.recv(Dir::Next, n)?;
            ctx.end_round();
            let r = ctx.prg(Dir::Next).u64_vec(n);
            let b: Vec<u64> = (0..n)
                .map(|j| t[j].wrapping_add(t2[j]).wrapping_add(EXACT_OFFSET))
                .collect();
            let y1: Vec<u64> = (0..n).map(|j| (b[j] >> d).wrapping_sub(r[j])).collect();
            let c2 = ctx.prg(Dir::Next).u64_vec(w);
            let c1: Vec<u64> = top_bits(&b).iter().zip(&c2).map(|(m, c)| m ^ c).collect();
            let mut msg = y1.clone();
            msg.extend_from_slice(&c1);
            ctx.send(Dir::Prev, msg)?;
            ctx.end_round();
            (
                AShare { a: y1, b: r },
                BShare {
                    a: zeros(),
                    b: zeros(),
                },
                BShare { a: c1, b: c2 },
            )
        }
        _ => {
            ctx.send(Dir::Prev, t)?;
            let t0 = ctx.recv(Dir::Next, n)?;
            ctx.end_round();
            let r = ctx.prg(Dir::Prev).u64_vec(n);
            let c2 = ctx.prg(Dir::Prev).u64_vec(w);
            ctx.end_round();
            (
                AShare {
                    a: r,
                    b: logical(&t0),
                },
                BShare {
                    a: zeros(),
                    b: top_bits(&t0),
                },
                BShare { a: c2, b: zeros() },
            )
        }
    };
    // w = ¬(¬msb(a) ∧ ¬msb(b)).
    let carry = super::bits::and(ctx, &ma.not(ctx), &mb.not(ctx))?.not(ctx);
    let carry = super::compare::b2a_bit(ctx, &carry, n)?;
    Ok(y.sub(&carry.mul_public_scalar(1u64 << (64 - d)))
        .add_public_scalar(ctx, (EXACT_OFFSET >> d).wrapping_neg()))
}

/// Fixed-point-style product truncated by `d` bits that cannot wrap (see
/// [`reshare_trunc_exact`]).  5 rounds.
pub fn mul_trunc_exact(ctx: &mut Ctx, x: &AShare, y: &AShare, d: u32) -> Result<AShare> {
    reshare_trunc_exact(ctx, product_terms(x, y), d)
}

/// Probabilistic truncation of a replicated sharing by `d` bits.  1 round,
/// one word per element (P1 → P0).
pub fn trunc(ctx: &mut Ctx, x: &AShare, d: u32) -> Result<AShare> {
    let n = x.len();
    match ctx.index() {
        0 => {
            let y1 = recv_audited(ctx, n, Some(&x.a))?;
            ctx.end_round();
            Ok(AShare {
                a: truncated_centred(&x.a, d),
                b: y1,
            })
        }
        1 => {
            let r = ctx.prg(Dir::Next).u64_vec(n);
            let s = zip_map(&x.a, &x.b, u64::wrapping_add);
            let y1 = zip_map(&s, &r, |v, r| shift_right(v, d).wrapping_sub(r));
            send_audited(ctx, y1.clone(), s)?;
            ctx.end_round();
            Ok(AShare { a: y1, b: r })
        }
        _ => {
            let r = ctx.prg(Dir::Prev).u64_vec(n);
            ctx.end_round();
            Ok(AShare {
                a: r,
                b: truncated_centred(&x.b, d),
            })
        }
    }
}

/// Integer (ring) product, element-wise.  1 round.
pub fn mul(ctx: &mut Ctx, x: &AShare, y: &AShare) -> Result<AShare> {
    reshare(ctx, product_terms(x, y))
}

/// Fixed-point product, element-wise, truncated by the fraction bits.  2 rounds.
pub fn mul_fx(ctx: &mut Ctx, x: &AShare, y: &AShare) -> Result<AShare> {
    let d = ctx.frac_bits();
    mul_trunc(ctx, x, y, d)
}

/// Element-wise product truncated by `d` bits (for operands carrying extra
/// fraction bits).  2 rounds.
pub fn mul_trunc(ctx: &mut Ctx, x: &AShare, y: &AShare, d: u32) -> Result<AShare> {
    reshare_trunc(ctx, product_terms(x, y), d)
}

/// Fixed-point square.  2 rounds.
pub fn square_fx(ctx: &mut Ctx, x: &AShare) -> Result<AShare> {
    let t = zip_map(&x.a, &x.b, |a, b| {
        a.wrapping_mul(a.wrapping_add(b.wrapping_mul(2)))
    });
    let d = ctx.frac_bits();
    reshare_trunc(ctx, t, d)
}

/// Shapes of a matrix product `X (m×k) · Y`, with `Y` given as `k×n`, or
/// transposed as `n×k` (attention's `Q·K^T`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatShape {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub y_transposed: bool,
}

/// Fixed-point matrix product, truncated.  The local 3-out-of-3 term is
/// `X_i·(Y_i + Y_{i+1}) + X_{i+1}·Y_i`: two ring GEMMs.  2 rounds, three
/// words per output element in total.
pub fn matmul_fx(ctx: &mut Ctx, x: &AShare, y: &AShare, s: MatShape) -> Result<AShare> {
    matmul_batched_fx(ctx, x, y, s, 1)
}

/// `batches` independent products of the same shape (operands stored one
/// after another), sharing one resharing: still 2 rounds.
pub fn matmul_batched_fx(
    ctx: &mut Ctx,
    x: &AShare,
    y: &AShare,
    s: MatShape,
    batches: usize,
) -> Result<AShare> {
    let (xl, yl, tl) = (s.m * s.k, s.k * s.n, s.m * s.n);
    assert_eq!(x.len(), batches * xl, "X is not batches × m×k");
    assert_eq!(y.len(), batches * yl, "Y is not batches × k×n");
    let y_sum = zip_map(&y.a, &y.b, u64::wrapping_add);
    let mut t = vec![0u64; batches * tl];
    let gemm = crate::gemm::Gemm {
        b_transposed: s.y_transposed,
        ..Default::default()
    };
    let acc = crate::gemm::Gemm {
        accumulate: true,
        ..gemm
    };
    for i in 0..batches {
        let (xs, ys, ts) = (
            i * xl..(i + 1) * xl,
            i * yl..(i + 1) * yl,
            i * tl..(i + 1) * tl,
        );
        gemm.run(
            s.m,
            s.k,
            s.n,
            &x.a[xs.clone()],
            &y_sum[ys.clone()],
            &mut t[ts.clone()],
        );
        acc.run(s.m, s.k, s.n, &x.b[xs], &y.a[ys], &mut t[ts]);
    }
    let d = ctx.frac_bits();
    reshare_trunc(ctx, t, d)
}

/// Sums of squares over consecutive runs of `len` entries, truncated by the
/// fraction bits.  The squares stay in local 3-out-of-3 form at double
/// scale and are summed before the single truncation, so only one word per
/// run is sent and the result carries one rounding, not one per square.
/// The truncation is exact ([`reshare_trunc_exact`]): a group's sum is
/// large and would fail with probability `Σx²·2^(2f-64)`.  5 rounds.
/// Requires `Σ x² · 2^(2f) < 2^62` per run.
pub fn sum_squares_runs(ctx: &mut Ctx, x: &AShare, len: usize) -> Result<AShare> {
    let t: Vec<u64> =
        x.a.chunks(len)
            .zip(x.b.chunks(len))
            .map(|(a, b)| {
                a.iter().zip(b).fold(0u64, |acc, (&u, &v)| {
                    acc.wrapping_add(u.wrapping_mul(u.wrapping_add(v.wrapping_mul(2))))
                })
            })
            .collect();
    let d = ctx.frac_bits();
    reshare_trunc_exact(ctx, t, d)
}

/// Multiplies by public fixed-point constants (already encoded), truncating.  1 round.
pub fn mul_public_fx(ctx: &mut Ctx, x: &AShare, c: &[u64]) -> Result<AShare> {
    let d = ctx.frac_bits();
    trunc(ctx, &x.mul_public(c), d)
}

/// Multiplies by one public real constant, truncating.  1 round.
pub fn mul_public_scalar_fx(ctx: &mut Ctx, x: &AShare, c: f64) -> Result<AShare> {
    let d = ctx.frac_bits();
    let c = ctx
        .fx()
        .encode(c)
        .expect("public constant within fixed-point range");
    trunc(ctx, &x.mul_public_scalar(c), d)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mpc::local;
    use proptest::prelude::*;
    use shared::FixedPoint;

    pub use crate::mpc::local::{deal, open};

    /// The protocols' unit tests run at the paper's 18 fraction bits (the
    /// product default is lower; the sampling tests use it).
    pub fn fx() -> FixedPoint {
        FixedPoint::new(18).expect("18 fraction bits")
    }

    pub fn enc(xs: &[f64]) -> Vec<u64> {
        fx().encode_slice(xs).unwrap()
    }

    pub fn dec(v: &[u64]) -> Vec<f64> {
        fx().decode_slice(v)
    }

    #[test]
    fn local_ops_match_plaintext() {
        let (x, y) = (vec![5u64, 7, u64::MAX], vec![1u64, 2, 3]);
        let (sx, sy) = (deal(&x, 1), deal(&y, 2));
        let out = local::run(fx(), Some(1), |ctx| {
            let i = ctx.index();
            let s = sx[i].add(&sy[i]).sub(&sy[i].mul_public_scalar(3)).neg();
            s.add_public(ctx, &[1, 1, 1]).add_public_scalar(ctx, 10)
        });
        let want: Vec<u64> = (0..3)
            .map(|j| {
                x[j].wrapping_add(y[j])
                    .wrapping_sub(y[j].wrapping_mul(3))
                    .wrapping_neg()
                    .wrapping_add(11)
            })
            .collect();
        assert_eq!(open(&out), want);
    }

    #[test]
    fn integer_mul_is_exact_and_costs_one_round() {
        let x: Vec<u64> = (0..100).map(|i| i * 0x1234_5678_9abc).collect();
        let y: Vec<u64> = (0..100).map(|i| u64::MAX - i * 77).collect();
        let (sx, sy) = (deal(&x, 3), deal(&y, 4));
        let out = local::run(fx(), Some(2), |ctx| {
            let before = ctx.stats();
            let z = mul(ctx, &sx[ctx.index()], &sy[ctx.index()]).unwrap();
            (z, ctx.stats() - before)
        });
        let want: Vec<u64> = x.iter().zip(&y).map(|(a, b)| a.wrapping_mul(*b)).collect();
        assert_eq!(open(&out.clone().map(|o| o.0)), want);
        for (_, st) in &out {
            assert_eq!(st.rounds, 1);
            assert_eq!(st.bytes_sent, 8 * 100);
        }
    }

    #[test]
    fn fixed_point_mul_costs_two_rounds_and_three_words() {
        let x = enc(&[1.5; 64]);
        let (sx, sy) = (deal(&x, 5), deal(&x, 6));
        let out = local::run(fx(), Some(3), |ctx| {
            let before = ctx.stats();
            mul_fx(ctx, &sx[ctx.index()], &sy[ctx.index()]).unwrap();
            ctx.stats() - before
        });
        assert!(out.iter().all(|s| s.rounds == 2));
        assert_eq!(out.iter().map(|s| s.bytes_sent).sum::<u64>(), 3 * 8 * 64);
    }

    proptest! {
        // Fixed proptest seed: truncation fails with probability |v|·3.7e-9
        // per element (tested separately below), so a random run could hit a
        // failure once in ~10^4 runs; a fixed seed keeps the test exact.
        #![proptest_config(ProptestConfig { cases: 16, rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed), ..ProptestConfig::default() })]
        /// Error bound: truncation is exact up to one unit in the last place
        /// (2^-18) plus the rounding of the inputs.
        #[test]
        fn fixed_point_mul_matches_plaintext(xs in proptest::collection::vec(-30.0f64..30.0, 1..40),
                                             ys in proptest::collection::vec(-30.0f64..30.0, 40),
                                             seed in any::<u64>()) {
            let ys = &ys[..xs.len()];
            let (sx, sy) = (deal(&enc(&xs), seed), deal(&enc(ys), seed ^ 1));
            let out = local::run(fx(), Some(seed), |ctx| {
                let i = ctx.index();
                let p = mul_fx(ctx, &sx[i], &sy[i]).unwrap();
                let sq = square_fx(ctx, &sx[i]).unwrap();
                let c = mul_public_scalar_fx(ctx, &sx[i], -0.75).unwrap();
                (p, sq, c)
            });
            let ulp = 1.0 / fx().scale();
            let got = dec(&open(&out.clone().map(|o| o.0)));
            let sq = dec(&open(&out.clone().map(|o| o.1)));
            let c = dec(&open(&out.map(|o| o.2)));
            for j in 0..xs.len() {
                let (x, y) = (fx().decode(enc(&[xs[j]])[0]), fx().decode(enc(&[ys[j]])[0]));
                prop_assert!((got[j] - x * y).abs() <= 2.0 * ulp, "{} vs {}", got[j], x * y);
                prop_assert!((sq[j] - x * x).abs() <= 2.0 * ulp);
                prop_assert!((c[j] + 0.75 * x).abs() <= 2.0 * ulp);
            }
        }
    }

    #[test]
    fn matmul_matches_plaintext_both_layouts() {
        let (m, k, n) = (5, 7, 3);
        let xs: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin() * 3.0).collect();
        let ys: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.11).cos() * 2.0).collect();
        let yt: Vec<f64> = (0..n * k).map(|i| ys[(i % k) * n + i / k]).collect();
        let (sx, sy, syt) = (deal(&enc(&xs), 1), deal(&enc(&ys), 2), deal(&enc(&yt), 3));
        let out = local::run(fx(), Some(7), |ctx| {
            let i = ctx.index();
            let shape = MatShape {
                m,
                k,
                n,
                y_transposed: false,
            };
            let a = matmul_fx(ctx, &sx[i], &sy[i], shape).unwrap();
            let shape_t = MatShape {
                y_transposed: true,
                ..shape
            };
            (a, matmul_fx(ctx, &sx[i], &syt[i], shape_t).unwrap())
        });
        let (a, b) = (
            dec(&open(&out.clone().map(|o| o.0))),
            dec(&open(&out.map(|o| o.1))),
        );
        let q = |v: f64| fx().decode(enc(&[v])[0]);
        for r in 0..m {
            for c in 0..n {
                let want: f64 = (0..k).map(|j| q(xs[r * k + j]) * q(ys[j * n + c])).sum();
                // One truncation of the exact ring sum: floor, or one less.
                let ulp = 1.0 / fx().scale();
                assert!((a[r * n + c] - want).abs() <= 2.0 * ulp);
                assert!((b[r * n + c] - want).abs() <= 2.0 * ulp);
            }
        }
    }

    /// The exact truncation never wraps, even where the probabilistic one
    /// fails one time in 8 (|z| = 2^61).
    #[test]
    fn exact_truncation_never_wraps() {
        let n = 4000;
        let vals: Vec<i64> = (0..n as i64)
            .map(|i| ((i * 7919) % 4001 - 2000) * (1i64 << 50) + i)
            .collect();
        let x: Vec<u64> = vals.iter().map(|&v| v as u64).collect();
        let one = deal(&vec![1u64; n], 3);
        let sx = deal(&x, 4);
        let out = local::run(fx(), Some(4), |ctx| {
            let i = ctx.index();
            let before = ctx.stats();
            let y = mul_trunc_exact(ctx, &sx[i], &one[i], 18).unwrap();
            (y, ctx.stats() - before)
        });
        let got = open(&out.clone().map(|o| o.0));
        for (g, v) in got.iter().zip(&vals) {
            let want = v >> 18;
            let diff = (*g as i64).wrapping_sub(want);
            assert!(
                diff == 0 || diff == 1,
                "{v}: got {}, want {want}",
                *g as i64
            );
        }
        assert_eq!(out[0].1.rounds, 5);
    }

    /// The failure rate of probabilistic truncation follows |z| / 2^64: with
    /// a deliberately huge operand (|z| = 2^58) about 1/64 of the elements
    /// fail; each failure is off by about 2^(64-18) units.
    #[test]
    fn truncation_failure_rate_matches_the_bound() {
        let n = 20_000;
        let z = 1u64 << 58;
        let x = vec![z; n];
        let sx = deal(&x, 9);
        let out = local::run(fx(), Some(9), |ctx| {
            trunc(ctx, &sx[ctx.index()], 18).unwrap()
        });
        let got = open(&out);
        let want = z >> 18;
        let fails = got
            .iter()
            .filter(|&&v| v.wrapping_sub(want).wrapping_add(1) > 2)
            .count();
        let rate = fails as f64 / n as f64;
        let bound = z as f64 / 2f64.powi(64);
        assert!(
            rate > bound * 0.7 && rate < bound * 1.3,
            "rate {rate} vs bound {bound}"
        );
    }

    /// The truncation audit counts exactly the wrapped elements, and its
    /// risk is exactly `Σ |z|` (the split's addends always sum to z).
    #[test]
    fn audit_counts_wraps_and_their_expected_number() {
        let n = 20_000;
        let z = 1u64 << 58;
        let sx = deal(&vec![z; n], 10);
        let out = local::run_audited(fx(), Some(10), |ctx| {
            let before = ctx.stats();
            let y = trunc(ctx, &sx[ctx.index()], 18).unwrap();
            (y, ctx.stats() - before)
        });
        let got = open(&out.clone().map(|o| o.0));
        let want = z >> 18;
        let wrapped = got
            .iter()
            .filter(|&&v| v.wrapping_sub(want).wrapping_add(1) > 2)
            .count() as u64;
        let stats = out[0].1;
        assert!(wrapped > 0);
        assert_eq!(stats.trunc_failures, wrapped);
        assert_eq!(stats.trunc_risk, n as u128 * u128::from(z));
        let expected = crate::mpc::expected_trunc_failures(stats.trunc_risk);
        assert_eq!(expected, n as f64 / 64.0);
    }
}
