//! Pool: the internal allocator for allocations made while a thread binds
//! to this very heap (DESIGN, Reentrancy: the arena's queue buffer, a block
//! glibc allocates inside `pthread_setspecific`) — a stretch of the metadata
//! chunk(s) that a bump pointer carves into blocks of power-of-two size
//! classes; a freed block goes on its class's free list and is handed out
//! again, so the pool's use is the peak of what is live at once, not the
//! sum of everything ever allocated.
//!
//! ```text
//!  start                                                     next          end
//!  +-----+------------------+-----+---------+-----+---------+-------------+
//!  | hdr | payload (class)  | hdr | payload | hdr | payload |  not carved |
//!  +-----+------------------+-----+---------+-----+---------+-------------+
//!        ^ live bit               ^ freed bit     ^ live bit
//!
//!  hdr, the GRANULE bytes before a payload p (two atomic words):
//!    word 0  live:  !mask(p) ^ usable                  (the check word)
//!            freed: mask(p) ^ (next on list + 1)      (the link, safe-linked)
//!    word 1  usable: the class size, a power of two in GRANULE..=LARGE_THRESHOLD
//!  mask(p) = mix(secret ^ p): keyed by the heap's secret, so a word a
//!  program writes over a header fails the check (2^-64 odds), and the
//!  upper half of a link is known (mask's) and checked when it is taken.
//! ```
//!
//! Two bitmaps over the pool's granules, beside it in the metadata, decide
//! what an address is, with no guessing and without reading memory that is
//! not a header: bit `g` of `live` is set iff a block handed out and not
//! freed has its payload at granule `g`; bit `g` of `freed` iff the block
//! there is on a free list. Neither: not a pool block (`NotAllocated`);
//! freed: `DoubleFree`; live: the header is verified before its size is
//! believed.
//!
//! Invariants:
//! * `start <= next <= end`; only `start..next` is carved; blocks never
//!   move, merge or change class, so a freed block fits any request of its
//!   class (alignment up to `GRANULE`; a larger one is carved afresh).
//! * A header is written before its block's `live` bit is set (`Release`);
//!   a reader that sees the bit (`Acquire`) sees the header.
//! * Each free list is a Treiber stack whose head is `tag << 32 | index + 1`
//!   (`0` in the low half: empty); every successful exchange bumps the tag,
//!   so a pop that read a stale link (the block was popped and reused
//!   meanwhile) fails its exchange instead of installing it (ABA).
//! * Lock-free throughout: there is no pool lock for a `fork` to leave held,
//!   so a child may bind threads and free pool blocks at once.
//! * Allocation is rare (a binding thread, a glibc block) and the pool does
//!   not grow: when it is used up `internal_alloc` returns null.

use core::ptr;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::block::GRANULE;
use crate::config::{Config, LARGE_THRESHOLD, POOL_SLACK};
use crate::error::FreeError;
use crate::sync::MpmcQueue;

use super::HeapMeta;

/// Bytes in front of each pool payload: the check (or link) word and the
/// usable size.
const POOL_HEADER: usize = GRANULE;
const _: () = assert!(POOL_HEADER == 2 * core::mem::size_of::<AtomicU64>());

/// log2 of the smallest class.
const MIN_CLASS_SHIFT: u32 = GRANULE.trailing_zeros();
/// Size classes `GRANULE << c` for `c` in `0..CLASSES`; the last is the
/// largest request an arena-sized allocation can be (`LARGE_THRESHOLD`).
const CLASSES: usize = (LARGE_THRESHOLD.trailing_zeros() - MIN_CLASS_SHIFT + 1) as usize;
const _: () = assert!(LARGE_THRESHOLD.is_power_of_two());
const _: () = assert!(GRANULE << (CLASSES - 1) == LARGE_THRESHOLD);

/// The low half of a free-list head or link: a granule index + 1.
const INDEX_MASK: u64 = u32::MAX as u64;
/// What a successful exchange adds to a free-list head's tag.
const TAG_ONE: u64 = 1 << 32;

/// The class of a request of `size` bytes, if the pool serves it.
fn class_of(size: usize) -> Option<usize> {
    if size > LARGE_THRESHOLD {
        return None;
    }
    let rounded = size.max(GRANULE).next_power_of_two();
    Some((rounded.trailing_zeros() - MIN_CLASS_SHIFT) as usize)
}

/// Usable bytes of a block of class `class`.
const fn class_size(class: usize) -> usize {
    GRANULE << class
}

