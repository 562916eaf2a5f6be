//! Region: the heap's one `mmap` reservation, cut into `CHUNK`-sized slots
//! that it hands to arenas (one chunk at a time) and to large allocations
//! (runs of chunks), and takes back.
//!
//! ```text
//!  base (CHUNK-aligned)
//!  +------------------+---------+---------+---------+-----+---------+
//!  | metadata chunks  | chunk 1 | chunk 2 | chunk 3 | ... | chunk N |   PROT_NONE until first handed out
//!  | (HeapMeta, arena |  arena  |  large  |  large  |     |  free   |
//!  | table, chunk map,|   #0    |  head   |  tail   |     |         |
//!  | free-slot bits)  |         |         |         |     |         |
//!  +------------------+---------+---------+---------+-----+---------+
//! ```
//!
//! Invariants:
//! * The reservation is `PROT_NONE` + `MAP_NORESERVE`: address space only.
//!   It is as large as asked when the OS grants that, else the largest size
//!   halving finds (`Region::reserve_at_most`, which also respects
//!   `RLIMIT_AS`); `len` is what was granted.
//!   A chunk is made `PROT_READ|PROT_WRITE` when it is first handed out and
//!   stays so; on return it is purged (`MADV_DONTNEED`: no memory until
//!   written again, so RSS follows the live set) but not protected, because
//!   lock-free readers that tested the map just before it left — a remote
//!   claim, an owner's cache push, a `usable_size` of a block start — may
//!   still read its bitmap and a header: they must find zeros or another
//!   owner's words, never a fault (they re-check the map after reading). A
//!   handed-out chunk is zero-filled.
//! * `map[i]` says what slot `i` is (free, metadata, arena chunk of arena
//!   `id`, large head, large tail at distance `d` from its head). It is the
//!   O(1) ownership lookup behind every free: an address-range check, then
//!   one load. Written only by the thread that holds the slot (after
//!   committing it, before purging it), under the region lock, with
//!   `Release`; read with `Acquire` by anyone. A walker holding the region
//!   lock ([`Region::with_map_stable`]) may therefore read the memory of any
//!   slot the map marks as handed out.
//! * A free-slot bit is set iff the slot is neither metadata nor handed out;
//!   the bits, the hint and the free count change only under `slots`' lock.
//! * Lock order: an arena's lock may be held while taking the region lock,
//!   never the reverse. The region lock is taken only when chunks change
//!   hands, never on an allocation served from an arena's own chunks.
//!
//! The map and the committed counter use `core` atomics, not loom's: they
//! are set once per chunk hand-over and the models do not depend on them.

use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use crate::block::{GRANULE, GRANULE_SHIFT, HEADER};
use crate::chunk::{CHUNK, CHUNK_SHIFT};
use crate::decay::DecayClock;
use crate::sync::Locked;
use crate::sys;

/// What one chunk slot is, as stored in the chunk map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChunkUse {
    /// Not handed out (and not committed), or an arena chunk on its way
    /// back: unlinked by its arena, not yet released (`mark_leaving`).
    Free,
    /// Holds the heap's metadata.
    Meta,
    /// An arena chunk of the arena with this id.
    Arena(u32),
    /// The first chunk of a large allocation (holds its header).
    LargeHead,
    /// A later chunk of a large allocation, this many slots after its head.
    LargeTail(u32),
}

const KIND_SHIFT: u32 = 28;
const VALUE_MASK: u32 = (1 << KIND_SHIFT) - 1;
const KIND_FREE: u32 = 0;
const KIND_META: u32 = 1;
const KIND_LARGE_HEAD: u32 = 3;
const KIND_LARGE_TAIL: u32 = 4;
/// The largest kind, so that a word is an arena chunk's iff it is at
/// least `ARENA_WORDS` (`is_arena_word`: one compare, no mask).
const KIND_ARENA: u32 = u32::MAX >> KIND_SHIFT;
/// The smallest map word of an arena chunk (`Arena(0)`).
const ARENA_WORDS: u32 = KIND_ARENA << KIND_SHIFT;
const _: () = assert!(
    KIND_FREE < KIND_ARENA
        && KIND_META < KIND_ARENA
        && KIND_LARGE_HEAD < KIND_ARENA
        && KIND_LARGE_TAIL < KIND_ARENA
);

