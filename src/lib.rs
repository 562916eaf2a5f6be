//! arenalloc: a thread-safe concurrent memory allocator.
//!
//! One `mmap` region per heap is divided into per-thread arenas; each arena
//! is a locked first-fit free-block index with splitting and boundary-tag
//! coalescing; a free from a thread that does not own the block goes back
//! to its arena through a queue. The contracts (errors, ownership,
//! reentrancy, fork) and the decisions behind them are in
//! [`docs/DESIGN.md`](https://docs.rs/crate/arenalloc/latest/source/docs/DESIGN.md)
//! (`docs/DESIGN.md` in the repository); what was measured, on which
//! machine and with which command, in `benches/RESULTS.md` (the README's
//! "Results, in short" sums it up).
//!
//! ```
//! use arenalloc::Heap;
//! let heap = Heap::new();
//! let p = heap.calloc(4, 25);
//! assert_eq!(unsafe { *p.add(99) }, 0);
//! let q = unsafe { heap.realloc(p, 4000) };
//! assert!(heap.usable_size(q).unwrap() >= 4000);
//! unsafe { heap.free(q) }.unwrap();
//! ```
//!
//! # Glossary
//!
//! | term | meaning | file |
//! | --- | --- | --- |
//! | heap | a [`Heap`] value: one region, its arenas, its large allocations | `heap/` |
//! | region | the heap's one `mmap` reservation, cut into chunk slots | `region.rs` |
//! | chunk | a 4 MiB, 4 MiB-aligned slot of the region, owned by one arena or part of a large run | `chunk.rs` |
//! | arena | a lock plus the free-block index of the chunks it owns | `arena/` |
//! | block | a 16-byte header plus payload inside a chunk; free or live | `block.rs` |
//! | bin | one size class of an arena's free-block index | `bins.rs` |
//! | owner slot | a thread's owner cache and batches in front of another arena's lock and index, past `Config::max_indexes` (off by default) | `arena/mod.rs`, `heap/meta.rs` |
//! | owner cache | the arena owner's lock-free lists of blocks: one per 16-byte size up to 1 KiB (the small classes, inline), eight per doubling up to 64 KiB (the big classes) | `arena/cache.rs` |
//! | batch | claimed remote frees an owner holds for one target arena, pushed as one queue entry | `arena/remote.rs` |
//! | large allocation | a request above 1 MiB: a run of whole chunks | `large.rs` |
//! | owner | the thread bound to an arena (a token from the registry); the arena's lock alone guards its blocks | `thread/registry.rs` |
//! | binding | a thread's cached "my arena in heap H" | `thread/cache.rs`, `heap/bind.rs` |
//! | remote free | a free by a thread that is not the block's arena's owner: claim, queue, drain | `arena/remote.rs` |
//! | adoption | a thread taking over an arena whose owner exited | `heap/bind.rs` |
//! | internal pool | memory in the metadata chunk for allocations made while binding, validated and reused | `heap/pool.rs` |
//! | purge | handing a free block's whole pages back to the OS (`MADV_DONTNEED`); the block stays indexed, `PURGED` | `arena/purge.rs` |
//! | decay | purging what stayed free for `purge_ms`, applying remote frees nobody applied, releasing kept chunks and orphaned caches | `heap/purge.rs` |
//! | decay clock | the epoch arenas date dirty pages by, the request flag, the decay thread's parking | `decay.rs` |
//! | reclaim | taking an exited owner's cache and batches back (owner word `RECLAIMING`) | `arena/purge.rs` |
//! | fork repair | a `fork` child freeing the blocks the parent's other threads held mid-operation (`REMOTE_PENDING`, a dead owner's `CACHED`) | `heap/fork.rs`, `arena/fork.rs` |
//! | stress mode | quarantine, poison, redzones, fills and thread-attributed reports for the user's bugs ([`Stress`]) | `stress.rs`, `arena/quarantine.rs`, `heap/stress.rs` |
//! | quarantine | stress mode's per-arena FIFO of freed blocks (`QUARANTINED`), bounded in bytes, verified on the way out | `arena/quarantine.rs` |
//!
//! # Architecture
//!
//! The one map of the crate: the README, `docs/DESIGN.md` and the module
//! docs link here rather than repeating it. First the files, top layer
//! first; then which of them each call passes through.
//!
//! ## Layers
//!
//! ```text
//! Heap                heap/mod.rs      API + GlobalAlloc: alloc / free / realloc first; the fast paths
//!  ├─ sized           heap/sized.rs    frees told the size: skip the cache attempts, check it (hardened, stress)
//!  ├─ allocator       heap/allocator.rs  Allocator for &Heap (features allocator-api2, nightly)
//!  ├─ stress          heap/stress.rs   stress mode's paths (the one `if stress` branch on each slow path leads here)
//!  ├─ meta            heap/meta.rs     metadata in the region's first chunk; arena table; locate(ptr)
//!  ├─ pool            heap/pool.rs     bump memory for allocations made while a thread binds
//!  ├─ bind            heap/bind.rs     thread -> arena: own | adopt | create (an index, or an owner slot) | share
//!  ├─ fork            heap/fork.rs     the process's pthread_atfork handlers: every heap's locks across fork(), the child's repair
//!  └─ decay           heap/purge.rs    the decay thread that drives the clock (on demand), trim, reclaim on exhaustion
//! inspect             inspect/         stats, check, dump, heap-map SVG, leak report (impl Heap blocks, above the heap)
//! thread::cache       thread/cache.rs  a thread's binding (arena + token) per heap: the fast paths' one TLS read
//! Large               large.rs         requests above 1 MiB: runs of whole chunks, a cache of freed runs
//! Arena               arena/mod.rs     lock + free-block index + queue + counters + owner
//!  ├─ cache           arena/cache.rs   the owner cache: lock-free exact-size lists (the fast path)
//!  ├─ alloc           arena/alloc.rs   take, carve, free, coalesce, resize (the locked back end)
//!  ├─ lookup          arena/lookup.rs  which block is this pointer, is it live
//!  ├─ remote          arena/remote.rs  the cross-thread free protocol: claim, batch, push, drain
//!  ├─ purge           arena/purge.rs   free pages back to the OS (PURGED blocks), one arena's decay step
//!  ├─ quarantine      arena/quarantine.rs  stress mode under the lock: stamp, verify, poison, the FIFO, eviction
//!  ├─ check           arena/check.rs   the invariant walk
//!  └─ fork            arena/fork.rs    a fork child's repair: stranded pending and cached blocks freed
//! stress              stress.rs        stress mode's per-block record, fill patterns, reports
//! thread::registry    thread/registry.rs  tokens: who is alive (generations, the exit hook)
//!  └─ fast_slot      thread/fast_ie.rs | fast_cell.rs  the fast binding's home: an initial-exec TLS block (feature initial-exec-tls, x86-64 Linux), else the registry's thread local
//! FreeIndex           bins.rs          segregated first-fit bins + a non-empty bitmap
//! Region              region.rs        the one reservation; hands chunks out and takes them back
//! decay clock         decay.rs         the epoch, the request flag, the decay thread's parking (carried in the region)
//! Chunk               chunk.rs         4 MiB slot: owner id, allocation-start bitmap, blocks
//! Block               block.rs         the 16-byte header, boundary tags, flags
//! error               error.rs         FreeError, HeapError, the one-line abort
//! line                line.rs          a line of output on the stack (no allocation, no fmt), shared with preload/
//! sync                sync.rs          std or loom primitives: lock, cell, atomics, queue, TLS
//! config              config.rs        Config and every build-time tunable, in one table
//! sys                 sys/linux.rs     every syscall: mmap, mprotect, madvise, futex, write, abort
//!
//! preload/            the cdylib exporting the C allocation API, glibc's __libc_ names, C23's sized frees, C++'s new/delete
//! include/arenalloc.h the C header of the preload library's own functions
//! compare/            the comparison driver (`cargo run --release`) and its peers
//! ```
//!
//! Dependencies point down: `inspect` on `heap`; `heap` on everything
//! below it; `large` on `region`, `chunk` and the leaves; `arena` on
//! `thread::registry`, `stress`, `bins`, `region`, `chunk`, `block` and
//! the leaves; `thread::registry` on its `fast_slot` and the leaves (`thread::cache` holds
//! arena pointers for the heap and only the heap imports it); `region` on
//! `decay`, `chunk` and `block` (the granule and header size); the leaves — `error`, `line`, `sync`, `config`,
//! `sys` — on nothing above them. Two exceptions look sideways or up, both
//! for a message: `error`'s abort line asks `stress` for the last injected
//! failure, and `config` reads and warns through `sys` while `sys` takes
//! `config::PAGE`.
//!
//! ## Which file to open
//!
//! ```text
//! malloc ─▶ Heap::alloc_impl                                   heap/mod.rs
//!   ├─ ≤ 1 KiB: alloc_fast: cache::fast (one TLS read: an arena whose cache is ours),
//!   │    cache_pop_fast — no call, no lock (unchecked heaps)      thread/cache.rs, arena/cache.rs
//!   └─ else alloc_slow:
//!   ├─ > 1 MiB ─▶ large::alloc: run cache | region.acquire_large_run   large.rs, region.rs
//!   └─ cache::binding (arena + token, one TLS read) | bind_slow     thread/cache.rs, heap/bind.rs
//!        ├─ ≤ 64 KiB, owner: Arena::cache_pop (no lock)            arena/cache.rs
//!        │    └─ miss: cache_refill: lock, drain_into cache, carve a batch   arena/remote.rs
//!        └─ else: lock_and_drain_some ─▶ ArenaState::alloc         arena/remote.rs, arena/alloc.rs
//!             take_first_fit (bins) | grow (region chunk) ─▶ carve bins.rs, chunk.rs, block.rs
//!
//! local free ─▶ free_fast: fast binding (one TLS read),
//!   │    arena.chunk_test.holds ─▶ cache_push_fast (no call)       region.rs, arena/cache.rs
//!   └─ else free_slow: the same test, checked (hardened) ─▶ Arena::cache_push
//!   │    └─ class full: cache_flush (its newest block back to the index, under the lock)
//!   └─ else: locate (chunk map) ─▶ Arena::free_locked              heap/meta.rs, arena/remote.rs
//!        └─ lock ─▶ find_live (start bit) ─▶ ArenaState::free       arena/lookup.rs, arena/alloc.rs
//!             └─ release_block: coalesce both neighbours, index
//!                  | empty chunk: unlink_chunk (map: leaving) ─▶ after unlock,
//!                    ArenaGuard ─▶ region.release_arena_chunk      arena/mod.rs, region.rs
//!
//! remote free ─▶ locate ─▶ claim_mt (REMOTE_PENDING CAS)      arena/remote.rs, block.rs
//!   ├─ freeing thread owns an arena: batch_remote_mt (per target) ─▶ queue push of a batch
//!   └─ else: free_remote_mt ─▶ queue push of the block             sync.rs
//!        └─ later, the owner's refill: drain_into its cache | any lock holder: drain
//!        └─ queue full: the freeing thread frees under the owner's lock (free_locked)
//!
//! stress mode ─▶ the slow paths' one `if stress` (no fast path: cache off)  heap/stress.rs
//!   alloc: lock ─▶ ArenaState::stress_alloc: carve request + redzone + record, fill   arena/quarantine.rs
//!   free (any thread): the block's arena lock ─▶ find_live ─▶ stress_free: verify redzone,
//!     poison, quarantine FIFO ─▶ evict oldest past the bound: verify poison ─▶ free   stress.rs
//!
//! fork ─▶ prepare: every heap's locks (the list of heaps: heap/fork.rs)
//!   child: locks released; each arena forgets the dead threads' batches and caches,
//!     is marked; stale queues replaced ─▶ first lock holder frees stranded blocks  arena/fork.rs
//!
//! malloc_usable_size ─▶ Heap::start_usable (inline, no call, no lock)   heap/mod.rs
//!   start_test.arena_header (the heap's copy of range + map) ─▶ start bit ─▶ header ─▶ map again
//!                                                                 region.rs, chunk.rs, block.rs
//!   └─ else (hardened, stress, large, pool, no block start): one tail jump ─▶ containing:
//!        hardened: the same reads, checked, through meta | locate ─▶ with_chunk_pinned (locks)
//!
//! decay ─▶ an allocation slow path (never free), no lock held ─▶ start the thread  heap/purge.rs
//!   a free that leaves work ─▶ region.decay.want() (wakes a parked thread)  decay.rs
//!   thread, every purge_ms/2: region.decay.advance(), each arena: decay_step(Tick)  arena/purge.rs
//!     try_lock | reclaim an orphan | idle: drain, release_empty_chunks | purge_rounds
//!   idle two ticks: region.decay.park() until the next want()       decay.rs
//!   trim / region exhausted: the same with Step::Trim / Step::Space, waiting for locks
//! ```

#![warn(missing_docs)]
#![cfg_attr(feature = "nightly", feature(allocator_api))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod arena;
mod bins;
mod block;
mod chunk;
mod config;
mod decay;
mod error;
mod heap;
mod inspect;
mod large;
#[doc(hidden)]
pub mod line;
mod region;
mod stress;
mod sync;
mod sys;
mod thread;

pub use config::Malformed;
pub use config::{
    Config, Stress, CHUNK, DEFAULT_MAX_ARENAS, DEFAULT_OWNER_CACHE, DEFAULT_PURGE_MIN,
    DEFAULT_PURGE_MS, DEFAULT_QUARANTINE, DEFAULT_REDZONE, DEFAULT_REGION_SIZE,
    DEFAULT_REMOTE_QUEUE_CAPACITY, LARGE_THRESHOLD, MAX_ARENAS, MAX_OWNER_CACHE, MAX_QUARANTINE,
    MAX_REDZONE, MAX_REMOTE_QUEUE_CAPACITY,
};
pub use error::{FreeError, HeapError, HeapErrorKind};
pub use heap::Heap;
pub use inspect::stats::{ArenaStats, HeapStats};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
