//! Block: the on-heap layout of every block an arena hands out or keeps free.
//!
//! ```text
//!  block start (16-byte aligned)                               next block
//!  |                                                           |
//!  v                                                           v
//!  +-----------+--------------+---------------------------------+-----------+
//!  | prev_size | size | R | F  | payload (live)                  | prev_size | ...
//!  |  8 bytes  |   8 bytes     |   or  next, prev links (free)   |  = footer |
//!  +-----------+--------------+---------------------------------+-----------+
//!  <------------ HEADER -------><------- size - HEADER ----------->
//!
//!  size_flags word:  63 ............... 4 | 3 | 2              | 1 | 0
//!                    block size (incl.    | 0 | REMOTE_PENDING | 0 | FREE
//!                    header), multiple of GRANULE
//! ```
//!
//! * `size` counts the whole block, header included; it is a multiple of
//!   [`GRANULE`] and at least [`MIN_BLOCK`], so bits 0–3 are free for flags.
//! * `FREE`: this block is free and sits in exactly one bin of its arena.
//! * `prev_size`: 0 while the physically previous block is live (or there
//!   is none); its size while it is free — that block's footer (boundary
//!   tag), which is what makes coalescing with the previous neighbour O(1).
//!   Keeping "previous is free" here rather than as a flag of `size_flags`
//!   means the owner never writes a word that a foreign thread may be
//!   compare-exchanging: no locked instruction on the alloc or free path
//!   beyond the arena lock's own.
//! * `REMOTE_PENDING`: a live block that a foreign thread has freed and
//!   queued for its owner (see `remote.rs`). Set only by that thread's
//!   compare-exchange from a live, non-pending word; cleared when the owner
//!   frees the block. `FREE ⇒ !REMOTE_PENDING`.
//! * A free block keeps its bin links in the first 16 payload bytes, which is
//!   why the smallest block is `HEADER + LINKS`.
//! * The payload starts `HEADER` bytes after the block, so a 16-aligned block
//!   gives the 16-aligned payload `malloc` promises.
//!
//! Invariants, with `next = block + size`:
//! `F(block) ⇔ next.prev_size != 0`, and then `next.prev_size == size`;
//! never `F(block) && F(next)` (free neighbours are always coalesced).
//!
//! `size_flags` is an `AtomicUsize`: a thread validating a foreign free reads
//! it and sets `REMOTE_PENDING` with a compare-exchange while the owner may
//! be working on a neighbour. The owner writes a whole word (`set`) only for
//! blocks no other thread can legitimately name (free ones, or ones it is
//! handing out or taking back); it never touches a live neighbour's word.
//! `Relaxed` suffices: the queue push/pop and the arena lock order the
//! block's contents; the flag word only arbitrates who frees the block.

use core::sync::atomic::{AtomicUsize, Ordering};

/// Allocation granule: block sizes and block starts are multiples of it.
pub(crate) const GRANULE: usize = 16;
/// Bytes in front of every payload: `prev_size` and `size_flags`.
pub(crate) const HEADER: usize = core::mem::size_of::<Header>();
/// Bytes of bin links a free block keeps at its payload.
pub(crate) const LINKS: usize = core::mem::size_of::<Links>();
/// The smallest block: a header plus room for the bin links.
pub(crate) const MIN_BLOCK: usize = HEADER + LINKS;

/// This block is free (it is in a bin).
pub(crate) const FREE: usize = 1 << 0;
/// A foreign thread freed this live block and queued it for the owner.
pub(crate) const REMOTE_PENDING: usize = 1 << 2;
/// Every flag bit; the rest of the word is the size.
pub(crate) const FLAG_MASK: usize = GRANULE - 1;

/// The block header (see the module doc for the picture).
#[repr(C)]
pub(crate) struct Header {
    /// Size of the previous block if it is free, else 0 (module doc).
    pub(crate) prev_size: usize,
    /// `size | REMOTE_PENDING | FREE`.
    size_flags: AtomicUsize,
}

/// Doubly linked bin list, stored in a free block's payload.
#[repr(C)]
pub(crate) struct Links {
    pub(crate) next: *mut Header,
    pub(crate) prev: *mut Header,
}

const _: () = assert!(
    HEADER == GRANULE,
    "the header must keep payloads 16-aligned"
);
const _: () = assert!(MIN_BLOCK % GRANULE == 0);
const _: () = assert!(GRANULE.is_power_of_two() && FLAG_MASK >= (FREE | REMOTE_PENDING));

