//! Arena: a lock, the free-block index of the chunks it owns, and counters.
//!
//! Every block of an arena's chunks is allocated, split, coalesced and freed
//! only while the arena's lock is held; the lock is the *only* thing that
//! serialises two threads touching the same blocks. With one arena per
//! thread the lock is uncontended (one atomic compare-exchange to take, one
//! swap to release); with `max_arenas(1)` it is the one global lock.
//!
//! Invariants (checked by [`ArenaState::check`]):
//! * the arena's chunks form a doubly linked list of `chunk_count` chunks,
//!   each with `arena_id == id` and marked `Arena(id)` in the region map;
//! * every free block of those chunks is in exactly one bin of `index`;
//! * the counters equal what a walk of the chunks finds, and
//!   `live_bytes + live_blocks * HEADER + free_bytes == chunk_count * CHUNK_DATA`;
//! * `empty_chunks` counts chunks that are one free block; at most one of
//!   them is kept when a free empties a chunk — the next one goes back to
//!   the region (purged), so RSS follows the live set.
//!
//! Ownership: `owner` holds the token (`thread.rs`) of the thread bound to
//! the arena, or 0. It changes only by compare-exchange: 0 or a dead token
//! -> a live token (creation, adoption). Frees of the arena's blocks by any
//! other thread go through `remote` (see `remote.rs`); whoever holds the
//! lock drains it.
//!
//! Lock order: arena lock, then region lock. Nothing here allocates through
//! the global allocator (the queue's buffer is allocated by the caller of
//! `Arena::new`, with no lock held) and nothing here panics.

use crate::bins::{self, FreeIndex, BINS};
use crate::block::{self, Header, GRANULE, HEADER, MIN_BLOCK};
use crate::chunk::{self, ChunkHeader, CHUNK_DATA};
use crate::error::{abort_on_free_error, FreeError, HeapError, HeapErrorKind};
use crate::region::{ChunkUse, Region};
use crate::remote::{RemoteQueue, DRAIN_BATCH};
use crate::sync::{AtomicU64, Locked, LockedGuard, Ordering};
use crate::thread;

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
    /// Times the lock was taken (counted under it: no extra atomic).
    pub(crate) lock_acquisitions: u64,
    /// Times the lock was found held by another thread.
    pub(crate) lock_contended: u64,
}

/// Everything the arena lock guards.
pub(crate) struct ArenaState {
    index: FreeIndex,
    /// Head of the list of owned chunks.
    chunks: *mut ChunkHeader,
    pub(crate) counters: Counters,
}

// SAFETY: the raw pointers point into chunks this arena owns; the state is
// only reached under the arena lock, so moving it between threads is fine.
unsafe impl Send for ArenaState {}

/// One arena. Lives in the heap's metadata, never moves.
pub(crate) struct Arena {
    /// Index in the heap's arena table; stored in every chunk it owns.
    pub(crate) id: u32,
    state: Locked<ArenaState>,
    /// Token of the owning thread, or 0 (module doc).
    owner: AtomicU64,
    /// Times a thread adopted this arena (`Relaxed`: statistics only).
    adoptions: AtomicU64,
    /// Blocks freed by other threads, waiting for the lock holder. In a
    /// cell only so that a `fork` child may replace it (`reset_after_fork`).
    remote: core::cell::UnsafeCell<RemoteQueue>,
}

// SAFETY: every field is Sync but `remote`'s cell, which is only read
// through shared references except in `reset_after_fork`, whose caller
// guarantees that no other thread exists.
unsafe impl Sync for Arena {}

/// The arena lock, held.
pub(crate) type ArenaGuard<'a> = LockedGuard<'a, ArenaState>;

impl Arena {
    /// A new arena owned by `owner` (a token, or 0). Allocates the remote
    /// queue: call with no heap lock held.
    pub(crate) fn new(id: u32, queue_capacity: usize, owner: u64) -> Arena {
        Arena {
            id,
            state: Locked::new(ArenaState {
                index: FreeIndex::new(),
                chunks: core::ptr::null_mut(),
                counters: Counters::default(),
            }),
            owner: AtomicU64::new(owner),
            adoptions: AtomicU64::new(0),
            remote: core::cell::UnsafeCell::new(RemoteQueue::new(queue_capacity)),
        }
    }

