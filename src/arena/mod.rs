//! Arena: a lock, the free-block index of the chunks it owns, and counters.
//!
//! Every block of an arena's chunks is allocated, split, coalesced and freed
//! only while the arena's lock is held; the lock is the *only* thing that
//! serialises two threads touching the same blocks. With one arena per
//! thread the lock is uncontended (one atomic compare-exchange to take, one
//! swap to release); with `max_arenas(1)` it is the one global lock.
//!
//! Files: this one holds the arena itself (lock, ownership, the remote
//! queue it owns, fork reset); `alloc.rs` the hot path under the lock
//! (take, carve, free, coalesce, resize); `lookup.rs` pointer validation
//! (which block is `ptr`); `check.rs` the invariant walk; `quarantine.rs`
//! stress mode's side under the lock (stamp, verify, poison, FIFO);
//! `remote.rs` the cross-thread free protocol over the queue and the
//! batches (claim, push, drain), whose drain the cache refill and the decay
//! step call; `cache.rs` the owner cache; `purge.rs` pages back to the OS
//! and one arena's decay step; `fork.rs` a fork child's repair.
//!
//! Invariants (checked by `ArenaState::check`):
//! * the arena's chunks form a doubly linked list of `chunk_count` chunks,
//!   each with `arena_id == id` and marked `Arena(id)` in the region map;
//! * every free block of those chunks is in exactly one bin of `index`;
//! * the counters equal what a walk of the chunks finds, and
//!   `live_bytes + live_blocks * HEADER + free_bytes == chunk_count * CHUNK_DATA`;
//! * `empty_chunks` counts chunks that are one free block; at most one of
//!   them is kept when a free empties a chunk — the next one goes back to
//!   the region (purged), so RSS follows the live set.
//!
//! Ownership: `owner` holds the token (`thread::registry`) of the thread
//! bound to the arena, or 0. It changes only by compare-exchange: 0 or a
//! dead token -> a live token (creation, adoption). Frees of the arena's
//! blocks by any other thread go through the queue (`remote.rs`); whoever holds the lock
//! drains it.
//!
//! **Owner slots.** An entry of the heap's arena table is either an arena
//! (`shares` null: its own lock, index, chunks and queue) or an *owner
//! slot* (`shares` names an arena): an owner word, an owner cache and
//! batches of remote frees of its own, in front of that arena's index —
//! [`Arena::home`] — whose lock, state, queue, chunk test and fork-repair
//! word it uses. The heap makes slots once `Config::max_indexes` arenas
//! exist, where that limit is set (`heap/meta.rs`; off by default), so
//! that a thread past them keeps the lock-free fast paths (jemalloc's threads past its arenas keep their tcache), and
//! memory freed by any owner of an index is reused by all of them. For
//! the protocols a slot is its arena with one more owner: a block of the
//! index is local to every owner of it (the owner push's compare-exchange
//! on the header, live to `CACHED`, decides between two owners as it
//! decides between an owner and a foreign claim), every owner's refill and
//! flush take the one lock, and whatever walks an index — `check`,
//! `stats`, decay, `fork` — walks each arena once (`HeapMeta::indexes`)
//! and counts the caches of all its owners (`HeapMeta::owners_of`). A
//! chunk's map entry and header name the arena, never a slot.
//!
//! Lock order: arena lock, then region lock. Nothing here allocates through
//! the global allocator (the queue's buffer is allocated by the caller of
//! `Arena::new`, with no lock held) and nothing here panics.

mod alloc;
pub(crate) mod cache;
mod check;
mod fork;
mod lookup;
pub(crate) mod purge;
mod quarantine;
mod remote;

pub(crate) use cache::Push;

use crate::bins::FreeIndex;
use crate::block::{Key, GRANULE, HEADER, MIN_BLOCK};
use crate::chunk::{ChunkHeader, CHUNK_DATA};
use crate::config::{Stress, DECAY_WINDOWS, REMOTE_BATCH_JUMP};
use crate::region::{ChunkTest, Region};
use core::mem::ManuallyDrop;
use core::sync::atomic::{AtomicU32, AtomicUsize};

use crate::sync::{AtomicU64, Locked, LockedGuard, MpmcQueue, Ordering};
use crate::thread::registry;

