//! A party's view of a three-party session: its index, its links, its
//! correlated randomness and its communication counters.

use super::transport::{Dir, Transport, TransportError};
use shared::{FixedPoint, Party, Prg, Seed};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc::{Receiver, Sender, channel, sync_channel};
use std::sync::{Arc, Mutex};

/// Words drawn per PRG call when masking: the buffers stay in L1.
const MIX_CHUNK: usize = 512;

/// Communication counters of one party.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommStats {
    pub bytes_sent: u64,
    pub messages_sent: u64,
    /// Communication rounds: sequential message exchanges on the critical
    /// path, counted by the protocols (every party counts the same rounds).
    pub rounds: u64,
    /// Probabilistic truncations that wrapped (P0's count), known only in an
    /// audited in-process run ([`super::local::run_audited`]); 0 otherwise.
    pub trunc_failures: u64,
    /// The audit's `Σ |z|` over those truncations' untruncated values `z`:
    /// each wraps with probability `|z| / 2^64`, so this is `2^64` times the
    /// expected number of failures (see [`expected_trunc_failures`]).
    pub trunc_risk: u128,
}

/// Expected wrapped truncations for an audited [`CommStats::trunc_risk`]: a
/// rare failure's rate, which a count of zero cannot show.
pub fn expected_trunc_failures(trunc_risk: u128) -> f64 {
    trunc_risk as f64 / 2f64.powi(64)
}

impl std::ops::Sub for CommStats {
    type Output = CommStats;
    fn sub(self, o: CommStats) -> CommStats {
        CommStats {
            bytes_sent: self.bytes_sent - o.bytes_sent,
            messages_sent: self.messages_sent - o.messages_sent,
            rounds: self.rounds - o.rounds,
            trunc_failures: self.trunc_failures - o.trunc_failures,
            trunc_risk: self.trunc_risk - o.trunc_risk,
        }
    }
}

/// One party's state for a session.
///
/// Correlated randomness: party `i` holds seeds `s_i` (shared with `P_{i-1}`)
/// and `s_{i+1}` (shared with `P_{i+1}`).  `PRG(s_j)` is then component `j` of
/// a replicated sharing of a random value, and `PRG(s_i) - PRG(s_{i+1})` is a
/// zero-sharing — both with no communication.  Every party draws from its
/// streams in the same program order, which keeps the pairs in lockstep.
pub struct Ctx {
    party: Party,
    transport: Box<dyn Transport>,
    /// Stream of `s_i`, shared with the previous party.
    prg_prev: Prg,
    /// Stream of `s_{i+1}`, shared with the next party.
    prg_next: Prg,
    stats: CommStats,
    fx: FixedPoint,
    /// Identifies this context's logical link (0 at the root).
    tag: u64,
    /// Forks made so far: numbers the children's tags.
    forks: u64,
    /// Truncation audit (in-process runs only): P1 also sends P0 its
    /// addend, so P0 can count wrapped truncations.  Reveals secrets to P0.
    audit: bool,
    /// Threads for the second branch of [`Ctx::join`], shared by the
    /// session's contexts.
    helpers: Helpers,
}

/// Threads that run the second branch of [`Ctx::join`], kept for the
/// session: spawning a thread per join cost about 45 µs of CPU here, and a
/// DDIM-50 run joins about 10,000 times; a parked helper costs a wake-up.
/// The pool grows to the most joins in flight at once and its threads end
/// when the session's contexts are gone (their job queues close).
#[derive(Clone, Default)]
struct Helpers(Arc<Mutex<Vec<Sender<Job>>>>);

type Job = Box<dyn FnOnce() + Send + 'static>;