    /// The remote-free queue.
    #[inline]
    pub(crate) fn remote(&self) -> &RemoteQueue {
        // SAFETY: the queue is replaced only by `reset_after_fork`, when no
        // other thread exists and no reference to it is live.
        unsafe { &*self.remote.get() }
    }

    /// The lock, for `fork` handlers.
    pub(crate) fn raw_lock(&self) -> &crate::sync::RawLock {
        self.state.raw()
    }

    /// In a `fork` child: a push that was in flight in the parent when it
    /// forked may have left the queue with a slot that never fills, which
    /// would make `pop` spin forever. A queue that is not empty is therefore
    /// replaced by a new one (allocating, so call with no lock held); the
    /// blocks it held stay pending and are leaked in the child.
    ///
    /// # Safety
    ///
    /// The calling thread is the only thread of the process (a `fork`
    /// child) and holds no reference to this arena's queue.
    pub(crate) unsafe fn reset_after_fork(&self, queue_capacity: usize) {
        if self.remote().is_empty() {
            return;
        }
        let fresh = RemoteQueue::new(queue_capacity);
        // SAFETY: single-threaded (caller); the old queue is forgotten, not
        // dropped, since its slots may be half written.
        unsafe { core::mem::forget(self.remote.get().replace(fresh)) };
    }

    /// The owner's token if that thread is alive.
    pub(crate) fn live_owner(&self) -> Option<u64> {
        let t = self.owner.load(Ordering::Acquire);
        thread::is_alive(t).then_some(t)
    }

    /// Whether `token` owns this arena.
    pub(crate) fn is_owned_by(&self, token: u64) -> bool {
        token != 0 && self.owner.load(Ordering::Acquire) == token
    }

    /// Makes `token` the owner if the arena has no live owner. The caller
    /// must then drain the queue (adoption).
    pub(crate) fn try_adopt(&self, token: u64) -> bool {
        let cur = self.owner.load(Ordering::Acquire);
        if token == 0 || thread::is_alive(cur) {
            return false;
        }
        let won = self
            .owner
            .compare_exchange(cur, token, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if won {
            self.adoptions.fetch_add(1, Ordering::Relaxed);
        }
        won
    }

    /// Adoptions so far.
    pub(crate) fn adoption_count(&self) -> u64 {
        self.adoptions.load(Ordering::Relaxed)
    }

    /// Takes the lock and drains the remote queue completely (adoption,
    /// `stats`, `dump`). A bad queue entry aborts, as a bad free would.
    pub(crate) fn lock_drained(&self, region: &Region) -> ArenaGuard<'_> {
        let mut st = self.lock();
        if let Err(bad) = self.drain(&mut st, region, usize::MAX) {
            drop(st);
            abort_on_free_error(FreeError::DoubleFree, bad as *const u8);
        }
        st
    }

    /// Takes the lock and drains a bounded batch if the queue has entries:
    /// the alloc/free path.
    #[inline]
    pub(crate) fn lock_and_drain_some(&self, region: &Region) -> ArenaGuard<'_> {
        let mut st = self.lock();
        if !self.remote().is_empty() {
            if let Err(bad) = self.drain(&mut st, region, DRAIN_BATCH) {
                drop(st);
                abort_on_free_error(FreeError::DoubleFree, bad as *const u8);
            }
        }
        st
    }

    /// Frees up to `limit` queued blocks under the lock. Chunks that empty
    /// go straight back to the region (the lock order allows it). Returns
    /// the number drained, or the first entry that is not a pending block
    /// of this arena (heap corruption or a racing double free).
    #[cold]
    pub(crate) fn drain(
        &self,
        st: &mut ArenaState,
        region: &Region,
        limit: usize,
    ) -> Result<usize, usize> {
        let mut n = 0;
        while n < limit {
            let Some(addr) = self.remote().pop() else {
                break;
            };
            let owned = region.contains(addr)
                && addr % GRANULE == 0
                && region.chunk_use(region.chunk_index(addr)) == ChunkUse::Arena(self.id);
            if !owned {
                return Err(addr);
            }
            // SAFETY: `addr` is aligned and in one of our chunks; lock held.
            let b = unsafe { st.find_claimed(addr as *mut u8) }.ok_or(addr)?;
            // SAFETY: `b` is a pending (hence live) block of ours.
            if let Some(chunk) = unsafe { st.free(b) } {
                // SAFETY: the arena unlinked the empty chunk; nothing refers
                // to it.
                unsafe { region.release(region.chunk_index(chunk as usize), 1) };
            }
            st.counters.remote_frees += 1;
            n += 1;
        }
        Ok(n)
    }

    /// Step 1 of a remote free (`remote.rs`): validates `ptr` as a live
    /// block of this arena without the lock and marks it pending. `false`
    /// means the caller must take the lock to classify or free it.
    ///
    /// # Safety
    ///
    /// `ptr` is `GRANULE`-aligned and lies in a chunk the region map marks
    /// as this arena's.
    #[inline]
    pub(crate) unsafe fn claim_remote_mt(&self, ptr: *mut u8) -> bool {
        let b = block::payload_to_block(ptr);
        let c = chunk::chunk_of(ptr as usize);
        // SAFETY: the chunk is committed while the map marks it ours; the
        // bitmap and a header at a set start bit are readable atomics.
        unsafe {
            (b as usize) >= (*c).first_block() as usize
                && b < (*c).sentinel()
                && (*c).is_start(b as usize)
                && (*b).claim_remote_mt()
        }
    }

    /// Takes the arena lock, counting the acquisition and any contention
    /// in the state it guards (plain adds: the fast path pays for no atomic
    /// beyond the lock's own).
    #[inline]
    pub(crate) fn lock(&self) -> ArenaGuard<'_> {
        let (mut guard, contended) = self.state.lock();
        guard.counters.lock_acquisitions += 1;
        guard.counters.lock_contended += u64::from(contended);
        guard
    }
}

