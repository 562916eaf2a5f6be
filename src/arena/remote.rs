//! Remote: the whole cross-thread free protocol — how a block freed by a
//! thread that does not own it gets back to its owning arena. (`_mt` = may
//! run on any thread, as in mimalloc's `free.c`.) It lives under `arena/`
//! because both of its sides are the arena's: the freeing thread's claim
//! and push, and the lock holder's drain, which the arena's own paths call
//! (the cache refill, `cache.rs`; the decay step and the reclaim of an
//! exited owner, `purge.rs`). The heap calls in from above; nothing here
//! calls up.
//!
//! The algorithm is:
//!
//! 1. [`Arena::claim_mt`]: the foreign thread validates the pointer against
//!    the chunk's start bitmap and the block header, then sets the header's
//!    `REMOTE_PENDING` flag with a compare-exchange. Only one free of a
//!    block can win this (the owner's cache push changes a live header
//!    with a compare-exchange too, `cache.rs`), so a second free of
//!    the same block — remote or local, before or after the drain — is
//!    reported as `DoubleFree` at once and deterministically. From here on the block is not live for the
//!    user (`is_allocated` is false) though it is still counted live.
//! 2. [`Arena::free_remote_mt`] pushes the pointer on the owner's queue (a
//!    `sync::MpmcQueue`: crossbeam's `ArrayQueue`, capacity fixed at arena
//!    creation, lock-free, allocated once). If the queue is full, the
//!    foreign thread takes the owner's lock, drains a batch, and frees the
//!    block itself ([`Arena::free_locked`] with `claimed`).
//! 3. Whoever holds the arena lock — the owner on its own alloc/free path
//!    ([`Arena::lock_and_drain_some`], `config::DRAIN_BATCH` blocks; its
//!    cache refill, `config::CACHE_DRAIN`), an adopter, `stats`, `dump`,
//!    trim ([`Arena::lock_drained`]) and decay (`config::DRAIN_ROUND`
//!    blocks per acquisition, taking the lock again for the next round) —
//!    drains in bounded rounds, so no owner waits behind a whole queue
//!    (only `check`, a diagnostic that must report a bad entry rather than
//!    abort, drains all at once): each entry must be a pending block of the
//!    arena, and is freed and coalesced like a local free. The bound counts
//!    blocks, not entries: a drain that reaches it inside a batch leaves
//!    the batch's rest in `ArenaState::drain_rest`, where the next drain
//!    starts.
//!
//! **Batches.** A thread that owns an arena (and uses its owner cache)
//! does not push each claimed block: it keeps one batch per target arena in
//! its own arena ([`Arena::batch_remote_mt`]; snmalloc's remote batching),
//! a list threaded through the claimed blocks' first payload words
//! (safe-linked), and pushes a whole batch as one queue entry (tagged with
//! `BATCH_TAG`) when it holds `REMOTE_BATCH` blocks or `REMOTE_BATCH_BYTES`,
//! when a different target needs the slot, and whenever the owner takes a
//! cache slow path ([`Arena::flush_batches`]: a cache miss's refill, a
//! free into a full class's flush; and trim, the reclaim of an exited
//! owner, adoption — so an exited owner's batches go out with its adopter
//! or the decay; a thread whose calls never leave the fast paths or take
//! only the locked paths keeps its batch until one of those; a bit per
//! slot, `Batches::unsent`, lets those paths skip the slots when none holds
//! a block). The
//! claim stays per block and immediate, so double frees are still caught at
//! once; a full queue makes the flusher free the batch under the target's
//! lock.
//!
//! Invariant: every pointer in the queue is a block (or the head of a batch
//! of blocks) of the queue's arena whose header has `REMOTE_PENDING` set,
//! and every such block is in the queue, in exactly one arena's unsent
//! batch, in the rest of a batch its arena's drain stopped inside
//! (`drain_rest`, under the lock), or in the hands of a thread between
//! steps 1 and 2. So no free is
//! lost: after all threads join, flushing every batch and draining every
//! queue leaves each block live or free; until then `stats` counts the
//! blocks of unsent batches as pending (freed by the user, not yet free).

use core::sync::atomic::Ordering::Relaxed;

use super::{Arena, ArenaGuard, ArenaState, BATCH_SLOTS};
use crate::block::{self, HEADER, MIN_BLOCK};
use crate::chunk;
use crate::config::{
    BACKLOG_DRAIN, DRAIN_BATCH, DRAIN_ROUND, MAX_REMOTE_QUEUE_CAPACITY, REMOTE_BATCH,
    REMOTE_BATCH_BYTES, REMOTE_BATCH_JUMP,
};
use crate::error::{abort_on_free_error, FreeError};
use crate::region::Region;

