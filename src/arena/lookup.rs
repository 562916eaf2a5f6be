//! Pointer validation: which block of this arena a pointer names, and
//! whether it is live — the O(1) start-bit test that makes double-free and
//! invalid-free detection deterministic, and the backward bitmap scan for
//! interior pointers.
//!
//! Invariant relied on: a set start bit means a valid block header sits at
//! that address (`chunk.rs`); every function requires the arena lock.

use super::ArenaState;
use crate::block::{self, Header};
use crate::chunk;
use crate::error::FreeError;

impl ArenaState {
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
}
