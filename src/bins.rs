//! FreeIndex: segregated first-fit bins plus a bitmap of non-empty bins.
//!
//! Bins, by block size (always a multiple of 16, at least `MIN_BLOCK`):
//!
//! | sizes | bins | width of one bin |
//! | --- | --- | --- |
//! | `0 .. SMALL_LIMIT` (1 KiB) | `size / 16`: 64 bins | exactly one size |
//! | `2^k .. 2^(k+1)` for `k = 10 ..= 21` | `SUBBINS` (8) per power of two | `2^k / 8` |
//!
//! Search (`take_first_fit`) walks bins upward from the request's own bin:
//! the head of the request's bin is taken if it fits; otherwise the first
//! non-empty bin above it — found with one `trailing_zeros` per bitmap word,
//! `BITMAP_WORDS` (3) words at most — holds only blocks that fit, and its
//! head is taken. Insert and remove are O(1) on doubly linked lists. So the
//! cost of every operation is independent of how many free blocks exist.
//!
//! Invariants: bit `b` of `nonempty` is set iff `heads[b]` is non-null;
//! every block on list `b` is free and `bin_of(size) == b`; lists are
//! doubly linked and null-terminated at both ends.

use crate::block::{self, Header, Links, GRANULE};
use crate::config::{CHUNK_SHIFT, SMALL_LIMIT, SUBBIN_BITS};

const SMALL_BINS: usize = SMALL_LIMIT / GRANULE;
/// log2 of `SMALL_LIMIT`: the first power-of-two class.
const FIRST_CLASS: u32 = SMALL_LIMIT.trailing_zeros();
const SUBBINS: usize = 1 << SUBBIN_BITS;
/// Power-of-two classes: every block is smaller than a chunk.
const CLASSES: usize = (CHUNK_SHIFT - FIRST_CLASS) as usize;
/// Total number of bins.
pub(crate) const BINS: usize = SMALL_BINS + CLASSES * SUBBINS;
const BITMAP_WORDS: usize = BINS.div_ceil(64);

const _: () = assert!(SMALL_LIMIT.is_power_of_two() && SMALL_LIMIT >> SUBBIN_BITS >= GRANULE);

/// The bin a free block of `size` bytes belongs to.
#[inline]
pub(crate) fn bin_of(size: usize) -> usize {
    if size < SMALL_LIMIT {
        size / GRANULE
    } else {
        let class = usize::BITS - 1 - size.leading_zeros();
        let sub = (size >> (class - SUBBIN_BITS)) & (SUBBINS - 1);
        SMALL_BINS + (class - FIRST_CLASS) as usize * SUBBINS + sub
    }
}

/// The smallest block size that `bin` holds.
#[cfg(test)]
pub(crate) fn bin_min_size(bin: usize) -> usize {
    if bin < SMALL_BINS {
        bin * GRANULE
    } else {
        let class = FIRST_CLASS as usize + (bin - SMALL_BINS) / SUBBINS;
        let sub = (bin - SMALL_BINS) % SUBBINS;
        (1 << class) + sub * (1 << (class - SUBBIN_BITS as usize))
    }
}

/// The free-block index of one arena. Lives inside the arena's lock.
pub(crate) struct FreeIndex {
    heads: [*mut Header; BINS],
    nonempty: [u64; BITMAP_WORDS],
}

// SAFETY: the raw pointers point into chunks owned by the arena whose lock
// guards this index; moving the index between threads moves that ownership.
unsafe impl Send for FreeIndex {}

impl FreeIndex {
    pub(crate) const fn new() -> Self {
        FreeIndex {
            heads: [core::ptr::null_mut(); BINS],
            nonempty: [0; BITMAP_WORDS],
        }
    }

    /// Adds a free block to the head of its bin.
    ///
    /// # Safety
    ///
    /// `block` is a free block, at least `MIN_BLOCK` bytes, in no bin, in a
    /// chunk of the arena that owns this index; the caller holds its lock.
    #[inline]
    pub(crate) unsafe fn insert(&mut self, block: *mut Header) {
        // SAFETY: `block` is free and big enough to hold its links (caller),
        // and the current head, if any, is a free block of this index.
        unsafe {
            let bin = bin_of((*block).size());
            let head = self.heads[bin];
            let l = block::links(block);
            (*l).next = head;
            (*l).prev = core::ptr::null_mut();
            if head.is_null() {
                self.nonempty[bin / 64] |= 1 << (bin % 64);
            } else {
                (*block::links(head)).prev = block;
            }
            self.heads[bin] = block;
        }
    }

