//! Stress mode (`Config::stress`) through the Rust API: each finding is
//! made on purpose and must be found where the design says — by `check()`
//! (exact address, error kind), on free, on realloc, on eviction from the
//! quarantine — and counted (`keep_going`), with the block's request size
//! and both threads in the record; double and invalid frees stay exact;
//! the quarantine stays within its bound; the queries report the request.
//! The aborting reports and the C programs are `tests/preload/stress.rs`.

use std::sync::mpsc;
use std::thread;

use arenalloc::{Config, FreeError, Heap, HeapErrorKind, Stress};

/// A stress heap that counts reports instead of aborting.
fn heap(stress: Stress) -> Heap {
    Heap::with_config(
        Config::new()
            .region_size(1 << 30)
            .hardened(true)
            .stress(stress.keep_going(true)),
    )
}

#[test]
fn stress_fills_new_memory_and_reports_the_request_as_usable() {
    let h = heap(Stress::new());
    let p = h.malloc(10);
    // SAFETY: 10 fresh bytes.
    let bytes = unsafe { std::slice::from_raw_parts(p, 10) };
    assert!(bytes.iter().all(|&b| b == 0xbe));
    assert_eq!(h.usable_size(p), Some(10));
    assert!(h.is_allocated(p.wrapping_add(9)));
    assert!(
        !h.is_allocated(p.wrapping_add(10)),
        "the redzone is nobody's"
    );
    let z = h.calloc(5, 7);
    // SAFETY: 35 fresh bytes.
    assert!(unsafe { std::slice::from_raw_parts(z, 35) }
        .iter()
        .all(|&b| b == 0));
    h.check().unwrap();
    // SAFETY: live blocks of `h`.
    unsafe {
        h.free(p).unwrap();
        h.free(z).unwrap();
    }
    assert_eq!(h.stats().stress_reports(), 0);
    h.check().unwrap();
}

/// The block-start queries (`usable_size_at_start`, C's
/// `malloc_usable_size`) report the request in stress mode, hardened or
/// not: a stress heap that is not hardened must not take the inline
/// lock-free path either, which would answer the block's usable size.
#[test]
fn stress_block_start_queries_report_the_request() {
    for hardened in [false, true] {
        let h = Heap::with_config(
            Config::new()
                .region_size(1 << 30)
                .hardened(hardened)
                .stress(Stress::new().keep_going(true)),
        );
        let p = h.malloc(10);
        assert_eq!(h.usable_size_at_start(p), Some(10), "hardened {hardened}");
        assert_eq!(h.malloc_usable_size(p), 10, "hardened {hardened}");
        assert_eq!(h.usable_size_at_start(p.wrapping_add(1)), None);
        assert_eq!(h.malloc_usable_size(p.wrapping_add(16)), 0);
        // SAFETY: a live block of `h`.
        unsafe { h.free(p) }.unwrap();
        assert_eq!(h.usable_size_at_start(p), None, "quarantined");
        assert_eq!(h.malloc_usable_size(p), 0);
        h.check().unwrap();
    }
}

#[test]
fn stress_double_free_of_a_quarantined_block_is_double_free() {
    let h = heap(Stress::new());
    let p = h.malloc(64);
    // SAFETY: `p` is live; the second free is the error under test.
    unsafe {
        h.free(p).unwrap();
        assert!(!h.is_allocated(p));
        assert_eq!(h.usable_size(p), None);
        assert_eq!(h.free(p), Err(FreeError::DoubleFree));
        assert_eq!(h.free(p.add(16)), Err(FreeError::NotAllocated));
    }
    let s = h.stats();
    assert_eq!(s.live_blocks(), 0);
    assert_eq!(s.arenas()[0].quarantined_blocks, 1);
    h.check().unwrap();
}

#[test]
fn stress_use_after_free_write_is_found_by_check_and_on_eviction() {
    let h = heap(Stress::new().quarantine(64 << 10));
    let p = h.malloc(64);
    // SAFETY: `p` is live, then freed; the write after free is the bug
    // under test and lands in quarantined memory the heap owns.
    unsafe {
        h.free(p).unwrap();
        *p.add(24) = 1;
    }
    let e = h.check().unwrap_err();
    assert_eq!(e.kind, HeapErrorKind::UseAfterFree);
    assert_eq!(e.addr, p as usize + 24, "the exact byte");
    assert_eq!(
        h.stats().stress_reports(),
        0,
        "check() returns, it does not report"
    );
    // Push it out of the quarantine: the eviction verifies the poison.
    for _ in 0..2048 {
        let q = h.malloc(64);
        // SAFETY: live.
        unsafe { h.free(q) }.unwrap();
    }
    let s = h.stats();
    assert_eq!(s.stress_reports(), 1, "reported once, on eviction");
    assert!(
        s.quarantined_bytes() <= 64 << 10,
        "the quarantine is bounded"
    );
    h.check().unwrap();
}

