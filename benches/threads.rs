//! Criterion benchmarks: frees from other threads and two-thread churn,
//! arenalloc against the system allocator, with the single-lock heap
//! (`max_arenas(1)`) beside them, all in the same run.
//!
//! * `cross_thread_free`: one producer thread allocates blocks of 16 … 1024
//!   bytes and sends them, 1024 to a message, through bounded channels to 1
//!   or 2 consumer threads that free them. For the default heap every one of
//!   those frees is a remote free (the consumer's arena is not the block's
//!   owner), which the benchmark asserts from the heap's statistics. One
//!   iteration is the whole transfer of `TRANSFER_BLOCKS` blocks: the time
//!   from the producer's start until every consumer has freed its last one.
//! * `churn_2threads`: two threads each keep a window of 256 live blocks of
//!   16 … 4096 bytes and, per step, free a random one and allocate a new
//!   block in its place (seeded xorshift). One iteration is `CHURN_OPS`
//!   steps on each thread, both running at once.
//!
//! The allocators under test, each reached through `GlobalAlloc` with a
//! `Layout` of the block's size and alignment 16, by the same generic code:
//!
//! | name | allocator |
//! | --- | --- |
//! | `arenalloc` | `Heap::new()`: per-thread arenas, remote frees through the owner's queue |
//! | `arenalloc_1lock` | `Heap::with_config(Config::new().max_arenas(1))`: one arena, one global lock |
//! | `system` | `std::alloc::System` (glibc `malloc`/`free` on Linux) |
//!
//! Worker threads are spawned once per benchmark, not per iteration, one at
//! a time, and each allocates once from the allocator under test when it
//! starts (as any thread of a program using it as the global allocator
//! would), so every worker is bound to an arena before timing starts. With
//! `arenalloc_1lock` the consumers are thereby bound to the one arena and
//! free under its lock; with `arenalloc` they own arenas of their own and
//! every free of a transferred block is remote. After each arenalloc
//! benchmark every block has been freed: the heap must pass `check()`,
//! report no live block, and have served as many frees as allocations.
//!
//! Reproduce (numbers and the machine they came from: `benches/README.md`):
//!
//! ```text
//! cargo bench --bench threads                           # full run, ~30 s on 2 idle cores
//! cargo bench --bench threads -- cross_thread_free/     # one group
//! ARENALLOC_BENCH_QUICK=1 cargo bench --bench threads   # smoke run, fewer blocks
//! cargo bench --bench threads -- --test                 # run each benchmark once
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread;
use std::time::Instant;

mod common;
use common::{config, quick};

use arenalloc::{Config, Heap};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
    Throughput,
};

/// Alignment of every `Layout` (what `malloc` guarantees).
const ALIGN: usize = 16;

/// Blocks the producer hands to the consumers per iteration.
const TRANSFER_BLOCKS: usize = 100_000;
/// The same in quick mode.
const TRANSFER_BLOCKS_QUICK: usize = 10_000;
/// Blocks per channel message.
const BATCH: usize = 1024;
/// Messages a consumer's channel holds before the producer waits: bounds
/// the blocks in flight to about `CONSUMER_CHANNEL * BATCH` per consumer.
const CONSUMER_CHANNEL: usize = 4;
/// Consumer thread counts of the `cross_thread_free` group.
const CONSUMER_COUNTS: [usize; 2] = [1, 2];
/// Most consumers of any benchmark.
const MAX_CONSUMERS: usize = 2;
/// Slots of the channel that brings emptied batch vectors back to the
/// producer. More vectors than this never exist at once: the producer makes
/// a new one only when none has come back, so all others are queued towards
/// consumers (`CONSUMER_CHANNEL` each), held by a consumer (one each), or
/// held by the producer while it waits to send (one).
const RECYCLE_CHANNEL: usize = MAX_CONSUMERS * (CONSUMER_CHANNEL + 1) + 1;
/// Smallest and largest block of the `cross_thread_free` group (bytes).
const TRANSFER_SIZES: (usize, usize) = (16, 1024);
/// Length of the producer's repeating sequence of block sizes.
const TRANSFER_SIZE_TABLE: usize = 4096;

/// Threads of the `churn_2threads` group.
const CHURN_THREADS: usize = 2;
/// Live blocks each churning thread keeps (a power of two: indices are
/// masked).
const CHURN_WINDOW: usize = 256;
/// Steps (one free + one allocation) per thread per iteration.
const CHURN_OPS: usize = 50_000;
/// The same in quick mode.
const CHURN_OPS_QUICK: usize = 5_000;
/// Smallest and largest block of the `churn_2threads` group (bytes).
const CHURN_SIZES: (usize, usize) = (16, 4096);