/// Running totals an arena keeps under its lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Live blocks.
    pub(crate) live_blocks: usize,
    /// Usable bytes of live blocks (`block size - HEADER` each).
    pub(crate) live_bytes: usize,
    /// Free blocks (all in bins).
    pub(crate) free_blocks: usize,
    /// Bytes of free blocks, headers included.
    pub(crate) free_bytes: usize,
    /// Chunks owned.
    pub(crate) chunk_count: usize,
    /// Chunks that are a single free block.
    pub(crate) empty_chunks: usize,
    /// Allocations served, ever.
    pub(crate) allocs: u64,
    /// Frees performed, ever (local and remote).
    pub(crate) frees: u64,
    /// Remote frees drained from the queue, ever.
    pub(crate) remote_frees: u64,
    /// Remote frees that found the queue full and took the lock, ever.
    pub(crate) queue_full: u64,
    /// Of `allocs`, blocks carved into the owner cache rather than handed
    /// to the user.
    pub(crate) to_cache: u64,
    /// Of `frees`, blocks flushed from the owner cache rather than freed
    /// by the user.
    pub(crate) from_cache: u64,
    /// Times the lock was taken (counted under it: no extra atomic).
    pub(crate) lock_acquisitions: u64,
    /// Times the lock was found held by another thread.
    pub(crate) lock_contended: u64,
    /// Bytes of whole pages inside `PURGED` free blocks: known not to be
    /// resident (`purge.rs`).
    pub(crate) purged_bytes: usize,
    /// Free pages purged, ever (statistics).
    pub(crate) purges: u64,
}

/// Everything the arena lock guards.
pub(crate) struct ArenaState {
    /// The arena's id (as in `Arena::id`), for chunk-map checks.
    id: u32,
    /// The heap's secret as this arena's header and link checks use it.
    key: Key,
    index: FreeIndex,
    /// Head of the list of owned chunks.
    chunks: *mut ChunkHeader,
    pub(crate) counters: Counters,
    /// What is purged, and when (`purge.rs`).
    purge: purge::Policy,
    /// Decay clock: 0, or one more than the epoch in which a free block of
    /// at least `purge.min` bytes that is not `PURGED` entered the index
    /// since the last purge (`purge.rs`).
    dirty_epoch: u64,
    /// `lock_acquisitions` as the last decay tick left it: unchanged at the
    /// next tick means nobody else took the lock in between (idle arena).
    idle_mark: u64,
    /// Decay ticks in a row that found the lock untaken since the last
    /// (`idle_since_last_tick`).
    idle_ticks: u32,
    /// The decay's low-water marks (`purge.rs`, "How much"): the fewest
    /// resident free bytes (`free_bytes - purged_bytes`) any lock holder
    /// left in each of the last `DECAY_WINDOWS` windows between due ticks,
    /// the current window's first — memory the program did not reuse in
    /// that time. The guard updates the first as it unlocks.
    dirty_lows: [usize; DECAY_WINDOWS],
    /// The heap's stress-mode settings (off: nothing below is used).
    stress: Stress,
    /// Stress mode's FIFO of quarantined blocks (`quarantine.rs`).
    quarantine: quarantine::Fifo,
    /// The arena's own [`Published`] words, which the guard writes as it
    /// releases the lock (`ArenaGuard`'s drop): set by `Arena::new` to
    /// where the arena is built, never changed.
    published: *const Published,
    /// The rest of a remote batch a bounded drain stopped inside: the
    /// payload address of its next block (a `REMOTE_PENDING` block of
    /// ours, linked on like any batch), or 0. The next drain starts here,
    /// so a lock holder applies at most its limit of queued frees however
    /// long a batch is (`remote.rs`).
    pub(crate) drain_rest: usize,
    /// Empty chunks unlinked (and marked leaving in the region's map,
    /// `unlink_chunk`) under the lock and not yet given back to the
    /// region, linked through `ChunkHeader::next`: the guard hands them
    /// over after unlocking ([`ArenaGuard`]), so the list is empty
    /// whenever the lock is free (`check` never sees it otherwise).
    released: *mut ChunkHeader,
    /// Free blocks a decay step took out of the index to purge with the
    /// lock dropped (`purge.rs`); 0 whenever the decay's tick lock is free.
    purging: usize,
    /// The region the arena's chunks come from (set by `grow`, which is
    /// handed it; null until the first chunk): where the guard gives
    /// `released` chunks back.
    region: *const Region,
}

// SAFETY: the raw pointers point into chunks this arena owns, `region` at
// the heap's region (Sync, outlives the arena), and `published` at the
// arena's own atomic words (Sync); the state is only
// reached under the arena lock, so moving it between threads is fine.
unsafe impl Send for ArenaState {}

