//! Config: the knobs of a heap, as a `const fn` builder so that a `static`
//! global allocator can be configured at compile time — and, in one table
//! below, every build-time tunable of the crate.
//!
//! Invariant: a `Config` may hold any values; [`Config::resolved`] clamps
//! them into the ranges the heap supports when the heap first initialises,
//! so building one can never fail and never panics.
//!
//! # Build-time tunables
//!
//! Constants that trade one cost against another and were chosen by
//! measurement live here, not next to their use, so that a reader tuning
//! the allocator finds every one of them in one place. Layout constants that
//! follow from the on-heap format (`GRANULE`, `HEADER`, `MIN_BLOCK`, the
//! bin count) stay with the layout they describe.
//!
//! | constant | value | used by | trades |
//! | --- | --- | --- | --- |
//! | [`CHUNK_SHIFT`], [`CHUNK`] | 22, 4 MiB | `chunk`, `region` | chunk-map size and hand-over rate against memory pinned per arena |
//! | [`LARGE_THRESHOLD`] | 1 MiB | `large`, `heap` | arena fragmentation against a syscall per large allocation |
//! | [`LARGE_CACHE_RUNS`], [`LARGE_CACHE_BYTES`], [`LARGE_CACHE_AGE_MS`] | 16, 128 MiB, 1 s | `large` | syscalls per large malloc/free against committed memory held by freed runs |
//! | [`SMALL_LIMIT`] | 1 KiB | `bins` | exact-size bins (one per 16 bytes) below it, 8 per power of two above |
//! | [`SUBBIN_BITS`] | 3 (8 sub-bins) | `bins` | bitmap words against first-fit waste above `SMALL_LIMIT` |
//! | [`DRAIN_BATCH`] | 8 | `arena::remote` | remote frees applied per lock acquisition on the owner's path (100-200 ns each): the owner's malloc and free tail against lock acquisitions per remote free |
//! | [`DRAIN_ROUND`] | 32 | `arena::remote`, `arena::purge` | remote frees applied per lock acquisition off the owner's path (adoption, `stats`, decay, trim): how long an owner can wait behind another lock holder's drain |
//! | [`REMOTE_BATCH`], [`REMOTE_BATCH_BYTES`] | 32, 64 KiB | `arena::remote` | remote frees per queue entry against frees held back (pending) |
//! | [`REMOTE_BATCH_JUMP`] | 4 | `arena::remote` | how far ahead a batch's prefetch hints point: cache misses a drain waits for in turn (the first `JUMP` blocks, then one per `JUMP`) against a hint that arrives before the line is needed |
//! | [`SPINS_BEFORE_SLEEP`] | 100 | `sync` | spinning on a held arena lock before `futex_wait` |
//! | [`POOL_SLACK`] | 64 KiB | `heap::pool` | internal-pool bytes beyond the queue buffers, for runtime allocations made while a thread binds |
//! | [`MAX_THREADS`] | 4096 | `thread::registry` | threads that can own an arena at once (more share) |
//! | [`BINDING_WAYS`] | 4 | `thread::cache` | heaps a thread keeps a binding for without a slow path |
//! | [`DEFAULT_REGION_SIZE`] | 64 GiB | `Config` | address space reserved per heap |
//! | [`DEFAULT_MAX_ARENAS`] | 1024 | `Config` | threads that get an arena (and an owner cache) of their own before threads share one (a lock on every call) against the arena table's address space and committed metadata (about 11 KiB per slot, touched only when used) |
//! | [`MAX_ARENAS`] | 4096 | `Config` | the most arenas a heap table has room for |
//! | [`META_REGION_SHARE`] | 16 | `heap::meta` | a heap's metadata takes at most 1/16 of its region (at least one chunk): a small region gets fewer arena slots than configured instead of no heap |
//! | [`MIN_TABLE_ARENAS`] | 128 | `heap::meta` | the fewest slots that rule leaves a table (when configured with more): 128 fit in one chunk of metadata beside any region's map |
//! | [`DEFAULT_REMOTE_QUEUE_CAPACITY`] | 1024 | `Config` | queue-full fallbacks (a foreign thread freeing under the owner's lock) against queue memory per arena (16 KiB at 1024) |
//! | [`DEFAULT_OWNER_CACHE`] | 1 MiB | `Config` | lock acquisitions saved against memory parked in owner caches |
//! | [`CACHE_MAX_REQUEST`] | 1 KiB | `arena::cache` | requests served lock-free inline (one exact class per 16 bytes) |
//! | [`CACHE_BIG_MAX_REQUEST`], [`CACHE_BIG_CLASS_BYTES`] | 64 KiB, 128 KiB | `arena::cache` | requests served lock-free out of line (eight classes per doubling above 1 KiB), and the most bytes one such class parks: lock acquisitions of programs with larger blocks against memory parked |
//! | [`CACHE_DRAIN`], [`CACHE_DRAIN_MOST`] | 32, 256 | `arena::cache` | remote frees taken back (onto the cache) per step of a refill, and per refill: steps stop once the size the refill needs came back (the malloc tail against carving what sits in the queue) |
//! | [`BACKLOG_DRAIN`] | 8 | `arena::remote` | how many times `DRAIN_BATCH` an owner applies once a quarter of its queue is taken: the malloc tail against queue-full fallbacks |
//! | [`CACHE_CLASS_LIMIT`], [`CACHE_CLASS_MAX`], [`CACHE_CLASS_MAX_BYTES`] | 64, 512, 64 KiB | `arena::cache` | blocks one class parks at first, and at most (a small class: up to 64 KiB worth when that is more blocks): each free that finds the class full doubles its cap (a sweep that finds it idle puts it back) — lock acquisitions of bulk frees against memory parked, which the byte limit bounds anyway |
//! | [`CACHE_FLUSH_BATCH`], [`CACHE_FLUSH_MOST`] | 2, 32 | `arena::cache` | blocks a free into a full class gives back (newest first) under its one lock acquisition, and at most in a bulk free (a class holding 32 or more that served no allocation since its last flush doubles it): lock acquisitions per free past the cap against that free's latency |
//! | [`CACHE_REFILL`], [`CACHE_REFILL_BYTES`], [`CACHE_BIG_REFILL_BYTES`] | 32, 8 KiB, 32 KiB | `arena::cache` | blocks carved per refill (one lock acquisition), at most this many bytes (a big class: the last) |
//! | [`CACHE_FILL_LEVELS`] | 3 | `arena::cache` | a class's first refill carves an eighth of a batch, doubling per refill: lock acquisitions of a hot class against carved blocks left idle in a cold one |
//! | [`CACHE_SWEEP_EVERY`] | 512 | `arena::cache` | owner slow paths between sweeps that give back classes nobody allocated from: memory parked in idle classes against flushes of briefly idle ones |
//! | [`MAX_OWNER_CACHE`] | 4 MiB | `Config` | the most an owner cache may park |
//! | [`MAX_REMOTE_QUEUE_CAPACITY`] | 65536 | `Config` | the largest queue: its 1 MiB buffer is the internal pool's most per arena |
//! | [`DEFAULT_PURGE_MS`] | 200 ms | `Config`, `heap::purge` | how long free pages stay resident (reuse without a page fault) against RSS held after a burst |
//! | [`DECAY_THREAD_AFTER`] | 16 MiB | `heap::purge` | committed chunk bytes (metadata not counted) from which an allocation starts the decay thread ahead of need (small programs never get one) |
//! | [`DEFAULT_PURGE_MIN`] | 64 KiB | `Config`, `arena::purge` | the smallest free block whose pages are purged: syscalls against RSS in small free runs |
//! | [`DECAY_WINDOWS`] | 4 | `arena::purge` | decay epochs over which a busy arena's low-water mark of resident free bytes is taken (the most a tick purges): page faults of a program whose demand swings from burst to burst against RSS it keeps while busy (an idle arena purges everything) |
//! | [`PURGE_ROUND`] | 16 | `arena::purge` | blocks a decay step takes out of the index per lock hold to purge with the lock dropped: how long an owner waits behind the decay against lock round trips per purge |
//! | [`DEFAULT_QUARANTINE`], [`MAX_QUARANTINE`] | 16 MiB, 1 GiB | `Stress`, `arena::quarantine` | per arena: how long a freed block waits (late writes caught) against memory held |
//! | [`DEFAULT_REDZONE`], [`MAX_REDZONE`] | 16, 4096 bytes | `Stress`, `stress` | overflows caught beyond the request against bytes per block |
//! | [`DEFAULT_JITTER_RATE`] | 1/4 | `Stress`, `stress` | share of stress-mode calls that jitter delays: races widened against the run's speed |
//! | [`JITTER_SPINS`] | 4096 | `stress` | the longest jitter spin (`spin_loop` hints; a delay yields or spins a random count below it) |
//! | [`INJECT_THREADS`] | 256 | `stress` | small thread ids the exit report counts injected failures for (higher ids share the last line) |
//! | [`LEAK_GROUPS`] | 4096 | `inspect::leaks` | distinct (size, thread) groups a leak report keeps (the rest are summed) |

