//! Wrapping `u64` matrix multiplication over Z_2^64: the local work of every
//! secure matmul (`X_i·(Y_i + Y_{i+1}) + X_{i+1}·Y_i`, two products into one
//! accumulator) and of attention scores (`Q·Kᵀ`).
//!
//! All matrices are row-major and all arithmetic wraps, so the result equals
//! the exact integer product reduced mod 2^64.
//!
//! Design, GotoBLAS/BLIS style: for each `KC`-deep slice of the shared
//! dimension, B is packed once into `NR`-wide column panels and each
//! `MC`-row block of A into `MR`-tall row panels, so a micro-kernel
//! streams both operands contiguously and keeps an `MR×NR` tile of C in
//! registers for the whole slice. Row blocks of C are independent, so they
//! run on rayon's pool when the product is large enough to pay for it;
//! the packed B is shared read-only by all of them.
//!
//! AVX2 has no 64-bit lane multiply. Writing `x = x_hi·2^32 + x_lo`,
//! `a·b mod 2^64 = a_lo·b_lo + ((a_hi·b_lo + a_lo·b_hi) mod 2^32)·2^32`.
//! The kernel gets `a_lo·b_lo` from `_mm256_mul_epu32` and both cross terms
//! from one `_mm256_mullo_epi32` of B against a broadcast of `a` with its
//! 32-bit halves swapped, which packing stores next to `a` so the inner loop
//! has no shuffles (A is the operand packed less often per multiply-add).
//! The cross terms are summed over the whole slice in 32-bit lanes and
//! shifted into place once at the end: two multiplies and two adds per four
//! multiply-adds, the minimum with AVX2.

use std::cell::Cell;
use std::thread::LocalKey;

use rayon::prelude::*;

/// Rows of C per micro-tile (divides the usual power-of-two row counts).
const MR: usize = 4;
/// Columns of C per micro-tile: one AVX2 vector of four `u64`.
const NR: usize = 4;
/// Packed A holds, per k, the `MR` values of a column and then the same values
/// with their 32-bit halves swapped (the operand of the cross-term multiply).
const A_STEP: usize = 2 * MR;
/// Depth of one packed slice: an A panel (`KC·A_STEP` words, 16 KiB) and a B
/// panel (8 KiB) fit the 32 KiB L1 together.
const KC: usize = 256;
/// Rows of A packed at once: `MC·KC·2` words (512 KiB) stay in L2.
const MC: usize = 128;
/// Columns of B packed at once: a packed `KC×NC` block (4 MiB) stays in L3.
const NC: usize = 2048;
/// Panels of B packed per parallel task.
const PACK_PANELS: usize = 16;
/// Panels of row-major B packed side by side (see `BSource::pack`).
const PACK_GROUP: usize = 8;
/// Below this many multiply-adds (~50 µs on one core) threading costs more
/// than it saves.
const PAR_MIN_MACS: usize = 1 << 19;

/// `c = a·b` for row-major `a` (m×k), `b` (k×n), `c` (m×n), threaded when large.
pub fn gemm(m: usize, k: usize, n: usize, a: &[u64], b: &[u64], c: &mut [u64]) {
    Gemm::default().run(m, k, n, a, b, c);
}

/// `c += a·b`: the form the secure matmul needs to sum two products in place.
pub fn gemm_acc(m: usize, k: usize, n: usize, a: &[u64], b: &[u64], c: &mut [u64]) {
    Gemm {
        accumulate: true,
        ..Gemm::default()
    }
    .run(m, k, n, a, b, c);
}

/// `c = a·btᵀ` with `bt` given as n×k row-major (e.g. `Q·Kᵀ` from K itself).
pub fn gemm_bt(m: usize, k: usize, n: usize, a: &[u64], bt: &[u64], c: &mut [u64]) {
    Gemm {
        b_transposed: true,
        ..Gemm::default()
    }
    .run(m, k, n, a, bt, c);
}

/// `c += a·btᵀ`, with `bt` n×k row-major.
pub fn gemm_bt_acc(m: usize, k: usize, n: usize, a: &[u64], bt: &[u64], c: &mut [u64]) {
    Gemm {
        b_transposed: true,
        accumulate: true,
        ..Gemm::default()
    }
    .run(m, k, n, a, bt, c);
}

/// The options behind the free functions; the default is `c = a·b`, threaded
/// when worthwhile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gemm {
    /// `b` is given transposed: n×k row-major.
    pub b_transposed: bool,
    /// Add the product into `c` instead of overwriting it.
    pub accumulate: bool,
    /// Stay on the calling thread (benchmarks, or callers that are already
    /// parallel at a coarser grain).
    pub single_thread: bool,
}

