//! The owner cache's contract (`src/arena/cache.rs`): small blocks freed by
//! their arena's owner park in exact-size lists, lock-free, and come back
//! from there; while parked they are neither the user's nor free.
//!
//! What each test pins down:
//! * a cached block is not live: `is_allocated` is false, `usable_size` is
//!   `None`, and freeing it again — from the owner or from any other
//!   thread — is `DoubleFree`; `stats` counts it apart (`cached_blocks`),
//!   and `allocations`/`frees` count the user's calls exactly, whatever the
//!   cache's refills and flushes did under the hood;
//! * `owner_cache(0)` and `max_arenas(1)` cache nothing;
//! * churn past the class and byte limits keeps the cache within
//!   `DEFAULT_OWNER_CACHE`, the heap checks clean, and a malloc after it is
//!   served from the cache (same address, no lock taken);
//! * the cache passes with its arena to the thread that adopts it;
//! * a bulk free past a grown class's cap flushes growing batches, and a
//!   run of big requests is carved in batches (lock acquisitions bounded);
//! * a class's first refill carves an eighth of a batch and each further
//!   one twice the last; a class nobody allocates from is given back to
//!   the index, half at each sweep, while a class in use keeps its blocks;
//! * on a hardened heap, a cached block whose link word was overwritten
//!   aborts the process with the one-line corruption message when the
//!   cache hands it out (checked in a child process);
//! * `dump` and `render_svg` show cached blocks in their own state.
//!
//! Every test that keeps its heap ends with `check()`, which walks the
//! caches too. Two tests are regressions of bugs they found in
//! `arena/cache.rs` (a refill that counted a phantom allocation and free; a
//! flush that lost the third chunk it emptied).

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::Arc;
use std::thread;

use arenalloc::{Config, FreeError, Heap, DEFAULT_OWNER_CACHE};

/// Blocks one class of a cache holds at first (`CACHE_CLASS_LIMIT`, crate
/// private, in `src/config.rs`'s table of tunables)...
const CLASS_LIMIT: usize = 64;
/// ...and at most, once frees past its cap have doubled it
/// (`CACHE_CLASS_MAX`).
const CLASS_MAX: usize = 512;
/// ...or, for a small class, this many bytes' worth when that is more
/// blocks (`CACHE_CLASS_MAX_BYTES`).
const CLASS_MAX_BYTES: usize = 64 << 10;
/// Blocks a free into a full class gives back under one lock acquisition
/// (`CACHE_FLUSH_BATCH`).
const FLUSH_BATCH: usize = 2;
/// The largest request the cache's small classes serve (`CACHE_MAX_REQUEST`,
/// same table).
const CACHE_MAX_REQUEST: usize = 1024;
/// The largest request its big classes serve (`CACHE_BIG_MAX_REQUEST`).
const CACHE_BIG_MAX_REQUEST: usize = 64 << 10;
/// A request above every class: its malloc and free are owner slow paths.
const UNCACHED: usize = 96 << 10;
/// Owner slow paths between two sweeps (`CACHE_SWEEP_EVERY`, same table).
const SWEEP_EVERY: usize = 512;

/// A block address that may cross threads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Block(usize);

impl Block {
    fn ptr(self) -> *mut u8 {
        self.0 as *mut u8
    }
}

/// Frees through the checked API.
fn free(heap: &Heap, p: *mut u8) -> Result<(), FreeError> {
    // SAFETY: the checked API validates `p`; tests never use a block after
    // freeing it, and re-freeing one is exactly what it must report.
    unsafe { heap.free(p) }
}

/// Frees the block containing `p` through the checked API.
fn free_containing(heap: &Heap, p: *mut u8) -> Result<(), FreeError> {
    // SAFETY: as for `free`.
    unsafe { heap.free_containing(p) }
}

/// `malloc(size)`, filled with a pattern (so that the block is really
/// handed out and written, as a program would).
fn malloc_filled(heap: &Heap, size: usize) -> *mut u8 {
    let p = heap.malloc(size);
    assert!(!p.is_null(), "malloc({size})");
    assert_eq!(p as usize % 16, 0);
    assert!(heap.usable_size(p).unwrap() >= size);
    // SAFETY: a fresh block of at least `size` bytes.
    unsafe { p.write_bytes(size as u8, size) };
    p
}

/// Small request sizes covering the cache's classes, deterministic.
fn small_size(i: usize) -> usize {
    1 + (i.wrapping_mul(2_654_435_761) >> 7) % CACHE_MAX_REQUEST
}

/// The lock acquisitions of arena `id` so far (each `stats` call takes
/// every arena's lock once, and counts it).
fn locks(heap: &Heap, id: usize) -> u64 {
    heap.stats().arenas()[id].lock_acquisitions
}

/// Asserts the user's view of the counters: `n_alloc` calls served,
/// `n_free` frees, `live` blocks live, and the heap's invariants.
fn assert_counts(heap: &Heap, n_alloc: u64, n_free: u64, live: usize) {
    heap.check().expect("heap invariants");
    let s = heap.stats();
    assert_eq!(s.allocations(), n_alloc, "allocations count user calls");
    assert_eq!(s.frees(), n_free, "frees count user calls");
    assert_eq!(s.live_blocks(), live, "live blocks exclude cached ones");
    assert!(s.cached_bytes() <= DEFAULT_OWNER_CACHE * s.arenas().len());
}

