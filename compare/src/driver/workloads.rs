//! The workloads, modelled on the standard allocator benchmarks (larson,
//! xmalloc, Hoard's cache-scratch and cache-thrash, mstress) plus a loop
//! of 2-8 MiB blocks (`large`) and bursts freed remotely then left idle
//! (`server`, in `server.rs`), written once against any `GlobalAlloc`
//! and monomorphised per allocator; a JSON service on a tokio runtime
//! (`service`, in `service.rs`), the one workload that measures a whole
//! program through the global allocator; and, by name only (`--workload
//! NAME`, not in a default run; [`Workload::BY_NAME_ONLY`]), batches
//! allocated and freed whole in varied orders (`bulk-fifo-lifo`,
//! `bulk-varied`, in `bulk.rs`) and per-call tail latency of malloc and
//! free under server-like bursts (`latency`, in `latency.rs`).
//!
//! Invariants:
//! * Only worker threads call the measured allocator (and, for
//!   cache-scratch, the main thread's initial objects): the harness's own
//!   allocations go to the binary's global allocator, `System`. The
//!   service workload is the exception: its child's global allocator is
//!   the one measured, and everything in it allocates there.
//! * Every block a workload allocates is freed before it returns, through
//!   the allocator that made it, with the `Layout` it was made with. Sizes
//!   travel inside the blocks: the first word of a block is a tag,
//!   `size | TAG_MAGIC`, checked on every free, so an allocator that hands
//!   out overlapping blocks or corrupts one fails the run instead of
//!   producing a number.
//! * An *op* is one allocator call: `alloc`, `dealloc` or `realloc`.
//!   Throughput workloads run for a fixed time and count ops; fragmentation
//!   does fixed work and is timed; server does fixed work on a fixed
//!   schedule and times only its bursts; latency runs bursts for a fixed
//!   time and times every call on its own; service counts requests
//!   answered in a fixed time, not allocator calls.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{mpsc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::bulk;
use super::latency;
use super::server;
use super::service;

/// Size of a run: quick (CI), the default, or full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scale {
    /// For CI: short measurements, a small fragmentation live set.
    Quick,
    /// `cargo run --release`.
    Default,
    /// `--full`: longer measurements, a larger live set.
    Full,
}

impl Scale {
    /// Bytes of the fragmentation workload's live set (all threads).
    fn fragmentation_live(self) -> usize {
        match self {
            Scale::Quick => 16 << 20,
            Scale::Default => 64 << 20,
            Scale::Full => 128 << 20,
        }
    }
}

/// What one run is asked to do.
pub(crate) struct Params {
    /// Worker threads.
    pub(crate) threads: usize,
    /// Measurement time of the throughput workloads.
    pub(crate) seconds: f64,
    /// Size of fixed-work workloads.
    pub(crate) scale: Scale,
}

/// What one run measured.
pub(crate) struct Outcome {
    /// Allocator calls made while timed.
    pub(crate) ops: u64,
    /// Seconds timed.
    pub(crate) seconds: f64,
    /// Workload-specific numbers (fragmentation: live bytes, RSS).
    pub(crate) extra: Vec<(&'static str, u64)>,
    /// Workload-specific structured results (server: the RSS samples and
    /// each burst's figures), added to the row as they are.
    pub(crate) json: Vec<(&'static str, Value)>,
}

/// Called by the fragmentation workload after its free phase, with every
/// worker paused (the driver renders arenalloc's heap map there).
pub(crate) type Hook<'a> = &'a (dyn Fn() + Sync);

/// The workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Workload {
    Larson,
    ProdCons,
    CacheScratch,
    CacheThrash,
    Random,
    Realloc,
    Fragmentation,
    ThreadChurn,
    Large,
    BulkFifoLifo,
    BulkVaried,
    Server,
    Service,
    Latency,
}

impl Workload {
    /// Every workload, in report order.
    pub(crate) const ALL: [Workload; 11] = [
        Workload::Larson,
        Workload::ProdCons,
        Workload::CacheScratch,
        Workload::CacheThrash,
        Workload::Random,
        Workload::Realloc,
        Workload::Fragmentation,
        Workload::ThreadChurn,
        Workload::Large,
        Workload::Server,
        Workload::Service,
    ];

    /// Workloads run by name only (`--workload NAME`), not in a default,
    /// `--quick` or `--full` run. The bulk workloads, because 42 more
    /// children of at least 0.5 s each would take a default run (~145 s)
    /// past its budget of about 2.5 minutes. Latency, because its figures
    /// are per-call latency percentiles, not throughput (its ops/s is
    /// mostly its idle pauses), and its p99.9 wants seconds of bursts per
    /// measurement, not a default run's 0.5 s.
    pub(crate) const BY_NAME_ONLY: [Workload; 3] = [
        Workload::BulkFifoLifo,
        Workload::BulkVaried,
        Workload::Latency,
    ];

