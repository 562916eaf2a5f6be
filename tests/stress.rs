//! Multithreaded stress tests, modelled on mimalloc's `test/test-stress.c`:
//! seeded randomness, blocks that are allocated on one thread and freed on
//! another, threads that come and go. Never a benchmark: nothing here times
//! anything, and threads synchronise only through joins, channels and
//! mutexes, never sleeps.
//!
//! * `rayon_*`: a local 8-thread rayon pool (oversubscribing small machines)
//!   allocates blocks in one parallel stage (random sizes from 1 B to 2 MiB,
//!   so some take the large path; random alignments 16..=4096), fills each
//!   with a pattern derived from its id, passes them on through a channel,
//!   a collected `Vec` and a mimalloc-style transfer array, and frees them in
//!   a differently split, shuffled or reversed parallel stage, verifying the
//!   pattern before every free (and `calloc`'s zeroes after every
//!   allocation through it). Some blocks stay alive across rounds, half of
//!   them reallocated each round by another worker. A final
//!   producer/consumer hand-off between two plain threads makes the
//!   cross-thread traffic deterministic. The same workload runs over the
//!   default configuration, one arena (the global lock), two arenas, and a
//!   remote queue of one slot (which must force queue-full fallbacks).
//! * `thread_churn_*`: thousands of short-lived threads, a few alive at a
//!   time; each allocates, frees blocks that earlier (now dead) threads
//!   left behind, and leaves some of its own for later threads. Exited
//!   threads' arenas must be adopted, so the arena count stays bounded by
//!   the number of threads alive at once.
//! * `threads_binding_while_the_last_arena_is_created`: eight threads make
//!   their first allocation at once from a heap allowed one arena; none may
//!   get null while that arena is still being built.
//!
//! Every test ends the same way: `check()` passes, the heap's live block
//! count and live bytes equal exactly what the test still holds (the sum
//! of `usable_size` over held blocks), every held block still carries its
//! pattern, and after freeing them all the heap is empty.
//!
//! # Soak
//!
//! `ARENALLOC_SOAK=<n>` (a positive integer, default 1) multiplies the
//! rounds of the rayon tests and the thread count of the churn tests by
//! `n`, turning the default run (about 15 s in release, 20 s in debug on
//! two cores; an optimised build does `RELEASE_SCALE` times the work of a
//! debug one) into a long soak, for example
//!
//! ```text
//! ARENALLOC_SOAK=100 cargo test --release --test stress -- --nocapture
//! ```
//!
//! `ARENALLOC_SEED=<u64>` picks another seed (default fixed); every test
//! prints the seed it used, so a failure can be rerun with the same one.
//! (The interleaving of threads is not reproducible, only the sizes,
//! alignments, ids and the order of operations within each thread.)

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Barrier, Mutex};
use std::thread;

mod common;
use common::{mix, soak_env, Rng};

use arenalloc::{Config, Heap, HeapStats, Stress, LARGE_THRESHOLD};
use rayon::prelude::*;

// ----- knobs -----------------------------------------------------------------

/// Threads of each rayon pool (more than the cores of a small CI machine).
const WORKERS: usize = 8;
/// Rounds of each rayon test, times the soak multiplier (and
/// `RELEASE_SCALE`).
const ROUNDS: usize = 6;
/// Blocks allocated in the first parallel stage of a round.
const BLOCKS_PER_ROUND: usize = 1_500;
/// Allocate-and-swap operations on the transfer array per round.
const TRANSFERS_PER_ROUND: usize = 3_000;
/// Slots of the transfer array (mimalloc's `transfer[]`).
const TRANSFER_SLOTS: usize = 256;
/// Blocks each rayon test hands from a producer to a consumer thread.
const HANDOFF_BLOCKS: usize = 64;
/// Short-lived threads of each churn test, times the soak multiplier (and
/// `RELEASE_SCALE`).
const CHURN_THREADS: usize = 2_000;
/// Churn threads alive at once.
const CHURN_CONCURRENT: usize = 4;
/// Arenas a churn test may use beyond one per thread alive at once.
const CHURN_ARENA_SLACK: usize = 2;
/// Blocks the churn threads' shared pool settles around.
const CHURN_POOL_TARGET: usize = 256;
/// Churn threads between quiescent `check()` calls.
const CHURN_CHECK_EVERY: usize = 500;
/// Region for the non-default configurations (address space only).
const REGION: usize = 4 << 30;