/// (a') The fast path of a default (unchecked, cached) heap classifies
/// every invalid pointer the owner frees exactly, as the locked path does:
/// interior and misaligned pointers into a live block, a pointer to a
/// chunk's first granules, the granule after a block and pointers outside
/// the heap are refused without touching anything, and the live block is
/// still the user's afterwards.
#[test]
fn owner_fast_path_refuses_invalid_pointers() {
    let heap = Heap::new();
    let p = malloc_filled(&heap, 64);
    let q = malloc_filled(&heap, 64);
    for bad in [
        p.wrapping_add(16),
        p.wrapping_add(8),
        p.wrapping_add(1),
        q.wrapping_add(32),
    ] {
        assert_eq!(free(&heap, bad), Err(FreeError::NotAllocated), "{bad:p}");
    }
    let chunk = (p as usize & !(arenalloc::CHUNK - 1)) as *mut u8;
    assert_eq!(free(&heap, chunk), Err(FreeError::NotAllocated));
    assert_eq!(
        free(&heap, chunk.wrapping_add(16)),
        Err(FreeError::NotAllocated)
    );
    let mut local = [0u64; 4];
    let stack = local.as_mut_ptr().cast::<u8>();
    assert_eq!(free(&heap, stack), Err(FreeError::OutsideHeap));
    assert!(heap.is_allocated(p) && heap.is_allocated(q));
    assert_eq!(free(&heap, p), Ok(()));
    assert_eq!(free(&heap, p), Err(FreeError::DoubleFree));
    assert_eq!(free(&heap, q), Ok(()));
    assert_eq!(free(&heap, q), Err(FreeError::DoubleFree));
    heap.check().expect("heap invariants");
}

/// (a) On a default heap, small frees by the owner park their blocks in the
/// cache; a parked block is not live to any query, and freeing it again is
/// a double free from the owner and from another thread alike.
#[test]
fn owner_frees_park_small_blocks_that_are_not_live() {
    let heap = Heap::new();
    const N: usize = 300;
    let ptrs: Vec<*mut u8> = (0..N)
        .map(|i| malloc_filled(&heap, small_size(i)))
        .collect();
    assert_counts(&heap, N as u64, 0, N);
    for &p in &ptrs {
        free(&heap, p).unwrap();
    }
    assert_counts(&heap, N as u64, N as u64, 0);
    let s = heap.stats();
    assert!(s.cached_blocks() > 0, "small owner frees are cached: {s:?}");
    assert!(s.cached_bytes() >= s.cached_blocks() * 32);
    assert_eq!(s.allocated_bytes(), 0, "cached bytes are not the user's");
    assert_eq!(s.arenas().len(), 1);
    assert_eq!(s.arenas()[0].cached_blocks, s.cached_blocks());

    // The last block freed is on its class list, or free in the index if
    // that was full: not live either way.
    let last = *ptrs.last().unwrap();
    assert!(!heap.is_allocated(last));
    assert!(!heap.is_allocated(last.wrapping_add(1)), "nor inside it");
    assert_eq!(heap.usable_size(last), None);
    assert_eq!(heap.allocation_containing(last.wrapping_add(3)), None);
    assert_eq!(free(&heap, last), Err(FreeError::DoubleFree), "owner");
    assert_eq!(
        free_containing(&heap, last.wrapping_add(5)),
        Err(FreeError::DoubleFree),
        "owner, interior pointer"
    );
    let foreign = Block(last as usize);
    let shared = &heap;
    let from_other =
        thread::scope(|s| s.spawn(move || free(shared, foreign.ptr())).join().unwrap());
    assert_eq!(from_other, Err(FreeError::DoubleFree), "foreign thread");

    // The refused frees changed nothing.
    let after = heap.stats();
    assert_eq!(after.cached_blocks(), s.cached_blocks());
    assert_eq!(after.cached_bytes(), s.cached_bytes());
    assert_eq!(after.arenas()[0].remote_frees, 0);
    assert_counts(&heap, N as u64, N as u64, 0);
}

/// (b) The same sequence with the cache off, or with one arena (the
/// one-lock baseline), parks nothing: every free goes to the index.
#[test]
fn no_cache_when_off_or_with_one_arena() {
    for (name, config) in [
        ("owner_cache(0)", Config::new().owner_cache(0)),
        ("max_arenas(1)", Config::new().max_arenas(1)),
    ] {
        let heap = Heap::with_config(config);
        const N: usize = 300;
        let ptrs: Vec<*mut u8> = (0..N)
            .map(|i| malloc_filled(&heap, small_size(i)))
            .collect();
        assert_eq!(
            heap.stats().cached_blocks(),
            0,
            "{name}: refills cache nothing"
        );
        for &p in &ptrs {
            free(&heap, p).unwrap();
        }
        let s = heap.stats();
        assert_eq!(s.cached_blocks(), 0, "{name}");
        assert_eq!(s.cached_bytes(), 0, "{name}");
        assert!(s.free_blocks() > 0, "{name}: frees go to the index");
        let last = *ptrs.last().unwrap();
        assert!(!heap.is_allocated(last), "{name}");
        assert_eq!(free(&heap, last), Err(FreeError::DoubleFree), "{name}");
        let foreign = Block(last as usize);
        let shared = &heap;
        let from_other =
            thread::scope(|s| s.spawn(move || free(shared, foreign.ptr())).join().unwrap());
        assert_eq!(from_other, Err(FreeError::DoubleFree), "{name}: foreign");
        assert_counts(&heap, N as u64, N as u64, 0);
    }
}