    /// Every workload `--workload` accepts: [`Workload::ALL`], then
    /// [`Workload::BY_NAME_ONLY`].
    pub(crate) const NAMED: [Workload; Workload::ALL.len() + Workload::BY_NAME_ONLY.len()] = {
        let mut named = [Workload::Latency; Workload::ALL.len() + Workload::BY_NAME_ONLY.len()];
        let mut i = 0;
        while i < Workload::ALL.len() {
            named[i] = Workload::ALL[i];
            i += 1;
        }
        while i < named.len() {
            named[i] = Workload::BY_NAME_ONLY[i - Workload::ALL.len()];
            i += 1;
        }
        named
    };

    /// The name used on the command line and in the JSON.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Larson => "larson",
            Workload::ProdCons => "prodcons",
            Workload::CacheScratch => "cache-scratch",
            Workload::CacheThrash => "cache-thrash",
            Workload::Random => "random",
            Workload::Realloc => "realloc",
            Workload::Fragmentation => "fragmentation",
            Workload::ThreadChurn => "thread-churn",
            Workload::Large => "large",
            Workload::BulkFifoLifo => "bulk-fifo-lifo",
            Workload::BulkVaried => "bulk-varied",
            Workload::Server => "server",
            Workload::Service => "service",
            Workload::Latency => "latency",
        }
    }

    /// One line for the README and the report.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Workload::Larson => "larson-style server churn: each thread replaces random 16-1024 B blocks in its part of a shared array (1,000 slots per thread); every 4,000 replacements the threads move on to the next part, so about a quarter of the frees hit blocks another thread allocated",
            Workload::ProdCons => "xmalloc-style producer/consumer: threads in a ring each allocate batches of 256 blocks of 16-1024 B and pass them to the next thread, which frees them: every free is remote (at 1 thread the ring closes on itself)",
            Workload::CacheScratch => "Hoard cache-scratch (passive false sharing): the main thread allocates one 8 B object per thread and hands them out; each thread frees its object, then repeatedly allocates 8 B, writes it 100 times and frees it",
            Workload::CacheThrash => "Hoard cache-thrash (active false sharing): each thread repeatedly allocates 8 B, writes it 100 times and frees it; slower when threads get neighbouring objects on one cache line",
            Workload::Random => "mstress-like random sizes and lifetimes: each thread replaces random slots of 1,000 with blocks of log-uniform size 16 B-64 KiB; one free in 8 goes through a shared transfer array and is made by another thread",
            Workload::Realloc => "realloc growth: each thread grows 8 buffers by 1.5-2x with realloc up to a random limit of 256 B-256 KiB, writes the new tail's pages, then frees and restarts them",
            Workload::Fragmentation => "fragmentation: the threads allocate a mixed live set (60% 16-256 B, 30% 256 B-4 KiB, 10% 4-32 KiB, every byte written), free all of the newer half and 7 blocks of every 8 of the older half, then allocate as many bytes again in 256 B-8 KiB blocks; reports peak live bytes, peak RSS, RSS after the free phase, and RSS 1 s after freeing everything",
            Workload::ThreadChurn => "thread churn: generations of short-lived threads, each making 2,000 random 16-2048 B replacements, freeing 64 blocks left by its predecessor (a thread that has exited) and leaving 64 for its successor",
            Workload::Large => "large blocks: each thread allocates and frees blocks of 2-8 MiB (uniform sizes), touching the first and last page of each, keeping up to 4 alive and freeing them in random order",
            Workload::BulkFifoLifo => "bulk, one size: each thread allocates rounds of 100-1,600 blocks of one size (16 B-4 KiB log-uniform, drawn per round), writes every byte, frees the first half oldest first and the second half newest first",
            Workload::BulkVaried => "bulk, varied sizes: each thread allocates rounds of 2,000-8,000 blocks of 16 B-16 KiB (log-uniform), touches every page of each, and frees them in an order drawn per round (random, FIFO, LIFO or interleaved halves); one block in 16 instead replaces a random one of 1,024 kept across rounds, which is freed then",
            Workload::Server => "server bursts: each thread allocates its share of a live set (16-512 B blocks and, one in 128, 4-64 KiB; every byte written) and hands it to a thread of its own that frees it (every free is remote); then nothing allocates for over a second. RSS is sampled every 5 ms throughout and read 100 ms and 1 s after each burst's frees",
            Workload::Service => "a JSON service on a tokio multi-thread runtime (as many workers as threads): 4 client tasks per worker build documents of 8-64 items (numbers, names, tags, a note of 16 B-4 KiB) with serde_json, serialise them and send them through mpsc channels to a handler task per worker, which parses each, keeps the items whose qty reaches a threshold, re-serialises them and answers through a oneshot channel; the client parses and checks the answer. Everything in the child allocates through the allocator under test, installed as its global allocator; an op is one request",
            Workload::Latency => "per-call latency: each thread repeats bursts of 2,048 blocks (16 B-4 KiB log-uniform, one in 64 of 16-256 KiB; every byte written), hands a quarter of them to the next thread, which frees them (remote frees), frees the rest in random order, then sleeps 20-50 ms while the allocator's decay returns memory to the OS; every malloc and every free is timed on its own (rdtsc) into per-thread histograms: p50, p99, p99.9 and max in ns, the worst thread's",
        }
    }

    /// The workload called `name`.
    pub(crate) fn from_name(name: &str) -> Option<Workload> {
        Workload::NAMED.into_iter().find(|w| w.name() == name)
    }

    /// Whether the workload runs at one thread count only, the plan's
    /// largest (its result is a timeline, one per allocator).
    pub(crate) fn one_thread_count(self) -> bool {
        self == Workload::Server
    }

    /// Whether the workload's table is followed by arenalloc's lock
    /// acquisitions per 1,000 allocations (the service workload prints
    /// its own, under its own table).
    pub(crate) fn prints_locks(self) -> bool {
        matches!(self, Workload::BulkFifoLifo | Workload::BulkVaried)
    }

    /// Whether the workload's child measures the allocator installed as
    /// its global allocator (`global.rs`) rather than through its value.
    pub(crate) fn installs_global(self) -> bool {
        self == Workload::Service
    }

    /// Allocators the workload leaves out unless `--alloc` names them, and
    /// why.
    pub(crate) fn left_out(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Workload::Server => &[(
                "linked_list",
                "its free walks an address-ordered list of holes: one 256 MiB burst freed by 8 threads takes it about 30 s",
            )],
            Workload::Service => &super::global::UNSUPPORTED,
            _ => &[],
        }
    }

    /// Runs the workload with allocator `a`; `after_free` is called by
    /// the fragmentation workload after its free phase.
    pub(crate) fn run<A: GlobalAlloc + Sync>(
        self,
        a: &A,
        p: &Params,
        after_free: Option<Hook<'_>>,
    ) -> Outcome {
        let (ops, seconds) = match self {
            Workload::Larson => larson(a, p),
            Workload::ProdCons => prodcons(a, p),
            Workload::CacheScratch => cache(a, p, true),
            Workload::CacheThrash => cache(a, p, false),
            Workload::Random => random(a, p),
            Workload::Realloc => realloc_growth(a, p),
            Workload::Fragmentation => return fragmentation(a, p, after_free),
            Workload::ThreadChurn => thread_churn(a, p),
            Workload::Large => large(a, p),
            Workload::BulkFifoLifo => bulk::fifo_lifo(a, p),
            Workload::BulkVaried => bulk::varied(a, p),
            Workload::Server => return server::server(a, p),
            Workload::Service => return service::service(p),
            Workload::Latency => return latency::latency(a, p),
        };
        Outcome {
            ops,
            seconds,
            extra: Vec::new(),
            json: Vec::new(),
        }
    }
}

