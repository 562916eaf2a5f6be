//! Purge: the pages of free memory go back to the OS while the arena keeps
//! its chunk (jemalloc's dirty-page decay, mimalloc's purge delay).
//!
//! ```text
//!  free block of >= Policy::min bytes, in its bin
//!  | header | links | ....... whole pages: the interior ....... | part page | next header
//!                   ^ page boundary                              ^ page boundary
//!                   '---- MADV_DONTNEED: not resident, reads 0 -'
//! ```
//!
//! **What.** A free block's *interior* ([`interior`]) is the run of whole
//! pages after its header and bin links up to its end. Purging hands the
//! interior back with `MADV_DONTNEED` (`sys::purge`) and marks the header
//! `PURGED`; the block stays in its bin, the chunk stays committed, and
//! coalescing and the index do not change — a purged page is simply not
//! resident until something is written there again. Carving a `PURGED`
//! block keeps the flag on the remainder (its interior lies past the pages
//! the carve wrote); merging drops it (the merged block counts as resident
//! and is purged again, which costs the kernel a page-table walk for pages
//! already gone). A fresh chunk's first block is `PURGED` from the start:
//! its pages were never touched.
//!
//! **When.** `Policy::immediate` (`purge_ms(0)`): as the block enters the
//! index. `Policy::never` (`purge_ms(-1)`): only `Heap::trim`. Otherwise on
//! the decay clock (`heap/purge.rs`): the region's epoch advances once per
//! half decay, an arena remembers the epoch in which it first indexed a
//! dirty block ([`ArenaState::note_dirty`]), and the first tick at least
//! one whole epoch later purges it ([`ArenaState::purge_due`]): so a free
//! page stays resident between half the decay and the decay, and a block
//! reused within that time costs no page fault.
//!
//! **How much.** Only what the program did not reuse. The guard, as it
//! unlocks, keeps the low-water mark of the arena's resident free bytes
//! (free bytes not purged) in the current window between due ticks
//! (`dirty_lows[0]`); a due tick purges at most the least of the last
//! [`DECAY_WINDOWS`](crate::config::DECAY_WINDOWS) windows' marks, in
//! dirty blocks, largest first, and starts a new window. A block over what is left of that budget stays
//! dirty, and the clock runs on. A program whose bursts reuse what the
//! last ones freed keeps the pool of free pages it dipped into over those
//! windows and gives back only the rest, instead of refaulting the pool
//! every decay: the `latency` workload took 10,000 page faults in 2 s
//! (purging everything a whole epoch old), 6,600 now, where 2,100 are the
//! first touch of its memory. An arena nobody locked for two ticks (idle:
//! one tick is a thread descheduled for an epoch), or whose owner is
//! gone, reuses nothing: its tick purges every dirty block, as `trim`
//! does, so a burst that is over still goes back within a decay of the
//! arena's last locked call.
//!
//! **No system call under the lock.** A decay step (a tick, trim) purges
//! in rounds of at most [`PURGE_ROUND`] blocks:
//!
//! ```text
//!  lock    take_dirty: each block out of its bin, header FREE -> CACHED
//!          (to the index allocated: no neighbour merges with it, no take
//!          finds it; to the user not live: freeing it is a double free),
//!          the next block's prev_size 0; `purging` counts them
//!  unlock  Purging::purge: MADV_DONTNEED of each interior (the slow part:
//!          tens of µs per call, a TLB shootdown on every CPU the process
//!          runs on), nobody else touches those pages
//!  lock    put_back: each block FREE | PURGED into its bin — or, if a
//!          neighbour was freed meanwhile, merged with it (dirty again,
//!          as any merge) — then the next round's take_dirty
//! ```
//!
//! Chunks go back to the region the same way: unlinked under the lock,
//! decommitted by the guard after it unlocks (`ArenaGuard`). Only
//! `Policy::immediate` (`purge_ms(0)`, a `madvise` asked for on every free)
//! still purges under the lock, on the freeing path.
//!
//! Invariants (`check()` proves all three, under the lock):
//! * `counters.purged_bytes` is the sum of `interior(b).1` over the
//!   arena's `PURGED` free blocks, and `PURGED ⇒ FREE`;
//! * unless the policy is `never`, an arena with `dirty_epoch == 0` has no
//!   free block of at least `min` bytes that is not `PURGED`;
//! * `purging == 0` whenever the decay's tick lock is free: every decay
//!   step runs under it (`heap/purge.rs`), and so do `check`, `stats` and
//!   `fork`'s prepare, so none of them ever meets a block taken out (a
//!   fork child inherits none: its repair would take one for a cached
//!   block).
//!
//! `madvise` neither allocates nor takes a lock of ours.