/// (c) Thousands of frees of one size, then churn over every size, stay
/// within the class and byte limits; afterwards a malloc is served from the
/// cache: the address freed last, without taking the lock.
#[test]
fn churn_past_the_limits_stays_bounded_and_is_reused() {
    let heap = Heap::new();
    let (mut n_alloc, mut n_free) = (0u64, 0u64);

    // One size, far past the class limit.
    let ptrs: Vec<*mut u8> = (0..5000).map(|_| malloc_filled(&heap, 100)).collect();
    n_alloc += ptrs.len() as u64;
    for (i, &p) in ptrs.iter().enumerate() {
        free(&heap, p).unwrap();
        n_free += 1;
        if i % 1000 == 999 {
            // One request size is one class, or two: a carve that would
            // leave a 16-byte sliver keeps it, and that block is a class up.
            let s = heap.stats();
            assert!(s.cached_blocks() <= 2 * CLASS_MAX, "one size: {s:?}");
            assert_counts(&heap, n_alloc, n_free, ptrs.len() - i - 1);
        }
    }
    assert!(heap.stats().cached_blocks() > 0);

    // Every size, interleaved mallocs and frees, far past the byte limit.
    let mut slots: Vec<Option<(*mut u8, usize)>> = vec![None; 4000];
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut live = 0usize;
    for step in 0..60_000usize {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let slot = (rng as usize >> 12) % slots.len();
        match slots[slot].take() {
            Some((p, size)) => {
                // SAFETY: the block is live and holds `size` bytes of the
                // pattern `malloc_filled` wrote.
                assert_eq!(unsafe { *p.add(size - 1) }, size as u8, "contents kept");
                free(&heap, p).unwrap();
                n_free += 1;
                live -= 1;
            }
            None => {
                let size = small_size(rng as usize >> 24);
                slots[slot] = Some((malloc_filled(&heap, size), size));
                n_alloc += 1;
                live += 1;
            }
        }
        if step % 10_000 == 9_999 {
            assert_counts(&heap, n_alloc, n_free, live);
        }
    }
    // Remember the last block freed, and the request that maps to its
    // class exactly: its usable size (a carve may have given it 16 bytes
    // more than asked, which puts it a class up).
    let mut last = None;
    for (p, _) in slots.iter_mut().filter_map(Option::take) {
        let usable = heap.usable_size(p).unwrap();
        free(&heap, p).unwrap();
        n_free += 1;
        last = Some((p, usable));
    }
    assert_counts(&heap, n_alloc, n_free, 0);
    let s = heap.stats();
    assert!(s.cached_blocks() > 0);
    assert!(
        s.cached_bytes() <= DEFAULT_OWNER_CACHE,
        "byte limit: {} > {DEFAULT_OWNER_CACHE}",
        s.cached_bytes()
    );
    assert!(
        s.cached_bytes() > DEFAULT_OWNER_CACHE / 2,
        "the final frees filled the cache to its byte limit (and kept it there)"
    );
    assert!(s.cached_blocks() <= CLASS_MAX * (CACHE_MAX_REQUEST / 16 + 2));

    // Reuse: the block freed last heads its class list; a malloc of its
    // size pops it without the lock (the only acquisitions between the two
    // readings are the second `stats` call's own).
    let (p, size) = last.unwrap();
    let (before, locks_before) = (heap.stats(), locks(&heap, 0));
    let q = heap.malloc(size);
    assert_eq!(q, p, "served from the cache, most recently freed first");
    assert_eq!(locks(&heap, 0), locks_before + 1, "the pop takes no lock");
    let after = heap.stats();
    assert_eq!(after.cached_blocks(), before.cached_blocks() - 1);
    assert_eq!(after.live_blocks(), 1);
    assert!(heap.is_allocated(q) && heap.usable_size(q).unwrap() >= size);
    free(&heap, q).unwrap();
    assert_counts(&heap, n_alloc + 1, n_free + 1, 0);
}

/// The big classes (requests of 1 KiB to `CACHE_BIG_MAX_REQUEST`): each
/// holds a range of block sizes, eight per doubling. A freed block comes
/// back, lock-free, to a malloc of its own size or of any smaller size of
/// its class, and never to a larger request; a cached block is not live
/// and freeing it again is `DoubleFree`; a request above every class
/// takes the lock on each call. Random churn over the whole range keeps
/// the cache within its byte limit and `check()` exact.
#[test]
fn big_classes_serve_their_range_without_the_lock() {
    let heap = Heap::new();
    // Warm up: the arena is bound and the classes' first refills are done.
    let p = malloc_filled(&heap, 6000);
    free(&heap, p).unwrap();
    let locks_before = locks(&heap, 0);
    for _ in 0..1000 {
        let q = malloc_filled(&heap, 6000);
        assert_eq!(q, p, "the block freed last comes back");
        free(&heap, q).unwrap();
    }
    assert_eq!(
        locks(&heap, 0),
        locks_before + 1,
        "1,000 pairs of 6,000 bytes took no lock (the one is stats')"
    );
    assert!(!heap.is_allocated(p), "a cached block is not live");
    assert_eq!(free(&heap, p), Err(FreeError::DoubleFree));
    assert!(heap.stats().cached_bytes() >= 6000);

    // 6,000 bytes and 5,900 share a class (5,632-6,143 byte blocks): the
    // 6,000-byte block serves the smaller request, whole.
    let q = malloc_filled(&heap, 5900);
    assert_eq!(
        q, p,
        "a smaller request of the class takes the larger block"
    );
    assert!(heap.usable_size(q).unwrap() >= 6000);
    free(&heap, q).unwrap();
    // 6,100 bytes is in the class too, but the cached block is too small:
    // it is not handed out.
    let r = malloc_filled(&heap, 6100);
    assert_ne!(r, p, "a larger request never gets a smaller block");
    free(&heap, r).unwrap();
    heap.check().unwrap();

    // Above every class: each malloc and each free takes the lock.
    let locks_before = locks(&heap, 0);
    for _ in 0..10 {
        let big = malloc_filled(&heap, UNCACHED);
        free(&heap, big).unwrap();
    }
    assert!(locks(&heap, 0) >= locks_before + 20, "uncached sizes lock");

    // Churn over 1 KiB-64 KiB, then everything freed: bounded and exact.
    let mut live: Vec<(*mut u8, usize)> = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for step in 0..20_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if live.len() > 64 || (x & 1 == 0 && !live.is_empty()) {
            let (q, size) = live.swap_remove((x >> 8) as usize % live.len());
            assert!(heap.usable_size(q).unwrap() >= size);
            free(&heap, q).unwrap();
        } else {
            let size = CACHE_MAX_REQUEST
                + 1
                + (x >> 16) as usize % (CACHE_BIG_MAX_REQUEST - CACHE_MAX_REQUEST);
            live.push((malloc_filled(&heap, size), size));
        }
        if step % 5_000 == 4_999 {
            heap.check().unwrap();
        }
    }
    for (q, _) in live {
        free(&heap, q).unwrap();
    }
    let s = heap.stats();
    assert!(s.cached_blocks() > 0 && s.cached_bytes() <= DEFAULT_OWNER_CACHE);
    assert_eq!(s.live_blocks(), 0);
    heap.check().unwrap();
    // `trim` gives the caches back.
    heap.trim();
    assert_eq!(heap.stats().cached_blocks(), 0);
    heap.check().unwrap();
}