// ----- blocks ------------------------------------------------------------

/// The high bits of every block's tag word (module doc).
const TAG_MAGIC: usize = 0xa11c_0000_0000_0000;
const TAG_SIZE: usize = (1 << 48) - 1;
/// Alignment of every tagged block (what `Box<[u64]>` asks for).
const ALIGN: usize = 8;

/// Allocates a tagged block of `size >= 8` bytes and touches its last byte.
/// Panics (failing the run) when the allocator returns null. Never inlined,
/// like `free_tagged`: every allocator pays the same call, and callgrind
/// counts instructions per `malloc` and per `free` as this function's and
/// `free_tagged`'s inclusive cost over their calls.
#[inline(never)]
pub(super) fn alloc_tagged<A: GlobalAlloc>(a: &A, size: usize) -> *mut u8 {
    debug_assert!((8..=TAG_SIZE).contains(&size));
    let layout = tagged_layout(size);
    // SAFETY: `layout` has a non-zero size.
    let p = unsafe { a.alloc(layout) };
    // SAFETY: `p` is what `a` returned for `layout`.
    unsafe { tag_block(p, size) };
    p
}

/// The layout of every tagged block of `size` bytes.
pub(super) fn tagged_layout(size: usize) -> Layout {
    Layout::from_size_align(size, ALIGN).expect("layout")
}

/// Makes the fresh block `p` of `size >= 8` bytes a tagged block, as
/// `alloc_tagged` does after its call (for callers that time the call
/// alone); panics, failing the run, when `p` is null.
///
/// # Safety
///
/// `p` is null or a fresh allocation of `tagged_layout(size)`.
#[inline]
pub(super) unsafe fn tag_block(p: *mut u8, size: usize) {
    if p.is_null() {
        null_allocation(size);
    }
    // SAFETY: `p` is a fresh allocation of `size >= 8` bytes aligned to 8.
    unsafe {
        p.cast::<usize>().write(size | TAG_MAGIC);
        p.add(size - 1).write(0xa5);
    }
}

/// The size a tagged block carries; panics on a corrupt tag.
///
/// # Safety
///
/// `p` is a live block made by `alloc_tagged` (or re-tagged after realloc).
pub(super) unsafe fn tagged_size(p: *mut u8) -> usize {
    // SAFETY: the caller's contract: the first word is the tag.
    let tag = unsafe { p.cast::<usize>().read() };
    if tag & !TAG_SIZE != TAG_MAGIC || tag & TAG_SIZE < 8 {
        corrupt_tag(p, tag);
    }
    tag & TAG_SIZE
}

