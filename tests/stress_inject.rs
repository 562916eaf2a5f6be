//! Stress mode's allocation-failure injection and schedule jitter (issue
//! 20) through the Rust API: each knob fails exactly the allocations it
//! names — counted per thread and per heap, `fail_min` deciding which are
//! eligible — a failed allocation changes nothing (realloc keeps its
//! block, `check()` passes), the same seed gives the same failures and
//! another seed others, jitter moves no failure, and the reports say what
//! happened. The C programs (ENOMEM, a cleanup bug found, a race widened)
//! are `tests/preload/stress_mode.rs`; `try_reserve` under a global stress
//! allocator is `tests/stress_try_reserve.rs`.

use std::alloc::{GlobalAlloc, Layout};
use std::thread;

use arenalloc::{Config, Heap, Stress};

/// A stress heap with `stress`'s knobs; reports counted, not fatal.
fn heap(stress: Stress) -> Heap {
    Heap::with_config(
        Config::new()
            .region_size(1 << 30)
            .hardened(true)
            .stress(stress.keep_going(true)),
    )
}

/// Which of `n` allocations of `size` bytes failed (true); the others are
/// freed at the end.
fn failures(h: &Heap, n: usize, size: usize) -> Vec<bool> {
    let blocks: Vec<*mut u8> = (0..n).map(|_| h.malloc(size)).collect();
    let failed = blocks.iter().map(|p| p.is_null()).collect();
    for p in blocks {
        // SAFETY: live blocks of `h`, or null.
        unsafe { h.free(p) }.unwrap();
    }
    failed
}

/// The 1-based indices of the failures.
fn failed_at(pattern: &[bool]) -> Vec<usize> {
    (1..=pattern.len()).filter(|&i| pattern[i - 1]).collect()
}

