//! Memory back to the OS (`src/heap/purge.rs`, `src/arena/purge.rs`):
//! free pages inside chunks are purged after the decay, remote frees to an
//! idle owner are applied without that owner, kept empty chunks go back,
//! `trim` does it all at once, and a region that runs short reclaims
//! before it reports exhaustion.
//!
//! Residency is measured by the kernel (`Heap::measured_resident_bytes`:
//! `mincore` over the heap's own chunks), so the figures are this heap's
//! alone whatever else the test process does. Tests that wait for decay
//! wait for the decay clock itself (`Heap::decay_epoch` advancing by three
//! ticks: at least one whole decay), never for a guessed time; a deadline
//! only turns a decay that never comes into a failure instead of a hang.
//! Every test ends with `check()`, which proves the purge accounting.

use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use arenalloc::{Config, Heap};

mod common;
use common::Rng;

const MIB: usize = 1 << 20;
/// Decay used by the timed tests: ticks every 50 ms.
const DECAY_MS: i64 = 100;
/// What a heap keeps resident whatever it holds: metadata (arena table,
/// internal pool, queues) and each arena's chunk header pages.
const FIXED: usize = 8 * MIB;

/// Waits until the decay clock has ticked `ticks` more times, or has
/// ticked and its thread parked (nothing left to decay), or fails after
/// `limit` (decay never came).
fn wait_for_ticks(heap: &Heap, ticks: u64, limit: Duration) {
    let start = heap.decay_epoch();
    let deadline = Instant::now() + limit;
    loop {
        let now = heap.decay_epoch();
        if now >= start + ticks || (now > start && heap.decay_thread_parked()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the decay clock did not tick {ticks} times in {limit:?} (epoch {} -> {}, thread {})",
            start,
            heap.decay_epoch(),
            heap.decay_thread_exists()
        );
        // Back off while the clock runs; the condition is the clock.
        thread::park_timeout(Duration::from_millis(5));
    }
}

/// A block address that may cross threads.
#[derive(Clone, Copy)]
struct Block(usize);

/// `n` threads each allocate `bytes / n` of 16-512 B blocks (written), hand
/// them to the caller, and stay alive and idle until released; returns the
/// blocks, the bytes asked for, and the barrier that releases the threads.
fn burst(
    heap: &'static Heap,
    threads: usize,
    bytes: usize,
) -> (Vec<Block>, usize, Arc<Barrier>, Vec<thread::JoinHandle<()>>) {
    let release = Arc::new(Barrier::new(threads + 1));
    let (tx, rx) = mpsc::channel();
    let handles = (0..threads)
        .map(|t| {
            let (tx, release) = (tx.clone(), release.clone());
            thread::spawn(move || {
                let mut rng = Rng::from_path(0xdeca, &[t as u64]);
                let (mut got, mut mine) = (0, Vec::new());
                while got < bytes / threads {
                    let size = 16 + rng.below(497);
                    let p = heap.malloc(size);
                    assert!(!p.is_null());
                    // SAFETY: a fresh block of `size` bytes.
                    unsafe { std::ptr::write_bytes(p, 0xa5, size) };
                    mine.push(Block(p as usize));
                    got += size;
                }
                tx.send((mine, got)).unwrap();
                release.wait();
            })
        })
        .collect();
    drop(tx);
    let (mut blocks, mut total) = (Vec::new(), 0);
    // One message per thread (they keep their senders until released).
    for (mine, got) in rx.iter().take(threads) {
        blocks.extend(mine);
        total += got;
    }
    (blocks, total, release, handles)
}

fn leak(config: Config) -> &'static Heap {
    Box::leak(Box::new(Heap::with_config(config)))
}

#[test]
fn remote_frees_to_idle_owners_go_back_within_the_decay() {
    let heap = leak(Config::new().hardened(true).purge_ms(DECAY_MS));
    let (blocks, live, release, handles) = burst(heap, 4, 128 * MIB);
    let before = heap.measured_resident_bytes();
    assert!(before >= live, "{before} resident for {live} live");
    // The owners stay alive and idle; the main thread frees every block
    // (remote frees) and then does nothing with the heap.
    for b in &blocks {
        // SAFETY: a live block of this heap, freed once.
        unsafe { heap.free(b.0 as *mut u8) }.unwrap();
    }
    wait_for_ticks(heap, 3, Duration::from_secs(20));
    let after = heap.measured_resident_bytes();
    eprintln!(
        "resident: {} MiB live, {} MiB after the decay",
        before / MIB,
        after / MIB
    );
    assert!(
        after <= FIXED + 4 * arenalloc::DEFAULT_OWNER_CACHE,
        "{after} bytes still resident after the decay (was {before})"
    );
    release.wait();
    for h in handles {
        h.join().unwrap();
    }
    heap.check().unwrap();
    assert_eq!(heap.stats().live_blocks(), 0);
}

