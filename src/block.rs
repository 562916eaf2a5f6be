//! Block: the on-heap layout of every block an arena hands out or keeps free,
//! and the checks that make a corrupted one detectable.
//!
//! ```text
//!  block start (16-byte aligned)                               next block
//!  |                                                           |
//!  v                                                           v
//!  +-----------+--------------+---------------------------------+-----------+
//!  | prev_word | size_flags    | payload (live)                  | prev_word | ...
//!  |  8 bytes  |   8 bytes     |   or  next, prev links (free)   |  = footer |
//!  +-----------+--------------+---------------------------------+-----------+
//!  <------------ HEADER -------><------- size - HEADER ----------->
//!
//!  size_flags:  63 .......... 32 | 31 ... 22 | 21 ............ 4 | 3                    | 2              | 1      | 0
//!               check value      | zero      | block size / 16   | PURGED / QUARANTINED | REMOTE_PENDING | CACHED | FREE
//! ```
//!
//! * `size` counts the whole block, header included; it is a multiple of
//!   [`GRANULE`], at least [`MIN_BLOCK`] and below a chunk (22 bits), so
//!   bits 0–3 are free for flags and bits 22–31 are always zero.
//! * The **check value** (bits 32–63) is a keyed hash of the block's address,
//!   its size and its flags under the heap's secret ([`Key`]; scudo's
//!   checksummed headers): an overflow from the block before, an underflow
//!   into this one, or a size made larger or zeroed fails it (the odds that
//!   random bytes pass are 2^-32). Every header the allocator acts on is
//!   read through [`Header::read`], which verifies it.
//! * `FREE`: this block is free and sits in exactly one bin of its arena.
//! * `CACHED`: this block sits in exactly one list of its arena's owner
//!   cache. To the index it is allocated (neighbours do not coalesce with
//!   it, `prev_size` after it is 0); to the user it is not live: freeing it
//!   is a double free. `CACHED ⇒ !FREE && !REMOTE_PENDING`.
//! * `PURGED`: a free block whose whole pages past its links were handed
//!   back to the OS (`arena/purge.rs`) and not written since: they read as
//!   zero and are not resident. `PURGED ⇒ FREE`. Dropped (conservatively:
//!   the block counts as resident again) when the block merges; kept by the
//!   remainder when it is split.
//! * `QUARANTINED` (bit 3 on a block that is *not* `FREE`; the same bit is
//!   `PURGED` on a free one): stress mode only (`arena/quarantine.rs`).
//!   The user freed the block; it waits, poisoned, in its arena's
//!   quarantine FIFO before it is freed into the index. Like `CACHED`: to
//!   the index it is allocated, to the user it is not live (freeing it is
//!   a double free, `is_allocated` is false, a remote claim fails).
//!   `QUARANTINED ⇒ !CACHED && !REMOTE_PENDING`.
//! * `prev_word`: the **mangled** `prev_size` — 0 while the physically
//!   previous block is live (or there is none); its size while it is free:
//!   that block's footer (boundary tag), which is what makes coalescing with
//!   the previous neighbour O(1). It is stored XORed with a mask derived
//!   from the address and the secret ([`Key::prev_mask`]), so bytes a
//!   program writes over it decode to a size that fails the cross-check
//!   against the block it names. Keeping "previous is free" here rather
//!   than as a flag of `size_flags` means the lock holder never writes a
//!   word that a foreign thread may be compare-exchanging with a plain
//!   store; the one word both may change, `size_flags` of a live block, is
//!   only ever changed from live by a compare-exchange (a foreign claim,
//!   the owner's cache push), so exactly one of two frees of it wins.
//! * `REMOTE_PENDING`: a live block that a foreign thread has freed and
//!   queued for its owner (see `arena/remote.rs`). Set only by that thread's
//!   compare-exchange from a live, non-pending, verified word; cleared when
//!   the owner frees the block. `FREE ⇒ !REMOTE_PENDING`.
//! * A free block keeps its bin links in the first 16 payload bytes, each
//!   **safe-linked** (glibc's `PROTECT_PTR`, keyed): stored XORed with
//!   [`Key::link_mask`] of the slot's address, and validated when taken
//!   (`bins.rs`). That is why the smallest block is `HEADER + LINKS`.
//! * The payload starts `HEADER` bytes after the block, so a 16-aligned block
//!   gives the 16-aligned payload `malloc` promises.
//!
//! Invariants, with `next = block + size`:
//! `F(block) ⇔ prev_size(next) != 0`, and then `prev_size(next) == size`;
//! never `F(block) && F(next)` (free neighbours are always coalesced); every
//! header of a chunk verifies under the arena's key.
//!
//! `size_flags` is an `AtomicUsize`: a thread validating a foreign free reads
//! it and sets `REMOTE_PENDING` with a compare-exchange while the owner may
//! be working on a neighbour. The owner writes a whole word (`set`) only for
//! blocks no other thread can legitimately name (free ones, or ones it is
//! handing out or taking back); it never touches a live neighbour's word.
//! `Relaxed` suffices: the queue push/pop and the arena lock order the
//! block's contents; the flag word only arbitrates who frees the block.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::config::CHUNK_SHIFT;

