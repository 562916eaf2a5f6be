//! Owner cache: per-class lists of blocks up to `CACHE_BIG_MAX_REQUEST`
//! that the arena's owning thread pops with no lock and no locked
//! instruction and pushes with no lock and one compare-exchange (on the
//! freed block's own header) — the fast path in front of the locked
//! first-fit index (glibc's tcache, jemalloc's tcache bins and mimalloc's
//! page free lists are the models).
//!
//! ```text
//!  malloc(n), n <= CACHE_MAX_REQUEST, caller owns its arena (inline: small class = exact size)
//!    pop heads[class(n)] ─ hit ─▶ header CACHED -> live, return       (~20 instructions)
//!                        └ miss ─▶ lock: take back remote frees, else carve a batch side by side, keep 1 (cache_refill)
//!  malloc(n), n <= CACHE_BIG_MAX_REQUEST (out of line: big class = a range of sizes)
//!    pop_big: head of n's class if its block is large enough, else head of the class above
//!  free(p), p a live block of the caller's own arena, in a class
//!    push on heads[class] ─ room ─▶ header live -> CACHED (CAS), done
//!                         └ full ─▶ lock: double the class's cap, free its 2 newest blocks, coalescing (up to 32 in a
//!                                   bulk free, runs of neighbours among them merged first), push (cache_flush)
//! ```
//!
//! **Classes.** Small classes, one per granule up to `CACHE_MAX_BLOCK`
//! (a 1 KiB request): class `c` holds blocks of exactly `c * GRANULE`
//! bytes, popped and pushed inline. Big classes above, eight per doubling
//! up to `CACHE_BIG_MAX_BLOCK` (a 64 KiB request): class `i` holds blocks
//! of any size in `[big_lo(i), big_lo(i + 1))`, popped and pushed out of
//! line (a call, still no lock). Big blocks are carved at the size asked
//! (no rounding to the class: the index's exact fit, and RSS ÷ live, stay
//! what they were), so a pop reads the head block's size: it serves any
//! request it is large enough for, and a request the head is too small for
//! takes the class above, whose every block is larger. A big class parks
//! at most `CACHE_BIG_CLASS_BYTES` worth (2 to `CACHE_CLASS_LIMIT`
//! blocks) and a refill carves at most `CACHE_BIG_REFILL_BYTES` of it (a
//! small class's, `CACHE_REFILL_BYTES`), side by side from one free block
//! where the index has one that large (`ArenaState::carve_run`).
//!
//! **What it parks, and for how long.** A class's first refill carves an
//! eighth of a full batch (`CACHE_FILL_LEVELS`) and each further one twice
//! the last: a size the program asks for a few times leaves a few carved
//! blocks parked, not 31 (at 8 threads the fragmentation workload's live
//! set carried 2 MiB of such leftovers). Every `CACHE_SWEEP_EVERY` owner
//! slow paths (refills, the owner's locked calls; a big class's pop or
//! push counts as one) a sweep gives back half of each class that served
//! no allocation since the last sweep — blocks freed into it that nobody
//! asks for again, which pin memory and split the index's free runs — and
//! lowers its refill level and its cap. The test is
//! the per-class pop count `stats` keeps anyway, so the fast paths pay
//! nothing for it; a loop that never leaves them never sweeps.
//!
//! **Where it lives, and why.** In the arena, as owner-private state, not in
//! thread-local storage: an arena has one owner at a time, so the cache
//! passes to the adopter with the arena when its thread exits — no
//! thread-exit flush (which would have to run after TLS teardown began), no
//! blocks stranded in a dead thread's TLS, and `check()` and `stats()` find
//! every cached block by walking the arenas they already walk.
//!
//! **Who may touch it.** Only the thread whose live token is the arena's
//! `owner` ([`Arena::cache_is_mine`]: one TLS load and one relaxed load).
//! The inline fast paths (`cache_pop_fast`, `cache_push_fast`) are reached
//! instead through the thread's fast binding (`thread::cache::fast`),
//! which the slow paths set only to an arena whose `fast_owner` equals the
//! thread's token word: `fast_owner` is the owner's token only while the
//! cache is on and the heap unchecked, else a value no token word holds
//! (`registry::NOT_A_TOKEN`), and the binding is cleared as the thread's
//! exit begins; they run with the check values compiled out
//! (`Key::unchecked`: links stay keyed), so a hardened heap always takes
//! the checked paths.
//! The owner word changes only from a dead token to a live one, and a
//! thread's token reads as dead (`registry::current_token` is 0) from the
//! start of its exit, so two threads never use one cache at once; the
//! adopter's acquire of the dead token (the registry release) orders the old
//! owner's last cache writes before its first. Sharing threads, heaps with
//! `max_arenas(1)` and `owner_cache(0)` never use it (`limit == 0`).
//!
//! **Invariants** (`check()` proves them, under the arena lock, when the
//! heap is quiescent):
//! * every block on list `c` is a block of this arena whose header verifies
//!   with flags exactly `CACHED` and a size of class `c` (`class_of`), and
//!   is on exactly one list, once (the chunk walk's count of `CACHED`
//!   headers equals the lists' total);
//! * `counts[c]` is the length of list `c`, `limit - left` the sum of
//!   the cached block sizes (so `left <= limit`), `big_bytes` the big
//!   classes' share of it, at most `limit / 4`, and
//!   `counts[c] <= caps[c] <= max_cap(c)`;
//! * cached blocks count as live in the index's counters (they are carved)
//!   and are subtracted in `stats()`: the accounting equation becomes
//!   `user live + cached + free = chunks × CHUNK_DATA`.
//!
//! **Same-block races.** A foreign free claims a live block with a
//! compare-exchange (live -> `REMOTE_PENDING`, `remote.rs`); the owner's
//! push turns it live -> `CACHED` with one too (`Header::live_to_cached`),
//! so of an owner's free and a foreign free of one live block (a double
//! free by two threads) exactly one wins and the other is `DoubleFree` at
//! once — with a plain store, a claim landing between the push's read and
//! its store would also win, and the block would sit in the cache and in
//! a queue. The price: one uncontended locked instruction per free fast
//! path, on a line the free writes anyway (`benches/RESULTS.md`).
//!
//! Every field is an atomic used with `Relaxed` plain loads and stores (no
//! read-modify-write): the owner is the only writer, and `stats`/`check`
//! read from other threads without a data race (exact only when quiescent).
//! List links live in the first payload word of each cached block, stored
//! safe-linked (XOR with the heap's secret, `OwnerCache::mask`; the heads
//! too, so a pop and a push store what they load as it is) on every heap.
//! A pop checks that the next link decodes to a 16-aligned address in the
//! block's own chunk (one test) or else, by the chunk map, in one of the
//! arena's chunks, and aborts with `heap corruption … (free-list link
//! corrupt)` otherwise; a hardened pop also checks the block's header
//! (exactly `CACHED` and its class size), and a big pop, which reads the
//! header for the size anyway, checks it on every heap.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};

use super::{Arena, ArenaState};
use crate::bins::Ctx;
use crate::block::{self, Header, Key, CACHED, GRANULE, HEADER, MIN_BLOCK};
use crate::chunk;
use crate::config::{
    CACHE_BIG_CLASS_BYTES, CACHE_BIG_MAX_REQUEST, CACHE_BIG_REFILL_BYTES, CACHE_CLASS_LIMIT,
    CACHE_CLASS_MAX, CACHE_CLASS_MAX_BYTES, CACHE_DRAIN, CACHE_DRAIN_MOST, CACHE_FILL_LEVELS,
    CACHE_FLUSH_BATCH, CACHE_FLUSH_MOST, CACHE_MAX_REQUEST, CACHE_REFILL, CACHE_REFILL_BYTES,
    CACHE_SWEEP_EVERY,
};
use crate::error::{abort_on_corruption, Corruption, FreeError};
use crate::region::Region;
use crate::thread::registry;