/// Size of the allocation each worker makes when it starts, to bind itself
/// to an arena.
const BIND_SIZE: usize = 64;

const _: () = assert!(CHURN_WINDOW.is_power_of_two());
const _: () = assert!(TRANSFER_SIZES.0 > 0 && CHURN_SIZES.0 > 0);
const _: () = assert!(CONSUMER_COUNTS[0] <= MAX_CONSUMERS && CONSUMER_COUNTS[1] <= MAX_CONSUMERS);

/// The single-global-lock heap of the lock-granularity comparison.
fn one_lock_heap() -> Heap {
    Heap::with_config(Config::new().max_arenas(1))
}

/// A seeded xorshift64 generator: the same sequence on every run.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Maps the high 32 bits of `r` onto `lo..=hi` (multiply-shift, no
/// division).
fn high_bits_in(r: u64, (lo, hi): (usize, usize)) -> usize {
    lo + (((r >> 32) * (hi - lo + 1) as u64) >> 32) as usize
}

/// A live block and the size it was allocated with (`dealloc` needs it).
struct Block {
    ptr: *mut u8,
    size: usize,
}

// SAFETY: a `Block` is the sole handle to an allocation of a `Sync`
// allocator; sending it moves the right (and duty) to free it to the
// receiving thread, and the sender keeps no copy of the pointer.
unsafe impl Send for Block {}

/// Allocates `size` bytes (at least 1) from `alloc`, aligned to `ALIGN`.
#[inline]
fn alloc_block<A: GlobalAlloc>(alloc: &A, size: usize) -> Block {
    assert!(size > 0, "zero-sized allocation");
    let layout = Layout::from_size_align(size, ALIGN).expect("valid layout");
    // SAFETY: `layout` has a non-zero size (asserted above).
    let ptr = unsafe { alloc.alloc(layout) };
    assert!(!ptr.is_null(), "alloc({size}) failed");
    Block { ptr, size }
}

/// Frees `block` back to `alloc`.
///
/// # Safety
///
/// `block` was returned by [`alloc_block`] on this same `alloc`.
#[inline]
unsafe fn free_block<A: GlobalAlloc>(alloc: &A, block: Block) {
    let layout = Layout::from_size_align(block.size, ALIGN).expect("valid layout");
    // SAFETY: by the caller's contract `block.ptr` was allocated by `alloc`
    // with this very layout; `block` is consumed, so it is freed once.
    unsafe { alloc.dealloc(block.ptr, layout) };
}

/// Allocates and frees one small block, binding the calling thread to an
/// arena of `alloc` (a no-op in effect for `System`), then tells the
/// spawning thread on `started`.
fn bind<A: GlobalAlloc>(alloc: &A, started: &Sender<()>) {
    let b = alloc_block(alloc, BIND_SIZE);
    // SAFETY: `b` was just allocated by `alloc`.
    unsafe { free_block(alloc, b) };
    started.send(()).expect("benchmark driver alive");
}

/// Spawns `worker` on `s` and waits until it has bound itself (its first
/// message on `started`), so that workers bind one at a time.
///
/// Why one at a time: binding (creating an arena, or finding the one to
/// share) stays out of the timed loop and happens in the same order on every
/// run (consumers first, then the producer). It also kept this benchmark
/// clear of a first-use race, fixed since in commit `3359d04`: a thread that
/// bound to a `max_arenas(1)` heap while another was still building its
/// only arena got a null pointer (`alloc(64) failed` in `arenalloc_1lock`
/// with three workers starting at once).
fn spawn_bound<'s, F>(s: &'s thread::Scope<'s, '_>, started: &Receiver<()>, worker: F)
where
    F: FnOnce() + Send + 's,
{
    s.spawn(worker);
    started.recv().expect("worker bound");
}

/// The statistics an arenalloc benchmark leaves behind, checked and
/// summarised on stderr once its threads have joined.
///
/// `remote`: how many of its frees must have been remote frees (`Some`), or
/// no check (`None`).
fn assert_balanced(heap: &Heap, what: &str, remote: Option<u64>) {
    heap.check()
        .unwrap_or_else(|e| panic!("{what}: heap invariants: {e}"));
    let stats = heap.stats();
    assert_eq!(stats.live_blocks(), 0, "{what}: blocks still live");
    assert_eq!(
        stats.allocations(),
        stats.frees(),
        "{what}: allocations and frees differ"
    );
    let arenas = stats.arenas();
    let remote_frees: u64 = arenas.iter().map(|a| a.remote_frees).sum();
    let fallbacks: u64 = arenas.iter().map(|a| a.queue_full_fallbacks).sum();
    // Claimed remote frees a thread still holds in an unsent batch (its
    // arena keeps them until an adopter sends them): freed, not yet applied.
    let pending: u64 = arenas.iter().map(|a| a.pending_blocks as u64).sum();
    let locks: u64 = arenas.iter().map(|a| a.lock_acquisitions).sum();
    let contended: u64 = arenas.iter().map(|a| a.lock_contended).sum();
    eprintln!(
        "{what}: {} arena(s), {} allocations, {remote_frees} remote frees via queue, \
         {fallbacks} queue-full fallbacks, {contended} of {locks} lock acquisitions contended; \
         check() ok, 0 live blocks",
        arenas.len(),
        stats.allocations(),
    );
    if let Some(expected) = remote {
        assert_eq!(
            remote_frees + fallbacks + pending,
            expected,
            "{what}: every transferred block must be freed remotely"
        );
    }
}