#[test]
fn trim_gives_back_fragmented_free_pages_at_once() {
    // No decay: only `trim` may purge.
    let heap = Heap::with_config(Config::new().hardened(true).purge_ms(-1));
    let mut rng = Rng::from_path(0x7417, &[]);
    let mut blocks = Vec::new();
    for _ in 0..20_000 {
        let size = 1024 + rng.below(6 * 1024);
        let p = heap.malloc(size);
        assert!(!p.is_null());
        // SAFETY: a fresh block of `size` bytes.
        unsafe { std::ptr::write_bytes(p, 1, size) };
        blocks.push((p, size));
    }
    // Keep one block in 16: the chunks stay, mostly free.
    let mut live = 0;
    for (i, &(p, size)) in blocks.iter().enumerate() {
        if i % 16 == 0 {
            live += size;
        } else {
            // SAFETY: a live block of this heap, freed once.
            unsafe { heap.free(p) }.unwrap();
        }
    }
    let before = heap.measured_resident_bytes();
    assert!(heap.trim(), "trim released nothing");
    let after = heap.measured_resident_bytes();
    eprintln!(
        "trim: {} KiB live, resident {} KiB -> {} KiB",
        live >> 10,
        before >> 10,
        after >> 10
    );
    assert!(before > 4 * live, "the free pages were never resident?");
    // Each live block pins at most its own pages and the next header's.
    assert!(
        after <= live + live / 5 + FIXED,
        "{after} bytes resident after trim for {live} live"
    );
    heap.check().unwrap();
    let stats = heap.stats();
    assert!(stats.purged_bytes() > 0);
    assert!(stats.resident_bytes() < stats.committed_bytes());
    for &(p, size) in blocks.iter().step_by(16) {
        // SAFETY: the kept blocks are live and untouched by the purge.
        assert!(unsafe { std::slice::from_raw_parts(p, size) }
            .iter()
            .all(|&b| b == 1));
        // SAFETY: live, freed once.
        unsafe { heap.free(p) }.unwrap();
    }
    heap.check().unwrap();
}

#[test]
fn purge_ms_zero_purges_a_large_free_block_in_the_free() {
    let heap = Heap::with_config(Config::new().hardened(true).purge_ms(0));
    let keep = heap.malloc(64);
    let p = heap.malloc(512 << 10);
    assert!(!p.is_null());
    // SAFETY: a fresh 512 KiB block.
    unsafe { std::ptr::write_bytes(p, 7, 512 << 10) };
    let before = heap.measured_resident_bytes();
    // SAFETY: live, freed once.
    unsafe { heap.free(p) }.unwrap();
    let after = heap.measured_resident_bytes();
    assert!(
        before - after >= 400 << 10,
        "freeing 512 KiB released only {} bytes ({before} -> {after})",
        before.saturating_sub(after)
    );
    let stats = heap.stats();
    assert!(stats.arenas().iter().map(|a| a.purges).sum::<u64>() >= 1);
    // The block is reused, and its purged pages come back as zeroes (the
    // first page kept the free block's header and links).
    let q = heap.malloc(512 << 10);
    assert_eq!(q, p, "first fit reuses the block");
    let skip = 4096 - (q as usize % 4096) + 16;
    // SAFETY: a fresh block of 512 KiB; `skip` is below its size.
    let tail = unsafe { std::slice::from_raw_parts(q.add(skip), (512 << 10) - skip) };
    assert!(
        tail.iter().all(|&b| b == 0),
        "a purged page kept its old bytes"
    );
    // SAFETY: live, freed once each.
    unsafe {
        heap.free(q).unwrap();
        heap.free(keep).unwrap();
    }
    heap.check().unwrap();
}