/// One arena. Lives in the heap's metadata, never moves.
pub(crate) struct Arena {
    /// Index in the heap's arena table; stored in every chunk it owns.
    pub(crate) id: u32,
    /// The heap's secret (`HeapMeta::secret`) as a header key, for the
    /// lock-free claim of a remote free (`remote.rs`).
    pub(crate) key: Key,
    state: Locked<ArenaState>,
    /// Two counters as the last lock holder left them ([`Published`]).
    published: Published,
    /// Token of the owning thread, or 0 (module doc).
    owner: AtomicU64,
    /// `owner` when the owner may take the owner cache's fast paths (the
    /// cache is on and the heap not hardened), else
    /// `registry::NOT_A_TOKEN`: so the fast paths' whole owner test is one
    /// compare with the caller's token word as stored (`cache.rs`). Written
    /// with `owner` (creation, adoption: right after the owner
    /// compare-exchange, by the adopter), read `Relaxed` by threads bound
    /// to the arena; only the thread whose token it holds ever finds it
    /// equal to its own.
    fast_owner: AtomicU64,
    /// Whether an address lies in one of this arena's chunks (a copy of
    /// the region's range and map and of this arena's map word), for the
    /// free fast path's chunk test: no load of the heap's metadata first.
    pub(crate) chunk_test: ChunkTest,
    /// Times a thread adopted this arena (`Relaxed`: statistics only).
    adoptions: AtomicU64,
    /// The owner cache: touched only by the owning thread, lock-free
    /// (`cache.rs`).
    cache: cache::OwnerCache,
    /// Remote frees this arena's owner has claimed and not yet handed to
    /// their arenas, one batch per target (`remote.rs`); owner-private like
    /// the cache.
    batches: Batches,
    /// Blocks freed by other threads, waiting for the lock holder. In a
    /// cell only so that a `fork` child may replace it (`reset_after_fork`).
    remote: core::cell::UnsafeCell<MpmcQueue>,
    /// The heap's region (set with `chunk_test`, before the arena is
    /// published; it outlives the arena): what the fork repair needs
    /// from inside `lock`.
    pub(crate) region: *const crate::region::Region,
    /// What a `fork` child must repair before anybody uses the arena's
    /// blocks (`fork.rs`): 0, or `fork::STRANDED_PENDING` with
    /// `fork::STRANDED_CACHED`. Set by the child's only thread, cleared
    /// under the lock by the first holder. Only an arena's own word counts:
    /// an owner slot reads its arena's ([`Arena::home`]).
    fork_repair: core::sync::atomic::AtomicU8,
    /// Null for an arena (its own lock, index, chunks and queue); for an
    /// *owner slot*, the arena whose lock, index, chunks and queue it uses
    /// (module doc, "Owner slots"). Set before the slot is published, never
    /// changed; the arena it names lives in the same table, published
    /// first, and outlives it.
    shares: *const Arena,
}

// SAFETY: every field is Sync but (1) `remote`'s cell, which is only read
// through shared references except in `reset_after_fork`, whose caller
// guarantees that no other thread exists, (2) `region`, a pointer only
// ever read through, to the heap's `Region` (Sync), which outlives the
// arena, and (3) `shares`, a pointer only ever read through, to an arena
// (Sync) of the same table, which outlives the slot.
unsafe impl Sync for Arena {}

/// Batches of remote frees one owner keeps, by target arena id modulo
/// this many.
const BATCH_SLOTS: usize = 8;

/// An owner's batches and which of them hold blocks, in one struct so
/// that the mask shares the batches' owner-private lines: as a field of
/// `Arena` of its own it may land beside words other threads write, and
/// the owner writes it on its remote frees. Aligned to a line of its own
/// for the same reason.
#[repr(align(64))]
struct Batches {
    slots: [Batch; BATCH_SLOTS],
    /// Bit `i` set iff `slots[i]` may hold blocks (owner-written, with the
    /// batch): the owner's slow paths test this one word before walking
    /// the slots, whose eight lines a program that frees nothing remotely
    /// would otherwise load on every refill and flush.
    unsent: core::sync::atomic::AtomicU8,
}

