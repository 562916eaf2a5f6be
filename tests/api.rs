//! Every public function of `Heap`, and every row of DESIGN.md's error table.

use arenalloc::{Config, FreeError, Heap, CHUNK, LARGE_THRESHOLD};

// The tests hand the heap pointers it returned (or deliberately bad ones,
// which the checked API must reject); these wrappers hold the one argument.

/// Frees through the checked API.
fn free(heap: &Heap, p: *mut u8) -> Result<(), FreeError> {
    // SAFETY: the checked API validates `p`; tests never use a block after
    // freeing it, and bad pointers are exactly what it must report.
    unsafe { heap.free(p) }
}

/// Frees the block containing `p`.
fn free_containing(heap: &Heap, p: *mut u8) -> Result<(), FreeError> {
    // SAFETY: as for `free`.
    unsafe { heap.free_containing(p) }
}

/// Reallocates a live block.
fn realloc(heap: &Heap, p: *mut u8, size: usize) -> *mut u8 {
    // SAFETY: tests pass null or a live block and use only the result.
    unsafe { heap.realloc(p, size) }
}

/// The first `n` bytes of a block that holds at least `n`.
fn bytes<'a>(p: *mut u8, n: usize) -> &'a mut [u8] {
    // SAFETY: tests pass live blocks of at least `n` bytes, not aliased.
    unsafe { std::slice::from_raw_parts_mut(p, n) }
}

/// The test heap: hardened, as every test suite runs it (the checks are
/// off by default only for speed), and without the owner cache, so that
/// these tests see the first-fit index itself (splits, coalescing, in-place
/// growth, exact counts); `tests/owner_cache.rs` covers the cache.
fn small_heap() -> Heap {
    Heap::with_config(
        Config::new()
            .region_size(256 << 20)
            .hardened(true)
            .owner_cache(0),
    )
}

#[test]
fn malloc_returns_aligned_writable_distinct_blocks() {
    let heap = small_heap();
    let mut ptrs = Vec::new();
    for size in [0usize, 1, 15, 16, 17, 100, 1000, 4096, 65536, 300_000] {
        let p = heap.malloc(size);
        assert!(!p.is_null(), "malloc({size})");
        assert_eq!(p as usize % 16, 0, "malloc({size}) alignment");
        assert!(heap.usable_size(p).unwrap() >= size);
        bytes(p, size).fill(0xab);
        ptrs.push((p, size));
    }
    for (i, &(p, _)) in ptrs.iter().enumerate() {
        for &(q, _) in &ptrs[i + 1..] {
            assert_ne!(p, q);
        }
    }
    heap.check().unwrap();
    for (p, size) in ptrs {
        assert!(bytes(p, size).iter().all(|&b| b == 0xab));
        free(&heap, p).unwrap();
    }
    heap.check().unwrap();
    assert_eq!(heap.stats().live_blocks(), 0);
    assert_eq!(heap.stats().allocated_bytes(), 0);
}

#[test]
fn calloc_zeroes_and_rejects_overflow() {
    let heap = small_heap();
    // Dirty a block, free it, and make calloc reuse the memory.
    let p = heap.malloc(4096);
    bytes(p, 4096).fill(0xff);
    free(&heap, p).unwrap();
    let q = heap.calloc(64, 64);
    assert!(!q.is_null());
    assert!(bytes(q, 4096).iter().all(|&b| b == 0));
    let big = heap.calloc(3, LARGE_THRESHOLD);
    assert!(bytes(big, 3 * LARGE_THRESHOLD).iter().all(|&b| b == 0));
    assert!(
        heap.calloc(usize::MAX, 2).is_null(),
        "calloc size overflow must return null"
    );
    assert!(heap.calloc(1 << 40, 1 << 40).is_null());
    free(&heap, q).unwrap();
    free(&heap, big).unwrap();
    heap.check().unwrap();
}