use super::{Arena, ArenaState};
use crate::bins::{self, BINS};
use crate::block::{self, Header, CACHED, FREE, MIN_BLOCK, PURGED};
use crate::chunk::CHUNK_DATA;
use crate::config::{DRAIN_ROUND, PAGE, PURGE_ROUND, REMOTE_BATCH};
use crate::region::Region;
use crate::sys;

/// What an arena purges, and when; copied from the heap's `Config`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    /// Smallest free block (bytes, header included) whose interior is
    /// purged; a multiple of `PAGE`.
    pub(crate) min: usize,
    /// Purge as a block enters the index (`purge_ms == 0`).
    pub(crate) immediate: bool,
    /// Purge only on `Heap::trim` (`purge_ms < 0`).
    pub(crate) never: bool,
}

impl Policy {
    /// The policy of a heap configured with `purge_ms` and `purge_min`
    /// (already clamped by `Config::resolved`).
    pub(crate) fn new(purge_ms: i64, purge_min: usize) -> Policy {
        Policy {
            min: purge_min,
            immediate: purge_ms == 0,
            never: purge_ms < 0,
        }
    }
}

/// The interior of a free block at `b` of `size` bytes: its first byte
/// and its length (0 when no whole page fits past the links).
#[inline]
pub(crate) fn interior(b: *mut Header, size: usize) -> (usize, usize) {
    let start = (b as usize + MIN_BLOCK).next_multiple_of(PAGE);
    let end = (b as usize + size) & !(PAGE - 1);
    (start, end.saturating_sub(start))
}

/// Blocks a decay step took out of the index ([`ArenaState::take_dirty`])
/// to purge with the lock dropped; on the decay thread's stack.
pub(crate) struct Purging {
    /// The blocks and their sizes; the first `n` are taken.
    blocks: [(*mut Header, usize); PURGE_ROUND],
    n: usize,
    /// `madvise` calls made for them (statistics).
    calls: u64,
}

impl Purging {
    pub(crate) fn new() -> Purging {
        Purging {
            blocks: [(core::ptr::null_mut(), 0); PURGE_ROUND],
            n: 0,
            calls: 0,
        }
    }

    /// Whether no block is taken.
    pub(crate) fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Hands every taken block's interior back to the OS; call with the
    /// arena lock dropped. Returns the bytes purged.
    pub(crate) fn purge(&mut self) -> usize {
        let mut bytes = 0;
        for &(b, size) in self.blocks.iter().take(self.n) {
            let (start, len) = interior(b, size);
            if len != 0 {
                // SAFETY: `take_dirty` took the block out of the index and
                // marked it not free: nobody but us names it until
                // `put_back`, and its interior lies past its header and
                // links, before the next header, so nothing reads it until
                // it is written again.
                unsafe { sys::purge(start as *mut u8, len) };
                self.calls += 1;
                bytes += len;
            }
        }
        bytes
    }
}

/// What one decay step did to an arena.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Purged {
    /// Interior bytes handed back with `MADV_DONTNEED`.
    pub(crate) pages: usize,
    /// Empty chunks given back to the region.
    pub(crate) chunks: usize,
}

impl Purged {
    /// Whether anything went back to the OS.
    pub(crate) fn any(self) -> bool {
        self.pages != 0 || self.chunks != 0
    }

