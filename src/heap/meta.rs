//! Meta: what a heap keeps about itself, stored at the start of its own
//! region, and the O(1) answer to "who owns this pointer".
//!
//! ```text
//!  +----------+--------------------------+---------------+-------------+-----------+----------------+
//!  | HeapMeta | arena table (max_arenas) | internal pool | pool bitmaps | chunk map | free-slot bits |   metadata chunk(s)
//!  +----------+--------------------------+---------------+-------------+-----------+----------------+
//!  <-------------------- prefix: fixed by the Config ---------------------><-- grow with the region -->
//! ```
//!
//! The region is as large as the configuration asks if the OS grants it,
//! else smaller (`Region::reserve_at_most`: under `RLIMIT_AS` it starts from
//! half of what the limit leaves, and halves on refusal); the chunk map and
//! free-slot bits are laid out for the size actually granted, which
//! `config.region_size` then holds and `stats` reports.
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
use crate::block::GRANULE;
use crate::chunk::CHUNK;
use crate::config::{Config, META_REGION_SHARE, MIN_TABLE_ARENAS};
use crate::error::FreeError;
use crate::large::LargeStats;
use crate::region::{ChunkUse, MetaLayout, Region};
use crate::sync::RawLock;
use crate::thread::registry;

use super::pool::{pool_bitmap_bytes, pool_bytes, Pool};

/// Everything a heap keeps, stored at the start of its own region.
pub(crate) struct HeapMeta {
    pub(crate) region: Region,
    pub(crate) large: LargeStats,
    /// The configuration in force (clamped; `region_size` is the size
    /// granted, which may be less than asked; `max_arenas` the table's
    /// slots, which a small region may make fewer: `table_arenas`).
    pub(crate) config: Config,
    /// Process-unique id: the key of every thread's binding cache.
    pub(crate) id: u64,
    /// Per-heap random secret keying block-header checks and free-list
    /// link mangling (`block.rs`); never changes.
    pub(crate) secret: u64,
    /// `Key::new(secret, hardened)`: every arena's key, kept here for the
    /// lock-free queries of a hardened heap (`Heap::start_usable_checked`);
    /// never changes.
    pub(crate) key: crate::block::Key,
    /// The arena table: `config.max_arenas` slots.
    pub(super) arenas: *mut ArenaSlot,
    /// Slots handed to creators so far; a prefix of the table. Raised only
    /// under `arena_lock`.
    arenas_reserved: AtomicUsize,
    /// Serialises slot reservation (never held while allocating).
    pub(super) arena_lock: RawLock,
    /// Arenas with an index of their own reserved so far: ids
    /// `0..indexes` (owner slots are made only once this reached the
    /// limit, which never changes). Raised only under `arena_lock`.
    indexes: AtomicUsize,
    /// Owner slots reserved so far, for spreading them round-robin over
    /// the arenas. Changed only under `arena_lock`.
    slots_made: AtomicUsize,
    /// The internal pool (`pool.rs`) and its bitmaps, in the prefix.
    pub(super) pool: Pool,
    /// Most arenas created from now on (`Heap::set_max_arenas`): at most
    /// `config.max_arenas`, the table's size.
    pub(super) arena_cap: AtomicUsize,
    /// The smallest purged block new arenas start with
    /// (`Heap::set_purge_min`).
    pub(super) purge_min: AtomicUsize,
    /// The decay thread's state (`purge.rs`).
    pub(crate) decay: super::purge::Decay,
    /// Stress mode's sequence, report count, and failure injection's and
    /// jitter's seed and counters (`stress.rs`).
    pub(crate) stress: crate::stress::Shared,
    /// The next heap in the process's list of heaps that `fork` handles
    /// (`fork.rs`); changed only under that list's lock.
    pub(super) fork_next: core::sync::atomic::AtomicPtr<HeapMeta>,
}

/// One entry of the arena table: `ready` is set (`Release`) once `arena`
/// is initialised, and never cleared until the heap drops.
pub(super) struct ArenaSlot {
    pub(super) ready: AtomicBool,
    pub(super) arena: MaybeUninit<Arena>,
}

impl HeapMeta {
    /// Whether the heap runs in stress mode: the one branch the slow paths
    /// take to `heap/stress.rs` (a `bool` in the metadata, fixed at init).
    #[inline(always)]
    pub(crate) fn stress_on(&self) -> bool {
        self.config.get_stress().is_on()
    }

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