/// Whether a map word says "an arena chunk" (of any arena).
#[inline(always)]
const fn is_arena_word(word: u32) -> bool {
    word >= ARENA_WORDS
}

/// The map's value field must hold a distance between any two slots of the
/// largest region a heap may reserve.
const _: () = assert!(crate::config::MAX_REGION_SIZE >> CHUNK_SHIFT <= VALUE_MASK as usize);

impl ChunkUse {
    fn encode(self) -> u32 {
        match self {
            ChunkUse::Free => KIND_FREE << KIND_SHIFT,
            ChunkUse::Meta => KIND_META << KIND_SHIFT,
            ChunkUse::Arena(id) => KIND_ARENA << KIND_SHIFT | (id & VALUE_MASK),
            ChunkUse::LargeHead => KIND_LARGE_HEAD << KIND_SHIFT,
            ChunkUse::LargeTail(d) => KIND_LARGE_TAIL << KIND_SHIFT | (d & VALUE_MASK),
        }
    }

    fn decode(word: u32) -> ChunkUse {
        let value = word & VALUE_MASK;
        match word >> KIND_SHIFT {
            KIND_META => ChunkUse::Meta,
            KIND_ARENA => ChunkUse::Arena(value),
            KIND_LARGE_HEAD => ChunkUse::LargeHead,
            KIND_LARGE_TAIL => ChunkUse::LargeTail(value),
            _ => ChunkUse::Free,
        }
    }
}

/// The free-slot bookkeeping, under the region lock.
struct Slots {
    /// One bit per slot, 1 = free. Lives in the metadata chunks.
    bits: *mut u64,
    /// Every slot below `hint` is taken.
    hint: usize,
    free: usize,
}

// SAFETY: `bits` points into the region's own metadata, which lives as long
// as the region; it is touched only under the lock that owns `Slots`.
unsafe impl Send for Slots {}

/// The region's range and map and one arena's map word, copied into the
/// arena (`Arena::chunk_test`) so that the free fast path tests a pointer
/// without loading the heap's metadata first. Every field is fixed for the
/// region's life; an arena lives inside its region's metadata, so the copy
/// never outlives the map it points at.
#[derive(Clone, Copy)]
pub(crate) struct ChunkTest {
    base: usize,
    /// The region's length in granules.
    granules: usize,
    map: *const AtomicU32,
    word: u32,
}

// SAFETY: `map` points into the region's metadata, valid for the region's
// life (which outlives every arena, and so every copy); its entries are
// atomics.
unsafe impl Sync for ChunkTest {}
// SAFETY: as above.
unsafe impl Send for ChunkTest {}

impl ChunkTest {
    /// The test of no chunk at all (`holds` is always false): an arena's
    /// until its heap gives it its own.
    pub(crate) const NONE: ChunkTest = ChunkTest {
        base: 0,
        granules: 0,
        map: core::ptr::null(),
        word: 0,
    };

    /// Whether `addr` is `GRANULE`-aligned and lies in a chunk the map
    /// gives to the arena this copy was made for: one range check (which
    /// is the alignment test too), one map load, one compare. True only
    /// for a slot handed out, hence committed.
    #[inline(always)]
    pub(crate) fn holds(&self, addr: usize) -> bool {
        aligned_granule(addr.wrapping_sub(self.base), self.granules).is_some_and(|g| {
            // SAFETY: `g < granules`, so the slot index is below `chunks`
            // (`granules` is `chunks` whole slots), and the map has
            // `chunks` entries that live as long as the region.
            unsafe { (*self.map.add(slot_of_granule(g))).load(Ordering::Acquire) == self.word }
        })
    }
}