/// Low bit of a queue entry: the entry is the head of a batch (a list
/// through the blocks' first payload words), not one block.
const BATCH_TAG: usize = 1;

/// The link word of a block in a batch (its first payload word).
#[inline(always)]
fn batch_link(payload: usize) -> *mut usize {
    payload as *mut usize
}

/// The hint word of a block in a batch (its second payload word, inside
/// every block's payload: `MIN_BLOCK` leaves room for the two bin links):
/// the block `REMOTE_BATCH_JUMP` links further down the batch, or 0,
/// safe-linked like the link. Only ever prefetched, never followed.
#[inline(always)]
fn batch_hint(payload: usize) -> *mut usize {
    (payload + core::mem::size_of::<usize>()) as *mut usize
}
const _: () = assert!(2 * core::mem::size_of::<usize>() <= MIN_BLOCK - HEADER);

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
        // A fork child's arena awaiting repair is freed into under its
        // lock (which repairs it first): a claim now would look stranded.
        if self.awaits_fork_repair() {
            return false;
        }
        let b = block::payload_to_block(ptr);
        let c = chunk::chunk_of(ptr as usize);
        // SAFETY: the caller found the chunk ours in the map; an arena
        // chunk stays readable after it leaves (`release_arena_chunk`
        // purges it, no `PROT_NONE`), so the bitmap and a header at a set
        // start bit are readable atomics even if it left since.
        let claimed = unsafe {
            (b as usize) >= (*c).first_block() as usize
                && b < (*c).sentinel()
                && (*c).is_start(b as usize)
                && (*b).claim_remote_mt(self.key)
        };
        // A live block keeps its chunk, so a legitimate claim finds the
        // chunk still ours. If it left between the caller's map test and
        // the claim, every block it held was freed: this free is a second
        // one, and what it claimed is not ours (another arena's block, or
        // a large block's bytes). Stop here, before anything queues it.
        if claimed && !self.chunk_test.holds(ptr as usize) {
            abort_on_free_error(FreeError::DoubleFree, ptr);
        }
        claimed
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
            Ok(()) => {
                // Its owner may be idle: decay applies it if so.
                region.decay.want();
                Ok(())
            }
            // SAFETY: forwarded; we hold the claim on the block.
            Err(_) => unsafe { self.free_locked(region, ptr, true) },
        }
    }

    /// Frees `ptr` under the arena lock (draining a batch first): a local
    /// free, or the queue-full fallback of a remote one (`claimed`: the
    /// caller already marked it pending). An empty chunk the free leaves
    /// goes back to the region after the lock is dropped (`ArenaGuard`).
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
        // The caller read the map without the lock. Under it, a chunk the
        // map still gives us is linked and stays committed (an arena marks
        // a chunk's map entry as it unlinks it, `Region::mark_leaving`);
        // one it no longer gives us emptied since — every block in it was
        // freed, so this is a second free — and may be released, reused by
        // another arena, or protected: nothing in it is read.
        if !self.is_our_chunk(ptr as usize) {
            drop(st);
            return Err(FreeError::DoubleFree);
        }
        if !claimed && self.cache_is_mine() {
            // SAFETY: we own the cache (just checked) and hold the lock.
            unsafe { self.cache_tick(&mut st, region) };
        }
        // SAFETY: `ptr` is aligned and in one of our chunks; the lock is
        // held; the block freed is one `find_*` proved live (or pending and
        // claimed by us). A chunk the free empties goes back to the region
        // when the guard unlocks.
        unsafe {
            if claimed {
                st.counters.queue_full += 1;
                let Some((b, w)) = st.find_claimed(ptr) else {
                    drop(st);
                    abort_on_free_error(FreeError::DoubleFree, ptr)
                };
                st.free(region, b, w.size);
            } else {
                // A foreign claim needs no lock: `free_live` decides
                // against one landing after this read (loom model 15).
                let (b, w) = st.find_live_word(ptr)?;
                st.free_live(region, b, w.size)?;
            }
        }
        Ok(())
    }

    /// Whether `addr` is a 16-aligned address in a chunk the region map
    /// gives to this arena.
    #[inline]
    fn is_our_chunk(&self, addr: usize) -> bool {
        self.chunk_test.holds(addr)
    }

    /// Puts the pending block at `addr` on the owner cache if it fits there;
    /// returns whether it did (else the caller frees it).
    ///
    /// # Safety
    ///
    /// The caller owns this arena's cache and holds the lock (`st`).
    unsafe fn cache_pending(&self, st: &mut ArenaState, addr: usize) -> bool {
        if !self.is_our_chunk(addr) {
            return false;
        }
        // SAFETY: `addr` is aligned and in one of our chunks; lock held.
        let Some((b, w)) = (unsafe { st.find_claimed(addr as *mut u8) }) else {
            return false;
        };
        // SAFETY: `b` is a pending block of ours; we own the cache.
        let cached = unsafe { self.cache_adopt_pending(b, w.size) };
        if cached {
            st.counters.remote_frees += 1;
        }
        cached
    }

    /// Frees the pending block whose payload is `addr` (a queue entry or a
    /// member of a batch) under the lock; `Err(addr)` if it is not one.
    fn free_pending(&self, st: &mut ArenaState, region: &Region, addr: usize) -> Result<(), usize> {
        if !self.is_our_chunk(addr) {
            return Err(addr);
        }
        // SAFETY: `addr` is aligned and in one of our chunks; lock held.
        let (b, w) = unsafe { st.find_claimed(addr as *mut u8) }.ok_or(addr)?;
        // SAFETY: `b` is a pending (hence live) block of ours of `w.size`;
        // a chunk it empties goes back when the guard unlocks.
        unsafe { st.free(region, b, w.size) };
        st.counters.remote_frees += 1;
        Ok(())
    }

    /// A remote free by the owner of this arena (`self`) of `ptr`, a block
    /// of `target`: claims it at once, then adds it to this arena's batch
    /// for `target`, flushing that batch when it is full (module doc).
    /// `arena_of` names the arenas of this heap by id.
    ///
    /// # Safety
    ///
    /// The caller owns `self`'s cache (`cache_is_mine`); `ptr` is
    /// `GRANULE`-aligned in a chunk the region map gives to `target`.
    pub(crate) unsafe fn batch_remote_mt<'a>(
        &self,
        region: &Region,
        target: &'a Arena,
        ptr: *mut u8,
        arena_of: impl Fn(u32) -> Option<&'a Arena>,
    ) -> Result<(), FreeError> {
        // SAFETY: forwarded.
        if !unsafe { target.claim_mt(ptr) } {
            // SAFETY: forwarded; the lock decides what `ptr` is.
            return unsafe { target.free_locked(region, ptr, false) };
        }
        let b = block::payload_to_block(ptr);
        // SAFETY: we hold the claim, so the header is stable and ours to
        // read; the size is the one the claim verified.
        let size = unsafe { (*b).size() };
        let i = target.id as usize % BATCH_SLOTS;
        let Some(slot) = self.batches.slots.get(i) else {
            return Ok(());
        };
        let tag = target.id + 1;
        if slot.target.load(Relaxed) != tag && slot.head.load(Relaxed) != 0 {
            self.flush_batch(region, i, &arena_of);
        }
        slot.target.store(tag, Relaxed);
        let n = slot.count.load(Relaxed);
        // The block added `REMOTE_BATCH_JUMP` blocks ago comes that many
        // links after this one: this block's prefetch hint.
        let recent = slot.recent.get(n % REMOTE_BATCH_JUMP);
        let far = match recent {
            Some(r) if n >= REMOTE_BATCH_JUMP => r.load(Relaxed),
            _ => 0,
        };
        let (link, hint) = (batch_link(ptr as usize), batch_hint(ptr as usize));
        // SAFETY: the user gave the block up and our claim keeps everybody
        // else off it until the batch is drained: its payload (two words
        // at least) is ours.
        unsafe {
            *link = slot.head.load(Relaxed) ^ target.key.link_mask(link as usize);
            *hint = far ^ target.key.link_mask(hint as usize);
        }
        if let Some(r) = recent {
            r.store(ptr as usize, Relaxed);
        }
        slot.head.store(ptr as usize, Relaxed);
        let bit = 1u8 << i;
        let unsent = &self.batches.unsent;
        if unsent.load(Relaxed) & bit == 0 {
            unsent.store(unsent.load(Relaxed) | bit, Relaxed);
        }
        let count = n + 1;
        let bytes = slot.bytes.load(Relaxed) + size;
        slot.count.store(count, Relaxed);
        slot.bytes.store(bytes, Relaxed);
        if count >= REMOTE_BATCH || bytes >= REMOTE_BATCH_BYTES {
            self.flush_batch(region, i, &arena_of);
        }
        Ok(())
    }

    /// Hands every unsent batch of this arena to its target. Called by the
    /// owner on its slow paths and by an adopter right after adoption.
    pub(crate) fn flush_batches<'a>(
        &self,
        region: &Region,
        arena_of: impl Fn(u32) -> Option<&'a Arena>,
    ) {
        let mut unsent = self.batches.unsent.load(Relaxed);
        while unsent != 0 {
            let i = unsent.trailing_zeros() as usize;
            unsent &= unsent - 1;
            self.flush_batch(region, i, &arena_of);
        }
    }

    /// Pushes one batch as one queue entry of its target; if the queue is
    /// full, frees the batch under the target's lock.
    fn flush_batch<'a>(
        &self,
        region: &Region,
        i: usize,
        arena_of: &impl Fn(u32) -> Option<&'a Arena>,
    ) {
        let Some(slot) = self.batches.slots.get(i) else {
            return;
        };
        let head = slot.head.load(Relaxed);
        let target = slot.target.load(Relaxed).wrapping_sub(1);
        slot.head.store(0, Relaxed);
        slot.count.store(0, Relaxed);
        slot.bytes.store(0, Relaxed);
        // (`i` is a slot's index: below `BATCH_SLOTS`, 8.)
        let unsent = &self.batches.unsent;
        unsent.store(unsent.load(Relaxed) & !(1u8 << i), Relaxed);
        if head == 0 {
            return;
        }
        let Some(t) = arena_of(target) else {
            // A batch names only arenas that exist (they stay until drop).
            abort_on_free_error(FreeError::NotAllocated, head as *const u8)
        };
        if t.queue().push(head | BATCH_TAG).is_ok() {
            region.decay.want();
            return;
        }
        let mut st = t.lock_and_drain_some(region);
        let mut addr = head;
        while addr != 0 {
            let slot = batch_link(addr);
            // SAFETY: `addr` is a block we claimed and batched; its first
            // payload word is its link.
            let next = unsafe { *slot ^ t.key.link_mask(slot as usize) };
            st.counters.queue_full += 1;
            if t.free_pending(&mut st, region, addr).is_err() {
                drop(st);
                abort_on_free_error(FreeError::DoubleFree, addr as *const u8);
            }
            // `free_pending` counted a drained remote free: the block took
            // the fallback instead.
            st.counters.remote_frees -= 1;
            addr = next;
        }
    }

    /// Whether this arena holds any unsent batch (racy; exact for its
    /// owner).
    pub(crate) fn has_batches(&self) -> bool {
        self.batches.slots.iter().any(|s| s.head.load(Relaxed) != 0)
    }

    /// Blocks and bytes of this arena's unsent batches bound for arena
    /// `target` (racy reads; exact when quiescent).
    pub(crate) fn batched_for(&self, target: u32) -> (usize, usize) {
        self.batches
            .slots
            .iter()
            .filter(|s| s.target.load(Relaxed) == target + 1 && s.head.load(Relaxed) != 0)
            .fold((0, 0), |(n, b), s| {
                (n + s.count.load(Relaxed), b + s.bytes.load(Relaxed))
            })
    }

    /// Takes the lock and drains a bounded batch if the queue has entries:
    /// the alloc/free path.
    #[inline]
    pub(crate) fn lock_and_drain_some(&self, region: &Region) -> ArenaGuard<'_> {
        let mut st = self.lock();
        if self.remote_waiting(&st) {
            if let Err(bad) = self.drain(&mut st, region, self.drain_limit(DRAIN_BATCH)) {
                drop(st);
                abort_on_free_error(FreeError::DoubleFree, bad as *const u8);
            }
        }
        st
    }

    /// Takes the lock with the remote queue drained (adoption, `stats`,
    /// `dump`, trim), in rounds of at most `DRAIN_ROUND` blocks per lock
    /// acquisition, so that the owner never waits behind a whole queue. A
    /// queue that other threads keep filling ends the rounds after as many
    /// as a full queue needs (exact only when quiescent, as `stats` is). A
    /// bad queue entry aborts, as a bad free would.
    pub(crate) fn lock_drained(&self, region: &Region) -> ArenaGuard<'_> {
        let mut rounds = MAX_REMOTE_QUEUE_CAPACITY * REMOTE_BATCH / DRAIN_ROUND + 1;
        loop {
            let mut st = self.lock();
            if let Err(bad) = self.drain(&mut st, region, DRAIN_ROUND) {
                drop(st);
                abort_on_free_error(FreeError::DoubleFree, bad as *const u8);
            }
            rounds -= 1;
            if rounds == 0 || !self.remote_waiting(&st) {
                return st;
            }
            drop(st);
        }
    }

    /// How many queued frees the owner applies per acquisition: `light`,
    /// or `BACKLOG_DRAIN` times as many once a quarter of the queue is
    /// taken. Small drains keep the owner's malloc tail short; but frees
    /// must be applied as fast as other threads make them, or the queue
    /// fills and every freer falls back to taking this lock (a producer
    /// whose consumers free everything it allocates).
    #[inline]
    pub(crate) fn drain_limit(&self, light: usize) -> usize {
        if self.queue().backlogged() {
            light * BACKLOG_DRAIN
        } else {
            light
        }
    }

    /// Whether queued remote frees wait for a lock holder: in the queue, or
    /// the rest of a batch a bounded drain stopped inside (`st`: the lock).
    #[inline]
    pub(crate) fn remote_waiting(&self, st: &ArenaState) -> bool {
        st.drain_rest != 0 || !self.queue().is_empty()
    }

    /// Frees up to `limit` queued blocks under the lock. Chunks that empty
    /// go back to the region when the guard unlocks (`ArenaGuard`). Returns
    /// the number drained, or the first entry that is not a pending block
    /// of this arena (heap corruption or a racing double free).
    #[cold]
    pub(crate) fn drain(
        &self,
        st: &mut ArenaState,
        region: &Region,
        limit: usize,
    ) -> Result<usize, usize> {
        // SAFETY: `to_cache` is false: nothing is asked of the caller.
        unsafe { self.drain_into(st, region, limit, false) }
    }

    /// `drain`; with `to_cache`, a drained block that fits the owner cache
    /// goes onto it as it is (still carved, now `CACHED`) instead of being
    /// freed into the index and carved again: remote frees come back to the
    /// owner as ready blocks, as mimalloc's thread-free lists do.
    ///
    /// # Safety
    ///
    /// With `to_cache`, the caller owns this arena's cache.
    pub(crate) unsafe fn drain_into(
        &self,
        st: &mut ArenaState,
        region: &Region,
        limit: usize,
        to_cache: bool,
    ) -> Result<usize, usize> {
        if self.queue_is_stale() {
            return Ok(0);
        }
        let mut n = 0;
        // The rest of a batch the last drain stopped inside comes first.
        let rest = core::mem::take(&mut st.drain_rest);
        let mut first = (rest != 0).then_some(rest | BATCH_TAG);
        while n < limit {
            let Some(entry) = first.take().or_else(|| self.queue().pop()) else {
                break;
            };
            let mut addr = entry & !BATCH_TAG;
            let batch = entry & BATCH_TAG != 0;
            loop {
                // The next link is read before the block is freed (freeing
                // reuses its payload for bin links), and so is the hint,
                // which starts the load of the block `REMOTE_BATCH_JUMP`
                // links on: the links are a chain of dependent loads, and
                // each block's lines were last written on another core.
                let next = if batch && self.is_our_chunk(addr) {
                    let (slot, hint) = (batch_link(addr), batch_hint(addr));
                    // SAFETY: `addr` is a pending block of ours (checked
                    // again by `free_pending`); its first two payload
                    // words are the batch link and hint.
                    let (next, far) = unsafe {
                        (
                            *slot ^ self.key.link_mask(slot as usize),
                            *hint ^ self.key.link_mask(hint as usize),
                        )
                    };
                    chunk::prefetch_payload(far);
                    next
                } else {
                    0
                };
                // SAFETY: `to_cache` only when the caller owns the cache
                // (this function's contract); the lock is held (`st`).
                let cached = to_cache && unsafe { self.cache_pending(st, addr) };
                if !cached {
                    self.free_pending(st, region, addr)?;
                }
                n += 1;
                if next == 0 {
                    break;
                }
                if n >= limit {
                    // The bound is reached inside a batch: its rest waits
                    // for the next drain (a pending block of ours, linked
                    // on as it was).
                    st.drain_rest = next;
                    break;
                }
                addr = next;
            }
        }
        if let Some(entry) = first {
            // A limit of 0: the rest stays where it was.
            st.drain_rest = entry & !BATCH_TAG;
        }
        Ok(n)
    }
}