/// Fails the run on a null allocation. Out of line, so that the tagged
/// wrappers' common path has no stack frame for the message's arguments.
#[cold]
#[inline(never)]
fn null_allocation(size: usize) -> ! {
    panic!("allocation of {size} bytes failed (null)");
}

/// Fails the run on a corrupt tag (out of line, as `null_allocation`).
#[cold]
#[inline(never)]
fn corrupt_tag(p: *mut u8, tag: usize) -> ! {
    panic!("heap corruption: block {p:p} has tag {tag:#x}");
}

/// Frees a tagged block, checking its tag.
///
/// # Safety
///
/// `p` is a live block made by `alloc_tagged` with this `a`, not used after.
#[inline(never)]
pub(super) unsafe fn free_tagged<A: GlobalAlloc>(a: &A, p: *mut u8) {
    // SAFETY: forwarded contract.
    let size = unsafe { tagged_size(p) };
    // SAFETY: `p` was allocated by `a` with exactly this layout.
    unsafe { a.dealloc(p, Layout::from_size_align_unchecked(size, ALIGN)) };
}

/// `n` block slots shared between threads, all empty.
fn empty_slots(n: usize) -> Vec<AtomicPtr<u8>> {
    (0..n).map(|_| AtomicPtr::new(ptr::null_mut())).collect()
}

/// Empties `slots`, freeing every block found; returns how many.
///
/// # Safety
///
/// Every non-null slot holds a live block made by `alloc_tagged` with this
/// `a`, and no other thread uses `slots` meanwhile (the slot holds the
/// block's only copy).
unsafe fn free_slots<A: GlobalAlloc>(a: &A, slots: &[AtomicPtr<u8>]) -> u64 {
    let mut freed = 0;
    for s in slots {
        let b = s.swap(ptr::null_mut(), Ordering::AcqRel);
        if !b.is_null() {
            // SAFETY: the caller's contract; the swap made us its only holder.
            unsafe { free_tagged(a, b) };
            freed += 1;
        }
    }
    freed
}

/// A block pointer handed to another thread.
pub(super) struct Block(pub(super) *mut u8);
// SAFETY: a block is plain memory owned by whoever holds the `Block`.
unsafe impl Send for Block {}

/// xorshift64*: cheap, seeded, per thread.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng((seed + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    pub(super) fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    /// Log-uniform in `lo..hi` (powers of two `lo` and `hi`).
    pub(super) fn log_range(&mut self, lo: usize, hi: usize) -> usize {
        let octaves = (hi / lo).trailing_zeros() as u64;
        let base = lo << (self.next() % octaves);
        base + (self.next() as usize % base)
    }
}

// ----- timing --------------------------------------------------------------

/// Start and stop of a timed run shared by its threads.
pub(super) struct Clock {
    start: Barrier,
    /// When the barrier opened: set by the last thread to reach it (the
    /// one that opens it, and so the one that returns from it without
    /// sleeping).
    began: OnceLock<Instant>,
    stop: AtomicBool,
}

impl Clock {
    fn new(threads: usize) -> Clock {
        Clock {
            start: Barrier::new(threads + 1),
            began: OnceLock::new(),
            stop: AtomicBool::new(false),
        }
    }

    /// Waits until every thread (and the timer) is ready.
    pub(super) fn go(&self) {
        if self.start.wait().is_leader() {
            let _ = self.began.set(Instant::now());
        }
    }

    /// When the measurement began (after `go`): the barrier's opening, not
    /// when the timer thread woke from it, which with hundreds of threads
    /// on two cores can be long after the workers started (the timed span
    /// then missed their first work and the rate came out several times
    /// too high).
    fn began(&self) -> Instant {
        loop {
            if let Some(t) = self.began.get() {
                return *t;
            }
            std::thread::yield_now();
        }
    }

    /// Whether the measurement still runs.
    #[inline]
    pub(super) fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }
}

/// Runs `body(thread index, clock)` on `threads` threads. Each body sets
/// itself up, calls `clock.go()`, works while `clock.running()`, and
/// returns its op count and the instant it stopped, then cleans up. The
/// time is from the common start to the last thread's stop.
pub(super) fn timed<F>(threads: usize, seconds: f64, body: F) -> (u64, f64)
where
    F: Fn(usize, &Clock) -> (u64, Instant) + Sync,
{
    let clock = Clock::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (clock, body) = (&clock, &body);
                s.spawn(move || body(t, clock))
            })
            .collect();
        clock.go();
        let start = clock.began();
        let deadline = start + Duration::from_secs_f64(seconds);
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        clock.stop.store(true, Ordering::Relaxed);
        let mut ops = 0;
        let mut end = start;
        for h in handles {
            let (n, stopped) = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            ops += n;
            end = end.max(stopped);
        }
        (ops, (end - start).as_secs_f64())
    })
}

// ----- throughput workloads ------------------------------------------------