/// `off`, an offset from the region's base, in granules, if it is
/// granule-aligned and below `granules`: rotated right by the granule's
/// bits, a misaligned (or wrapped) offset's low bits land at the top,
/// above every aligned offset in range — one compare tests both.
#[inline(always)]
fn aligned_granule(off: usize, granules: usize) -> Option<usize> {
    let g = off.rotate_right(GRANULE_SHIFT);
    (g < granules).then_some(g)
}

/// The map slot (chunk index) of the region's granule `g`.
#[inline(always)]
const fn slot_of_granule(g: usize) -> usize {
    g >> (CHUNK_SHIFT - GRANULE_SHIFT)
}

/// The region's range and map, copied into the `Heap` value itself so
/// that the lock-free block-start query (`Heap::start_usable`: C's
/// `malloc_usable_size`) finds the map entry of a block's chunk without
/// loading the heap's metadata, null-testing it and testing its flags
/// first. Empty (`granules == 0`: every `arena_header` is `None`) until
/// `publish`, and for ever on a heap that does not publish it (hardened
/// or stress mode, whose queries check more); once published, fixed for
/// the region's life, which the heap's outlives.
///
/// Publication: `publish` stores `to_header_offset` and `map`, then
/// `granules` (`Release`); `arena_header` loads `granules` first
/// (`Acquire`), so a reader who sees it non-zero sees the other two.
pub(crate) struct StartTest {
    /// The slots' length in granules (`chunks * CHUNK / GRANULE`); 0 while
    /// empty.
    granules: AtomicUsize,
    /// `-(base + HEADER)` (wrapping): a payload address plus this is its
    /// header's offset in the region. Negated so that the query adds it:
    /// an add can take the loaded word as its destination, where a
    /// subtract from the payload needs a copy of it first.
    to_header_offset: AtomicUsize,
    /// The region's map (`Region::map`).
    map: AtomicPtr<AtomicU32>,
}

impl StartTest {
    /// The test of no region: every `arena_header` is `None`.
    pub(crate) const fn empty() -> StartTest {
        StartTest {
            granules: AtomicUsize::new(0),
            to_header_offset: AtomicUsize::new(0),
            map: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// Makes this the test of `region`, which must outlive every later
    /// `arena_header` (the heap that holds both drops them together).
    pub(crate) fn publish(&self, region: &Region) {
        self.to_header_offset
            .store(0usize.wrapping_sub(region.base + HEADER), Ordering::Relaxed);
        self.map.store(region.map.cast_mut(), Ordering::Relaxed);
        self.granules
            .store((region.chunks << CHUNK_SHIFT) / GRANULE, Ordering::Release);
    }

    /// Where the header of a block whose payload starts at `payload` would
    /// be (`payload - HEADER`), if that is granule-aligned and in a slot
    /// the map gives to an arena (any arena). One load of the published
    /// length, one compare for range and alignment, one map load and one
    /// compare: nothing of the chunk is read, and a slot the map gives to
    /// an arena was handed out, so its memory stays readable from then on
    /// (module doc).
    #[inline(always)]
    pub(crate) fn arena_header(&self, payload: usize) -> Option<ArenaHeader<'_>> {
        let granules = self.granules.load(Ordering::Acquire);
        let off = payload.wrapping_add(self.to_header_offset.load(Ordering::Relaxed));
        // The header's offset in granules, if aligned and in range.
        let granule = aligned_granule(off, granules)?;
        // SAFETY: `granule < granules` (so the region is published and
        // `map` set, `Acquire` above), so the slot index is below `chunks`,
        // and the map has `chunks` entries that live as long as the
        // region, which outlives `self`'s use (`publish`).
        let entry = unsafe {
            &*self
                .map
                .load(Ordering::Relaxed)
                .add(slot_of_granule(granule))
        };
        let word = entry.load(Ordering::Acquire);
        is_arena_word(word).then_some(ArenaHeader {
            entry,
            word,
            header: payload - HEADER,
            granule,
        })
    }
}

/// A header address that `StartTest::arena_header` found in an arena
/// chunk.
pub(crate) struct ArenaHeader<'a> {
    /// The chunk's map entry, for the caller to load again after reading
    /// the chunk (a chunk that changed hands in between fails).
    pub(crate) entry: &'a AtomicU32,
    /// The entry's word as first loaded: an arena chunk's.
    pub(crate) word: u32,
    /// `payload - HEADER`: granule-aligned, in that chunk.
    pub(crate) header: usize,
    /// `header`'s granule index counted from the region's base (which is
    /// `CHUNK`-aligned: `chunk::is_block_start`).
    pub(crate) granule: usize,
}