#[test]
fn aligned_alloc_honours_every_power_of_two_up_to_a_chunk_and_beyond() {
    let heap = small_heap();
    let mut ptrs = Vec::new();
    let mut align = 1;
    while align <= 4 * CHUNK {
        for size in [1usize, 100, 5000] {
            let p = heap.aligned_alloc(align, size);
            assert!(!p.is_null(), "aligned_alloc({align}, {size})");
            assert_eq!(
                p as usize % align.max(16),
                0,
                "aligned_alloc({align}, {size})"
            );
            bytes(p, size).fill(7);
            ptrs.push(p);
        }
        align *= 2;
    }
    assert!(
        heap.aligned_alloc(48, 10).is_null(),
        "non-power-of-two alignment"
    );
    heap.check().unwrap();
    for p in ptrs {
        free(&heap, p).unwrap();
    }
    heap.check().unwrap();
}

#[test]
fn realloc_shrinks_and_grows_in_place_and_moves_preserving_contents() {
    let heap = small_heap();
    let p = heap.malloc(1000);
    for i in 0..1000 {
        bytes(p, 1000)[i] = i as u8;
    }
    // Shrink in place.
    let q = realloc(&heap, p, 200);
    assert_eq!(q, p, "shrink stays in place");
    assert!(heap.usable_size(q).unwrap() < 1000);
    // Grow in place into the free remainder that follows.
    let r = realloc(&heap, q, 2000);
    assert_eq!(r, p, "grow into a free neighbour stays in place");
    for i in 0..200 {
        assert_eq!(bytes(r, i + 1)[i], i as u8);
    }
    // Block the neighbour, then grow: must move and keep the bytes.
    let blocker = heap.malloc(16);
    let r = realloc(&heap, r, 2000); // same size: in place
    let s = realloc(&heap, r, 100_000);
    assert!(!s.is_null());
    for i in 0..200 {
        assert_eq!(bytes(s, i + 1)[i], i as u8);
    }
    // Into and out of the large path.
    let t = realloc(&heap, s, 3 * LARGE_THRESHOLD);
    for i in 0..200 {
        assert_eq!(bytes(t, i + 1)[i], i as u8);
    }
    let t2 = realloc(&heap, t, 5 * LARGE_THRESHOLD);
    let u = realloc(&heap, t2, 50);
    for i in 0..50 {
        assert_eq!(bytes(u, i + 1)[i], i as u8);
    }
    heap.check().unwrap();
    // realloc(null, n) allocates; realloc(p, 0) frees and returns null.
    let v = realloc(&heap, std::ptr::null_mut(), 10);
    assert!(heap.is_allocated(v));
    assert!(realloc(&heap, v, 0).is_null());
    assert!(!heap.is_allocated(v));
    free(&heap, u).unwrap();
    free(&heap, blocker).unwrap();
    heap.check().unwrap();
    assert_eq!(heap.stats().live_blocks(), 0);
}

#[test]
fn large_realloc_grows_in_place_when_the_next_chunks_are_free() {
    let heap = small_heap();
    let p = heap.malloc(2 * LARGE_THRESHOLD);
    bytes(p, 2 * LARGE_THRESHOLD).fill(3);
    let q = realloc(&heap, p, 3 * CHUNK);
    assert_eq!(
        p, q,
        "the chunks after a fresh run are free, so it grows in place"
    );
    assert!(heap.usable_size(q).unwrap() >= 3 * CHUNK);
    assert!(bytes(q, 2 * LARGE_THRESHOLD).iter().all(|&b| b == 3));
    let r = realloc(&heap, q, 2 * LARGE_THRESHOLD);
    assert_eq!(r, q, "large shrink stays in place");
    heap.check().unwrap();
    free(&heap, r).unwrap();
    heap.check().unwrap();
}

#[test]
fn is_allocated_and_usable_size_answer_for_interior_pointers() {
    let heap = small_heap();
    let p = heap.malloc(100);
    let big = heap.malloc(2 * LARGE_THRESHOLD);
    let usable = heap.usable_size(p).unwrap();
    assert!(usable >= 100);
    for off in [0, 1, 50, usable - 1] {
        assert!(heap.is_allocated(p.wrapping_add(off)), "offset {off}");
        assert_eq!(heap.usable_size(p.wrapping_add(off)), Some(usable));
    }
    assert!(
        !heap.is_allocated(p.wrapping_add(usable))
            || heap.usable_size(p.wrapping_add(usable)) != Some(usable)
    );
    assert!(
        !heap.is_allocated(p.wrapping_sub(1)),
        "the header is not payload"
    );
    assert!(heap.is_allocated(big.wrapping_add(LARGE_THRESHOLD + 7)));
    assert!(heap.usable_size(big).unwrap() >= 2 * LARGE_THRESHOLD);
    let local = 0u8;
    assert!(!heap.is_allocated(&local));
    assert_eq!(heap.usable_size(&local), None);
    free(&heap, p).unwrap();
    free(&heap, big).unwrap();
    assert!(!heap.is_allocated(p));
    assert!(!heap.is_allocated(big));
}