/// Slots per thread in larson's shared array.
const LARSON_SLOTS: usize = 1000;
/// Replacements before a larson thread moves to the next part.
const LARSON_EPOCH: u64 = 4000;

fn larson<A: GlobalAlloc + Sync>(a: &A, p: &Params) -> (u64, f64) {
    let t = p.threads;
    let slots = empty_slots(t * LARSON_SLOTS);
    let result = timed(t, p.seconds, |id, clock| {
        let mut rng = Rng::new(id as u64);
        for s in &slots[id * LARSON_SLOTS..(id + 1) * LARSON_SLOTS] {
            s.store(alloc_tagged(a, rng.range(16, 1024)), Ordering::Relaxed);
        }
        clock.go();
        let mut ops = 0;
        let mut replaced = 0u64;
        while clock.running() {
            let part = (id + (replaced / LARSON_EPOCH) as usize) % t;
            let slot = &slots[part * LARSON_SLOTS + rng.range(0, LARSON_SLOTS - 1)];
            let new = alloc_tagged(a, rng.range(16, 1024));
            let old = slot.swap(new, Ordering::AcqRel);
            if !old.is_null() {
                // SAFETY: the swap made this thread the block's only holder.
                unsafe { free_tagged(a, old) };
                ops += 1;
            }
            ops += 1;
            replaced += 1;
        }
        (ops, Instant::now())
    });
    // SAFETY: every thread has joined; the array holds the only copies.
    unsafe { free_slots(a, &slots) };
    result
}

/// Blocks per producer/consumer batch.
const BATCH: usize = 256;

fn prodcons<A: GlobalAlloc + Sync>(a: &A, p: &Params) -> (u64, f64) {
    let t = p.threads;
    let (mut senders, receivers): (Vec<_>, Vec<_>) =
        (0..t).map(|_| mpsc::sync_channel::<Vec<Block>>(4)).unzip();
    // Thread i sends to thread i + 1. Each channel must end up with exactly
    // one sender (the predecessor's) so that draining stops when it leaves.
    senders.rotate_left(1);
    let inboxes = std::sync::Mutex::new(receivers.into_iter().map(Some).collect::<Vec<_>>());
    let outboxes = std::sync::Mutex::new(senders.into_iter().map(Some).collect::<Vec<_>>());
    timed(t, p.seconds, |id, clock| {
        let inbox = inboxes.lock().unwrap()[id].take().expect("inbox");
        let next = outboxes.lock().unwrap()[id].take().expect("outbox");
        let mut rng = Rng::new(id as u64 + 100);
        let mut ops = 0;
        let consume = |batch: Vec<Block>, ops: &mut u64| {
            for Block(b) in batch {
                // SAFETY: blocks arrive live and are freed once, here.
                unsafe { free_tagged(a, b) };
                *ops += 1;
            }
        };
        clock.go();
        while clock.running() {
            let batch: Vec<Block> = (0..BATCH)
                .map(|_| Block(alloc_tagged(a, rng.range(16, 1024))))
                .collect();
            ops += BATCH as u64;
            let mut batch = Some(batch);
            while let Some(b) = batch.take() {
                match next.try_send(b) {
                    Ok(()) => {}
                    Err(mpsc::TrySendError::Full(b)) => {
                        batch = Some(b);
                        match inbox.try_recv() {
                            Ok(got) => consume(got, &mut ops),
                            Err(_) => std::thread::yield_now(),
                        }
                    }
                    Err(mpsc::TrySendError::Disconnected(b)) => {
                        // Only at 1 thread after our own inbox closed.
                        consume(b, &mut ops);
                    }
                }
            }
            while let Ok(got) = inbox.try_recv() {
                consume(got, &mut ops);
            }
        }
        let stopped = Instant::now();
        drop(next);
        // Untimed: free what is still in flight to us until every sender
        // (our predecessor) is gone.
        let mut drained = 0;
        while let Ok(got) = inbox.recv() {
            consume(got, &mut drained);
        }
        (ops, stopped)
    })
}

/// Passes over an 8-byte object per allocation in the cache workloads.
const CACHE_WRITES: usize = 100;

fn cache<A: GlobalAlloc + Sync>(a: &A, p: &Params, scratch: bool) -> (u64, f64) {
    let t = p.threads;
    let layout = Layout::from_size_align(8, 8).expect("layout");
    let alloc8 = || {
        // SAFETY: non-zero size.
        let q = unsafe { a.alloc(layout) };
        assert!(!q.is_null(), "allocation of 8 bytes failed (null)");
        q
    };
    // Scratch: the main thread allocates the objects side by side.
    let handed: Vec<std::sync::Mutex<Option<Block>>> = (0..t)
        .map(|_| std::sync::Mutex::new(scratch.then(|| Block(alloc8()))))
        .collect();
    timed(t, p.seconds, |id, clock| {
        let mut ops = 0;
        clock.go();
        if let Some(Block(q)) = handed[id].lock().unwrap().take() {
            // SAFETY: allocated above with `layout`, handed to us alone.
            unsafe { a.dealloc(q, layout) };
            ops += 1;
        }
        while clock.running() {
            let q = alloc8();
            for _ in 0..CACHE_WRITES {
                for k in 0..8 {
                    // SAFETY: `q` holds 8 bytes.
                    unsafe {
                        let b = q.add(k);
                        b.write_volatile(b.read_volatile().wrapping_add(1));
                    }
                }
            }
            // SAFETY: allocated above with `layout`.
            unsafe { a.dealloc(q, layout) };
            ops += 2;
        }
        (ops, Instant::now())
    })
}