impl Helpers {
    /// An idle helper's job queue, or a new helper's.
    fn take(&self) -> Sender<Job> {
        if let Some(h) = self.0.lock().expect("helper pool poisoned").pop() {
            return h;
        }
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new()
            .name("mpc-join".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            })
            .expect("cannot start a join helper thread");
        tx
    }

    fn put_back(&self, helper: Sender<Job>) {
        self.0.lock().expect("helper pool poisoned").push(helper);
    }

    /// Runs `f` on a helper while `g` runs here, and returns both results
    /// (a panic in either is resumed here).  `f` may borrow from the
    /// caller: this does not return, nor unwind, before `f` has finished.
    fn run_beside<RF: Send, RG>(
        &self,
        f: impl FnOnce() -> RF + Send,
        g: impl FnOnce() -> RG,
    ) -> (RF, RG) {
        let (done_tx, done_rx) = sync_channel(1);
        let job: Box<dyn FnOnce() + Send + '_> = Box::new(move || {
            // Sends the result (or the panic); the job drops nothing
            // borrowed after that.
            let _ = done_tx.send(catch_unwind(AssertUnwindSafe(f)));
        });
        // SAFETY: only the lifetime is erased.  The job's borrows outlive
        // this call, because the call waits for the job's result before it
        // returns, and `WaitOnUnwind` waits for it if `g` panics.
        let job: Job = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + '_>, Job>(job) };
        let helper = self.take();
        helper
            .send(job)
            .expect("join helper thread ended while its queue was open");
        /// Waits for the helper's result if `g` unwinds.
        struct WaitOnUnwind<'a, T>(&'a Receiver<T>);
        impl<T> Drop for WaitOnUnwind<'_, T> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    let _ = self.0.recv();
                }
            }
        }
        let guard = WaitOnUnwind(&done_rx);
        let rg = g();
        let rf = done_rx.recv().expect("the job reports before it ends");
        drop(guard);
        self.put_back(helper);
        match rf {
            Ok(rf) => (rf, rg),
            Err(panic) => resume_unwind(panic),
        }
    }
}

/// A child tag: a fixed mix of the parent's tag, its fork count and the
/// branch, identical on all parties (they fork in the same program order).
fn child_tag(parent: u64, fork: u64, branch: u64) -> u64 {
    let mut z = parent
        ^ fork.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (branch + 1).wrapping_mul(0xd1b5_4a32_d192_ed03);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) | 1
}

impl Ctx {
    /// Key exchange: each party draws `s_i` from `seed_source` and sends it to
    /// the previous party (one message, one round).
    pub fn setup(
        party: Party,
        mut transport: Box<dyn Transport>,
        own_seed: Seed,
        fx: FixedPoint,
    ) -> Result<Ctx, TransportError> {
        let s = own_seed.0;
        let words = vec![
            u64::from_le_bytes(s[..8].try_into().expect("8 bytes")),
            u64::from_le_bytes(s[8..].try_into().expect("8 bytes")),
        ];
        transport.send(Dir::Prev, words)?;
        let got = transport.recv(Dir::Next)?;
        if got.len() != 2 {
            return Err(TransportError::Link {
                dir: Dir::Next,
                reason: format!("key exchange: expected 2 words, got {}", got.len()),
            });
        }
        let mut next_seed = [0u8; 16];
        next_seed[..8].copy_from_slice(&got[0].to_le_bytes());
        next_seed[8..].copy_from_slice(&got[1].to_le_bytes());
        Ok(Ctx {
            party,
            transport,
            prg_prev: Prg::new(own_seed),
            prg_next: Prg::new(Seed(next_seed)),
            stats: CommStats {
                bytes_sent: 16,
                messages_sent: 1,
                rounds: 1,
                ..CommStats::default()
            },
            fx,
            tag: 0,
            forks: 0,
            audit: false,
            helpers: Helpers::default(),
        })
    }

    /// A context for a sub-protocol running beside others: its own logical
    /// link and its own PRG streams (seeded from this context's streams, so
    /// the parties' pairs stay in lockstep), counters from zero.
    fn child(&mut self, branch: u64) -> Result<Ctx, TransportError> {
        let tag = child_tag(self.tag, self.forks, branch);
        let mut prev_seed = [0u8; 16];
        let mut next_seed = [0u8; 16];
        self.prg_prev.fill_bytes(&mut prev_seed);
        self.prg_next.fill_bytes(&mut next_seed);
        Ok(Ctx {
            party: self.party,
            transport: self.transport.substream(tag)?,
            prg_prev: Prg::new(Seed(prev_seed)),
            prg_next: Prg::new(Seed(next_seed)),
            stats: CommStats::default(),
            fx: self.fx,
            tag,
            forks: 0,
            audit: self.audit,
            helpers: self.helpers.clone(),
        })
    }

