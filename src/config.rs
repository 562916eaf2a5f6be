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
//! | [`DRAIN_BATCH`] | 64 | `remote` | remote frees applied per lock acquisition on the owner's path |
//! | [`DRAIN_ROUND`] | 256 | `remote`, `arena::purge` | remote frees applied per lock acquisition off the owner's path (adoption, `stats`, decay, trim): how long an owner can wait behind another lock holder's drain |
//! | [`REMOTE_BATCH`], [`REMOTE_BATCH_BYTES`] | 32, 64 KiB | `remote` | remote frees per queue entry against frees held back (pending) |
//! | [`SPINS_BEFORE_SLEEP`] | 100 | `sync` | spinning on a held arena lock before `futex_wait` |
//! | [`POOL_SLACK`] | 64 KiB | `heap::pool` | internal-pool bytes beyond the queue buffers, for runtime allocations made while a thread binds |
//! | [`MAX_THREADS`] | 4096 | `thread::registry` | threads that can own an arena at once (more share) |
//! | [`BINDING_WAYS`] | 4 | `thread::cache` | heaps a thread keeps a binding for without a slow path |
//! | [`DEFAULT_REGION_SIZE`] | 64 GiB | `Config` | address space reserved per heap |
//! | [`DEFAULT_MAX_ARENAS`] | 128 | `Config` | arenas before threads share (lock contention) |
//! | [`MAX_ARENAS`] | 4096 | `Config` | the most arenas a heap table has room for |
//! | [`DEFAULT_REMOTE_QUEUE_CAPACITY`] | 256 | `Config` | queue-full fallbacks against queue memory per arena |
//! | [`DEFAULT_OWNER_CACHE`] | 1 MiB | `Config` | lock acquisitions saved against memory parked in owner caches |
//! | [`CACHE_MAX_REQUEST`] | 1 KiB | `arena::cache` | requests served lock-free (one class per 16 bytes) |
//! | [`CACHE_DRAIN`] | 256 | `arena::cache` | remote frees taken back (onto the cache) per refill |
//! | [`CACHE_CLASS_LIMIT`] | 64 | `arena::cache` | blocks one class parks before a flush (of half of them) |
//! | [`CACHE_REFILL`], [`CACHE_REFILL_BYTES`] | 32, 8 KiB | `arena::cache` | blocks carved per refill (one lock acquisition), at most this many bytes |
//! | [`CACHE_FILL_LEVELS`] | 3 | `arena::cache` | a class's first refill carves an eighth of a batch, doubling per refill: lock acquisitions of a hot class against carved blocks left idle in a cold one |
//! | [`CACHE_SWEEP_EVERY`] | 1024 | `arena::cache` | owner slow paths between sweeps that give back classes nobody allocated from: memory parked in idle classes against flushes of briefly idle ones |
//! | [`MAX_OWNER_CACHE`] | 4 MiB | `Config` | the most an owner cache may park |
//! | [`MAX_REMOTE_QUEUE_CAPACITY`] | 65536 | `Config` | the largest queue: its 1 MiB buffer is the internal pool's most per arena |
//! | [`DEFAULT_PURGE_MS`] | 200 ms | `Config`, `heap::purge` | how long free pages stay resident (reuse without a page fault) against RSS held after a burst |
//! | [`DECAY_THREAD_AFTER`] | 16 MiB | `heap::purge` | committed bytes from which an allocation starts the decay thread ahead of need (small programs never get one) |
//! | [`DEFAULT_PURGE_MIN`] | 64 KiB | `Config`, `arena::purge` | the smallest free block whose pages are purged: syscalls against RSS in small free runs |
//! | [`DEFAULT_QUARANTINE`], [`MAX_QUARANTINE`] | 16 MiB, 1 GiB | `Stress`, `arena::quarantine` | per arena: how long a freed block waits (late writes caught) against memory held |
//! | [`DEFAULT_REDZONE`], [`MAX_REDZONE`] | 16, 4096 bytes | `Stress`, `stress` | overflows caught beyond the request against bytes per block |
//! | [`LEAK_GROUPS`] | 4096 | `inspect::leaks` | distinct (size, thread) groups a leak report keeps (the rest are summed) |

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
/// Remote-queue entries an arena drains per lock acquisition on its
/// alloc/free path.
pub(crate) const DRAIN_BATCH: usize = 64;
/// Remote-queue entries' blocks a lock holder off the owner's path
/// (adoption, `stats`, `dump`, decay, trim) applies per acquisition: one
/// that must empty the queue takes the lock again for the next round, so
/// an owner's refill waits behind at most this many frees (plus the rest
/// of one batch entry).
pub(crate) const DRAIN_ROUND: usize = 4 * DRAIN_BATCH;
/// Claimed remote frees one batch holds before it is pushed...
pub(crate) const REMOTE_BATCH: usize = 32;
/// ...or bytes: what an owner keeps claimed but unsent per target.
pub(crate) const REMOTE_BATCH_BYTES: usize = 64 << 10;
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
/// Default arena limit: comfortably more threads than cores on a server.
pub const DEFAULT_MAX_ARENAS: usize = 128;
/// Most arenas a heap supports.
pub const MAX_ARENAS: usize = 4096;
/// Largest request (payload bytes) the owner cache serves: one exact-size
/// class per 16 bytes up to here.
pub(crate) const CACHE_MAX_REQUEST: usize = 1024;
/// Most blocks one class of an owner cache holds.
pub(crate) const CACHE_CLASS_LIMIT: u32 = 64;
/// Most blocks one refill carves under one lock acquisition...
pub(crate) const CACHE_REFILL: usize = 32;
/// ...and most bytes: small classes refill many blocks, large ones few.
pub(crate) const CACHE_REFILL_BYTES: usize = 8 << 10;
/// Refill levels of a class: its first refill carves `1 / 2^CACHE_FILL_LEVELS`
/// of a full batch, each further one twice the last, up to the full batch.
pub(crate) const CACHE_FILL_LEVELS: u8 = 3;
/// Owner slow paths (refills, flushes, locked calls) between two sweeps of
/// the owner cache for classes nobody allocated from since the last one.
pub(crate) const CACHE_SWEEP_EVERY: u32 = 1024;
/// Remote frees an owner drains per cache refill, straight onto its cache.
pub(crate) const CACHE_DRAIN: usize = 256;
/// Default bytes of each arena's owner cache.
pub const DEFAULT_OWNER_CACHE: usize = 1 << 20;
/// Most bytes an owner cache may hold (a chunk's worth).
pub const MAX_OWNER_CACHE: usize = CHUNK;
/// Default capacity of each arena's remote-free queue.
pub const DEFAULT_REMOTE_QUEUE_CAPACITY: usize = 256;
/// The largest remote-queue capacity a heap uses; larger settings are
/// clamped to it. A queue of this many slots has a buffer of a stamp and a
/// value per slot (`MpmcQueue::buffer_bytes`), [`LARGE_THRESHOLD`] bytes:
/// the most the internal pool sets aside per arena (`heap::pool`), so a
/// heap that is its own global allocator can always build its queues, and
/// no buffer-size computation can overflow (`heap` checks both at compile
/// time).
pub const MAX_REMOTE_QUEUE_CAPACITY: usize = LARGE_THRESHOLD / (2 * core::mem::size_of::<usize>());
/// Default decay: free pages are purged between half of this and this long
/// after they became free (`Config::purge_ms`).
pub const DEFAULT_PURGE_MS: i64 = 200;
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stress {
    on: bool,
    quarantine: usize,
    redzone: usize,
    free_fill: u8,
    alloc_fill: u8,
    keep_going: bool,
    leaks: bool,
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

    /// The settings the heap uses: clamped.
    const fn clamped(self) -> Stress {
        Stress {
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
/// ```
/// use arenalloc::{Config, Heap};
/// static ONE_LOCK: Heap = Heap::with_config(Config::new().max_arenas(1).region_size(1 << 30));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Config {
    max_arenas: usize,
    region_size: usize,
    remote_queue_capacity: usize,
    hardened: bool,
    owner_cache: usize,
    purge_ms: i64,
    purge_min: usize,
    purge_thread: bool,
    stress: Stress,
    at_init: Option<fn(Config) -> Config>,
}

impl Config {
    /// The defaults: `DEFAULT_MAX_ARENAS` arenas, a `DEFAULT_REGION_SIZE`
    /// region, `DEFAULT_REMOTE_QUEUE_CAPACITY` remote-queue slots.
    pub const fn new() -> Config {
        Config {
            max_arenas: DEFAULT_MAX_ARENAS,
            region_size: DEFAULT_REGION_SIZE,
            remote_queue_capacity: DEFAULT_REMOTE_QUEUE_CAPACITY,
            hardened: false,
            owner_cache: DEFAULT_OWNER_CACHE,
            purge_ms: DEFAULT_PURGE_MS,
            purge_min: DEFAULT_PURGE_MIN,
            purge_thread: true,
            stress: Stress::off(),
            at_init: None,
        }
    }

    /// Most arenas the heap creates (clamped to `1..=MAX_ARENAS`); `1` makes
    /// the single-global-lock heap.
    pub const fn max_arenas(mut self, n: usize) -> Config {
        self.max_arenas = n;
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
    /// environment (the preload library reads `ARENALLOC_*` this way). It
    /// runs inside the first allocation: it must not allocate from this
    /// heap, and should not panic.
    pub const fn at_init(mut self, f: fn(Config) -> Config) -> Config {
        self.at_init = Some(f);
        self
    }

    /// Heap-corruption checks (README "Safety"): a keyed check value in
    /// every block header, verified on every free, realloc and coalesce;
    /// `prev_size` boundary tags mangled and cross-checked against the block
    /// they name; free-list links safe-linked and validated when taken. A
    /// failed check aborts with `arenalloc: heap corruption at 0x… (…)`.
    /// Off by default: on the locked path they cost 25-50 % per call
    /// (measured; README). On in the test suites. The preload library reads
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
    /// they appeared — done by a background thread the heap starts when
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
        Config {
            max_arenas: given.max_arenas.clamp(1, MAX_ARENAS),
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
            at_init: None,
        }
    }
}

impl PartialEq for Config {
    /// Equal when every setting is; an `at_init` hook is compared by
    /// whether one is set (function addresses are not stable).
    fn eq(&self, other: &Config) -> bool {
        self.max_arenas == other.max_arenas
            && self.region_size == other.region_size
            && self.remote_queue_capacity == other.remote_queue_capacity
            && self.hardened == other.hardened
            && self.owner_cache == other.owner_cache
            && self.purge_ms == other.purge_ms
            && self.purge_min == other.purge_min
            && self.purge_thread == other.purge_thread
            && self.stress == other.stress
            && self.at_init.is_some() == other.at_init.is_some()
    }
}

impl Eq for Config {}

impl Default for Config {
    fn default() -> Config {
        Config::new()
    }
}
