//! 2-out-of-3 replicated secret sharing over Z_2^64.
//!
//! `x = x_0 + x_1 + x_2 (mod 2^64)`; party `i` holds `(x_i, x_{i+1})`.  Any one
//! party's pair is uniformly random and independent of `x`; any two parties
//! together hold all three components.
//!
//! The seed-compressed form ([`share_seeded`]) replaces `x_0` and `x_1` by PRG
//! seeds, so a client uploads two seeds to every party and the explicit `x_2`
//! only to the two parties that hold it: `2n` ring elements instead of `6n`.

use crate::party::Party;
use crate::prg::{Prg, Seed};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    #[error("reconstruction needs two different parties, got {0} twice")]
    SameParty(Party),
    #[error("share lengths differ: {0} vs {1}")]
    LengthMismatch(usize, usize),
    #[error("the component both parties hold differs: shares are inconsistent or corrupted")]
    Inconsistent,
    #[error("explicit component has {got} elements, the bundle declares {declared}")]
    BundleLength { got: usize, declared: usize },
}

/// What one party holds of a shared vector: its components `x_i` and `x_{i+1}`.
#[derive(Clone, PartialEq, Eq)]
pub struct PartyShares {
    pub party: Party,
    pub own: Vec<u64>,
    pub next: Vec<u64>,
}

/// Share values are secret: print only their shape.
impl std::fmt::Debug for PartyShares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PartyShares({}, len {})", self.party, self.own.len())
    }
}

impl PartyShares {
    pub fn len(&self) -> usize {
        self.own.len()
    }

    pub fn is_empty(&self) -> bool {
        self.own.is_empty()
    }

    /// Component `x_c` if this party holds it.
    fn component(&self, c: usize) -> Option<&[u64]> {
        if c == self.party.index() {
            Some(&self.own)
        } else if c == self.party.next().index() {
            Some(&self.next)
        } else {
            None
        }
    }
}

fn from_components(c: [Vec<u64>; 3]) -> [PartyShares; 3] {
    Party::ALL.map(|p| PartyShares {
        party: p,
        own: c[p.index()].clone(),
        next: c[p.next().index()].clone(),
    })
}

/// Shares `x` with fresh randomness from `rng`.
pub fn share<R: CryptoRng + ?Sized>(x: &[u64], rng: &mut R) -> [PartyShares; 3] {
    let x0: Vec<u64> = (0..x.len()).map(|_| rng.next_u64()).collect();
    let x1: Vec<u64> = (0..x.len()).map(|_| rng.next_u64()).collect();
    let x2 = last_component(x, &x0, &x1);
    from_components([x0, x1, x2])
}

/// `x_2 = x - x_0 - x_1`.
fn last_component(x: &[u64], x0: &[u64], x1: &[u64]) -> Vec<u64> {
    x.iter()
        .zip(x0.iter().zip(x1))
        .map(|(&v, (&a, &b))| v.wrapping_sub(a).wrapping_sub(b))
        .collect()
}

/// Reconstructs from two different parties' shares, checking that the
/// component they both hold agrees.
pub fn reconstruct(a: &PartyShares, b: &PartyShares) -> Result<Vec<u64>, ShareError> {
    if a.party == b.party {
        return Err(ShareError::SameParty(a.party));
    }
    for s in [a, b] {
        if s.next.len() != s.own.len() {
            return Err(ShareError::LengthMismatch(s.own.len(), s.next.len()));
        }
    }
    if a.len() != b.len() {
        return Err(ShareError::LengthMismatch(a.len(), b.len()));
    }
    let comp = |c: usize| {
        a.component(c)
            .or_else(|| b.component(c))
            .expect("two parties hold all components")
    };
    let shared = (0..3)
        .find(|&c| a.component(c).is_some() && b.component(c).is_some())
        .expect("two distinct parties overlap in one component");
    if a.component(shared) != b.component(shared) {
        return Err(ShareError::Inconsistent);
    }
    let (c0, c1, c2) = (comp(0), comp(1), comp(2));
    Ok(c0
        .iter()
        .zip(c1.iter().zip(c2))
        .map(|(&u, (&v, &w))| u.wrapping_add(v).wrapping_add(w))
        .collect())
}

/// One component of a seed-compressed share: a PRG seed or the explicit values.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Component {
    Seed(Seed),
    Explicit(Vec<u64>),
}

impl std::fmt::Debug for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Component::Seed(_) => f.write_str("Seed(..)"),
            Component::Explicit(v) => write!(f, "Explicit(len {})", v.len()),
        }
    }
}

impl Component {
    fn expand(&self, len: usize) -> Result<Vec<u64>, ShareError> {
        match self {
            Component::Seed(s) => Ok(Prg::new(*s).u64_vec(len)),
            Component::Explicit(v) if v.len() == len => Ok(v.clone()),
            Component::Explicit(v) => Err(ShareError::BundleLength {
                got: v.len(),
                declared: len,
            }),
        }
    }
}