use core::ffi::CStr;

/// log2 of the chunk size (see the table above).
pub(crate) const CHUNK_SHIFT: u32 = 22;
/// Chunk size and alignment: 4 MiB.
pub const CHUNK: usize = 1 << CHUNK_SHIFT;
/// The largest region a heap reserves (512 TiB, more than x86-64 user
/// space); `region` proves its chunk map can name every chunk of it.
pub(crate) const MAX_REGION_SIZE: usize = 1 << 49;
/// Requests above this many bytes are served as whole-chunk runs.
pub const LARGE_THRESHOLD: usize = 1 << 20;
/// Freed large runs kept committed for reuse, at most...
pub(crate) const LARGE_CACHE_RUNS: usize = 16;
/// ...and at most this many bytes of them...
pub(crate) const LARGE_CACHE_BYTES: usize = 128 << 20;
/// ...for at most this long.
pub(crate) const LARGE_CACHE_AGE_MS: u64 = 1000;
/// Block sizes below this have a bin each.
pub(crate) const SMALL_LIMIT: usize = 1024;
/// log2 of the number of sub-bins per power of two above `SMALL_LIMIT`.
pub(crate) const SUBBIN_BITS: u32 = 3;
/// Queued remote frees (blocks, not queue entries: a drain may stop
/// inside a batch) an arena applies per lock acquisition on its owner's
/// alloc/free path. Each costs 100-200 ns of cache misses (the blocks were
/// last written on another core), so this bounds what one malloc pays
/// for other threads' frees: at 64 the driver's `latency` workload had an
/// 18 µs malloc p99.9 at 2 threads, at 8 under 6 µs.
pub(crate) const DRAIN_BATCH: usize = 8;
/// How many times `DRAIN_BATCH` an owner applies per acquisition once a
/// quarter of its queue is taken: it falls behind the threads freeing its
/// blocks, and a full queue would send each of them to its lock.
pub(crate) const BACKLOG_DRAIN: usize = 8;
/// Queued remote frees a lock holder off the owner's path (adoption,
/// `stats`, `dump`, decay, trim) applies per acquisition: one that must
/// empty the queue takes the lock again for the next round, so an owner's
/// refill waits behind at most this many frees.
pub(crate) const DRAIN_ROUND: usize = 4 * DRAIN_BATCH;
/// Claimed remote frees one batch holds before it is pushed...
pub(crate) const REMOTE_BATCH: usize = 32;
/// ...or bytes: what an owner keeps claimed but unsent per target.
pub(crate) const REMOTE_BATCH_BYTES: usize = 64 << 10;
/// Blocks ahead that each block of a batch names, for the drain to
/// prefetch (`arena::remote`): a batch is a linked list, so without the
/// hint its drain waits for one cache miss per block in turn.
pub(crate) const REMOTE_BATCH_JUMP: usize = 4;
/// Spins on a held arena lock before a waiter goes to sleep: critical
/// sections are short.
pub(crate) const SPINS_BEFORE_SLEEP: u32 = 100;
/// Internal-pool bytes beyond the arenas' queue buffers, for the few
/// allocations the runtime may make while a thread binds (glibc's
/// `pthread` key block when a program made 32 keys before its first
/// allocation, say); freed pool blocks are reused, so this bounds what is
/// live at once, not what is ever allocated.
pub(crate) const POOL_SLACK: usize = 64 << 10;
/// Threads that can own arenas at once; more threads share arenas.
pub(crate) const MAX_THREADS: usize = 4096;
/// Heap bindings a thread caches.
pub(crate) const BINDING_WAYS: usize = 4;

/// Default address space reserved per heap: 64 GiB (address space is free,
/// commit is not; only chunks handed out are committed).
pub const DEFAULT_REGION_SIZE: usize = 64 << 30;
/// Default arena limit: more threads than a program runs at once, so that
/// every allocating thread owns an arena and its owner cache (a thread past
/// the limit shares an arena and takes its lock on every call; jemalloc
/// and mimalloc give every thread a cache of its own). A slot of the table
/// is about 11 KiB of metadata (the arena with its cache heads and bins,
/// and its remote queue's buffer in the internal pool), address space that
/// is committed with the heap's metadata but touched only once an arena is
/// created in it: 1024 slots make 3 chunks of metadata where 128 made one.
pub const DEFAULT_MAX_ARENAS: usize = 1024;
/// Most arenas a heap supports.
pub const MAX_ARENAS: usize = 4096;
/// A heap's metadata (header, arena table, internal pool, chunk map) takes
/// at most `1 / META_REGION_SHARE` of its region, and at least one chunk:
/// where the configured `max_arenas` would take more, the table gets fewer
/// slots (halving, not below [`MIN_TABLE_ARENAS`]), so that a small region
/// still makes a heap with room for data (`heap::meta::create_meta`).
pub(crate) const META_REGION_SHARE: usize = 16;
/// The fewest arena slots [`META_REGION_SHARE`] leaves a table configured
/// with more: so many fit in one chunk of metadata for any region.
pub(crate) const MIN_TABLE_ARENAS: usize = 128;
/// Largest request (payload bytes) the owner cache serves: one exact-size
/// class per 16 bytes up to here.
pub(crate) const CACHE_MAX_REQUEST: usize = 1024;
/// Largest request the owner cache's big classes serve: above
/// `CACHE_MAX_REQUEST`, eight classes per doubling, each holding blocks of
/// any size in its range (`arena::cache`), lock-free but out of line.
pub(crate) const CACHE_BIG_MAX_REQUEST: usize = 64 << 10;
/// Most bytes one big class parks (at least two blocks, at most
/// `CACHE_CLASS_LIMIT`): 64 blocks of 2 KiB, 4 of 32 KiB.
pub(crate) const CACHE_BIG_CLASS_BYTES: usize = 128 << 10;
/// Blocks one class of an owner cache holds at first (a big class: at
/// most this many).
pub(crate) const CACHE_CLASS_LIMIT: u32 = 64;
/// Most blocks one class holds once a run of frees past its cap has
/// doubled it (up to eight times its first cap; a sweep that finds the
/// class idle puts it back).
pub(crate) const CACHE_CLASS_MAX: u32 = 512;
/// Most bytes a small class's cap may grow to when that is more than
/// `CACHE_CLASS_MAX` blocks: 2,048 blocks of 32 bytes, 1,024 of 64. The
/// driver's `service` workload (tokio, serde_json) frees its 16-byte
/// strings in runs of up to a couple of thousand; at 512 blocks every
/// second free past that took the lock (102 lock acquisitions per 1,000
/// allocations, 25 with this).
pub(crate) const CACHE_CLASS_MAX_BYTES: usize = 64 << 10;
/// Blocks a free into a full class gives back to the index, newest
/// first, under its one lock acquisition: 8 cut bulk frees' lock
/// acquisitions 2-3x against 2 but made that free a 1.4 µs p99.9 in the
/// driver's `latency` workload (2-2.5x mimalloc's).
pub(crate) const CACHE_FLUSH_BATCH: usize = 2;
/// The most blocks a free into a full class gives back under its lock
/// acquisition: each further flush of a class that holds at least this
/// many and served no allocation since its last one doubles its batch
/// from `CACHE_FLUSH_BATCH` up to this (a bulk free), and a flush after a
/// pop starts again at `CACHE_FLUSH_BATCH`. Also the most blocks a flush
/// merges neighbours among at once.
pub(crate) const CACHE_FLUSH_MOST: usize = 32;
/// Most blocks one refill carves under one lock acquisition...
pub(crate) const CACHE_REFILL: usize = 32;
/// ...and most bytes: small classes refill many blocks, large ones few.
pub(crate) const CACHE_REFILL_BYTES: usize = 8 << 10;
/// Bytes a big class's refill carves at its full level (at least the
/// caller's block; an eighth of it at the class's first refill, as for
/// the small classes): 16 blocks of 2 KiB, 2 of 16 KiB. Carving the
/// caller's block alone took the lock on every big malloc past the cache.
pub(crate) const CACHE_BIG_REFILL_BYTES: usize = 32 << 10;
/// Refill levels of a class: its first refill carves `1 / 2^CACHE_FILL_LEVELS`
/// of a full batch, each further one twice the last, up to the full batch.
pub(crate) const CACHE_FILL_LEVELS: u8 = 3;
/// Owner slow paths (refills, locked calls; pops and pushes of the big
/// classes count too) between two sweeps of the owner cache for classes
/// nobody allocated from since the last one.
pub(crate) const CACHE_SWEEP_EVERY: u32 = 512;
/// Remote frees an owner drains per step of a cache refill, straight onto
/// its cache; the steps go on until a block of the size the refill is for
/// came back (so it carves none), the queue is empty, or...
pub(crate) const CACHE_DRAIN: usize = 32;
/// ...this many were applied. A refill that drained the most it may at
/// once (this many, in one step) was the driver's `latency` workload's
/// malloc p99.9 at 2 and 8 threads; one that drains too few leaves the
/// size it needs in the queue and carves it again (`prodcons` at 8
/// threads: half the throughput at a fixed 32).
pub(crate) const CACHE_DRAIN_MOST: usize = 8 * CACHE_DRAIN;
/// Default bytes of each arena's owner cache.
pub const DEFAULT_OWNER_CACHE: usize = 1 << 20;
/// Most bytes an owner cache may hold (a chunk's worth).
pub const MAX_OWNER_CACHE: usize = CHUNK;
/// Default capacity of each arena's remote-free queue. An entry is one
/// block or a batch of up to `REMOTE_BATCH`, and an owner drains its queue
/// only when it runs: with many more threads than cores, 256 entries
/// filled while owners waited for a core, and the frees that found them
/// full took the owners' locks (`larson` at 64 threads on 2 cores: 13-17
/// queue-full fallbacks per 1,000 allocations and 14 lock acquisitions;
/// at 1,024 entries, 0.2-0.4 and 11). The buffer is 16 KiB per arena, from
/// the internal pool.
pub const DEFAULT_REMOTE_QUEUE_CAPACITY: usize = 1024;
/// The largest remote-queue capacity a heap uses; larger settings are
/// clamped to it. A queue of this many slots has a buffer of a stamp and a
/// value per slot (`MpmcQueue::buffer_bytes`), [`LARGE_THRESHOLD`] bytes:
/// the most the internal pool sets aside per arena (`heap::pool`), so a
/// heap that is its own global allocator can always build its queues, and
/// no buffer-size computation can overflow (`heap` checks both at compile
/// time).
pub const MAX_REMOTE_QUEUE_CAPACITY: usize = LARGE_THRESHOLD / (2 * core::mem::size_of::<usize>());
/// Default decay: an idle arena's free pages are purged within this of
/// its last locked call (and a whole half of it after they became free);
/// a busy arena's, as far as it left them unused (`Config::purge_ms`,
/// `arena/purge.rs`).
pub const DEFAULT_PURGE_MS: i64 = 200;
/// Decay epochs (half a `purge_ms` each) over which a busy arena's tick
/// takes the low-water mark of its resident free bytes: the most it purges
/// (`arena/purge.rs`, "How much").
pub(crate) const DECAY_WINDOWS: usize = 4;
/// Free blocks a decay step takes out of its arena's index per lock hold,
/// to `madvise` with the lock dropped (`arena/purge.rs`): the lock is held
/// for their unlinking and relinking only, a few µs.
pub(crate) const PURGE_ROUND: usize = 16;
/// Committed bytes from which an allocation slow path starts the decay
/// thread even before anything waits for decay, so that it exists when a
/// burst of frees comes that no allocation follows (`heap/purge.rs`).
pub(crate) const DECAY_THREAD_AFTER: usize = 16 << 20;
/// Default smallest free block whose whole pages are purged.
pub const DEFAULT_PURGE_MIN: usize = 64 << 10;
/// Default bytes of freed blocks each arena quarantines in stress mode.
pub const DEFAULT_QUARANTINE: usize = 16 << 20;
/// The most a stress-mode quarantine holds per arena.
pub const MAX_QUARANTINE: usize = 1 << 30;
/// Default redzone after every request in stress mode, in bytes.
pub const DEFAULT_REDZONE: usize = 16;
/// The largest stress-mode redzone.
pub const MAX_REDZONE: usize = 4096;
/// Groups a leak report keeps (`Heap::leak_report`); the rest are summed.
pub(crate) const LEAK_GROUPS: usize = 4096;
/// Default share of stress-mode allocation and free calls that schedule
/// jitter (`Stress::jitter`) delays.
pub(crate) const DEFAULT_JITTER_RATE: f64 = 0.25;
/// A jitter delay that spins spins fewer `spin_loop` hints than this.
pub(crate) const JITTER_SPINS: u64 = 4096;
/// Small thread ids (registry slot + 1) whose injected failures the exit
/// report counts one by one; higher ids are summed with the last.
pub(crate) const INJECT_THREADS: usize = 256;

