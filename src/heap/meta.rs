//! Meta: what a heap keeps about itself, stored at the start of its own
//! region, and the O(1) answer to "who owns this pointer".
//!
//! ```text
//!  +----------+---------------------------+---------------+-----------+----------------+
//!  | HeapMeta | arena table (max_arenas)  | internal pool | chunk map | free-slot bits |   metadata chunk(s)
//!  +----------+---------------------------+---------------+-----------+----------------+
//! ```
//!
//! Invariants:
//! * Arenas `0..arenas_reserved` of the table are reserved; a reserved slot
//!   is initialised once its `ready` flag is set (`Release`), and the count
//!   only grows, under `arena_lock`, with `Release`, so a reader who sees
//!   the count (`Acquire`) and the flag sees the arena.
//! * A pointer is ours iff it lies in the region and the chunk map says so;
//!   the owning arena is named by the map entry, so `free` never searches.

use core::mem::MaybeUninit;
use core::ptr::{self, addr_of_mut};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::arena::Arena;
use crate::chunk::CHUNK;
use crate::config::Config;
use crate::error::FreeError;
use crate::large::LargeStats;
use crate::region::{ChunkUse, MetaLayout, Region};
use crate::sync::RawLock;
use crate::thread::registry;

use super::pool::pool_bytes;

/// Everything a heap keeps, stored at the start of its own region.
pub(crate) struct HeapMeta {
    pub(crate) region: Region,
    pub(crate) large: LargeStats,
    /// The configuration in force (clamped).
    pub(crate) config: Config,
    /// Process-unique id: the key of every thread's binding cache.
    pub(crate) id: u64,
    /// Per-heap random secret keying block-header checks and free-list
    /// link mangling (`block.rs`); never changes.
    pub(crate) secret: u64,
    /// The arena table: `config.max_arenas` slots.
    pub(super) arenas: *mut ArenaSlot,
    /// Slots handed to creators so far; a prefix of the table. Raised only
    /// under `arena_lock`.
    arenas_reserved: AtomicUsize,
    /// Serialises slot reservation (never held while allocating).
    pub(super) arena_lock: RawLock,
    /// Start of the internal pool.
    pub(super) pool_start: usize,
    /// Bump pointer of the internal pool (next free byte).
    pub(super) pool_next: AtomicUsize,
    /// End of the internal pool.
    pub(super) pool_end: usize,
}

/// One entry of the arena table: `ready` is set (`Release`) once `arena`
/// is initialised, and never cleared until the heap drops.
pub(super) struct ArenaSlot {
    pub(super) ready: AtomicBool,
    pub(super) arena: MaybeUninit<Arena>,
}

impl HeapMeta {
    /// Arena `id`, if it exists.
    #[inline]
    pub(crate) fn arena(&self, id: u32) -> Option<&Arena> {
        let id = id as usize;
        if id >= self.arenas_reserved.load(Ordering::Acquire) {
            return None;
        }
        // SAFETY: `id` is below the reserved count, so inside the table; a
        // ready slot holds an initialised arena that lives until Drop.
        unsafe {
            let slot = &*self.arenas.add(id);
            slot.ready
                .load(Ordering::Acquire)
                .then(|| slot.arena.assume_init_ref())
        }
    }

    /// Number of arena slots handed out so far (some may still be in
    /// creation: `arena(id)` tells).
    pub(crate) fn arena_count(&self) -> usize {
        self.arenas_reserved.load(Ordering::Acquire)
    }

