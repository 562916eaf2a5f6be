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
//!
//! **Safe-linking.** The links live in free blocks' payloads, where a
//! use-after-free write lands. Each is stored XORed with
//! `Key::link_mask(slot address)` (glibc's `PROTECT_PTR`, keyed with the
//! heap's secret), and every link is validated before it is written
//! through: the decoded pointer must be 16-aligned in the block area of the
//! region (`Ctx::is_plausible_link`) and link back to the block we came
//! from (glibc's "corrupted double-linked list" check). A failure aborts
//! with `free-list link corrupt`; a bin head whose header does not verify
//! aborts with `header check failed`. So the index never returns, or writes
//! into, an address the program chose. `check()` applies the full test
//! (`Ctx::is_our_free_block`: region map, start bit, header) to every entry.

use crate::block::{self, Header, Key, GRANULE};
use crate::chunk::{self, FIRST_BLOCK, SENTINEL};
use crate::config::{CHUNK, CHUNK_SHIFT, SMALL_LIMIT, SUBBIN_BITS};
use crate::error::{abort_on_corruption, Corruption};
use crate::region::{ChunkUse, Region};

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

/// The bin a free block of `size` bytes belongs to. Total: sizes past the
/// last class land in the last bin (only a corrupt size can be one, and it
/// is caught by the header check before it is used), so indexing by it
/// never panics.
#[inline]
pub(crate) fn bin_of(size: usize) -> usize {
    let bin = if size < SMALL_LIMIT {
        size / GRANULE
    } else {
        let class = usize::BITS - 1 - size.leading_zeros();
        let sub = (size >> (class - SUBBIN_BITS)) & (SUBBINS - 1);
        SMALL_BINS + (class - FIRST_CLASS) as usize * SUBBINS + sub
    };
    bin.min(BINS - 1)
}

/// What validating a link needs: the arena's key and id, and its region.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub(crate) key: Key,
    pub(crate) id: u32,
    pub(crate) region: &'a Region,
}

impl Ctx<'_> {
    /// Whether a decoded link `p` may be followed: 16-aligned, inside the
    /// block area of a chunk of this heap's region. A corrupted link word
    /// decodes (through the secret mask) to a pseudo-random address, which
    /// passes this with odds near 2^-32 for a 64 GiB region; one that passes
    /// must then link back to where we came from (`remove`). No memory is
    /// read here, so the test costs a few instructions on the hot path.
    #[inline(always)]
    pub(crate) fn is_plausible_link(&self, p: usize) -> bool {
        let offset = p & (CHUNK - 1);
        p % GRANULE == 0 && (FIRST_BLOCK..SENTINEL).contains(&offset) && self.region.contains(p)
    }

    /// Whether `p` is a block start in one of this arena's committed chunks
    /// (region map and start bit; its header is the caller's to verify).
    pub(crate) fn is_our_block(&self, p: usize) -> bool {
        if !self.is_plausible_link(p)
            || self.region.chunk_use(self.region.chunk_index(p)) != ChunkUse::Arena(self.id)
        {
            return false;
        }
        // SAFETY: the map says `p`'s chunk is ours, so it is committed.
        unsafe { (*chunk::chunk_of(p)).is_start(p) }
    }

    /// Whether `p` is a free block of this arena whose header verifies: the
    /// full test `check` applies to every bin entry. Reads memory only once
    /// the region map proves `p` lies in one of our (committed) chunks.
    pub(crate) fn is_our_free_block(&self, p: usize) -> bool {
        self.is_our_block_where(p, |w| w.is_free())
    }

    /// Whether `p` is the start of a block of this arena (a 16-aligned
    /// address in its block area, a start bit, the region map naming the
    /// arena) whose header verifies and satisfies `want`.
    pub(crate) fn is_our_block_where(
        &self,
        p: usize,
        want: impl Fn(crate::block::Word) -> bool,
    ) -> bool {
        if !self.is_plausible_link(p)
            || self.region.chunk_use(self.region.chunk_index(p)) != ChunkUse::Arena(self.id)
        {
            return false;
        }
        // SAFETY: the map says `p`'s chunk is ours, so it is committed (the
        // caller holds our lock, so it cannot be released meanwhile); `p`
        // is 16-aligned inside the chunk's block area.
        let header = unsafe { &*(p as *const Header) };
        // SAFETY: as above; the start bit is in the chunk's header.
        let start = unsafe { (*chunk::chunk_of(p)).is_start(p) };
        start && matches!(header.read(self.key), Some(w) if want(w))
    }
}

/// Reads the safe-linked word at `slot`.
///
/// # Safety
///
/// `slot` is a link word of a free block of ours.
#[inline(always)]
unsafe fn load_link(key: Key, slot: *const usize) -> usize {
    // SAFETY: the caller's contract.
    unsafe { *slot ^ key.index_mask(slot as usize) }
}

/// Writes `target` into the safe-linked word at `slot`.
///
/// # Safety
///
/// `slot` is a link word of a free block of ours.
#[inline(always)]
unsafe fn store_link(key: Key, slot: *mut usize, target: usize) {
    // SAFETY: the caller's contract.
    unsafe { *slot = target ^ key.index_mask(slot as usize) }
}

