//! Three parties as threads of one process, linked in memory.  Used by the
//! tests and the in-process benchmarks.

use super::arith::AShare;
use super::bits::BShare;
use super::context::Ctx;
use super::transport::{MemTransport, Transport};
use shared::share::reconstruct;
use shared::{FixedPoint, Party, PartyShares, Prg, Seed};

/// Runs `f` as each of the three parties and returns their results in party
/// order.  With `seed`, the parties' correlated randomness is derived from it
/// (reproducible runs, tests only); otherwise it comes from the OS.
pub fn run<R, F>(fx: FixedPoint, seed: Option<u64>, f: F) -> [R; 3]
where
    R: Send,
    F: Fn(&mut Ctx) -> R + Sync,
{
    run_with(fx, seed, false, mem_links(), f)
}

/// [`run`] over the given links (P0's, P1's, P2's), e.g. the emulated LAN of
/// [`crate::net::shaped`], so that a benchmark can add a network's
/// bandwidth and latency to the in-memory links.
pub fn run_over<R, F>(
    fx: FixedPoint,
    seed: Option<u64>,
    links: [Box<dyn Transport>; 3],
    f: F,
) -> [R; 3]
where
    R: Send,
    F: Fn(&mut Ctx) -> R + Sync,
{
    run_with(fx, seed, false, links, f)
}

/// The in-memory links of three in-process parties.
pub fn mem_links() -> [Box<dyn Transport>; 3] {
    MemTransport::triple().map(|t| Box::new(t) as Box<dyn Transport>)
}

/// [`run`] with the truncation audit on: P1 also hands P0 its addend of
/// every probabilistic truncation, and P0 counts the ones that wrapped
/// (`CommStats::trunc_failures`).  Diagnostics only: it reveals values to
/// P0 (harmless here, where all three parties are one process) and its
/// extra words inflate the byte counts.
pub fn run_audited<R, F>(fx: FixedPoint, seed: Option<u64>, f: F) -> [R; 3]
where
    R: Send,
    F: Fn(&mut Ctx) -> R + Sync,
{
    run_with(fx, seed, true, mem_links(), f)
}

fn run_with<R, F>(
    fx: FixedPoint,
    seed: Option<u64>,
    audit: bool,
    transports: [Box<dyn Transport>; 3],
    f: F,
) -> [R; 3]
where
    R: Send,
    F: Fn(&mut Ctx) -> R + Sync,
{
    let seeds: [Seed; 3] = match seed {
        Some(s) => derive_seeds(s),
        None => std::array::from_fn(|_| random_seed()),
    };
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = transports
            .into_iter()
            .zip(Party::ALL)
            .zip(seeds)
            .map(|((t, p), s)| {
                scope.spawn(move || {
                    let mut ctx = Ctx::setup(p, t, s, fx).expect("in-memory setup");
                    if audit {
                        ctx.enable_audit();
                    }
                    f(&mut ctx)
                })
            })
            .collect();
        let mut out = handles
            .into_iter()
            .map(|h| h.join().expect("party thread panicked"));
        std::array::from_fn(|_| out.next().expect("three parties"))
    })
}

/// The three parties' setup seeds derived from one number: reproducible
/// runs (tests, and the servers' explicitly enabled test mode) only.
pub fn derive_seeds(seed: u64) -> [Seed; 3] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut prg = Prg::new(Seed(key));
    std::array::from_fn(|_| {
        let mut b = [0u8; 16];
        prg.fill_bytes(&mut b);
        Seed(b)
    })
}

/// A fresh setup seed from the OS.
pub fn random_seed() -> Seed {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("OS randomness");
    Seed(b)
}