/// The stress-testing mode's settings (`Config::stress`): quarantine,
/// poison, redzones, fill patterns, what a report does. `Stress::new()`
/// is on with the defaults; a `Config` without `.stress(...)` has it off,
/// which costs nothing on the fast paths (`docs/DESIGN.md`, "Stress
/// mode").
///
/// ```
/// use arenalloc::{Config, Heap, Stress};
/// static A: Heap = Heap::with_config(Config::new().stress(Stress::new().redzone(32)));
/// let p = A.malloc(10);
/// assert_eq!(A.usable_size(p), Some(10));
/// assert_eq!(unsafe { *p }, 0xbe);
/// unsafe { A.free(p) }.unwrap();
/// A.check().unwrap();
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Stress {
    on: bool,
    quarantine: usize,
    redzone: usize,
    free_fill: u8,
    alloc_fill: u8,
    keep_going: bool,
    leaks: bool,
    /// Every this many-th eligible allocation of a thread fails (0: none).
    fail_every: u64,
    /// Each eligible allocation fails with this probability (0: none).
    fail_rate: f64,
    /// Eligible allocations fail once live bytes would pass this.
    fail_after: Option<usize>,
    /// Only requests of at least this many bytes are eligible.
    fail_min: usize,
    /// The generator's seed (`None`: drawn when the heap initialises).
    seed: Option<u64>,
    jitter: bool,
    jitter_rate: f64,
}

impl Stress {
    /// Stress mode on: a 16 MiB quarantine per arena, 16-byte redzones,
    /// freed memory filled with `0xdd`, new memory with `0xbe`, abort after
    /// the first report, leak report at exit (preload library).
    pub const fn new() -> Stress {
        Stress {
            on: true,
            quarantine: DEFAULT_QUARANTINE,
            redzone: DEFAULT_REDZONE,
            free_fill: 0xdd,
            alloc_fill: 0xbe,
            keep_going: false,
            leaks: true,
            fail_every: 0,
            fail_rate: 0.0,
            fail_after: None,
            fail_min: 0,
            seed: None,
            jitter: false,
            jitter_rate: DEFAULT_JITTER_RATE,
        }
    }

    /// Stress mode off (what `Config::new()` holds).
    pub const fn off() -> Stress {
        Stress {
            on: false,
            ..Stress::new()
        }
    }

    /// Bytes of freed blocks each arena holds back before reuse (at most
    /// [`MAX_QUARANTINE`]; 0: a freed block is verified and reused at once).
    pub const fn quarantine(mut self, bytes: usize) -> Stress {
        self.quarantine = bytes;
        self
    }

    /// Bytes of redzone after every request (at most [`MAX_REDZONE`]);
    /// the block's rounding slack is redzone too.
    pub const fn redzone(mut self, bytes: usize) -> Stress {
        self.redzone = bytes;
        self
    }

    /// The byte freed blocks are filled with (verified on reuse).
    pub const fn free_fill(mut self, byte: u8) -> Stress {
        self.free_fill = byte;
        self
    }

    /// The byte new blocks are filled with (`MALLOC_PERTURB_`'s job);
    /// `calloc` still zeroes.
    pub const fn alloc_fill(mut self, byte: u8) -> Stress {
        self.alloc_fill = byte;
        self
    }

    /// Count reports and run on (`HeapStats::stress_reports`) instead of
    /// aborting after the first.
    pub const fn keep_going(mut self, on: bool) -> Stress {
        self.keep_going = on;
        self
    }

    /// Whether the preload library writes a leak report at exit.
    pub const fn leak_report(mut self, on: bool) -> Stress {
        self.leaks = on;
        self
    }

    /// Allocation-failure injection: every `n`-th eligible allocation of
    /// each thread fails (0: off). An injected failure is what real
    /// exhaustion looks like: null from `malloc` and `GlobalAlloc` (so
    /// `try_reserve` returns an error and `Vec::push` calls
    /// `handle_alloc_error`), NULL with `ENOMEM` from the preload library's
    /// C API, and `realloc` leaves the block where it was. Eligible: a
    /// request of at least [`Stress::fail_min`] bytes, made while the
    /// thread is not binding to an arena. Counted per thread, so a
    /// thread's failures depend only on its own calls.
    ///
    /// ```
    /// use arenalloc::{Config, Heap, Stress};
    /// let heap = Heap::with_config(Config::new().stress(Stress::new().fail_every(3)));
    /// let got: Vec<bool> = (0..6).map(|_| !heap.malloc(32).is_null()).collect();
    /// assert_eq!(got, [true, true, false, true, true, false]);
    /// assert_eq!(heap.injected_failures(), 2);
    /// ```
    pub const fn fail_every(mut self, n: u64) -> Stress {
        self.fail_every = n;
        self
    }

