//! The arena's hot path, under its lock: take a block from the index (or a
//! new chunk), carve it to size, and on free coalesce it with both
//! neighbours through the boundary tags and index the result.
//!
//! Invariants kept here (see `block.rs` for the layout): after every
//! operation the chunk's blocks tile it, no two free blocks touch, every
//! free block is in exactly one bin, start bits mark exactly the block
//! starts, and the counters move with every block that changes state. All
//! functions require the arena lock (`&mut ArenaState` is only reachable
//! through the guard).
//!
//! Hardening: every header acted on is read verified ([`ArenaState::hdr`]);
//! every `prev_size` followed is cross-checked against the block it names
//! ([`ArenaState::prev_of`]), and every boundary tag overwritten is first
//! checked to hold what the block before it implies
//! ([`ArenaState::expect_prev_size`]). These touch only words the path
//! reads or writes anyway; a mismatch aborts with the one-line
//! `heap corruption` message (`error.rs`).

use super::{purge, ArenaState};
use crate::bins::Ctx;
use crate::block::{self, Header, Word, GRANULE, HEADER, MIN_BLOCK};
use crate::chunk::{self, ChunkHeader, CHUNK_DATA};
use crate::error::FreeError;
use crate::error::{abort_on_corruption, Corruption};
use crate::region::Region;

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
        debug_assert_eq!(id, self.id);
        let Some(need) = block::request_to_block_size(size) else {
            return core::ptr::null_mut();
        };
        // SAFETY: the caller holds the lock; `take*` return free blocks of
        // our chunks, removed from the index, that `carve` then owns.
        unsafe {
            let taken = if align <= GRANULE {
                self.take(region, need)
            } else {
                self.take_aligned(region, need, align)
            };
            let Some((b, have, purged)) = taken else {
                return core::ptr::null_mut();
            };
            self.carve(region, b, have, need, purged);
            self.counters.allocs += 1;
            block::block_to_payload(b)
        }
    }

    /// Frees the live block `b` of `size` bytes. A chunk the free empties
    /// (when another empty one is kept already) is unlinked and queued on
    /// `released`, which the guard hands back to the region after
    /// unlocking; returns whether that happened.
    ///
    /// # Safety
    ///
    /// `b` is a live (or cached) block of this arena of `size` bytes (its
    /// header verified by `find_live_word` or `find_claimed`, or taken off
    /// the owner cache); the caller holds the lock.
    #[inline]
    pub(crate) unsafe fn free(&mut self, region: &Region, b: *mut Header, size: usize) -> bool {
        self.counters.live_blocks -= 1;
        self.counters.live_bytes -= block::block_to_usable(size);
        self.counters.frees += 1;
        // SAFETY: `b` is live and ours (caller).
        match unsafe { self.release_block(region, b, size) } {
            Some(c) => {
                self.release_later(c);
                true
            }
            None => false,
        }
    }

    /// Carves up to `out.len()` blocks of `need` bytes (a block size)
    /// side by side from one free block of the index (or a new chunk), for
    /// the owner cache's refill: one take, one split and one index insert
    /// for the whole run, where carving a block at a time paid all three
    /// per block. Fills `out` from the front in ascending address order
    /// and returns how many (0: the region is exhausted; fewer than asked
    /// when the block taken holds fewer).
    pub(crate) fn carve_run(&mut self, region: &Region, need: usize, out: &mut [*mut u8]) -> usize {
        if out.is_empty() || need < MIN_BLOCK {
            return 0;
        }
        // SAFETY: the lock is held (`&mut self` comes from the guard);
        // `take` returns a free block of ours removed from the index, which
        // `carve` splits; the run it leaves live is ours to subdivide.
        unsafe {
            let Some((b, have, purged)) = self.take(region, need) else {
                return 0;
            };
            if have < 2 * need || out.len() == 1 {
                // One block: `carve_small`'s work, no division, no loop.
                self.carve(region, b, have, need, purged);
                self.counters.allocs += 1;
                if let Some(slot) = out.first_mut() {
                    *slot = block::block_to_payload(b);
                }
                return 1;
            }
            let mut k = (have / need).min(out.len());
            // A tail too small to be a block would stay on the run's last
            // block: carve one block fewer, leaving a tail that is one.
            let tail = have - k * need;
            if tail != 0 && tail < MIN_BLOCK {
                k -= 1;
            }
            // The tail is now 0 or a block: `carve` splits off exactly
            // `k * need` bytes and counts them as one live block; the run
            // is `k` blocks of `need`, each with its own header.
            self.carve(region, b, have, k * need, purged);
            let key = self.key;
            let c = chunk::chunk_of(b as usize);
            let mut at = b as usize;
            for (i, slot) in out.iter_mut().take(k).enumerate() {
                let h = at as *mut Header;
                if i > 0 {
                    // The block before is live: its boundary tag is 0.
                    Header::set_prev_size(h, key, 0);
                    (*c).set_start(at);
                }
                (*h).set(key, need, 0);
                *slot = block::block_to_payload(h);
                at += need;
            }
            self.counters.allocs += k as u64;
            self.counters.live_blocks += k - 1;
            self.counters.live_bytes -= (k - 1) * HEADER;
            k
        }
    }

    /// Frees cached blocks `blocks` (block address, size) into the index,
    /// as `free` would one by one, but merges each run of them that lie
    /// side by side first: one coalescing free and one index insert per
    /// run, not per block (a program freeing a batch it allocated in a row
    /// hands the cache runs of neighbours). Sorts `blocks` by address.
    ///
    /// # Safety
    ///
    /// Each block is a carved block of this arena of that size, taken off
    /// the owner cache (no list holds it), listed once; the lock is held.
    pub(crate) unsafe fn free_cached(&mut self, region: &Region, blocks: &mut [(usize, usize)]) {
        if let [(b, size)] = *blocks {
            // SAFETY: as below, a run of one.
            unsafe { self.free(region, b as *mut Header, size) };
            return;
        }
        // Insertion sort: a flush frees a few dozen at most, mostly in
        // (reverse) order already.
        for i in 1..blocks.len() {
            let mut j = i;
            while j > 0 {
                let (Some(&a), Some(&b)) = (blocks.get(j - 1), blocks.get(j)) else {
                    break;
                };
                if a.0 <= b.0 {
                    break;
                }
                blocks.swap(j - 1, j);
                j -= 1;
            }
        }
        let mut i = 0;
        while let Some(&(start, first)) = blocks.get(i) {
            let mut total = first;
            i += 1;
            while let Some(&(b, size)) = blocks.get(i) {
                if b != start + total {
                    break;
                }
                // `b` joins the run: its header becomes payload of the
                // merged block.
                // SAFETY: `b` is a block start of a committed chunk of
                // ours (caller); its start bit goes as it merges.
                unsafe { (*chunk::chunk_of(b)).clear_start(b) };
                // Counted as `free` would count it; `free` below counts
                // the run as one block whose usable bytes include this
                // block's header.
                self.counters.live_blocks -= 1;
                self.counters.live_bytes += HEADER;
                self.counters.frees += 1;
                total += size;
                i += 1;
            }
            // SAFETY: the run is a stretch of carved blocks of ours, none
            // in any list (caller), now one block of `total` bytes.
            unsafe { self.free(region, start as *mut Header, total) };
        }
    }

    /// Frees live block `b` of `size` bytes found under the lock
    /// (`find_live_word`, or a cache push that found it live): first takes
    /// it from any foreign claim with the claim's own compare-exchange
    /// (live -> `REMOTE_PENDING`), since a claim needs no lock and may land
    /// between the caller's read and this free's store of `FREE`; a claim
    /// that already won makes this free the `DoubleFree` (exactly one of two
    /// frees of one live block wins, as on the cache path). A chunk the
    /// free empties goes back when the guard unlocks, as for `free`.
    ///
    /// # Safety
    ///
    /// As for `free`, with `b` read live under the lock held now.
    pub(crate) unsafe fn free_live(
        &mut self,
        region: &Region,
        b: *mut Header,
        size: usize,
    ) -> Result<(), FreeError> {
        // SAFETY: `b` is a header of a chunk of ours, committed while we
        // hold the lock and it is carved (caller).
        if !unsafe { (*b).claim_remote_mt(self.key) } {
            return Err(FreeError::DoubleFree);
        }
        // SAFETY: the claim is ours now: `b` is ours to free (caller).
        unsafe { self.free(region, b, size) };
        Ok(())
    }

    // ----- the checks ----------------------------------------------------------

    /// The validation context of this arena's index.
    #[inline(always)]
    pub(crate) fn cx<'r>(&self, region: &'r Region) -> Ctx<'r> {
        Ctx {
            key: self.key,
            id: self.id,
            region,
        }
    }

    /// `b`'s verified header, or the corruption abort.
    #[inline(always)]
    pub(crate) fn hdr(&self, b: *mut Header) -> Word {
        // SAFETY: callers pass headers at block starts (start bit, tiling
        // or a verified size) of our committed chunks, under the lock.
        match unsafe { (*b).read(self.key) } {
            Some(w) => w,
            None => abort_on_corruption(b as usize, Corruption::Header),
        }
    }

    /// The free block before `b` and its size, cross-checked: `prev_size`
    /// must name a block inside the chunk, starting at a start bit, whose
    /// header verifies as free with exactly that size. `None` when the
    /// block before is live.
    #[inline(always)]
    fn prev_of(&self, b: *mut Header) -> Option<(*mut Header, usize)> {
        // SAFETY: `b` is a block of ours; the lock is held.
        let size = unsafe { Header::prev_size(b, self.key) };
        if size == 0 {
            return None;
        }
        if !self.key.hardened() {
            return Some((block::block_before(b, size), size));
        }
        let c = chunk::chunk_of(b as usize);
        // SAFETY: `c` is our committed chunk; `first_block` only computes.
        let first = unsafe { (*c).first_block() } as usize;
        let prev = block::block_before(b, size);
        let plausible = size % GRANULE == 0 && size >= MIN_BLOCK && (b as usize) - first >= size;
        // SAFETY: once plausible, `prev` is a 16-aligned address between
        // the chunk's first block and `b`: committed memory of ours.
        if plausible && unsafe { (*c).is_start(prev as usize) } {
            // SAFETY: a start bit marks a header inside our chunk.
            if let Some(w) = unsafe { (*prev).read(self.key) } {
                if w.is_free() && w.size == size {
                    return Some((prev, size));
                }
            }
        }
        abort_on_corruption(b as usize, Corruption::PrevSize)
    }

    /// Aborts unless `next`'s boundary tag says what the block before it
    /// implies: `expected` is that block's size if it is free, else 0.
    #[inline(always)]
    fn expect_prev_size(&self, next: *mut Header, expected: usize) {
        // SAFETY: `next` is a block (or the sentinel) of ours; lock held.
        if self.key.hardened() && unsafe { Header::prev_size(next, self.key) } != expected {
            abort_on_corruption(next as usize, Corruption::PrevSize);
        }
    }

    // ----- taking a block --------------------------------------------------------

    /// Removes from the index (or makes, from a new chunk) a free block of
    /// at least `need` bytes; returns it, its size and whether it is
    /// `PURGED` (its purged bytes are no longer counted: the caller's
    /// `carve` counts what its remainder keeps).
    unsafe fn take(&mut self, region: &Region, need: usize) -> Option<(*mut Header, usize, bool)> {
        let cx = self.cx(region);
        // SAFETY: lock held (caller); the index holds free blocks only.
        match unsafe { self.index.take_first_fit(&cx, need) } {
            Some((b, have)) => {
                self.note_unlinked(have);
                // SAFETY: `b` is the verified free block just taken.
                let purged = unsafe { (*b).is_purged() };
                if purged {
                    self.counters.purged_bytes -= purge::interior(b, have).1;
                }
                Some((b, have, purged))
            }
            // A fresh chunk's pages past its first header are untouched:
            // not resident, as if purged.
            None => self.grow(region).map(|b| (b, CHUNK_DATA, true)),
        }
    }

    /// Takes a fresh chunk from the region; returns its one free block,
    /// accounted as taken (not in the index).
    #[cold]
    fn grow(&mut self, region: &Region) -> Option<*mut Header> {
        let base = region.acquire_arena_chunk(self.id)?;
        self.region = region;
        // SAFETY: the region just handed us this chunk: committed, zeroed,
        // ours alone.
        let first = unsafe { chunk::init(base, self.id, self.key) };
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
        Some(first)
    }

    /// Like `take`, then splits off a free front gap so that the returned
    /// block's payload is aligned to `align`.
    unsafe fn take_aligned(
        &mut self,
        region: &Region,
        need: usize,
        align: usize,
    ) -> Option<(*mut Header, usize, bool)> {
        // SAFETY: lock held; see `take`.
        let (b, size, purged) = unsafe { self.take(region, need + align + MIN_BLOCK) }?;
        let start = b as usize;
        let mut aligned = ((start + HEADER + align - 1) & !(align - 1)) - HEADER;
        if aligned != start && aligned - start < MIN_BLOCK {
            aligned += align;
        }
        if aligned == start {
            return Some((b, size, purged));
        }
        let gap = aligned - start;
        let nb = aligned as *mut Header;
        // SAFETY: (1) `b` is a free block we removed from the index, of at
        // least `need + align + MIN_BLOCK` bytes, so `nb` and `need` bytes
        // after it lie inside it; (2) `b`'s previous block is live (no two
        // free blocks touch), so the gap block's `prev_size` stays 0.
        unsafe {
            // `carve` will find `nb`'s footer where `b`'s was.
            let next = block::block_after(b, size);
            self.expect_prev_size(next, size);
            Header::set_prev_size(next, self.key, size - gap);
            (*b).set(self.key, gap, block::FREE);
            (*nb).set(self.key, size - gap, 0);
            Header::set_prev_size(nb, self.key, gap);
            (*chunk::chunk_of(aligned)).set_start(aligned);
            // The gap's and `nb`'s pages count as resident from here on
            // (`purged` is dropped: conservative).
            self.link_free(region, b, gap, false);
        }
        Some((nb, size - gap, false))
    }

    /// Marks `b` (a taken free block of `have` bytes) live at `need` bytes,
    /// splitting off the tail as a free block when it is big enough. A
    /// tail of a `purged` block stays `PURGED`: its whole pages lie past
    /// its own header and links, so writing those and `b` touched none.
    unsafe fn carve(
        &mut self,
        region: &Region,
        b: *mut Header,
        have: usize,
        need: usize,
        purged: bool,
    ) {
        let key = self.key;
        let next = block::block_after(b, have);
        // `b` was free: the block after it must carry its footer.
        self.expect_prev_size(next, have);
        // SAFETY: `b` is a block we hold under the lock; the tail and the
        // next block lie in the same chunk.
        unsafe {
            let size = if have - need >= MIN_BLOCK {
                (*b).set(key, need, 0);
                let rest = block::block_after(b, need);
                Header::set_prev_size(rest, key, 0);
                let flags = if purged {
                    block::FREE | block::PURGED
                } else {
                    block::FREE
                };
                (*rest).set(key, have - need, flags);
                (*chunk::chunk_of(rest as usize)).set_start(rest as usize);
                Header::set_prev_size(next, key, have - need);
                self.link_free(region, rest, have - need, purged);
                need
            } else {
                (*b).set(key, have, 0);
                Header::set_prev_size(next, key, 0);
                have
            };
            self.counters.live_blocks += 1;
            self.counters.live_bytes += block::block_to_usable(size);
        }
    }

    // ----- giving a block back -----------------------------------------------------

    /// Makes block `b` of `size` bytes free: coalesces with both
    /// neighbours and indexes the result, or unlinks its chunk if the chunk
    /// is now empty and another empty one is already kept. Does not touch
    /// the live counters.
    pub(super) unsafe fn release_block(
        &mut self,
        region: &Region,
        b: *mut Header,
        size: usize,
    ) -> Option<*mut ChunkHeader> {
        let key = self.key;
        let c = chunk::chunk_of(b as usize);
        let mut start = b;
        let mut total = size;
        let next = block::block_after(b, size);
        let nw = self.hdr(next);
        // `b` is live: the block after it must not think otherwise.
        self.expect_prev_size(next, 0);
        // SAFETY: `b` is a block of one of our chunks, held under the lock;
        // its neighbours were verified (header check, cross-checked
        // prev_size), and a neighbour flagged free is in the index.
        unsafe {
            if nw.is_free() {
                self.expect_prev_size(block::block_after(next, nw.size), nw.size);
                self.unlink_free(region, next, nw.size);
                total += nw.size;
                (*c).clear_start(next as usize);
            }
            if let Some((prev, psize)) = self.prev_of(b) {
                self.unlink_free(region, prev, psize);
                total += psize;
                (*c).clear_start(b as usize);
                start = prev;
            }
            (*start).set(key, total, block::FREE);
            Header::set_prev_size(block::block_after(start, total), key, total);
            if total == CHUNK_DATA && self.counters.empty_chunks >= 1 {
                self.unlink_chunk(region, c);
                return Some(c);
            }
            self.link_free(region, start, total, false);
            None
        }
    }

    /// Queues chunk `c`, empty, unlinked and marked leaving
    /// (`unlink_chunk`), for the region: the guard gives it back through
    /// `Region::release_arena_chunk` after unlocking (`ArenaGuard`).
    pub(super) fn release_later(&mut self, c: *mut ChunkHeader) {
        // SAFETY: `c` is a committed chunk of ours that no list names any
        // more; its `next` link is free for the `released` list.
        unsafe { (*c).next = self.released };
        self.released = c;
    }

    /// Removes an empty chunk from the list (its one free block is in no
    /// bin) and from the region's map, before the lock is let go: so that,
    /// under this arena's lock, "the map gives this chunk to the arena"
    /// means "it is linked, committed, and stays so while the lock is held"
    /// (`Region::mark_leaving`). The caller queues it for the region
    /// (`release_later`).
    pub(super) unsafe fn unlink_chunk(&mut self, region: &Region, c: *mut ChunkHeader) {
        region.mark_leaving(region.chunk_index(c as usize));
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

    // ----- resizing in place ---------------------------------------------------------

    /// Resizes live block `b` in place to hold `size` payload bytes:
    /// shrinks by splitting off the tail, grows into a free next block.
    /// Returns whether it succeeded (the block is unchanged if not).
    ///
    /// # Safety
    ///
    /// `b` is a live block of this arena; the lock is held.
    pub(crate) unsafe fn resize_in_place(
        &mut self,
        region: &Region,
        b: *mut Header,
        size: usize,
    ) -> bool {
        let Some(need) = block::request_to_block_size(size) else {
            return false;
        };
        if need > CHUNK_DATA {
            return false;
        }
        let key = self.key;
        let mut have = self.hdr(b).size;
        // SAFETY: `b` is live and ours; its next block was verified.
        unsafe {
            if need > have {
                let next = block::block_after(b, have);
                let nw = self.hdr(next);
                self.expect_prev_size(next, 0);
                if !nw.is_free() || have + nw.size < need {
                    return false;
                }
                let grown = have + nw.size;
                let after = block::block_after(next, nw.size);
                self.expect_prev_size(after, nw.size);
                self.unlink_free(region, next, nw.size);
                (*chunk::chunk_of(b as usize)).clear_start(next as usize);
                (*b).set(key, grown, 0);
                Header::set_prev_size(after, key, 0);
                self.counters.live_bytes += grown - have;
                have = grown;
            }
            self.shrink(region, b, have, need);
        }
        true
    }

    /// Splits the tail off live block `b` of `have` bytes beyond `need`
    /// bytes, if it is at least a minimum block, and frees it.
    unsafe fn shrink(&mut self, region: &Region, b: *mut Header, have: usize, need: usize) {
        if have - need < MIN_BLOCK {
            return;
        }
        let key = self.key;
        // SAFETY: `b` is live and ours; the tail lies inside it.
        unsafe {
            (*b).set(key, need, 0);
            let rest = block::block_after(b, need);
            Header::set_prev_size(rest, key, 0);
            (*rest).set(key, have - need, 0);
            (*chunk::chunk_of(rest as usize)).set_start(rest as usize);
            self.counters.live_bytes -= have - need;
            // The rest cannot empty the chunk: `b` stays live in it.
            let released = self.release_block(region, rest, have - need);
            debug_assert!(released.is_none());
        }
    }

    // ----- index bookkeeping ---------------------------------------------------------

    /// Index bookkeeping for a free block taken out by the index itself.
    #[inline]
    fn note_unlinked(&mut self, size: usize) {
        self.counters.free_blocks -= 1;
        self.counters.free_bytes -= size;
        if size == CHUNK_DATA {
            self.counters.empty_chunks -= 1;
        }
    }

    /// Takes free block `b` out of the index (to merge it or grow into
    /// it); its pages count as resident from here on.
    #[inline]
    pub(super) unsafe fn unlink_free(&mut self, region: &Region, b: *mut Header, size: usize) {
        let cx = self.cx(region);
        // SAFETY: `b` is a verified free block of `size` bytes in the index
        // (caller).
        unsafe {
            self.index.remove(&cx, b, size);
            if (*b).is_purged() {
                self.counters.purged_bytes -= purge::interior(b, size).1;
            }
        }
        self.note_unlinked(size);
    }

    /// Puts free block `b` (its header written, `PURGED` iff `purged`) in
    /// the index, and tells the decay clock about it (`purge.rs`).
    #[inline]
    pub(super) unsafe fn link_free(
        &mut self,
        region: &Region,
        b: *mut Header,
        size: usize,
        purged: bool,
    ) {
        // SAFETY: `b` is a free block of `size` bytes in no bin (caller).
        unsafe { self.index.insert(self.key, b, size) };
        self.counters.free_blocks += 1;
        self.counters.free_bytes += size;
        if size == CHUNK_DATA {
            self.counters.empty_chunks += 1;
        }
        if purged {
            self.counters.purged_bytes += purge::interior(b, size).1;
        } else if size >= self.purge.min {
            // SAFETY: as above.
            unsafe { self.note_dirty(region, b, size) };
        }
    }
}