// ----- cross_thread_free -------------------------------------------------

/// A producer's message to a consumer.
enum ToConsumer {
    /// Blocks to free; the emptied vector goes back to the producer.
    Batch(Vec<Block>),
    /// The run is over: acknowledge once everything before has been freed.
    Flush,
}

/// The producer: per command, allocates that many blocks and deals them out
/// to the consumers in batches of `BATCH`, round robin, then flushes.
fn producer<A: GlobalAlloc>(
    alloc: &A,
    commands: Receiver<usize>,
    consumers: Vec<SyncSender<ToConsumer>>,
    recycled: Receiver<Vec<Block>>,
    started: Sender<()>,
) {
    let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15);
    let sizes: Vec<usize> = (0..TRANSFER_SIZE_TABLE)
        .map(|_| high_bits_in(rng.next_u64(), TRANSFER_SIZES))
        .collect();
    let mut next = 0;
    bind(alloc, &started);
    drop(started);
    while let Ok(total) = commands.recv() {
        let mut left = total;
        let mut to = 0;
        while left > 0 {
            let n = left.min(BATCH);
            let mut batch = recycled
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(BATCH));
            for _ in 0..n {
                batch.push(alloc_block(alloc, sizes[next]));
                next = (next + 1) % TRANSFER_SIZE_TABLE;
            }
            consumers[to]
                .send(ToConsumer::Batch(batch))
                .expect("consumer alive");
            to = (to + 1) % consumers.len();
            left -= n;
        }
        for c in &consumers {
            c.send(ToConsumer::Flush).expect("consumer alive");
        }
    }
}

/// A consumer: frees every block it receives, acknowledges flushes.
fn consumer<A: GlobalAlloc>(
    alloc: &A,
    inbox: Receiver<ToConsumer>,
    recycle: SyncSender<Vec<Block>>,
    done: Sender<()>,
) {
    bind(alloc, &done);
    while let Ok(message) = inbox.recv() {
        match message {
            ToConsumer::Batch(mut batch) => {
                for block in batch.drain(..) {
                    // SAFETY: the producer allocated every block it sends
                    // from this same `alloc`, and sent it to us alone.
                    unsafe { free_block(alloc, block) };
                }
                // Never full (see `RECYCLE_CHANNEL`); were it full, or the
                // producer gone, the vector would simply be dropped.
                let _ = recycle.try_send(batch);
            }
            ToConsumer::Flush => done.send(()).expect("benchmark driver alive"),
        }
    }
}

/// Benchmarks `cross_thread_free/<name>/<consumers>` on `alloc` with
/// long-lived producer and consumer threads. Returns the number of blocks
/// transferred over all iterations (warm-up included).
fn transfer<A: GlobalAlloc + Sync>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    consumers: usize,
    blocks: usize,
    alloc: &A,
) -> u64 {
    let mut transferred = 0u64;
    thread::scope(|s| {
        let (command_tx, command_rx) = mpsc::channel::<usize>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let (recycle_tx, recycle_rx) = mpsc::sync_channel(RECYCLE_CHANNEL);
        let mut inboxes = Vec::with_capacity(consumers);
        for _ in 0..consumers {
            let (tx, rx) = mpsc::sync_channel(CONSUMER_CHANNEL);
            inboxes.push(tx);
            let (recycle, done) = (recycle_tx.clone(), done_tx.clone());
            spawn_bound(s, &done_rx, move || consumer(alloc, rx, recycle, done));
        }
        drop(recycle_tx);
        spawn_bound(s, &done_rx, move || {
            producer(alloc, command_rx, inboxes, recycle_rx, done_tx);
        });

        group.bench_function(BenchmarkId::new(name, consumers), |b| {
            b.iter_custom(|iters| {
                let total = blocks * iters as usize;
                let start = Instant::now();
                command_tx.send(total).expect("producer alive");
                for _ in 0..consumers {
                    done_rx.recv().expect("consumer alive");
                }
                let elapsed = start.elapsed();
                transferred += total as u64;
                elapsed
            });
        });
        // Closing the command channel stops the producer, whose exit closes
        // the consumers' channels; the scope then joins them all.
        drop(command_tx);
    });
    transferred
}