/// Rounds `n` up to a multiple of `align` (a power of two); `None` on overflow.
#[inline]
pub(crate) const fn align_up(n: usize, align: usize) -> Option<usize> {
    match n.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// The block size that serves a request of `size` payload bytes.
#[inline]
pub(crate) const fn request_to_block_size(size: usize) -> Option<usize> {
    match size.checked_add(HEADER) {
        Some(n) => match align_up(n, GRANULE) {
            Some(b) if b < MIN_BLOCK => Some(MIN_BLOCK),
            other => other,
        },
        None => None,
    }
}

/// The payload a block hands out.
#[inline]
pub(crate) fn block_to_payload(block: *mut Header) -> *mut u8 {
    block.cast::<u8>().wrapping_add(HEADER)
}

/// The block whose payload starts at `payload`.
#[inline]
pub(crate) fn payload_to_block(payload: *mut u8) -> *mut Header {
    payload.wrapping_sub(HEADER).cast()
}

/// Bytes a caller may use in a block of `block_size`.
#[inline]
pub(crate) const fn block_to_usable(block_size: usize) -> usize {
    block_size - HEADER
}

impl Header {
    /// Block size, header included.
    #[inline]
    pub(crate) fn size(&self) -> usize {
        self.size_flags.load(Ordering::Relaxed) & !FLAG_MASK
    }

    #[inline]
    pub(crate) fn flags(&self) -> usize {
        self.size_flags.load(Ordering::Relaxed) & FLAG_MASK
    }

    #[inline]
    pub(crate) fn is_free(&self) -> bool {
        self.flags() & FREE != 0
    }

    #[inline]
    pub(crate) fn prev_is_free(&self) -> bool {
        self.prev_size != 0
    }

    /// Overwrites size and flags.
    #[inline]
    pub(crate) fn set(&self, size: usize, flags: usize) {
        crate::sync::model_point();
        debug_assert!(size & FLAG_MASK == 0 && flags & !FLAG_MASK == 0);
        self.size_flags.store(size | flags, Ordering::Relaxed);
    }

    /// Whether this is a live block nobody has freed yet.
    #[inline]
    pub(crate) fn is_live(&self) -> bool {
        self.flags() & (FREE | REMOTE_PENDING) == 0
    }

    #[inline]
    pub(crate) fn is_remote_pending(&self) -> bool {
        self.flags() & REMOTE_PENDING != 0
    }

    /// Marks a live block `REMOTE_PENDING`; fails if it is free or already
    /// pending. At most one caller wins for each time the block is live.
    #[inline]
    pub(crate) fn claim_remote_mt(&self) -> bool {
        crate::sync::model_point();
        let mut word = self.size_flags.load(Ordering::Relaxed);
        loop {
            crate::sync::model_point();
            if word & (FREE | REMOTE_PENDING) != 0 || word & !FLAG_MASK == 0 {
                return false;
            }
            match self.size_flags.compare_exchange_weak(
                word,
                word | REMOTE_PENDING,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => word = now,
            }
        }
    }
}

/// The physically next block (or the chunk's end sentinel).
///
/// # Safety
///
/// `block` is a block header inside a chunk; its size is current.
#[inline]
pub(crate) unsafe fn next_block(block: *mut Header) -> *mut Header {
    // SAFETY: the caller guarantees `block` is a valid header; a block never
    // extends past its chunk's end sentinel, so `block + size` stays inside.
    unsafe { block.cast::<u8>().add((*block).size()).cast() }
}

/// The physically previous block.
///
/// # Safety
///
/// `block` is a valid header whose previous block is free (so `prev_size`
/// is a footer).
#[inline]
pub(crate) unsafe fn prev_block(block: *mut Header) -> *mut Header {
    // SAFETY: a free predecessor means `prev_size` is the size of the block just
    // before, which lies in the same chunk.
    unsafe { block.cast::<u8>().sub((*block).prev_size).cast() }
}

/// Writes `block`'s boundary tag: the next block learns that its predecessor
/// is free and how big it is.
///
/// # Safety
///
/// `block` is a free block header whose size is current.
#[inline]
pub(crate) unsafe fn write_footer(block: *mut Header) {
    // SAFETY: the next block (or the sentinel) is a valid header in the same
    // chunk, and the caller holds the arena lock that guards both.
    unsafe {
        let next = next_block(block);
        (*next).prev_size = (*block).size();
    }
}

/// Records that `block`'s previous block is live. A plain store to
/// `prev_size` only: `block` may be live and its `size_flags` under a foreign
/// compare-exchange.
///
/// # Safety
///
/// `block` is a valid header; the caller holds its arena's lock.
#[inline]
pub(crate) unsafe fn set_prev_live(block: *mut Header) {
    // SAFETY: a field write through the raw pointer (no reference to the
    // whole header is made); `prev_size` is only ever touched under the lock.
    unsafe { (*block).prev_size = 0 };
}

/// The bin links of a free block.
///
/// # Safety
///
/// `block` is a free block of at least `MIN_BLOCK` bytes.
#[inline]
pub(crate) unsafe fn links(block: *mut Header) -> *mut Links {
    block_to_payload(block).cast()
}