impl Gemm {
    /// Multiplies row-major `a` (m×k) by `b` (k×n, or n×k if
    /// [`b_transposed`](Self::b_transposed)) into `c` (m×n), mod 2^64.
    ///
    /// # Panics
    /// If a slice's length does not match its shape.
    pub fn run(&self, m: usize, k: usize, n: usize, a: &[u64], b: &[u64], c: &mut [u64]) {
        self.run_with(Kernel::detect(), m, k, n, a, b, c);
    }

    #[allow(clippy::too_many_arguments)]
    fn run_with(
        &self,
        kernel: Kernel,
        m: usize,
        k: usize,
        n: usize,
        a: &[u64],
        b: &[u64],
        c: &mut [u64],
    ) {
        assert_eq!(a.len(), m * k, "gemm: a must hold m×k = {m}×{k}");
        assert_eq!(b.len(), k * n, "gemm: b must hold k×n = {k}×{n}");
        assert_eq!(c.len(), m * n, "gemm: c must hold m×n = {m}×{n}");
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            if !self.accumulate {
                c.fill(0);
            }
            return;
        }
        let threads = if self.single_thread || m * k * n < PAR_MIN_MACS {
            1
        } else {
            rayon::current_num_threads()
        };
        let parallel = threads > 1 && m > MR;
        // About four tasks per thread, so a core shared with other work does
        // not hold up the rest, but at least four tiles tall so each packed B
        // panel loaded into L1 serves several tiles.
        let task_rows = if parallel {
            m.div_ceil(4 * threads)
                .next_multiple_of(MR)
                .clamp(4 * MR, MC)
        } else {
            m
        };
        let b_src = BSource {
            b,
            k,
            n,
            transposed: self.b_transposed,
        };
        // Equal slices (576 = 3×192, not 256+256+64): a shallow last slice
        // would pay the per-tile overhead for little work.
        let kc_step = k.div_ceil(k.div_ceil(KC));
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(kc_step) {
                let kc = kc_step.min(k - pc);
                let panel_len = kc * NR;
                with_buffer(&PACKED_B, nc.div_ceil(NR) * panel_len, |packed_b| {
                    if parallel {
                        let cols = PACK_PANELS * NR;
                        packed_b
                            .par_chunks_mut(PACK_PANELS * panel_len)
                            .enumerate()
                            .for_each(|(t, panels)| {
                                let j0 = t * cols;
                                b_src.pack(panels, pc, kc, jc + j0, cols.min(nc - j0));
                            });
                    } else {
                        b_src.pack(packed_b, pc, kc, jc, nc);
                    }
                    let slice = Slice {
                        kernel,
                        a,
                        k,
                        n,
                        pc,
                        kc,
                        jc,
                        nc,
                        packed_b,
                        accumulate: self.accumulate || pc > 0,
                    };
                    if parallel {
                        c.par_chunks_mut(task_rows * n)
                            .enumerate()
                            .for_each(|(t, rows)| slice.rows(t * task_rows, rows));
                    } else {
                        slice.rows(0, c);
                    }
                });
            }
        }
    }
}

thread_local! {
    static PACKED_A: Cell<Vec<u64>> = const { Cell::new(Vec::new()) };
    static PACKED_B: Cell<Vec<u64>> = const { Cell::new(Vec::new()) };
}

/// Lends `f` a reusable per-thread scratch buffer, so repeated calls do not
/// page-fault fresh allocations. Taking it out of the cell (rather than
/// borrowing) keeps a re-entrant call (rayon work stealing) safe: it just
/// gets a new buffer.
fn with_buffer<R>(
    key: &'static LocalKey<Cell<Vec<u64>>>,
    len: usize,
    f: impl FnOnce(&mut [u64]) -> R,
) -> R {
    let mut buf = key.take();
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let result = f(&mut buf[..len]);
    key.set(buf);
    result
}

/// B as the caller stores it: k×n row-major, or n×k if `transposed`.
#[derive(Clone, Copy)]
struct BSource<'a> {
    b: &'a [u64],
    k: usize,
    n: usize,
    transposed: bool,
}