    /// Allocation-failure injection: each eligible allocation fails with
    /// probability `p` (clamped to `0..=1`; 0: off), drawn from the seeded
    /// generator ([`Stress::seed`]) by the thread's small id and its count
    /// of eligible allocations — the same seed and the same calls on a
    /// thread give the same failures. Failures as [`Stress::fail_every`].
    pub const fn fail_rate(mut self, p: f64) -> Stress {
        self.fail_rate = p;
        self
    }

    /// Allocation-failure injection: an eligible allocation fails when the
    /// heap's live stress-mode bytes (requests, all threads) plus its own
    /// request would pass `bytes` — a memory limit. Failures as
    /// [`Stress::fail_every`].
    pub const fn fail_after(mut self, bytes: usize) -> Stress {
        self.fail_after = Some(bytes);
        self
    }

    /// Only requests of at least `bytes` are eligible for injected failures
    /// (and counted by `fail_every`); 0 (the default): every request.
    pub const fn fail_min(mut self, bytes: usize) -> Stress {
        self.fail_min = bytes;
        self
    }

    /// The seed of the generator that `fail_rate` and `jitter` draw from.
    /// Without one the heap draws a seed when it initialises, and the
    /// preload library's exit report prints it, so that a failing run can
    /// be replayed with `seed=` ([`Heap::stress_seed`](crate::Heap::stress_seed)).
    pub const fn seed(mut self, seed: u64) -> Stress {
        self.seed = Some(seed);
        self
    }

    /// Seeded schedule jitter: at seeded random points (a share
    /// [`Stress::jitter_rate`] of the calls) an allocation or free, before
    /// it returns and with no lock held, yields the CPU or spins for a
    /// random short time, so that a race in the program whose window spans
    /// an allocator call happens far more often. Drawn like
    /// [`Stress::fail_rate`], from its own stream: turning jitter on does
    /// not move the injected failures.
    pub const fn jitter(mut self, on: bool) -> Stress {
        self.jitter = on;
        self
    }

    /// The share of calls jitter delays (clamped to `0..=1`; default
    /// 0.25); turns jitter on.
    pub const fn jitter_rate(mut self, p: f64) -> Stress {
        self.jitter_rate = p;
        self.jitter = true;
        self
    }

    /// Whether stress mode is on.
    pub const fn is_on(&self) -> bool {
        self.on
    }

    /// The quarantine per arena, as given.
    pub const fn get_quarantine(&self) -> usize {
        self.quarantine
    }

    /// The redzone, as given.
    pub const fn get_redzone(&self) -> usize {
        self.redzone
    }

    /// The fill byte of freed blocks.
    pub const fn get_free_fill(&self) -> u8 {
        self.free_fill
    }

    /// The fill byte of new blocks.
    pub const fn get_alloc_fill(&self) -> u8 {
        self.alloc_fill
    }

    /// Whether reports are counted rather than fatal.
    pub const fn get_keep_going(&self) -> bool {
        self.keep_going
    }

    /// Whether a leak report is wanted at exit.
    pub const fn get_leak_report(&self) -> bool {
        self.leaks
    }

    /// Every how many eligible allocations one fails (0: never).
    pub const fn get_fail_every(&self) -> u64 {
        self.fail_every
    }

    /// The probability of an injected failure, as given.
    pub const fn get_fail_rate(&self) -> f64 {
        self.fail_rate
    }

    /// The live-bytes limit past which allocations fail, if any.
    pub const fn get_fail_after(&self) -> Option<usize> {
        self.fail_after
    }

    /// The smallest request eligible for an injected failure.
    pub const fn get_fail_min(&self) -> usize {
        self.fail_min
    }

    /// The seed, if one was given.
    pub const fn get_seed(&self) -> Option<u64> {
        self.seed
    }

    /// Whether schedule jitter is on.
    pub const fn get_jitter(&self) -> bool {
        self.jitter
    }

    /// The share of calls jitter delays, as given.
    pub const fn get_jitter_rate(&self) -> f64 {
        self.jitter_rate
    }

    /// Whether any allocation-failure injection is set.
    pub(crate) fn injects(&self) -> bool {
        self.fail_every != 0 || self.fail_rate > 0.0 || self.fail_after.is_some()
    }

    /// The settings the heap uses: clamped.
    fn clamped(self) -> Stress {
        let unit = |p: f64| if p > 0.0 { p.min(1.0) } else { 0.0 };
        Stress {
            fail_rate: unit(self.fail_rate),
            jitter_rate: unit(self.jitter_rate),
            quarantine: if self.quarantine > MAX_QUARANTINE {
                MAX_QUARANTINE
            } else {
                self.quarantine
            },
            redzone: if self.redzone > MAX_REDZONE {
                MAX_REDZONE
            } else {
                self.redzone
            },
            ..self
        }
    }
}

impl Default for Stress {
    fn default() -> Stress {
        Stress::new()
    }
}

impl PartialEq for Stress {
    /// Equal when every setting is; the probabilities are compared by
    /// their bits (so a NaN equals itself, and `Eq` holds).
    fn eq(&self, other: &Stress) -> bool {
        self.on == other.on
            && self.quarantine == other.quarantine
            && self.redzone == other.redzone
            && self.free_fill == other.free_fill
            && self.alloc_fill == other.alloc_fill
            && self.keep_going == other.keep_going
            && self.leaks == other.leaks
            && self.fail_every == other.fail_every
            && self.fail_rate.to_bits() == other.fail_rate.to_bits()
            && self.fail_after == other.fail_after
            && self.fail_min == other.fail_min
            && self.seed == other.seed
            && self.jitter == other.jitter
            && self.jitter_rate.to_bits() == other.jitter_rate.to_bits()
    }
}

impl Eq for Stress {}

/// The page size purging works in (x86-64 and aarch64 Linux base pages;
/// a larger real page only makes some purges cover less).
pub(crate) const PAGE: usize = 4096;

/// A smallest-purged-block setting as the heap uses it: whole pages, at
/// least one, at most a chunk.
pub(crate) const fn clamp_purge_min(bytes: usize) -> usize {
    let b = if bytes < PAGE {
        PAGE
    } else if bytes > CHUNK {
        CHUNK
    } else {
        bytes
    };
    b.next_multiple_of(PAGE)
}

/// How a heap is set up.
///
/// The builder methods have the settings' plain names (`max_arenas(n)`),
/// so the getters are `get_max_arenas()` and so on, as for
/// `std::process::Command` (and [`Stress`]).
///
/// ```
/// use arenalloc::{Config, Heap};
/// static ONE_LOCK: Heap = Heap::with_config(Config::new().max_arenas(1).region_size(1 << 30));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Config {
    max_arenas: usize,
    max_indexes: usize,
    region_size: usize,
    remote_queue_capacity: usize,
    hardened: bool,
    owner_cache: usize,
    purge_ms: i64,
    purge_min: usize,
    purge_thread: bool,
    stress: Stress,
    stats_at_exit: bool,
    at_init: Option<fn(Config) -> Config>,
}

impl Config {
    /// The defaults: `DEFAULT_MAX_ARENAS` arenas, a `DEFAULT_REGION_SIZE`
    /// region, `DEFAULT_REMOTE_QUEUE_CAPACITY` remote-queue slots.
    pub const fn new() -> Config {
        Config {
            max_arenas: DEFAULT_MAX_ARENAS,
            max_indexes: 0,
            region_size: DEFAULT_REGION_SIZE,
            remote_queue_capacity: DEFAULT_REMOTE_QUEUE_CAPACITY,
            hardened: false,
            owner_cache: DEFAULT_OWNER_CACHE,
            purge_ms: DEFAULT_PURGE_MS,
            purge_min: DEFAULT_PURGE_MIN,
            purge_thread: true,
            stress: Stress::off(),
            stats_at_exit: false,
            at_init: None,
        }
    }

    /// Most arenas the heap creates (clamped to `1..=MAX_ARENAS`); `1` makes
    /// the single-global-lock heap. A thread binds to an arena of its own
    /// while fewer than this many exist (or adopts one whose thread
    /// exited); past it, threads share arenas and take the lock on every
    /// call. A region too small for this many slots' metadata (more than
    /// a sixteenth of it) gets fewer slots, not below 128.
    pub const fn max_arenas(mut self, n: usize) -> Config {
        self.max_arenas = n;
        self
    }