/// `(next, prev)` of free block `b`, decoded but not validated (walks that
/// validate for themselves: `check`, `largest_free`).
///
/// # Safety
///
/// `b` is a free block of ours; the arena lock is held.
pub(crate) unsafe fn links_of(key: Key, b: *mut Header) -> (*mut Header, *mut Header) {
    let l = block::links(b);
    // SAFETY: `b` is free, so its payload holds its links (caller).
    unsafe {
        (
            load_link(key, core::ptr::addr_of!((*l).next)) as *mut Header,
            load_link(key, core::ptr::addr_of!((*l).prev)) as *mut Header,
        )
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

    /// Adds free block `block` of `size` bytes to the head of its bin.
    ///
    /// # Safety
    ///
    /// `block` is a free block of `size` bytes (at least `MIN_BLOCK`), in no
    /// bin, in a chunk of the arena that owns this index; the caller holds
    /// its lock.
    #[inline(always)]
    pub(crate) unsafe fn insert(&mut self, key: Key, block: *mut Header, size: usize) {
        let bin = bin_of(size);
        let head = self.heads[bin];
        let l = block::links(block);
        // SAFETY: `block` is free and big enough to hold its links (caller);
        // the current head, if any, is a free block of this index whose
        // prev link we overwrite without reading it.
        unsafe {
            store_link(key, core::ptr::addr_of_mut!((*l).next), head as usize);
            store_link(key, core::ptr::addr_of_mut!((*l).prev), 0);
            if head.is_null() {
                self.nonempty[bin / 64] |= 1 << (bin % 64);
            } else {
                let hl = block::links(head);
                store_link(key, core::ptr::addr_of_mut!((*hl).prev), block as usize);
            }
        }
        self.heads[bin] = block;
    }

    /// Takes free block `block` of `size` bytes out of its bin, validating
    /// both of its links first (module doc: safe-linking).
    ///
    /// # Safety
    ///
    /// `block` is a verified free block of `size` bytes in a chunk of this
    /// arena; the lock is held.
    #[inline(always)]
    pub(crate) unsafe fn remove(&mut self, cx: &Ctx<'_>, block: *mut Header, size: usize) {
        let key = cx.key;
        let bin = bin_of(size);
        // SAFETY: `block` is a free block of ours, so its payload holds its
        // links; a neighbour's links are read only once `is_plausible_link`
        // placed it in the block area of the region (module doc), and
        // written only once it linked back to `block`.
        unsafe {
            let (next, prev) = links_of(key, block);
            if key.hardened() {
                let prev_ok = if prev.is_null() {
                    self.heads[bin] == block
                } else {
                    cx.is_plausible_link(prev as usize) && links_of(key, prev).0 == block
                };
                let next_ok = next.is_null()
                    || (cx.is_plausible_link(next as usize) && links_of(key, next).1 == block);
                if !(prev_ok && next_ok) {
                    abort_on_corruption(block as usize, Corruption::Link);
                }
            }
            if prev.is_null() {
                self.heads[bin] = next;
                if next.is_null() {
                    self.nonempty[bin / 64] &= !(1 << (bin % 64));
                }
            } else {
                let pl = block::links(prev);
                store_link(key, core::ptr::addr_of_mut!((*pl).next), next as usize);
            }
            if !next.is_null() {
                let nl = block::links(next);
                store_link(key, core::ptr::addr_of_mut!((*nl).prev), prev as usize);
            }
        }
    }

    /// Removes and returns the first block, walking bins upward from the
    /// bin of `size`, whose size is at least `size`, with its size; `None`
    /// if there is none.
    ///
    /// # Safety
    ///
    /// The caller holds the arena lock.
    #[inline]
    pub(crate) unsafe fn take_first_fit(
        &mut self,
        cx: &Ctx<'_>,
        size: usize,
    ) -> Option<(*mut Header, usize)> {
        let bin = bin_of(size);
        let own = self.heads[bin];
        if !own.is_null() {
            let have = self.verified_head_size(cx.key, own);
            if have >= size {
                // SAFETY: `own` heads bin `bin` and verified as free.
                unsafe { self.remove(cx, own, have) };
                return Some((own, have));
            }
        }
        // The first non-empty bin above holds only blocks that fit.
        let above = self.first_nonempty_above(bin)?;
        let head = *self.heads.get(above)?;
        let have = self.verified_head_size(cx.key, head);
        // SAFETY: `head` heads bin `above` and verified as free.
        unsafe { self.remove(cx, head, have) };
        Some((head, have))
    }

    /// The size of bin head `head`, aborting if its header does not verify
    /// as a free block (a head comes from our own table, but its header
    /// lies in heap memory a program can overwrite).
    #[inline(always)]
    fn verified_head_size(&self, key: Key, head: *mut Header) -> usize {
        // SAFETY: a bin head is a block of one of our committed chunks.
        match unsafe { (*head).read(key) } {
            Some(w) if w.is_free() => w.size,
            _ => abort_on_corruption(head as usize, Corruption::Header),
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
        self.heads
            .get(bin)
            .copied()
            .unwrap_or(core::ptr::null_mut())
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