    /// Takes a free block out of its bin.
    ///
    /// # Safety
    ///
    /// `block` is in this index, in the bin of its current size.
    #[inline]
    pub(crate) unsafe fn remove(&mut self, block: *mut Header) {
        // SAFETY: `block` and its list neighbours are free blocks of this
        // index (caller), so their links are valid.
        unsafe {
            let bin = bin_of((*block).size());
            let Links { next, prev } = *block::links(block);
            if prev.is_null() {
                self.heads[bin] = next;
                if next.is_null() {
                    self.nonempty[bin / 64] &= !(1 << (bin % 64));
                }
            } else {
                (*block::links(prev)).next = next;
            }
            if !next.is_null() {
                (*block::links(next)).prev = prev;
            }
        }
    }

    /// Removes and returns the first block, walking bins upward from the
    /// bin of `size`, whose size is at least `size`; null if none.
    ///
    /// # Safety
    ///
    /// The caller holds the arena lock.
    #[inline]
    pub(crate) unsafe fn take_first_fit(&mut self, size: usize) -> *mut Header {
        let bin = bin_of(size);
        let head = self.heads[bin];
        // SAFETY: a non-null head is a free block of this index.
        if !head.is_null() && unsafe { (*head).size() } >= size {
            // SAFETY: `head` is in this index, in bin `bin`.
            unsafe { self.remove(head) };
            return head;
        }
        match self.first_nonempty_above(bin) {
            Some(b) => {
                let block = self.heads[b];
                // SAFETY: bin `b` is non-empty, so `block` is one of its blocks.
                unsafe { self.remove(block) };
                block
            }
            None => core::ptr::null_mut(),
        }
    }

    /// The lowest non-empty bin strictly above `bin`.
    #[inline]
    fn first_nonempty_above(&self, bin: usize) -> Option<usize> {
        let start = bin + 1;
        let mut word = start / 64;
        if word >= BITMAP_WORDS {
            return None;
        }
        let mut bits = self.nonempty[word] & (u64::MAX << (start % 64));
        loop {
            if bits != 0 {
                return Some(word * 64 + bits.trailing_zeros() as usize);
            }
            word += 1;
            if word == BITMAP_WORDS {
                return None;
            }
            bits = self.nonempty[word];
        }
    }

    /// The head of bin `bin` (for walks).
    pub(crate) fn head(&self, bin: usize) -> *mut Header {
        self.heads[bin]
    }

    /// Whether the bitmap says bin `bin` is non-empty (for `check`).
    pub(crate) fn marked_nonempty(&self, bin: usize) -> bool {
        self.nonempty[bin / 64] & (1 << (bin % 64)) != 0
    }

    /// The highest non-empty bin, if any.
    pub(crate) fn highest_nonempty(&self) -> Option<usize> {
        (0..BITMAP_WORDS)
            .rev()
            .find(|&w| self.nonempty[w] != 0)
            .map(|w| w * 64 + 63 - self.nonempty[w].leading_zeros() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::CHUNK_DATA;

    #[test]
    fn bins_are_monotonic_and_cover_every_block_size() {
        let mut last = 0;
        let mut size = block::MIN_BLOCK;
        while size <= CHUNK_DATA {
            let b = bin_of(size);
            assert!(b >= last && b < BINS, "size {size} -> bin {b}");
            assert!(
                bin_min_size(b) <= size,
                "size {size} below its bin's minimum"
            );
            if b + 1 < BINS {
                assert!(
                    bin_min_size(b + 1) > size,
                    "size {size} belongs in a higher bin"
                );
            }
            last = b;
            size += GRANULE;
        }
    }

    #[test]
    fn bin_min_size_round_trips() {
        for b in block::MIN_BLOCK / GRANULE..BINS {
            assert_eq!(bin_of(bin_min_size(b)), b);
        }
    }
}