/// The largest block of the small classes (the inline fast paths): a
/// `CACHE_MAX_REQUEST`-byte request.
pub(crate) const CACHE_MAX_BLOCK: usize = CACHE_MAX_REQUEST + HEADER;
/// The largest block the cache holds (the big classes): a
/// `CACHE_BIG_MAX_REQUEST`-byte request.
pub(crate) const CACHE_BIG_MAX_BLOCK: usize = CACHE_BIG_MAX_REQUEST + HEADER;
/// The bits in which a cached block's next link may not differ from the
/// block's own address for the pop's one-test check: the chunk's (the next
/// block lies in the same, committed chunk) and the granule offset (a
/// block address is 16-aligned, so the next one's must be too).
const OTHER_CHUNK_OR_MISALIGNED: usize = !(crate::config::CHUNK - 1) | (GRANULE - 1);
/// Small classes: class `c < SMALL_CLASSES` holds blocks of exactly
/// `c * GRANULE` bytes.
const SMALL_CLASSES: usize = CACHE_MAX_BLOCK / GRANULE + 1;
/// log2 of the big classes per doubling of the block size.
const BIG_STEPS: u32 = 3;
/// The doubling the big classes start at (1 KiB): the first one also
/// holds the blocks of 1041-1151 bytes the small classes end below.
const BIG_BASE_LOG: u32 = 10;
/// Big classes: class `SMALL_CLASSES + i` holds blocks of any size in
/// `[big_lo(i), big_lo(i + 1))` (in `(CACHE_MAX_BLOCK, CACHE_BIG_MAX_BLOCK]`).
const BIG_CLASSES: usize = big_index(CACHE_BIG_MAX_BLOCK) + 1;
/// All classes, small then big.
const CLASSES: usize = SMALL_CLASSES + BIG_CLASSES;
/// The first class a block can be in: below it the sizes are smaller than
/// any block. Those classes are never used: their counts read full, so a
/// push of a block whose size word says less than `MIN_BLOCK` (a program
/// zeroed it) finds no room and goes to `cache_flush`, which refuses it —
/// at no cost to the fast path.
const FIRST_CLASS: usize = MIN_BLOCK / GRANULE;
/// The largest `flush_shift`: `CACHE_FLUSH_BATCH << MAX_FLUSH_SHIFT` is
/// `CACHE_FLUSH_MOST`.
const MAX_FLUSH_SHIFT: u8 = (CACHE_FLUSH_MOST / CACHE_FLUSH_BATCH).trailing_zeros() as u8;

const _: () = assert!(CACHE_MAX_REQUEST % GRANULE == 0 && CACHE_MAX_REQUEST >= 1024);
const _: () = assert!(CACHE_MAX_BLOCK < 1 << (BIG_BASE_LOG + 1));
const _: () = assert!(CACHE_BIG_MAX_BLOCK % GRANULE == 0 && CACHE_BIG_MAX_BLOCK > CACHE_MAX_BLOCK);
const _: () = assert!(CACHE_REFILL >> CACHE_FILL_LEVELS >= 3);
const _: () = assert!(
    CACHE_FLUSH_MOST >= CACHE_FLUSH_BATCH
        && (CACHE_FLUSH_MOST / CACHE_FLUSH_BATCH).is_power_of_two()
);

/// The big class (from 0) of a block of `size >= 1 << BIG_BASE_LOG`
/// bytes: `BIG_STEPS` bits below the leading one pick the step.
#[inline(always)]
const fn big_index(size: usize) -> usize {
    let k = usize::BITS - 1 - size.leading_zeros();
    (((k - BIG_BASE_LOG) << BIG_STEPS) as usize)
        + ((size >> (k - BIG_STEPS)) & ((1 << BIG_STEPS) - 1))
}

/// The smallest block size of big class `i`.
const fn big_lo(i: usize) -> usize {
    let k = BIG_BASE_LOG as usize + (i >> BIG_STEPS);
    (1 << k) + ((i & ((1 << BIG_STEPS) - 1)) << (k - BIG_STEPS as usize))
}

/// The blocks class `c` parks at first (its cap until it overflows):
/// `CACHE_CLASS_LIMIT` for a small class, `CACHE_BIG_CLASS_BYTES` worth
/// (2 to `CACHE_CLASS_LIMIT`) for a big one; 0 for a class below
/// `FIRST_CLASS`, which is never used (always full).
fn first_cap(c: usize) -> u32 {
    if c < FIRST_CLASS {
        return 0;
    }
    if c < SMALL_CLASSES {
        return CACHE_CLASS_LIMIT;
    }
    // (`max(1)` spares the division a test for zero it cannot fail.)
    let n = CACHE_BIG_CLASS_BYTES / big_lo(c - SMALL_CLASSES).max(1);
    (n.clamp(2, CACHE_CLASS_LIMIT as usize)) as u32
}

/// The most class `c`'s cap grows to, doubling at each overflow: eight
/// times its first cap, at most `CACHE_CLASS_MAX` blocks — or, for a
/// small class, `CACHE_CLASS_MAX_BYTES` worth if that is more (the
/// tiniest blocks come in the longest runs).
fn max_cap(c: usize) -> u32 {
    let by_count = (first_cap(c).saturating_mul(8)).min(CACHE_CLASS_MAX);
    if (FIRST_CLASS..SMALL_CLASSES).contains(&c) {
        // (`c >= FIRST_CLASS`: a block size of at least `MIN_BLOCK`, so
        // the quotient is at most 2,048.)
        let by_bytes = (CACHE_CLASS_MAX_BYTES / (c * GRANULE).max(MIN_BLOCK)) as u32;
        return by_count.max(by_bytes);
    }
    by_count
}

/// Whether a cached block of `size` bytes may be on list `c`.
fn class_holds(c: usize, size: usize) -> bool {
    class_of(size) == Some(c)
}