    /// Both steps' totals.
    pub(crate) fn add(self, other: Purged) -> Purged {
        Purged {
            pages: self.pages + other.pages,
            chunks: self.chunks + other.chunks,
        }
    }
}

impl ArenaState {
    /// A free block of at least `purge.min` bytes that is not `PURGED`
    /// just entered the index: purge it now (`immediate`) or start the
    /// decay clock.
    ///
    /// # Safety
    ///
    /// `b` is a free block of `size` bytes of ours, in its bin; the lock
    /// is held.
    #[inline]
    pub(super) unsafe fn note_dirty(&mut self, region: &Region, b: *mut Header, size: usize) {
        if self.purge.never {
            return;
        }
        if self.purge.immediate {
            // SAFETY: forwarded.
            unsafe { self.purge_block(b, size) };
            return;
        }
        if self.dirty_epoch == 0 {
            self.dirty_epoch = region.decay.epoch() + 1;
            region.decay.want();
        }
    }

    /// Hands `b`'s interior back to the OS and marks it `PURGED`.
    ///
    /// # Safety
    ///
    /// As for `note_dirty`.
    unsafe fn purge_block(&mut self, b: *mut Header, size: usize) {
        let (start, len) = interior(b, size);
        if len != 0 {
            // SAFETY: the interior lies inside a free block of ours, past
            // its header and links: nothing reads it until it is written.
            unsafe { sys::purge(start as *mut u8, len) };
            self.counters.purges += 1;
        }
        // SAFETY: `b` is our free block (caller); its size is unchanged.
        unsafe { (*b).set(self.key, size, FREE | PURGED) };
        self.counters.purged_bytes += len;
    }

    /// Changes the smallest purged block (`Heap::set_purge_min`); a lower
    /// one makes blocks dirty that were not, so the clock starts.
    pub(crate) fn set_purge_min(&mut self, region: &Region, min: usize) {
        if min < self.purge.min && self.dirty_epoch == 0 && !self.purge.never {
            self.dirty_epoch = region.decay.epoch() + 1;
            region.decay.want();
        }
        self.purge.min = min;
    }

    /// Free bytes whose pages are resident, as the decay's low-water marks
    /// count them (module doc, "How much"): the free bytes less the
    /// purged interiors.
    #[inline(always)]
    pub(super) fn resident_free(&self) -> usize {
        self.counters
            .free_bytes
            .saturating_sub(self.counters.purged_bytes)
    }

    /// Whether the decay clock says this arena's dirty blocks are old
    /// enough to purge at `epoch`.
    pub(crate) fn purge_due(&self, epoch: u64) -> bool {
        self.dirty_epoch != 0 && epoch > self.dirty_epoch
    }

    /// Whether the lock went untaken by anybody else since the last decay
    /// tick called this; remembers the count for the next tick. (The
    /// caller's own acquisition is the one it made for this call.)
    pub(crate) fn idle_since_last_tick(&mut self) -> bool {
        let now = self.counters.lock_acquisitions;
        let idle = now == self.idle_mark + 1;
        self.idle_mark = now;
        self.idle_ticks = if idle {
            self.idle_ticks.saturating_add(1)
        } else {
            0
        };
        idle
    }