#[test]
fn stress_overflow_is_found_by_check_and_on_free_and_realloc() {
    let h = heap(Stress::new());
    for (size, over) in [(64, 0), (64, 15), (13, 0), (100, 27), (2 << 20, 0)] {
        let p = h.malloc(size);
        // SAFETY: an overflow by `over + 1` bytes: the bug under test,
        // into the redzone the heap owns.
        unsafe { *p.add(size + over) = 0x55 };
        if size < 1 << 20 {
            let e = h.check().unwrap_err();
            assert_eq!(
                (e.kind, e.addr),
                (HeapErrorKind::Overflow, p as usize + size + over)
            );
        }
        let before = h.stats().stress_reports();
        // SAFETY: live.
        unsafe { h.free(p) }.unwrap();
        assert_eq!(
            h.stats().stress_reports(),
            before + 1,
            "size {size} +{over}"
        );
        h.check().unwrap();
    }
    let p = h.malloc(32);
    // SAFETY: one byte past the request, then a realloc of the live block.
    let q = unsafe {
        *p.add(32) = 7;
        h.realloc(p, 64)
    };
    assert_ne!(p, q, "stress realloc always moves");
    assert_eq!(h.stats().stress_reports(), 6);
    // SAFETY: live.
    unsafe { h.free(q) }.unwrap();
    h.check().unwrap();
}

#[test]
fn stress_realloc_moves_and_keeps_contents() {
    let h = heap(Stress::new());
    let p = h.malloc(40);
    // SAFETY: 40 live bytes, then realloc of the live block.
    let q = unsafe {
        std::ptr::write_bytes(p, 0x11, 40);
        h.realloc(p, 4000)
    };
    // SAFETY: `q` holds 4000 bytes, the first 40 copied.
    let bytes = unsafe { std::slice::from_raw_parts(q, 4000) };
    assert!(bytes[..40].iter().all(|&b| b == 0x11));
    assert!(bytes[40..].iter().all(|&b| b == 0xbe));
    assert!(!h.is_allocated(p));
    assert_eq!(h.usable_size(q), Some(4000));
    // SAFETY: live.
    unsafe { h.free(q) }.unwrap();
    h.check().unwrap();
    assert_eq!(h.stats().stress_reports(), 0);
}

#[test]
fn stress_a_block_freed_by_another_thread_is_quarantined_in_its_own_arena() {
    let h = heap(Stress::new());
    let (tx, rx) = mpsc::channel::<usize>();
    thread::scope(|s| {
        s.spawn(|| {
            let p = h.malloc(48) as usize;
            tx.send(p).unwrap();
            // Keep this thread's arena owned until the block is freed.
            drop(tx);
        })
        .join()
        .unwrap();
        let p = rx.recv().unwrap() as *mut u8;
        // SAFETY: a live block handed over; the write after free is the bug.
        unsafe {
            h.free(p).unwrap();
            *p.add(8) = 0;
        }
        let e = h.check().unwrap_err();
        assert_eq!(
            (e.kind, e.addr),
            (HeapErrorKind::UseAfterFree, p as usize + 8)
        );
        assert_eq!(
            h.stats()
                .arenas()
                .iter()
                .map(|a| a.quarantined_blocks)
                .sum::<usize>(),
            1
        );
    });
}

#[test]
fn stress_leak_report_groups_by_size_and_thread() {
    let h = heap(Stress::new());
    let mine: Vec<_> = (0..3).map(|_| h.malloc(200) as usize).collect();
    let theirs = thread::scope(|s| {
        s.spawn(|| (0..2).map(|_| h.malloc(5000) as usize).collect::<Vec<_>>())
            .join()
            .unwrap()
    });
    let mut out = Vec::new();
    assert_eq!(h.leak_report(&mut out).unwrap(), 5);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("5 blocks, 10600 bytes"), "{text}");
    assert!(
        lines[1].contains("2 blocks of 5000 bytes (10000 bytes) allocated by thread"),
        "{text}"
    );
    assert!(
        lines[2].contains("3 blocks of 200 bytes (600 bytes) allocated by thread"),
        "{text}"
    );
    assert_ne!(lines[1].split("[tid").nth(1), lines[2].split("[tid").nth(1));
    for p in mine.into_iter().chain(theirs) {
        // SAFETY: live blocks of `h`.
        unsafe { h.free(p as *mut u8) }.unwrap();
    }
    let mut out = Vec::new();
    assert_eq!(h.leak_report(&mut out).unwrap(), 0);
}

#[test]
fn stress_off_keeps_the_owner_cache_and_on_turns_it_off() {
    let off = Heap::with_config(Config::new().region_size(1 << 30));
    let on = heap(Stress::new());
    for h in [&off, &on] {
        let p = h.malloc(32);
        // SAFETY: live.
        unsafe { h.free(p) }.unwrap();
    }
    assert!(off.stats().cached_blocks() > 0);
    assert_eq!(on.stats().cached_blocks(), 0);
    assert_eq!(on.stats().arenas()[0].quarantined_blocks, 1);
}