/// Slots per thread in the random workload.
const RANDOM_SLOTS: usize = 1000;
/// Shared transfer slots per thread.
const TRANSFER_SLOTS: usize = 64;

fn random<A: GlobalAlloc + Sync>(a: &A, p: &Params) -> (u64, f64) {
    let t = p.threads;
    let transfer = empty_slots(t * TRANSFER_SLOTS);
    let result = timed(t, p.seconds, |id, clock| {
        let mut rng = Rng::new(id as u64 + 200);
        let mut slots = vec![ptr::null_mut::<u8>(); RANDOM_SLOTS];
        clock.go();
        let mut ops = 0;
        while clock.running() {
            let i = rng.range(0, RANDOM_SLOTS - 1);
            let old = slots[i];
            if !old.is_null() {
                let r = rng.next();
                let to_free = if r % 8 == 0 {
                    let k = (r >> 8) as usize % transfer.len();
                    transfer[k].swap(old, Ordering::AcqRel)
                } else {
                    old
                };
                if !to_free.is_null() {
                    // SAFETY: our slot or the swap made us the only holder.
                    unsafe { free_tagged(a, to_free) };
                    ops += 1;
                }
            }
            slots[i] = alloc_tagged(a, rng.log_range(16, 64 << 10));
            ops += 1;
        }
        let stopped = Instant::now();
        for b in slots.into_iter().filter(|b| !b.is_null()) {
            // SAFETY: our own live blocks.
            unsafe { free_tagged(a, b) };
        }
        (ops, stopped)
    });
    // SAFETY: every thread has joined; the array holds the only copies.
    unsafe { free_slots(a, &transfer) };
    result
}

/// Buffers each realloc thread grows.
const REALLOC_BUFFERS: usize = 8;

fn realloc_growth<A: GlobalAlloc + Sync>(a: &A, p: &Params) -> (u64, f64) {
    timed(p.threads, p.seconds, |id, clock| {
        let mut rng = Rng::new(id as u64 + 300);
        // (pointer, size, limit)
        let mut bufs = [(ptr::null_mut::<u8>(), 0usize, 0usize); REALLOC_BUFFERS];
        clock.go();
        let mut ops = 0;
        while clock.running() {
            let buf = &mut bufs[rng.range(0, REALLOC_BUFFERS - 1)];
            let (q, size, limit) = *buf;
            if q.is_null() {
                let size = rng.range(16, 64);
                *buf = (alloc_tagged(a, size), size, rng.log_range(256, 256 << 10));
                ops += 1;
                continue;
            }
            let grown = size + size / 2 + rng.range(0, size / 2);
            if grown > limit {
                // SAFETY: our live block.
                unsafe { free_tagged(a, q) };
                *buf = (ptr::null_mut(), 0, 0);
                ops += 1;
                continue;
            }
            // SAFETY: `q` is our live block; its tag names its layout.
            let r = unsafe {
                let old = Layout::from_size_align_unchecked(tagged_size(q), ALIGN);
                a.realloc(q, old, grown)
            };
            assert!(!r.is_null(), "realloc to {grown} bytes failed (null)");
            // SAFETY: `r` holds `grown` bytes; the tag moved with the data.
            unsafe {
                assert_eq!(tagged_size(r), size, "realloc lost the block's contents");
                r.cast::<usize>().write(grown | TAG_MAGIC);
                let mut off = size.next_multiple_of(4096);
                while off < grown {
                    r.add(off).write(1);
                    off += 4096;
                }
                r.add(grown - 1).write(0xa5);
            }
            *buf = (r, grown, limit);
            ops += 1;
        }
        let stopped = Instant::now();
        for (q, _, _) in bufs {
            if !q.is_null() {
                // SAFETY: our live block.
                unsafe { free_tagged(a, q) };
            }
        }
        (ops, stopped)
    })
}

/// Replacements per thread-churn thread; blocks each leaves behind.
const CHURN_OPS: usize = 2000;
const CHURN_HANDOFF: usize = 64;