/// The cache of one arena (module doc).
pub(crate) struct OwnerCache {
    /// Head block of each class list, encoded (`mask ^ block`; `mask`:
    /// empty), as every link is.
    heads: [AtomicUsize; CLASSES],
    /// What heads and links are XORed with: the heap's secret (safe
    /// linking). Heads hold encoded values too, so that a pop stores the
    /// link it loads as it is and a push stores the head it loads as it
    /// is: one XOR on the pop's dependency chain, none on the push's.
    mask: usize,
    /// Blocks each class list may still take: its cap less its length.
    /// Kept instead of the length so that the push's room test is a test
    /// for zero of the word it stores back, one less (a pop: one more).
    room: [AtomicU32; CLASSES],
    /// Cap of each class list: it starts at `first_cap`, doubles (up to
    /// `max_cap`) each time a free finds the class full, and goes back to
    /// `first_cap` when a sweep finds the class idle. Slow paths only.
    caps: [AtomicU32; CLASSES],
    /// Bytes the cache may still take: `limit` less the bytes of all
    /// cached blocks, headers included. Counted down, so that a push tests
    /// the limit with the subtraction's borrow (one instruction less on
    /// the free fast path than a count up compared with `limit`).
    left: AtomicUsize,
    /// Bytes of the cached blocks of the big classes, which may hold at
    /// most a quarter of `limit` (`link_big`): a block above 1 KiB parked
    /// for a size nobody asks for again pins more memory than a small one.
    big_bytes: AtomicUsize,
    /// Most bytes the cache may hold; 0: the cache is off.
    limit: usize,
    /// Blocks handed to the owner from each class, ever. (The blocks the
    /// user freed into it are not counted on the push path: they are
    /// `blocks + pops + from_cache - to_cache`, which `stats` derives.)
    pops: [AtomicU64; CLASSES],
    /// `pops[c]` at the last sweep: a class whose count has not moved since
    /// served no allocation for a whole sweep interval.
    swept: [AtomicU64; CLASSES],
    /// Refill level of each class (`0..=CACHE_FILL_LEVELS`): a refill
    /// carves `batch >> (CACHE_FILL_LEVELS - level)` blocks, then raises
    /// it; a sweep that empties the class lowers it one level.
    fill: [AtomicU8; CLASSES],
    /// Owner slow paths since the last sweep.
    ticks: AtomicU32,
    /// `pops[c]` (its low 32 bits) at class `c`'s last flush: unchanged at
    /// the next one means a burst of frees (`cache_flush`).
    flushed_at: [AtomicU32; CLASSES],
    /// log2 of class `c`'s last flush batch over `CACHE_FLUSH_BATCH`.
    flush_shift: [AtomicU8; CLASSES],
    /// The block size big class `SMALL_CLASSES + i`'s last refill carved
    /// (a big refill carves a batch only for a size asked for again).
    last_big: [AtomicUsize; BIG_CLASSES],
}

/// What the statistics need from a cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CacheCounts {
    pub(crate) blocks: usize,
    pub(crate) bytes: usize,
    pub(crate) pops: u64,
}

/// The outcome of a fast-path free.
pub(crate) enum Push {
    /// The block is in the cache.
    Done,
    /// Not a block the cache takes (not live, not small, not ours): the
    /// caller frees it under the lock, which classifies it exactly.
    Locked,
    /// A live small block, but its class or the cache is full.
    Full(*mut Header, usize),
}

/// Blocks taken off the cache on their way to the index, freed
/// `CACHE_FLUSH_MOST` at a time through `ArenaState::free_cached`, which
/// merges the neighbours among them first.
struct Evicted {
    blocks: [(usize, usize); CACHE_FLUSH_MOST],
    len: usize,
}

impl Evicted {
    fn new() -> Evicted {
        Evicted {
            blocks: [(0, 0); CACHE_FLUSH_MOST],
            len: 0,
        }
    }

    /// Adds block `b` (address, size), freeing the batch when it is full.
    ///
    /// # Safety
    ///
    /// `b` is a carved block of `st`'s arena of that size that just left
    /// the owner cache (no list holds it); the caller holds the lock.
    unsafe fn add(&mut self, st: &mut ArenaState, region: &Region, b: (usize, usize)) {
        if let Some(slot) = self.blocks.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
        if self.len == CACHE_FLUSH_MOST {
            // SAFETY: forwarded.
            unsafe { self.finish(st, region) };
        }
    }

    /// Frees the blocks added since the last batch (a chunk the frees
    /// empty goes back when the guard unlocks).
    ///
    /// # Safety
    ///
    /// As for `add`, for every block added.
    unsafe fn finish(&mut self, st: &mut ArenaState, region: &Region) {
        if let Some(run) = self.blocks.get_mut(..self.len) {
            // SAFETY: forwarded.
            unsafe { st.free_cached(region, run) };
        }
        self.len = 0;
    }
}

impl OwnerCache {
    pub(crate) fn new(limit: usize, mask: usize) -> OwnerCache {
        OwnerCache {
            heads: core::array::from_fn(|_| AtomicUsize::new(mask)),
            mask,
            room: core::array::from_fn(|c| AtomicU32::new(first_cap(c))),
            caps: core::array::from_fn(|c| AtomicU32::new(first_cap(c))),
            left: AtomicUsize::new(limit),
            big_bytes: AtomicUsize::new(0),
            limit,
            pops: [const { AtomicU64::new(0) }; CLASSES],
            swept: [const { AtomicU64::new(0) }; CLASSES],
            fill: [const { AtomicU8::new(0) }; CLASSES],
            ticks: AtomicU32::new(0),
            flushed_at: [const { AtomicU32::new(0) }; CLASSES],
            flush_shift: [const { AtomicU8::new(0) }; CLASSES],
            last_big: [const { AtomicUsize::new(0) }; BIG_CLASSES],
        }
    }

    /// A snapshot for `stats`.
    pub(crate) fn counts(&self) -> CacheCounts {
        CacheCounts {
            blocks: (FIRST_CLASS..CLASSES).map(|c| self.len(c)).sum(),
            bytes: self.limit.saturating_sub(self.left.load(Relaxed)),
            pops: self.pops.iter().map(|p| p.load(Relaxed)).sum(),
        }
    }

    /// Length of class list `c` (its cap less its room).
    fn len(&self, c: usize) -> usize {
        match (self.caps.get(c), self.room.get(c)) {
            (Some(cap), Some(room)) => {
                cap.load(Relaxed).saturating_sub(room.load(Relaxed)) as usize
            }
            _ => 0,
        }
    }
}

/// The class of a block of `size` bytes, if the cache holds that size.
#[inline(always)]
pub(crate) fn class_of(size: usize) -> Option<usize> {
    if size <= CACHE_MAX_BLOCK {
        Some(size / GRANULE)
    } else if size <= CACHE_BIG_MAX_BLOCK {
        Some(SMALL_CLASSES + big_index(size))
    } else {
        None
    }
}

/// The link word of a cached block.
#[inline(always)]
fn link_slot(b: usize) -> *const AtomicUsize {
    (b + HEADER) as *const AtomicUsize
}

impl Arena {
    /// Whether the calling thread may use this arena's cache: the cache is
    /// on and the caller's live token owns the arena.
    #[inline(always)]
    pub(crate) fn cache_is_mine(&self) -> bool {
        self.cache_is_mine_with(registry::current_token())
    }

    /// `cache_is_mine` for a caller that has already read its live token
    /// (`me`, 0 if none) with its binding, in the same TLS access.
    #[inline(always)]
    pub(crate) fn cache_is_mine_with(&self, me: u64) -> bool {
        self.cache.limit != 0 && me != 0 && self.owner_token() == me
    }

    /// The most bytes the cache may hold (0: off).
    #[inline]
    pub(crate) fn cache_limit(&self) -> usize {
        self.cache.limit
    }

    /// The fast path of `malloc`: a cached block of exactly `need` bytes,
    /// made live. `None` on a miss.
    ///
    /// # Safety
    ///
    /// `self.cache_is_mine()`; `need` is a block size with `class_of(need)`.
    #[inline(always)]
    pub(crate) unsafe fn cache_pop(&self, need: usize) -> Option<*mut u8> {
        if need > CACHE_MAX_BLOCK {
            // SAFETY: forwarded.
            return unsafe { self.pop_big(need) };
        }
        // SAFETY: forwarded; `self.key` is the arena's key.
        unsafe { self.pop_with(need, self.key) }
    }