/// The reservation and its chunk bookkeeping. Lives in its own metadata.
pub(crate) struct Region {
    base: usize,
    len: usize,
    chunks: usize,
    map: *const AtomicU32,
    slots: Locked<Slots>,
    committed: AtomicUsize,
    /// Bytes of the metadata chunks (committed from the start, part of
    /// `committed`).
    meta_bytes: usize,
    /// The most `committed` has ever been.
    peak_committed: AtomicUsize,
    /// The heap's decay clock (`decay.rs`): not the region's own state,
    /// kept here because every path that frees memory holds the region.
    pub(crate) decay: DecayClock,
}

// SAFETY: `map` points into the region's metadata, valid for the region's
// life; its entries are atomics. All other shared state is atomic or locked.
unsafe impl Sync for Region {}
// SAFETY: as above; nothing in the region is tied to a thread.
unsafe impl Send for Region {}

/// Where the metadata of a region of `chunks` slots puts its map and bits,
/// after `prefix` bytes of the caller's own metadata.
pub(crate) struct MetaLayout {
    pub(crate) map_offset: usize,
    pub(crate) bits_offset: usize,
    pub(crate) total: usize,
}

impl MetaLayout {
    pub(crate) fn new(prefix: usize, chunks: usize) -> MetaLayout {
        let map_offset = prefix.next_multiple_of(64);
        let bits_offset = (map_offset + chunks * 4).next_multiple_of(64);
        let total = bits_offset + chunks.div_ceil(64) * 8;
        MetaLayout {
            map_offset,
            bits_offset,
            total,
        }
    }
}

impl Region {
    /// Reserves a region of at most `len` bytes (a multiple of `CHUNK`) and
    /// commits its first `meta_bytes(size)` bytes, where `meta_bytes(size)`
    /// is the metadata a region of `size` bytes needs (`None`: a region
    /// that small cannot hold its metadata and one chunk). Returns the base
    /// and the size granted; `None` when even the smallest region that
    /// holds its metadata is refused.
    ///
    /// The first size tried is `len`, capped under a finite `RLIMIT_AS`
    /// (`ulimit -v`) at half of what the limit leaves beside the mappings
    /// the process has now — the program needs address space for its own
    /// mappings too, and a reservation the limit forbids would only fail.
    /// On refusal (the limit, a kernel with less address space than asked)
    /// the size halves, down to that smallest region. So a heap starts
    /// wherever the process can map anything at all, and `reserved_bytes`
    /// says what it got.
    pub(crate) fn reserve_at_most(
        len: usize,
        meta_bytes: impl Fn(usize) -> Option<usize>,
    ) -> Option<(*mut u8, usize)> {
        let len = len & !(CHUNK - 1);
        // The smallest region that holds its own metadata (its map grows
        // with it, by 4 bytes and a bit per chunk: a few steps at most).
        let mut floor = 2 * CHUNK;
        while meta_bytes(floor).is_none() {
            floor = floor.checked_add(CHUNK)?;
            if floor > len {
                return None;
            }
        }
        let mut size = len;
        if let Some(limit) = sys::address_space_limit() {
            let used = sys::address_space_used().unwrap_or(0);
            size = size.min(limit.saturating_sub(used) / 2);
        }
        size = (size & !(CHUNK - 1)).max(floor);
        loop {
            if let Some(meta) = meta_bytes(size) {
                if let Some(base) = Region::reserve(size, meta) {
                    return Some((base, size));
                }
            }
            if size == floor {
                return None;
            }
            size = ((size / 2) & !(CHUNK - 1)).max(floor);
        }
    }