    /// Runs two independent sub-protocols concurrently (parallel
    /// composition): their rounds overlap, so the pair costs the rounds of
    /// the longer one; bytes add up.
    pub fn join<A, B, FA, FB>(&mut self, fa: FA, fb: FB) -> super::Result<(A, B)>
    where
        A: Send,
        B: Send,
        FA: FnOnce(&mut Ctx) -> super::Result<A> + Send,
        FB: FnOnce(&mut Ctx) -> super::Result<B> + Send,
    {
        let mut ca = self.child(0)?;
        let mut cb = self.child(1)?;
        self.forks += 1;
        let (rb, ra) = self.helpers.run_beside(|| fb(&mut cb), || fa(&mut ca));
        let (sa, sb) = (ca.stats, cb.stats);
        self.stats.bytes_sent += sa.bytes_sent + sb.bytes_sent;
        self.stats.messages_sent += sa.messages_sent + sb.messages_sent;
        self.stats.rounds += sa.rounds.max(sb.rounds);
        self.stats.trunc_failures += sa.trunc_failures + sb.trunc_failures;
        self.stats.trunc_risk += sa.trunc_risk + sb.trunc_risk;
        Ok((ra?, rb?))
    }

    /// Whether this is an audited in-process run (see [`CommStats::trunc_failures`]).
    pub(super) fn audited(&self) -> bool {
        self.audit
    }

    /// Turns the truncation audit on (in-process runs only).
    pub(super) fn enable_audit(&mut self) {
        self.audit = true;
    }

    /// Records what the audit found: wrapped truncations and their risk
    /// (see [`CommStats::trunc_risk`]).
    pub(super) fn record_trunc_audit(&mut self, failures: u64, risk: u128) {
        self.stats.trunc_failures += failures;
        self.stats.trunc_risk += risk;
    }

    pub fn party(&self) -> Party {
        self.party
    }

    pub fn index(&self) -> usize {
        self.party.index()
    }

    pub fn fx(&self) -> FixedPoint {
        self.fx
    }

    pub fn frac_bits(&self) -> u32 {
        self.fx.frac_bits()
    }

    pub fn stats(&self) -> CommStats {
        self.stats
    }

    pub fn send(&mut self, to: Dir, msg: Vec<u64>) -> Result<(), TransportError> {
        self.stats.bytes_sent += 8 * msg.len() as u64;
        self.stats.messages_sent += 1;
        self.transport.send(to, msg)
    }

    /// Receives a message that must have exactly `len` words.
    pub fn recv(&mut self, from: Dir, len: usize) -> Result<Vec<u64>, TransportError> {
        let msg = self.transport.recv(from)?;
        if msg.len() != len {
            return Err(TransportError::Link {
                dir: from,
                reason: format!("expected {len} words, got {}", msg.len()),
            });
        }
        Ok(msg)
    }

    /// Marks the end of a communication round.
    pub fn end_round(&mut self) {
        self.stats.rounds += 1;
    }

    /// The PRG stream this party shares with the neighbour `with`.
    pub fn prg(&mut self, with: Dir) -> &mut Prg {
        match with {
            Dir::Next => &mut self.prg_next,
            Dir::Prev => &mut self.prg_prev,
        }
    }

    /// Adds this party's share of a fresh additive zero-sharing
    /// (`α_i = PRG(s_i) − PRG(s_{i+1})`, so `Σ_i α_i = 0 mod 2^64`) to `t`
    /// in place: the masking of every reshare, without allocating `α`.
    pub fn add_zero_share(&mut self, t: &mut [u64]) {
        self.mix_streams(t, |v, a, b| v.wrapping_add(a.wrapping_sub(b)));
    }

    /// A zero-sharing for reshares whose masked messages run along the
    /// chain `P0 → P2 → P1` (the truncating ones): only P0's term must be
    /// hidden from P2 and P2's from P1, so P0 adds `PRG(s_0) − PRG(s_1)`
    /// as in [`add_zero_share`](Self::add_zero_share), P1 adds `PRG(s_1)`
    /// and P2 subtracts `PRG(s_0)` — one stream each instead of two
    /// (`s_i`: the seed P_i shares with its previous party).
    pub fn add_chain_zero_share(&mut self, t: &mut [u64]) {
        match self.index() {
            0 => self.add_zero_share(t),
            1 => self.mix_stream(Dir::Prev, t, u64::wrapping_add),
            _ => self.mix_stream(Dir::Next, t, u64::wrapping_sub),
        }
    }

    /// XOR counterpart of [`add_zero_share`](Self::add_zero_share):
    /// `β_i = PRG(s_i) ⊕ PRG(s_{i+1})`, `⊕_i β_i = 0`.
    pub fn xor_zero_share(&mut self, t: &mut [u64]) {
        self.mix_streams(t, |v, a, b| v ^ a ^ b);
    }

    /// Additive zero-sharing as a vector of its own.
    pub fn zero_share(&mut self, n: usize) -> Vec<u64> {
        let mut a = vec![0u64; n];
        self.add_zero_share(&mut a);
        a
    }