    /// Takes out of the index, for a purge with the lock dropped, up to
    /// `PURGE_ROUND` free blocks of at least `min` bytes (at most
    /// `purge.min`) that are not `PURGED` and fit in what is left of
    /// `budget` (bytes; each one taken is subtracted) — walks the bins that
    /// can hold one, largest first — into `out` (module doc: each is
    /// marked `CACHED`, the block after it told that its neighbour is not
    /// free). Returns whether that was all of them; then, if `out` is
    /// empty and no block was left for the budget, stops the decay clock.
    pub(crate) fn take_dirty(
        &mut self,
        region: &Region,
        min: usize,
        budget: &mut usize,
        out: &mut Purging,
    ) -> bool {
        let min = min.min(self.purge.min);
        // A corrupted list cannot loop us forever: no bin holds more.
        let most = self.counters.free_blocks;
        // Whether a dirty block was left for being over the budget.
        let mut left = false;
        // Largest first: the index's first fit reaches them last.
        for bin in (bins::bin_of(min)..BINS).rev() {
            let mut b = self.index.head(bin);
            let mut steps = 0;
            while !b.is_null() && steps <= most {
                steps += 1;
                let w = self.hdr(b);
                // SAFETY: `b` is a free block of this bin (index
                // invariant; its header just verified); the lock is held.
                // Its next link is read before it leaves the bin.
                let next = unsafe { bins::links_of(self.key, b).0 };
                let dirty = w.size >= min && !w.is_purged();
                if dirty && w.size > *budget {
                    left = true;
                } else if dirty {
                    if out.n == PURGE_ROUND {
                        return false;
                    }
                    *budget -= w.size;
                    // SAFETY: as above; `b` leaves the index, and its
                    // header and the tag after it say "not free" (module
                    // doc), so nothing takes or merges it until `put_back`.
                    unsafe {
                        self.unlink_free(region, b, w.size);
                        (*b).set(self.key, w.size, CACHED);
                        Header::set_prev_size(block::block_after(b, w.size), self.key, 0);
                    }
                    if let Some(slot) = out.blocks.get_mut(out.n) {
                        *slot = (b, w.size);
                        out.n += 1;
                    }
                    self.purging += 1;
                }
                b = next;
            }
        }
        if out.n == 0 && !left {
            self.dirty_epoch = 0;
        }
        true
    }

    /// Puts the blocks of `out` (purged since [`ArenaState::take_dirty`]
    /// took them) back into the index: `PURGED`, or merged with a
    /// neighbour freed meanwhile (and then dirty, as any merge). Empties
    /// `out`.
    pub(crate) fn put_back(&mut self, region: &Region, out: &mut Purging) {
        self.counters.purges += out.calls;
        for &(b, size) in out.blocks.iter().take(out.n) {
            self.purging -= 1;
            let next = block::block_after(b, size);
            // SAFETY: `take_dirty` took `b`, of `size` bytes, out of the
            // index; it is still ours and marked not free, so its
            // neighbours did not merge with it: `next` is a block (or the
            // sentinel) of its chunk, and a free neighbour, if any, says
            // so by its own header (after) or by `b`'s tag (before).
            unsafe {
                let lone = !self.hdr(next).is_free() && Header::prev_size(b, self.key) == 0;
                if lone {
                    (*b).set(self.key, size, FREE | PURGED);
                    Header::set_prev_size(next, self.key, size);
                    self.link_free(region, b, size, true);
                } else {
                    // A free block carrying no flag: `release_block`
                    // merges it as it would a block being freed.
                    (*b).set(self.key, size, 0);
                    if let Some(c) = self.release_block(region, b, size) {
                        self.release_later(c);
                    }
                }
            }
        }
        out.n = 0;
        out.calls = 0;
    }

    /// Unlinks every empty chunk past the first `keep` (`release_block`
    /// keeps one to absorb churn; decay, trim and a region that ran short
    /// take it); the guard gives them back to the region after unlocking.
    /// Returns how many.
    pub(crate) fn release_empty_chunks(&mut self, region: &Region, keep: usize) -> usize {
        if self.counters.empty_chunks <= keep {
            return 0;
        }
        let (mut kept, mut released) = (0, 0);
        let mut c = self.chunks;
        while !c.is_null() && self.counters.empty_chunks > keep {
            // SAFETY: the list holds our committed chunks (lock held); the
            // next link is read before `c` may go back to the region.
            let (next, first) = unsafe { ((*c).next, (*c).first_block()) };
            let w = self.hdr(first);
            if w.is_free() && w.size == CHUNK_DATA {
                if kept < keep {
                    kept += 1;
                } else {
                    // SAFETY: `first` is the chunk's one free block, in its
                    // bin; once it is out and the chunk unlinked, nothing
                    // of ours refers to the chunk, and the guard gives it
                    // back to the region after unlocking.
                    unsafe {
                        self.unlink_free(region, first, CHUNK_DATA);
                        self.unlink_chunk(region, c);
                    }
                    self.release_later(c);
                    released += 1;
                }
            }
            c = next;
        }
        released
    }