    /// The arenas and owner slots that exist, by id: every owner cache
    /// and every batch of remote frees is in one of them.
    pub(crate) fn arenas(&self) -> impl Iterator<Item = &Arena> + '_ {
        (0..self.arena_count() as u32).filter_map(|id| self.arena(id))
    }

    /// The arenas with an index of their own (no owner slot), by id: every
    /// lock, index, chunk list and remote queue is in exactly one of them.
    pub(crate) fn indexes(&self) -> impl Iterator<Item = &Arena> + '_ {
        self.arenas().filter(|a| a.has_index())
    }

    /// The arenas and owner slots whose owner caches are in front of
    /// `home`'s index (`home` itself included).
    pub(crate) fn owners_of<'a>(&'a self, home: &'a Arena) -> impl Iterator<Item = &'a Arena> + 'a {
        self.arenas().filter(move |a| home.serves(a))
    }

    /// Whether threads past `max_indexes` get owner slots: only where
    /// there is an owner cache to give them (not with `max_arenas(1)`,
    /// `owner_cache(0)` or stress mode, which clears it).
    fn makes_slots(&self) -> bool {
        self.config.get_max_arenas() > 1 && self.config.get_owner_cache() > 0
    }

    /// Creates an arena owned by `owner` (a token or 0) if the table has
    /// room: one with an index of its own while fewer than `max_indexes`
    /// exist, else an owner slot in front of one of them (round-robin;
    /// `Config::max_indexes`). Reserves the table slot under
    /// `arena_lock`, then builds the arena — whose queue allocates — with
    /// no lock held.
    pub(super) fn create_arena(&self, owner: u64) -> Option<&Arena> {
        self.arena_lock.lock();
        let n = self.arenas_reserved.load(Ordering::Relaxed);
        let cap = self.arena_cap.load(Ordering::Relaxed);
        let room = n < self.config.get_max_arenas().min(cap);
        let indexes = self.indexes.load(Ordering::Relaxed);
        let mut home = None;
        if room {
            self.arenas_reserved.store(n + 1, Ordering::Release);
            if self.makes_slots() && indexes >= self.config.get_max_indexes() && indexes > 0 {
                let made = self.slots_made.load(Ordering::Relaxed);
                self.slots_made.store(made + 1, Ordering::Relaxed);
                home = Some((made % indexes) as u32);
            } else {
                self.indexes.store(indexes + 1, Ordering::Relaxed);
            }
        }
        // SAFETY: taken above.
        unsafe { self.arena_lock.unlock() };
        if !room {
            return None;
        }
        // An owner slot's arena was reserved before it and may still be in
        // creation (by a thread that needs nothing from us): wait for it.
        let home = match home {
            Some(id) => loop {
                match self.arena(id) {
                    Some(a) => break Some(a),
                    None => crate::sync::yield_now(),
                }
            },
            None => None,
        };
        // SAFETY: slot `n` was reserved by us alone and is inside the
        // table; only its address is taken here.
        let slot_home = unsafe { (*self.arenas.add(n)).arena.as_ptr() };
        let mut arena = Arena::new(
            n as u32,
            // An owner slot uses its arena's queue: its own is never used.
            if home.is_some() {
                1
            } else {
                self.config.get_remote_queue_capacity()
            },
            owner,
            self.key,
            // One arena is the one-lock baseline: no cache in front of it.
            if self.config.get_max_arenas() == 1 {
                0
            } else {
                self.config.get_owner_cache()
            },
            crate::arena::purge::Policy::new(
                self.config.get_purge_ms(),
                self.purge_min.load(Ordering::Relaxed),
            ),
            self.config.get_stress(),
            slot_home,
        );
        arena.chunk_test = self.region.chunk_test(n as u32);
        arena.region = &self.region;
        if let Some(h) = home {
            arena.share(h);
        }
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
    /// A live block of the internal pool: `(payload, usable)`; its header
    /// verified (`pool.rs`).
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
        // Only the payload of a live pool block is one; a freed one is
        // `DoubleFree`; the rest of the metadata is `NotAllocated`.
        ChunkUse::Meta => meta.pool_lookup(addr).map(|(p, u)| Owner::Pool(p, u)),
    }
}

/// Where the parts of the metadata prefix (module doc's picture) lie for
/// a configuration: everything before the chunk map.
#[derive(Clone, Copy)]
struct PrefixLayout {
    arenas_offset: usize,
    pool_offset: usize,
    pool_len: usize,
    pool_bits_offset: usize,
    /// Bytes of the whole prefix.
    total: usize,
}

/// The prefix for `config`'s arena table and pool; `None` if the pool is
/// too large to index.
fn prefix_layout(config: &Config) -> Option<PrefixLayout> {
    let arenas_offset =
        core::mem::size_of::<HeapMeta>().next_multiple_of(core::mem::align_of::<ArenaSlot>());
    let pool_offset = (arenas_offset + config.get_max_arenas() * core::mem::size_of::<ArenaSlot>())
        .next_multiple_of(64);
    let pool_len = pool_bytes(config);
    if pool_len / GRANULE >= u32::MAX as usize {
        return None;
    }
    let pool_bits_offset = (pool_offset + pool_len).next_multiple_of(64);
    Some(PrefixLayout {
        arenas_offset,
        pool_offset,
        pool_len,
        pool_bits_offset,
        total: pool_bits_offset + pool_bitmap_bytes(pool_len),
    })
}

