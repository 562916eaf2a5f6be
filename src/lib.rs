//! arenalloc: a thread-safe concurrent memory allocator.
//!
//! One `mmap` region per heap is divided into per-thread arenas; each arena
//! is a locked first-fit free-block index with splitting and boundary-tag
//! coalescing. See `README.md` for the picture and the numbers, and
//! `DESIGN.md` (in the project's shared folder) for the contracts.
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
//! | term | meaning |
//! | --- | --- |
//! | heap | a [`Heap`] value: one region, its arenas, its large allocations |
//! | region | the heap's one `mmap` reservation, cut into chunk slots (`region.rs`) |
//! | chunk | a 4 MiB, 4 MiB-aligned slot of the region, owned by one arena or part of a large run (`chunk.rs`) |
//! | arena | a lock plus the free-block index of the chunks it owns (`arena.rs`) |
//! | block | a header plus payload inside a chunk; free or live (`block.rs`) |
//! | bin | one size class of an arena's free-block index (`bins.rs`) |
//! | large allocation | a request above 1 MiB: a run of whole chunks (`large.rs`) |
//! | owner | the arena whose chunk holds a block; only its lock guards the block |
//! | remote free | a free by a thread whose arena is not the block's owner |
//! | adoption | a thread taking over an arena whose thread exited |
//!
//! # Layers
//!
//! `Heap` (heap.rs) -> `Arena` (arena.rs) -> `FreeIndex` (bins.rs) / blocks
//! (block.rs) inside chunks (chunk.rs); `Region` (region.rs) only hands
//! chunks to arenas and large runs (large.rs) and takes them back. No layer
//! reaches upward. `sync.rs` is the one shim for concurrency primitives.

#![warn(missing_docs)]

mod arena;
mod bins;
mod block;
mod chunk;
mod config;
mod error;
mod heap;
mod large;
mod region;
mod remote;
mod stats;
mod svg;
mod sync;
mod thread;

pub use chunk::CHUNK;
pub use config::{
    Config, DEFAULT_MAX_ARENAS, DEFAULT_REGION_SIZE, DEFAULT_REMOTE_QUEUE_CAPACITY, MAX_ARENAS,
};
pub use error::{FreeError, HeapError, HeapErrorKind};
pub use heap::Heap;
pub use stats::{ArenaStats, HeapStats};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Requests above this many bytes are served as whole-chunk runs.
pub const LARGE_THRESHOLD: usize = large::LARGE_THRESHOLD;
