//! Chunk: a `CHUNK`-aligned, `CHUNK`-sized slice of the region owned by one
//! arena, holding its header, its allocation-start bitmap and its blocks.
//!
//! ```text
//!  chunk base (CHUNK-aligned)
//!  +--------------------------------------+---------+-----+---------+----------+
//!  | ChunkHeader: arena id, list links,   | block   | ... | block   | sentinel |
//!  | start bitmap (1 bit per granule)     |         |     |         | (HEADER) |
//!  +--------------------------------------+---------+-----+---------+----------+
//!  ^                                      ^ FIRST_BLOCK               ^ CHUNK - HEADER
//! ```
//!
//! Invariants:
//! * The blocks tile `[base + FIRST_BLOCK, base + CHUNK - HEADER)` exactly;
//!   the last `HEADER` bytes are an end sentinel: a header of size 0 that is
//!   never free, so every real block has a next header to carry its footer.
//! * Bit `g` of `starts` is set iff a block (free or live) begins at
//!   `base + g * GRANULE`. A pointer `p` is a live block's payload iff the
//!   bit of `p - HEADER` is set and that header is not `FREE`: one load and
//!   one test, O(1), which is what makes double-free and invalid-free
//!   detection deterministic. The nearest set bit at or below an address
//!   finds the block containing it (interior-pointer queries).
//! * A chunk handed out by the region is zero-filled, so a new chunk's
//!   bitmap starts empty without being written.
//! * Every header in the chunk, the sentinel's included, verifies under the
//!   arena's key (`block.rs`).
//!
//! The bitmap words are `core::sync::atomic::AtomicU64` used with `Relaxed`
//! ordering: they are written only under the owning arena's lock, and a
//! foreign thread may read them racily to pre-validate a free; the owner
//! validates again under its lock. They are not loom-modelled (32 KiB of
//! loom atomics per chunk would swamp the models); each access is a
//! `sync::model_point`, so the models still interleave threads there.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::block::{self, Header, Key, GRANULE, GRANULE_SHIFT, HEADER};

pub(crate) use crate::config::{CHUNK, CHUNK_SHIFT};
/// Granules per chunk, one bitmap bit each.
const GRANULES: usize = CHUNK / GRANULE;
/// Bitmap words per chunk.
const BITMAP_WORDS: usize = GRANULES / 64;

/// Header at the base of every arena chunk.
#[repr(C)]
pub(crate) struct ChunkHeader {
    /// The arena that owns every block of this chunk.
    pub(crate) arena_id: u32,
    _pad: u32,
    /// The owning arena's chunk list (under the arena lock).
    pub(crate) next: *mut ChunkHeader,
    pub(crate) prev: *mut ChunkHeader,
    /// Allocation-start bitmap: bit `g` = a block starts at granule `g`.
    starts: [AtomicU64; BITMAP_WORDS],
}

/// Offset of the first block: the header, rounded to a granule.
pub(crate) const FIRST_BLOCK: usize = {
    let h = core::mem::size_of::<ChunkHeader>();
    (h + GRANULE - 1) & !(GRANULE - 1)
};
/// Offset of the end sentinel.
pub(crate) const SENTINEL: usize = CHUNK - HEADER;
/// Bytes the blocks of one chunk tile: the biggest block an arena can hold.
pub(crate) const CHUNK_DATA: usize = SENTINEL - FIRST_BLOCK;

const _: () = assert!(CHUNK.is_power_of_two() && GRANULES % 64 == 0);
const _: () = assert!(CHUNK_DATA % GRANULE == 0 && CHUNK_DATA >= CHUNK / 2);