    /// `cache_pop` of a big class: the head of `need`'s own class if it is
    /// large enough (the class holds a range of sizes), else the head of
    /// the next class up, whose every block is. Out of line, with the
    /// header read and checked on every heap (the block may be larger than
    /// `need`; it is handed out whole, as the index would).
    ///
    /// # Safety
    ///
    /// As for `cache_pop`, with `CACHE_MAX_BLOCK < need <= CACHE_BIG_MAX_BLOCK`.
    #[inline(never)]
    unsafe fn pop_big(&self, need: usize) -> Option<*mut u8> {
        let own = class_of(need)?;
        let cache = &self.cache;
        for c in [own, own + 1] {
            let (Some(head), Some(room), Some(pops)) =
                (cache.heads.get(c), cache.room.get(c), cache.pops.get(c))
            else {
                return None;
            };
            let b = head.load(Relaxed) ^ cache.mask;
            if b == 0 {
                continue;
            }
            // SAFETY: `b` heads our own list: a cached block of ours (module
            // invariant) in a committed chunk; its first payload word is its
            // link.
            unsafe {
                let size = match (*(b as *const Header)).read(self.key) {
                    Some(w) if w.flags == CACHED && class_holds(c, w.size) => w.size,
                    _ => abort_on_corruption(b, Corruption::Header),
                };
                if size < need {
                    // Only in `own`: the next class's blocks are all larger.
                    continue;
                }
                let raw = (*link_slot(b)).load(Relaxed);
                let next = raw ^ cache.mask;
                // Integrity, as in `pop_with`.
                if (next ^ b) & OTHER_CHUNK_OR_MISALIGNED != 0 && !self.cached_link_ok(next) {
                    abort_on_corruption(b, Corruption::Link);
                }
                head.store(raw, Relaxed);
                room.store(room.load(Relaxed) + 1, Relaxed);
                self.uncount(c, size);
                pops.store(pops.load(Relaxed) + 1, Relaxed);
                self.tick_big();
                (*(b as *const Header)).set(self.key, size, 0);
                return Some(block::block_to_payload(b as *mut Header));
            }
        }
        None
    }

    /// `cache_pop` for a caller whose fast binding names this arena: the
    /// heap does not check, so the checks are compiled out
    /// (`Key::unchecked`).
    ///
    /// # Safety
    ///
    /// As for `cache_pop`, with the caller's fast binding naming this arena
    /// (`thread::cache::fast`).
    #[inline(always)]
    pub(crate) unsafe fn cache_pop_fast(&self, need: usize) -> Option<*mut u8> {
        // SAFETY: forwarded; the fast binding means the cache is on and
        // ours, and the heap unhardened (`fast_owner_for`, `note_fast`).
        unsafe { self.pop_with(need, self.key.unchecked()) }
    }

    /// `cache_pop` under `key`.
    ///
    /// # Safety
    ///
    /// As for `cache_pop`, with `need <= CACHE_MAX_BLOCK` (a small
    /// class); `key` is `self.key`, or `self.key.unchecked()` on a heap
    /// that is not hardened.
    #[inline(always)]
    unsafe fn pop_with(&self, need: usize, key: Key) -> Option<*mut u8> {
        let c = need / GRANULE;
        let cache = &self.cache;
        let (head, room, pops) = (cache.heads.get(c)?, cache.room.get(c)?, cache.pops.get(c)?);
        let b = head.load(Relaxed) ^ cache.mask;
        if b == 0 {
            return None;
        }
        // SAFETY: `b` heads our own list: a cached block of ours (module
        // invariant), whose first payload word is its link; its chunk holds
        // a carved block, so it is committed.
        unsafe {
            let raw = (*link_slot(b)).load(Relaxed);
            let next = raw ^ cache.mask;
            // Integrity, on every heap: the next link must decode to a
            // 16-aligned address in one of our chunks — a pointer the
            // program wrote into the freed block decodes, under the secret,
            // to anything but — so no allocation ever returns or writes
            // through it: abort instead. One test in the common case (the
            // next block is 16-aligned in this block's chunk: committed,
            // ours); the chunk map otherwise.
            if (next ^ b) & OTHER_CHUNK_OR_MISALIGNED != 0 && !self.cached_link_ok(next) {
                abort_on_corruption(b, Corruption::Link);
            }
            if key.hardened() {
                let ok = matches!((*(b as *const Header)).read(key), Some(w) if w.flags == CACHED && w.size == need);
                if !ok {
                    abort_on_corruption(b, Corruption::Header);
                }
            }
            head.store(raw, Relaxed);
            room.store(room.load(Relaxed) + 1, Relaxed);
            cache.left.store(cache.left.load(Relaxed) + need, Relaxed);
            pops.store(pops.load(Relaxed) + 1, Relaxed);
            (*(b as *const Header)).set(key, need, 0);
            Some(block::block_to_payload(b as *mut Header))
        }
    }

    /// The fast path of `free`: puts `ptr`, if it is a live small block of
    /// this arena, on its class list.
    ///
    /// # Safety
    ///
    /// `self.cache_is_mine()`; `ptr` is `GRANULE`-aligned and in a chunk
    /// the region map gives to this arena.
    #[inline(always)]
    pub(crate) unsafe fn cache_push(&self, ptr: *mut u8) -> Push {
        // SAFETY: forwarded.
        unsafe { self.push_with::<true>(ptr, self.key) }
    }

    /// `cache_push` for a caller whose fast binding names this arena: the
    /// checks are compiled out (`Key::unchecked`), and only the small
    /// classes are tried (a big block goes to the slow path's
    /// `cache_push`).
    ///
    /// # Safety
    ///
    /// As for `cache_push`, with the caller's fast binding naming this
    /// arena (`thread::cache::fast`).
    #[inline(always)]
    pub(crate) unsafe fn cache_push_fast(&self, ptr: *mut u8) -> Push {
        // SAFETY: forwarded; the heap is unhardened (`fast_owner_for`,
        // `note_fast`).
        unsafe { self.push_with::<false>(ptr, self.key.unchecked()) }
    }

    /// `cache_push` under `key`: for the user's frees and for the blocks a
    /// refill carves alike (which `to_cache` counts under the lock). `BIG`:
    /// the big classes too (else a block above `CACHE_MAX_BLOCK` is
    /// `Locked`).
    ///
    /// # Safety
    ///
    /// As for `cache_push`; `key` is `self.key`, or `self.key.unchecked()`
    /// on a heap that is not hardened.
    #[inline(always)]
    unsafe fn push_with<const BIG: bool>(&self, ptr: *mut u8, key: Key) -> Push {
        let b = block::payload_to_block(ptr);
        let ch = chunk::chunk_of(ptr as usize);
        let max = if BIG {
            CACHE_BIG_MAX_BLOCK
        } else {
            CACHE_MAX_BLOCK
        };
        // SAFETY: the chunk is ours (caller), so committed while it holds
        // `ptr`'s block; a set start bit marks a header. A lock holder may
        // split and merge free neighbours meanwhile but never rewrites a
        // live block's header, and the header word is an atomic, so reading
        // it without the lock is sound.
        // No bounds test is needed before the start bit: no bit is ever set
        // for the chunk header's granules or the sentinel's, and a `b` just
        // below the chunk maps to the sentinel's bit.
        let (size, granules) = unsafe {
            if !(*ch).is_start(b as usize) {
                return Push::Locked;
            }
            match (*b).read_live_at_most(key, max) {
                Some(w) => w,
                None => return Push::Locked,
            }
        };
        // A small block's class is its size in granules (below
        // `FIRST_CLASS` for a zeroed size word: no room there).
        let c = if BIG && size > CACHE_MAX_BLOCK {
            SMALL_CLASSES + big_index(size)
        } else {
            granules
        };
        if key.hardened() {
            // A block going onto the cache is not coalesced, so the checks
            // a free makes of its neighbour are made here: the block after
            // it must verify and its boundary tag must say "the block
            // before me is live" — both are stable while the caller holds
            // `b` live (only a change of `b` rewrites them). An overflow
            // past `b`'s end is caught at its free, as on the locked path.
            let next = block::block_after(b, size);
            // SAFETY: `b`'s verified size keeps `next` in the chunk (the
            // sentinel at most): a header of a committed chunk of ours.
            let (next_word, tag) = unsafe { ((*next).read(key), Header::prev_size(next, key)) };
            match next_word {
                Some(_) if tag == 0 => {}
                Some(_) => abort_on_corruption(next as usize, Corruption::PrevSize),
                None => abort_on_corruption(next as usize, Corruption::Header),
            }
        }
        if BIG && c >= SMALL_CLASSES {
            // SAFETY: as below.
            return unsafe { self.link_big(c, b, size, key, true) };
        }
        // SAFETY: `b` is a live block of ours that the caller gives up.
        unsafe { self.link_cached(c, b, size, key, true) }
    }