/// Allocation granule: block sizes and block starts are multiples of it.
pub(crate) const GRANULE: usize = 16;
/// `log2(GRANULE)`: a byte offset shifted (or rotated) right by this is in
/// granules.
pub(crate) const GRANULE_SHIFT: u32 = GRANULE.trailing_zeros();
/// Bytes in front of every payload: `prev_size` and `size_flags`.
pub(crate) const HEADER: usize = core::mem::size_of::<Header>();
/// Bytes of bin links a free block keeps at its payload.
pub(crate) const LINKS: usize = core::mem::size_of::<Links>();
/// The smallest block: a header plus room for the bin links.
pub(crate) const MIN_BLOCK: usize = HEADER + LINKS;

/// This block is free (it is in a bin).
pub(crate) const FREE: usize = 1 << 0;
/// The block sits in its arena's owner cache (`arena/cache.rs`): carved,
/// not free in the index, not live for the user.
pub(crate) const CACHED: usize = 1 << 1;
/// A foreign thread freed this live block and queued it for the owner.
pub(crate) const REMOTE_PENDING: usize = 1 << 2;
/// With `FREE`: the block's whole pages past its links were purged
/// (`arena/purge.rs`) and nothing was written there since.
pub(crate) const PURGED: usize = 1 << 3;
/// On a block that is not `FREE`: the user freed it and it waits in its
/// arena's stress-mode quarantine (`arena/quarantine.rs`). The same bit as
/// `PURGED`, which only a free block carries.
pub(crate) const QUARANTINED: usize = 1 << 3;
/// Every flag bit.
pub(crate) const FLAG_MASK: usize = GRANULE - 1;
/// Bits of `size_flags` that hold the size.
const SIZE_MASK: usize = ((1 << CHUNK_SHIFT) - 1) & !FLAG_MASK;
/// Where the check value starts in `size_flags`.
const CHECK_SHIFT: u32 = 32;
/// Bits below the check value that must be zero (above the size).
const ZERO_MASK: usize = ((1 << CHECK_SHIFT) - 1) & !(SIZE_MASK | FLAG_MASK);

/// The block header (see the module doc for the picture).
#[repr(C)]
pub(crate) struct Header {
    /// `prev_size ^ key.prev_mask(address)` (module doc); written only
    /// under the arena lock, through [`Header::set_prev_size`], read through
    /// [`Header::prev_size`] — also without the lock by a hardened owner
    /// cache checking the block after the one it takes, hence an atomic
    /// (relaxed: plain moves).
    prev_word: AtomicUsize,
    /// `check << 32 | size | PURGED | REMOTE_PENDING | CACHED | FREE`.
    size_flags: AtomicUsize,
}

/// Doubly linked bin list, stored in a free block's payload; both words are
/// safe-linked (`Key::link_mask`), so read them only through `bins.rs`.
#[repr(C)]
pub(crate) struct Links {
    pub(crate) next: usize,
    pub(crate) prev: usize,
}

/// A verified `size_flags` word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Word {
    /// Block size, header included.
    pub(crate) size: usize,
    /// `FREE | REMOTE_PENDING` bits.
    pub(crate) flags: usize,
}

impl Word {
    #[inline]
    pub(crate) fn is_free(self) -> bool {
        self.flags & FREE != 0
    }

    /// Live and not freed by anyone yet (not free, not cached, not
    /// pending, not quarantined).
    #[inline]
    pub(crate) fn is_live(self) -> bool {
        self.flags & (FREE | CACHED | REMOTE_PENDING | QUARANTINED) == 0
    }