/// How much more an optimised build does by default than a debug one
/// (which runs the same code several times slower).
const RELEASE_SCALE: usize = if cfg!(debug_assertions) { 1 } else { 10 };

/// The work multiplier: `ARENALLOC_SOAK` (default 1) times `RELEASE_SCALE`.
fn soak() -> usize {
    RELEASE_SCALE * soak_env()
}

/// The seed: `ARENALLOC_SEED`, default fixed.
fn seed() -> u64 {
    match std::env::var("ARENALLOC_SEED") {
        Err(_) => 0x5eed_a11c_0c8d_2024,
        Ok(s) => s
            .trim()
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("ARENALLOC_SEED must be a u64, not {s:?}")),
    }
}

// ----- seeded randomness -------------------------------------------------------

/// A generator of this binary's stream (`Rng`), seeded by `path`.
fn rng(path: &[u64]) -> Rng {
    Rng::from_path(0x243f_6a88_85a3_08d3, path)
}

/// Sizes from 1 B to 2 MiB, mostly small; about 1 in 100 takes the large
/// path (above `LARGE_THRESHOLD`).
fn rayon_size(r: &mut Rng) -> usize {
    match r.below(100) {
        0..=69 => 1 + r.below(512),
        70..=89 => 1 + r.below(8 << 10),
        90..=97 => 1 + r.below(64 << 10),
        _ => (64 << 10) + r.below((2 << 20) - (64 << 10)),
    }
}

/// Sizes for the churn threads: smaller on the whole, occasionally large.
fn churn_size(r: &mut Rng) -> usize {
    match r.below(200) {
        0..=159 => 1 + r.below(2 << 10),
        160..=197 => 1 + r.below(64 << 10),
        _ => (LARGE_THRESHOLD / 2) + r.below(LARGE_THRESHOLD),
    }
}

/// Half the time 16 (plain `malloc`), else a power of two in 16..=4096.
fn random_align(r: &mut Rng) -> usize {
    if r.below(2) == 0 {
        16
    } else {
        1 << (4 + r.below(9))
    }
}

// ----- blocks ------------------------------------------------------------------

/// A block the test holds: its address, the bytes asked for, and the id its
/// pattern derives from. Not `Clone`, so a block is freed at most once; the
/// address is a `usize` so blocks move freely between threads.
#[derive(Debug)]
struct Block {
    addr: usize,
    size: usize,
    id: u64,
}