impl BSource<'_> {
    /// Packs rows `pc..pc+kc` and columns `j0..j0+cols` of B into the whole
    /// `kc×NR` panels of `out`, zero-padding the columns past `cols` so the
    /// kernel needs no edge cases.
    fn pack(&self, out: &mut [u64], pc: usize, kc: usize, j0: usize, cols: usize) {
        let panel_len = kc * NR;
        if self.transposed {
            // Column j of B is row j of bt: interleave NR rows of bt, reading
            // each sequentially; missing columns read zeros.
            const ZEROS: [u64; KC] = [0; KC];
            for (q, panel) in out.chunks_exact_mut(panel_len).enumerate() {
                let srcs: [&[u64]; NR] = std::array::from_fn(|j| match q * NR + j {
                    col if col < cols => &self.b[(j0 + col) * self.k + pc..][..kc],
                    _ => &ZEROS[..kc],
                });
                for (p, step) in panel.chunks_exact_mut(NR).enumerate() {
                    for (d, src) in step.iter_mut().zip(srcs) {
                        *d = src[p];
                    }
                }
            }
        } else {
            // A few panels at a time, row by row: whole cache lines of B are
            // read while the few output streams stay cheap (one panel at a
            // time reads half lines at a large stride, all panels at once
            // thrashes L1; both measured ~3× slower).
            for (g, group) in out.chunks_mut(PACK_GROUP * panel_len).enumerate() {
                let g0 = g * PACK_GROUP * NR;
                for p in 0..kc {
                    let row =
                        &self.b[(pc + p) * self.n + j0 + g0..][..(cols - g0).min(PACK_GROUP * NR)];
                    let full = row.chunks_exact(NR);
                    let tail = full.remainder();
                    let mut steps = group.chunks_exact_mut(panel_len).map(|panel| {
                        <&mut [u64; NR]>::try_from(&mut panel[p * NR..][..NR]).unwrap()
                    });
                    // Fixed-size copies: a slice copy_from_slice here became
                    // a memcpy call per 32 bytes.
                    for (src, step) in full.zip(steps.by_ref()) {
                        *step = src.try_into().unwrap();
                    }
                    if let Some(step) = steps.next() {
                        *step = [0; NR];
                        step[..tail.len()].copy_from_slice(tail);
                    }
                }
            }
        }
    }
}

/// One `KC`-deep slice of the product against one packed `KC×NC` block of B.
struct Slice<'a> {
    kernel: Kernel,
    a: &'a [u64],
    k: usize,
    n: usize,
    pc: usize,
    kc: usize,
    jc: usize,
    nc: usize,
    packed_b: &'a [u64],
    /// Add into C (the caller asked to, or an earlier slice wrote it).
    accumulate: bool,
}

impl Slice<'_> {
    /// Updates `c_rows`, whole rows of C starting at row `row0`.
    fn rows(&self, row0: usize, c_rows: &mut [u64]) {
        let n = self.n;
        let rows = c_rows.len() / n;
        for ic in (0..rows).step_by(MC) {
            let mc = MC.min(rows - ic);
            let panel_len = self.kc * A_STEP;
            with_buffer(&PACKED_A, mc.div_ceil(MR) * panel_len, |packed_a| {
                for (ip, panel) in packed_a.chunks_mut(panel_len).enumerate() {
                    self.pack_a(panel, row0 + ic + ip * MR, (mc - ip * MR).min(MR));
                }
                let c_block = &mut c_rows[ic * n..(ic + mc) * n];
                for (jp, b_panel) in self.packed_b.chunks(self.kc * NR).enumerate() {
                    let col = self.jc + jp * NR;
                    let cols = (self.nc - jp * NR).min(NR);
                    for (ip, a_panel) in packed_a.chunks(panel_len).enumerate() {
                        let tile_rows = (mc - ip * MR).min(MR);
                        let c_tile = &mut c_block[ip * MR * n + col..];
                        if tile_rows == MR && cols == NR {
                            self.kernel
                                .tile(self.kc, a_panel, b_panel, c_tile, n, self.accumulate);
                        } else {
                            self.edge_tile(a_panel, b_panel, c_tile, tile_rows, cols);
                        }
                    }
                }
            });
        }
    }

    /// Packs `rows <= MR` rows of A from `r0`, columns `pc..pc+kc`, k-major
    /// with each step's swapped copy, zero-padding missing rows.
    fn pack_a(&self, panel: &mut [u64], r0: usize, rows: usize) {
        let src = &self.a[r0 * self.k + self.pc..];
        for (p, step) in panel.chunks_exact_mut(A_STEP).enumerate() {
            for i in 0..MR {
                let v = if i < rows { src[i * self.k + p] } else { 0 };
                step[i] = v;
                step[MR + i] = v.rotate_left(32);
            }
        }
    }

    /// A tile cut by the edge of C: compute the full tile into scratch (the
    /// padding is zero) and copy out the part that exists.
    fn edge_tile(&self, a: &[u64], b: &[u64], c: &mut [u64], rows: usize, cols: usize) {
        let mut tmp = [0u64; MR * NR];
        self.kernel.tile(self.kc, a, b, &mut tmp, NR, false);
        for (t, c_row) in tmp.chunks_exact(NR).zip(c.chunks_mut(self.n)).take(rows) {
            for (c, &t) in c_row[..cols].iter_mut().zip(t) {
                *c = if self.accumulate {
                    c.wrapping_add(t)
                } else {
                    t
                };
            }
        }
    }
}