    /// The check of this module's invariants (module doc) over the walk's
    /// findings: `purged` is the interior bytes of the `PURGED` blocks the
    /// walk met, `dirty` whether it met a large free block not `PURGED`.
    pub(crate) fn check_purge(&self, purged: usize, dirty: bool) -> bool {
        purged == self.counters.purged_bytes
            && (self.purge.never || self.dirty_epoch != 0 || !dirty)
            && self.purging == 0
    }

    /// Whether a free block of `size` bytes, `PURGED` or not, is one the
    /// decay must see (for `check`).
    pub(crate) fn purgeable(&self, size: usize) -> bool {
        size >= self.purge.min
    }
}

const _: () = assert!(MIN_BLOCK < PAGE && PAGE.is_power_of_two());

/// The owner word of an arena under reclaim ([`Arena::begin_reclaim`]): no
/// thread's token (a registry token's slot field is at most `MAX_THREADS`),
/// never alive, never adoptable.
pub(crate) const RECLAIMING: u64 = u64::MAX;

/// How hard one decay step works on an arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A tick of the decay clock: skip a busy arena; apply queued remote
    /// frees and release empty chunks only if nobody else took the lock
    /// since the last tick (or the owner is gone); purge dirty pages once
    /// they are a whole epoch old.
    Tick(u64),
    /// The region ran short: take every empty chunk back, wait for locks.
    Space,
    /// `Heap::trim`: `Space`, and purge every free page now.
    Trim,
}

