//! What the stress tests share: the soak multiplier and seeded randomness.
//!
//! Each test binary that includes this uses only some of it.

#![allow(dead_code)]

/// `ARENALLOC_SOAK` (default 1): how many times the default work a stress
/// test does; a bad value is a test-setup error.
pub fn soak_env() -> usize {
    match std::env::var("ARENALLOC_SOAK") {
        Err(_) => 1,
        Ok(s) => match s.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => panic!("ARENALLOC_SOAK must be a positive integer, not {s:?}"),
        },
    }
}

/// splitmix64's finaliser: a bijective mix of a 64-bit word.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A splitmix64 generator, seeded from a path of numbers (seed, round,
/// stage, item...) so that every work item draws the same numbers whichever
/// thread runs it. `base` names the stream family of a test binary.
pub struct Rng(u64);

impl Rng {
    pub fn from_path(base: u64, path: &[u64]) -> Rng {
        Rng(path.iter().fold(base, |s, &p| mix(s ^ p)))
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}