/// What a client sends one party: that party's two components, compressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyBundle {
    pub party: Party,
    pub len: usize,
    pub own: Component,
    pub next: Component,
}

impl PartyBundle {
    /// Expands the seeds into this party's replicated shares.
    pub fn expand(&self) -> Result<PartyShares, ShareError> {
        Ok(PartyShares {
            party: self.party,
            own: self.own.expand(self.len)?,
            next: self.next.expand(self.len)?,
        })
    }

    /// Ring elements sent explicitly (the rest of the bundle is seeds).
    pub fn explicit_len(&self) -> usize {
        [&self.own, &self.next]
            .iter()
            .map(|c| match c {
                Component::Explicit(v) => v.len(),
                Component::Seed(_) => 0,
            })
            .sum()
    }
}

/// Shares `x` in seed-compressed form: `x_0`, `x_1` are PRG expansions of fresh
/// seeds drawn from `rng`, `x_2 = x - x_0 - x_1` is sent explicitly.
pub fn share_seeded<R: CryptoRng + ?Sized>(x: &[u64], rng: &mut R) -> [PartyBundle; 3] {
    let seeds = [Seed::random(rng), Seed::random(rng)];
    let x0 = Prg::new(seeds[0]).u64_vec(x.len());
    let x1 = Prg::new(seeds[1]).u64_vec(x.len());
    let comps = [
        Component::Seed(seeds[0]),
        Component::Seed(seeds[1]),
        Component::Explicit(last_component(x, &x0, &x1)),
    ];
    Party::ALL.map(|p| PartyBundle {
        party: p,
        len: x.len(),
        own: comps[p.index()].clone(),
        next: comps[p.next().index()].clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn pairs() -> [(usize, usize); 6] {
        [(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1)]
    }

    proptest! {
        #[test]
        fn any_two_parties_reconstruct(x in proptest::collection::vec(any::<u64>(), 0..64), seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let s = share(&x, &mut rng);
            for (i, j) in pairs() {
                prop_assert_eq!(reconstruct(&s[i], &s[j]).unwrap(), x.clone());
            }
        }

        #[test]
        fn seed_compressed_bundles_reconstruct(x in proptest::collection::vec(any::<u64>(), 0..64), seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let bundles = share_seeded(&x, &mut rng);
            let s = bundles.clone().map(|b| b.expand().unwrap());
            for (i, j) in pairs() {
                prop_assert_eq!(reconstruct(&s[i], &s[j]).unwrap(), x.clone());
            }
            // Party 0 gets two seeds, the others one explicit component each.
            prop_assert_eq!(bundles[0].explicit_len(), 0);
            prop_assert_eq!(bundles[1].explicit_len(), x.len());
            prop_assert_eq!(bundles[2].explicit_len(), x.len());
        }
    }

    #[test]
    fn a_single_party_share_does_not_reveal_the_secret() {
        // The same secret shared twice gives unrelated views to each party.
        let x = vec![42u64; 32];
        let mut rng = StdRng::seed_from_u64(1);
        let a = share(&x, &mut rng);
        let b = share(&x, &mut rng);
        for p in 0..3 {
            assert_ne!(a[p].own, b[p].own);
            assert_ne!(a[p].own, x);
            assert_ne!(a[p].next, x);
        }
    }

    #[test]
    fn detects_bad_reconstructions() {
        let mut rng = StdRng::seed_from_u64(2);
        let s = share(&[1, 2, 3], &mut rng);
        assert_eq!(
            reconstruct(&s[1], &s[1]),
            Err(ShareError::SameParty(s[1].party))
        );
        let mut bad = s[1].clone();
        bad.own[0] ^= 1; // P1's own is x_1, which P0 also holds
        assert_eq!(reconstruct(&s[0], &bad), Err(ShareError::Inconsistent));
        let mut short = s[2].clone();
        short.own.pop();
        assert!(matches!(
            reconstruct(&s[0], &short),
            Err(ShareError::LengthMismatch(..))
        ));
    }

    #[test]
    fn bundle_with_wrong_explicit_length_is_refused() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut b = share_seeded(&[5, 6, 7], &mut rng)[1].clone();
        b.len = 4;
        assert_eq!(
            b.expand(),
            Err(ShareError::BundleLength {
                got: 3,
                declared: 4
            })
        );
    }

    #[test]
    fn debug_output_hides_values() {
        let mut rng = StdRng::seed_from_u64(4);
        let s = share(&[123456789], &mut rng);
        let text = format!("{:?} {:?}", s[0], share_seeded(&[987654321], &mut rng)[1]);
        assert!(!text.contains(&s[0].own[0].to_string()));
        assert!(!text.contains("987654321"));
    }
}