#[test]
fn free_containing_frees_through_an_interior_pointer() {
    let heap = small_heap();
    let p = heap.malloc(256);
    let big = heap.malloc(3 * LARGE_THRESHOLD);
    free_containing(&heap, p.wrapping_add(100)).unwrap();
    free_containing(&heap, big.wrapping_add(2 * LARGE_THRESHOLD)).unwrap();
    assert_eq!(
        free_containing(&heap, p.wrapping_add(100)),
        Err(FreeError::DoubleFree)
    );
    assert_eq!(free_containing(&heap, std::ptr::null_mut()), Ok(()));
    assert_eq!(heap.stats().live_blocks(), 0);
    heap.check().unwrap();
}

// ----- the error table -------------------------------------------------------

#[test]
fn error_null_free_is_ok() {
    let heap = small_heap();
    assert_eq!(free(&heap, std::ptr::null_mut()), Ok(()));
    let _ = heap.malloc(1);
    assert_eq!(free(&heap, std::ptr::null_mut()), Ok(()));
}

#[test]
fn error_double_free_is_reported_not_corrupting() {
    let heap = small_heap();
    // A block between two live ones: freed, it stays a block of its own.
    let a = heap.malloc(64);
    let b = heap.malloc(64);
    let c = heap.malloc(64);
    free(&heap, b).unwrap();
    assert_eq!(free(&heap, b), Err(FreeError::DoubleFree));
    // A block coalesced into its free predecessor: still a double free.
    free(&heap, c).unwrap();
    assert_eq!(free(&heap, c), Err(FreeError::DoubleFree));
    // A block that merged with the free remainder after it.
    free(&heap, a).unwrap();
    assert_eq!(free(&heap, a), Err(FreeError::DoubleFree));
    // Large allocations too.
    let big = heap.malloc(2 * LARGE_THRESHOLD);
    free(&heap, big).unwrap();
    assert_eq!(free(&heap, big), Err(FreeError::DoubleFree));
    heap.check().unwrap();
    assert_eq!(heap.stats().live_blocks(), 0);
    assert_eq!(heap.stats().frees(), 4);
}

#[test]
fn error_interior_and_misaligned_pointers_are_not_allocated() {
    let heap = small_heap();
    let p = heap.malloc(1000);
    let big = heap.malloc(CHUNK + LARGE_THRESHOLD);
    assert_eq!(
        free(&heap, p.wrapping_add(16)),
        Err(FreeError::NotAllocated)
    );
    assert_eq!(free(&heap, p.wrapping_add(1)), Err(FreeError::NotAllocated));
    assert_eq!(
        free(&heap, p.wrapping_add(512)),
        Err(FreeError::NotAllocated)
    );
    assert_eq!(
        free(&heap, big.wrapping_add(4096)),
        Err(FreeError::NotAllocated)
    );
    assert_eq!(
        free(&heap, big.wrapping_add(CHUNK)),
        Err(FreeError::NotAllocated),
        "a tail chunk of a large run"
    );
    // Nothing was lost: both blocks are still live and intact.
    assert!(heap.is_allocated(p) && heap.is_allocated(big));
    heap.check().unwrap();
    free(&heap, p).unwrap();
    free(&heap, big).unwrap();
}