#[test]
fn an_idle_arenas_empty_chunks_go_back_after_the_decay() {
    let heap = Heap::with_config(Config::new().hardened(true).purge_ms(DECAY_MS));
    // Blocks above the owner cache's classes (64 KiB requests), so that
    // all of them go back to the index and empty their chunks.
    let blocks: Vec<_> = (0..160).map(|_| heap.malloc(100 << 10)).collect();
    assert!(blocks.iter().all(|p| !p.is_null()));
    for &p in &blocks {
        // SAFETY: live, freed once.
        unsafe { heap.free(p) }.unwrap();
    }
    // One empty chunk is kept at once (churn absorber)...
    let kept = heap.measured_resident_bytes();
    // ...and goes back once the arena stays idle for a tick.
    wait_for_ticks(&heap, 4, Duration::from_secs(20));
    let stats = heap.stats();
    assert_eq!(stats.arenas()[0].chunks, 0, "the kept chunk stayed");
    assert!(heap.measured_resident_bytes() < kept);
    heap.check().unwrap();
}

#[test]
fn a_region_that_runs_short_reclaims_what_idle_arenas_keep() {
    // 64 MiB: 16 chunks, metadata takes some. 14 threads at once each
    // keep one chunk (their owner cache's refill) and exit.
    let heap = leak(
        Config::new()
            .hardened(true)
            .region_size(64 * MIB)
            .purge_ms(-1),
    );
    let start = Arc::new(Barrier::new(14));
    let threads: Vec<_> = (0..14)
        .map(|_| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                let p = heap.malloc(100);
                assert!(!p.is_null());
                // SAFETY: live, freed once.
                unsafe { heap.free(p) }.unwrap();
                start.wait();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let before = heap.stats();
    let held: usize = before.arenas().iter().map(|a| a.chunks).sum();
    assert!(held >= 12, "the threads held only {held} chunks");
    let big = heap.malloc(3 * MIB);
    assert!(
        !big.is_null(),
        "3 MiB refused with {held} chunks held by exited threads"
    );
    // SAFETY: live, freed once.
    unsafe { heap.free(big) }.unwrap();
    heap.check().unwrap();
}

#[test]
fn dropping_a_heap_stops_its_decay_thread() {
    for round in 0..20 {
        let heap = Heap::with_config(Config::new().purge_ms(20));
        let blocks: Vec<_> = (0..64).map(|_| heap.malloc(200 << 10)).collect();
        for &p in &blocks {
            // SAFETY: live, freed once.
            unsafe { heap.free(p) }.unwrap();
        }
        // The next allocation slow path starts the thread (never a free).
        let p = heap.malloc(300 << 10);
        assert!(heap.decay_thread_exists(), "round {round}: no decay thread");
        // SAFETY: live, freed once.
        unsafe { heap.free(p) }.unwrap();
        // Dropping waits for the thread, ticking or parked; a thread that
        // touched the heap after the unmap would crash the process.
        drop(heap);
    }
}

#[test]
fn the_decay_thread_parks_when_idle_and_a_free_wakes_it() {
    let heap = Heap::with_config(Config::new().purge_ms(20));
    // No thread for a heap that holds little and has nothing to decay.
    let small = heap.malloc(100);
    assert!(!heap.decay_thread_exists());
    let blocks: Vec<_> = (0..64).map(|_| heap.malloc(200 << 10)).collect();
    for &p in &blocks {
        // SAFETY: live, freed once.
        unsafe { heap.free(p) }.unwrap();
    }
    let p = heap.malloc(300 << 10);
    assert!(heap.decay_thread_exists());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !heap.decay_thread_parked() {
        assert!(Instant::now() < deadline, "the decay thread never parked");
        thread::park_timeout(Duration::from_millis(5));
    }
    let parked_at = heap.decay_epoch();
    // A free that leaves a large dirty block wakes it: the clock moves on.
    // SAFETY: live, freed once.
    unsafe { heap.free(p) }.unwrap();
    wait_for_ticks(&heap, 2, Duration::from_secs(20));
    assert!(heap.decay_epoch() > parked_at);
    assert_eq!(
        heap.stats().decay_threads_started(),
        1,
        "woken, not restarted"
    );
    // SAFETY: live, freed once.
    unsafe { heap.free(small) }.unwrap();
    heap.check().unwrap();
}

/// A lock holder off the owner's path (here `stats`) applies queued remote
/// frees in rounds of at most 256 blocks per lock acquisition, so that an
/// owner never waits behind a whole queue: 3000 queued frees take at least
/// 12 acquisitions (one, before rounds), and every free is applied.
#[test]
fn queued_remote_frees_are_applied_in_bounded_rounds() {
    const N: usize = 3000;
    let heap = Heap::with_config(
        Config::new()
            .remote_queue_capacity(4096)
            .purge_thread(false)
            .hardened(true),
    );
    // A thread that allocates (and so owns arena 0), then exits.
    let blocks: Vec<usize> = thread::scope(|s| {
        s.spawn(|| (0..N).map(|_| heap.malloc(2000) as usize).collect())
            .join()
            .unwrap()
    });
    assert!(blocks.iter().all(|&p| p != 0));
    let acquisitions = |h: &Heap| h.stats().arenas()[0].lock_acquisitions;
    let before = acquisitions(&heap);
    // This thread never allocated from the heap: each free is claimed and
    // queued for arena 0 (no batch: the freeing thread owns no arena).
    for &p in &blocks {
        // SAFETY: each is a live block of `heap`, freed once.
        unsafe { heap.free(p as *mut u8) }.unwrap();
    }
    let after = acquisitions(&heap);
    let s = heap.stats();
    assert_eq!(
        s.arenas()[0].remote_frees,
        N as u64,
        "every queued free applied"
    );
    assert_eq!(s.live_blocks(), 0);
    assert!(
        after - before >= N.div_ceil(256) as u64,
        "{} acquisitions drained {N} queued frees",
        after - before
    );
    heap.check().unwrap();
}

/// A decay step never holds an arena's lock across `madvise`
/// (`arena/purge.rs`): it takes at most 16 dirty blocks out of the index
/// per lock hold, purges them with the lock dropped and takes the lock
/// again to put them back — so trimming 96 separate free blocks takes the
/// lock at least 96 / 16 times, and still returns all their pages.
#[test]
fn trim_purges_in_rounds_with_the_lock_dropped() {
    const N: usize = 96;
    const BIG: usize = 128 << 10;
    let heap = Heap::with_config(Config::new().purge_ms(-1));
    // Big blocks kept apart by smaller live ones, so none merges (those
    // above the owner cache's classes, 64 KiB requests: carved right after
    // each big one, not in a refill's batch).
    const SMALL: usize = 80 << 10;
    let pairs: Vec<(*mut u8, *mut u8)> = (0..N)
        .map(|i| {
            let big = heap.malloc(BIG);
            let small = heap.malloc(SMALL);
            assert!(!big.is_null() && !small.is_null());
            // SAFETY: fresh blocks of `BIG` and `SMALL` bytes.
            unsafe {
                std::ptr::write_bytes(big, 0x5a, BIG);
                std::ptr::write_bytes(small, i as u8, SMALL);
            }
            (big, small)
        })
        .collect();
    for &(big, _) in &pairs {
        // SAFETY: live, freed once.
        unsafe { heap.free(big) }.unwrap();
    }
    let before = heap.stats();
    let resident = heap.measured_resident_bytes();
    assert!(heap.trim(), "trim released nothing");
    let after = heap.stats();
    let taken = after.arenas()[0].lock_acquisitions - before.arenas()[0].lock_acquisitions;
    assert!(
        taken >= (N / 16) as u64,
        "trim took the lock {taken} times for {N} free blocks: not in rounds"
    );
    // Every big block's interior (all but the page of its header and
    // links, and a part page at its end) went back.
    let interior = BIG - 2 * 4096;
    assert!(
        after.purged_bytes() >= N * interior,
        "{} bytes purged for {N} blocks of {BIG}",
        after.purged_bytes()
    );
    let now = heap.measured_resident_bytes();
    assert!(
        resident - now >= N * interior,
        "resident {resident} -> {now}: the purge returned too little"
    );
    heap.check().unwrap();
    for (i, &(_, small)) in pairs.iter().enumerate() {
        // SAFETY: the separators are live and were not purged.
        assert!(unsafe { std::slice::from_raw_parts(small, SMALL) }
            .iter()
            .all(|&b| b == i as u8));
        // SAFETY: live, freed once.
        unsafe { heap.free(small) }.unwrap();
    }
    heap.check().unwrap();
}

/// While a decay step has blocks out of the index with its lock dropped,
/// the owners go on allocating, writing and freeing big blocks next to
/// them: no block being purged is ever handed out (a purge of a block in
/// use would zero its pages under its owner: every block's pattern is
/// verified before it is freed), neighbours freed meanwhile merge with the
/// purged blocks when they go back, pages still go back, and `check()` is
/// exact afterwards. Once with `trim` looping on another thread, once with
/// a 2 ms decay thread.
#[test]
fn blocks_being_purged_are_never_handed_out() {
    const WORKERS: usize = 3;
    const ROUNDS: usize = 150;
    const KEEP: usize = 24;
    for trimmer in [true, false] {
        let purge_ms = if trimmer { -1 } else { 2 };
        let heap = leak(Config::new().purge_ms(purge_ms).purge_min(16 << 10));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let trims = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut n = 0u64;
                while trimmer && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    heap.trim();
                    n += 1;
                }
                n
            })
        };
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                thread::spawn(move || {
                    let mut rng = Rng::from_path(0x9a7e, &[w as u64, trimmer as u64]);
                    let mut held: Vec<(usize, usize, u8)> = Vec::new();
                    for round in 0..ROUNDS {
                        while held.len() < 2 * KEEP {
                            let size = (16 << 10) + rng.below(240 << 10);
                            let p = heap.malloc(size);
                            assert!(!p.is_null());
                            let tag = (rng.next() as u8) | 1;
                            // SAFETY: a fresh block of `size` bytes.
                            unsafe { std::ptr::write_bytes(p, tag, size) };
                            held.push((p as usize, size, tag));
                        }
                        rng.shuffle(&mut held);
                        // Free half: free blocks for the purge, next to
                        // live ones that are freed in a later round.
                        for (p, size, tag) in held.drain(KEEP..) {
                            // SAFETY: a live block of `size` bytes.
                            let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, size) };
                            assert!(
                                bytes.iter().all(|&b| b == tag),
                                "round {round}: a live block changed under its owner"
                            );
                            // SAFETY: live, freed once.
                            unsafe { heap.free(p as *mut u8) }.unwrap();
                        }
                    }
                    for (p, size, tag) in held {
                        // SAFETY: as above.
                        let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, size) };
                        assert!(bytes.iter().all(|&b| b == tag), "a live block changed");
                        // SAFETY: live, freed once.
                        unsafe { heap.free(p as *mut u8) }.unwrap();
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let trims = trims.join().unwrap();
        heap.check().unwrap();
        let s = heap.stats();
        assert_eq!(s.live_blocks(), 0);
        let purges: u64 = s.arenas().iter().map(|a| a.purges).sum();
        eprintln!("trimmer {trimmer}: {trims} trims, {purges} madvise calls");
        assert!(purges > 0, "nothing was purged while the owners worked");
        // Everything is free: every chunk goes back.
        heap.trim();
        heap.check().unwrap();
        let s = heap.stats();
        assert!(
            s.arenas().iter().all(|a| a.chunks == 0),
            "chunks kept after the last trim"
        );
    }
}

