//! Remote: the whole cross-thread free protocol — how a block freed by a
//! thread that does not own it gets back to its owning arena. (`_mt` = may
//! run on any thread, as in mimalloc's `free.c`.)
//!
//! The algorithm is:
//!
//! 1. [`Arena::claim_mt`]: the foreign thread validates the pointer against
//!    the chunk's start bitmap and the block header, then sets the header's
//!    `REMOTE_PENDING` flag with a compare-exchange. Only one free of a
//!    block can win this, so a second free of the same block — remote or
//!    local, before or after the drain — is reported as `DoubleFree` at once
//!    and deterministically. From here on the block is not live for the
//!    user (`is_allocated` is false) though it is still counted live.
//! 2. [`Arena::free_remote_mt`] pushes the pointer on the owner's queue (a
//!    `sync::MpmcQueue`: crossbeam's `ArrayQueue`, capacity fixed at arena
//!    creation, lock-free, allocated once). If the queue is full, the
//!    foreign thread takes the owner's lock, drains a batch, and frees the
//!    block itself ([`Arena::free_locked`] with `claimed`).
//! 3. Whoever holds the arena lock — the owner on its own alloc/free path
//!    ([`Arena::lock_and_drain_some`]), an adopter, `check`, `stats`
//!    ([`Arena::lock_drained`]) — drains in bounded batches
//!    (`config::DRAIN_BATCH`): each entry must be a pending block of the
//!    arena, and is freed and coalesced like a local free.
//!
//! Invariant: every pointer in the queue is a block of the queue's arena
//! whose header has `REMOTE_PENDING` set, and every such block is either in
//! the queue or in the hands of a thread between steps 1 and 2. So no free
//! is lost: after all threads join, draining every queue leaves each block
//! live or free.

use crate::arena::{Arena, ArenaGuard, ArenaState};
use crate::block;
use crate::block::GRANULE;
use crate::chunk;
use crate::config::DRAIN_BATCH;
use crate::error::{abort_on_free_error, FreeError};
use crate::region::{ChunkUse, Region};

impl Arena {
    /// Step 1 of a remote free: validates `ptr` as a live
    /// block of this arena without the lock and marks it pending. `false`
    /// means the caller must take the lock to classify or free it.
    ///
    /// # Safety
    ///
    /// `ptr` is `GRANULE`-aligned and lies in a chunk the region map marks
    /// as this arena's.
    #[inline]
    pub(crate) unsafe fn claim_mt(&self, ptr: *mut u8) -> bool {
        let b = block::payload_to_block(ptr);
        let c = chunk::chunk_of(ptr as usize);
        // SAFETY: the chunk is committed while the map marks it ours; the
        // bitmap and a header at a set start bit are readable atomics.
        unsafe {
            (b as usize) >= (*c).first_block() as usize
                && b < (*c).sentinel()
                && (*c).is_start(b as usize)
                && (*b).claim_remote_mt(self.key)
        }
    }

    /// Steps 1 and 2: a free of a block of this arena by a thread that does
    /// not own it: claim, then push on the queue; under the lock when the
    /// queue is full or the claim fails (to classify the error exactly).
    ///
    /// # Safety
    ///
    /// As for [`Arena::free_locked`].
    #[inline]
    pub(crate) unsafe fn free_remote_mt(
        &self,
        region: &Region,
        ptr: *mut u8,
    ) -> Result<(), FreeError> {
        // SAFETY: `ptr` is aligned and in a chunk the map marks as ours.
        if !unsafe { self.claim_mt(ptr) } {
            // SAFETY: forwarded; the lock decides what `ptr` is.
            return unsafe { self.free_locked(region, ptr, false) };
        }
        match self.queue().push(ptr as usize) {
            Ok(()) => Ok(()),
            // SAFETY: forwarded; we hold the claim on the block.
            Err(_) => unsafe { self.free_locked(region, ptr, true) },
        }
    }

    /// Frees `ptr` under the arena lock (draining a batch first): a local
    /// free, or the queue-full fallback of a remote one (`claimed`: the
    /// caller already marked it pending). An empty chunk the free leaves
    /// goes back to the region after the lock is dropped.
    ///
    /// # Safety
    ///
    /// `ptr` is `GRANULE`-aligned and in a chunk of this arena; if it is a
    /// live block, its owner gives it up.
    pub(crate) unsafe fn free_locked(
        &self,
        region: &Region,
        ptr: *mut u8,
        claimed: bool,
    ) -> Result<(), FreeError> {
        let mut st = self.lock_and_drain_some(region);
        // SAFETY: `ptr` is aligned and in one of our chunks; the lock is
        // held; the block freed is one `find_*` proved live (or pending and
        // claimed by us).
        let empty = unsafe {
            let (b, w) = if claimed {
                st.counters.queue_full += 1;
                match st.find_claimed(ptr) {
                    Some(found) => found,
                    None => {
                        drop(st);
                        abort_on_free_error(FreeError::DoubleFree, ptr)
                    }
                }
            } else {
                st.find_live_word(ptr)?
            };
            st.free(region, b, w.size)
        };
        drop(st);
        if let Some(chunk) = empty {
            let idx = region.chunk_index(chunk as usize);
            // SAFETY: the arena unlinked this empty chunk; nothing refers to it.
            unsafe { region.release(idx, 1) };
        }
        Ok(())
    }

    /// Takes the lock and drains a bounded batch if the queue has entries:
    /// the alloc/free path.
    #[inline]
    pub(crate) fn lock_and_drain_some(&self, region: &Region) -> ArenaGuard<'_> {
        let mut st = self.lock();
        if !self.queue().is_empty() {
            if let Err(bad) = self.drain(&mut st, region, DRAIN_BATCH) {
                drop(st);
                abort_on_free_error(FreeError::DoubleFree, bad as *const u8);
            }
        }
        st
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
            let Some(addr) = self.queue().pop() else {
                break;
            };
            let owned = region.contains(addr)
                && addr % GRANULE == 0
                && region.chunk_use(region.chunk_index(addr)) == ChunkUse::Arena(self.id);
            if !owned {
                return Err(addr);
            }
            // SAFETY: `addr` is aligned and in one of our chunks; lock held.
            let (b, w) = unsafe { st.find_claimed(addr as *mut u8) }.ok_or(addr)?;
            // SAFETY: `b` is a pending (hence live) block of ours of `w.size`.
            if let Some(chunk) = unsafe { st.free(region, b, w.size) } {
                // SAFETY: the arena unlinked the empty chunk; nothing refers
                // to it.
                unsafe { region.release(region.chunk_index(chunk as usize), 1) };
            }
            st.counters.remote_frees += 1;
            n += 1;
        }
        Ok(n)
    }
}
