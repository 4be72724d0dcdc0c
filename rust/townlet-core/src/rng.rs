//! Named, seeded random streams.
//!
//! Every stream is derived from (config seed, town index, stream name) by hashing, SeedSequence-style,
//! so streams are independent of each other and of neighbouring seeds (never `seed + i`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// xoshiro256++: small, fast, and its whole state is four integers, so snapshots are exact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// Derive the stream `name` for town `town` of a run seeded with `seed`.
    pub fn stream(seed: u64, town: u64, name: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"townlet-rng-v1\0");
        h.update(seed.to_le_bytes());
        h.update(town.to_le_bytes());
        h.update(name.as_bytes());
        let digest = h.finalize();
        let mut s = [0u64; 4];
        for (i, chunk) in digest.chunks_exact(8).enumerate() {
            s[i] = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
        }
        if s == [0; 4] {
            s[0] = 0x9E37_79B9_7F4A_7C15;
        }
        Self { s }
    }

    /// A stream from its four state words (an all-zero state, which xoshiro never leaves, is replaced).
    pub fn from_state(s: [u64; 4]) -> Self {
        if s == [0; 4] {
            return Self {
                s: [0x9E37_79B9_7F4A_7C15, 0, 0, 0],
            };
        }
        Self { s }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [lo, hi] (inclusive).
    pub fn range_u32(&mut self, lo: u32, hi: u32) -> u32 {
        if hi <= lo {
            return lo;
        }
        let span = u64::from(hi - lo) + 1;
        lo + (self.next_u64() % span) as u32
    }

    /// Uniform float in [lo, hi].
    pub fn range_f64(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_deterministic_and_distinct() {
        let mut a = Rng::stream(7, 0, "world");
        let mut b = Rng::stream(7, 0, "world");
        let mut c = Rng::stream(7, 0, "policy");
        let mut d = Rng::stream(7, 1, "world");
        let mut e = Rng::stream(8, 0, "world");
        let xa: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let xb: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa[0], c.next_u64());
        assert_ne!(xa[0], d.next_u64());
        assert_ne!(xa[0], e.next_u64());
    }

    #[test]
    fn unit_floats_stay_in_range() {
        let mut r = Rng::stream(1, 0, "x");
        let mut sum = 0.0;
        for _ in 0..10_000 {
            let v = r.next_f64();
            assert!((0.0..1.0).contains(&v));
            sum += v;
        }
        let mean = sum / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        for _ in 0..1000 {
            let v = r.range_u32(3, 5);
            assert!((3..=5).contains(&v));
        }
    }
}