#[test]
fn error_pointers_outside_the_heap() {
    let heap = small_heap();
    let other = small_heap();
    let mine = heap.malloc(10);
    let theirs = other.malloc(10);
    let mut stack = 0u64;
    let boxed = Box::new(5u64);
    assert_eq!(
        free(&heap, &mut stack as *mut u64 as *mut u8),
        Err(FreeError::OutsideHeap)
    );
    assert_eq!(
        free(&heap, Box::as_ref(&boxed) as *const u64 as *mut u8),
        Err(FreeError::OutsideHeap)
    );
    assert_eq!(
        free(&heap, theirs),
        Err(FreeError::OutsideHeap),
        "another heap's block"
    );
    assert_eq!(
        free(&Heap::new(), mine),
        Err(FreeError::OutsideHeap),
        "a heap never used"
    );
    free(&heap, mine).unwrap();
    free(&other, theirs).unwrap();
}

#[test]
fn exhausted_region_returns_null_stays_consistent_and_serves_again() {
    let heap = Heap::with_config(Config::new().region_size(8 << 20));
    let mut ptrs = Vec::new();
    loop {
        let p = heap.malloc(10_000);
        if p.is_null() {
            break;
        }
        ptrs.push(p);
        assert!(ptrs.len() < 10_000, "an 8 MiB region cannot hold this many");
    }
    assert!(!ptrs.is_empty());
    assert!(heap.malloc(2 * LARGE_THRESHOLD).is_null());
    assert!(heap.calloc(1, 10_000).is_null());
    heap.check().unwrap();
    for p in ptrs.drain(..ptrs.len() / 2) {
        free(&heap, p).unwrap();
    }
    heap.check().unwrap();
    let again = heap.malloc(10_000);
    assert!(!again.is_null(), "after frees the heap serves again");
    ptrs.push(again);
    for p in ptrs {
        free(&heap, p).unwrap();
    }
    heap.check().unwrap();
    assert_eq!(heap.stats().live_blocks(), 0);
}

#[test]
fn region_beyond_the_address_space_is_reserved_at_what_the_os_grants() {
    // More address space than x86-64 user space offers: the reservation is
    // halved until the kernel grants it, and the heap serves from that
    // (`tests/address_space.rs` covers a process with none left at all).
    let heap = Heap::with_config(Config::new().region_size(1 << 50));
    let p = heap.malloc(16);
    assert!(!p.is_null());
    let reserved = heap.stats().reserved_bytes();
    assert!((8 << 20..1 << 50).contains(&reserved), "{reserved}");
    assert_eq!(free(&heap, p), Ok(()));
    assert!(heap.check().is_ok());
    assert_eq!(free(&heap, std::ptr::null_mut()), Ok(()));
}

#[test]
fn stats_count_allocations_frees_and_bytes() {
    let heap = small_heap();
    let ptrs: Vec<_> = (1..=100).map(|i| heap.malloc(i * 10)).collect();
    let s = heap.stats();
    let usable: usize = ptrs.iter().map(|&p| heap.usable_size(p).unwrap()).sum();
    assert_eq!(s.live_blocks(), 100);
    assert_eq!(s.allocated_bytes(), usable);
    assert_eq!(s.allocations(), 100);
    assert_eq!(s.frees(), 0);
    assert_eq!(s.arenas().len(), 1);
    assert!(s.committed_bytes() >= CHUNK);
    assert!(s.free_bytes() > 0 && s.free_blocks() >= 1 && s.largest_free_block() > 0);
    for p in ptrs {
        free(&heap, p).unwrap();
    }
    let s = heap.stats();
    assert_eq!(
        (s.live_blocks(), s.allocated_bytes(), s.frees()),
        (0, 0, 100)
    );
    assert_eq!(
        s.free_blocks(),
        s.arenas()[0].chunks,
        "everything coalesced back into one block per chunk"
    );
}

#[test]
fn empty_chunks_go_back_to_the_region() {
    let heap = small_heap();
    // Fill several chunks with 512 KiB blocks, then free them all.
    let ptrs: Vec<_> = (0..40).map(|_| heap.malloc(512 << 10)).collect();
    let full = heap.stats();
    assert!(full.arenas()[0].chunks >= 4);
    for p in ptrs {
        free(&heap, p).unwrap();
    }
    let after = heap.stats();
    assert_eq!(
        after.arenas()[0].chunks,
        1,
        "all but one empty chunk are returned"
    );
    assert!(after.committed_bytes() < full.committed_bytes());
    heap.check().unwrap();
}

