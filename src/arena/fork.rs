//! Fork repair: what a `fork` child does to an arena whose lock-free state
//! the parent's other threads may have left half-written (`heap/fork.rs`
//! has the whole protocol).
//!
//! In the child's handler (one thread, no lock held), each arena:
//! * drops its unsent batches: the blocks in them are `REMOTE_PENDING`
//!   and are freed by their own arena's repair;
//! * drops its owner cache's lists and counts if its owner did not come
//!   along (every thread but the forking one): a push or pop may have been
//!   cut between the head, the count and the header; the `CACHED` headers
//!   are the truth and the repair frees those blocks;
//! * is marked: `STRANDED_PENDING`, with `STRANDED_CACHED` for a dead
//!   owner, and `STALE_QUEUE` if its queue is not empty (a push cut in the
//!   middle leaves a slot that never fills, and `pop` would wait for it
//!   forever): no drain pops a stale queue, and once every arena of every
//!   heap is marked, each stale queue is replaced by a new one (which
//!   allocates: from a marked heap, so safely).
//!
//! The first thread that then takes the arena's lock (an adopter, the
//! owner's refill, a remote free's fallback, decay, `check`) walks its
//! chunks once and frees every stranded block into the index, coalescing
//! as any free does (the rest of a batch a drain stopped inside,
//! `drain_rest`, is such blocks: it is forgotten first). Until then no
//! thread claims a block of the arena without the lock (`claim_mt` sends
//! it there), so every `REMOTE_PENDING` header the walk meets was set
//! before the fork: no batch or queue of the child holds it. A child that
//! execs at once pays for none of it.
//!
//! Invariant: after the repair, every block of the arena is free (in a
//! bin), live (a user of the child holds it or held it in the parent's
//! forking thread), or on the surviving owner's cache — `check()` is exact.

use core::sync::atomic::Ordering::Relaxed;

use super::{Arena, ArenaState};
use crate::block;
use crate::error::{abort_on_corruption, Corruption};
use crate::region::Region;
use crate::sync::MpmcQueue;

/// Repair bit: free the arena's `REMOTE_PENDING` blocks.
pub(super) const STRANDED_PENDING: u8 = 1;
/// Repair bit: free the arena's `CACHED` blocks (its owner is gone).
pub(super) const STRANDED_CACHED: u8 = 2;
/// The queue is the parent's and may hold a half-written slot: drains
/// leave it alone until the child replaces it.
const STALE_QUEUE: u8 = 4;

impl Arena {
    /// The child's first step for every arena and owner slot (module doc,
    /// allocating nothing): forgets the unsent batches; and if `me` (the
    /// forking thread's token) does not own it, marks its arena
    /// ([`Arena::home`]) `STRANDED_CACHED`: the `CACHED` headers of an
    /// arena's chunks do not say which of its owners' caches holds them, so
    /// one owner that did not come along strands every cache in front of
    /// the index (`forget_cache_after_fork` then forgets them all).
    ///
    /// # Safety
    ///
    /// The calling thread is the only thread of the process (a `fork`
    /// child).
    pub(crate) unsafe fn forget_batches_after_fork(&self, me: u64) {
        for slot in &self.batches.slots {
            slot.head.store(0, Relaxed);
            slot.count.store(0, Relaxed);
            slot.bytes.store(0, Relaxed);
            slot.target.store(0, Relaxed);
        }
        self.batches.unsent.store(0, Relaxed);
        if !self.is_owned_by(me) {
            let home = self.home();
            home.fork_repair
                .store(home.fork_repair.load(Relaxed) | STRANDED_CACHED, Relaxed);
        }
    }

    /// The child's second step for every arena and owner slot, after
    /// `forget_batches_after_fork` ran on all of them: the cache is
    /// forgotten if its arena's caches are stranded; an arena is marked
    /// `STRANDED_PENDING`, and `STALE_QUEUE` if its queue is not empty (no
    /// drain pops it until `replace_stale_queue`).
    ///
    /// # Safety
    ///
    /// As for `forget_batches_after_fork`.
    pub(crate) unsafe fn forget_cache_after_fork(&self) {
        let home = self.home();
        if home.fork_repair.load(Relaxed) & STRANDED_CACHED != 0 {
            self.cache_forget_all();
        }
        if self.has_index() {
            let mut repair = self.fork_repair.load(Relaxed) | STRANDED_PENDING;
            if !self.queue().is_empty() {
                repair |= STALE_QUEUE;
            }
            self.fork_repair.store(repair, Relaxed);
        }
    }