/// One batch of claimed remote frees bound for one arena: an intrusive
/// list through the blocks' first payload words (safe-linked). Written only
/// by the owner of the arena that holds it, with relaxed plain stores;
/// `stats`/`check` read it racily (exact when quiescent).
struct Batch {
    /// Target arena id + 1; 0: empty.
    target: AtomicU32,
    /// Payload address of the first block (0: empty).
    head: AtomicUsize,
    /// Blocks in the list.
    count: AtomicUsize,
    /// Their bytes, headers included.
    bytes: AtomicUsize,
    /// Payload addresses of the last `REMOTE_BATCH_JUMP` blocks added, the
    /// one added as the `n`th at `n % REMOTE_BATCH_JUMP` (valid where
    /// below `count`): where a new block's prefetch hint points
    /// (`remote.rs`).
    recent: [AtomicUsize; REMOTE_BATCH_JUMP],
}

impl Batch {
    const fn new() -> Batch {
        Batch {
            target: AtomicU32::new(0),
            head: AtomicUsize::new(0),
            count: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            recent: [const { AtomicUsize::new(0) }; REMOTE_BATCH_JUMP],
        }
    }
}

/// The arena lock, held. On release it publishes the two counters the
/// heap reads without the lock (`Arena::published`): a load of the state's
/// `published` pointer and of two counters the holder just touched, and
/// two plain stores to the arena's own words, no locked instruction — and
/// nothing on the owner cache's lock-free paths, which take no lock. Then
/// it unlocks, and only after that hands the chunks that emptied under it
/// (`ArenaState::released`, already marked leaving in the map) back to the
/// region: their `madvise` runs with no arena lock held. As small as the
/// lock's own guard (two words, returned in registers).
pub(crate) struct ArenaGuard<'a> {
    inner: ManuallyDrop<LockedGuard<'a, ArenaState>>,
}

/// `live_bytes` and `purged_bytes` of an arena's [`Counters`] as the last
/// lock holder left them: what `Heap::allocated_bytes` and
/// `Heap::resident_bytes` sum without taking any lock. Written only by
/// the lock holder as it releases (`Relaxed` stores: a statistic, ordered
/// for the next holder by the lock itself), read `Relaxed` by anyone.
#[derive(Debug, Default)]
pub(crate) struct Published {
    live_bytes: AtomicUsize,
    purged_bytes: AtomicUsize,
}

impl core::ops::Deref for ArenaGuard<'_> {
    type Target = ArenaState;
    #[inline(always)]
    fn deref(&self) -> &ArenaState {
        &self.inner
    }
}

impl core::ops::DerefMut for ArenaGuard<'_> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut ArenaState {
        &mut self.inner
    }
}

impl Drop for ArenaGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        let st: &mut ArenaState = &mut self.inner;
        let resident_free = st.resident_free();
        if let Some(low) = st.dirty_lows.first_mut() {
            *low = (*low).min(resident_free);
        }
        // SAFETY: `published` points at this arena's own `Published`
        // (`Arena::new`), which lives as long as the arena, and so as
        // long as the lock this guard holds.
        let published = unsafe { &*st.published };
        let c = &st.counters;
        published
            .live_bytes
            .store(c.live_bytes, core::sync::atomic::Ordering::Relaxed);
        published
            .purged_bytes
            .store(c.purged_bytes, core::sync::atomic::Ordering::Relaxed);
        let released = st.released;
        let region = st.region;
        if !released.is_null() {
            st.released = core::ptr::null_mut();
        }
        // SAFETY: dropped once, here (unlocks); `inner` is not used after.
        unsafe { ManuallyDrop::drop(&mut self.inner) };
        if !released.is_null() {
            // SAFETY: the chunks were unlinked and marked leaving under the
            // lock and are reachable from nothing but this list
            // (`ArenaState::released`), which we just took; a chunk on it
            // came from `region` (set by `grow`), which outlives the arena.
            unsafe { release_chunks(&*region, released) };
        }
    }
}

/// Gives each chunk of the `released` list (linked through `next`) back to
/// the region (`Region::release_arena_chunk`: purged, left readable).
///
/// # Safety
///
/// Every chunk on the list was unlinked from its arena and marked leaving
/// (`ArenaState::unlink_chunk`); the arena no longer names it.
#[cold]
#[inline(never)]
unsafe fn release_chunks(region: &Region, mut c: *mut ChunkHeader) {
    while !c.is_null() {
        // SAFETY: `c` is still ours (it goes back below); its `next` is
        // read first.
        let next = unsafe { (*c).next };
        // SAFETY: the caller's contract.
        unsafe { region.release_arena_chunk(region.chunk_index(c as usize)) };
        c = next;
    }
}