    /// `link_cached` for a big class `c`: within the big classes' quarter
    /// of the byte limit, which it accounts.
    ///
    /// # Safety
    ///
    /// As for `link_cached`.
    unsafe fn link_big(&self, c: usize, b: *mut Header, size: usize, key: Key, live: bool) -> Push {
        let cache = &self.cache;
        let big = cache.big_bytes.load(Relaxed) + size;
        if big > cache.limit / 4 {
            return Push::Full(b, size);
        }
        // SAFETY: forwarded.
        let pushed = unsafe { self.link_cached(c, b, size, key, live) };
        if matches!(pushed, Push::Done) {
            cache.big_bytes.store(big, Relaxed);
            self.tick_big();
        }
        pushed
    }

    /// Counts a big class's pop or push towards the next sweep, as a
    /// locked call would (before the big classes, every such call was one):
    /// the sweep itself runs at the owner's next slow path (`cache_tick`).
    /// Without it a program whose larger blocks left the lock would sweep
    /// its idle small classes far less often (the driver's `fragmentation`
    /// workload at 8 threads parked about 2 MiB more).
    #[inline(always)]
    fn tick_big(&self) {
        let t = &self.cache.ticks;
        t.store(t.load(Relaxed).saturating_add(1), Relaxed);
    }

    /// Puts block `b` of `size` bytes (class `c`) on its class list, marked
    /// `CACHED`, if the class and the byte limit have room; returns whether
    /// it did.
    ///
    /// # Safety
    ///
    /// The caller owns the cache; nobody else may touch `b` (a live block
    /// its owner gives up, or a pending one under the arena lock); its first
    /// payload word becomes the link (a block is at least `MIN_BLOCK`, so it
    /// has one); `key` is `self.key`, or `self.key.unchecked()` on a heap
    /// that is not hardened (the fast path: every check folds away).
    #[inline(always)]
    unsafe fn link_cached(
        &self,
        c: usize,
        b: *mut Header,
        size: usize,
        key: Key,
        live: bool,
    ) -> Push {
        let cache = &self.cache;
        let (Some(head), Some(room)) = (cache.heads.get(c), cache.room.get(c)) else {
            return Push::Full(b, size);
        };
        let r = room.load(Relaxed);
        let Some(left) = cache.left.load(Relaxed).checked_sub(size) else {
            return Push::Full(b, size);
        };
        if r == 0 {
            return Push::Full(b, size);
        }
        // The counts first, taken back if the header change loses (a
        // double free): nothing but this thread reads them, and neither
        // stays live across the compare-exchange (on the fast path, no
        // callee-saved register to save and restore).
        room.store(r - 1, Relaxed);
        cache.left.store(left, Relaxed);
        // SAFETY: the caller's contract.
        unsafe {
            if live {
                if !(*b).live_to_cached(key, size) {
                    // A small class holds one size: taken from the class,
                    // not kept in a register across the exchange.
                    let size = if c < SMALL_CLASSES { c * GRANULE } else { size };
                    room.store(room.load(Relaxed) + 1, Relaxed);
                    cache.left.store(cache.left.load(Relaxed) + size, Relaxed);
                    return Push::Locked;
                }
            } else {
                (*b).set(key, size, CACHED);
            }
            (*link_slot(b as usize)).store(head.load(Relaxed), Relaxed);
        }
        head.store(b as usize ^ cache.mask, Relaxed);
        Push::Done
    }

    /// The miss path of `malloc`: under one lock acquisition, carves up to
    /// `CACHE_REFILL` blocks of `need` bytes, returns one and caches the
    /// rest. Null when the region is exhausted.
    ///
    /// # Safety
    ///
    /// As for `cache_pop`.
    #[cold]
    pub(crate) unsafe fn cache_refill(&self, region: &Region, need: usize) -> *mut u8 {
        let mut st = self.lock();
        let c = class_of(need).unwrap_or(0);
        // Remote frees first: they come back as ready blocks (`drain_into`),
        // `CACHE_DRAIN` at a time until one of the size asked for came
        // back (no carve then), the queue is empty, or `CACHE_DRAIN_MOST`
        // were applied: a refill pays for what it needs, not for the
        // whole queue. A big class drains one `DRAIN_BATCH`, as a locked
        // call does: a block of a range class coming back seldom fits the
        // request, so "until one came back" drained the whole bound on
        // nearly every big refill (a 19-30 µs malloc p99.9 at 2 threads of
        // the driver's `latency` workload).
        let mut budget = if c < SMALL_CLASSES {
            CACHE_DRAIN_MOST
        } else {
            crate::config::DRAIN_BATCH
        };
        while budget > 0 && self.cache_count(c) == 0 && self.remote_waiting(&st) {
            // SAFETY: we own the cache (caller) and hold the lock.
            match unsafe { self.drain_into(&mut st, region, CACHE_DRAIN.min(budget), true) } {
                Ok(n) if n > 0 => budget = budget.saturating_sub(n),
                Ok(_) => break,
                Err(bad) => {
                    drop(st);
                    crate::error::abort_on_free_error(FreeError::DoubleFree, bad as *const u8);
                }
            }
        }
        // SAFETY: we own the cache (caller) and hold the lock.
        unsafe { self.cache_tick(&mut st, region) };
        // SAFETY: we own the cache; `need` is a class size.
        if let Some(p) = unsafe { self.cache_pop(need) } {
            return p;
        }
        let cache = &self.cache;
        // A class starts with an eighth of a batch and doubles it with each
        // refill: a size the program asks for a few times leaves a few
        // carved blocks idle, not a whole batch.
        let level = cache
            .fill
            .get(c)
            .map_or(CACHE_FILL_LEVELS, |f| f.load(Relaxed));
        let shift = u32::from(CACHE_FILL_LEVELS.saturating_sub(level));
        if let Some(f) = cache.fill.get(c) {
            f.store(level.saturating_add(1).min(CACHE_FILL_LEVELS), Relaxed);
        }
        // `need` is a block size (at least `MIN_BLOCK`); `max(1)` only
        // spares the division a test for zero it cannot fail. A refill
        // takes the lock, so it carves at least three small blocks (the
        // caller's and two parked) whatever the level and the class. A big
        // class carves by `CACHE_BIG_REFILL_BYTES`, at least the caller's
        // block, within the big classes' quarter of the limit.
        let per = need.max(1);
        let (batch, big_room) = if c >= SMALL_CLASSES {
            // Only for a size asked for again, its levels climbing from the
            // first repeat: a big class holds a range, and blocks carved at
            // one size park unused when the program's sizes vary within it
            // (batches for every big refill took the fragmentation
            // workload's RSS ÷ live from 1.03 / 1.05 to 1.07 / 1.10 at
            // 2 / 8 threads; for repeats alone, 1.04 / 1.08).
            let repeat = cache.last_big.get(c - SMALL_CLASSES).is_some_and(|w| {
                let last = w.load(Relaxed);
                w.store(need, Relaxed);
                last == need
            });
            let quarter = cache.limit / 4;
            let batch = if repeat {
                ((CACHE_BIG_REFILL_BYTES >> shift) / per).clamp(1, CACHE_REFILL >> shift)
            } else {
                // A new size starts the class's levels again.
                if let Some(f) = cache.fill.get(c) {
                    f.store(0, Relaxed);
                }
                1
            };
            (
                batch,
                quarter.saturating_sub(cache.big_bytes.load(Relaxed)) / per,
            )
        } else {
            let batch = ((CACHE_REFILL_BYTES >> shift) / per)
                .max(3)
                .min(CACHE_REFILL >> shift);
            (batch, usize::MAX)
        };
        let room = (cache.left.load(Relaxed) / per)
            .min(batch.saturating_sub(1))
            .min(big_room)
            .min(self.cache_room(c));
        // Carve the batch first, in runs of neighbours (`carve_run`), and
        // push it last block first, so that the next `room` mallocs get
        // ascending addresses, as carved (a program that allocates a run of
        // blocks gets them side by side); the caller gets the first.
        let mut carved = [core::ptr::null_mut::<u8>(); CACHE_REFILL];
        let want = room + 1;
        let mut n = 0;
        while let Some(rest) = carved.get_mut(n..want) {
            if rest.is_empty() {
                break;
            }
            let got = st.carve_run(region, need, rest);
            if got == 0 {
                break;
            }
            n += got;
        }
        let Some((&first, parked)) = carved.get(..n).and_then(|c| c.split_first()) else {
            return core::ptr::null_mut();
        };
        for &p in parked.iter().rev() {
            st.counters.to_cache += 1;
            // SAFETY: `p` is a block we just carved, live and ours; we own
            // the cache (caller).
            match unsafe { self.push_with::<true>(p, self.key) } {
                Push::Done => {}
                // No room after all (a carve may keep up to 16 bytes more
                // than `need`, landing in the next class): give it back,
                // counted as cached and flushed, so that the user's
                // allocations and frees stay exact.
                _ => {
                    st.counters.from_cache += 1;
                    let b = block::payload_to_block(p);
                    let size = st.hdr(b).size;
                    // SAFETY: as above; `p` is live and ours, of `size`
                    // (a chunk it empties goes back when the guard unlocks).
                    unsafe { st.free(region, b, size) };
                }
            }
        }
        first
    }