fn thread_churn<A: GlobalAlloc + Sync>(a: &A, p: &Params) -> (u64, f64) {
    let t = p.threads;
    let handoff = empty_slots(t * CHURN_HANDOFF);
    let ops = AtomicU64::new(0);
    let start = Instant::now();
    let mut generation = 0u64;
    while start.elapsed().as_secs_f64() < p.seconds {
        std::thread::scope(|s| {
            for id in 0..t {
                let (handoff, ops) = (&handoff, &ops);
                s.spawn(move || {
                    let mut rng = Rng::new(generation * 1000 + id as u64);
                    let mine = &handoff[id * CHURN_HANDOFF..(id + 1) * CHURN_HANDOFF];
                    // SAFETY: left by our predecessor, which has exited;
                    // this part of the array is ours alone.
                    let mut n = unsafe { free_slots(a, mine) };
                    let mut slots = [ptr::null_mut::<u8>(); CHURN_HANDOFF];
                    for _ in 0..CHURN_OPS {
                        let i = rng.range(0, CHURN_HANDOFF - 1);
                        if !slots[i].is_null() {
                            // SAFETY: our live block.
                            unsafe { free_tagged(a, slots[i]) };
                            n += 1;
                        }
                        slots[i] = alloc_tagged(a, rng.range(16, 2048));
                        n += 1;
                    }
                    for (s, b) in mine.iter().zip(slots) {
                        if b.is_null() {
                            continue;
                        }
                        s.store(b, Ordering::Release);
                    }
                    ops.fetch_add(n, Ordering::Relaxed);
                });
            }
        });
        generation += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    // SAFETY: every thread has joined; the array holds the only copies.
    unsafe { free_slots(a, &handoff) };
    (ops.into_inner(), seconds)
}

/// Sizes of the large workload's blocks: above every allocator's
/// small-block limit (arenalloc's `LARGE_THRESHOLD` is 1 MiB, glibc's
/// default mmap threshold 128 KiB to 32 MiB), around arenalloc's 4 MiB
/// chunk.
const LARGE_MIN: usize = 2 << 20;
const LARGE_MAX: usize = 8 << 20;
/// Most blocks a large-workload thread keeps alive.
const LARGE_LIVE: usize = 4;

/// Large blocks: alloc/free loops of 2-8 MiB blocks, up to
/// [`LARGE_LIVE`] alive per thread, freed in random order. What it
/// measures is each allocator's large path (arenalloc's chunk runs,
/// glibc's and the others' `mmap`/`munmap` or cached spans) and, in peak
/// RSS, how many touched pages of freed blocks each one keeps.
fn large<A: GlobalAlloc + Sync>(a: &A, p: &Params) -> (u64, f64) {
    timed(p.threads, p.seconds, |id, clock| {
        let mut rng = Rng::new(id as u64 + 500);
        // Live blocks in `live[..n]`, in no particular order.
        let mut live = [ptr::null_mut::<u8>(); LARGE_LIVE];
        let mut n = 0;
        // Between iterations: `live[i]` for `i < n` is a distinct live
        // block of this thread's, its only copy; the rest are stale.
        clock.go();
        let mut ops = 0;
        while clock.running() {
            // Allocate when nothing is alive, free when all 4 are, else
            // toss a coin; the victim is a random live block.
            if n == 0 || (n < LARGE_LIVE && rng.next() & 1 == 0) {
                // The tag and the last byte, which `alloc_tagged` writes,
                // touch the block's first and last page.
                live[n] = alloc_tagged(a, rng.range(LARGE_MIN, LARGE_MAX));
                n += 1;
            } else {
                let i = rng.range(0, n - 1);
                n -= 1;
                live.swap(i, n);
                // SAFETY: our live block, removed from `live` before the free.
                unsafe { free_tagged(a, live[n]) };
            }
            ops += 1;
        }
        let stopped = Instant::now();
        for &b in &live[..n] {
            // SAFETY: our remaining live blocks, freed once.
            unsafe { free_tagged(a, b) };
        }
        (ops, stopped)
    })
}

// ----- fragmentation -------------------------------------------------------
//
// Phases, with the workers and the main thread meeting at a barrier at
// each `|`; the main thread's clock runs only during 1, 2 and 3:
//
//   start | 1 allocate | RSS | 2 free 15 of 16 | RSS, heap map | 3 allocate again | RSS, peak | 4 free all | 1 s | RSS
//
// The second after phase 4 is a measurement point, not a wait for
// anything: it is how much of the freed memory each allocator has given
// back to the kernel a second after the last free (`rss_1s_after_free`).

/// Reads a field given in kB from a `/proc/self` file, in bytes (0 if
/// absent).
fn proc_kb(file: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The process's resident set size now, exactly: `Rss` of
/// `/proc/self/smaps_rollup`, which walks the page tables. (`VmRSS` in
/// `/proc/self/status` comes from per-CPU counters that can lag by
/// megabytes right after other threads ran; `VmRSS` is the fallback.)
pub(crate) fn rss_now() -> u64 {
    match proc_kb("/proc/self/smaps_rollup", "Rss") {
        0 => proc_kb("/proc/self/status", "VmRSS"),
        n => n,
    }
}

/// The process's peak resident set size (`VmHWM`), at least `seen`.
pub(crate) fn rss_peak(seen: u64) -> u64 {
    proc_kb("/proc/self/status", "VmHWM").max(seen)
}

/// Size of a fragmentation phase-1 block: 60 % 16-256 B, 30 % 256 B-4 KiB,
/// 10 % 4-32 KiB.
fn mixed_size(rng: &mut Rng) -> usize {
    match rng.next() % 10 {
        0..=5 => rng.range(16, 256),
        6..=8 => rng.range(256, 4096),
        _ => rng.range(4096, 32 << 10),
    }
}

/// How long after freeing everything the fragmentation workload (and the
/// server workload, after each burst) reads RSS again: a measurement
/// point, what an allocator keeps once idle.
pub(super) const RSS_LATER: Duration = Duration::from_secs(1);

/// Sleeps until `deadline` (at once if it has passed).
pub(super) fn sleep_until(deadline: Instant) {
    if let Some(d) = deadline.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

/// Allocates tagged blocks of `size()` until `bytes` are requested, writing
/// every byte; returns the blocks and the bytes requested.
fn fill<A: GlobalAlloc>(
    a: &A,
    bytes: usize,
    mut size: impl FnMut() -> usize,
    blocks: &mut Vec<Block>,
) -> usize {
    let mut got = 0;
    while got < bytes {
        let n = size();
        let b = alloc_tagged(a, n);
        // SAFETY: `b` holds `n >= 16` bytes; the tag word stays intact.
        unsafe { ptr::write_bytes(b.add(8), 0x5c, n - 9) };
        blocks.push(Block(b));
        got += n;
    }
    got
}

fn fragmentation<A: GlobalAlloc + Sync>(
    a: &A,
    p: &Params,
    after_free: Option<Hook<'_>>,
) -> Outcome {
    let t = p.threads;
    let share = p.scale.fragmentation_live() / t;
    // Workers and the main thread meet at each phase boundary.
    let phase = Barrier::new(t + 1);
    let live = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
    let ops = AtomicU64::new(0);
    std::thread::scope(|s| {
        for id in 0..t {
            let (phase, live, ops) = (&phase, &live, &ops);
            s.spawn(move || {
                let mut rng = Rng::new(id as u64 + 400);
                let mut blocks = Vec::with_capacity(share / 1024);
                phase.wait();
                // Phase 1: the mixed live set.
                let bytes = fill(a, share, || mixed_size(&mut rng), &mut blocks);
                let allocated = blocks.len();
                live[0].fetch_add(bytes as u64, Ordering::Relaxed);
                phase.wait();
                phase.wait();
                // Phase 2: of the older half keep every 8th block (pinning
                // its pages), free the newer half entirely.
                let mut kept = Vec::with_capacity(blocks.len() / 16 + 1);
                let mut freed = 0;
                let half = blocks.len() / 2;
                for (i, Block(b)) in blocks.drain(..).enumerate() {
                    if i < half && i % 8 == 0 {
                        kept.push(Block(b));
                    } else {
                        // SAFETY: our live block, freed once.
                        unsafe {
                            freed += tagged_size(b);
                            free_tagged(a, b);
                        }
                    }
                }
                live[1].fetch_add((bytes - freed) as u64, Ordering::Relaxed);
                phase.wait();
                phase.wait();
                // Phase 3: as many bytes again, in other sizes.
                let again = fill(a, freed, || rng.range(256, 8192), &mut blocks);
                live[2].fetch_add((bytes - freed + again) as u64, Ordering::Relaxed);
                ops.fetch_add(
                    (allocated + (allocated - kept.len()) + blocks.len()) as u64,
                    Ordering::Relaxed,
                );
                phase.wait();
                phase.wait();
                // Phase 4, untimed: free everything.
                for Block(b) in blocks.into_iter().chain(kept) {
                    // SAFETY: our live blocks, freed once.
                    unsafe { free_tagged(a, b) };
                }
                phase.wait();
            });
        }
        phase.wait();
        let start = Instant::now();
        phase.wait();
        let allocating = start.elapsed();
        let rss_after_alloc = rss_now();
        phase.wait();
        let resumed = Instant::now();
        phase.wait();
        let freeing = resumed.elapsed();
        let rss_after_free = rss_now();
        if let Some(hook) = after_free {
            hook();
        }
        phase.wait();
        let resumed = Instant::now();
        phase.wait();
        let seconds = (allocating + freeing + resumed.elapsed()).as_secs_f64();
        let final_rss = rss_now();
        let peak_rss = rss_peak(rss_after_alloc.max(final_rss));
        phase.wait();
        phase.wait();
        std::thread::sleep(RSS_LATER);
        let rss_1s_after_free = rss_now();
        let live: Vec<u64> = live.iter().map(|l| l.load(Ordering::Relaxed)).collect();
        Outcome {
            ops: ops.load(Ordering::Relaxed),
            seconds,
            extra: vec![
                ("peak_live_bytes", live[0].max(live[2])),
                ("live_after_free_bytes", live[1]),
                ("rss_after_alloc_bytes", rss_after_alloc),
                ("rss_after_free_bytes", rss_after_free),
                ("final_rss_bytes", final_rss),
                ("peak_rss_bytes", peak_rss),
                ("rss_1s_after_free_bytes", rss_1s_after_free),
            ],
            json: Vec::new(),
        }
    })
}
