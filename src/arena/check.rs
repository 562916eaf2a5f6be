//! The invariant walk (`Heap::check`) and the read-only walks `stats` and
//! `dump` use: every property listed in `arena/mod.rs` is proven here by
//! visiting every chunk, block and bin entry, returning the first violation.
//!
//! Invariant of the walks themselves: they never follow a pointer they have
//! not first proven to lie in one of this arena's committed chunks (by the
//! region map) and never step past a chunk's sentinel, so a corrupt heap is
//! reported, not crashed on. All require the arena lock.

use super::{purge, ArenaState, Counters};
use crate::bins::{self, BINS};
use crate::block::{self, Header, HEADER, MIN_BLOCK};
use crate::chunk::{ChunkHeader, CHUNK_DATA};
use crate::error::{HeapError, HeapErrorKind};
use crate::region::{ChunkUse, Region};

impl ArenaState {
    /// Proves this arena's invariants (module doc), returning the first
    /// violation found.
    ///
    /// `cached` is what the owner cache's own walk (`Arena::check_cache`)
    /// found, and `pending` how many of this arena's blocks other owners
    /// hold in unsent batches (the queue was just drained): the chunk walk
    /// must meet exactly that many `CACHED` and `REMOTE_PENDING` headers.
    pub(crate) fn check(
        &self,
        region: &Region,
        id: u32,
        cached: usize,
        pending: usize,
    ) -> Result<(), HeapError> {
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
            to_cache: self.counters.to_cache,
            from_cache: self.counters.from_cache,
            purges: self.counters.purges,
            ..Counters::default()
        };
        let (mut cached_headers, mut pending_headers) = (0, 0);
        let mut quarantined = (0, 0);
        let mut dirty = false;
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
            let (cached, pending) =
                unsafe { self.check_chunk(c, &mut walked, &mut dirty, &mut quarantined, id)? };
            cached_headers += cached;
            pending_headers += pending;
            prev_chunk = c;
            // SAFETY: as above.
            c = unsafe { (*c).next };
            if walked.chunk_count > region.chunk_count() {
                return err(HeapErrorKind::ChunkNotOwned, ca);
            }
        }
        if cached_headers != cached {
            return err(HeapErrorKind::BadCache, 0);
        }
        if pending_headers != pending {
            return err(HeapErrorKind::BadRemoteEntry, 0);
        }
        self.check_quarantine(region, quarantined.0, quarantined.1)?;
        self.check_bins(region, walked.free_blocks, id)?;
        if walked != self.counters || !self.check_purge(walked.purged_bytes, dirty) {
            return err(HeapErrorKind::CounterMismatch, 0);
        }
        let c = &self.counters;
        if c.live_bytes + c.live_blocks * HEADER + c.free_bytes != c.chunk_count * CHUNK_DATA {
            return err(HeapErrorKind::CounterMismatch, 0);
        }
        Ok(())
    }

    /// Walks one chunk: header checks, tiling, flags, footers, start bits.
    /// Returns how many blocks it found marked `CACHED` and
    /// `REMOTE_PENDING`; sets `dirty` if it met a free block decay must
    /// purge (`purge.rs`); adds the `QUARANTINED` blocks and bytes to
    /// `quarantined`. In stress mode every carved block's record, redzone
    /// or poison is verified too (`quarantine.rs`).
    unsafe fn check_chunk(
        &self,
        c: *mut ChunkHeader,
        walked: &mut Counters,
        dirty: &mut bool,
        quarantined: &mut (usize, usize),
        id: u32,
    ) -> Result<(usize, usize), HeapError> {
        let err = |kind, addr: *mut Header| {
            Err(HeapError {
                arena: Some(id),
                addr: addr as usize,
                kind,
            })
        };
        let key = self.key;
        let (mut cached, mut pending) = (0, 0);
        // SAFETY: `c` is a committed chunk of ours (caller); every header
        // read is at an address the walk has proven lies before the sentinel.
        unsafe {
            let end = (*c).sentinel();
            let mut b = (*c).first_block();
            let mut prev_free = 0;
            let mut blocks = 0;
            while b < end {
                let Some(w) = (*b).read(key) else {
                    return err(HeapErrorKind::BadHeader, b);
                };
                if w.size < MIN_BLOCK || b as usize + w.size > end as usize {
                    return err(HeapErrorKind::BadTiling, b);
                }
                if !(*c).is_start(b as usize) {
                    return err(HeapErrorKind::BitmapMismatch, b);
                }
                if Header::prev_size(b, key) != prev_free {
                    return err(HeapErrorKind::FooterMismatch, b);
                }
                if w.is_free() {
                    if prev_free != 0 {
                        return err(HeapErrorKind::AdjacentFree, b);
                    }
                    walked.free_blocks += 1;
                    walked.free_bytes += w.size;
                    if w.is_purged() {
                        walked.purged_bytes += purge::interior(b, w.size).1;
                    } else if self.purgeable(w.size) {
                        *dirty = true;
                    }
                    if w.size == CHUNK_DATA {
                        walked.empty_chunks += 1;
                    }
                    prev_free = w.size;
                } else {
                    if w.is_quarantined() {
                        if !self.stress_on() || w.flags != block::QUARANTINED {
                            return err(HeapErrorKind::BadQuarantine, b);
                        }
                        quarantined.0 += 1;
                        quarantined.1 += w.size;
                    }
                    if self.stress_on() {
                        if let Some(f) = self.stress_inspect(b, w) {
                            return Err(HeapError {
                                arena: Some(id),
                                addr: f.addr,
                                kind: f.error_kind(),
                            });
                        }
                    }
                    if w.is_cached() {
                        if w.flags != block::CACHED {
                            return err(HeapErrorKind::BadCache, b);
                        }
                        cached += 1;
                    }
                    if w.is_remote_pending() {
                        pending += 1;
                    }
                    walked.live_blocks += 1;
                    walked.live_bytes += block::block_to_usable(w.size);
                    prev_free = 0;
                }
                blocks += 1;
                b = block::block_after(b, w.size);
            }
            let sentinel_ok = matches!((*end).read(key), Some(w) if w.size == 0 && !w.is_free());
            if !sentinel_ok {
                return err(HeapErrorKind::BadHeader, end);
            }
            if b != end || Header::prev_size(end, key) != prev_free {
                return err(HeapErrorKind::BadTiling, end);
            }
            if (*c).count_starts() != blocks {
                return err(HeapErrorKind::BitmapMismatch, c.cast());
            }
        }
        Ok((cached, pending))
    }

    /// Every bin entry is a free block of that bin, lists are well linked
    /// (safe-linked words decode to blocks that link back), and together the
    /// bins hold exactly the `free_blocks` the walk found.
    fn check_bins(&self, region: &Region, free_blocks: usize, id: u32) -> Result<(), HeapError> {
        let err = |kind, addr: *mut Header| {
            Err(HeapError {
                arena: Some(id),
                addr: addr as usize,
                kind,
            })
        };
        let cx = self.cx(region);
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
                // Links are followed only once `b` is proven a verified
                // free block in one of our committed chunks.
                if !cx.is_our_free_block(b as usize) {
                    return err(HeapErrorKind::BadLink, b);
                }
                // SAFETY: as just proven; the lock is held.
                unsafe {
                    let size = self.hdr(b).size;
                    if bins::bin_of(size) != bin {
                        return err(HeapErrorKind::BinMismatch, b);
                    }
                    let (next, back) = bins::links_of(self.key, b);
                    if back != prev {
                        return err(HeapErrorKind::BadLink, b);
                    }
                    prev = b;
                    b = next;
                }
            }
        }
        if entries != free_blocks {
            return err(HeapErrorKind::BinMismatch, core::ptr::null_mut());
        }
        Ok(())
    }

    /// Size of the largest free block (walks the highest non-empty bin).
    pub(crate) fn largest_free(&self, region: &Region) -> usize {
        let cx = self.cx(region);
        let Some(bin) = self.index.highest_nonempty() else {
            return 0;
        };
        let mut best = 0;
        let mut b = self.index.head(bin);
        while !b.is_null() {
            // SAFETY: bin lists hold free blocks of our chunks (lock held);
            // `stats` runs this on a heap `check` has not vetted, so a link
            // that fails the check ends the walk instead of being followed.
            unsafe {
                if !cx.is_our_free_block(b as usize) {
                    break;
                }
                best = best.max(self.hdr(b).size);
                b = bins::links_of(self.key, b).0;
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
                    b = block::block_after(b, size);
                }
                c = (*c).next;
            }
        }
    }
}