    /// The full path of `free`: `b`'s class is full (or the cache at its
    /// byte limit), so under the lock a class full by count doubles its cap
    /// (up to `max_cap`: a program that frees bursts of a size keeps them
    /// next time), the class's `CACHE_FLUSH_BATCH` newest blocks go to the
    /// index — freed and coalesced like any free, while their lines are
    /// still in this core's cache — and `b` takes their place at the head
    /// (the next malloc of the size gets the block freed last). Classes
    /// nobody allocates from go back, and their caps down, through the
    /// sweep (refills' and locked calls' `cache_tick`).
    /// (Flushing the oldest half of the class here instead walked the list
    /// to its far end and freed 32 blocks that had gone cold: a ~1 µs free
    /// once in 32, which was the whole p99.9 of the driver's `latency`
    /// workload's frees. Evicting one block with a fixed cap took the lock
    /// on every free past the cap: 700 acquisitions per 1,000 allocations
    /// in the driver's `service` workload.)
    ///
    /// # Safety
    ///
    /// `self.cache_is_mine()`; `b` is a live block of `size` bytes of this
    /// arena that the caller gives up. `Err(DoubleFree)` if a foreign free
    /// of the same block claimed it after the caller read it live (that
    /// free won the race).
    #[cold]
    pub(crate) unsafe fn cache_flush(
        &self,
        region: &Region,
        b: *mut Header,
        size: usize,
    ) -> Result<(), FreeError> {
        if size < MIN_BLOCK {
            // Only a size word a program overwrote says this (module doc,
            // `FIRST_CLASS`).
            abort_on_corruption(b as usize, Corruption::Header);
        }
        let mut st = self.lock_and_drain_some(region);
        // Not a sweep tick: a run of frees past a full class takes this
        // path once per `CACHE_FLUSH_BATCH` frees, which would sweep many
        // times as often as the owner's other slow paths do.
        let c = class_of(size).unwrap_or(0);
        if self.cache_room(c) == 0 && c >= FIRST_CLASS {
            // Full by count: a class the program frees more of than its cap
            // (a bulk free, a size it allocates in bursts) grows, so that
            // the next burst stays off the lock; a sweep that finds it idle
            // shrinks it back.
            let cap = self.cache.caps.get(c).map_or(0, |w| w.load(Relaxed));
            self.set_cap(c, cap.saturating_mul(2).min(max_cap(c)));
        }
        let n = self.flush_count(c);
        // SAFETY: we own the cache (caller) and hold the lock.
        unsafe { self.evict_newest(&mut st, region, c, n) };
        // SAFETY: `b` was live and ours (caller); the push reads its
        // header again.
        match unsafe { self.cache_push(block::block_to_payload(b)) } {
            Push::Done => {}
            // Still no room: free it.
            Push::Full(..) => {
                // SAFETY: as above; `Full` means the header said live, and
                // `free_live` decides against a claim landing since (a
                // chunk it empties goes back when the guard unlocks).
                unsafe { st.free_live(region, b, size) }?;
            }
            // The header is no longer live: between the caller's read and
            // ours a foreign free of the same block claimed it (only a
            // claim changes a live block's header while we hold the lock)
            // and queued it. That free won; this one is the double free —
            // not a free of a block that sits in a queue.
            Push::Locked => return Err(FreeError::DoubleFree),
        }
        Ok(())
    }

    /// How many blocks this flush of class `c` gives back:
    /// `CACHE_FLUSH_BATCH`, or, while the class holds a run of at least
    /// `CACHE_FLUSH_MOST` blocks and served no allocation since its last
    /// flush, double the last flush's count, up to `CACHE_FLUSH_MOST`. A
    /// bulk free (a program freeing thousands of one size in a row) then
    /// takes the lock once per 32 frees, not once per 2, and the runs of
    /// neighbours it frees merge before they reach the index
    /// (`ArenaState::free_cached`); a class that is also allocated from,
    /// or holds a few blocks, keeps the short flush, whose latency is the
    /// free's p99.9 (`CACHE_FLUSH_BATCH`). (Doubling for any class also
    /// evicted the few blocks each of a program's many classes held when
    /// it freed thousands of varied sizes, and the driver's `bulk-varied`
    /// ran about 3 % slower in an alternated run.)
    fn flush_count(&self, c: usize) -> usize {
        let cache = &self.cache;
        let (Some(pops), Some(at), Some(shift)) = (
            cache.pops.get(c),
            cache.flushed_at.get(c),
            cache.flush_shift.get(c),
        ) else {
            return CACHE_FLUSH_BATCH;
        };
        // (Low 32 bits: a burst is a count that did not move at all.)
        let p = pops.load(Relaxed) as u32;
        let s = if at.load(Relaxed) == p {
            shift.load(Relaxed).saturating_add(1).min(MAX_FLUSH_SHIFT)
        } else {
            0
        };
        at.store(p, Relaxed);
        shift.store(s, Relaxed);
        if self.cache_count(c) < CACHE_FLUSH_MOST {
            return CACHE_FLUSH_BATCH;
        }
        (CACHE_FLUSH_BATCH << s).min(CACHE_FLUSH_MOST)
    }