    /// Most of those arenas that have an index of their own — a lock, a
    /// first-fit index and chunks; 0 (the default) means no limit but
    /// `max_arenas`: every thread gets an index of its own. Once this many
    /// exist, a new thread gets an *owner slot* instead: an owner cache and
    /// remote-free batches of its own, in front of an existing arena's
    /// index (spread round-robin), so it keeps the lock-free fast paths and
    /// takes that arena's lock only to refill and flush, as jemalloc's
    /// threads do past its arenas (4 per CPU). Memory any owner of an index
    /// frees is reused by all of them: with many more threads than CPUs,
    /// where an index per thread commits the sum of every thread's peak,
    /// 8 per CPU halved `larson`'s peak RSS at 64 and 256 threads on 2
    /// CPUs (speed ×1.06 and ×0.87) — but cost `prodcons` (every free
    /// remote) 22-31 % (`benches/RESULTS.md`, "owner slots",
    /// `benches/owner-slots-ab.sh`): a memory knob, not a default. Clamped to `max_arenas`. Without an owner cache
    /// (`owner_cache(0)`, `max_arenas(1)`, stress mode) every arena keeps
    /// an index of its own.
    pub const fn max_indexes(mut self, n: usize) -> Config {
        self.max_indexes = n;
        self
    }

    /// Bytes of address space to reserve at most, metadata included
    /// (rounded up to whole chunks of 4 MiB; at least two chunks). Under an
    /// address-space limit (`RLIMIT_AS`), or when the kernel refuses, the
    /// heap reserves less — halving down to what holds its metadata — and
    /// `HeapStats::reserved_bytes` says what it got.
    pub const fn region_size(mut self, bytes: usize) -> Config {
        self.region_size = bytes;
        self
    }

    /// Slots in each arena's remote-free queue (clamped to
    /// `1..=MAX_REMOTE_QUEUE_CAPACITY`, that is 1 to 65536).
    pub const fn remote_queue_capacity(mut self, n: usize) -> Config {
        self.remote_queue_capacity = n;
        self
    }

    /// A function the heap applies to this configuration once, when it
    /// first initialises (on its first allocation), before clamping: how a
    /// `static` heap takes settings known only at run time, such as the
    /// environment (the preload library reads `ARENALLOC_*` this way, with
    /// [`Config::with_env`]). It runs inside the first allocation: it must
    /// not allocate from this heap, and should not panic.
    pub const fn at_init(mut self, f: fn(Config) -> Config) -> Config {
        self.at_init = Some(f);
        self
    }

    /// Heap-corruption checks (README "Safety and stress mode"): a keyed check value in
    /// every block header, verified on every free, realloc and coalesce;
    /// `prev_size` boundary tags mangled and cross-checked against the block
    /// they name; free-list links safe-linked and validated when taken. A
    /// failed check aborts with `arenalloc: heap corruption at 0x… (…)`.
    /// Off by default: an alloc+free pair of 16 B-1 KiB costs 2.4-3.2x as
    /// much (a hardened heap leaves the inline fast path for the checked
    /// one) and 1.09-1.17x on the locked path (measured: `benches/RESULTS.md`,
    /// "Hardened checks"). On in the test suites. The preload library reads
    /// `ARENALLOC_HARDENED=1`.
    pub const fn hardened(mut self, on: bool) -> Config {
        self.hardened = on;
        self
    }

    /// Bytes each arena's owner may keep in its lock-free owner cache of
    /// small blocks (`arena/cache.rs`); 0 turns the cache off, which leaves
    /// per-thread locked arenas: the middle level of the lock-granularity
    /// lesson. The preload library reads `ARENALLOC_OWNER_CACHE`.
    pub const fn owner_cache(mut self, bytes: usize) -> Config {
        self.owner_cache = bytes;
        self
    }

    /// Decay of free memory, in milliseconds (`heap/purge.rs`): free pages
    /// inside chunks (of blocks of at least `purge_min` bytes), an arena's
    /// kept empty chunk, remote frees nobody applied and orphaned owner
    /// caches go back to the OS between half of this and this long after
    /// they appeared (an idle arena's free pages within this of its last
    /// locked call; a busy arena keeps the free pages it reused over the
    /// last two decays) — done by a background thread the heap starts when
    /// there is something to purge and that exits when there is not.
    /// `0` purges free pages at once (a `madvise` on every free that makes
    /// a large free block); `-1` never (only [`Heap::trim`](crate::Heap::trim)).
    /// The preload library reads `ARENALLOC_PURGE_MS`.
    pub const fn purge_ms(mut self, ms: i64) -> Config {
        self.purge_ms = ms;
        self
    }

    /// The smallest free block whose whole pages are purged (rounded up to
    /// at least one page). The preload library reads `ARENALLOC_PURGE_MIN`.
    pub const fn purge_min(mut self, bytes: usize) -> Config {
        self.purge_min = bytes;
        self
    }

    /// Whether decay may use its background thread (the default). Without
    /// it, decay runs on the allocating threads' slow paths, so a process
    /// that goes idle keeps its free pages until it allocates again or calls
    /// [`Heap::trim`](crate::Heap::trim) — for programs that must not see an
    /// extra thread. The preload library reads `ARENALLOC_PURGE_THREAD=0`.
    pub const fn purge_thread(mut self, on: bool) -> Config {
        self.purge_thread = on;
        self
    }

    /// The stress-testing mode (`Stress`): quarantine, poison, redzones,
    /// fill patterns, thread-attributed reports. On, every allocation and
    /// free takes its arena's locked path (the owner cache is off) and a
    /// free of another arena's block takes that arena's lock. The preload
    /// library reads `ARENALLOC_STRESS`.
    pub const fn stress(mut self, stress: Stress) -> Config {
        self.stress = stress;
        self
    }

    /// Whether a statistics table is wanted at exit (`ARENALLOC_STATS`).
    /// The library has no exit hook of its own: the preload library
    /// writes the table (on stderr, or appended to the absolute path the
    /// variable names); a Rust program that reads the environment with
    /// [`Config::from_env`] prints [`Heap::stats`](crate::Heap::stats)
    /// where it likes.
    pub const fn stats_at_exit(mut self, on: bool) -> Config {
        self.stats_at_exit = on;
        self
    }

    /// Whether a statistics table is wanted at exit, as given.
    pub const fn get_stats_at_exit(&self) -> bool {
        self.stats_at_exit
    }

    /// The stress-mode settings, as given.
    pub const fn get_stress(&self) -> Stress {
        self.stress
    }

    /// The configured decay, as given.
    pub const fn get_purge_ms(&self) -> i64 {
        self.purge_ms
    }

    /// The configured smallest purged block, as given.
    pub const fn get_purge_min(&self) -> usize {
        self.purge_min
    }

    /// Whether decay may use a background thread, as given.
    pub const fn get_purge_thread(&self) -> bool {
        self.purge_thread
    }

    /// The configured owner-cache size, as given.
    pub const fn get_owner_cache(&self) -> usize {
        self.owner_cache
    }

    /// Whether heap-corruption checks are on, as given.
    pub const fn get_hardened(&self) -> bool {
        self.hardened
    }

    /// The configured arena limit, as given.
    pub const fn get_max_arenas(&self) -> usize {
        self.max_arenas
    }

    /// The configured limit of arenas with an index of their own: as
    /// given (0: none), or once the heap resolved it, the number.
    pub const fn get_max_indexes(&self) -> usize {
        self.max_indexes
    }

    /// The configured region size, as given.
    pub const fn get_region_size(&self) -> usize {
        self.region_size
    }

    /// The configured remote-queue capacity, as given.
    pub const fn get_remote_queue_capacity(&self) -> usize {
        self.remote_queue_capacity
    }

    /// The values the heap actually uses: `at_init` applied, then clamped.
    pub(crate) fn resolved(&self) -> Config {
        let given = match self.at_init {
            Some(f) => f(Config {
                at_init: None,
                ..*self
            }),
            None => *self,
        };
        let region = given.region_size.clamp(2 * CHUNK, MAX_REGION_SIZE);
        let max_arenas = given.max_arenas.clamp(1, MAX_ARENAS);
        let max_indexes = match given.max_indexes {
            0 => max_arenas,
            n => n,
        };
        Config {
            max_arenas,
            max_indexes: max_indexes.clamp(1, max_arenas),
            region_size: region.next_multiple_of(CHUNK),
            remote_queue_capacity: given
                .remote_queue_capacity
                .clamp(1, MAX_REMOTE_QUEUE_CAPACITY),
            hardened: given.hardened,
            // Stress mode: every call takes the locked path, where the
            // one `if stress` branch is (no owner cache, no fast path).
            owner_cache: if given.stress.on {
                0
            } else {
                given.owner_cache.min(MAX_OWNER_CACHE)
            },
            // Below -1 means never, like -1; a day is the longest decay.
            purge_ms: given.purge_ms.clamp(-1, 86_400_000),
            purge_min: clamp_purge_min(given.purge_min),
            purge_thread: given.purge_thread,
            stress: given.stress.clamped(),
            stats_at_exit: given.stats_at_exit,
            at_init: None,
        }
    }
}