#[test]
fn dump_shows_arenas_chunks_and_blocks() {
    let heap = small_heap();
    let mut out = Vec::new();
    heap.dump(&mut out).unwrap();
    assert!(String::from_utf8(out).unwrap().contains("not initialised"));
    let ptrs: Vec<_> = (0..10).map(|_| heap.malloc(48)).collect();
    let big = heap.malloc(2 * LARGE_THRESHOLD);
    free(&heap, ptrs[3]).unwrap();
    let mut out = Vec::new();
    heap.dump(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("arenalloc heap:"), "{text}");
    assert!(text.contains("arena 0 (owned by thread token 0x"), "{text}");
    assert!(text.contains("): 1 chunk(s);"), "{text}");
    let has_line = |words: &[&str]| {
        text.lines()
            .any(|l| l.split_whitespace().eq(words.iter().copied()))
    };
    assert!(
        has_line(&[&format!("{:#x}", ptrs[0] as usize), "live", "48", "B"]),
        "{text}"
    );
    assert!(
        has_line(&[&format!("{:#x}", ptrs[3] as usize), "free", "64", "B"]),
        "{text}"
    );
    assert!(
        text.contains("more live block(s) of 48 B"),
        "runs of equal blocks fold: {text}"
    );
    assert!(
        text.contains(&format!("{:#x}  live", big as usize)),
        "{text}"
    );
    assert!(text.contains("large: 1 run(s)"), "{text}");
}

#[test]
fn many_heaps_coexist_and_drop() {
    for _ in 0..50 {
        let heaps: Vec<Heap> = (0..4).map(|_| small_heap()).collect();
        let ptrs: Vec<_> = heaps.iter().map(|h| h.malloc(1000)).collect();
        for (h, &p) in heaps.iter().zip(&ptrs) {
            assert!(h.is_allocated(p));
            for (g, &q) in heaps.iter().zip(&ptrs) {
                if !std::ptr::eq(h, g) {
                    assert!(!h.is_allocated(q));
                }
            }
        }
    }
}

#[test]
fn allocation_containing_names_the_start_and_usable_size() {
    let heap = small_heap();
    let p = heap.malloc(100);
    let big = heap.malloc(2 * LARGE_THRESHOLD);
    let usable = heap.usable_size(p).unwrap();
    for off in [0, 1, 48, usable - 1] {
        assert_eq!(
            heap.allocation_containing(p.wrapping_add(off)),
            Some((p, usable)),
            "offset {off}"
        );
    }
    assert_eq!(
        heap.allocation_containing(p.wrapping_sub(16)),
        None,
        "header"
    );
    let (start, big_usable) = heap
        .allocation_containing(big.wrapping_add(LARGE_THRESHOLD))
        .unwrap();
    assert!(start == big && big_usable >= 2 * LARGE_THRESHOLD);
    let local = 0u8;
    assert_eq!(heap.allocation_containing(&local), None);
    assert_eq!(heap.allocation_containing(std::ptr::null()), None);
    free(&heap, p).unwrap();
    free(&heap, big).unwrap();
    assert_eq!(heap.allocation_containing(p), None);
    assert_eq!(heap.allocation_containing(big), None);
}

/// A remote-queue capacity past `MAX_REMOTE_QUEUE_CAPACITY` (65536) is
/// clamped when the heap initialises: it used to abort the first `malloc`
/// (a queue buffer of 16 TiB), and its buffer size could overflow.
#[test]
fn config_remote_queue_capacity_beyond_the_maximum_is_clamped() {
    for capacity in [1usize << 40, usize::MAX, 65_537] {
        let config = Config::new()
            .region_size(256 << 20)
            .max_arenas(2)
            .remote_queue_capacity(capacity);
        let heap = Heap::with_config(config);
        let p = heap.malloc(100);
        assert!(!p.is_null(), "capacity {capacity}");
        assert_eq!(
            heap.config().get_remote_queue_capacity(),
            capacity,
            "the configuration keeps what was given"
        );
        // A free from a thread with no binding goes through the queue.
        let addr = p as usize;
        std::thread::scope(|s| s.spawn(|| free(&heap, addr as *mut u8)).join().unwrap()).unwrap();
        let stats = heap.stats();
        assert_eq!(stats.arenas()[0].remote_frees, 1, "capacity {capacity}");
        assert_eq!(stats.live_blocks(), 0);
        heap.check().unwrap();
    }
}