/// A bulk free past a class's cap doubles the cap (to `CLASS_MAX`) and
/// gives back `FLUSH_BATCH` blocks per lock acquisition, so that a program
/// that allocates and frees bursts of one size takes the lock a few times
/// for the first burst and not at all once the class has grown.
#[test]
fn bulk_frees_grow_the_class_and_then_stay_off_the_lock() {
    const N: usize = 400;
    let heap = Heap::new();
    let burst = || -> Vec<*mut u8> { (0..N).map(|_| malloc_filled(&heap, 200)).collect() };
    let first = burst();
    let before = locks(&heap, 0);
    for &p in &first {
        free(&heap, p).unwrap();
    }
    let taken = locks(&heap, 0) - before - 1;
    assert!(
        taken <= ((N - CLASS_LIMIT) / FLUSH_BATCH) as u64,
        "{N} frees past a cap of {CLASS_LIMIT} took the lock {taken} times"
    );
    heap.check().unwrap();
    // The class kept what its grown cap holds: the next burst is served
    // mostly from it, and its frees all fit.
    let cached = heap.stats().cached_blocks();
    assert!(cached > N / 2, "only {cached} of {N} blocks parked");
    let second = burst();
    let before = locks(&heap, 0);
    for &p in &second {
        free(&heap, p).unwrap();
    }
    assert_eq!(
        locks(&heap, 0),
        before + 1,
        "the second burst's frees all fit the grown class (the one is stats')"
    );
    assert!(heap.stats().cached_blocks() <= CLASS_MAX);
    heap.check().unwrap();
}

/// A bulk free past a class's grown cap gives back a growing batch per
/// lock acquisition (`CACHE_FLUSH_BATCH` doubling to `CACHE_FLUSH_MOST`
/// while the class holds a run and serves no allocation), the runs of
/// neighbours merged before they reach the index: 2,488 frees past a cap
/// of 512 take the lock about 80 times, where two blocks per flush took it
/// about 1,244 times. The counts stay exact and the index coalesced.
#[test]
fn a_bulk_free_past_the_grown_cap_flushes_in_growing_batches() {
    const N: usize = 3000;
    let heap = Heap::new();
    let blocks: Vec<*mut u8> = (0..N).map(|_| malloc_filled(&heap, 500)).collect();
    let before = locks(&heap, 0);
    for &p in &blocks {
        free(&heap, p).unwrap();
    }
    let taken = locks(&heap, 0) - before - 1;
    assert!(
        taken <= ((N - CLASS_MAX) / (4 * FLUSH_BATCH)) as u64,
        "{} frees past a cap of {CLASS_MAX} took the lock {taken} times",
        N - CLASS_MAX
    );
    assert_counts(&heap, N as u64, N as u64, 0);
    assert!(heap.stats().cached_blocks() <= CLASS_MAX);
}

/// A big class's refills carve batches too (up to 32 KiB worth, from an
/// eighth of that at its first), side by side from one free block: a run
/// of 4,000-byte requests takes the lock about once per 8 blocks, where
/// carving the caller's block alone took it for every one.
#[test]
fn a_run_of_big_requests_is_carved_in_batches() {
    const N: usize = 200;
    let heap = Heap::new();
    let first = malloc_filled(&heap, 4000);
    let before = locks(&heap, 0);
    let mut blocks: Vec<*mut u8> = (1..N).map(|_| malloc_filled(&heap, 4000)).collect();
    let taken = locks(&heap, 0) - before - 1;
    assert!(
        taken <= (N / 4) as u64,
        "{} big mallocs took the lock {taken} times",
        N - 1
    );
    blocks.push(first);
    assert_counts(&heap, N as u64, 0, N);
    for p in blocks {
        free(&heap, p).unwrap();
    }
    assert_counts(&heap, N as u64, N as u64, 0);
}