impl PartialEq for Config {
    /// Equal when every setting is; an `at_init` hook is compared by
    /// whether one is set (function addresses are not stable).
    fn eq(&self, other: &Config) -> bool {
        self.max_arenas == other.max_arenas
            && self.max_indexes == other.max_indexes
            && self.region_size == other.region_size
            && self.remote_queue_capacity == other.remote_queue_capacity
            && self.hardened == other.hardened
            && self.owner_cache == other.owner_cache
            && self.purge_ms == other.purge_ms
            && self.purge_min == other.purge_min
            && self.purge_thread == other.purge_thread
            && self.stress == other.stress
            && self.stats_at_exit == other.stats_at_exit
            && self.at_init.is_some() == other.at_init.is_some()
    }
}

impl Eq for Config {}

impl Default for Config {
    fn default() -> Config {
        Config::new()
    }
}

// ----- the environment ------------------------------------------------------
//
// One table, `VARS`, names every `ARENALLOC_*` variable and how its value
// changes a `Config`; one loop (`Config::with_vars`) applies it. The
// parsers read byte slices and build values on the stack: nothing here
// allocates, panics or takes a lock, so the preload library runs it inside
// its first `malloc` (through `Config::at_init`).

/// A malformed `ARENALLOC_*` value, as [`Config::with_vars`] hands it to
/// its `report` callback before keeping the setting it had;
/// [`Config::from_env`] writes it on stderr as one line:
///
/// ```text
/// arenalloc: ignoring malformed ARENALLOC_MAX_ARENAS="lots" (expected a whole number >= 1); using the default
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Malformed<'a> {
    /// The variable, such as `ARENALLOC_MAX_ARENAS`.
    pub var: &'static str,
    /// Its value as found.
    pub value: &'a [u8],
    /// What a value must look like (for `ARENALLOC_STRESS`, what the first
    /// knob that failed must look like).
    pub expected: &'static str,
}

/// Bytes of a malformed value that a report quotes.
const QUOTED_VALUE: usize = 64;

impl core::fmt::Display for Malformed<'_> {
    /// The report without its `arenalloc: ` prefix (the value quoted up to
    /// its first 64 bytes, invalid UTF-8 replaced).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ignoring malformed {}=\"", self.var)?;
        let quoted = self.value.get(..QUOTED_VALUE).unwrap_or(self.value);
        for chunk in quoted.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{fffd}")?;
            }
        }
        write!(f, "\" (expected {}); using the default", self.expected)
    }
}

/// Writes `m` on stderr as one line with one `write(2)` (no allocation, no
/// formatting machinery): `Config::with_env`'s reporter.
fn write_malformed(m: &Malformed<'_>) {
    crate::sys::write_stderr(malformed_line(m).bytes());
}

/// The line `write_malformed` writes.
fn malformed_line(m: &Malformed<'_>) -> crate::line::Line {
    let mut line = crate::line::Line::new();
    line.push(b"arenalloc: ignoring malformed ");
    line.push(m.var.as_bytes());
    line.push(b"=\"");
    line.push(m.value.get(..QUOTED_VALUE).unwrap_or(m.value));
    line.push(b"\" (expected ");
    line.push(m.expected.as_bytes());
    line.push(b"); using the default\n");
    line
}

/// One `ARENALLOC_*` variable: its name (twice: `cname` is what `getenv`
/// takes; a unit test checks they agree) and how a value changes a
/// `Config` — or, when it is malformed, what a value must look like.
struct Var {
    name: &'static str,
    cname: &'static CStr,
    apply: fn(Config, &[u8]) -> Result<Config, &'static str>,
}

/// Every variable, in the order they are applied (they are independent:
/// the order changes nothing). `Config::from_env`'s doc is their
/// documentation.
const VARS: [Var; 10] = [
    Var {
        name: "ARENALLOC_MAX_ARENAS",
        cname: c"ARENALLOC_MAX_ARENAS",
        apply: |c, v| match parse_size(v, false) {
            Some(n) if n >= 1 => Ok(c.max_arenas(n)),
            _ => Err("a whole number >= 1"),
        },
    },
    Var {
        name: "ARENALLOC_MAX_INDEXES",
        cname: c"ARENALLOC_MAX_INDEXES",
        apply: |c, v| match parse_size(v, false) {
            Some(n) => Ok(c.max_indexes(n)),
            _ => Err("a whole number (0: no limit)"),
        },
    },
    Var {
        name: "ARENALLOC_REGION_SIZE",
        cname: c"ARENALLOC_REGION_SIZE",
        apply: |c, v| match parse_size(v, true) {
            Some(n) if n >= 2 * CHUNK => Ok(c.region_size(n)),
            _ => Err("bytes with an optional K/M/G/T suffix, at least 8M"),
        },
    },
    Var {
        name: "ARENALLOC_OWNER_CACHE",
        cname: c"ARENALLOC_OWNER_CACHE",
        apply: |c, v| {
            parse_size(v, true)
                .map(|n| c.owner_cache(n))
                .ok_or("bytes with an optional K/M/G/T suffix (0: off)")
        },
    },
    Var {
        name: "ARENALLOC_PURGE_MS",
        cname: c"ARENALLOC_PURGE_MS",
        apply: |c, v| match v {
            b"-1" => Ok(c.purge_ms(-1)),
            _ => parse_size(v, false)
                .map(|n| c.purge_ms(i64::try_from(n).unwrap_or(i64::MAX)))
                .ok_or("milliseconds (0: purge at once, -1: never)"),
        },
    },
    Var {
        name: "ARENALLOC_PURGE_MIN",
        cname: c"ARENALLOC_PURGE_MIN",
        apply: |c, v| {
            parse_size(v, true)
                .map(|n| c.purge_min(n))
                .ok_or("bytes with an optional K/M/G/T suffix")
        },
    },
    Var {
        name: "ARENALLOC_PURGE_THREAD",
        cname: c"ARENALLOC_PURGE_THREAD",
        apply: |c, v| parse_flag(v).map(|on| c.purge_thread(on)).ok_or("0 or 1"),
    },
    Var {
        name: "ARENALLOC_HARDENED",
        cname: c"ARENALLOC_HARDENED",
        apply: |c, v| parse_flag(v).map(|on| c.hardened(on)).ok_or("0 or 1"),
    },
    Var {
        name: "ARENALLOC_STRESS",
        cname: c"ARENALLOC_STRESS",
        apply: |c, v| parse_stress(v).map(|s| c.stress(s)),
    },
    Var {
        name: "ARENALLOC_STATS",
        cname: c"ARENALLOC_STATS",
        apply: |c, v| match v {
            b"0" => Ok(c.stats_at_exit(false)),
            b"1" => Ok(c.stats_at_exit(true)),
            [b'/', ..] => Ok(c.stats_at_exit(true)),
            _ => Err("1, 0 or an absolute path"),
        },
    },
];

/// One knob of `ARENALLOC_STRESS` (`key=value`).
struct Knob {
    key: &'static [u8],
    /// The value's form, for the report of a malformed one.
    expected: &'static str,
    apply: fn(Stress, &[u8]) -> Option<Stress>,
}

/// What `ARENALLOC_STRESS` must look like, for a report that is not about
/// one knob's value.
const STRESS_EXPECTED: &str = "1, 0, or key=value knobs separated by commas (Config::from_env)";

/// Every knob of `ARENALLOC_STRESS`.
const KNOBS: [Knob; 13] = [
    Knob {
        key: b"quarantine",
        expected: "quarantine=bytes, optional K/M/G/T suffix",
        apply: |s, v| Some(s.quarantine(parse_size(v, true)?)),
    },
    Knob {
        key: b"redzone",
        expected: "redzone=bytes, optional K/M/G/T suffix",
        apply: |s, v| Some(s.redzone(parse_size(v, true)?)),
    },
    Knob {
        key: b"free_fill",
        expected: "free_fill=a byte, 0x.. or decimal",
        apply: |s, v| Some(s.free_fill(parse_byte(v)?)),
    },
    Knob {
        key: b"alloc_fill",
        expected: "alloc_fill=a byte, 0x.. or decimal",
        apply: |s, v| Some(s.alloc_fill(parse_byte(v)?)),
    },
    Knob {
        key: b"continue",
        expected: "continue=0 or 1",
        apply: |s, v| Some(s.keep_going(parse_flag(v)?)),
    },
    Knob {
        key: b"leaks",
        expected: "leaks=0 or 1",
        apply: |s, v| Some(s.leak_report(parse_flag(v)?)),
    },
    Knob {
        key: b"fail_every",
        expected: "fail_every=a whole number (0: off)",
        apply: |s, v| Some(s.fail_every(parse_u64(v)?)),
    },
    Knob {
        key: b"fail_rate",
        expected: "fail_rate=a probability, 0 to 1 (0.001, 1e-3)",
        apply: |s, v| Some(s.fail_rate(parse_probability(v)?)),
    },
    Knob {
        key: b"fail_after",
        expected: "fail_after=bytes, optional K/M/G/T suffix",
        apply: |s, v| Some(s.fail_after(parse_size(v, true)?)),
    },
    Knob {
        key: b"fail_min",
        expected: "fail_min=bytes, optional K/M/G/T suffix",
        apply: |s, v| Some(s.fail_min(parse_size(v, true)?)),
    },
    Knob {
        key: b"seed",
        expected: "seed=a 64-bit number, decimal or 0x..",
        apply: |s, v| Some(s.seed(parse_u64(v)?)),
    },
    Knob {
        key: b"jitter",
        expected: "jitter=0 or 1",
        apply: |s, v| Some(s.jitter(parse_flag(v)?)),
    },
    Knob {
        key: b"jitter_rate",
        expected: "jitter_rate=a probability, 0 to 1",
        apply: |s, v| Some(s.jitter_rate(parse_probability(v)?)),
    },
];