/// A thread that owns an arena batches its frees of another arena's
/// blocks, and each block of a batch carries a link and a prefetch hint in
/// its first two payload words. With the smallest blocks (16 payload
/// bytes) between live neighbours, the two words must stay inside the
/// freed blocks: the neighbours keep their bytes, `check()` (hardened:
/// every header and boundary tag) passes, and every freed block comes
/// back exactly once, through batches longer than the hint's reach.
#[test]
fn batched_remote_frees_of_the_smallest_blocks_keep_their_neighbours_intact() {
    const FREED: usize = 300;
    let heap = Heap::with_config(Config::new().region_size(256 << 20).hardened(true));
    let mut freed = Vec::new();
    let mut kept = Vec::new();
    for i in 0..FREED {
        let (p, q) = (heap.malloc(1), heap.malloc(1));
        assert_eq!(heap.usable_size(p), Some(16), "the smallest block");
        bytes(q, 16).fill(i as u8);
        freed.push(p as usize);
        kept.push(q as usize);
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            // Binds this thread to an arena of its own: its frees of the
            // main thread's blocks are batched.
            let mine = heap.malloc(64);
            for &p in &freed {
                free(&heap, p as *mut u8).unwrap();
            }
            free(&heap, mine).unwrap();
        })
        .join()
        .unwrap();
    });
    // The exited owner's unsent batches go out with the trim.
    heap.trim();
    heap.check().unwrap();
    for (i, &q) in kept.iter().enumerate() {
        assert!(
            bytes(q as *mut u8, 16).iter().all(|&b| b == i as u8),
            "neighbour {i}"
        );
    }
    let stats = heap.stats();
    let home = &stats.arenas()[0];
    assert_eq!(home.remote_frees + home.queue_full_fallbacks, FREED as u64);
    assert_eq!(stats.live_blocks(), FREED, "the kept blocks alone");
    for &p in &freed {
        assert_eq!(free(&heap, p as *mut u8), Err(FreeError::DoubleFree));
    }
    for &q in &kept {
        free(&heap, q as *mut u8).unwrap();
    }
    heap.check().unwrap();
}

#[test]
fn three_hundred_threads_alive_at_once_each_own_an_arena() {
    // Issue 18 item 4: with the default `max_arenas` (1024) no thread of a
    // program this size shares an arena (a sharer locks on every call and
    // has no owner cache). 128, the old default, left 172 of them sharing.
    const THREADS: usize = 300;
    let heap = Heap::new();
    let barrier = std::sync::Barrier::new(THREADS);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                let p = heap.malloc(64);
                assert!(!p.is_null());
                // Every thread binds while all the others are alive.
                barrier.wait();
                free(&heap, p).unwrap();
            });
        }
    });
    heap.check().unwrap();
    let stats = heap.stats();
    assert_eq!(stats.arenas().len(), THREADS, "one arena per thread");
    // No owner slots by default (`Config::max_indexes`): an index each.
    assert!(stats.arenas().iter().all(|a| a.shares.is_none()));
    assert!(stats.arenas().iter().all(|a| a.allocations >= 1));
    assert_eq!(stats.live_blocks(), 0);
}

#[test]
fn a_small_region_with_the_largest_table_asked_still_makes_a_heap() {
    // 4096 arena slots are 11 chunks of metadata: a 16 MiB region gets
    // fewer slots (what fits in one chunk) instead of no heap at all.
    let heap = Heap::with_config(Config::new().max_arenas(4096).region_size(4 * CHUNK));
    let p = heap.malloc(100);
    assert!(!p.is_null());
    assert_eq!(
        heap.stats().committed_bytes(),
        2 * CHUNK,
        "one metadata chunk, one arena chunk"
    );
    free(&heap, p).unwrap();
    heap.check().unwrap();
}