    /// The child's second step: a stale queue is replaced by a new one
    /// (allocating — from this heap, perhaps, whose arenas all went through
    /// `forget_after_fork` first, so the allocation's lock repairs without
    /// popping a stale queue).
    ///
    /// # Safety
    ///
    /// The calling thread is the only thread of the process (a `fork`
    /// child), holds no lock and no reference to this arena's queue.
    pub(crate) unsafe fn replace_stale_queue(&self, queue_capacity: usize) {
        if !self.has_index() || self.fork_repair.load(Relaxed) & STALE_QUEUE == 0 {
            return;
        }
        let fresh = MpmcQueue::new(queue_capacity);
        // SAFETY: single-threaded (caller); the old queue is forgotten,
        // not dropped, since its slots may be half written.
        unsafe { core::mem::forget(self.remote.get().replace(fresh)) };
        self.fork_repair
            .store(self.fork_repair.load(Relaxed) & !STALE_QUEUE, Relaxed);
    }

    /// Whether the queue is a stale one a `fork` child has not replaced
    /// yet: no drain may pop it (a slot may never fill).
    #[inline]
    pub(crate) fn queue_is_stale(&self) -> bool {
        self.home().fork_repair.load(Relaxed) & STALE_QUEUE != 0
    }

    /// Whether claims must take the lock: the arena awaits its repair.
    #[inline]
    pub(crate) fn awaits_fork_repair(&self) -> bool {
        self.home().fork_repair.load(Relaxed) & (STRANDED_PENDING | STRANDED_CACHED) != 0
    }

    /// Runs the repair if the arena awaits one; called by every lock
    /// acquisition, with the lock held (`st`).
    #[inline(always)]
    pub(super) fn repair_if_forked(&self, st: &mut ArenaState) {
        if self.awaits_fork_repair() {
            self.repair_after_fork(st);
        }
    }

    #[cold]
    #[inline(never)]
    fn repair_after_fork(&self, st: &mut ArenaState) {
        let what = self.fork_repair.load(Relaxed);
        self.fork_repair.store(what & STALE_QUEUE, Relaxed);
        // The rest of a batch a drain stopped inside is `REMOTE_PENDING`
        // blocks: the walk frees them like every other pending block.
        st.drain_rest = 0;
        // SAFETY: `region` was set before the arena was published and
        // outlives it; the lock is held (caller).
        unsafe { st.free_stranded(&*self.region, what) };
    }
}

impl ArenaState {
    /// Frees every block whose header says it is stranded (`what`: the
    /// repair bits): a walk of every chunk, each block read and verified.
    ///
    /// # Safety
    ///
    /// The lock is held and no thread of the process holds a stranded
    /// block (module doc).
    unsafe fn free_stranded(&mut self, region: &Region, what: u8) {
        let mut c = self.chunks;
        while !c.is_null() {
            // SAFETY: chunks on our list are committed and ours (arena
            // invariant), the lock is held; every header read is verified
            // and sizes are checked to stay inside the chunk.
            unsafe {
                let next_chunk = (*c).next;
                let end = (*c).sentinel();
                let mut b = (*c).first_block();
                while b < end {
                    let Some(w) = (*b).read(self.key) else {
                        abort_on_corruption(b as usize, Corruption::Header);
                    };
                    let after = block::block_after(b, w.size);
                    if w.size == 0 || after > end {
                        abort_on_corruption(b as usize, Corruption::Header);
                    }
                    let stranded = (w.is_remote_pending() && !w.is_free())
                        || (what & STRANDED_CACHED != 0 && w.is_cached() && !w.is_free());
                    if !stranded {
                        b = after;
                        continue;
                    }
                    if w.is_remote_pending() {
                        self.counters.remote_frees += 1;
                    } else {
                        self.counters.from_cache += 1;
                    }
                    if self.free(region, b, w.size) {
                        // The whole chunk is one free block now, queued
                        // for the region (the guard releases it).
                        break;
                    }
                    // The free may have merged `after` into the free block
                    // before it: continue past whatever holds `after`.
                    b = after;
                    if b < end && !(*c).is_start(b as usize) {
                        match (*c).block_at_or_before(b as usize) {
                            Some(holder) => b = block::block_after(holder, (*holder).size()),
                            None => abort_on_corruption(b as usize, Corruption::Header),
                        }
                    }
                }
                c = next_chunk;
            }
        }
    }
}
