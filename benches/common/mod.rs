//! What the criterion benches share: quick mode and measurement settings.

use std::time::Duration;

use criterion::Criterion;

/// Set to `1` for a smoke run (tiny measurements; CI uses it).
pub const QUICK_VAR: &str = "ARENALLOC_BENCH_QUICK";

/// Whether `QUICK_VAR` asks for a smoke run.
pub fn quick() -> bool {
    std::env::var_os(QUICK_VAR).is_some_and(|v| v == "1")
}

/// Measurement settings: modest by default (a full run takes a few minutes
/// on two cores), tiny in quick mode. Command-line flags such as
/// `--measurement-time` still override these.
pub fn config() -> Criterion {
    let c = Criterion::default();
    if quick() {
        c.warm_up_time(Duration::from_millis(50))
            .measurement_time(Duration::from_millis(100))
            .sample_size(10)
    } else {
        c.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(30)
    }
}