/// Which micro-kernel runs; chosen once per call by CPU detection (tests
/// force each one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Kernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            return Kernel::Avx2;
        }
        Kernel::Portable
    }

    /// `c[i·ldc + j] (+)= Σ_p a[p·A_STEP + i] · b[p·NR + j]` for the `MR×NR`
    /// tile, over `kc` packed steps.
    fn tile(self, kc: usize, a: &[u64], b: &[u64], c: &mut [u64], ldc: usize, accumulate: bool) {
        assert!(a.len() >= kc * A_STEP && b.len() >= kc * NR);
        assert!(ldc >= NR && c.len() >= (MR - 1) * ldc + NR);
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `detect` (or a test that checked) saw AVX2, and the
            // asserts above cover every address the kernel touches.
            Kernel::Avx2 => unsafe {
                avx2::tile(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, accumulate)
            },
            Kernel::Portable => portable_tile(kc, a, b, c, ldc, accumulate),
        }
    }
}

/// Scalar kernel for targets without AVX2 (wasm32, other CPUs): the same
/// register-tile shape, one 64-bit multiply per multiply-add (it ignores the
/// swapped copies).
fn portable_tile(kc: usize, a: &[u64], b: &[u64], c: &mut [u64], ldc: usize, accumulate: bool) {
    let mut acc = [[0u64; NR]; MR];
    for (ap, bp) in a.chunks_exact(A_STEP).zip(b.chunks_exact(NR)).take(kc) {
        for (acc_row, &av) in acc.iter_mut().zip(ap) {
            for (s, &bv) in acc_row.iter_mut().zip(bp) {
                *s = s.wrapping_add(av.wrapping_mul(bv));
            }
        }
    }
    for (acc_row, c_row) in acc.iter().zip(c.chunks_mut(ldc)) {
        for (c, &s) in c_row[..NR].iter_mut().zip(acc_row) {
            *c = if accumulate { c.wrapping_add(s) } else { s };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{A_STEP, MR, NR};
    use std::arch::x86_64::*;

    /// The AVX2 micro-kernel (see the module docs for the arithmetic).
    ///
    /// # Safety
    /// The CPU has AVX2; `a` is readable for `kc·A_STEP` words, `b` for
    /// `kc·NR`, and `c` readable and writable for `MR` rows of `NR` words at
    /// stride `ldc`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn tile(
        kc: usize,
        a: *const u64,
        b: *const u64,
        c: *mut u64,
        ldc: usize,
        accumulate: bool,
    ) {
        const { assert!(NR == 4, "one __m256i of u64 per tile row") };
        unsafe {
            // lo[i]: Σ a_lo·b_lo, exact mod 2^64. cross[i]: Σ a_hi·b_lo in
            // the low 32-bit lane and Σ a_lo·b_hi in the high one, mod 2^32.
            let mut lo = [_mm256_setzero_si256(); MR];
            let mut cross = [_mm256_setzero_si256(); MR];
            for p in 0..kc {
                let bv = _mm256_loadu_si256(b.add(p * NR).cast());
                let ap = a.add(p * A_STEP);
                for i in 0..MR {
                    let av = _mm256_set1_epi64x(*ap.add(i) as i64);
                    lo[i] = _mm256_add_epi64(lo[i], _mm256_mul_epu32(av, bv));
                    let swapped = _mm256_set1_epi64x(*ap.add(MR + i) as i64);
                    cross[i] = _mm256_add_epi32(cross[i], _mm256_mullo_epi32(swapped, bv));
                }
            }
            for i in 0..MR {
                let x = cross[i];
                let hi = _mm256_slli_epi64(_mm256_add_epi32(x, _mm256_srli_epi64(x, 32)), 32);
                let mut r = _mm256_add_epi64(lo[i], hi);
                let dst = c.add(i * ldc).cast::<__m256i>();
                if accumulate {
                    r = _mm256_add_epi64(r, _mm256_loadu_si256(dst));
                }
                _mm256_storeu_si256(dst, r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deterministic full-range words (splitmix64), so carries and the
    /// 32-bit split are exercised everywhere.
    fn words(len: usize, seed: u64) -> Vec<u64> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            })
            .collect()
    }

    fn naive(m: usize, k: usize, n: usize, a: &[u64], b: &[u64]) -> Vec<u64> {
        let mut c = vec![0u64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).fold(0u64, |s, p| {
                    s.wrapping_add(a[i * k + p].wrapping_mul(b[p * n + j]))
                });
            }
        }
        c
    }

    fn transpose(rows: usize, cols: usize, x: &[u64]) -> Vec<u64> {
        (0..cols * rows)
            .map(|i| x[(i % rows) * cols + i / rows])
            .collect()
    }

    fn kernels() -> Vec<Kernel> {
        let mut ks = vec![Kernel::Portable];
        if Kernel::detect() != Kernel::Portable {
            ks.push(Kernel::detect());
        }
        ks
    }

    /// Every option combination on every kernel against the naive product.
    fn check(m: usize, k: usize, n: usize, a: &[u64], b: &[u64], c0: &[u64]) {
        let expect = naive(m, k, n, a, b);
        let expect_acc: Vec<u64> = expect
            .iter()
            .zip(c0)
            .map(|(e, c)| e.wrapping_add(*c))
            .collect();
        let bt = transpose(k, n, b);
        for kernel in kernels() {
            for b_transposed in [false, true] {
                for accumulate in [false, true] {
                    for single_thread in [false, true] {
                        let op = Gemm {
                            b_transposed,
                            accumulate,
                            single_thread,
                        };
                        let mut c = c0.to_vec();
                        let b = if b_transposed { &bt } else { b };
                        op.run_with(kernel, m, k, n, a, b, &mut c);
                        let want = if accumulate { &expect_acc } else { &expect };
                        assert!(c == *want, "{m}×{k}×{n} {kernel:?} {op:?}");
                    }
                }
            }
        }
    }

    fn check_random(m: usize, k: usize, n: usize, seed: u64) {
        let a = words(m * k, seed);
        let b = words(k * n, seed ^ 1);
        let c0 = words(m * n, seed ^ 2);
        check(m, k, n, &a, &b, &c0);
    }

    #[test]
    fn shapes_match_naive() {
        let shapes = [
            (1, 1, 1),
            (0, 3, 4),
            (3, 0, 4),
            (3, 4, 0),
            (0, 0, 0),
            (MR, KC, NR),
            (MR - 1, KC - 1, NR - 1),
            (MR + 1, KC + 1, NR + 1),
            (2 * MR, 2 * KC + 3, 3 * NR),
            (13, 300, 9),
            (1, 600, 50),
            (100, 2, 1),
            (1, 3, 200),
            (MC + 7, 5, 9),
            (3, 2, NC + 5),
        ];
        for (s, &(m, k, n)) in shapes.iter().enumerate() {
            check_random(m, k, n, s as u64);
        }
    }

    #[test]
    fn all_ones_bits_wrap() {
        let (m, k, n) = (MR + 2, 37, NR + 3);
        let a = vec![u64::MAX; m * k];
        let b = vec![u64::MAX; k * n];
        check(m, k, n, &a, &b, &vec![u64::MAX; m * n]);
    }

    /// Large enough to thread; run on a 3-thread pool so the row split is
    /// uneven and the packed B is shared across threads.
    #[test]
    fn threaded_matches_naive() {
        let (m, k, n) = (64, 96, 90);
        assert!(m * k * n >= PAR_MIN_MACS);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| check_random(m, k, n, 42));
    }

    #[test]
    fn public_functions() {
        let (m, k, n) = (5, 7, 6);
        let (a, b) = (words(m * k, 7), words(k * n, 8));
        let bt = transpose(k, n, &b);
        let expect = naive(m, k, n, &a, &b);
        let twice: Vec<u64> = expect.iter().map(|x| x.wrapping_mul(2)).collect();
        let mut c = vec![1; m * n];
        gemm(m, k, n, &a, &b, &mut c);
        assert_eq!(c, expect);
        gemm_acc(m, k, n, &a, &b, &mut c);
        assert_eq!(c, twice);
        gemm_bt(m, k, n, &a, &bt, &mut c);
        assert_eq!(c, expect);
        gemm_bt_acc(m, k, n, &a, &bt, &mut c);
        assert_eq!(c, twice);
    }

    #[test]
    #[should_panic(expected = "b must hold")]
    fn rejects_wrong_length() {
        gemm(2, 3, 4, &[0; 6], &[0; 11], &mut [0; 8]);
    }

    proptest! {
        #[test]
        fn random_shapes_match_naive(m in 0usize..20, k in 0usize..40, n in 0usize..20, seed: u64) {
            check_random(m, k, n, seed);
        }
    }
}