    /// Reserves `len` bytes (a multiple of `CHUNK`) of address space, aligned
    /// to `CHUNK`, and commits the first `meta_bytes` of it for metadata.
    /// Returns the base, or `None` when the OS refuses.
    pub(crate) fn reserve(len: usize, meta_bytes: usize) -> Option<*mut u8> {
        let base = sys::reserve_aligned(len, CHUNK)?;
        let meta_len = meta_bytes.next_multiple_of(CHUNK);
        if meta_len > len || !sys::commit(base, meta_len) {
            // SAFETY: `base..base+len` is the reservation we just made.
            unsafe { sys::unreserve(base, len) };
            return None;
        }
        Some(base)
    }

    /// Builds the region in place over a reservation from [`Region::reserve`].
    ///
    /// # Safety
    ///
    /// 1. `dst` points into the committed metadata of the reservation at
    ///    `base` of `len` bytes, and stays valid for the region's life;
    /// 2. `layout` was computed for `len / CHUNK` slots and its `total` fits
    ///    in the committed metadata, which is still zero-filled.
    pub(crate) unsafe fn init_in_place(
        dst: *mut Region,
        base: *mut u8,
        len: usize,
        layout: &MetaLayout,
    ) {
        let chunks = len >> CHUNK_SHIFT;
        let meta_chunks = layout.total.div_ceil(CHUNK);
        // SAFETY: (1) and (2): the map and bits lie in committed, zeroed
        // metadata that nothing else uses; a zero map word means Free, so
        // only the metadata slots need writing.
        unsafe {
            let map = base.add(layout.map_offset).cast::<AtomicU32>();
            let bits = base.add(layout.bits_offset).cast::<u64>();
            for i in 0..chunks {
                if i < meta_chunks {
                    (*map.add(i)).store(ChunkUse::Meta.encode(), Ordering::Relaxed);
                } else {
                    *bits.add(i / 64) |= 1 << (i % 64);
                }
            }
            dst.write(Region {
                base: base as usize,
                len,
                chunks,
                map,
                slots: Locked::new(Slots {
                    bits,
                    hint: meta_chunks,
                    free: chunks - meta_chunks,
                }),
                committed: AtomicUsize::new(meta_chunks * CHUNK),
                meta_bytes: meta_chunks * CHUNK,
                peak_committed: AtomicUsize::new(meta_chunks * CHUNK),
                decay: DecayClock::new(),
            });
        }
    }

    /// Gives the whole reservation back to the OS.
    ///
    /// # Safety
    ///
    /// Nothing will touch the region or any memory in it again; `self`
    /// itself lives in that memory, so it is read before unmapping.
    pub(crate) unsafe fn unreserve(&self) {
        let (base, len) = (self.base as *mut u8, self.len);
        // SAFETY: the caller guarantees nobody uses the reservation any more.
        unsafe { sys::unreserve(base, len) };
    }

    /// Bytes of address space reserved.
    pub(crate) fn reserved_bytes(&self) -> usize {
        self.len
    }

    /// The most bytes ever committed at once.
    pub(crate) fn peak_committed_bytes(&self) -> usize {
        self.peak_committed.load(Ordering::Relaxed)
    }

    /// Holds the region lock without a guard (`fork` handlers).
    pub(crate) fn raw_lock(&self) -> &crate::sync::RawLock {
        self.slots.raw()
    }

    /// Bytes currently committed (metadata plus chunks handed out).
    pub(crate) fn committed_bytes(&self) -> usize {
        self.committed.load(Ordering::Relaxed)
    }

    /// Bytes of the chunks handed out and committed now: `committed_bytes`
    /// less the metadata (which a large arena table makes several chunks
    /// that are mostly never touched).
    pub(crate) fn chunk_bytes_committed(&self) -> usize {
        self.committed_bytes().saturating_sub(self.meta_bytes)
    }