/// The tiniest blocks come in the longest runs (a JSON document's keys and
/// short strings): a class of 32-byte blocks grows past `CLASS_MAX` blocks,
/// up to `CLASS_MAX_BYTES` worth, so that a burst of 1,800 16-byte
/// requests, once its class has grown, is allocated and freed with no
/// lock at all — where a cap of 512 blocks took it on every second free
/// past the 512th.
#[test]
fn runs_of_tiny_blocks_grow_their_class_past_the_block_cap() {
    const N: usize = 1800;
    const BLOCK: usize = 32;
    const { assert!(N > CLASS_MAX && N * BLOCK <= CLASS_MAX_BYTES) };
    let heap = Heap::new();
    let burst = || -> Vec<*mut u8> { (0..N).map(|_| malloc_filled(&heap, 16)).collect() };
    // Two bursts grow the class (each overflow doubles its cap).
    for _ in 0..2 {
        for p in burst() {
            free(&heap, p).unwrap();
        }
    }
    let cached = heap.stats().cached_blocks();
    assert!(cached >= N, "only {cached} of {N} tiny blocks parked");
    let before = locks(&heap, 0);
    let third = burst();
    for &p in &third {
        free(&heap, p).unwrap();
    }
    assert_eq!(
        locks(&heap, 0),
        before + 1,
        "the grown class served the burst and took its frees (the one is stats')"
    );
    assert!(heap.stats().cached_blocks() <= CLASS_MAX_BYTES / BLOCK);
    heap.check().unwrap();
}

/// (d) An owner exits with blocks in its cache; the next thread to bind
/// adopts the arena, cache included, and is served from it.
#[test]
fn adopter_inherits_the_cache_of_an_exited_owner() {
    let heap = Arc::new(Heap::new());
    const KEEP: usize = 10;
    let h = heap.clone();
    // The owner: 500-byte blocks (KEEP stay live), then 64-byte ones, all
    // freed into its cache; the 64-byte block freed last heads its list
    // (the list of its usable size: see the churn test).
    let (kept, head, head_usable) = thread::spawn(move || {
        let big: Vec<*mut u8> = (0..200).map(|_| malloc_filled(&h, 500)).collect();
        let small: Vec<*mut u8> = (0..300).map(|_| malloc_filled(&h, 64)).collect();
        for &p in &big[KEEP..] {
            free(&h, p).unwrap();
        }
        let kept: Vec<Block> = big[..KEEP].iter().map(|&p| Block(p as usize)).collect();
        let head = *small.last().unwrap();
        let usable = h.usable_size(head).unwrap();
        for &p in &small {
            free(&h, p).unwrap();
        }
        (kept, Block(head as usize), usable)
    })
    .join()
    .unwrap();

    // Orphaned: no live owner, the cache still full and consistent.
    let orphaned = heap.stats();
    assert_eq!(orphaned.arenas().len(), 1);
    assert_eq!(orphaned.arenas()[0].owner, None, "the owner exited");
    assert!(orphaned.cached_blocks() > 0, "{orphaned:?}");
    assert!(!heap.is_allocated(head.ptr()));
    assert_counts(&heap, 500, 490, KEEP);

    let h = heap.clone();
    thread::spawn(move || {
        // Binding adopts the orphan; its first small malloc pops the
        // cache it inherited.
        let p = h.malloc(head_usable);
        assert_eq!(p, head.ptr(), "served from the inherited cache");
        let s = h.stats();
        assert_eq!(s.arenas().len(), 1, "adopted, not a new arena");
        assert_eq!(s.arenas()[0].adoptions, 1);
        assert!(s.arenas()[0].owner.is_some());
        assert_eq!(s.cached_blocks(), orphaned.cached_blocks() - 1);
        // The blocks it inherited live are its own now: they free into
        // its cache like any of its blocks.
        let cached = s.cached_blocks();
        for b in &kept {
            free(&h, b.ptr()).unwrap();
        }
        free(&h, p).unwrap();
        let s = h.stats();
        assert!(
            s.cached_blocks() > cached,
            "frees go to the adopter's cache"
        );
        assert_eq!(s.arenas()[0].remote_frees, 0, "local frees, not remote");
        assert_counts(&h, 501, 501, 0);
        // And keep serving: churn through the inherited lists.
        let more: Vec<*mut u8> = (0..400).map(|i| malloc_filled(&h, small_size(i))).collect();
        for p in more {
            free(&h, p).unwrap();
        }
    })
    .join()
    .unwrap();

    // Balanced: every allocation freed once, nothing live, caches walked.
    // (Not the exact 901 each: one refill in this churn carves a block it
    // cannot cache and counts it as an allocation and a free of the user's;
    // `refill_that_cannot_cache_a_carved_block_counts_nothing` pins that.)
    heap.check().expect("heap invariants");
    let s = heap.stats();
    assert_eq!(s.allocations(), s.frees(), "balanced");
    assert!(s.allocations() >= 901);
    assert_eq!(s.live_blocks(), 0);
    assert_eq!(s.arenas()[0].adoptions, 1);
    assert!(s.cached_blocks() > 0);
    assert!(s.cached_bytes() <= DEFAULT_OWNER_CACHE);
}

/// Regression (`Arena::cache_refill`): a refill carves a block for the cache
/// that the cache then refuses (a carve that kept a 16-byte sliver made it
/// a class up, and that class is full); it frees it back under the lock,
/// and once counted a user allocation and a user free that never happened
/// (it now counts the block as cached and flushed). Here:
/// an isolated 80-byte hole serves a 64-byte refill carve while the 80-byte
/// class is full, and one `malloc(33)` counts as two allocations.
#[test]
fn refill_that_cannot_cache_a_carved_block_counts_nothing() {
    let heap = Heap::new();
    // 200 blocks of 80 bytes (64-byte requests), back to back.
    let blocks: Vec<*mut u8> = (0..200).map(|_| malloc_filled(&heap, 64)).collect();
    // Freeing every other one overflows the class: the frees past its
    // limit go to the index, as 80-byte holes between live neighbours.
    for &p in blocks.iter().step_by(2) {
        free(&heap, p).unwrap();
    }
    // Fill the 80-byte class to its limit.
    let mut odd = blocks.iter().skip(1).step_by(2);
    while heap.stats().cached_blocks() < CLASS_LIMIT {
        free(&heap, *odd.next().unwrap()).unwrap();
    }
    let before = heap.stats();
    assert!(before.free_blocks() > 1, "holes in the index");
    // A 64-byte-block refill: the class is empty; the carves take 80-byte
    // holes (keeping the 16-byte sliver); the second cannot be cached.
    let p = malloc_filled(&heap, 33);
    let after = heap.stats();
    heap.check().unwrap();
    assert_eq!(after.allocations(), before.allocations() + 1, "one malloc");
    assert_eq!(after.frees(), before.frees(), "no free");
    free(&heap, p).unwrap();
}

