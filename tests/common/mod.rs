//! What the stress tests share: the soak multiplier.

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