/// Whether `payload` could be where a block's payload starts, judged by
/// its address alone: granule-aligned, with the block's header in the
/// block area of `chunk_of(payload)` — past the chunk header (one compare
/// of the offset), and below the sentinel, since the offset is under
/// `CHUNK`.
#[inline(always)]
pub(crate) fn payload_in_block_area(payload: usize) -> bool {
    // Both tests in one compare: `FIRST_BLOCK + HEADER` is granule-aligned,
    // so `off` is misaligned iff `payload` is, and rotated right by the
    // granule's bits a misaligned (or wrapped) offset is above every
    // aligned one in range.
    let off = (payload & (CHUNK - 1)).wrapping_sub(FIRST_BLOCK + HEADER);
    off.rotate_right(GRANULE_SHIFT) < (CHUNK - FIRST_BLOCK - HEADER) / GRANULE
}
const _: () = assert!((FIRST_BLOCK + HEADER) % GRANULE == 0);

/// The chunk containing `addr`.
#[inline]
pub(crate) fn chunk_of(addr: usize) -> *mut ChunkHeader {
    (addr & !(CHUNK - 1)) as *mut ChunkHeader
}

/// Asks the CPU to start loading, into its caches, what a lock holder
/// reads first of the block whose payload would be at `payload`: its start
/// bit's word, its header and its first payload words. A hint only: no
/// load is made and nothing can fault, so `payload` may be any address (a
/// stale or corrupted one costs a wasted prefetch, nothing else). A no-op
/// off `x86_64`.
#[inline(always)]
pub(crate) fn prefetch_payload(payload: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let (word, _) = addr_to_bit(payload.wrapping_sub(HEADER));
        let bitmap = (payload & !(CHUNK - 1))
            .wrapping_add(core::mem::offset_of!(ChunkHeader, starts))
            .wrapping_add(word * core::mem::size_of::<u64>());
        for addr in [bitmap, payload.wrapping_sub(HEADER), payload] {
            // SAFETY: a prefetch reads nothing the program can observe and
            // never faults, whatever the address (Intel SDM, PREFETCHh).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(addr as *const i8) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = payload;
}

/// Whether a block (free or live) begins at `header`: its start bit, in
/// the chunk that holds `header`. Any granule of the chunk may be asked,
/// its header's included (no block begins there, so those bits are never
/// set): what lets the lock-free block-start query (`Heap::start_usable`)
/// skip the block-area test. `granule` is `header`'s granule index
/// counted from any `CHUNK`-aligned address below it (the region's base:
/// `StartTest::arena_header`), whose low bits are its index in the chunk,
/// so that the bit's word and position take no arithmetic on `header`.
///
/// # Safety
///
/// `header` is granule-aligned and lies in a slot the region has handed
/// out at some time (so its chunk is readable: `region.rs`), and
/// `granule % GRANULES == (header % CHUNK) / GRANULE`.
#[inline(always)]
pub(crate) unsafe fn is_block_start(header: usize, granule: usize) -> bool {
    debug_assert_eq!(granule % GRANULES, (header & (CHUNK - 1)) / GRANULE);
    crate::sync::model_point();
    let word = (granule / 64) % BITMAP_WORDS;
    // The chunk of the header's last byte, which is `header`'s (a header
    // is granule-aligned): the compiler then takes it from the payload
    // address (`header + HEADER`) with no copy of `header`.
    let chunk = chunk_of(header + (HEADER - 1));
    // SAFETY: the chunk holding `header` is readable (the caller), and its
    // bitmap is atomics; `word < BITMAP_WORDS`.
    let bits = unsafe { (*chunk).starts.get_unchecked(word) };
    bits.load(Ordering::Relaxed) & (1 << (granule % 64)) != 0
}

#[inline]
fn addr_to_bit(addr: usize) -> (usize, u64) {
    let granule = (addr & (CHUNK - 1)) / GRANULE;
    (granule / 64, 1u64 << (granule % 64))
}

impl ChunkHeader {
    /// Whether a block begins at `addr` (an address in this chunk).
    #[inline]
    pub(crate) fn is_start(&self, addr: usize) -> bool {
        crate::sync::model_point();
        let (word, bit) = addr_to_bit(addr);
        self.starts[word].load(Ordering::Relaxed) & bit != 0
    }

    /// Whether a block (free or live) has its payload at `payload`, an
    /// address of this chunk's block area (`payload_in_block_area`): its
    /// start bit is set.
    #[inline(always)]
    pub(crate) fn starts_payload(&self, payload: usize) -> bool {
        debug_assert!(core::ptr::eq(chunk_of(payload), self));
        debug_assert!(payload_in_block_area(payload));
        self.is_start(payload - HEADER)
    }

    /// Records that a block begins at `addr`. Caller holds the arena lock.
    #[inline]
    pub(crate) fn set_start(&self, addr: usize) {
        crate::sync::model_point();
        let (word, bit) = addr_to_bit(addr);
        let w = &self.starts[word];
        w.store(w.load(Ordering::Relaxed) | bit, Ordering::Relaxed);
    }

    /// Records that no block begins at `addr` any more. Caller holds the lock.
    #[inline]
    pub(crate) fn clear_start(&self, addr: usize) {
        crate::sync::model_point();
        let (word, bit) = addr_to_bit(addr);
        let w = &self.starts[word];
        w.store(w.load(Ordering::Relaxed) & !bit, Ordering::Relaxed);
    }

    /// The start of the block containing `addr`: the nearest set bit at or
    /// below it. O(distance / 64); used only by queries and error paths.
    pub(crate) fn block_at_or_before(&self, addr: usize) -> Option<*mut Header> {
        let base = self as *const Self as usize;
        let granule = (addr & (CHUNK - 1)) / GRANULE;
        let mut word = granule / 64;
        // Keep bits 0..=granule%64 of the first word.
        let keep = u64::MAX >> (63 - granule % 64);
        let mut bits = self.starts[word].load(Ordering::Relaxed) & keep;
        loop {
            if bits != 0 {
                let g = word * 64 + 63 - bits.leading_zeros() as usize;
                let start = base + g * GRANULE;
                return (start >= base + FIRST_BLOCK).then_some(start as *mut Header);
            }
            if word == 0 {
                return None;
            }
            word -= 1;
            bits = self.starts[word].load(Ordering::Relaxed);
        }
    }

    /// The first block of this chunk.
    #[inline]
    pub(crate) fn first_block(&self) -> *mut Header {
        (self as *const Self as usize + FIRST_BLOCK) as *mut Header
    }

    /// The end sentinel.
    #[inline]
    pub(crate) fn sentinel(&self) -> *mut Header {
        (self as *const Self as usize + SENTINEL) as *mut Header
    }

    /// Number of set bits in the bitmap (for `check`).
    pub(crate) fn count_starts(&self) -> usize {
        self.starts
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_ones() as usize)
            .sum()
    }
}

/// Lays out a fresh chunk: header, one free block over all of `CHUNK_DATA`,
/// end sentinel. Returns the free block (not yet in any bin).
///
/// # Safety
///
/// `base` is a `CHUNK`-aligned chunk just handed out by the region: committed,
/// zero-filled and owned by the caller alone.
pub(crate) unsafe fn init(base: *mut u8, arena_id: u32, key: Key) -> *mut Header {
    let chunk = base.cast::<ChunkHeader>();
    // SAFETY: (1) the chunk is committed and exclusively ours, so writing its
    // header fields is sound; (2) the bitmap is already zero (fresh chunk),
    // so it needs no write; (3) FIRST_BLOCK and SENTINEL lie inside the chunk.
    unsafe {
        (*chunk).arena_id = arena_id;
        (*chunk).next = core::ptr::null_mut();
        (*chunk).prev = core::ptr::null_mut();
        let first = (*chunk).first_block();
        Header::set_prev_size(first, key, 0);
        (*first).set(key, CHUNK_DATA, block::FREE);
        (*chunk).set_start(first as usize);
        let sentinel = (*chunk).sentinel();
        (*sentinel).set(key, 0, 0);
        Header::set_prev_size(sentinel, key, CHUNK_DATA);
        first
    }
}
