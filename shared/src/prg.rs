//! AES-128-CTR pseudo-random generator.
//!
//! Seed-compressed shares, and the parties' correlated randomness, expand a
//! 16-byte seed with this one generator, so that the browser and the servers
//! derive bit-identical streams.  AES-NI is used where the CPU has it.

use aes::Aes128;
use ctr::cipher::{KeyIvInit, StreamCipher};
use rand_core::{CryptoRng, TryCryptoRng, TryRng};
use serde::{Deserialize, Serialize};

type Aes128Ctr = ctr::Ctr128LE<Aes128>;

/// A 128-bit PRG seed (the AES key; the counter starts at zero).
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seed(pub [u8; 16]);

impl Seed {
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut s = [0u8; 16];
        rng.fill_bytes(&mut s);
        Seed(s)
    }
}

/// Seeds are secrets: never print them.
impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(..)")
    }
}

pub struct Prg {
    cipher: Aes128Ctr,
}

impl Prg {
    pub fn new(seed: Seed) -> Self {
        let iv = [0u8; 16];
        Self {
            cipher: Aes128Ctr::new(&seed.0.into(), &iv.into()),
        }
    }

    /// Fills `out` with uniformly random bytes.
    pub fn fill_bytes(&mut self, out: &mut [u8]) {
        self.cipher.write_keystream(out);
    }

    /// Fills `out` with uniformly random ring elements: little-endian words
    /// of the keystream, so the stream is the same on every platform.  The
    /// keystream is written straight into the words.
    pub fn fill_u64(&mut self, out: &mut [u64]) {
        self.fill_bytes(bytemuck::cast_slice_mut(out));
        if cfg!(target_endian = "big") {
            for w in out.iter_mut() {
                *w = u64::from_le(*w);
            }
        }
    }

    pub fn u64_vec(&mut self, len: usize) -> Vec<u64> {
        let mut v = vec![0u64; len];
        self.fill_u64(&mut v);
        v
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
}

/// A keyed AES-CTR stream is a CSPRNG, so a [`Prg`] can also drive share
/// generation; with a fixed seed that gives the reproducible sharing the
/// servers' seeded test mode needs (see `request::insecure_test_rng`).
impl TryRng for Prg {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        Prg::fill_bytes(self, &mut b);
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(Prg::next_u64(self))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        Prg::fill_bytes(self, dst);
        Ok(())
    }
}

impl TryCryptoRng for Prg {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_fips197_aes128_on_first_block() {
        // FIPS-197 appendix C.1 key with counter block 0 would not match the
        // plaintext vector, so instead check the property that defines CTR: the
        // first keystream block is AES_k(0^128).
        use aes::cipher::{BlockCipherEncrypt, KeyInit};
        let key = [
            0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d,
            0x0e, 0x0f,
        ];
        let mut block = [0u8; 16].into();
        Aes128::new(&key.into()).encrypt_block(&mut block);
        let mut ks = [0u8; 16];
        Prg::new(Seed(key)).fill_bytes(&mut ks);
        assert_eq!(ks, <[u8; 16]>::from(block));
    }

    #[test]
    fn same_seed_same_stream_regardless_of_chunking() {
        let seed = Seed([7; 16]);
        let whole = Prg::new(seed).u64_vec(1500);
        let mut p = Prg::new(seed);
        let mut pieces = p.u64_vec(3);
        pieces.extend(p.u64_vec(1000));
        pieces.extend(p.u64_vec(497));
        assert_eq!(whole, pieces);
        assert_ne!(Prg::new(Seed([8; 16])).u64_vec(4), whole[..4]);
    }

    #[test]
    fn words_are_the_little_endian_keystream() {
        let seed = Seed([3; 16]);
        let mut bytes = [0u8; 8 * 37];
        Prg::new(seed).fill_bytes(&mut bytes);
        let want: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(Prg::new(seed).u64_vec(37), want);
    }

    #[test]
    fn debug_does_not_print_the_seed() {
        assert_eq!(format!("{:?}", Seed([0xab; 16])), "Seed(..)");
    }
}