/// splitmix64's finaliser: a keyed address becomes a mask with no visible
/// structure.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Bytes of internal pool a heap of `config` sets aside: a queue buffer
/// per arena, rounded up to its class, and `POOL_SLACK` for what glibc
/// allocates while threads bind (bounded by how many bind at once, since
/// those blocks are freed and reused).
pub(super) fn pool_bytes(config: &Config) -> usize {
    let buffer = MpmcQueue::buffer_bytes(config.get_remote_queue_capacity()).min(LARGE_THRESHOLD);
    let per_arena = POOL_HEADER + buffer.max(GRANULE).next_power_of_two() + 256;
    config.get_max_arenas() * per_arena + POOL_SLACK
}

/// 64-bit words of one bitmap over a pool of `bytes`.
fn bitmap_words(bytes: usize) -> usize {
    (bytes / GRANULE).div_ceil(64)
}

/// Bytes of the two bitmaps (`live`, `freed`) over a pool of `bytes`.
pub(super) fn pool_bitmap_bytes(bytes: usize) -> usize {
    2 * bitmap_words(bytes) * core::mem::size_of::<AtomicU64>()
}

/// What [`Heap::stats`](crate::Heap::stats) reports about the pool.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PoolStats {
    /// Bytes carved so far (live blocks, free-listed blocks, headers and
    /// alignment gaps): what can run out. Never decreases.
    pub(crate) used: usize,
    /// Bytes of live blocks, headers included.
    pub(crate) live: usize,
    /// Bytes the pool has.
    pub(crate) capacity: usize,
    /// Blocks handed out, ever.
    pub(crate) allocations: u64,
}

/// The internal pool (module doc). Lives in the heap's metadata.
pub(crate) struct Pool {
    /// First byte of the pool: the first header may start here.
    start: usize,
    /// One past the last byte.
    end: usize,
    /// Bump pointer: `start..next` is carved. Only grows.
    next: AtomicUsize,
    /// `bitmap_words(end - start)` words: payload starts of live blocks.
    live: *const AtomicU64,
    /// As many words: payload starts of blocks on a free list.
    freed: *const AtomicU64,
    /// Per class, the free list's head (module doc).
    heads: [AtomicU64; CLASSES],
    /// The heap's secret, keying `mask`.
    secret: u64,
    /// Bytes of live blocks, headers included (`Relaxed`: statistics).
    live_bytes: AtomicUsize,
    /// Blocks handed out, ever (`Relaxed`: statistics).
    allocations: AtomicU64,
}

impl Pool {
    /// A pool over `start..start + bytes`, its two bitmaps at `bits`.
    ///
    /// # Safety
    ///
    /// 1. `start..start + bytes` is committed, zero-filled, `GRANULE`-aligned
    ///    memory that nothing but this pool uses, for the pool's life;
    /// 2. `bits` points at `pool_bitmap_bytes(bytes)` such bytes, 8-aligned;
    /// 3. `bytes / GRANULE` is below `u32::MAX` (a granule index fits a
    ///    free-list link).
    pub(super) unsafe fn new(start: usize, bytes: usize, bits: *mut u8, secret: u64) -> Pool {
        let words = bitmap_words(bytes);
        let live = bits.cast::<AtomicU64>();
        Pool {
            start,
            end: start + bytes,
            next: AtomicUsize::new(start),
            live,
            // SAFETY: (2): the second bitmap follows the first inside `bits`.
            freed: unsafe { live.add(words) },
            heads: [const { AtomicU64::new(0) }; CLASSES],
            secret,
            live_bytes: AtomicUsize::new(0),
            allocations: AtomicU64::new(0),
        }
    }

    // ----- the hot half: alloc and free ------------------------------------