/// The `k`-th 8-byte word of the pattern of a block with id `id`.
fn pattern_word(id: u64, k: usize) -> u64 {
    mix(id).wrapping_add((k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// The bytes of a block the calling thread holds, to write.
fn bytes_mut(b: &mut Block) -> &mut [u8] {
    // SAFETY: `b` is a live block of at least `b.size` bytes; holding the
    // (unique, non-`Clone`) `Block` mutably means no other thread touches it.
    unsafe { std::slice::from_raw_parts_mut(b.addr as *mut u8, b.size) }
}

/// The bytes of a block the calling thread holds, to read.
fn bytes(b: &Block) -> &[u8] {
    // SAFETY: as in `bytes_mut`; nobody writes while `b` is borrowed.
    unsafe { std::slice::from_raw_parts(b.addr as *const u8, b.size) }
}

fn fill(b: &mut Block) {
    let id = b.id;
    let mut words = bytes_mut(b).chunks_exact_mut(8);
    let mut k = 0;
    for w in &mut words {
        w.copy_from_slice(&pattern_word(id, k).to_le_bytes());
        k += 1;
    }
    let tail = words.into_remainder();
    let n = tail.len();
    tail.copy_from_slice(&pattern_word(id, k).to_le_bytes()[..n]);
}

/// Panics with the block and the first bad offset if its pattern changed.
fn verify(b: &Block) {
    let mut words = bytes(b).chunks_exact(8);
    let mut k = 0;
    for w in &mut words {
        if w != pattern_word(b.id, k).to_le_bytes() {
            corrupted(b, k * 8);
        }
        k += 1;
    }
    let tail = words.remainder();
    if tail != &pattern_word(b.id, k).to_le_bytes()[..tail.len()] {
        corrupted(b, k * 8);
    }
}

#[cold]
fn corrupted(b: &Block, offset: usize) -> ! {
    panic!(
        "block {:#x} (id {:#x}, {} bytes) corrupted at offset {offset} (seed {})",
        b.addr,
        b.id,
        b.size,
        seed()
    )
}

/// Allocates a block (through `malloc`, `calloc` or `aligned_alloc`, as
/// the id says) and fills it.
fn alloc_block(heap: &Heap, id: u64, size: usize, align: usize) -> Block {
    let zeroed = align == 16 && id % 8 == 1;
    let p = if zeroed {
        heap.calloc(1, size)
    } else if align == 16 && id % 2 == 0 {
        heap.malloc(size)
    } else {
        heap.aligned_alloc(align, size)
    };
    if p.is_null() {
        let s = heap.stats();
        panic!(
            "allocation of {size} bytes aligned to {align} failed ({} arenas, {} live blocks, \
             {} bytes committed)",
            s.arenas().len(),
            s.live_blocks(),
            s.committed_bytes()
        );
    }
    assert_eq!(p as usize % align, 0, "{size} bytes aligned to {align}");
    let mut b = Block {
        addr: p as usize,
        size,
        id,
    };
    if id % 16 == 0 {
        let usable = heap.usable_size(p).expect("a fresh block is allocated");
        assert!(usable >= size, "usable {usable} < {size}");
    }
    if zeroed {
        if let Some(i) = bytes(&b).iter().position(|&x| x != 0) {
            panic!("calloc({size}) at {p:p}: byte {i} is not zero");
        }
    }
    fill(&mut b);
    b
}

/// Verifies a block's pattern, reallocates it to `size` bytes, checks that
/// the kept prefix moved intact, and refills it under the new `id`.
fn realloc_block(heap: &Heap, b: Block, size: usize, id: u64) -> Block {
    verify(&b);
    // SAFETY: `b` is a live block of `heap` that the test gives up; `size`
    // is not zero, so on success the result replaces it, and on failure
    // (asserted against) `b` would stay valid.
    let p = unsafe { heap.realloc(b.addr as *mut u8, size) };
    assert!(!p.is_null(), "realloc of {:#x} to {size} failed", b.addr);
    let mut moved = Block {
        addr: p as usize,
        size: b.size.min(size),
        id: b.id,
    };
    verify(&moved);
    moved.size = size;
    moved.id = id;
    fill(&mut moved);
    moved
}

/// Verifies a block's pattern, then frees it.
fn free_block(heap: &Heap, b: Block) {
    verify(&b);
    // SAFETY: `b` is a live block of `heap` (it came from `alloc_block` on
    // this heap and `Block` is not `Clone`), given up here for good.
    let r = unsafe { heap.free(b.addr as *mut u8) };
    assert_eq!(r, Ok(()), "free of {:#x} (id {:#x})", b.addr, b.id);
}

// ----- end-of-test reconciliation -----------------------------------------------

/// With no thread using the heap: `check()` passes, and the live blocks and
/// bytes are exactly those of `held`, each of which keeps its pattern.
fn reconcile(heap: &Heap, held: &[Block], what: &str) -> HeapStats {
    heap.check()
        .unwrap_or_else(|e| panic!("{what}: check() failed: {e:?}"));
    let s = heap.stats();
    assert_eq!(
        s.live_blocks(),
        held.len(),
        "{what}: live blocks vs blocks held"
    );
    let usable: usize = held
        .iter()
        .map(|b| {
            verify(b);
            heap.usable_size(b.addr as *const u8)
                .unwrap_or_else(|| panic!("{what}: held block {:#x} is not allocated", b.addr))
        })
        .sum();
    assert_eq!(
        s.allocated_bytes(),
        usable,
        "{what}: live bytes vs usable bytes held"
    );
    assert_eq!(
        s.allocations() - s.frees(),
        held.len() as u64,
        "{what}: allocations - frees"
    );
    s
}

/// After the test freed everything: the heap is consistent and empty.
fn assert_empty(heap: &Heap, what: &str) {
    heap.check()
        .unwrap_or_else(|e| panic!("{what}: check() after freeing all failed: {e:?}"));
    let s = heap.stats();
    assert_eq!(s.live_blocks(), 0, "{what}: blocks left after freeing all");
    assert_eq!(
        s.allocated_bytes(),
        0,
        "{what}: bytes left after freeing all"
    );
    assert_eq!(s.allocations(), s.frees(), "{what}: allocations vs frees");
}

fn sum(s: &HeapStats, f: impl Fn(&arenalloc::ArenaStats) -> u64) -> u64 {
    s.arenas().iter().map(f).sum()
}

// ----- rayon: allocate on one worker, free on others ---------------------------

/// Stages of a round, for block ids.
const STAGE_ALLOC: u64 = 1;
const STAGE_TRANSFER: u64 = 2;
const STAGE_HANDOFF: u64 = 3;
const STAGE_REALLOC: u64 = 4;

/// What a configuration must show at the end of a rayon test.
struct Expect {
    /// Most arenas the heap may have created.
    max_arenas: usize,
    /// Whether frees must have gone through the remote queues.
    remote_frees: bool,
    /// Whether remote frees must have found a queue full.
    queue_full: bool,
}

/// One round: a parallel allocation stage whose blocks leave through a
/// channel and a collected `Vec`; a parallel allocate-and-swap stage on the
/// transfer array (each swap frees the block a possibly different worker
/// put there); a parallel free stage over the shuffled (or reversed) blocks
/// in small splits, keeping an eighth alive for later rounds, half of which
/// are reallocated by whichever worker picks them up. Runs inside the pool.
fn rayon_round(
    heap: &Heap,
    seed: u64,
    round: u64,
    transfer: &[Mutex<Option<Block>>],
    kept: &mut Vec<Block>,
    large: &AtomicUsize,
) {
    let alloc = |stage: u64, i: usize| {
        let mut r = rng(&[seed, round, stage, i as u64]);
        let (size, align) = (rayon_size(&mut r), random_align(&mut r));
        if size > LARGE_THRESHOLD {
            large.fetch_add(1, Ordering::Relaxed);
        }
        alloc_block(heap, r.next(), size, align)
    };

    let (tx, rx) = mpsc::channel();
    let mut blocks: Vec<Block> = (0..BLOCKS_PER_ROUND)
        .into_par_iter()
        .with_max_len(16)
        .filter_map(|i| {
            let b = alloc(STAGE_ALLOC, i);
            if i % 3 == 0 {
                tx.send(b).expect("the receiver outlives the stage");
                None
            } else {
                Some(b)
            }
        })
        .collect();
    drop(tx);
    blocks.extend(rx.iter());

    (0..TRANSFERS_PER_ROUND)
        .into_par_iter()
        .with_max_len(32)
        .for_each(|i| {
            let slot = mix(seed ^ round ^ ((i as u64) << 20)) as usize % transfer.len();
            let b = alloc(STAGE_TRANSFER, i);
            let old = transfer[slot].lock().unwrap().replace(b);
            if let Some(old) = old {
                free_block(heap, old);
            }
        });

    blocks.append(kept);
    if round % 2 == 0 {
        rng(&[seed, round, 0x5f]).shuffle(&mut blocks);
    } else {
        blocks.reverse();
    }
    let keep = blocks.split_off(blocks.len() - blocks.len() / 8);
    blocks
        .into_par_iter()
        .with_max_len(8)
        .for_each(|b| free_block(heap, b));
    // Half of what stays alive is resized, on whichever worker gets it.
    *kept = keep
        .into_par_iter()
        .with_max_len(4)
        .map(|b| {
            let mut r = rng(&[seed, round, STAGE_REALLOC, b.id]);
            if r.below(2) == 0 {
                return b;
            }
            let size = rayon_size(&mut r);
            if size > LARGE_THRESHOLD {
                large.fetch_add(1, Ordering::Relaxed);
            }
            realloc_block(heap, b, size, r.next())
        })
        .collect();
}

/// A deterministic cross-thread hand-off: a producer thread allocates
/// `HANDOFF_BLOCKS` blocks and sends them to a consumer that never
/// allocates from `heap` (so every free it makes is remote) and frees them
/// only after the producer is done (so nobody drains the queue meanwhile:
/// a queue of fewer slots than blocks must overflow).
fn handoff(heap: &Heap, seed: u64) {
    let (tx, rx) = mpsc::channel::<Block>();
    thread::scope(|s| {
        s.spawn(move || {
            for i in 0..HANDOFF_BLOCKS as u64 {
                let mut r = rng(&[seed, STAGE_HANDOFF, i]);
                let size = 1 + r.below(4 << 10);
                tx.send(alloc_block(heap, r.next(), size, 16)).unwrap();
            }
        });
        s.spawn(move || {
            let blocks: Vec<Block> = rx.iter().collect();
            assert_eq!(blocks.len(), HANDOFF_BLOCKS);
            for b in blocks {
                free_block(heap, b);
            }
        });
    });
}

fn rayon_stress(name: &str, config: Config, expect: Expect) {
    let (seed, rounds) = (seed(), (ROUNDS * soak()) as u64);
    println!("{name}: seed {seed}, {rounds} rounds");
    let heap = Heap::with_config(config);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(WORKERS)
        .thread_name(|i| format!("stress-worker-{i}"))
        .build()
        .expect("a rayon pool");
    let transfer: Vec<Mutex<Option<Block>>> =
        (0..TRANSFER_SLOTS).map(|_| Mutex::new(None)).collect();
    let large = AtomicUsize::new(0);
    let mut kept = Vec::new();
    for round in 0..rounds {
        pool.install(|| rayon_round(&heap, seed, round, &transfer, &mut kept, &large));
        // The pool is idle between rounds: the walk is exact.
        heap.check()
            .unwrap_or_else(|e| panic!("{name}: check() after round {round}: {e:?}"));
    }
    handoff(&heap, seed);

    let mut held = kept;
    held.extend(transfer.into_iter().filter_map(|m| m.into_inner().unwrap()));
    let s = reconcile(&heap, &held, name);
    let arenas = s.arenas().len();
    let remote = sum(&s, |a| a.remote_frees);
    let queue_full = sum(&s, |a| a.queue_full_fallbacks);
    let contended = sum(&s, |a| a.lock_contended);
    println!(
        "{name}: {} held, {arenas} arenas, {} allocations, {remote} remote frees, \
         {queue_full} queue-full fallbacks, {contended} contended locks, {} large",
        held.len(),
        s.allocations(),
        large.load(Ordering::Relaxed)
    );
    assert!(
        large.load(Ordering::Relaxed) > 0,
        "{name}: no large allocation"
    );
    assert!(
        (1..=expect.max_arenas).contains(&arenas),
        "{name}: {arenas} arenas, expected at most {}",
        expect.max_arenas
    );
    if expect.remote_frees {
        assert!(remote > 0, "{name}: no free went through a remote queue");
    }
    if expect.queue_full {
        assert!(queue_full > 0, "{name}: no remote free found a queue full");
    }

    pool.install(|| {
        held.into_par_iter()
            .with_max_len(8)
            .for_each(|b| free_block(&heap, b))
    });
    assert_empty(&heap, name);
    assert_eq!(heap.stats().stress_reports(), 0, "{name}: stress reports");
}

#[test]
fn rayon_default_config() {
    rayon_stress(
        "rayon_default_config",
        Config::new(),
        Expect {
            // The workers, plus the hand-off's producer.
            max_arenas: WORKERS + 1,
            remote_frees: true,
            queue_full: false,
        },
    );
}

#[test]
fn rayon_one_arena() {
    rayon_stress(
        "rayon_one_arena",
        Config::new()
            .max_arenas(1)
            .region_size(REGION)
            .hardened(true),
        Expect {
            max_arenas: 1,
            remote_frees: false,
            queue_full: false,
        },
    );
}

#[test]
fn rayon_two_arenas() {
    rayon_stress(
        "rayon_two_arenas",
        Config::new()
            .max_arenas(2)
            .region_size(REGION)
            .hardened(true),
        Expect {
            max_arenas: 2,
            remote_frees: true,
            queue_full: false,
        },
    );
}

#[test]
fn rayon_one_slot_remote_queue() {
    rayon_stress(
        "rayon_one_slot_remote_queue",
        Config::new()
            .remote_queue_capacity(1)
            .region_size(REGION)
            .hardened(true),
        Expect {
            max_arenas: WORKERS + 1,
            remote_frees: true,
            queue_full: true,
        },
    );
}

#[test]
fn rayon_stress_mode() {
    // Stress mode (quarantine, poison, redzones): the same workload must
    // run clean — no report, check() exact — with every free taking its
    // block's arena lock (no remote queue).
    rayon_stress(
        "rayon_stress_mode",
        Config::new()
            .region_size(REGION)
            .hardened(true)
            .stress(Stress::new().quarantine(1 << 20)),
        Expect {
            // The hand-off's consumer binds too: in stress mode a thread
            // that only frees gets its small id (an arena) as well.
            max_arenas: WORKERS + 2,
            remote_frees: false,
            queue_full: false,
        },
    );
}

// ----- thread churn ----------------------------------------------------------------

/// One short-lived thread: allocates some blocks, frees some that earlier
/// threads left in `pool`, frees half of its own and leaves the rest there.
fn churn_thread(heap: &Heap, pool: &Mutex<Vec<Block>>, seed: u64, t: u64) {
    let mut r = rng(&[seed, t]);
    let n = 8 + r.below(32);
    let mut mine: Vec<Block> = (0..n)
        .map(|_| {
            let (size, align) = (churn_size(&mut r), random_align(&mut r));
            alloc_block(heap, r.next(), size, align)
        })
        .collect();
    let theirs: Vec<Block> = {
        let mut pool = pool.lock().unwrap();
        let want = if pool.len() > CHURN_POOL_TARGET {
            n
        } else {
            r.below(n)
        };
        (0..want.min(pool.len()))
            .map(|_| {
                let i = r.below(pool.len());
                pool.swap_remove(i)
            })
            .collect()
    };
    for b in theirs {
        free_block(heap, b);
    }
    r.shuffle(&mut mine);
    let leave = mine.split_off(n / 2);
    for b in mine {
        free_block(heap, b);
    }
    pool.lock().unwrap().extend(leave);
}

fn thread_churn(name: &str, config: Config, max_arenas: usize) {
    let (seed, threads) = (seed(), CHURN_THREADS * soak());
    println!("{name}: seed {seed}, {threads} threads, {CHURN_CONCURRENT} at a time");
    let heap = Heap::with_config(config);
    let pool = Mutex::new(Vec::new());
    let mut next = 0;
    while next < threads {
        let batch = CHURN_CHECK_EVERY.min(threads - next);
        thread::scope(|s| {
            let mut alive = VecDeque::with_capacity(CHURN_CONCURRENT);
            for t in next..next + batch {
                if alive.len() == CHURN_CONCURRENT {
                    let h: thread::ScopedJoinHandle<'_, ()> = alive.pop_front().unwrap();
                    h.join().expect("a churn thread panicked");
                }
                let (heap, pool) = (&heap, &pool);
                alive.push_back(s.spawn(move || churn_thread(heap, pool, seed, t as u64)));
            }
            for h in alive {
                h.join().expect("a churn thread panicked");
            }
        });
        next += batch;
        // Every thread so far has exited: the walk is exact.
        heap.check()
            .unwrap_or_else(|e| panic!("{name}: check() after {next} threads: {e:?}"));
        let arenas = heap.stats().arenas().len();
        assert!(
            arenas <= max_arenas,
            "{name}: {arenas} arenas after {next} threads, {CHURN_CONCURRENT} alive at a time: \
             exited threads' arenas are not reused"
        );
    }

    let held = pool.into_inner().unwrap();
    let s = reconcile(&heap, &held, name);
    let adoptions = sum(&s, |a| a.adoptions);
    println!(
        "{name}: {} held, {} arenas, {} allocations, {adoptions} adoptions, {} remote frees, \
         {} queue-full fallbacks",
        held.len(),
        s.arenas().len(),
        s.allocations(),
        sum(&s, |a| a.remote_frees),
        sum(&s, |a| a.queue_full_fallbacks),
    );
    assert!(
        adoptions > 0,
        "{name}: no exited thread's arena was adopted"
    );
    assert!(
        s.arenas().iter().all(|a| a.owner.is_none()),
        "{name}: an arena still has a live owner after all its threads exited: {:?}",
        s.arenas().iter().map(|a| a.owner).collect::<Vec<_>>()
    );
    // This thread never allocated from `heap`: every free here is remote,
    // into the queues of orphaned arenas.
    for b in held {
        free_block(&heap, b);
    }
    assert_empty(&heap, name);
}

#[test]
fn thread_churn_default_config() {
    thread_churn(
        "thread_churn_default_config",
        Config::new().region_size(REGION),
        CHURN_CONCURRENT + CHURN_ARENA_SLACK,
    );
}

#[test]
fn thread_churn_four_slot_remote_queue() {
    thread_churn(
        "thread_churn_four_slot_remote_queue",
        Config::new().remote_queue_capacity(4).region_size(REGION),
        CHURN_CONCURRENT + CHURN_ARENA_SLACK,
    );
}

#[test]
fn thread_churn_two_arenas() {
    thread_churn(
        "thread_churn_two_arenas",
        Config::new()
            .max_arenas(2)
            .region_size(REGION)
            .hardened(true),
        2,
    );
}

// ----- binding races -----------------------------------------------------------------

/// Threads that bind to a heap at the same moment, when the heap may create
/// only one more arena: the threads that find no room must share the arena
/// being created, never fail the allocation. (A large remote queue makes
/// arena creation slow, which widens the window.)
#[test]
fn threads_binding_while_the_last_arena_is_created() {
    const THREADS: usize = 8;
    let attempts = 20 * soak_env();
    let mut failed = 0;
    for _ in 0..attempts {
        let heap = Heap::with_config(
            Config::new()
                .max_arenas(1)
                .remote_queue_capacity(1 << 20)
                .region_size(REGION),
        );
        let barrier = Barrier::new(THREADS);
        let nulls = AtomicUsize::new(0);
        thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    barrier.wait();
                    let p = heap.malloc(64);
                    if p.is_null() {
                        nulls.fetch_add(1, Ordering::Relaxed);
                    } else {
                        free_block(
                            &heap,
                            Block {
                                addr: p as usize,
                                size: 0,
                                id: 0,
                            },
                        );
                    }
                });
            }
        });
        failed += nulls.into_inner();
        assert_empty(&heap, "threads_binding_while_the_last_arena_is_created");
    }
    assert_eq!(
        failed,
        0,
        "{failed} of {} first allocations returned null: a thread that binds while \
         the last arena is still being created gets no arena",
        attempts * THREADS
    );
}
