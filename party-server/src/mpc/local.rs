//! Three parties as threads of one process, linked in memory.  Used by the
//! tests and the in-process benchmarks.

use super::context::Ctx;
use super::transport::MemTransport;
use shared::{FixedPoint, Party, Prg, Seed};

/// Runs `f` as each of the three parties and returns their results in party
/// order.  With `seed`, the parties' correlated randomness is derived from it
/// (reproducible runs, tests only); otherwise it comes from the OS.
pub fn run<R, F>(fx: FixedPoint, seed: Option<u64>, f: F) -> [R; 3]
where
    R: Send,
    F: Fn(&mut Ctx) -> R + Sync,
{
    let seeds: [Seed; 3] = match seed {
        Some(s) => {
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&s.to_le_bytes());
            let mut prg = Prg::new(Seed(key));
            std::array::from_fn(|_| {
                let mut b = [0u8; 16];
                prg.fill_bytes(&mut b);
                Seed(b)
            })
        }
        None => std::array::from_fn(|_| {
            let mut b = [0u8; 16];
            getrandom::fill(&mut b).expect("OS randomness");
            Seed(b)
        }),
    };
    let transports = MemTransport::triple();
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = transports
            .into_iter()
            .zip(Party::ALL)
            .zip(seeds)
            .map(|((t, p), s)| {
                scope.spawn(move || {
                    let mut ctx = Ctx::setup(p, Box::new(t), s, fx).expect("in-memory setup");
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