    /// Freed by the user and waiting in the stress-mode quarantine.
    #[inline]
    pub(crate) fn is_quarantined(self) -> bool {
        self.flags & (FREE | QUARANTINED) == QUARANTINED
    }

    #[inline]
    pub(crate) fn is_cached(self) -> bool {
        self.flags & CACHED != 0
    }

    /// Free with its interior pages purged (`arena/purge.rs`).
    #[inline]
    pub(crate) fn is_purged(self) -> bool {
        self.flags & (FREE | PURGED) == FREE | PURGED
    }

    #[inline]
    pub(crate) fn is_remote_pending(self) -> bool {
        self.flags & REMOTE_PENDING != 0
    }
}

/// The heap's secret as one arena uses it: keys the free-list link
/// mangling (always) and, on a hardened heap, the header check values and
/// the `prev_size` mangling. Copied into every arena at creation; never
/// changes.
///
/// Without hardening — the default: the checks cost 9-17 % on the locked
/// path, `benches/RESULTS.md` "Hardened checks" — headers carry no check value and
/// `prev_size` is stored plain, but links are still safe-linked and every
/// header must still be well formed (nothing above its size field), which
/// is what the default integrity checks stand on (DESIGN "Heap
/// corruption").
///
/// Bit 0 says "hardened"; the other bits are the secret (bit 63 set, so
/// never 0). One word, as before hardening became two tiers: the arena's
/// layout, which the fast paths' offsets depend on, does not change.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Key(u64);

/// `Key`'s bit that says "hardened".
const HARDENED: u64 = 1;

impl Key {
    /// The key of a heap with this secret: checking iff `hardened`.
    pub(crate) fn new(secret: u64, hardened: bool) -> Key {
        let secret = (secret | 1 << 63) & !HARDENED;
        Key(if hardened { secret | HARDENED } else { secret })
    }

    /// This key with the check values off: what the owner cache's fast
    /// paths use (only a heap that does not check takes them,
    /// `Arena::fast_owner`), so that every `hardened()` test folds away
    /// while the links stay keyed (by the same bits: an unhardened key has
    /// bit 0 clear already).
    #[inline(always)]
    pub(crate) fn unchecked(self) -> Key {
        Key(self.0 & !HARDENED)
    }

    /// Whether this key checks (hardened heap).
    #[inline(always)]
    pub(crate) fn hardened(self) -> bool {
        self.0 & HARDENED != 0
    }

    /// The 32-bit check value of a header at `addr` whose low word is `low`
    /// (size and flags): the top half of one odd multiplication of the three
    /// XORed together. `low` enters at bit 32, where flipping an input bit
    /// flips the same product bit, so any change to the size or flags alone
    /// changes the check value; the address and the secret reach it through
    /// the carries (a header copied elsewhere, or forged without the secret,
    /// passes with odds near 2^-32).
    #[inline(always)]
    fn check(self, addr: usize, low: usize) -> usize {
        let x = addr as u64 ^ self.0 ^ (low as u64) << CHECK_SHIFT;
        (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> CHECK_SHIFT) as usize
    }

    /// The `size_flags` word of a header at `addr`.
    #[inline(always)]
    pub(crate) fn pack(self, addr: usize, size: usize, flags: usize) -> usize {
        debug_assert!(size & !SIZE_MASK == 0 && flags & !FLAG_MASK == 0);
        let low = size | flags;
        if !self.hardened() {
            return low;
        }
        self.check(addr, low) << CHECK_SHIFT | low
    }

    /// `word`'s size and flags, if it is a valid header word for `addr`
    /// (always, for a key that does not check).
    #[inline(always)]
    pub(crate) fn unpack(self, addr: usize, word: usize) -> Option<Word> {
        let low = word & (SIZE_MASK | FLAG_MASK);
        // Without check values a header is still well formed: nothing lies
        // above its size field (bytes a program wrote over it rarely say 0
        // there).
        let ok = if self.hardened() {
            word & ZERO_MASK == 0 && word >> CHECK_SHIFT == self.check(addr, low)
        } else {
            word & !(SIZE_MASK | FLAG_MASK) == 0
        };
        ok.then_some(Word {
            size: low & SIZE_MASK,
            flags: low & FLAG_MASK,
        })
    }

    /// What `prev_size` of the header at `addr` is XORed with.
    #[inline(always)]
    pub(crate) fn prev_mask(self, addr: usize) -> usize {
        if !self.hardened() {
            return 0;
        }
        (self.0 ^ (addr as u64).rotate_left(23)) as usize
    }