    /// Whether `addr` lies in the part of the reservation that chunks use.
    #[inline]
    pub(crate) fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.base) < self.len
    }

    /// `(map entry, word as stored)` of the slot holding `addr` if `addr`
    /// is in the region and the map gives that slot to an arena: one
    /// range check, one map load, one tag test. For the lock-free
    /// block-start query of a hardened heap (`Heap::start_usable_checked`;
    /// the others use `StartTest`), which loads the entry again after
    /// reading the block and compares the two words.
    #[inline(always)]
    pub(crate) fn arena_entry_at(&self, addr: usize) -> Option<(&AtomicU32, u32)> {
        let off = addr.wrapping_sub(self.base);
        if off >= self.len {
            return None;
        }
        // SAFETY: `off < len`, so the slot index is below `chunks` (`len`
        // is `chunks` whole slots), and the map has `chunks` entries that
        // live as long as the region (and so as `&self`).
        let entry = unsafe { &*self.map.add(off >> CHUNK_SHIFT) };
        let word = entry.load(Ordering::Acquire);
        is_arena_word(word).then_some((entry, word))
    }

    /// The map word of an arena chunk of arena `id`, which an arena keeps
    /// (in its `ChunkTest`) so that the free fast path compares without
    /// encoding.
    pub(crate) fn arena_map_word(id: u32) -> u32 {
        ChunkUse::Arena(id).encode()
    }

    /// The chunk test of arena `id` (`ChunkTest`), for the arena to keep.
    pub(crate) fn chunk_test(&self, id: u32) -> ChunkTest {
        ChunkTest {
            base: self.base,
            granules: (self.chunks << CHUNK_SHIFT) / GRANULE,
            map: self.map,
            word: Region::arena_map_word(id),
        }
    }

    /// Slot index of an address inside the region.
    #[inline]
    pub(crate) fn chunk_index(&self, addr: usize) -> usize {
        (addr - self.base) >> CHUNK_SHIFT
    }

    /// Base address of slot `idx`.
    #[inline]
    pub(crate) fn chunk_addr(&self, idx: usize) -> *mut u8 {
        (self.base + (idx << CHUNK_SHIFT)) as *mut u8
    }

    /// Number of slots (metadata included).
    pub(crate) fn chunk_count(&self) -> usize {
        self.chunks
    }

    /// What slot `idx` is right now.
    #[inline]
    pub(crate) fn chunk_use(&self, idx: usize) -> ChunkUse {
        debug_assert!(idx < self.chunks);
        // SAFETY: `idx < chunks` and the map has `chunks` entries that live
        // as long as the region.
        ChunkUse::decode(unsafe { (*self.map.add(idx)).load(Ordering::Acquire) })
    }

    fn set_use(&self, idx: usize, what: ChunkUse) {
        // SAFETY: as in `chunk_use`; the caller holds slot `idx`.
        unsafe { (*self.map.add(idx)).store(what.encode(), Ordering::Release) }
    }

    /// Marks arena chunk `idx` `Free` in the map as its arena unlinks it,
    /// under that arena's lock and ahead of `release`: from here on the
    /// lock-free tests (`ChunkTest::holds`, `locate`) send a free of an
    /// address in it to the "not allocated here" answers, and a lock
    /// holder that re-reads the map after taking the arena lock knows that
    /// a chunk still marked as its arena's is linked and will stay
    /// committed until it lets the lock go. The slot itself stays taken
    /// (and committed) until `release`, so nobody can hand it out between.
    pub(crate) fn mark_leaving(&self, idx: usize) {
        if idx < self.chunks {
            self.set_use(idx, ChunkUse::Free);
        }
    }

    /// Hands out one committed, zero-filled chunk to arena `arena_id`.
    pub(crate) fn acquire_arena_chunk(&self, arena_id: u32) -> Option<*mut u8> {
        let idx = self.claim_run(1, 1, 0)?;
        if !self.commit_run(idx, 1) {
            return None;
        }
        {
            let _slots = self.slots.lock();
            self.set_use(idx, ChunkUse::Arena(arena_id));
        }
        Some(self.chunk_addr(idx))
    }

    /// Hands out a committed, zero-filled run of `n` chunks for a large
    /// allocation, such that slot `head + skew` starts at a multiple of
    /// `align_chunks * CHUNK`. Returns the head slot index.
    pub(crate) fn acquire_large_run(
        &self,
        n: usize,
        align_chunks: usize,
        skew: usize,
    ) -> Option<usize> {
        let idx = self.claim_run(n, align_chunks, skew)?;
        if !self.commit_run(idx, n) {
            return None;
        }
        self.mark_large(idx, 0, n);
        Some(idx)
    }

    /// Extends the large run at `head` from `old` to `new` chunks if the
    /// slots right after it are free. Returns whether it grew.
    pub(crate) fn try_extend_large_run(&self, head: usize, old: usize, new: usize) -> bool {
        let from = head + old;
        if new <= old || head + new > self.chunks {
            return false;
        }
        {
            let (mut slots, _) = self.slots.lock();
            // SAFETY: the range was bounds-checked against `chunks` above.
            if !(from..head + new).all(|i| unsafe { slots.is_free(i) }) {
                return false;
            }
            // SAFETY: as above; the slots are free, so they become ours.
            unsafe { slots.take(from, new - old) };
        }
        if !self.commit_run(from, new - old) {
            return false;
        }
        self.mark_large(head, old, new);
        true
    }

    fn mark_large(&self, head: usize, from: usize, to: usize) {
        let _slots = self.slots.lock();
        for d in from..to {
            let what = if d == 0 {
                ChunkUse::LargeHead
            } else {
                ChunkUse::LargeTail(d as u32)
            };
            self.set_use(head + d, what);
        }
    }

    /// Takes back arena chunk `idx`, which its arena unlinked (and marked
    /// `Free`, `mark_leaving`): unmarks and purges it but leaves it
    /// readable — as every slot once handed out — because lock-free
    /// readers may still be on their way into it: a foreign claim
    /// (`Arena::claim_mt`) or an owner's cache push that tested the map
    /// just before the chunk emptied reads its start bitmap and a header
    /// next, and must find zeros (no block starts there: the free goes to
    /// the locked path, which classifies it) rather than fault. Only an
    /// invalid free — a pointer into a chunk with no live block — can be
    /// such a reader. The pages hold no memory until written again.
    ///
    /// # Safety
    ///
    /// The caller's arena unlinked the chunk; nothing of the arena's refers
    /// to it.
    pub(crate) unsafe fn release_arena_chunk(&self, idx: usize) {
        {
            let _slots = self.slots.lock();
            self.set_use(idx, ChunkUse::Free);
        }
        // SAFETY: the slot is ours (caller) and lies inside the reservation;
        // its contents are nobody's.
        unsafe { sys::purge(self.chunk_addr(idx), CHUNK) };
        self.committed.fetch_sub(CHUNK, Ordering::Relaxed);
        let (mut slots, _) = self.slots.lock();
        // SAFETY: `idx` is in bounds and was taken by the caller's arena.
        unsafe { slots.give(idx, 1) };
    }

    /// Takes back `n` slots starting at `idx`: unmarks and purges them, and
    /// leaves them readable (module doc: lock-free readers).
    ///
    /// # Safety
    ///
    /// The caller held these slots and nothing will touch their memory again.
    pub(crate) unsafe fn release(&self, idx: usize, n: usize) {
        {
            // Unmarked under the lock, so a `with_map_stable` walker never
            // sees a slot as handed out once its memory may be protected.
            let _slots = self.slots.lock();
            for i in idx..idx + n {
                self.set_use(i, ChunkUse::Free);
            }
        }
        // SAFETY: the slots are ours (caller) and lie inside the reservation.
        unsafe { sys::purge(self.chunk_addr(idx), n << CHUNK_SHIFT) };
        self.committed
            .fetch_sub(n << CHUNK_SHIFT, Ordering::Relaxed);
        let (mut slots, _) = self.slots.lock();
        // SAFETY: `idx..idx+n` are in bounds and were taken by us.
        unsafe { slots.give(idx, n) };
    }

    /// Bytes of the region the kernel reports resident, measured page by
    /// page (`mincore`) over the metadata and every slot handed out.
    pub(crate) fn measured_resident_bytes(&self) -> usize {
        let mut pages = 0;
        for i in 0..self.chunks {
            if self.chunk_use(i) != ChunkUse::Free {
                pages += sys::resident_pages(self.chunk_addr(i), CHUNK);
            }
        }
        pages * crate::config::PAGE
    }

    /// Runs `f` while no slot can be released, so that `f` may read the
    /// memory of any slot the map shows as handed out. `f` must not
    /// allocate from this heap's region (it would deadlock).
    pub(crate) fn with_map_stable<R>(&self, f: impl FnOnce() -> R) -> R {
        let _slots = self.slots.lock();
        f()
    }

    /// Commits a claimed run; on failure gives the slots back.
    fn commit_run(&self, idx: usize, n: usize) -> bool {
        if sys::commit(self.chunk_addr(idx), n << CHUNK_SHIFT) {
            let bytes = n << CHUNK_SHIFT;
            let now = self.committed.fetch_add(bytes, Ordering::Relaxed) + bytes;
            self.peak_committed.fetch_max(now, Ordering::Relaxed);
            true
        } else {
            let (mut slots, _) = self.slots.lock();
            // SAFETY: we claimed `idx..idx+n` and never marked them used.
            unsafe { slots.give(idx, n) };
            false
        }
    }

    /// Finds and takes `n` free slots, the first at a slot whose index plus
    /// `skew` (counted from address 0) is a multiple of `align_chunks`.
    fn claim_run(&self, n: usize, align_chunks: usize, skew: usize) -> Option<usize> {
        if n == 0 || n > self.chunks {
            return None;
        }
        let base_slot = self.base >> CHUNK_SHIFT;
        let (mut slots, _) = self.slots.lock();
        if slots.free < n {
            return None;
        }
        let mut i = slots.hint;
        while i + n <= self.chunks {
            let misalign = (base_slot + i + skew) % align_chunks.max(1);
            if misalign != 0 {
                i += align_chunks - misalign;
                continue;
            }
            // SAFETY: `i + n <= chunks`, so every probe is in bounds.
            match (i..i + n).find(|&j| !unsafe { slots.is_free(j) }) {
                Some(taken) => i = taken + 1,
                None => {
                    // SAFETY: the run is in bounds and free.
                    unsafe { slots.take(i, n) };
                    return Some(i);
                }
            }
        }
        None
    }
}

impl Slots {
    /// # Safety
    /// `i` is below the region's slot count.
    unsafe fn is_free(&self, i: usize) -> bool {
        // SAFETY: the bit array has a bit for every slot (caller bounds `i`).
        unsafe { *self.bits.add(i / 64) & (1 << (i % 64)) != 0 }
    }

    /// # Safety
    /// `i..i+n` is in bounds and free.
    unsafe fn take(&mut self, i: usize, n: usize) {
        for j in i..i + n {
            // SAFETY: in bounds (caller).
            unsafe { *self.bits.add(j / 64) &= !(1 << (j % 64)) };
        }
        self.free -= n;
        if i == self.hint {
            self.hint = i + n;
        }
    }

    /// # Safety
    /// `i..i+n` is in bounds and taken.
    unsafe fn give(&mut self, i: usize, n: usize) {
        for j in i..i + n {
            // SAFETY: in bounds (caller).
            unsafe { *self.bits.add(j / 64) |= 1 << (j % 64) };
        }
        self.free += n;
        self.hint = self.hint.min(i);
    }
}
