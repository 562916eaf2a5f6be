//! Issue 20: a `try_reserve` fallback exercised by `fail_every`, under
//! stress mode as the `#[global_allocator]`. Only requests of at least
//! 64 KiB are eligible (`fail_min`), so the runtime's own small
//! allocations never fail; every second eligible request of a thread does.
//! A failed `try_reserve` must be an `Err` that leaves the vector as it
//! was (a failed grow is a failed `realloc`: the old block intact), and
//! the fallback taken on it must work.
//!
//! A `harness = false` binary, so that nothing else allocates through the
//! heap or moves the count; it prints `test <name> ... ok`.

use std::collections::TryReserveError;

use arenalloc::{Config, Heap, Stress};

#[global_allocator]
static A: Heap =
    Heap::with_config(Config::new().stress(Stress::new().fail_every(2).fail_min(64 << 10)));

/// The code under test: a buffer of `want` bytes, or — when that cannot
/// be had — of 32 KiB (below `fail_min`, so it cannot fail here); says
/// which.
fn buffer(want: usize) -> Result<(Vec<u8>, bool), TryReserveError> {
    let mut v = Vec::new();
    if v.try_reserve_exact(want).is_ok() {
        return Ok((v, true));
    }
    v.try_reserve_exact(32 << 10)?;
    Ok((v, false))
}

fn fresh_reserves_fail_every_second_time() {
    let got: Vec<bool> = (0..8)
        .map(|_| {
            let (v, full) = buffer(100_000).unwrap();
            assert!(v.capacity() >= if full { 100_000 } else { 32 << 10 });
            full
        })
        .collect();
    assert_eq!(got, [true, false, true, false, true, false, true, false]);
    assert_eq!(A.injected_failures(), 4);
}

fn a_failed_grow_leaves_the_vector_intact() {
    let mut v: Vec<u8> = Vec::new();
    v.try_reserve_exact(70_000).unwrap(); // eligible request 9: succeeds
    v.extend((0..70_000u32).map(|i| (i % 251) as u8));
    let cap = v.capacity();
    let err = v.try_reserve_exact(130_000); // 10: its realloc fails
    assert!(err.is_err(), "{err:?}");
    assert_eq!((v.len(), v.capacity()), (70_000, cap));
    assert!(v.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    v.try_reserve_exact(130_000).unwrap(); // 11: succeeds, moves
    assert!(v.capacity() >= 200_000);
    assert!(v.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    assert_eq!(A.injected_failures(), 5);
}

fn another_thread_counts_its_own() {
    let got = std::thread::spawn(|| {
        (0..4)
            .map(|_| buffer(1 << 20).unwrap().1)
            .collect::<Vec<bool>>()
    })
    .join()
    .unwrap();
    assert_eq!(got, [true, false, true, false]);
    assert_eq!(A.injected_failures(), 7);
}

fn main() {
    for (name, test) in [
        (
            "fresh_reserves_fail_every_second_time",
            fresh_reserves_fail_every_second_time as fn(),
        ),
        (
            "a_failed_grow_leaves_the_vector_intact",
            a_failed_grow_leaves_the_vector_intact,
        ),
        (
            "another_thread_counts_its_own",
            another_thread_counts_its_own,
        ),
    ] {
        test();
        println!("test {name} ... ok");
    }
    A.check().unwrap();
    assert_eq!(A.stats().stress_reports(), 0);
}