    /// The arenas that exist, by id.
    pub(crate) fn arenas(&self) -> impl Iterator<Item = &Arena> + '_ {
        (0..self.arena_count() as u32).filter_map(|id| self.arena(id))
    }

    /// Creates an arena owned by `owner` (a token or 0) if the table has
    /// room. Reserves the slot under `arena_lock`, then builds the arena —
    /// whose queue allocates — with no lock held.
    pub(super) fn create_arena(&self, owner: u64) -> Option<&Arena> {
        self.arena_lock.lock();
        let n = self.arenas_reserved.load(Ordering::Relaxed);
        let room = n < self.config.get_max_arenas();
        if room {
            self.arenas_reserved.store(n + 1, Ordering::Release);
        }
        // SAFETY: taken above.
        unsafe { self.arena_lock.unlock() };
        if !room {
            return None;
        }
        let arena = Arena::new(
            n as u32,
            self.config.get_remote_queue_capacity(),
            owner,
            self.secret,
        );
        // SAFETY: slot `n` was reserved by us alone and is inside the table;
        // it is published with `ready` only after it is written.
        unsafe {
            let slot = &mut *self.arenas.add(n);
            slot.arena.write(arena);
            slot.ready.store(true, Ordering::Release);
        }
        self.arena(n as u32)
    }
}

/// Where a pointer lives.
pub(super) enum Owner<'a> {
    Arena(&'a Arena),
    Large,
    /// A block of the internal pool: `(payload, usable)`.
    Pool(usize, usize),
}

/// Which part of the heap owns `addr`, or why none does.
#[inline]
pub(super) fn locate(meta: &HeapMeta, addr: usize) -> Result<Owner<'_>, FreeError> {
    if !meta.region.contains(addr) {
        return Err(FreeError::OutsideHeap);
    }
    match meta.region.chunk_use(meta.region.chunk_index(addr)) {
        ChunkUse::Arena(id) => meta
            .arena(id)
            .map(Owner::Arena)
            .ok_or(FreeError::NotAllocated),
        ChunkUse::LargeHead | ChunkUse::LargeTail(_) => Ok(Owner::Large),
        ChunkUse::Free => Err(FreeError::DoubleFree),
        ChunkUse::Meta => meta
            .pool_block(addr)
            .map(|(p, u)| Owner::Pool(p, u))
            .ok_or(FreeError::NotAllocated),
    }
}

/// Reserves a region for `config` and builds the metadata in it; null if
/// the OS refuses or the region cannot even hold its metadata.
pub(super) fn create_meta(config: Config) -> *mut HeapMeta {
    let chunks = config.get_region_size() / CHUNK;
    let arenas_offset =
        core::mem::size_of::<HeapMeta>().next_multiple_of(core::mem::align_of::<ArenaSlot>());
    let pool_offset = (arenas_offset + config.get_max_arenas() * core::mem::size_of::<ArenaSlot>())
        .next_multiple_of(64);
    let prefix = pool_offset + pool_bytes(&config);
    let layout = MetaLayout::new(prefix, chunks);
    if layout.total.div_ceil(CHUNK) >= chunks {
        return ptr::null_mut();
    }
    let Some(base) = Region::reserve(config.get_region_size(), layout.total) else {
        return ptr::null_mut();
    };
    let meta = base.cast::<HeapMeta>();
    // SAFETY: (1) the metadata chunks are committed, zeroed and ours alone;
    // (2) every field is written exactly once before `meta` is published;
    // (3) `layout` was computed for this region's size.
    unsafe {
        Region::init_in_place(
            addr_of_mut!((*meta).region),
            base,
            config.get_region_size(),
            &layout,
        );
        addr_of_mut!((*meta).large).write(LargeStats::default());
        addr_of_mut!((*meta).config).write(config);
        addr_of_mut!((*meta).arenas).write(base.add(arenas_offset).cast());
        addr_of_mut!((*meta).id).write(registry::new_heap_id());
        addr_of_mut!((*meta).secret).write(crate::sys::random_u64(base as u64));
        addr_of_mut!((*meta).arenas_reserved).write(AtomicUsize::new(0));
        addr_of_mut!((*meta).arena_lock).write(RawLock::new());
        let pool = base as usize + pool_offset;
        addr_of_mut!((*meta).pool_start).write(pool);
        addr_of_mut!((*meta).pool_next).write(AtomicUsize::new(pool));
        addr_of_mut!((*meta).pool_end).write(pool + pool_bytes(&config));
    }
    meta
}