/// `fork` while another thread trims over and over (blocks out of the
/// index, the arena lock dropped, `madvise` running): the fork handlers
/// take the decay's tick lock first, which every decay step holds, so no
/// child inherits a block taken out — each child's `check()` is exact, and
/// it allocates, frees, trims and checks again.
#[test]
fn a_fork_never_inherits_a_block_taken_out_to_purge() {
    const FORKS: usize = 40;
    let heap = leak(Config::new().purge_ms(-1).purge_min(16 << 10));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut rng = Rng::from_path(0xf0c, &[]);
            let mut held: Vec<usize> = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                while held.len() < 64 {
                    let size = (16 << 10) + rng.below(112 << 10);
                    let p = heap.malloc(size);
                    assert!(!p.is_null());
                    // SAFETY: a fresh block of `size` bytes.
                    unsafe { std::ptr::write_bytes(p, 1, size) };
                    held.push(p as usize);
                }
                rng.shuffle(&mut held);
                for p in held.drain(32..) {
                    // SAFETY: live, freed once.
                    unsafe { heap.free(p as *mut u8) }.unwrap();
                }
                heap.trim();
            }
            for p in held {
                // SAFETY: live, freed once.
                unsafe { heap.free(p as *mut u8) }.unwrap();
            }
        })
    };
    // Let the churn reach its steady state (blocks out and back) first.
    while heap.stats().arenas().iter().map(|a| a.purges).sum::<u64>() < 64 {
        thread::yield_now();
    }
    for i in 0..FORKS {
        // SAFETY: the child only uses `heap` (which allocates nothing from
        // the global allocator here) and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let ok = heap.check().is_ok()
                && {
                    let p = heap.malloc(100 << 10);
                    // SAFETY: a fresh block (or null, which fails below).
                    !p.is_null() && unsafe { heap.free(p) }.is_ok()
                }
                && {
                    heap.trim();
                    heap.check().is_ok()
                };
            // SAFETY: ends the child without running the parent's exit code.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "fork {i}: the child's heap failed check() (status {status:#x})"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().unwrap();
    heap.check().unwrap();
}