    /// What a bin link (the locked index's) stored at `slot` is XORed with:
    /// `link_mask` on a hardened heap, nothing otherwise.
    #[inline(always)]
    pub(crate) fn index_mask(self, slot: usize) -> usize {
        if self.hardened() {
            self.link_mask(slot)
        } else {
            0
        }
    }

    /// What a free-list link stored at `slot` is XORed with, on every heap
    /// (glibc's `PROTECT_PTR`, keyed): a pointer a program writes into freed
    /// memory decodes to an address it cannot choose without the secret,
    /// and the address mixed in stops a stored link being replayed at
    /// another slot.
    #[inline(always)]
    pub(crate) fn link_mask(self, slot: usize) -> usize {
        // One XOR with the slot: a decoded link is an address the program
        // cannot aim without the secret's bits, and one stored link
        // replayed at another slot decodes elsewhere.
        self.0 as usize ^ slot
    }
}

const _: () = assert!(
    HEADER == GRANULE,
    "the header must keep payloads 16-aligned"
);
const _: () = assert!(MIN_BLOCK % GRANULE == 0);
const _: () =
    assert!(GRANULE.is_power_of_two() && FLAG_MASK >= (FREE | CACHED | REMOTE_PENDING | PURGED));
const _: () = assert!(
    usize::BITS == 64 && (CHUNK_SHIFT as usize) < CHECK_SHIFT as usize,
    "the check value needs the upper half of a 64-bit size word"
);

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
    /// This header's address.
    #[inline(always)]
    fn addr(&self) -> usize {
        self as *const Header as usize
    }

    /// Size and flags, if the header verifies under `key`; `None` means
    /// it was overwritten (heap corruption).
    #[inline]
    pub(crate) fn read(&self, key: Key) -> Option<Word> {
        crate::sync::model_point();
        key.unpack(self.addr(), self.size_flags.load(Ordering::Relaxed))
    }

    /// `(size, size / GRANULE)` of this block if the header verifies, is
    /// live (no flag set) and the size is at most `max` (a multiple of
    /// `GRANULE` below a chunk): the owner cache's push test. Without
    /// checks (`Key::unchecked` folds it to this) it is one rotate and one
    /// compare of the word as stored: rotated right by 4, a word with a
    /// flag bit (or anything above its size field) is above any size, and
    /// one without is its size in granules.
    #[inline(always)]
    pub(crate) fn read_live_at_most(&self, key: Key, max: usize) -> Option<(usize, usize)> {
        debug_assert!(max <= SIZE_MASK && max % GRANULE == 0);
        if !key.hardened() {
            crate::sync::model_point();
            let word = self.size_flags.load(Ordering::Relaxed);
            let granules = word.rotate_right(GRANULE_SHIFT);
            // (A size below `MIN_BLOCK` — a zeroed word — passes here; the
            // owner cache has no room in those classes, so such a block
            // goes to `cache_flush`, which refuses it.)
            return (granules <= max / GRANULE).then_some((word, granules));
        }
        self.read(key)
            .filter(|w| w.is_live() && w.size <= max)
            .map(|w| (w.size, w.size / GRANULE))
    }

    /// The size of this block if its word, as an unchecked heap stores it
    /// (no check value), says live (no flag set) and `MIN_BLOCK <= size <=
    /// max` (`max` a multiple of `GRANULE` below a chunk): the lock-free
    /// block-start query's test, one subtract, one rotate and one compare.
    /// Less `MIN_BLOCK` and rotated right by 4, a word with a flag bit, a
    /// check value, or a size below `MIN_BLOCK` (a zeroed word) is above
    /// every size, and a live one is its size in granules less 2. On a
    /// hardened heap's header (a check value in its top half) it is `None`.
    #[inline(always)]
    pub(crate) fn read_live_unchecked(&self, max: usize) -> Option<usize> {
        debug_assert!((MIN_BLOCK..=SIZE_MASK).contains(&max) && max % GRANULE == 0);
        crate::sync::model_point();
        let word = self.size_flags.load(Ordering::Relaxed);
        let above_min = word.wrapping_sub(MIN_BLOCK).rotate_right(GRANULE_SHIFT);
        (above_min <= (max - MIN_BLOCK) / GRANULE).then_some(word)
    }

    /// Block size as stored, unverified: for walks that bound themselves
    /// by the chunk's sentinel and report what they find (`dump`, `svg`).
    #[inline]
    pub(crate) fn size(&self) -> usize {
        self.size_flags.load(Ordering::Relaxed) & SIZE_MASK
    }

    /// `FREE` as stored, unverified (see `size`).
    #[inline]
    pub(crate) fn is_free(&self) -> bool {
        self.size_flags.load(Ordering::Relaxed) & FREE != 0
    }

    /// `PURGED` as stored, unverified (see `size`): for a block the caller
    /// has already verified or taken from the index.
    #[inline]
    pub(crate) fn is_purged(&self) -> bool {
        self.size_flags.load(Ordering::Relaxed) & PURGED != 0
    }

    /// `CACHED` as stored, unverified (see `size`).
    #[inline]
    pub(crate) fn is_cached(&self) -> bool {
        self.size_flags.load(Ordering::Relaxed) & CACHED != 0
    }

    /// Overwrites size and flags (with their check value).
    #[inline]
    pub(crate) fn set(&self, key: Key, size: usize, flags: usize) {
        crate::sync::model_point();
        self.size_flags
            .store(key.pack(self.addr(), size, flags), Ordering::Relaxed);
    }

    /// The owner's free onto its cache: live (exactly `size`, no flags) to
    /// `CACHED` in one compare-exchange, so that of an owner's free and a
    /// foreign claim of the same live block exactly one wins. False: the
    /// header no longer says live with `size` (a claim won).
    #[inline(always)]
    pub(crate) fn live_to_cached(&self, key: Key, size: usize) -> bool {
        crate::sync::model_point();
        let addr = self.addr();
        self.size_flags
            .compare_exchange(
                key.pack(addr, size, 0),
                key.pack(addr, size, CACHED),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// The size of the previous block if it is free, else 0 — decoded, not
    /// yet cross-checked against that block.
    ///
    /// # Safety
    ///
    /// `this` is a header of a committed chunk of ours.
    #[inline]
    pub(crate) unsafe fn prev_size(this: *const Header, key: Key) -> usize {
        // SAFETY: a field read through the raw pointer (caller).
        unsafe { (*this).prev_word.load(Ordering::Relaxed) ^ key.prev_mask(this as usize) }
    }

    /// Records the size of the free previous block (0: it is live). A
    /// plain store to `prev_word` only: `this` may be live and its
    /// `size_flags` under a foreign compare-exchange.
    ///
    /// # Safety
    ///
    /// `this` is a valid header; the caller holds its arena's lock.
    #[inline]
    pub(crate) unsafe fn set_prev_size(this: *mut Header, key: Key, size: usize) {
        // SAFETY: a field write through the raw pointer (no reference to
        // the whole header is made), under the lock.
        unsafe {
            (*this)
                .prev_word
                .store(size ^ key.prev_mask(this as usize), Ordering::Relaxed)
        };
    }

    /// Marks a live block `REMOTE_PENDING`; fails if it is free, already
    /// pending, the sentinel, or does not verify (the caller then takes the
    /// lock, where the block is classified exactly). At most one caller wins
    /// for each time the block is live.
    #[inline]
    pub(crate) fn claim_remote_mt(&self, key: Key) -> bool {
        crate::sync::model_point();
        let addr = self.addr();
        let mut word = self.size_flags.load(Ordering::Relaxed);
        loop {
            crate::sync::model_point();
            let Some(w) = key.unpack(addr, word) else {
                return false;
            };
            if !w.is_live() || w.size == 0 {
                return false;
            }
            let claimed = key.pack(addr, w.size, w.flags | REMOTE_PENDING);
            match self.size_flags.compare_exchange_weak(
                word,
                claimed,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => word = now,
            }
        }
    }
}

/// The block `size` bytes after `block` (its physical successor when
/// `size` is its verified size; the chunk's end sentinel at most).
#[inline]
pub(crate) fn block_after(block: *mut Header, size: usize) -> *mut Header {
    block.cast::<u8>().wrapping_add(size).cast()
}

/// The block `size` bytes before `block` (its predecessor when `size` is a
/// verified `prev_size`).
#[inline]
pub(crate) fn block_before(block: *mut Header, size: usize) -> *mut Header {
    block.cast::<u8>().wrapping_sub(size).cast()
}

/// The bin links of a free block.
#[inline]
pub(crate) fn links(block: *mut Header) -> *mut Links {
    block_to_payload(block).cast()
}