    /// Gives all but the `keep` most recently cached blocks of class `c`
    /// back to the index — the oldest go, whose chunks are the likeliest to
    /// empty — each freed straight from `CACHED`, never through a live
    /// header: a foreign free racing the flush finds the block not live,
    /// fails its claim and is classified under our lock as the double free
    /// it is. Chunks that empty go back to the region when the guard
    /// unlocks (`ArenaGuard`).
    ///
    /// # Safety
    ///
    /// The caller owns the cache and holds the arena lock (`st`).
    unsafe fn flush_class(&self, st: &mut ArenaState, region: &Region, c: usize, keep: usize) {
        let cache = &self.cache;
        let (Some(head), Some(room), Some(cap)) =
            (cache.heads.get(c), cache.room.get(c), cache.caps.get(c))
        else {
            return;
        };
        let n = cache.len(c);
        if n <= keep {
            return;
        }
        // Walk past the `keep` newest and cut the list there.
        let mut cur = head.load(Relaxed) ^ cache.mask;
        let mut last_kept = 0;
        for _ in 0..keep {
            last_kept = cur;
            cur = self.cached_next(region, cur);
        }
        if last_kept == 0 {
            head.store(cache.mask, Relaxed);
        } else {
            // SAFETY: `last_kept` is a cached block of ours: its first
            // payload word is its link (now the end of the list).
            unsafe { (*link_slot(last_kept)).store(cache.mask, Relaxed) };
        }
        room.store(cap.load(Relaxed).saturating_sub(keep as u32), Relaxed);
        let mut out = Evicted::new();
        while cur != 0 {
            let next = self.cached_next(region, cur);
            let size = self.cached_size(c, cur);
            self.uncount(c, size);
            st.counters.from_cache += 1;
            // SAFETY: `cur` was on our list: a carved block of ours of
            // `size` bytes, now off the cache.
            unsafe { out.add(st, region, (cur, size)) };
            cur = next;
        }
        // SAFETY: the caller holds the lock.
        unsafe { out.finish(st, region) };
    }

    /// Frees the `n` newest blocks of class `c` — its list's head end,
    /// freed or drained a moment ago, so still hot — into the index: room
    /// for `n` under one lock acquisition, with no walk down the list.
    ///
    /// # Safety
    ///
    /// The caller owns the cache and holds the arena lock (`st`).
    unsafe fn evict_newest(&self, st: &mut ArenaState, region: &Region, c: usize, n: usize) {
        if n <= CACHE_FLUSH_BATCH {
            // The common flush: each block freed as it comes off the list
            // (the newest two are seldom neighbours: no sort, no buffer).
            for _ in 0..n {
                let Some((b, size)) = self.take_head(st, region, c) else {
                    break;
                };
                // SAFETY: `b` just left our list: a carved block of ours of
                // `size` bytes (the caller owns the cache and holds the
                // lock; a chunk it empties goes back when the guard unlocks).
                unsafe { st.free(region, b as *mut Header, size) };
            }
            return;
        }
        let mut out = Evicted::new();
        for _ in 0..n {
            let Some(b) = self.take_head(st, region, c) else {
                break;
            };
            // SAFETY: forwarded; `b` just left our list.
            unsafe { out.add(st, region, b) };
        }
        // SAFETY: forwarded.
        unsafe { out.finish(st, region) };
    }

    /// Takes class `c`'s head block off its list and out of the byte
    /// counts, counted as flushed: its address and size, or `None` if the
    /// class is empty. The caller frees it (through `Evicted`).
    #[inline(always)]
    fn take_head(&self, st: &mut ArenaState, region: &Region, c: usize) -> Option<(usize, usize)> {
        let cache = &self.cache;
        let (head, room) = (cache.heads.get(c)?, cache.room.get(c)?);
        let b = head.load(Relaxed) ^ cache.mask;
        if b == 0 {
            return None;
        }
        let size = self.cached_size(c, b);
        head.store(self.cached_next(region, b) ^ cache.mask, Relaxed);
        room.store(room.load(Relaxed) + 1, Relaxed);
        self.uncount(c, size);
        st.counters.from_cache += 1;
        Some((b, size))
    }

    /// Counts one owner slow path (a refill, a locked call of the owner);
    /// every `CACHE_SWEEP_EVERY`th sweeps the cache.
    ///
    /// # Safety
    ///
    /// The caller owns the cache and holds the arena lock (`st`).
    #[inline]
    pub(crate) unsafe fn cache_tick(&self, st: &mut ArenaState, region: &Region) {
        let cache = &self.cache;
        let t = cache.ticks.load(Relaxed).saturating_add(1);
        if t < CACHE_SWEEP_EVERY {
            cache.ticks.store(t, Relaxed);
            return;
        }
        cache.ticks.store(0, Relaxed);
        // SAFETY: forwarded.
        unsafe { self.cache_sweep(st, region) };
    }

    /// Gives back to the index every class that served no allocation since
    /// the last sweep (its blocks were freed into it or carved for it and
    /// then nobody asked for that size again: memory parked for nothing, and
    /// holes the index cannot coalesce), and lowers its refill level by one
    /// (to 0 it would cost a class that comes back several small refills).
    /// jemalloc's tcache GC flushes by low-water mark, which needs a count on
    /// the fast path; "no pop in a whole interval" needs none (the pop
    /// counters are there for `stats` anyway). A hot class with pops is
    /// never touched; a loop that never leaves the fast path never sweeps.
    ///
    /// # Safety
    ///
    /// The caller owns the cache and holds the arena lock (`st`).
    #[cold]
    unsafe fn cache_sweep(&self, st: &mut ArenaState, region: &Region) {
        let cache = &self.cache;
        for c in FIRST_CLASS..CLASSES {
            let (Some(pops), Some(swept), Some(fill)) =
                (cache.pops.get(c), cache.swept.get(c), cache.fill.get(c))
            else {
                return;
            };
            let p = pops.load(Relaxed);
            if p == swept.load(Relaxed) && self.cache_count(c) > 0 {
                // SAFETY: forwarded.
                unsafe { self.flush_class(st, region, c, self.cache_count(c) / 2) };
                fill.store(fill.load(Relaxed).saturating_sub(1), Relaxed);
                self.set_cap(c, first_cap(c));
            }
            swept.store(p, Relaxed);
        }
    }

    /// Whether `next`, decoded from a cached block's link, may follow it:
    /// the end of the list, or a 16-aligned address in one of this arena's
    /// chunks (committed while the map says so). The pop's rare case,
    /// inline all the same: a call would make the fast path save registers.
    #[inline(always)]
    fn cached_link_ok(&self, next: usize) -> bool {
        next == 0 || self.chunk_test.holds(next)
    }