/// Shares ring values for the three in-process parties, as a client would
/// (reproducible from `seed`; for tests and benchmarks).
pub fn deal(x: &[u64], seed: u64) -> [AShare; 3] {
    let mut key = [0u8; 16];
    key[8..].copy_from_slice(&seed.to_le_bytes());
    let mut prg = Prg::new(Seed(key));
    let c0 = prg.u64_vec(x.len());
    let c1 = prg.u64_vec(x.len());
    let c2: Vec<u64> = (0..x.len())
        .map(|j| x[j].wrapping_sub(c0[j]).wrapping_sub(c1[j]))
        .collect();
    let c = [c0, c1, c2];
    std::array::from_fn(|i| AShare {
        a: c[i].clone(),
        b: c[(i + 1) % 3].clone(),
    })
}

/// XOR-shares packed bits for the three in-process parties.
pub fn deal_bits(x: &[u64], seed: u64) -> [BShare; 3] {
    let s = deal(x, seed ^ 0xb17);
    let c2: Vec<u64> = (0..x.len()).map(|j| x[j] ^ s[0].a[j] ^ s[0].b[j]).collect();
    let c = [s[0].a.clone(), s[0].b.clone(), c2];
    std::array::from_fn(|i| BShare {
        a: c[i].clone(),
        b: c[(i + 1) % 3].clone(),
    })
}

/// Reconstructs packed bits, checking the parties' copies agree.
pub fn open_bits(s: &[BShare; 3]) -> Vec<u64> {
    assert_eq!(s[0].b, s[1].a, "inconsistent boolean shares");
    assert_eq!(s[1].b, s[2].a, "inconsistent boolean shares");
    assert_eq!(s[2].b, s[0].a, "inconsistent boolean shares");
    (0..s[0].words())
        .map(|j| s[0].a[j] ^ s[1].a[j] ^ s[2].a[j])
        .collect()
}

/// Reconstructs the parties' outputs, as a client would, checking that all
/// pairs of parties agree (panics on inconsistent shares: a protocol bug).
pub fn open(s: &[AShare; 3]) -> Vec<u64> {
    let ps: Vec<PartyShares> = Party::ALL
        .iter()
        .zip(s)
        .map(|(&p, s)| PartyShares {
            party: p,
            own: s.a.clone(),
            next: s.b.clone(),
        })
        .collect();
    let v = reconstruct(&ps[0], &ps[1]).expect("consistent shares");
    assert_eq!(reconstruct(&ps[1], &ps[2]).expect("consistent shares"), v);
    v
}

/// CPU time consumed so far by the calling thread (a party's compute, as
/// opposed to wall time, which on a shared machine includes waiting).
pub fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to the valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID unavailable");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// CPU time consumed so far by the whole process (all parties and their
/// worker threads).
pub fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes one rusage to the valid pointer.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage failed");
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::arith;

    #[test]
    fn join_overlaps_rounds_adds_bytes_and_computes_both() {
        let x: Vec<u64> = (1..=50).collect();
        let sx = deal(&x, 1);
        let out = run(FixedPoint::default(), Some(3), |ctx| {
            let xi = &sx[ctx.index()];
            let before = ctx.stats();
            let (sq, cube) = ctx
                .join(
                    |c| arith::mul(c, xi, xi),
                    |c| {
                        let sq = arith::mul(c, xi, xi)?;
                        arith::mul(c, &sq, xi)
                    },
                )
                .unwrap();
            // A later protocol on the parent still works after the fork.
            let four = arith::mul(ctx, &sq, &sq).unwrap();
            (sq, cube, four, ctx.stats() - before)
        });
        let sq = open(&out.clone().map(|o| o.0));
        let cube = open(&out.clone().map(|o| o.1));
        let four = open(&out.clone().map(|o| o.2));
        for (j, v) in x.iter().enumerate() {
            assert_eq!(sq[j], v * v);
            assert_eq!(cube[j], v * v * v);
            assert_eq!(four[j], v * v * v * v);
        }
        for o in &out {
            assert_eq!(o.3.rounds, 2 + 1, "branches overlap: max(1, 2), then 1");
            assert_eq!(
                o.3.bytes_sent,
                8 * 50 * 4,
                "three products in the join, one after"
            );
        }
    }
}