fn bench_cross_thread_free(c: &mut Criterion) {
    let blocks = if quick() {
        TRANSFER_BLOCKS_QUICK
    } else {
        TRANSFER_BLOCKS
    };
    let mut group = c.benchmark_group("cross_thread_free");
    group.throughput(Throughput::Elements(blocks as u64));
    // An iteration takes milliseconds: equal iteration counts per sample.
    group.sampling_mode(SamplingMode::Flat);
    for consumers in CONSUMER_COUNTS {
        let heap = Heap::new();
        let moved = transfer(&mut group, "arenalloc", consumers, blocks, &heap);
        let what = format!("cross_thread_free/arenalloc/{consumers}");
        assert_balanced(&heap, &what, Some(moved));
        drop(heap);

        let heap = one_lock_heap();
        transfer(&mut group, "arenalloc_1lock", consumers, blocks, &heap);
        let what = format!("cross_thread_free/arenalloc_1lock/{consumers}");
        assert_balanced(&heap, &what, None);
        drop(heap);

        transfer(&mut group, "system", consumers, blocks, &System);
    }
    group.finish();
}

// ----- churn_2threads ----------------------------------------------------

/// One churning thread: binds, fills its window, then per command runs
/// that many steps (free a random block, allocate a random size in its
/// place) and acknowledges; frees the window when the command channel
/// closes.
fn churner<A: GlobalAlloc>(alloc: &A, seed: u64, commands: Receiver<usize>, done: Sender<()>) {
    bind(alloc, &done);
    let mut rng = XorShift::new(seed);
    let mut window: Vec<Block> = (0..CHURN_WINDOW)
        .map(|_| alloc_block(alloc, high_bits_in(rng.next_u64(), CHURN_SIZES)))
        .collect();
    while let Ok(steps) = commands.recv() {
        for _ in 0..steps {
            let r = rng.next_u64();
            let old = window.swap_remove(r as usize & (CHURN_WINDOW - 1));
            // SAFETY: every block of the window was allocated from `alloc`
            // by this thread, and leaves the window as it is freed.
            unsafe { free_block(alloc, old) };
            window.push(alloc_block(alloc, high_bits_in(r, CHURN_SIZES)));
        }
        done.send(()).expect("benchmark driver alive");
    }
    for block in window {
        // SAFETY: as above.
        unsafe { free_block(alloc, block) };
    }
}

/// Benchmarks `churn_2threads/<name>` on `alloc` with long-lived threads.
fn churn<A: GlobalAlloc + Sync>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    steps: usize,
    alloc: &A,
) {
    thread::scope(|s| {
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let mut commands = Vec::with_capacity(CHURN_THREADS);
        for t in 0..CHURN_THREADS {
            let (tx, rx) = mpsc::channel::<usize>();
            commands.push(tx);
            let done = done_tx.clone();
            let seed = 0x2545_f491_4f6c_dd1d ^ (t as u64 + 1);
            spawn_bound(s, &done_rx, move || churner(alloc, seed, rx, done));
        }
        drop(done_tx);

        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let per_thread = steps * iters as usize;
                let start = Instant::now();
                for c in &commands {
                    c.send(per_thread).expect("churner alive");
                }
                for _ in 0..CHURN_THREADS {
                    done_rx.recv().expect("churner alive");
                }
                start.elapsed()
            });
        });
        // Closing the command channels makes the churners free their
        // windows and exit; the scope joins them.
        drop(commands);
    });
}

fn bench_churn(c: &mut Criterion) {
    let steps = if quick() { CHURN_OPS_QUICK } else { CHURN_OPS };
    let mut group = c.benchmark_group("churn_2threads");
    group.throughput(Throughput::Elements((steps * CHURN_THREADS) as u64));
    group.sampling_mode(SamplingMode::Flat);

    let heap = Heap::new();
    churn(&mut group, "arenalloc", steps, &heap);
    assert_balanced(&heap, "churn_2threads/arenalloc", None);
    drop(heap);

    let heap = one_lock_heap();
    churn(&mut group, "arenalloc_1lock", steps, &heap);
    assert_balanced(&heap, "churn_2threads/arenalloc_1lock", None);
    drop(heap);

    churn(&mut group, "system", steps, &System);
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_cross_thread_free, bench_churn
}
criterion_main!(benches);