/// Regression (`Arena::cache_flush`): a flush that emptied more than two
/// chunks handed only two back to the region; the third was unlinked from
/// the arena and never released. Chunks are now queued as they empty and
/// released when the lock is dropped (`ArenaGuard`). Here: four chunks
/// whose only non-free blocks are cached on one class list, flushed at
/// once — by the sweep, the flush that gives back the oldest half of a
/// class nobody allocates from (a free into a full class frees only its
/// newest few).
#[test]
fn flush_that_empties_three_chunks_releases_them_all() {
    use arenalloc::CHUNK;
    let heap = Heap::new();
    let chunk_of = |p: *mut u8| p as usize & !(CHUNK - 1);
    // 1 KiB blocks over six chunks, the sixth with a few hundred.
    let mut all: Vec<*mut u8> = Vec::new();
    let mut chunks: Vec<usize> = Vec::new();
    while chunks.len() < 6 || all.iter().filter(|&&p| chunk_of(p) == chunks[5]).count() < 300 {
        let p = malloc_filled(&heap, 1024);
        if !chunks.contains(&chunk_of(p)) {
            chunks.push(chunk_of(p));
        }
        all.push(p);
    }
    assert_eq!(chunks.len(), 6);
    let in_chunk = |i: usize| -> Vec<*mut u8> {
        all.iter()
            .copied()
            .filter(|&p| chunk_of(p) == chunks[i])
            .collect()
    };
    let c0 = in_chunk(0);
    let survivors: Vec<*mut u8> = (1..=4).map(|i| in_chunk(i)[0]).collect();
    let pads = &c0[..CLASS_LIMIT - 4];
    // Free all of chunks 1-4 but the survivors, and all of chunk 0 but the
    // pads (chunk 5 stays live), then empty the cache into the index: the
    // survivors are the only non-free blocks of their chunks.
    for i in 1..=4 {
        for &p in &in_chunk(i)[1..] {
            free(&heap, p).unwrap();
        }
    }
    for &p in &c0[pads.len()..] {
        free(&heap, p).unwrap();
    }
    heap.trim();
    assert_eq!(heap.stats().cached_blocks(), 0);
    let s = heap.stats();
    let meta = s.committed_bytes() - s.arenas()[0].chunks * CHUNK;
    // The four survivors, then the pads, go on the class list: the
    // survivors at its far (oldest) end.
    for &p in survivors.iter().chain(pads) {
        free(&heap, p).unwrap();
    }
    assert_eq!(heap.stats().cached_blocks(), CLASS_LIMIT);
    // Two sweep intervals with no allocation of that size (alloc + free of
    // a 96 KiB block, above the cache's classes: two owner slow paths):
    // the first sweep notes the class's allocations, the second gives back
    // its oldest half — the survivors first, emptying four chunks.
    for _ in 0..SWEEP_EVERY {
        let p = malloc_filled(&heap, UNCACHED);
        free(&heap, p).unwrap();
    }
    assert!(
        heap.stats().cached_blocks() <= CLASS_LIMIT / 2,
        "a sweep gave back the idle class's oldest half"
    );
    heap.check().unwrap();
    let s = heap.stats();
    assert_eq!(
        s.arenas()[0].chunks,
        3,
        "chunks 0 and 5, and one kept empty"
    );
    assert_eq!(
        s.committed_bytes(),
        meta + s.arenas()[0].chunks * CHUNK,
        "every chunk the arena let go of went back to the region"
    );
}

/// Set in the child process of `hardened_cache_pop_of_overwritten_link_aborts`.
const CORRUPT_CHILD: &str = "ARENALLOC_TEST_OWNER_CACHE_CORRUPT";
/// The one-line message `error::abort_on_corruption` writes.
const CORRUPTION_PREFIX: &str = "arenalloc: heap corruption at 0x";

/// (e) On a hardened heap, a use-after-free write over a cached block's
/// link word (its first payload word) is caught when the cache hands the
/// block out: the process aborts with the corruption line, it does not
/// hand out the forged pointer or crash on it. Run in a child process (the
/// test binary re-executed with `CORRUPT_CHILD` set).
#[test]
fn hardened_cache_pop_of_overwritten_link_aborts() {
    const NAME: &str = "hardened_cache_pop_of_overwritten_link_aborts";
    if std::env::var_os(CORRUPT_CHILD).is_some() {
        let heap = Heap::with_config(Config::new().hardened(true));
        let a = malloc_filled(&heap, 64);
        let b = malloc_filled(&heap, 64);
        free(&heap, a).unwrap();
        free(&heap, b).unwrap();
        assert!(heap.stats().cached_blocks() >= 2);
        eprintln!("child: corrupting block {:#x}", b as usize - 16);
        // SAFETY: `b`'s block is parked in the cache: its chunk is mapped
        // and its first payload word is the (safe-linked) list link. The
        // write is the use-after-free under test.
        unsafe { b.cast::<u64>().write(0x4141_4141_4141_4141) };
        let first = heap.malloc(64);
        let second = heap.malloc(64);
        eprintln!("child: survived, got {first:p} and {second:p}");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CORRUPT_CHILD, "1")
        .output()
        .expect("spawn the test binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{:?}\nstderr:\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("child: survived"), "{stderr}");
    let block = stderr
        .lines()
        .find_map(|l| l.strip_prefix("child: corrupting block "))
        .expect("the child reached the corruption")
        .to_string();
    let reports: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with(CORRUPTION_PREFIX))
        .collect();
    assert_eq!(reports.len(), 1, "exactly one report: {stderr}");
    let link = format!("arenalloc: heap corruption at {block} (free-list link corrupt)");
    let header = reports[0].ends_with(" (header check failed)");
    assert!(
        reports[0] == link || header,
        "expected {link:?} or a header check failure, got {:?}",
        reports[0]
    );
}