#[test]
fn fail_every_fails_each_nth_allocation_of_each_thread() {
    let h = heap(Stress::new().fail_every(3));
    let per_thread = thread::scope(|s| {
        let a = s.spawn(|| failed_at(&failures(&h, 10, 48)));
        let b = s.spawn(|| failed_at(&failures(&h, 7, 2 << 20)));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(per_thread.0, [3, 6, 9], "thread A's own count");
    assert_eq!(
        per_thread.1,
        [3, 6],
        "thread B's own count (large blocks too)"
    );
    assert_eq!(h.injected_failures(), 5);
    assert_eq!(h.stats().live_blocks(), 0);
    h.check().unwrap();
}

#[test]
fn fail_min_makes_only_large_enough_requests_eligible() {
    let h = heap(Stress::new().fail_every(2).fail_min(1024));
    let mut got = Vec::new();
    for _ in 0..6 {
        let small = h.malloc(1023);
        let big = h.malloc(1024);
        got.push((small.is_null(), big.is_null()));
        // SAFETY: live or null.
        unsafe {
            h.free(small).unwrap();
            h.free(big).unwrap();
        }
    }
    // Small ones never fail and are not counted: every 2nd big one fails.
    assert_eq!(
        got,
        [
            (false, false),
            (false, true),
            (false, false),
            (false, true),
            (false, false),
            (false, true)
        ]
    );
    assert_eq!(h.injected_failures(), 3);
}

#[test]
fn every_allocation_entry_point_fails_like_exhaustion() {
    let h = heap(Stress::new().fail_every(1));
    assert!(h.malloc(1).is_null());
    assert!(h.calloc(4, 8).is_null());
    assert!(h.aligned_alloc(4096, 100).is_null());
    assert!(h.malloc(3 << 20).is_null());
    // SAFETY: a valid layout; null is the failure under test.
    assert!(unsafe { GlobalAlloc::alloc(&h, Layout::from_size_align(64, 64).unwrap()) }.is_null());
    // SAFETY: as above.
    assert!(unsafe { GlobalAlloc::alloc_zeroed(&h, Layout::new::<[u64; 4]>()) }.is_null());
    // SAFETY: realloc of null allocates.
    assert!(unsafe { h.realloc(std::ptr::null_mut(), 10) }.is_null());
    assert_eq!(h.injected_failures(), 7);
    let s = h.stats();
    assert_eq!((s.allocations(), s.live_blocks()), (0, 0), "{s:?}");
    h.check().unwrap();
}

#[test]
fn a_failed_realloc_leaves_the_block_intact() {
    // Allocation 1 succeeds, 2 (the realloc's new block) fails, 3 succeeds.
    let h = heap(Stress::new().fail_every(2));
    let p = h.malloc(100);
    assert!(!p.is_null());
    // SAFETY: 100 live bytes.
    unsafe { std::ptr::write_bytes(p, 0x5a, 100) };
    // SAFETY: `p` is live; null leaves it so.
    let q = unsafe { h.realloc(p, 5000) };
    assert!(q.is_null());
    assert!(h.is_allocated(p) && h.usable_size(p) == Some(100));
    // SAFETY: still 100 live bytes.
    assert!(unsafe { std::slice::from_raw_parts(p, 100) }
        .iter()
        .all(|&b| b == 0x5a));
    h.check().unwrap();
    // SAFETY: `p` is live.
    let r = unsafe { h.realloc(p, 5000) };
    assert!(!r.is_null() && r != p);
    // SAFETY: the first 100 of 5000 live bytes were copied.
    assert!(unsafe { std::slice::from_raw_parts(r, 100) }
        .iter()
        .all(|&b| b == 0x5a));
    // SAFETY: live.
    unsafe { h.free(r) }.unwrap();
    assert_eq!(h.stats().stress_reports(), 0);
    h.check().unwrap();
}

#[test]
fn fail_rate_is_replayed_by_its_seed_and_moved_by_another() {
    let pattern = |seed: u64| failures(&heap(Stress::new().fail_rate(0.25).seed(seed)), 4000, 32);
    let first = pattern(7);
    assert_eq!(pattern(7), first, "the same seed, the same failures");
    assert_ne!(pattern(8), first, "another seed, other failures");
    let n = first.iter().filter(|&&f| f).count();
    assert!((800..1200).contains(&n), "about a quarter: {n}");
    assert_eq!(
        failures(&heap(Stress::new().fail_rate(1.0)), 50, 8),
        [true; 50]
    );
}

#[test]
fn a_drawn_seed_replays_the_run() {
    let h = heap(Stress::new().fail_rate(0.5));
    let first = failures(&h, 200, 16);
    let seed = h.stress_seed().unwrap();
    let replay = heap(Stress::new().fail_rate(0.5).seed(seed));
    assert_eq!(failures(&replay, 200, 16), first);
    assert_eq!(replay.stress_seed(), Some(seed));
    let mut text = Vec::new();
    h.stress_injection_report(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains(&format!(
            "arenalloc: seed {seed} (drawn; replay with seed={seed}"
        )),
        "{text}"
    );
    let mut text = Vec::new();
    replay.stress_injection_report(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.ends_with(&format!("arenalloc: seed {seed}\n")),
        "given: {text}"
    );
}

#[test]
fn fail_after_is_a_limit_on_live_bytes() {
    let h = heap(Stress::new().fail_after(10_000));
    let blocks: Vec<*mut u8> = (0..10).map(|_| h.malloc(1000)).collect();
    assert!(blocks.iter().all(|p| !p.is_null()), "10 x 1000 fit");
    assert!(h.malloc(1).is_null(), "10,001 would not");
    // SAFETY: live.
    unsafe { h.free(blocks[0]) }.unwrap();
    let p = h.malloc(1000);
    assert!(!p.is_null(), "room again after a free");
    assert!(h.malloc(1).is_null());
    // A realloc needs the old and the new block at once, as it would.
    // SAFETY: live.
    assert!(unsafe { h.realloc(p, 999) }.is_null());
    for q in blocks.into_iter().skip(1).chain([p]) {
        // SAFETY: live.
        unsafe { h.free(q) }.unwrap();
    }
    let big = h.malloc(10_000);
    assert!(!big.is_null(), "everything was given back");
    // SAFETY: live.
    unsafe { h.free(big) }.unwrap();
    assert_eq!(h.injected_failures(), 3);
    h.check().unwrap();
}

#[test]
fn each_heap_counts_its_own_calls() {
    let a = heap(Stress::new().fail_every(2));
    let b = heap(Stress::new().fail_every(2));
    let mut got = Vec::new();
    for _ in 0..4 {
        for h in [&a, &b] {
            let p = h.malloc(64);
            got.push(p.is_null());
            // SAFETY: live or null.
            unsafe { h.free(p) }.unwrap();
        }
    }
    assert_eq!(got, [false, false, true, true, false, false, true, true]);
}

#[test]
fn jitter_delays_calls_and_moves_no_failure() {
    let plain = heap(Stress::new().fail_rate(0.1).seed(3));
    let jittery = heap(Stress::new().fail_rate(0.1).seed(3).jitter_rate(0.5));
    assert_eq!(failures(&jittery, 1000, 24), failures(&plain, 1000, 24));
    let report = |h: &Heap| {
        let mut text = Vec::new();
        h.stress_injection_report(&mut text).unwrap();
        String::from_utf8(text).unwrap()
    };
    let text = report(&jittery);
    // 1000 allocations and about 900 frees (a null one returns before
    // the stress path), half of them delayed.
    let delayed: u64 = text
        .split("jitter delayed ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!((800..1200).contains(&delayed), "{text}");
    assert!(!report(&plain).contains("jitter"));
    jittery.check().unwrap();
}

#[test]
fn the_exit_report_counts_failures_per_thread_and_leaks_name_the_last() {
    let h = heap(Stress::new().fail_every(2).seed(11).leak_report(true));
    let leaked = h.malloc(40); // allocation 1 of this thread: kept
    let mut out = Vec::new();
    assert_eq!(h.stress_injection_report(&mut out).unwrap(), 0);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "arenalloc: injected 0 allocation failures\narenalloc: seed 11\n"
    );
    let _ = failures(&h, 4, 8); // 2 of 4 fail
    thread::scope(|s| {
        s.spawn(|| failures(&h, 6, 8)); // 3 of 6 fail
    });
    let mut out = Vec::new();
    assert_eq!(h.stress_injection_report(&mut out).unwrap(), 5);
    let text = String::from_utf8(out).unwrap();
    let first = text.lines().next().unwrap();
    let ids: Vec<(u32, u64)> = first
        .split_once('(')
        .unwrap()
        .1
        .trim_end_matches(')')
        .split(", ")
        .map(|t| {
            let (id, n) = t.trim_start_matches("thread ").split_once(": ").unwrap();
            (id.parse().unwrap(), n.parse().unwrap())
        })
        .collect();
    assert!(
        first.starts_with("arenalloc: injected 5 allocation failures ("),
        "{text}"
    );
    let counts: Vec<u64> = ids.iter().map(|&(_, n)| n).collect();
    assert_eq!(ids.len(), 2, "{text}");
    assert!(counts.contains(&2) && counts.contains(&3), "{text}");
    // The leak report names the latest failure: the other thread's 3rd.
    let other = ids.iter().find(|&&(_, n)| n == 3).unwrap().0;
    let mut out = Vec::new();
    assert_eq!(h.leak_report(&mut out).unwrap(), 1);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.lines().next().unwrap().ends_with(&format!(
            "in 1 group after injected failure #3 in thread {other}"
        )),
        "{text}"
    );
    // SAFETY: live.
    unsafe { h.free(leaked) }.unwrap();
}

#[test]
fn without_knobs_nothing_fails_and_nothing_is_reported() {
    let h = heap(Stress::new());
    assert_eq!(failures(&h, 500, 100), [false; 500]);
    assert_eq!(h.injected_failures(), 0);
    let mut out = Vec::new();
    h.stress_injection_report(&mut out).unwrap();
    assert!(out.is_empty());
    let off = Heap::with_config(Config::new().region_size(1 << 30));
    let p = off.malloc(8);
    assert_eq!(off.stress_seed(), None, "stress mode off");
    // SAFETY: live.
    unsafe { off.free(p) }.unwrap();
}