impl Arena {
    /// Takes the arena lock, counting the acquisition and any contention
    /// in the state it guards (plain adds: the fast path pays for no atomic
    /// beyond the lock's own).
    /// An owner slot takes its arena's lock ([`Arena::home`]).
    #[inline]
    pub(crate) fn lock(&self) -> ArenaGuard<'_> {
        let home = self.home();
        let (guard, contended) = home.state.lock();
        let mut guard = ArenaGuard {
            inner: ManuallyDrop::new(guard),
        };
        guard.counters.lock_acquisitions += 1;
        guard.counters.lock_contended += u64::from(contended);
        home.repair_if_forked(&mut guard);
        guard
    }

    /// Takes the arena lock if it is free (the decay thread: it never
    /// waits for a busy arena), counting the acquisition.
    pub(crate) fn try_lock(&self) -> Option<ArenaGuard<'_>> {
        let home = self.home();
        let mut guard = ArenaGuard {
            inner: ManuallyDrop::new(home.state.try_lock()?),
        };
        guard.counters.lock_acquisitions += 1;
        home.repair_if_forked(&mut guard);
        Some(guard)
    }

    /// The arena whose lock, index, chunks and queue this one uses: itself,
    /// or for an owner slot the arena it shares (`shares`).
    #[inline(always)]
    pub(crate) fn home(&self) -> &Arena {
        // SAFETY: `shares` is null or names an arena of the same table,
        // published before this slot and alive as long as it (field doc).
        unsafe { self.shares.as_ref() }.unwrap_or(self)
    }

    /// Whether this is an arena with an index of its own, not an owner
    /// slot in front of another's.
    #[inline]
    pub(crate) fn has_index(&self) -> bool {
        self.shares.is_null()
    }

    /// Whether `other` uses this arena's index: it is this arena or one of
    /// its owner slots. (Called on an arena, not a slot.)
    #[inline]
    pub(crate) fn serves(&self, other: &Arena) -> bool {
        core::ptr::eq(other.home(), self)
    }

    /// Makes this arena, not yet published, an owner slot of `home` (an
    /// arena with an index of its own): the same lock, index, chunks,
    /// queue and chunk test.
    pub(crate) fn share(&mut self, home: &Arena) {
        self.shares = home;
        self.chunk_test = home.chunk_test;
    }

    /// A new arena owned by `owner` (a token, or 0), to be moved to `home`
    /// (its slot in the heap's table) before anyone locks it: the state
    /// keeps the address its `Published` words will have there. Allocates
    /// the remote queue: call with no heap lock held.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: u32,
        queue_capacity: usize,
        owner: u64,
        key: Key,
        cache_bytes: usize,
        purge: purge::Policy,
        stress: Stress,
        home: *const Arena,
    ) -> Arena {
        Arena {
            id,
            key,
            cache: cache::OwnerCache::new(cache_bytes, key.link_mask(0)),
            batches: Batches {
                slots: [const { Batch::new() }; BATCH_SLOTS],
                unsent: core::sync::atomic::AtomicU8::new(0),
            },
            state: Locked::new(ArenaState {
                id,
                key,
                index: FreeIndex::new(),
                chunks: core::ptr::null_mut(),
                counters: Counters::default(),
                purge,
                dirty_epoch: 0,
                idle_mark: 0,
                idle_ticks: 0,
                dirty_lows: [0; DECAY_WINDOWS],
                stress,
                quarantine: quarantine::Fifo::new(),
                // Where `published` will be once the arena is at `home`
                // (computed, not dereferenced).
                published: home
                    .cast::<u8>()
                    .wrapping_add(core::mem::offset_of!(Arena, published))
                    .cast::<Published>(),
                drain_rest: 0,
                released: core::ptr::null_mut(),
                purging: 0,
                region: core::ptr::null(),
            }),
            published: Published::default(),
            owner: AtomicU64::new(owner),
            fast_owner: AtomicU64::new(fast_owner_for(owner, cache_bytes, key)),
            // The heap sets the real one before it publishes the arena.
            chunk_test: ChunkTest::NONE,
            adoptions: AtomicU64::new(0),
            remote: core::cell::UnsafeCell::new(MpmcQueue::new(queue_capacity)),
            region: core::ptr::null(),
            fork_repair: core::sync::atomic::AtomicU8::new(0),
            shares: core::ptr::null(),
        }
    }

    /// `(live_bytes, purged_bytes)` as the last lock holder left them
    /// ([`Published`]); takes no lock.
    pub(crate) fn published(&self) -> (usize, usize) {
        (
            self.published
                .live_bytes
                .load(core::sync::atomic::Ordering::Relaxed),
            self.published
                .purged_bytes
                .load(core::sync::atomic::Ordering::Relaxed),
        )
    }

    /// The remote-free queue.
    /// An owner slot's is its arena's ([`Arena::home`]).
    #[inline]
    pub(crate) fn queue(&self) -> &MpmcQueue {
        // SAFETY: the queue is replaced only by `reset_after_fork`, when no
        // other thread exists and no reference to it is live.
        unsafe { &*self.home().remote.get() }
    }

    /// The owner word as stored (a token or 0), for the owner-cache test.
    #[inline(always)]
    pub(crate) fn owner_token(&self) -> u64 {
        self.owner.load(Ordering::Relaxed)
    }

    /// `fast_owner` (field doc): a token, or `registry::NOT_A_TOKEN`.
    #[inline(always)]
    pub(crate) fn fast_owner(&self) -> u64 {
        self.fast_owner.load(Ordering::Relaxed)
    }

    /// The owner's token if that thread is alive.
    pub(crate) fn live_owner(&self) -> Option<u64> {
        let t = self.owner.load(Ordering::Acquire);
        registry::is_alive(t).then_some(t)
    }

    /// Whether `token` owns this arena.
    pub(crate) fn is_owned_by(&self, token: u64) -> bool {
        token != 0 && self.owner.load(Ordering::Acquire) == token
    }

    /// Takes the owner word from a dead owner for a reclaim (`purge.rs`):
    /// from here until [`Arena::end_reclaim`] the caller has the dead
    /// owner's cache and batches to itself, and no thread can adopt the
    /// arena. `false` if the owner is alive or somebody else got there.
    pub(crate) fn begin_reclaim(&self) -> bool {
        let cur = self.owner.load(Ordering::Acquire);
        if cur == 0 || cur == purge::RECLAIMING || registry::is_alive(cur) {
            return false;
        }
        self.owner
            .compare_exchange(cur, purge::RECLAIMING, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Ends a reclaim: the arena has no owner; the next thread may adopt
    /// it (and sees the reclaimer's writes to the cache: `Release`).
    pub(crate) fn end_reclaim(&self) {
        self.owner.store(0, Ordering::Release);
    }

    /// In a `fork` child: a reclaim in progress in the parent (whose
    /// thread did not come along) is over; the arena has no owner.
    pub(crate) fn abandon_reclaim(&self) {
        if self.owner.load(Ordering::Relaxed) == purge::RECLAIMING {
            self.end_reclaim();
        }
    }

    /// Makes `token` the owner if the arena has no live owner. The caller
    /// must then drain the queue (adoption).
    pub(crate) fn try_adopt(&self, token: u64) -> bool {
        let cur = self.owner.load(Ordering::Acquire);
        if token == 0 || cur == purge::RECLAIMING || registry::is_alive(cur) {
            return false;
        }
        let won = self
            .owner
            .compare_exchange(cur, token, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if won {
            // Only we may ever find `fast_owner` equal to our token, and
            // no other live thread can equal the dead token it held, so a
            // relaxed store after the compare-exchange is enough.
            self.fast_owner.store(
                fast_owner_for(token, self.cache_limit(), self.key),
                Ordering::Relaxed,
            );
            self.adoptions.fetch_add(1, Ordering::Relaxed);
        }
        won
    }

    /// Adoptions so far.
    pub(crate) fn adoption_count(&self) -> u64 {
        self.adoptions.load(Ordering::Relaxed)
    }

    /// The lock, for `fork` handlers (an owner slot's is its arena's).
    pub(crate) fn raw_lock(&self) -> &crate::sync::RawLock {
        self.home().state.raw()
    }
}

/// What `Arena::fast_owner` holds for owner `owner` (a token or 0) of an
/// arena whose cache holds `cache_bytes` under `key`: the owner, if it may
/// take the fast paths (a cache, no hardening, an owner).
fn fast_owner_for(owner: u64, cache_bytes: usize, key: Key) -> u64 {
    if owner == 0 || cache_bytes == 0 || key.hardened() {
        registry::NOT_A_TOKEN
    } else {
        owner
    }
}

/// The largest request (payload bytes) with alignment `align` that an arena
/// serves; larger ones take the large path.
#[inline]
pub(crate) fn arena_serves(size: usize, align: usize) -> bool {
    if size > crate::config::LARGE_THRESHOLD {
        return false;
    }
    let need = size + HEADER + GRANULE;
    let pad = if align > GRANULE {
        align + MIN_BLOCK
    } else {
        0
    };
    need + pad <= CHUNK_DATA
}
