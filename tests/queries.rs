//! Pointer queries (`is_allocated`, `usable_size`, `allocation_containing`)
//! racing with frees that hand chunks back to the region.
//!
//! The queries are documented to answer for any pointer at any time. A
//! chunk that empties goes back to the region (purged; it stays readable,
//! but may be handed out again at once) when its arena already keeps an
//! empty one, so a query of an address in it must never take another
//! owner's words for an answer.
//! Here one thread empties chunks over and over — six 1 MiB blocks fill two
//! chunks (three to a chunk; 1 MiB is still an arena request), freeing them
//! leaves two empty chunks and the second goes back — and publishes the
//! addresses it holds, while `QUERIERS` threads query those addresses
//! (block starts, interiors, headers, chunk bases) as fast as they can;
//! more threads than the two cores CI has, so that a querier is often
//! preempted between reading the chunk map and reading the chunk. Before
//! the fix this died of `SIGSEGV` in `block_at_or_before` every time (8
//! runs of 8). Every answer must also be one that a block of this heap can
//! give, since the test makes no other blocks.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;

use arenalloc::{Config, Heap, CHUNK, LARGE_THRESHOLD};

/// The one arena request size: the largest an arena serves.
const BLOCK: usize = LARGE_THRESHOLD;
/// Blocks one round holds: two chunks' worth.
const PER_ROUND: usize = 6;
/// Rounds of alloc-all, free-all: each releases a chunk.
const ROUNDS: usize = 1500;
/// A large allocation made in every round too, so that the large path's
/// queries race with its frees as well.
const LARGE: usize = 2 * LARGE_THRESHOLD;
/// Threads querying at once.
const QUERIERS: usize = 3;

/// Addresses a query probes around a block that was handed out at `p`.
fn probes(p: usize) -> [usize; 6] {
    [
        p,
        p + 1,
        p + BLOCK / 2,
        p + BLOCK - 1,
        p.wrapping_sub(16),
        p & !(CHUNK - 1),
    ]
}

#[test]
fn queries_race_with_frees_that_release_chunks() {
    let heap = Heap::with_config(Config::new().region_size(64 << 20));
    // Published addresses: 0 = nothing yet. Stale ones are the point.
    let slots: Vec<AtomicUsize> = (0..=PER_ROUND).map(|_| AtomicUsize::new(0)).collect();
    let done = AtomicBool::new(false);
    let start = Barrier::new(QUERIERS + 1);
    let (live_seen, queries) = std::thread::scope(|s| {
        let query = || {
            start.wait();
            let (mut live, mut n) = (0u64, 0u64);
            while !done.load(Ordering::Relaxed) {
                for slot in &slots {
                    let p = slot.load(Ordering::Relaxed);
                    if p == 0 {
                        continue;
                    }
                    for q in probes(p) {
                        let ptr = q as *const u8;
                        n += 1;
                        let Some(usable) = heap.usable_size(ptr) else {
                            continue;
                        };
                        live += 1;
                        assert!(
                            usable == BLOCK || usable >= LARGE,
                            "usable_size({ptr:p}) = {usable}: no block of this heap has it"
                        );
                        if let Some((start, usable)) = heap.allocation_containing(ptr) {
                            let start = start as usize;
                            assert!(
                                start <= q && q < start + usable,
                                "{ptr:p} in {start:#x}+{usable}"
                            );
                        }
                    }
                }
            }
            (live, n)
        };
        let queriers: Vec<_> = (0..QUERIERS).map(|_| s.spawn(query)).collect();
        start.wait();
        for round in 0..ROUNDS {
            let mut held = [std::ptr::null_mut::<u8>(); PER_ROUND + 1];
            for (i, h) in held.iter_mut().enumerate() {
                let size = if i == PER_ROUND { LARGE } else { BLOCK };
                *h = heap.malloc(size);
                assert!(!h.is_null(), "round {round}: malloc({size})");
                slots[i].store(*h as usize, Ordering::Relaxed);
            }
            // Free in an order that alternates between the two chunks.
            for i in [0, 3, 1, 4, 2, 5, 6] {
                // SAFETY: `held[i]` is live and not used again; the querier
                // only queries its address, which any pointer may be.
                unsafe { heap.free(held[i]) }.unwrap();
            }
        }
        done.store(true, Ordering::Relaxed);
        let counts = queriers.into_iter().map(|q| q.join().unwrap());
        counts.fold((0, 0), |(l, n), (dl, dn)| (l + dl, n + dn))
    });
    eprintln!("{queries} queries, {live_seen} answered live");
    heap.check().unwrap();
    let stats = heap.stats();
    assert_eq!(stats.live_blocks(), 0);
    assert_eq!(
        stats.arenas()[0].chunks,
        1,
        "every round released its second chunk"
    );
}

