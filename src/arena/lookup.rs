//! Pointer validation: which block of this arena a pointer names, and
//! whether it is live — the O(1) start-bit test that makes double-free and
//! invalid-free detection deterministic, and the backward bitmap scan for
//! interior pointers.
//!
//! Invariant relied on: a set start bit means a valid block header sits at
//! that address (`chunk.rs`); every function requires the arena lock.

use super::ArenaState;
use crate::block::{self, Header, Word, MIN_BLOCK};
use crate::chunk;
use crate::error::{abort_on_corruption, Corruption, FreeError};

impl ArenaState {
    /// The live block whose payload is `ptr`, or why `ptr` is not one. A
    /// header that does not verify aborts (heap corruption), whatever the
    /// caller.
    ///
    /// # Safety
    ///
    /// `ptr` is `GRANULE`-aligned and lies in a chunk of this arena; the lock
    /// is held.
    #[inline]
    pub(crate) unsafe fn find_live(&self, ptr: *mut u8) -> Result<*mut Header, FreeError> {
        // SAFETY: forwarded.
        unsafe { self.find_live_word(ptr) }.map(|(b, _)| b)
    }

    /// `find_live`, with the block's verified header word (so the free path
    /// verifies it once).
    ///
    /// # Safety
    ///
    /// As for `find_live`.
    #[inline]
    pub(crate) unsafe fn find_live_word(
        &self,
        ptr: *mut u8,
    ) -> Result<(*mut Header, Word), FreeError> {
        let b = block::payload_to_block(ptr);
        let c = chunk::chunk_of(ptr as usize);
        // SAFETY: the chunk is ours, so its header and bitmap are valid, and
        // a set start bit means a block header sits at `b`.
        unsafe {
            if (b as usize) < (*c).first_block() as usize || b >= (*c).sentinel() {
                return Err(FreeError::NotAllocated);
            }
            if (*c).is_start(b as usize) {
                let w = self.hdr(b);
                // Every block ends where the next one starts, and a free
                // one's footer says its size: a size word a program zeroed
                // or overwrote (an overflow from the block before, an
                // underflow) is refused here — before a free coalesces by
                // it, and rather than taken for a double free.
                let after = block::block_after(b, w.size);
                let sentinel = (*c).sentinel();
                if w.size < MIN_BLOCK
                    || after > sentinel
                    || (after < sentinel && !(*c).is_start(after as usize))
                {
                    abort_on_corruption(b as usize, Corruption::Header);
                }
                if w.is_free() && Header::prev_size(after, self.key) != w.size {
                    abort_on_corruption(after as usize, Corruption::PrevSize);
                }
                return if w.is_live() {
                    Ok((b, w))
                } else {
                    Err(FreeError::DoubleFree)
                };
            }
            // Not a block start: inside a free block means the block was
            // freed and coalesced into a neighbour (a double free) — and so
            // does inside a cached block, carved from such free memory for
            // the owner cache and handed to nobody; inside a live block
            // means an interior pointer.
            match (*c).block_at_or_before(b as usize) {
                Some(s) => {
                    let w = self.hdr(s);
                    if (w.is_free() || w.is_cached()) && (b as usize) < s as usize + w.size {
                        Err(FreeError::DoubleFree)
                    } else {
                        Err(FreeError::NotAllocated)
                    }
                }
                None => Err(FreeError::NotAllocated),
            }
        }
    }

    /// The pending block whose payload is `ptr` (a queue entry, or a block
    /// the caller claimed).
    ///
    /// # Safety
    ///
    /// As for `find_live`.
    pub(crate) unsafe fn find_claimed(&self, ptr: *mut u8) -> Option<(*mut Header, Word)> {
        let b = block::payload_to_block(ptr);
        let c = chunk::chunk_of(ptr as usize);
        // SAFETY: as in `find_live`.
        unsafe {
            let inside = (b as usize) >= (*c).first_block() as usize && b < (*c).sentinel();
            if !(inside && (*c).is_start(b as usize)) {
                return None;
            }
            let w = self.hdr(b);
            (w.is_remote_pending() && !w.is_free()).then_some((b, w))
        }
    }

    /// The live block whose payload contains `addr`.
    ///
    /// # Safety
    ///
    /// `addr` lies in a chunk of this arena; the lock is held.
    pub(crate) unsafe fn find_containing(&self, addr: usize) -> Option<*mut Header> {
        let c = chunk::chunk_of(addr);
        // SAFETY: the chunk is ours; a set start bit marks a header.
        unsafe {
            let s = (*c).block_at_or_before(addr)?;
            let w = self.hdr(s);
            let payload = block::block_to_payload(s) as usize;
            let inside = w.is_live() && addr >= payload && addr < s as usize + w.size;
            inside.then_some(s)
        }
    }
}
