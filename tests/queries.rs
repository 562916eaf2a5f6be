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
use std::sync::{mpsc, Barrier};

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
                        // The block-start query, lock-free while the
                        // chunk may change hands: a size a block of this
                        // heap has, and never one for a misaligned address.
                        if let Some(usable) = heap.usable_size_at_start(ptr) {
                            assert!(
                                q % 16 == 0 && (usable == BLOCK || usable >= LARGE),
                                "usable_size_at_start({ptr:p}) = {usable}"
                            );
                        }
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

/// The configurations the block-start tests run in: unchecked (the
/// inline path, `StartTest`) and hardened (the checked lock-free path,
/// through the heap's metadata).
fn configs() -> [Config; 2] {
    let c = Config::new().region_size(256 << 20);
    [c, c.hardened(true)]
}

/// What every block-start query says of `p` when its live block holds
/// `usable` bytes (`None`: `p` is no live block start).
fn assert_start(heap: &Heap, p: *const u8, usable: Option<usize>, what: &str) {
    assert_eq!(
        heap.usable_size_at_start(p),
        usable,
        "{what}: usable_size_at_start"
    );
    assert_eq!(
        heap.malloc_usable_size(p),
        usable.unwrap_or(0),
        "{what}: malloc_usable_size"
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
/// pointer into a chunk's header (where no block starts, and whose first
/// granules put the "header" in the chunk before), unchecked and hardened.
#[test]
fn block_start_queries_agree_with_the_locked_path() {
    for config in configs() {
        block_start_queries_agree_in(Heap::with_config(config));
    }
}

/// Arena chunks side by side (three of the largest arena blocks fill one;
/// a new heap hands out its slots in order): the base of each puts the
/// "header" of a block start in the chunk before it, on that chunk's end
/// sentinel, which no query takes for a block.
#[test]
fn a_chunk_base_is_no_block_start_after_an_arena_chunk() {
    for config in configs() {
        let heap = Heap::with_config(config);
        let big: Vec<*mut u8> = (0..6).map(|_| heap.malloc(LARGE_THRESHOLD)).collect();
        let chunks: Vec<usize> = big.iter().map(|&b| b as usize & !(CHUNK - 1)).collect();
        assert!(
            chunks.iter().any(|&c| chunks.contains(&(c - CHUNK))),
            "two adjacent arena chunks: {chunks:x?}"
        );
        for &c in &chunks {
            for off in [0, 16] {
                assert_start(
                    &heap,
                    (c + off) as *const u8,
                    None,
                    &format!("{c:#x} + {off}"),
                );
            }
        }
        for b in big {
            assert_start(&heap, b, Some(LARGE_THRESHOLD), "the largest arena block");
            // SAFETY: live and ours.
            unsafe { heap.free(b) }.unwrap();
        }
        heap.check().expect("heap invariants");
    }
}

fn block_start_queries_agree_in(heap: Heap) {
    let hardened = heap.config().get_hardened();
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
        let what = format!("hardened {hardened}, {size}");
        let p = heap.malloc(size);
        assert!(!p.is_null());
        let usable = heap.usable_size(p).expect("a live block has a size");
        assert!(usable >= size, "{what}: usable {usable}");
        assert_eq!(
            heap.usable_size(p.wrapping_add(1)),
            Some(usable),
            "{what}: interior"
        );
        assert_eq!(heap.allocation_containing(p), Some((p, usable)));
        assert_start(&heap, p, Some(usable), &format!("{what}: start"));
        // The payload full of words that read as a live block's header
        // (size 48, no flag): only the start bit tells an interior pointer
        // from a block start.
        // SAFETY: `usable` bytes at `p` are ours, 16-aligned.
        unsafe { std::slice::from_raw_parts_mut(p.cast::<usize>(), usable / 8) }.fill(48);
        for interior in [1, 8, 16, usable - 16]
            .into_iter()
            .filter(|&i| 0 < i && i < usable)
        {
            assert_start(
                &heap,
                p.wrapping_add(interior),
                None,
                &format!("{what}: interior {interior}"),
            );
        }
        if size < LARGE_THRESHOLD {
            // An arena chunk: its header granules hold no block start.
            let chunk = (p as usize & !(CHUNK - 1)) as *const u8;
            for off in [0, 16, 32, 48] {
                assert_start(
                    &heap,
                    chunk.wrapping_add(off),
                    None,
                    &format!("{what}: chunk + {off}"),
                );
            }
        }
        assert!(heap.is_allocated(p));
        // SAFETY: `p` is live and ours; nothing uses it after.
        unsafe { heap.free(p) }.unwrap();
        assert_eq!(heap.usable_size(p), None, "{what}: freed");
        assert_start(&heap, p, None, &format!("{what}: freed"));
        assert!(!heap.is_allocated(p));
        assert_eq!(heap.allocation_containing(p), None);
    }
    for outside in [
        std::ptr::null(),
        &heap as *const Heap as *const u8,
        16 as *const u8,
    ] {
        assert_start(&heap, outside, None, &format!("{outside:p}"));
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
    assert_start(&heap, p as *const u8, None, "pending in the queue");
    assert!(!heap.is_allocated(p as *const u8));

    heap.check().expect("heap invariants");
    assert_eq!(heap.stats().live_blocks(), 0);
}

/// A live block of another thread's arena is answered at its start from
/// any thread, as by its owner (the inline path serves every arena's
/// chunks, not the caller's alone), and not at its interior; once its
/// owner has freed it (into its owner cache, or the index), by nobody.
#[test]
fn a_block_of_another_threads_arena_is_answered_at_its_start() {
    for config in configs() {
        let heap = Heap::with_config(config);
        let hardened = config.get_hardened();
        // The querying thread has an arena of its own.
        let mine = heap.malloc(32);
        let (to_main, from_owner) = mpsc::channel::<Vec<(usize, usize)>>();
        let (to_owner, from_main) = mpsc::channel::<()>();
        std::thread::scope(|s| {
            let heap = &heap;
            s.spawn(move || {
                let blocks: Vec<(usize, usize)> = [16, 100, 1000, 5000, 100_000]
                    .into_iter()
                    .map(|size| {
                        let p = heap.malloc(size);
                        (p as usize, heap.usable_size(p).unwrap())
                    })
                    .collect();
                to_main.send(blocks.clone()).unwrap();
                from_main.recv().unwrap();
                for &(p, _) in &blocks {
                    // SAFETY: live blocks of this thread's, not used after.
                    unsafe { heap.free(p as *mut u8) }.unwrap();
                }
                to_main.send(blocks).unwrap();
            });
            let blocks = from_owner.recv().unwrap();
            assert_eq!(heap.stats().arenas().len(), 2, "hardened {hardened}");
            for &(p, usable) in &blocks {
                assert_ne!(p & !(CHUNK - 1), mine as usize & !(CHUNK - 1));
                let what = format!("hardened {hardened}, foreign {p:#x}");
                assert_start(heap, p as *const u8, Some(usable), &what);
                assert_start(heap, (p + 16) as *const u8, None, &what);
            }
            to_owner.send(()).unwrap();
            for (p, _) in from_owner.recv().unwrap() {
                let what = format!("hardened {hardened}, freed by its owner");
                assert_start(heap, p as *const u8, None, &what);
            }
        });
        // SAFETY: live and ours.
        unsafe { heap.free(mine) }.unwrap();
        heap.check().expect("heap invariants");
    }
}