    /// A block of at least `size` bytes aligned to `align` (a power of two),
    /// from the free list of its class or carved; null when the pool is used
    /// up or `size` is beyond the largest class.
    fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        let Some(class) = class_of(size) else {
            return ptr::null_mut();
        };
        let usable = class_size(class);
        let reused = if align <= GRANULE {
            self.pop(class)
        } else {
            None
        };
        let Some(p) = reused.or_else(|| self.carve(usable, align)) else {
            return ptr::null_mut();
        };
        let (check, size_word) = self.header(p);
        size_word.store(usable as u64, Ordering::Relaxed);
        check.store(self.live_check(p, usable), Ordering::Relaxed);
        let (word, bit) = self.bit(self.live, self.granule(p));
        word.fetch_or(bit, Ordering::Release);
        self.live_bytes
            .fetch_add(POOL_HEADER + usable, Ordering::Relaxed);
        self.allocations.fetch_add(1, Ordering::Relaxed);
        p as *mut u8
    }

    /// Frees the live block whose payload is `addr`: `DoubleFree` if it is
    /// on a free list, `NotAllocated` if it is no pool block (or its header
    /// fails its check).
    fn free(&self, addr: usize) -> Result<(), FreeError> {
        let g = self.granule_of(addr).ok_or(FreeError::NotAllocated)?;
        let usable = self.live_usable(addr, g)?;
        let (word, bit) = self.bit(self.live, g);
        if word.fetch_and(!bit, Ordering::AcqRel) & bit == 0 {
            // Another free of it got there first (a race the caller's
            // contract excludes; reported rather than corrupting).
            return Err(FreeError::DoubleFree);
        }
        let (fword, fbit) = self.bit(self.freed, g);
        fword.fetch_or(fbit, Ordering::Relaxed);
        // `live_usable` verified the size is a class size.
        let class = class_of(usable).unwrap_or(CLASSES - 1);
        self.push(class, addr, g);
        self.live_bytes
            .fetch_sub(POOL_HEADER + usable, Ordering::Relaxed);
        Ok(())
    }

    /// `(payload, usable)` if `addr` is the payload of a live pool block;
    /// else why not, as `free` would say.
    fn lookup(&self, addr: usize) -> Result<(usize, usize), FreeError> {
        let g = self.granule_of(addr).ok_or(FreeError::NotAllocated)?;
        self.live_usable(addr, g).map(|usable| (addr, usable))
    }

    fn stats(&self) -> PoolStats {
        PoolStats {
            used: self.next.load(Ordering::Relaxed) - self.start,
            live: self.live_bytes.load(Ordering::Relaxed),
            capacity: self.end - self.start,
            allocations: self.allocations.load(Ordering::Relaxed),
        }
    }

    // ----- carving and the free lists ----------------------------------------

    /// Carves a fresh block of `usable` bytes aligned to `align`.
    fn carve(&self, usable: usize, align: usize) -> Option<usize> {
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            let payload = cur.checked_add(POOL_HEADER + align - 1)? & !(align - 1);
            let end = payload.checked_add(usable)?;
            if end > self.end {
                return None;
            }
            // `Relaxed`: `next` only bounds lookups; the bits and headers
            // carry their own ordering.
            match self
                .next
                .compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(payload),
                Err(now) => cur = now,
            }
        }
    }

    /// Pushes the freed block at `p` (granule `g`) on the list of `class`.
    fn push(&self, class: usize, p: usize, g: usize) {
        let head = &self.heads[class];
        let (link, _) = self.header(p);
        let mut h = head.load(Ordering::Relaxed);
        loop {
            link.store(self.mask(p) ^ (h & INDEX_MASK), Ordering::Relaxed);
            let new = (h & !INDEX_MASK).wrapping_add(TAG_ONE) | (g as u64 + 1);
            // `Release`: a popper that sees `new` sees the link and the
            // freed bit written before it.
            match head.compare_exchange_weak(h, new, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => h = now,
            }
        }
    }

    /// Pops a block of `class`, if its list has one that verifies. A list
    /// found corrupted (a link whose known half is wrong, a block that is
    /// not marked freed) is dropped, leaking its blocks, rather than
    /// followed.
    fn pop(&self, class: usize) -> Option<usize> {
        let head = &self.heads[class];
        let mut h = head.load(Ordering::Acquire);
        let (p, link) = loop {
            let index = h & INDEX_MASK;
            if index == 0 {
                return None;
            }
            let p = self.payload_of(index as usize - 1)?;
            // Stale if another thread popped `p` meanwhile: then the tag
            // has moved and the exchange below fails.
            let link = self.header(p).0.load(Ordering::Relaxed) ^ self.mask(p);
            let new = (h & !INDEX_MASK).wrapping_add(TAG_ONE) | (link & INDEX_MASK);
            match head.compare_exchange_weak(h, new, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => break (p, link),
                Err(now) => h = now,
            }
        };
        // The exchange succeeded with the tag unchanged: nobody pushed or
        // popped in between, so `link` is the one `push` wrote for `p`.
        let (word, bit) = self.bit(self.freed, self.granule(p));
        let was_freed = word.fetch_and(!bit, Ordering::Relaxed) & bit != 0;
        let next_ok =
            (link & INDEX_MASK) == 0 || self.payload_of((link & INDEX_MASK) as usize - 1).is_some();
        if link >> 32 != 0 || !next_ok {
            head.store(h.wrapping_add(2 * TAG_ONE) & !INDEX_MASK, Ordering::Relaxed);
        }
        was_freed.then_some(p)
    }

    // ----- addresses, headers, bits -------------------------------------------

    /// The payload address of granule `g`, if a block could start there.
    fn payload_of(&self, g: usize) -> Option<usize> {
        let p = self.start + POOL_HEADER + g.checked_mul(GRANULE)?;
        (p < self.next.load(Ordering::Relaxed)).then_some(p)
    }

    /// The granule of a payload address this pool carved.
    fn granule(&self, p: usize) -> usize {
        (p - self.start - POOL_HEADER) / GRANULE
    }

    /// The granule of `addr`, if `addr` could be a payload: aligned and in
    /// the carved part of the pool.
    fn granule_of(&self, addr: usize) -> Option<usize> {
        let off = addr.checked_sub(self.start + POOL_HEADER)?;
        (off % GRANULE == 0 && addr < self.next.load(Ordering::Acquire)).then_some(off / GRANULE)
    }

    /// The usable size of the live block at `p` (granule `g`), its header
    /// verified; else `DoubleFree` (on a free list) or `NotAllocated`.
    fn live_usable(&self, p: usize, g: usize) -> Result<usize, FreeError> {
        let (word, bit) = self.bit(self.live, g);
        if word.load(Ordering::Acquire) & bit == 0 {
            let (fword, fbit) = self.bit(self.freed, g);
            return Err(if fword.load(Ordering::Relaxed) & fbit != 0 {
                FreeError::DoubleFree
            } else {
                FreeError::NotAllocated
            });
        }
        let (check, size_word) = self.header(p);
        let usable = usize::try_from(size_word.load(Ordering::Relaxed)).unwrap_or(0);
        let is_class = class_of(usable).map(class_size) == Some(usable);
        if !is_class || check.load(Ordering::Relaxed) != self.live_check(p, usable) {
            return Err(FreeError::NotAllocated);
        }
        Ok(usable)
    }

    /// The two header words of the block whose payload is `p`.
    fn header(&self, p: usize) -> (&AtomicU64, &AtomicU64) {
        debug_assert!(p >= self.start + POOL_HEADER && p < self.end && p % GRANULE == 0);
        // SAFETY: `p` is a payload this pool carved (callers pass the
        // result of `carve`, `payload_of` or `granule_of`), so its header is
        // the GRANULE-aligned 16 bytes before it, inside the committed pool,
        // which lives as long as `self`; header words are only ever
        // accessed as these atomics.
        unsafe {
            let h = (p - POOL_HEADER) as *const AtomicU64;
            (&*h, &*h.add(1))
        }
    }

    /// The word and bit of granule `g` in `map` (`self.live` or `self.freed`).
    fn bit(&self, map: *const AtomicU64, g: usize) -> (&AtomicU64, u64) {
        debug_assert!(g < (self.end - self.start) / GRANULE);
        // SAFETY: `g` is the granule of an address inside the pool, and each
        // bitmap has a bit for every granule of the pool (`Pool::new`, 2);
        // the bitmaps live as long as `self`.
        (unsafe { &*map.add(g / 64) }, 1 << (g % 64))
    }

    /// The keyed mask of payload address `p`.
    fn mask(&self, p: usize) -> u64 {
        mix(self.secret ^ p as u64)
    }

    /// What word 0 of a live block's header holds.
    fn live_check(&self, p: usize, usable: usize) -> u64 {
        !self.mask(p) ^ usable as u64
    }
}

impl HeapMeta {
    /// Serves an allocation made while this thread binds to this heap
    /// (module doc) from the internal pool; null when it is used up.
    pub(super) fn internal_alloc(&self, size: usize, align: usize) -> *mut u8 {
        self.pool.alloc(size, align)
    }

    /// Frees the pool block whose payload is `addr` (module doc): it goes
    /// on its class's free list. A second free of it is `DoubleFree`; any
    /// other address of the pool is `NotAllocated`.
    pub(super) fn pool_free(&self, addr: usize) -> Result<(), FreeError> {
        self.pool.free(addr)
    }

    /// `(payload, usable)` of the live pool block whose payload starts at
    /// `addr`, or why `addr` is none.
    pub(super) fn pool_lookup(&self, addr: usize) -> Result<(usize, usize), FreeError> {
        self.pool.lookup(addr)
    }

    /// The pool's figures for `stats`.
    pub(crate) fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }
}
