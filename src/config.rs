//! Config: the knobs of a heap, as a `const fn` builder so that a
//! `static` global allocator can be configured at compile time.
//!
//! Invariant: a `Config` may hold any values; [`Config::resolved`] clamps
//! them into the ranges the heap supports when the heap first initialises,
//! so building one can never fail and never panics.

use crate::chunk::CHUNK;
use crate::region::MAX_CHUNKS;

/// Default address space reserved per heap: 64 GiB (address space is free,
/// commit is not; only chunks handed out are committed).
pub const DEFAULT_REGION_SIZE: usize = 64 << 30;
/// Default arena limit: comfortably more threads than cores on a server.
pub const DEFAULT_MAX_ARENAS: usize = 128;
/// Most arenas a heap supports.
pub const MAX_ARENAS: usize = 4096;
/// Default capacity of each arena's remote-free queue.
pub const DEFAULT_REMOTE_QUEUE_CAPACITY: usize = 256;

/// How a heap is set up.
///
/// ```
/// use arenalloc::{Config, Heap};
/// static ONE_LOCK: Heap = Heap::with_config(Config::new().max_arenas(1).region_size(1 << 30));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    max_arenas: usize,
    region_size: usize,
    remote_queue_capacity: usize,
}

impl Config {
    /// The defaults: `DEFAULT_MAX_ARENAS` arenas, a `DEFAULT_REGION_SIZE`
    /// region, `DEFAULT_REMOTE_QUEUE_CAPACITY` remote-queue slots.
    pub const fn new() -> Config {
        Config {
            max_arenas: DEFAULT_MAX_ARENAS,
            region_size: DEFAULT_REGION_SIZE,
            remote_queue_capacity: DEFAULT_REMOTE_QUEUE_CAPACITY,
        }
    }

    /// Most arenas the heap creates (clamped to `1..=MAX_ARENAS`); `1` makes
    /// the single-global-lock heap.
    pub const fn max_arenas(mut self, n: usize) -> Config {
        self.max_arenas = n;
        self
    }

    /// Bytes of address space to reserve, metadata included (rounded up to
    /// whole chunks of 4 MiB; at least two chunks).
    pub const fn region_size(mut self, bytes: usize) -> Config {
        self.region_size = bytes;
        self
    }

    /// Slots in each arena's remote-free queue (at least 1).
    pub const fn remote_queue_capacity(mut self, n: usize) -> Config {
        self.remote_queue_capacity = n;
        self
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

    /// The values the heap actually uses.
    pub(crate) fn resolved(&self) -> Config {
        let max_region = MAX_CHUNKS * CHUNK;
        let region = self.region_size.clamp(2 * CHUNK, max_region);
        Config {
            max_arenas: self.max_arenas.clamp(1, MAX_ARENAS),
            region_size: region.next_multiple_of(CHUNK),
            remote_queue_capacity: self.remote_queue_capacity.max(1),
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::new()
    }
}