/// A busy arena keeps the free pages it reuses (`arena/purge.rs`, "How
/// much"): a thread that frees a chunk's worth of large blocks and
/// allocates them again, over and over, never dips below the few free
/// bytes its chunk keeps outside the blocks (less than `purge_min`), so
/// no due tick finds anything the program did not reuse: nothing is
/// purged while it runs, however many decay windows pass — before the
/// low-water budget, every tick that met the blocks free purged them and
/// the next round refaulted them. Once the thread stops with everything
/// free, the arena is idle and its next ticks give it all back.
#[test]
fn a_busy_arena_keeps_the_pages_it_reuses_and_an_idle_one_gives_them_back() {
    const BLOCK: usize = 256 << 10;
    let heap = leak(Config::new().purge_ms(60));
    // Fill one chunk: large blocks (uncached, above 64 KiB requests),
    // then a filler block that leaves less than `purge_min` free.
    let mut blocks: Vec<*mut u8> = Vec::new();
    loop {
        let p = heap.malloc(BLOCK);
        assert!(!p.is_null());
        if heap
            .stats()
            .arenas()
            .iter()
            .map(|a| a.chunks)
            .sum::<usize>()
            > 1
        {
            // SAFETY: live, freed once.
            unsafe { heap.free(p) }.unwrap();
            break;
        }
        blocks.push(p);
    }
    // The empty chunk goes back; what is left is the first chunk's gap.
    heap.trim();
    let free: usize = heap.stats().arenas().iter().map(|a| a.free_bytes).sum();
    assert!(free > 64 << 10, "{free} bytes left in the chunk");
    let filler = heap.malloc(free - (32 << 10));
    assert!(!filler.is_null());
    let n = blocks.len();
    let gap: usize = heap.stats().arenas().iter().map(|a| a.free_bytes).sum();
    assert!(gap < 64 << 10, "{gap} bytes left free beside the blocks");
    let purges = |heap: &Heap| heap.stats().arenas().iter().map(|a| a.purges).sum::<u64>();
    let before = purges(heap);
    let start = heap.decay_epoch();
    let mut rounds = 0u64;
    // Twice the windows the budget looks back over, and a few ticks.
    while heap.decay_epoch() < start + 12 {
        for p in blocks.drain(..) {
            // SAFETY: live, freed once.
            unsafe { heap.free(p) }.unwrap();
        }
        while blocks.len() < n {
            let p = heap.malloc(BLOCK);
            assert!(!p.is_null());
            // SAFETY: a fresh block of `BLOCK` bytes: one byte per page.
            unsafe { (0..BLOCK).step_by(4096).for_each(|i| *p.add(i) = 1) };
            blocks.push(p);
        }
        rounds += 1;
    }
    heap.check().unwrap();
    assert_eq!(
        purges(heap),
        before,
        "the decay purged pages the program reused ({rounds} rounds)"
    );
    let busy = heap.measured_resident_bytes();
    assert!(busy >= n * BLOCK, "{busy} bytes resident for {n} blocks");
    for p in blocks.drain(..).chain([filler]) {
        // SAFETY: live, freed once.
        unsafe { heap.free(p) }.unwrap();
    }
    // Idle now: the chunk, empty, goes back whole (or its pages are
    // purged, if it is the one an arena keeps).
    wait_for_ticks(heap, 4, Duration::from_secs(20));
    let idle = heap.measured_resident_bytes();
    assert!(
        idle + n * BLOCK / 2 < busy,
        "{idle} bytes still resident (busy: {busy})"
    );
    heap.check().unwrap();
}