impl Config {
    /// The defaults ([`Config::new`]) with every `ARENALLOC_*` variable of
    /// the process environment applied: what the preload library runs, and
    /// what a Rust program can run too. A malformed value is reported on
    /// stderr as one line naming the variable, the value and what was
    /// expected, and the setting keeps its default. Allocates nothing, so
    /// it may run inside an allocation (see [`Config::with_env`]).
    ///
    /// | variable | value | default | sets |
    /// | --- | --- | --- | --- |
    /// | `ARENALLOC_MAX_ARENAS` | a whole number >= 1 | 1024 | [`Config::max_arenas`] (1: one lock for every thread); `mallopt(M_ARENA_MAX)` can lower it later |
    /// | `ARENALLOC_MAX_INDEXES` | a whole number; 0 = no limit | 0 | [`Config::max_indexes`]: arenas with an index of their own; past them a thread gets an owner slot in front of a shared one |
    /// | `ARENALLOC_REGION_SIZE` | bytes, optional `K`/`M`/`G`/`T` suffix (binary, an optional `B`/`iB` after it), >= 8M | 64G, or what `RLIMIT_AS` leaves | [`Config::region_size`]: the one reservation |
    /// | `ARENALLOC_OWNER_CACHE` | bytes, optional suffix; 0 = off | 1M (at most 4M) | [`Config::owner_cache`]: each arena's lock-free cache of freed blocks |
    /// | `ARENALLOC_PURGE_MS` | milliseconds; 0 = purge at once, -1 = never | 200 | [`Config::purge_ms`]: how long free pages stay resident before decay purges them |
    /// | `ARENALLOC_PURGE_MIN` | bytes, optional suffix | 64K | [`Config::purge_min`]: the smallest free block whose pages are purged (one page … one chunk); `mallopt(M_TRIM_THRESHOLD)` changes it later |
    /// | `ARENALLOC_PURGE_THREAD` | `0` or `1` | `1` | [`Config::purge_thread`]: whether a background thread runs decay (0: only allocating threads do) |
    /// | `ARENALLOC_HARDENED` | `0` or `1` | `0` | [`Config::hardened`]: heap-corruption checks on every free and allocation |
    /// | `ARENALLOC_STRESS` | `1`, `0`, or `key=value` knobs separated by `,` (they turn it on): `quarantine=` bytes (suffixes), `redzone=` bytes, `free_fill=` / `alloc_fill=` a byte (`0x..` or decimal), `continue=0/1`, `leaks=0/1`; failure injection `fail_every=N`, `fail_rate=P` (0 to 1), `fail_after=` bytes, `fail_min=` bytes, `seed=S` (decimal or `0x..`); schedule jitter `jitter=0/1`, `jitter_rate=P` | unset (off) | [`Config::stress`] ([`Stress`]'s methods of the same names): quarantine, poison, redzones, fills, thread-attributed reports, injected allocation failures, schedule jitter; the preload library verifies every quarantined block and redzone at exit, reports injected failures per thread and the seed, and (unless `leaks=0`) writes a leak report where `ARENALLOC_STATS` says, else to stderr |
    /// | `ARENALLOC_STATS` | `1`, `0`, or an absolute path | unset (off) | [`Config::stats_at_exit`]: the preload library writes a statistics table at exit, on stderr or appended to that file (for programs whose stderr is checked) |
    ///
    /// ```
    /// use arenalloc::{Config, Heap};
    ///
    /// // Read now...
    /// let config = Config::from_env();
    /// assert!(config.get_max_arenas() >= 1);
    ///
    /// // ...or when a `static` heap first initialises (inside its first
    /// // allocation), as the preload library does:
    /// static HEAP: Heap = Heap::with_config(Config::new().at_init(Config::with_env));
    /// let p = HEAP.malloc(32);
    /// assert!(!p.is_null());
    /// unsafe { HEAP.free(p) }.unwrap();
    /// ```
    pub fn from_env() -> Config {
        Config::new().with_env()
    }

    /// This configuration with every `ARENALLOC_*` variable of the process
    /// environment applied over it (table: [`Config::from_env`]); malformed
    /// values are reported on stderr and leave the setting as it was. It
    /// reads the environment with `getenv` and parses on the stack: no
    /// allocation, no lock, no panic, so it is fit for [`Config::at_init`]
    /// (`Config::new().at_init(Config::with_env)`).
    pub fn with_env(self) -> Config {
        self.with_vars(crate::sys::getenv, write_malformed)
    }

    /// This configuration with the `ARENALLOC_*` variables that `lookup`
    /// finds applied over it (table: [`Config::from_env`]): `lookup` is
    /// asked once for each variable, by name, and answers with its value
    /// or `None` (unset). Each malformed value is passed to `report` and
    /// leaves the setting as it was. For reading settings from somewhere
    /// other than the process environment, and for tests.
    ///
    /// ```
    /// use arenalloc::{Config, Malformed};
    ///
    /// let vars = [("ARENALLOC_MAX_ARENAS", "4"), ("ARENALLOC_PURGE_MS", "soon")];
    /// let mut bad = Vec::new();
    /// let config = Config::new().with_vars(
    ///     |name| {
    ///         let name = name.to_str().ok()?;
    ///         vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_bytes())
    ///     },
    ///     |m: &Malformed<'_>| bad.push(m.to_string()),
    /// );
    /// assert_eq!(config.get_max_arenas(), 4);
    /// assert_eq!(config.get_purge_ms(), arenalloc::DEFAULT_PURGE_MS);
    /// assert_eq!(
    ///     bad,
    ///     ["ignoring malformed ARENALLOC_PURGE_MS=\"soon\" \
    ///       (expected milliseconds (0: purge at once, -1: never)); using the default"]
    /// );
    /// ```
    pub fn with_vars<'a>(
        mut self,
        mut lookup: impl FnMut(&'static CStr) -> Option<&'a [u8]>,
        mut report: impl FnMut(&Malformed<'_>),
    ) -> Config {
        for var in &VARS {
            let Some(value) = lookup(var.cname) else {
                continue;
            };
            match (var.apply)(self, value) {
                Ok(c) => self = c,
                Err(expected) => report(&Malformed {
                    var: var.name,
                    value,
                    expected,
                }),
            }
        }
        self
    }
}

/// `ARENALLOC_STRESS`'s value: `1` (on, defaults), `0` (off), or
/// `key=value` knobs separated by commas, which turn it on; `Err`: what
/// was expected.
fn parse_stress(v: &[u8]) -> Result<Stress, &'static str> {
    match v {
        b"0" => return Ok(Stress::off()),
        b"1" => return Ok(Stress::new()),
        _ => {}
    }
    let mut s = Stress::new();
    for knob in v.split(|&b| b == b',') {
        let Some(eq) = knob.iter().position(|&b| b == b'=') else {
            return Err(STRESS_EXPECTED);
        };
        let (key, value) = match knob.split_at_checked(eq) {
            Some((key, rest)) => (key, rest.get(1..).unwrap_or_default()),
            None => return Err(STRESS_EXPECTED),
        };
        let Some(k) = KNOBS.iter().find(|k| k.key == key) else {
            return Err(STRESS_EXPECTED);
        };
        s = (k.apply)(s, value).ok_or(k.expected)?;
    }
    Ok(s)
}

/// `0` or `1`.
fn parse_flag(v: &[u8]) -> Option<bool> {
    match v {
        b"0" => Some(false),
        b"1" => Some(true),
        _ => None,
    }
}

/// A byte: `0x` and one or two hex digits, or decimal.
fn parse_byte(v: &[u8]) -> Option<u8> {
    let n = match v.strip_prefix(b"0x").or_else(|| v.strip_prefix(b"0X")) {
        Some(hex) if !hex.is_empty() && hex.len() <= 2 => {
            let mut n = 0u32;
            for &b in hex {
                n = n * 16 + (b as char).to_digit(16)?;
            }
            n as usize
        }
        Some(_) => return None,
        None => parse_size(v, false)?,
    };
    u8::try_from(n).ok()
}