/// The largest request (payload bytes) with alignment `align` that an arena
/// serves; larger ones take the large path.
#[inline]
pub(crate) fn arena_serves(size: usize, align: usize) -> bool {
    if size > crate::large::LARGE_THRESHOLD {
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

impl ArenaState {
    /// Allocates `size` bytes aligned to `align` (a power of two); null when
    /// the region has no chunk left.
    ///
    /// # Safety
    ///
    /// `arena_serves(size, align)`; `region` is the region of this arena's
    /// heap and `id` the arena's id; the caller holds the arena lock.
    #[inline]
    pub(crate) unsafe fn alloc(
        &mut self,
        region: &Region,
        id: u32,
        size: usize,
        align: usize,
    ) -> *mut u8 {
        let Some(need) = block::request_to_block_size(size) else {
            return core::ptr::null_mut();
        };
        // SAFETY: the caller holds the lock; `take*` return free blocks of
        // our chunks, removed from the index, that `carve` then owns.
        unsafe {
            let b = if align <= GRANULE {
                self.take(region, id, need)
            } else {
                self.take_aligned(region, id, need, align)
            };
            if b.is_null() {
                return core::ptr::null_mut();
            }
            self.carve(b, need);
            self.counters.allocs += 1;
            block::block_to_payload(b)
        }
    }

    /// Removes from the index (or makes, from a new chunk) a free block of
    /// at least `need` bytes.
    unsafe fn take(&mut self, region: &Region, id: u32, need: usize) -> *mut Header {
        // SAFETY: lock held (caller); the index holds free blocks only.
        let b = unsafe { self.index.take_first_fit(need) };
        if !b.is_null() {
            // SAFETY: `b` was a free block of the index.
            self.note_unlinked(unsafe { (*b).size() });
            return b;
        }
        self.grow(region, id)
    }

    /// Takes a fresh chunk from the region; returns its one free block,
    /// accounted as taken (not in the index).
    #[cold]
    fn grow(&mut self, region: &Region, id: u32) -> *mut Header {
        let Some(base) = region.acquire_arena_chunk(id) else {
            return core::ptr::null_mut();
        };
        // SAFETY: the region just handed us this chunk: committed, zeroed,
        // ours alone.
        let first = unsafe { chunk::init(base, id) };
        let c = base.cast::<ChunkHeader>();
        // SAFETY: `c` is the fresh chunk; the current head, if any, is one of
        // ours; the lock is held.
        unsafe {
            (*c).next = self.chunks;
            if !self.chunks.is_null() {
                (*self.chunks).prev = c;
            }
        }
        self.chunks = c;
        self.counters.chunk_count += 1;
        first
    }

    /// Like `take`, then splits off a free front gap so that the returned
    /// block's payload is aligned to `align`.
    unsafe fn take_aligned(
        &mut self,
        region: &Region,
        id: u32,
        need: usize,
        align: usize,
    ) -> *mut Header {
        // SAFETY: lock held; see `take`.
        let b = unsafe { self.take(region, id, need + align + MIN_BLOCK) };
        if b.is_null() {
            return b;
        }
        let start = b as usize;
        let mut aligned = ((start + HEADER + align - 1) & !(align - 1)) - HEADER;
        if aligned != start && aligned - start < MIN_BLOCK {
            aligned += align;
        }
        if aligned == start {
            return b;
        }
        let gap = aligned - start;
        let nb = aligned as *mut Header;
        // SAFETY: (1) `b` is a free block we removed from the index, of at
        // least `need + align + MIN_BLOCK` bytes, so `nb` and `need` bytes
        // after it lie inside it; (2) `b`'s previous block is live (no two
        // free blocks touch), so the gap block's `prev_size` stays 0.
        unsafe {
            let size = (*b).size();
            (*b).set(gap, block::FREE);
            (*nb).set(size - gap, 0);
            (*chunk::chunk_of(aligned)).set_start(aligned);
            block::write_footer(b);
            self.link_free(b);
        }
        nb
    }

    /// Marks `b` (a taken free block) live at `need` bytes, splitting off
    /// the tail as a free block when it is big enough.
    unsafe fn carve(&mut self, b: *mut Header, need: usize) {
        // SAFETY: `b` is a block we hold under the lock; the tail and the
        // next block lie in the same chunk.
        unsafe {
            let size = (*b).size();
            if size - need >= MIN_BLOCK {
                (*b).set(need, 0);
                let rest = b.cast::<u8>().add(need).cast::<Header>();
                block::set_prev_live(rest);
                (*rest).set(size - need, block::FREE);
                (*chunk::chunk_of(rest as usize)).set_start(rest as usize);
                block::write_footer(rest);
                self.link_free(rest);
            } else {
                (*b).set(size, 0);
                block::set_prev_live(block::next_block(b));
            }
            self.counters.live_blocks += 1;
            self.counters.live_bytes += block::block_to_usable((*b).size());
        }
    }

    /// Frees the live block `b`. Returns a chunk that became empty and that
    /// the caller must hand back to the region after dropping the lock.
    ///
    /// # Safety
    ///
    /// `b` is a live block of this arena (validated by `find_live`); the
    /// caller holds the lock.
    #[inline]
    pub(crate) unsafe fn free(&mut self, b: *mut Header) -> Option<*mut ChunkHeader> {
        // SAFETY: `b` is live and ours (caller).
        unsafe {
            self.counters.live_blocks -= 1;
            self.counters.live_bytes -= block::block_to_usable((*b).size());
            self.counters.frees += 1;
            self.release_block(b)
        }
    }

    /// Makes block `b` free: coalesces with both neighbours and indexes the
    /// result, or unlinks its chunk if the chunk is now empty and another
    /// empty one is already kept. Does not touch the live counters.
    unsafe fn release_block(&mut self, b: *mut Header) -> Option<*mut ChunkHeader> {
        // SAFETY: `b` is a block of one of our chunks, held under the lock;
        // its neighbours' headers are valid (tiling invariant), and a
        // neighbour flagged free is in the index.
        unsafe {
            let c = chunk::chunk_of(b as usize);
            let mut start = b;
            let mut size = (*b).size();
            let next = block::next_block(b);
            if (*next).is_free() {
                self.unlink_free(next);
                size += (*next).size();
                (*c).clear_start(next as usize);
            }
            if (*b).prev_is_free() {
                let prev = block::prev_block(b);
                self.unlink_free(prev);
                size += (*prev).size();
                (*c).clear_start(b as usize);
                start = prev;
            }
            (*start).set(size, block::FREE);
            block::write_footer(start);
            if size == CHUNK_DATA && self.counters.empty_chunks >= 1 {
                self.unlink_chunk(c);
                return Some(c);
            }
            self.link_free(start);
            None
        }
    }

    /// Removes an empty chunk from the list (its one free block is in no bin).
    unsafe fn unlink_chunk(&mut self, c: *mut ChunkHeader) {
        // SAFETY: `c` and its list neighbours are our chunks (lock held).
        unsafe {
            let (next, prev) = ((*c).next, (*c).prev);
            if prev.is_null() {
                self.chunks = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
        }
        self.counters.chunk_count -= 1;
    }

    /// Resizes live block `b` in place to hold `size` payload bytes:
    /// shrinks by splitting off the tail, grows into a free next block.
    /// Returns whether it succeeded (the block is unchanged if not).
    ///
    /// # Safety
    ///
    /// `b` is a live block of this arena; the lock is held.
    pub(crate) unsafe fn resize_in_place(&mut self, b: *mut Header, size: usize) -> bool {
        let Some(need) = block::request_to_block_size(size) else {
            return false;
        };
        if need > CHUNK_DATA {
            return false;
        }
        // SAFETY: `b` is live and ours; its next block is a valid header.
        unsafe {
            let have = (*b).size();
            if need > have {
                let next = block::next_block(b);
                if !(*next).is_free() || have + (*next).size() < need {
                    return false;
                }
                let grown = have + (*next).size();
                self.unlink_free(next);
                (*chunk::chunk_of(b as usize)).clear_start(next as usize);
                (*b).set(grown, 0);
                block::set_prev_live(block::next_block(b));
                self.counters.live_bytes += grown - have;
            }
            self.shrink(b, need);
        }
        true
    }

    /// Splits the tail off live block `b` beyond `need` bytes, if it is at
    /// least a minimum block, and frees it.
    unsafe fn shrink(&mut self, b: *mut Header, need: usize) {
        // SAFETY: `b` is live and ours; the tail lies inside it.
        unsafe {
            let have = (*b).size();
            if have - need < MIN_BLOCK {
                return;
            }
            (*b).set(need, 0);
            let rest = b.cast::<u8>().add(need).cast::<Header>();
            block::set_prev_live(rest);
            (*rest).set(have - need, 0);
            (*chunk::chunk_of(rest as usize)).set_start(rest as usize);
            self.counters.live_bytes -= have - need;
            // The rest cannot empty the chunk: `b` stays live in it.
            let released = self.release_block(rest);
            debug_assert!(released.is_none());
        }
    }

    /// Index bookkeeping for a free block taken out by the index itself.
    #[inline]
    fn note_unlinked(&mut self, size: usize) {
        self.counters.free_blocks -= 1;
        self.counters.free_bytes -= size;
        if size == CHUNK_DATA {
            self.counters.empty_chunks -= 1;
        }
    }

    #[inline]
    unsafe fn unlink_free(&mut self, b: *mut Header) {
        // SAFETY: `b` is a free block in the index (caller).
        unsafe {
            self.index.remove(b);
            self.note_unlinked((*b).size());
        }
    }

    #[inline]
    unsafe fn link_free(&mut self, b: *mut Header) {
        // SAFETY: `b` is a free block in no bin (caller).
        unsafe {
            let size = (*b).size();
            self.index.insert(b);
            self.counters.free_blocks += 1;
            self.counters.free_bytes += size;
            if size == CHUNK_DATA {
                self.counters.empty_chunks += 1;
            }
        }
    }

    /// The live block whose payload is `ptr`, or why `ptr` is not one.
    ///
    /// # Safety
    ///
    /// `ptr` is `GRANULE`-aligned and lies in a chunk of this arena; the lock
    /// is held.
    #[inline]
    pub(crate) unsafe fn find_live(&self, ptr: *mut u8) -> Result<*mut Header, FreeError> {
        let b = block::payload_to_block(ptr);
        let c = chunk::chunk_of(ptr as usize);
        // SAFETY: the chunk is ours, so its header and bitmap are valid, and
        // a set start bit means a valid block header sits at `b`.
        unsafe {
            if (b as usize) < (*c).first_block() as usize || b >= (*c).sentinel() {
                return Err(FreeError::NotAllocated);
            }
            if (*c).is_start(b as usize) {
                return if (*b).is_live() {
                    Ok(b)
                } else {
                    Err(FreeError::DoubleFree)
                };
            }
            // Not a block start: inside a free block means the block was
            // freed and coalesced into a neighbour (a double free); inside a
            // live block means an interior pointer.
            match (*c).block_at_or_before(b as usize) {
                Some(s) if (*s).is_free() && (b as usize) < s as usize + (*s).size() => {
                    Err(FreeError::DoubleFree)
                }
                _ => Err(FreeError::NotAllocated),
            }
        }
    }

    /// The pending block whose payload is `ptr` (a queue entry, or a block
    /// the caller claimed).
    ///
    /// # Safety
    ///
    /// As for `find_live`.
    pub(crate) unsafe fn find_claimed(&self, ptr: *mut u8) -> Option<*mut Header> {
        let b = block::payload_to_block(ptr);
        let c = chunk::chunk_of(ptr as usize);
        // SAFETY: as in `find_live`.
        unsafe {
            let inside = (b as usize) >= (*c).first_block() as usize && b < (*c).sentinel();
            let pending = inside && (*c).is_start(b as usize) && (*b).is_remote_pending();
            (pending && !(*b).is_free()).then_some(b)
        }
    }

    /// The live block whose payload contains `addr`.
    ///
    /// # Safety
    ///
    /// `addr` lies in a chunk of this arena; the lock is held.
    pub(crate) unsafe fn find_containing(&self, addr: usize) -> Option<*mut Header> {
        let c = chunk::chunk_of(addr);
        // SAFETY: the chunk is ours; a set start bit marks a valid header.
        unsafe {
            let s = (*c).block_at_or_before(addr)?;
            let payload = block::block_to_payload(s) as usize;
            let inside = (*s).is_live() && addr >= payload && addr < s as usize + (*s).size();
            inside.then_some(s)
        }
    }

    /// Size of the largest free block (walks the highest non-empty bin).
    pub(crate) fn largest_free(&self) -> usize {
        let Some(bin) = self.index.highest_nonempty() else {
            return 0;
        };
        let mut best = 0;
        let mut b = self.index.head(bin);
        while !b.is_null() {
            // SAFETY: bin lists hold free blocks of our chunks (lock held).
            unsafe {
                best = best.max((*b).size());
                b = (*block::links(b)).next;
            }
        }
        best
    }

    /// Calls `f(chunk, block)` for every block of every chunk, in address
    /// order within a chunk; stops early when `f` returns `false`.
    pub(crate) fn for_each_block(&self, mut f: impl FnMut(*mut ChunkHeader, *mut Header) -> bool) {
        let mut c = self.chunks;
        while !c.is_null() {
            // SAFETY: the list holds our chunks (lock held); walking by size
            // stays inside a chunk as long as it tiles, and `check` (which
            // does not use this) is what proves tiling, so the walk bounds
            // itself by the sentinel and by a minimum step.
            unsafe {
                let end = (*c).sentinel();
                let mut b = (*c).first_block();
                while b < end {
                    if !f(c, b) {
                        return;
                    }
                    let size = (*b).size();
                    if size < MIN_BLOCK {
                        break;
                    }
                    b = block::next_block(b);
                }
                c = (*c).next;
            }
        }
    }

    /// Proves this arena's invariants (module doc), returning the first
    /// violation found.
    pub(crate) fn check(&self, region: &Region, id: u32) -> Result<(), HeapError> {
        let err = |kind, addr: usize| {
            Err(HeapError {
                arena: Some(id),
                addr,
                kind,
            })
        };
        let mut walked = Counters {
            allocs: self.counters.allocs,
            frees: self.counters.frees,
            remote_frees: self.counters.remote_frees,
            queue_full: self.counters.queue_full,
            lock_acquisitions: self.counters.lock_acquisitions,
            lock_contended: self.counters.lock_contended,
            ..Counters::default()
        };
        let mut c = self.chunks;
        let mut prev_chunk: *mut ChunkHeader = core::ptr::null_mut();
        while !c.is_null() {
            let ca = c as usize;
            if !region.contains(ca)
                || region.chunk_use(region.chunk_index(ca)) != ChunkUse::Arena(id)
            {
                return err(HeapErrorKind::ChunkNotOwned, ca);
            }
            // SAFETY: the region map says this chunk is ours, so it is
            // committed and its header valid; the lock is held.
            let (arena_id, back) = unsafe { ((*c).arena_id, (*c).prev) };
            if arena_id != id || back != prev_chunk {
                return err(HeapErrorKind::ChunkNotOwned, ca);
            }
            walked.chunk_count += 1;
            // SAFETY: as above.
            unsafe { self.check_chunk(c, &mut walked, id)? };
            prev_chunk = c;
            // SAFETY: as above.
            c = unsafe { (*c).next };
            if walked.chunk_count > region.chunk_count() {
                return err(HeapErrorKind::ChunkNotOwned, ca);
            }
        }
        self.check_bins(region, walked.free_blocks, id)?;
        if walked != self.counters {
            return err(HeapErrorKind::CounterMismatch, 0);
        }
        let c = &self.counters;
        if c.live_bytes + c.live_blocks * HEADER + c.free_bytes != c.chunk_count * CHUNK_DATA {
            return err(HeapErrorKind::CounterMismatch, 0);
        }
        Ok(())
    }

    /// Walks one chunk: tiling, flags, footers, start bits.
    unsafe fn check_chunk(
        &self,
        c: *mut ChunkHeader,
        walked: &mut Counters,
        id: u32,
    ) -> Result<(), HeapError> {
        let err = |kind, addr: *mut Header| {
            Err(HeapError {
                arena: Some(id),
                addr: addr as usize,
                kind,
            })
        };
        // SAFETY: `c` is a committed chunk of ours (caller); every header
        // read is at an address the walk has proven lies before the sentinel.
        unsafe {
            let end = (*c).sentinel();
            let mut b = (*c).first_block();
            let mut prev_free = false;
            let mut blocks = 0;
            while b < end {
                let size = (*b).size();
                if size < MIN_BLOCK || b as usize + size > end as usize {
                    return err(HeapErrorKind::BadTiling, b);
                }
                if !(*c).is_start(b as usize) {
                    return err(HeapErrorKind::BitmapMismatch, b);
                }
                if (*b).prev_is_free() != prev_free {
                    return err(HeapErrorKind::FooterMismatch, b);
                }
                let free = (*b).is_free();
                if free {
                    if prev_free {
                        return err(HeapErrorKind::AdjacentFree, b);
                    }
                    if (*block::next_block(b)).prev_size != size {
                        return err(HeapErrorKind::FooterMismatch, b);
                    }
                    walked.free_blocks += 1;
                    walked.free_bytes += size;
                    if size == CHUNK_DATA {
                        walked.empty_chunks += 1;
                    }
                } else {
                    walked.live_blocks += 1;
                    walked.live_bytes += block::block_to_usable(size);
                }
                prev_free = free;
                blocks += 1;
                b = block::next_block(b);
            }
            if b != end
                || (*end).size() != 0
                || (*end).is_free()
                || (*end).prev_is_free() != prev_free
            {
                return err(HeapErrorKind::BadTiling, end);
            }
            if (*c).count_starts() != blocks {
                return err(HeapErrorKind::BitmapMismatch, c.cast());
            }
        }
        Ok(())
    }

    /// Every bin entry is a free block of that bin, lists are well linked,
    /// and together the bins hold exactly the `free_blocks` the walk found.
    fn check_bins(&self, region: &Region, free_blocks: usize, id: u32) -> Result<(), HeapError> {
        let err = |kind, addr: *mut Header| {
            Err(HeapError {
                arena: Some(id),
                addr: addr as usize,
                kind,
            })
        };
        let mut entries = 0;
        for bin in 0..BINS {
            let mut b = self.index.head(bin);
            if b.is_null() == self.index.marked_nonempty(bin) {
                return err(HeapErrorKind::BinMismatch, b);
            }
            let mut prev: *mut Header = core::ptr::null_mut();
            while !b.is_null() {
                entries += 1;
                if entries > free_blocks {
                    return err(HeapErrorKind::BinMismatch, b);
                }
                let ba = b as usize;
                if !region.contains(ba)
                    || region.chunk_use(region.chunk_index(ba)) != ChunkUse::Arena(id)
                {
                    return err(HeapErrorKind::BinMismatch, b);
                }
                // SAFETY: the region map says `b` lies in one of our
                // committed chunks, so its chunk header and the header at
                // `b` are readable; links are followed only once the start
                // bit and FREE flag show `b` really is a free block.
                unsafe {
                    let c = chunk::chunk_of(ba);
                    if !(*c).is_start(ba) || !(*b).is_free() || bins::bin_of((*b).size()) != bin {
                        return err(HeapErrorKind::BinMismatch, b);
                    }
                    if (*block::links(b)).prev != prev {
                        return err(HeapErrorKind::BinMismatch, b);
                    }
                    prev = b;
                    b = (*block::links(b)).next;
                }
            }
        }
        if entries != free_blocks {
            return err(HeapErrorKind::BinMismatch, core::ptr::null_mut());
        }
        Ok(())
    }
}