/// A query of a block start is answered without a lock (`start_usable`),
/// and must say what the locked path says of the same block: live blocks
/// of every path (cached classes, the locked index, a large run) give
/// their usable size, the same as an interior pointer into them does;
/// a freed block (parked in the owner cache or back in the index), and a
/// block another thread freed that waits in its owner's queue, give none.
/// `usable_size_at_start` (C's `malloc_usable_size`) answers the same for
/// a start and nothing for an interior pointer, aligned or not, or for a
/// pointer into a chunk's header (where no block starts).
#[test]
fn block_start_queries_agree_with_the_locked_path() {
    let heap = Heap::with_config(Config::new().region_size(256 << 20));
    for size in [
        1,
        16,
        17,
        100,
        1024,
        1025,
        5000,
        100_000,
        2 * LARGE_THRESHOLD,
    ] {
        let p = heap.malloc(size);
        assert!(!p.is_null());
        let usable = heap.usable_size(p).expect("a live block has a size");
        assert!(usable >= size, "{size}: usable {usable}");
        assert_eq!(
            heap.usable_size(p.wrapping_add(1)),
            Some(usable),
            "{size}: interior"
        );
        assert_eq!(heap.allocation_containing(p), Some((p, usable)));
        assert_eq!(heap.usable_size_at_start(p), Some(usable), "{size}: start");
        for interior in [1, 16, usable - 16]
            .into_iter()
            .filter(|&i| 0 < i && i < usable)
        {
            assert_eq!(
                heap.usable_size_at_start(p.wrapping_add(interior)),
                None,
                "{size}: interior {interior}"
            );
        }
        if size < LARGE_THRESHOLD {
            // An arena chunk: its header granules hold no block start.
            let chunk = (p as usize & !(CHUNK - 1)) as *const u8;
            for off in [0, 16, 32] {
                assert_eq!(heap.usable_size_at_start(chunk.wrapping_add(off)), None);
            }
        }
        assert!(heap.is_allocated(p));
        // SAFETY: `p` is live and ours; nothing uses it after.
        unsafe { heap.free(p) }.unwrap();
        assert_eq!(heap.usable_size(p), None, "{size}: freed");
        assert_eq!(heap.usable_size_at_start(p), None, "{size}: freed");
        assert!(!heap.is_allocated(p));
        assert_eq!(heap.allocation_containing(p), None);
    }
    let p = heap.malloc(64) as usize;
    std::thread::scope(|s| {
        // SAFETY: `p` is live and handed over to the freeing thread.
        s.spawn(|| unsafe { heap.free(p as *mut u8) }.unwrap());
    });
    assert_eq!(
        heap.usable_size(p as *const u8),
        None,
        "pending in the queue"
    );
    assert_eq!(heap.usable_size_at_start(p as *const u8), None);
    assert!(!heap.is_allocated(p as *const u8));
    heap.check().expect("heap invariants");
    assert_eq!(heap.stats().live_blocks(), 0);
}