/// A 64-bit number: decimal, or `0x` and at most 16 hex digits.
fn parse_u64(v: &[u8]) -> Option<u64> {
    let Some(hex) = v.strip_prefix(b"0x").or_else(|| v.strip_prefix(b"0X")) else {
        return u64::try_from(parse_size(v, false)?).ok();
    };
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    let mut n = 0u64;
    for &b in hex {
        n = n << 4 | u64::from((b as char).to_digit(16)?);
    }
    Some(n)
}

/// A probability from 0 to 1: decimal digits with an optional fraction
/// (`0.001`, `.5`, `1`), then an optional exponent (`1e-3`, `5E-2`).
/// Parsed on the stack (a few significant digits are plenty for a rate).
fn parse_probability(v: &[u8]) -> Option<f64> {
    let (mantissa, exponent) = match v.iter().position(|&b| b == b'e' || b == b'E') {
        Some(at) => {
            let (m, e) = v.split_at_checked(at)?;
            let e = e.get(1..)?;
            let (negative, digits) = match e.split_first() {
                Some((b'-', d)) => (true, d),
                Some((b'+', d)) => (false, d),
                _ => (false, e),
            };
            let n = i32::try_from(parse_size(digits, false)?).ok()?;
            (m, if negative { -n } else { n })
        }
        None => (v, 0),
    };
    let (int, frac) = match mantissa.iter().position(|&b| b == b'.') {
        Some(at) => {
            let (i, f) = mantissa.split_at_checked(at)?;
            (i, f.get(1..)?)
        }
        None => (mantissa, &[][..]),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut value = 0.0f64;
    for &b in int.iter().chain(frac) {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10.0 + f64::from(b - b'0');
    }
    let scale = exponent.checked_sub(i32::try_from(frac.len()).ok()?)?;
    let p = value * 10f64.powi(scale);
    (0.0..=1.0).contains(&p).then_some(p)
}

/// A decimal number with, when `suffixes`, one of `K M G T` (binary
/// multiples, case-insensitive, an optional trailing `B` or `iB`).
fn parse_size(v: &[u8], suffixes: bool) -> Option<usize> {
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let (number, rest) = v.split_at_checked(digits)?;
    let mut n: usize = 0;
    for &b in number {
        n = n.checked_mul(10)?.checked_add(usize::from(b - b'0'))?;
    }
    if rest.is_empty() {
        return Some(n);
    }
    if !suffixes {
        return None;
    }
    let (&unit, tail) = rest.split_first()?;
    let shift = match unit.to_ascii_uppercase() {
        b'K' => 10,
        b'M' => 20,
        b'G' => 30,
        b'T' => 40,
        _ => return None,
    };
    match tail {
        b"" | b"B" | b"b" | b"iB" | b"IB" | b"ib" => n.checked_mul(1usize << shift),
        _ => None,
    }
}

#[cfg(test)]
mod env_tests {
    use super::*;

    #[test]
    fn each_name_is_its_c_name() {
        for var in &VARS {
            assert_eq!(var.cname.to_str(), Ok(var.name));
            assert!(var.name.starts_with("ARENALLOC_"));
        }
    }

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size(b"123", true), Some(123));
        assert_eq!(parse_size(b"8M", true), Some(8 << 20));
        assert_eq!(parse_size(b"64g", true), Some(64 << 30));
        assert_eq!(parse_size(b"1TiB", true), Some(1 << 40));
        assert_eq!(parse_size(b"2KB", true), Some(2048));
        assert_eq!(parse_size(b"12x", true), None);
        assert_eq!(parse_size(b"", true), None);
        assert_eq!(parse_size(b"8M", false), None);
        assert_eq!(parse_size(b"8MM", true), None);
        assert_eq!(parse_size(b"99999999999999999999999", true), None);
        assert_eq!(parse_size(b"17179869184T", true), None, "overflows");
    }

    #[test]
    fn bytes_and_flags_parse() {
        assert_eq!(parse_byte(b"0xdd"), Some(0xdd));
        assert_eq!(parse_byte(b"0XA"), Some(10));
        assert_eq!(parse_byte(b"190"), Some(190));
        assert_eq!(parse_byte(b"256"), None);
        assert_eq!(parse_byte(b"0x100"), None);
        assert_eq!(parse_byte(b"0x"), None);
        assert_eq!(parse_byte(b"0xg"), None);
        assert_eq!(parse_flag(b"1"), Some(true));
        assert_eq!(parse_flag(b"0"), Some(false));
        assert_eq!(parse_flag(b"yes"), None);
    }

    #[test]
    fn numbers_and_probabilities_parse() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"0xDEADbeef"), Some(0xdead_beef));
        assert_eq!(parse_u64(b"0xffffffffffffffff"), Some(u64::MAX));
        assert_eq!(parse_u64(b"0x"), None);
        assert_eq!(parse_u64(b"12k"), None);
        for (text, p) in [
            (&b"0"[..], 0.0),
            (b"1", 1.0),
            (b"0.5", 0.5),
            (b".25", 0.25),
            (b"1.", 1.0),
            (b"0.001", 0.001),
            (b"1e-3", 0.001),
            (b"5E-2", 0.05),
            (b"0.1e+1", 1.0),
        ] {
            let got = parse_probability(text).unwrap();
            assert!((got - p).abs() < 1e-12, "{text:?}: {got}");
        }
        for bad in [
            &b""[..],
            b".",
            b"2",
            b"1.01",
            b"-0.1",
            b"0.5x",
            b"1e",
            b"e-3",
            b"1e99999999999",
        ] {
            assert_eq!(
                parse_probability(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn stress_knobs_parse() {
        assert_eq!(parse_stress(b"1"), Ok(Stress::new()));
        assert_eq!(parse_stress(b"0"), Ok(Stress::off()));
        assert_eq!(
            parse_stress(
                b"quarantine=64M,redzone=32,free_fill=0xdd,alloc_fill=190,continue=1,leaks=0"
            ),
            Ok(Stress::new()
                .quarantine(64 << 20)
                .redzone(32)
                .free_fill(0xdd)
                .alloc_fill(190)
                .keep_going(true)
                .leak_report(false))
        );
        assert_eq!(
            parse_stress(b"fail_every=7,fail_rate=0.25,fail_after=1M,fail_min=64,seed=0x2a"),
            Ok(Stress::new()
                .fail_every(7)
                .fail_rate(0.25)
                .fail_after(1 << 20)
                .fail_min(64)
                .seed(42))
        );
        assert_eq!(
            parse_stress(b"jitter=1,seed=18446744073709551615"),
            Ok(Stress::new().jitter(true).seed(u64::MAX))
        );
        assert_eq!(
            parse_stress(b"jitter_rate=1e-1"),
            Ok(Stress::new().jitter_rate(0.1))
        );
        for (bad, expected) in [
            (&b"yes"[..], STRESS_EXPECTED),
            (b"", STRESS_EXPECTED),
            (b"redzone", STRESS_EXPECTED),
            (b"color=red", STRESS_EXPECTED),
            (b"redzone=1,", STRESS_EXPECTED),
            (b"free_fill=0x100", KNOBS[2].expected),
            (b"leaks=2", KNOBS[5].expected),
            (b"redzone=lots", KNOBS[1].expected),
            (b"fail_every=-1", KNOBS[6].expected),
            (b"fail_rate=1.5", KNOBS[7].expected),
            (b"fail_rate=", KNOBS[7].expected),
            (b"fail_after=1X", KNOBS[8].expected),
            (b"fail_min=big", KNOBS[9].expected),
            (b"seed=0x10000000000000000", KNOBS[10].expected),
            (b"seed=18446744073709551616", KNOBS[10].expected),
            (b"jitter=2", KNOBS[11].expected),
            (b"jitter_rate=-0.5", KNOBS[12].expected),
        ] {
            assert_eq!(
                parse_stress(bad),
                Err(expected),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_longest_report_fits_its_line() {
        // The longest name, a value past the quoted length and the longest
        // expectation: the line still ends whole (`Line` drops what does
        // not fit), and quotes the value's first 64 bytes.
        let expected = KNOBS
            .iter()
            .map(|k| k.expected)
            .chain([
                STRESS_EXPECTED,
                "bytes with an optional K/M/G/T suffix, at least 8M",
            ])
            .max_by_key(|e| e.len())
            .unwrap();
        let var = VARS.iter().map(|v| v.name).max_by_key(|n| n.len()).unwrap();
        let value = [b'x'; 2 * QUOTED_VALUE];
        let m = Malformed {
            var,
            value: &value,
            expected,
        };
        let line = String::from_utf8(malformed_line(&m).bytes().to_vec()).unwrap();
        assert_eq!(line, format!("arenalloc: {m}\n"));
        assert!(line.contains(&format!("=\"{}\" (expected", "x".repeat(QUOTED_VALUE))));
    }
}