/// Arena slots the table of a region of `chunks` chunks gets: the
/// configured `max_arenas`, halved while the metadata would take more
/// than `1 / META_REGION_SHARE` of the region (at least one chunk), but
/// never below `MIN_TABLE_ARENAS` (nor raised to it). So the default's
/// 1024 slots (3 chunks of metadata) go to a region of 192 MiB or more
/// (the default is 64 GiB), and a region under 128 MiB gets 256 slots in
/// one chunk of metadata: the room for data it had with 128.
fn table_arenas(config: &Config, chunks: usize) -> usize {
    let budget = (chunks / META_REGION_SHARE).max(1) * CHUNK;
    let mut n = config.get_max_arenas();
    while n > MIN_TABLE_ARENAS {
        let fits = prefix_layout(&config.max_arenas(n))
            .is_some_and(|p| MetaLayout::new(p.total, chunks).total <= budget);
        if fits {
            break;
        }
        n = (n / 2).max(MIN_TABLE_ARENAS);
    }
    n
}

/// Reserves a region for `config` — as large as it asks, or smaller if
/// that is what the OS grants (module doc) — and builds the metadata in it;
/// null if the OS refuses even the smallest region that holds its metadata.
pub(super) fn create_meta(config: Config) -> *mut HeapMeta {
    // The chunk map and free-slot bits depend on the region's size, and so
    // does the arena table (`table_arenas`): one layout per size tried,
    // and the one for the size granted is used.
    let layout_for = |len: usize| {
        let chunks = len / CHUNK;
        let config = config.max_arenas(table_arenas(&config, chunks));
        let prefix = prefix_layout(&config)?;
        let layout = MetaLayout::new(prefix.total, chunks);
        (layout.total.div_ceil(CHUNK) < chunks).then_some((config, prefix, layout))
    };
    let reserved = Region::reserve_at_most(config.get_region_size(), |len| {
        layout_for(len).map(|(_, _, l)| l.total)
    });
    let Some((base, len)) = reserved else {
        return ptr::null_mut();
    };
    let Some((config, prefix, layout)) = layout_for(len) else {
        // `reserve_at_most` grants only sizes `layout_for` accepts.
        // SAFETY: the reservation was just made and nothing uses it.
        unsafe { crate::sys::unreserve(base, len) };
        return ptr::null_mut();
    };
    let PrefixLayout {
        arenas_offset,
        pool_offset,
        pool_len,
        pool_bits_offset,
        ..
    } = prefix;
    let config = config.region_size(len);
    let meta = base.cast::<HeapMeta>();
    // SAFETY: (1) the metadata chunks are committed, zeroed and ours alone;
    // (2) every field is written exactly once before `meta` is published;
    // (3) `layout` was computed for this region's size, `len`; (4) the pool
    // and its bitmaps lie in the prefix, inside the committed metadata,
    // GRANULE- and 64-aligned, and `pool_len / GRANULE` fits a u32.
    unsafe {
        Region::init_in_place(addr_of_mut!((*meta).region), base, len, &layout);
        addr_of_mut!((*meta).large).write(LargeStats::default());
        addr_of_mut!((*meta).config).write(config);
        addr_of_mut!((*meta).arenas).write(base.add(arenas_offset).cast());
        addr_of_mut!((*meta).id).write(registry::new_heap_id());
        let secret = crate::sys::random_u64(base as u64);
        addr_of_mut!((*meta).secret).write(secret);
        addr_of_mut!((*meta).key).write(crate::block::Key::new(secret, config.get_hardened()));
        addr_of_mut!((*meta).arenas_reserved).write(AtomicUsize::new(0));
        addr_of_mut!((*meta).arena_lock).write(RawLock::new());
        addr_of_mut!((*meta).indexes).write(AtomicUsize::new(0));
        addr_of_mut!((*meta).slots_made).write(AtomicUsize::new(0));
        addr_of_mut!((*meta).pool).write(Pool::new(
            base as usize + pool_offset,
            pool_len,
            base.add(pool_bits_offset),
            secret,
        ));
        addr_of_mut!((*meta).arena_cap).write(AtomicUsize::new(config.get_max_arenas()));
        addr_of_mut!((*meta).purge_min).write(AtomicUsize::new(config.get_purge_min()));
        addr_of_mut!((*meta).decay).write(super::purge::Decay::new(&config));
        // The seed when none is given: drawn apart from the secret, which
        // an exit report printing the seed must not reveal.
        let drawn = crate::sys::random_u64(base as u64 ^ 0x7365_6564);
        addr_of_mut!((*meta).stress).write(crate::stress::Shared::new(&config.get_stress(), drawn));
        addr_of_mut!((*meta).fork_next).write(core::sync::atomic::AtomicPtr::new(ptr::null_mut()));
    }
    meta
}