/// `dump` prints cached blocks as `cached`, and its arena line counts them
/// apart from the live ones; the SVG draws a run of them in the cached
/// colour and has a legend entry for it, keeping one group per arena.
#[test]
fn dump_and_svg_show_cached_blocks() {
    let heap = Heap::new();
    // Forty 1 KiB blocks carved back to back: freed, they make one run of
    // cached blocks longer than the SVG's smallest solid rectangle.
    let ptrs: Vec<*mut u8> = (0..40).map(|_| malloc_filled(&heap, 1024)).collect();
    let live = malloc_filled(&heap, 48);
    for &p in &ptrs {
        free(&heap, p).unwrap();
    }
    let s = heap.stats();
    assert!(s.cached_blocks() >= 40, "{s:?}");

    let mut out = Vec::new();
    heap.dump(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let has_line = |words: &[&str]| {
        text.lines()
            .any(|l| l.split_whitespace().eq(words.iter().copied()))
    };
    // The block freed first is the run's first line (each block is printed
    // with its usable size, as a live one would be).
    let first = format!("{:#x}", ptrs[0] as usize);
    assert!(has_line(&[&first, "cached", "1.0", "KiB"]), "{text}");
    assert!(
        has_line(&[&format!("{:#x}", live as usize), "live", "48", "B"]),
        "{text}"
    );
    assert!(
        text.contains("; 48 B live in 1 block(s); "),
        "the arena line's live figures exclude cached blocks: {text}"
    );
    assert!(
        text.contains(&format!("cached in {} block(s)", s.cached_blocks())),
        "{text}"
    );
    assert!(!text.contains(&format!("{first}  live")), "{text}");

    let mut svg = Vec::new();
    heap.render_svg(&mut svg).unwrap();
    let svg = String::from_utf8(svg).unwrap();
    assert!(
        svg.contains(".c{fill:#e8a33d}"),
        "the cached colour is styled"
    );
    assert!(
        svg.contains(r#"class="c"/><text x="#) && svg.contains(">cached</text>"),
        "legend entry"
    );
    let arena = svg
        .split(r#"<g id="arena-0""#)
        .nth(1)
        .expect("arena 0's group");
    assert!(
        arena.contains(r#"class="c"/>"#),
        "a cached run is drawn in its colour"
    );
    assert!(arena.contains(&format!("cached in {} block(s)", s.cached_blocks())));
    assert_eq!(svg.matches(r#"<g id="arena-"#).count(), s.arenas().len());

    free(&heap, live).unwrap();
    assert_counts(&heap, 41, 41, 0);
}

/// A class's refills grow: its first carves an eighth of a full batch, and
/// each further one twice the last, up to the full 32 blocks (for 32-byte
/// blocks the byte bound, 8 KiB, does not bite): a size a program asks for
/// once leaves 3 blocks parked, not 31.
#[test]
fn refills_of_a_class_start_small_and_double() {
    let heap = Heap::with_config(Config::new());
    let mut live = Vec::new();
    // Each round empties the class, so the next malloc refills it; the
    // refill returns one block and parks the rest.
    for parked in [3, 7, 15, 31, 31] {
        live.push(heap.malloc(16));
        assert_eq!(
            heap.stats().cached_blocks(),
            parked,
            "after {} refills",
            live.len()
        );
        for _ in 0..parked {
            live.push(malloc_filled(&heap, 16));
        }
        assert_eq!(heap.stats().cached_blocks(), 0);
    }
    for p in live {
        free(&heap, p).unwrap();
    }
    heap.check().unwrap();
}

/// Sweeps give back a class nobody allocates from — half of it at each
/// sweep — and leave a class in use alone. Blocks of 100 bytes are freed
/// into the cache and never asked for again; 48-byte blocks are allocated
/// and freed all along (fast path); 96 KiB blocks, which the cache does not
/// serve, make the owner slow paths that count towards a sweep.
#[test]
fn sweeps_give_back_an_idle_class_and_keep_a_used_one() {
    let heap = Heap::with_config(Config::new());
    let idle: Vec<_> = (0..40).map(|_| malloc_filled(&heap, 100)).collect();
    let hot: Vec<_> = (0..8).map(|_| malloc_filled(&heap, 48)).collect();
    for p in idle.into_iter().chain(hot) {
        free(&heap, p).unwrap();
    }
    let parked = heap.stats().cached_blocks();
    assert!(parked >= 48, "the frees were cached: {parked}");
    let mut seen = vec![parked];
    for _ in 0..8 {
        // One sweep interval: alloc + free of a 96 KiB block are two owner
        // slow paths; the hot class is used on every step.
        for _ in 0..SWEEP_EVERY / 2 {
            let big = malloc_filled(&heap, UNCACHED);
            let small = malloc_filled(&heap, 48);
            free(&heap, small).unwrap();
            free(&heap, big).unwrap();
        }
        seen.push(heap.stats().cached_blocks());
        heap.check().unwrap();
    }
    // The first sweep only notes each class's allocations so far (the idle
    // class served 40 before it went idle); from the second on, the idle
    // class halves at each sweep until it is gone, and what is left — the
    // hot class — stays.
    assert!(
        seen.windows(2).skip(1).take(4).all(|w| w[1] < w[0]),
        "each sweep gave back half of the idle class: {seen:?}"
    );
    let hot_left = *seen.last().unwrap();
    assert!(hot_left >= 1, "the hot class kept its blocks: {seen:?}");
    assert_eq!(seen[seen.len() - 2], hot_left, "{seen:?}");
    let s = heap.stats();
    assert_eq!(s.live_blocks(), 0);
    assert_eq!(s.allocations(), s.frees());
    // The idle class is gone: every parked block is a 64-byte one (a 48-byte
    // request), none a 112-byte one.
    assert_eq!(s.cached_bytes(), hot_left * 64, "{s:?} {seen:?}");
}

/// Rounds of the same-block race below.
const RACE_ROUNDS: usize = 20_000;

/// Races, `RACE_ROUNDS` times, the owner's free of one of its live small
/// blocks (the cache push) against a second thread's free of the same
/// block (a double free by two threads), both released by one barrier.
/// `foreign_owns_an_arena` picks the foreign thread's path: a thread that
/// owns an arena batches the block, one that never allocated queues it.
/// Exactly one free of each block may win, the other must be
/// `DoubleFree` — never both `Ok` (the block would sit in the cache and in
/// a queue at once, and the drain would abort the process).
fn race_owner_and_foreign_free(foreign_owns_an_arena: bool) {
    let heap = Arc::new(Heap::with_config(Config::new().region_size(64 << 20)));
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let (to_foreign, blocks) = std::sync::mpsc::channel::<Option<Block>>();
    let (to_owner, results) = std::sync::mpsc::channel::<Result<(), FreeError>>();
    let foreign = {
        let (heap, barrier) = (heap.clone(), barrier.clone());
        thread::spawn(move || {
            if foreign_owns_an_arena {
                let own = heap.malloc(64);
                free(&heap, own).unwrap();
            }
            while let Some(b) = blocks.recv().unwrap() {
                barrier.wait();
                to_owner.send(free(&heap, b.ptr())).unwrap();
            }
        })
    };
    let mut owner_won = 0;
    for i in 0..RACE_ROUNDS {
        let p = heap.malloc(small_size(i));
        assert!(!p.is_null());
        to_foreign.send(Some(Block(p as usize))).unwrap();
        barrier.wait();
        let mine = free(&heap, p);
        let theirs = results.recv().unwrap();
        match (mine, theirs) {
            (Ok(()), Err(FreeError::DoubleFree)) => owner_won += 1,
            (Err(FreeError::DoubleFree), Ok(())) => {}
            other => panic!("round {i}: exactly one free of {p:?} wins, got {other:?}"),
        }
    }
    to_foreign.send(None).unwrap();
    foreign.join().unwrap();
    heap.check().expect("heap invariants");
    let s = heap.stats();
    assert_eq!(s.live_blocks(), 0);
    assert_eq!(s.allocations(), s.frees());
    // Both sides won some rounds: the race was run, not one side always
    // first (a barrier releases both within a few hundred nanoseconds).
    assert!(
        owner_won > 0 && owner_won < RACE_ROUNDS,
        "owner won {owner_won} of {RACE_ROUNDS}"
    );
}

#[test]
fn owner_and_queueing_thread_free_one_live_block_exactly_one_wins() {
    race_owner_and_foreign_free(false);
}

#[test]
fn owner_and_batching_thread_free_one_live_block_exactly_one_wins() {
    race_owner_and_foreign_free(true);
}

/// `realloc` within the owner cache's sizes takes no lock once the cache
/// holds the sizes involved (`Heap::realloc`): a size the block still
/// holds (and at least half of it) keeps the block; growing moves it
/// through the cache, contents kept. A `String` or `Vec` growing by
/// doubling — what the `service` workload's serialisers do — took the lock
/// on every step before. Shrinking below half, and growing past the cache,
/// still take it (in place, under the lock).
#[test]
fn realloc_within_the_cache_takes_no_lock() {
    let heap = Heap::new();
    let grow = |heap: &Heap| {
        let mut p = malloc_filled(heap, 24);
        let mut len = 24;
        while len < 48 << 10 {
            // SAFETY: `p` is live with at least `len` bytes.
            unsafe { (0..len).for_each(|i| *p.add(i) = i as u8) };
            // SAFETY: a live block of this heap, given up.
            let q = unsafe { heap.realloc(p, 2 * len) };
            assert!(!q.is_null());
            // SAFETY: the first `len` bytes were copied (or kept).
            let kept = unsafe { std::slice::from_raw_parts(q, len) };
            assert!(
                kept.iter().enumerate().all(|(i, &b)| b == i as u8),
                "contents kept up to {len}"
            );
            (p, len) = (q, 2 * len);
        }
        // Within the block: kept.
        // SAFETY: as above.
        assert_eq!(unsafe { heap.realloc(p, len - 100) }, p);
        p
    };
    // The first round fills the classes it passes through.
    let p = grow(&heap);
    free(&heap, p).unwrap();
    let before = locks(&heap, 0);
    let p = grow(&heap);
    assert_eq!(
        locks(&heap, 0),
        before + 1,
        "the second round took the lock (the one is stats')"
    );
    // Shrinking below half and growing past the cache take the lock.
    let before = locks(&heap, 0);
    // SAFETY: live, given up.
    let p = unsafe { heap.realloc(p, 100) };
    // SAFETY: live, given up.
    let p = unsafe { heap.realloc(p, 200 << 10) };
    assert!(!p.is_null());
    assert!(locks(&heap, 0) > before + 1);
    free(&heap, p).unwrap();
    heap.check().unwrap();
    assert_eq!(heap.stats().live_blocks(), 0);
}