    /// `t[j] = f(t[j], PRG(with)[j])`, drawn in L1-sized chunks.
    fn mix_stream(&mut self, with: Dir, t: &mut [u64], f: impl Fn(u64, u64) -> u64) {
        let mut buf = [0u64; MIX_CHUNK];
        for c in t.chunks_mut(MIX_CHUNK) {
            let p = &mut buf[..c.len()];
            self.prg(with).fill_u64(p);
            for (v, a) in c.iter_mut().zip(p.iter()) {
                *v = f(*v, *a);
            }
        }
    }

    /// `t[j] = f(t[j], PRG(s_i)[j], PRG(s_{i+1})[j])`, the streams drawn in
    /// L1-sized chunks (each stream yields the same words as one long draw).
    fn mix_streams(&mut self, t: &mut [u64], f: impl Fn(u64, u64, u64) -> u64) {
        let (mut prev, mut next) = ([0u64; MIX_CHUNK], [0u64; MIX_CHUNK]);
        for c in t.chunks_mut(MIX_CHUNK) {
            let (p, q) = (&mut prev[..c.len()], &mut next[..c.len()]);
            self.prg_prev.fill_u64(p);
            self.prg_next.fill_u64(q);
            for ((v, a), b) in c.iter_mut().zip(p.iter()).zip(q.iter()) {
                *v = f(*v, *a, *b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    fn idle(h: &Helpers) -> usize {
        h.0.lock().unwrap().len()
    }

    /// The sum over the parties of words drawn at the same position.
    fn sums(parts: &[Vec<u64>; 3]) -> Vec<u64> {
        (0..parts[0].len())
            .map(|j| parts.iter().fold(0u64, |s, p| s.wrapping_add(p[j])))
            .collect()
    }

    #[test]
    fn chain_zero_shares_sum_to_zero_and_leave_the_streams_in_step() {
        let fx = FixedPoint::new(14).unwrap();
        let out = crate::mpc::local::run(fx, Some(5), |ctx| {
            let mut chain = vec![7u64; 1500];
            ctx.add_chain_zero_share(&mut chain);
            // A full zero-sharing afterwards sums to zero only if every
            // pair of parties drew the same number of words before it.
            (chain, ctx.zero_share(600))
        });
        let chain: [Vec<u64>; 3] = std::array::from_fn(|i| out[i].0.clone());
        let after: [Vec<u64>; 3] = std::array::from_fn(|i| out[i].1.clone());
        assert!(sums(&chain).iter().all(|&v| v == 21));
        assert!(sums(&after).iter().all(|&v| v == 0));
        // P0's masked term is hidden from P2 by P1's stream, P2's from P1 by
        // P0's: each party's words are far from the constant it started from.
        for part in &chain {
            assert!(part.iter().filter(|&&v| v == 7).count() < 3);
        }
    }

    #[test]
    fn helpers_run_borrowing_jobs_nest_and_are_reused() {
        let h = Helpers::default();
        let data = [1u64, 2, 3];
        let mut sum = 0;
        let (inner, last) = h.run_beside(
            || {
                sum = data.iter().sum();
                h.run_beside(|| data[0], || data[1])
            },
            || data[2],
        );
        assert_eq!((inner, last, sum), ((1, 2), 3, 6));
        assert_eq!(idle(&h), 2, "the outer and the nested helper are back");
        let again = h.run_beside(|| data[1] * 10, || data[0]);
        assert_eq!(again, (20, 1));
        assert_eq!(idle(&h), 2, "reused, not spawned");
    }

    #[test]
    fn panics_reach_the_caller_after_both_branches_end() {
        let h = Helpers::default();
        let r = catch_unwind(AssertUnwindSafe(|| {
            h.run_beside(|| -> u64 { panic!("helper branch") }, || 5)
        }));
        let msg = r.unwrap_err();
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"helper branch"));
        // The caller's branch panics while the helper's still runs: the
        // unwinding waits for it, so its borrow of `done` stays valid.
        let done = AtomicBool::new(false);
        let r = catch_unwind(AssertUnwindSafe(|| {
            h.run_beside(
                || {
                    std::thread::sleep(Duration::from_millis(30));
                    done.store(true, Ordering::SeqCst);
                },
                || panic!("caller branch"),
            )
        }));
        assert!(r.is_err());
        assert!(done.load(Ordering::SeqCst));
    }
}