    /// Takes a block of `size` bytes of class `c`, leaving the cache, off
    /// the byte counts.
    fn uncount(&self, c: usize, size: usize) {
        let cache = &self.cache;
        cache.left.store(
            cache
                .left
                .load(Relaxed)
                .saturating_add(size)
                .min(cache.limit),
            Relaxed,
        );
        if c >= SMALL_CLASSES {
            cache
                .big_bytes
                .store(cache.big_bytes.load(Relaxed).saturating_sub(size), Relaxed);
        }
    }

    /// The size of cached block `b` of class `c`: the class's for a small
    /// one; a big class holds a range, so its header says (checked: a
    /// header a program overwrote aborts, on every heap).
    fn cached_size(&self, c: usize, b: usize) -> usize {
        if c < SMALL_CLASSES {
            return c * GRANULE;
        }
        // SAFETY: `b` is a cached block of ours (list invariant): a header
        // of a committed chunk of ours.
        match unsafe { (*(b as *const Header)).read(self.key) } {
            Some(w) if w.flags == CACHED && class_holds(c, w.size) => w.size,
            _ => abort_on_corruption(b, Corruption::Header),
        }
    }

    /// The block after cached block `b` on its list (0 at the end),
    /// validated on a hardened heap.
    #[inline]
    fn cached_next(&self, region: &Region, b: usize) -> usize {
        let key = self.key;
        // SAFETY: `b` is a cached block of ours (list invariant).
        let next = unsafe { (*link_slot(b)).load(Relaxed) } ^ self.cache.mask;
        if next != 0 {
            let cx = Ctx {
                key,
                id: self.home().id,
                region,
            };
            if !cx.is_plausible_link(next) {
                abort_on_corruption(b, Corruption::Link);
            }
        }
        next
    }

    /// Takes the pending (remotely freed, drained) block `b` of `size`
    /// bytes onto the cache if its class has room: the user freed it, so it
    /// counts as a push (not `to_cache`). Returns whether it did.
    ///
    /// # Safety
    ///
    /// The caller owns the cache and holds the arena lock; `b` is a pending
    /// block of ours of `size` bytes.
    pub(crate) unsafe fn cache_adopt_pending(&self, b: *mut Header, size: usize) -> bool {
        let Some(c) = class_of(size) else {
            return false;
        };
        // SAFETY: `b` is pending, so nobody but the lock holder (us) may
        // touch it; we own the cache (caller).
        let pushed = unsafe {
            if c >= SMALL_CLASSES {
                self.link_big(c, b, size, self.key, false)
            } else {
                self.link_cached(c, b, size, self.key, false)
            }
        };
        matches!(pushed, Push::Done)
    }

    /// Length of class list `c`.
    #[inline]
    fn cache_count(&self, c: usize) -> usize {
        self.cache.len(c)
    }

    /// Blocks class `c` has room for (its cap less its length).
    fn cache_room(&self, c: usize) -> usize {
        self.cache
            .room
            .get(c)
            .map_or(0, |r| r.load(Relaxed) as usize)
    }

    /// Sets class `c`'s cap, not below its length (which stays).
    fn set_cap(&self, c: usize, cap: u32) {
        let len = self.cache.len(c) as u32;
        if let (Some(caps), Some(room)) = (self.cache.caps.get(c), self.cache.room.get(c)) {
            let cap = cap.max(len);
            caps.store(cap, Relaxed);
            room.store(cap - len, Relaxed);
        }
    }

    /// What `stats` reports of the cache.
    pub(crate) fn cache_counts(&self) -> CacheCounts {
        self.cache.counts()
    }

    /// Empties the whole cache into the index, every block freed and
    /// coalesced like a free: for `Heap::trim` and for the reclaim of an
    /// orphaned arena (`purge.rs`). Returns whether it held anything.
    ///
    /// # Safety
    ///
    /// The caller has the cache to itself — it owns the arena, or holds
    /// the `RECLAIMING` owner word of an arena whose owner died — and holds
    /// the arena lock (`st`).
    pub(crate) unsafe fn cache_flush_all(&self, st: &mut ArenaState, region: &Region) -> bool {
        let any = self.cache_holds_any();
        for class in FIRST_CLASS..CLASSES {
            // SAFETY: forwarded.
            unsafe { self.flush_class(st, region, class, 0) };
        }
        any
    }

    /// Forgets every list and count without touching a block: a `fork`
    /// child whose owner did not come along (`fork.rs`; the repair frees
    /// the blocks whose headers say `CACHED`).
    pub(super) fn cache_forget_all(&self) {
        let cache = &self.cache;
        for (c, ((head, room), cap)) in cache
            .heads
            .iter()
            .zip(&cache.room)
            .zip(&cache.caps)
            .enumerate()
        {
            head.store(cache.mask, Relaxed);
            cap.store(first_cap(c), Relaxed);
            room.store(first_cap(c), Relaxed);
        }
        cache.left.store(cache.limit, Relaxed);
        cache.big_bytes.store(0, Relaxed);
    }

    /// Whether the cache holds anything (racy; exact for its owner).
    pub(crate) fn cache_holds_any(&self) -> bool {
        let mask = self.cache.mask;
        self.cache.heads.iter().any(|h| h.load(Relaxed) != mask)
    }

    /// Proves the module invariants for this cache (under the arena lock;
    /// exact when the owner is not running). Returns the number of cached
    /// blocks and bytes walked, or the first bad entry.
    pub(crate) fn check_cache(&self, region: &Region) -> Result<(usize, usize), usize> {
        let key: Key = self.key;
        let cx = Ctx {
            key,
            id: self.home().id,
            region,
        };
        let (mut blocks, mut bytes, mut big_bytes) = (0usize, 0usize, 0usize);
        for c in 0..FIRST_CLASS {
            let empty = self
                .cache
                .heads
                .get(c)
                .is_some_and(|h| h.load(Relaxed) == self.cache.mask);
            let cap = self.cache.caps.get(c).map(|n| n.load(Relaxed));
            let room = self.cache.room.get(c).map(|n| n.load(Relaxed));
            if !empty || cap != Some(0) || room != Some(0) {
                return Err(0);
            }
        }
        for c in FIRST_CLASS..CLASSES {
            let head = self.cache.heads.get(c).map_or(0, |h| h.load(Relaxed));
            let mut b = head ^ self.cache.mask;
            let expected = self.cache_count(c);
            let mut n = 0;
            while b != 0 {
                n += 1;
                if n > expected || !cx.is_our_block(b) {
                    return Err(b);
                }
                // SAFETY: `is_our_block` proved `b` is a block start in one
                // of our committed chunks.
                unsafe {
                    let size = match (*(b as *const Header)).read(key) {
                        Some(w) if w.flags == CACHED && class_holds(c, w.size) => w.size,
                        _ => return Err(b),
                    };
                    bytes += size;
                    if c >= SMALL_CLASSES {
                        big_bytes += size;
                    }
                    b = (*link_slot(b)).load(Relaxed) ^ self.cache.mask;
                }
            }
            let cap = self.cache.caps.get(c).map_or(0, |w| w.load(Relaxed));
            let room = self.cache.room.get(c).map_or(0, |w| w.load(Relaxed));
            if room > cap
                || n != expected
                || n > cap as usize
                || !(first_cap(c)..=max_cap(c)).contains(&cap)
            {
                return Err(head ^ self.cache.mask);
            }
            blocks += n;
        }
        if Some(bytes) != self.cache.limit.checked_sub(self.cache.left.load(Relaxed))
            || big_bytes != self.cache.big_bytes.load(Relaxed)
            || big_bytes > self.cache.limit / 4
        {
            return Err(0);
        }
        Ok((blocks, bytes))
    }
}
