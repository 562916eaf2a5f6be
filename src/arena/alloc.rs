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

use super::ArenaState;
use crate::block::{self, Header, GRANULE, HEADER, MIN_BLOCK};
use crate::chunk::{self, ChunkHeader, CHUNK_DATA};
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
}