impl Arena {
    /// One decay step (see [`Step`]). An arena whose owner died is
    /// reclaimed first: its unsent batches go out and its cache is emptied
    /// into the index. Returns what went back to the OS and whether the
    /// arena still has work for the decay (dirty pages, queued frees, an
    /// empty chunk kept), which keeps the decay thread ticking.
    ///
    /// No system call runs under the arena lock (module doc): pages are
    /// purged in rounds with the lock dropped, chunks decommitted after
    /// it. Call with the decay's tick lock held (`HeapMeta::pause_decay`),
    /// so that no `check`, `stats` or `fork` meets a block taken out.
    pub(crate) fn decay_step<'a>(
        &self,
        region: &Region,
        step: Step,
        arena_of: impl Fn(u32) -> Option<&'a Arena>,
    ) -> (Purged, bool) {
        let reclaim = (self.cache_holds_any() || self.has_batches()) && self.begin_reclaim();
        if reclaim {
            self.flush_batches(region, &arena_of);
        }
        if !self.has_index() {
            // An owner slot: its cache and batches are all it has. Its
            // arena's step comes after it in the same pass
            // (`HeapMeta::decay_order`) and releases and purges what a
            // reclaim frees into the index; `more` keeps a tick that did
            // one from parking before that step saw it.
            if reclaim {
                let mut st = self.lock();
                // SAFETY: the `RECLAIMING` owner word gives us the dead
                // owner's cache; the lock is held.
                unsafe { self.cache_flush_all(&mut st, region) };
                drop(st);
                self.end_reclaim();
            }
            return (Purged::default(), reclaim);
        }
        let guard = match step {
            Step::Tick(_) if !reclaim => self.try_lock(),
            Step::Tick(_) => Some(self.lock()),
            // Everything queued is applied, a round per acquisition.
            Step::Space | Step::Trim => Some(self.lock_drained(region)),
        };
        let Some(mut st) = guard else {
            return (Purged::default(), true);
        };
        let mut out = Purged::default();
        if reclaim {
            // SAFETY: the `RECLAIMING` owner word gives us the dead owner's
            // cache; the lock is held.
            unsafe { self.cache_flush_all(&mut st, region) };
        }
        let idle = st.idle_since_last_tick();
        let settle = match step {
            Step::Tick(_) => idle || reclaim || self.live_owner().is_none(),
            Step::Space | Step::Trim => true,
        };
        // A round per lock hold (an owner that wakes waits behind one
        // round at most), until the queue is empty or a full queue's worth
        // was applied: nobody else applies an idle arena's remote frees, so
        // a tick that left some would hold their memory for another half
        // decay (with 1,024-entry queues, 8 rounds a tick left 256 MiB
        // freed to four idle owners resident for 2.6 s, not 1).
        let mut rounds = if settle {
            self.queue().capacity() * REMOTE_BATCH / DRAIN_ROUND + 1
        } else {
            0
        };
        while rounds > 0 && self.remote_waiting(&st) {
            rounds -= 1;
            if let Err(bad) = self.drain(&mut st, region, DRAIN_ROUND) {
                drop(st);
                crate::error::abort_on_free_error(
                    crate::error::FreeError::DoubleFree,
                    bad as *const u8,
                );
            }
            if rounds > 0 && self.remote_waiting(&st) {
                drop(st);
                st = self.lock();
            }
        }
        if settle {
            // Before the purge: an empty chunk goes back whole (the guard
            // decommits it once unlocked) rather than purged first.
            out.chunks = st.release_empty_chunks(region, 0);
        }
        let purge_now = match step {
            Step::Tick(epoch) => st.purge_due(epoch),
            Step::Space => false,
            Step::Trim => true,
        };
        if purge_now {
            // A tick purges what the policy names, up to what the program
            // did not reuse since the last purge (module doc, "How much");
            // trim every whole page.
            let (min, budget) = match step {
                Step::Trim => (PAGE + MIN_BLOCK, usize::MAX),
                _ if st.idle_ticks >= 2 || reclaim || self.live_owner().is_none() => {
                    (st.purge.min, usize::MAX)
                }
                _ => (
                    st.purge.min,
                    st.dirty_lows.iter().fold(usize::MAX, |a, &b| a.min(b)),
                ),
            };
            let (pages, relocked) = self.purge_rounds(st, region, min, budget);
            out.pages = pages;
            st = relocked;
            // The next window starts here.
            let resident_free = st.resident_free();
            st.dirty_lows.rotate_right(1);
            if let Some(low) = st.dirty_lows.first_mut() {
                *low = resident_free;
            }
        }
        // The step's own acquisitions do not make the arena look busy to
        // the next tick (`idle_since_last_tick`).
        st.idle_mark = st.counters.lock_acquisitions;
        let more = st.dirty_epoch != 0 || st.counters.empty_chunks != 0 || self.remote_waiting(&st);
        drop(st);
        if reclaim {
            self.end_reclaim();
        }
        (out, more)
    }

    /// Purges the free blocks of at least `min` bytes that are not
    /// `PURGED` (at most `purge.min`, as `take_dirty`), largest first, up
    /// to `budget` bytes of blocks, `PURGE_ROUND` blocks per round, each
    /// round's `madvise` calls with the lock dropped (module doc); stops
    /// the decay clock once a round finds nothing and left nothing for
    /// the budget. Returns the bytes purged and the lock, held again.
    fn purge_rounds<'g>(
        &'g self,
        mut st: super::ArenaGuard<'g>,
        region: &Region,
        min: usize,
        mut budget: usize,
    ) -> (usize, super::ArenaGuard<'g>) {
        let mut batch = Purging::new();
        // Every round takes blocks that were dirty, or merged since: a
        // bound against a program that keeps freeing next to them (what
        // is left waits for the next tick; the clock still runs).
        let mut rounds = st.counters.free_blocks / PURGE_ROUND + 2;
        let mut bytes = 0;
        while rounds > 0 {
            rounds -= 1;
            st.take_dirty(region, min, &mut budget, &mut batch);
            if batch.is_empty() {
                break;
            }
            drop(st);
            bytes += batch.purge();
            st = self.lock();
            st.put_back(region, &mut batch);
        }
        (bytes, st)
    }
}
