//! Heap: the public API and `GlobalAlloc` — the entry points, and the
//! paths every allocation and free takes from here.
//!
//! Which files each call passes through from here (`malloc`, a local and
//! a remote free, stress mode, decay): the crate's architecture map,
//! [`crate`] ("Which file to open"). `realloc` tries `resize_in_place`
//! (arena or large) before `alloc_impl` + copy + free.
//!
//! A `Heap` value is a few words (its `Config`, the metadata pointer, the
//! heap id, the init state, and `start_test`: the block-start query's copy
//! of the region's range and map) and const-constructible. On first use it
//! reserves its region and builds its metadata (`meta.rs`) *inside* the
//! region's first chunk(s), so nothing about a heap is ever allocated
//! through another allocator and nothing of it moves.
//!
//! Invariants:
//! * `meta` is null until initialisation finished, then never changes until
//!   `Drop`; `init` goes `UNINIT -> BUSY -> READY` (back to `UNINIT` if the
//!   OS refuses the reservation, so a later call may retry).
//! * Allocation fast path (`alloc_fast`, inlined into the caller): one TLS
//!   access (front binding and token word), the heap id compare, the owner
//!   test (one compare with the arena's `fast_owner`), a list pop: no
//!   call, no lock, no locked instruction, no syscall, no allocation, no
//!   formatting, no panic. The free fast path (`free_fast`) is the same
//!   plus the chunk test and the start bit, and its header change is one
//!   uncontended compare-exchange (live -> `CACHED`), so that a foreign
//!   free of the same block cannot also win (`arena/cache.rs`). Only unchecked
//!   heaps take them (`fast_owner` is `NOT_A_TOKEN` on a hardened one);
//!   anything they do not finish goes out of line to `alloc_slow` /
//!   `free_slow`, which decide everything again, checks included. The
//!   locked path behind: the arena lock (uncontended with per-thread
//!   arenas), an O(1) bin search, a split, the unlock.
//! * `start_test` is empty until initialisation, published just before
//!   `meta` on a heap that is neither hardened nor in stress mode (empty
//!   for ever on the others), then never changes: `start_usable`, C's
//!   `malloc_usable_size` of a block start, reads it instead of `meta` —
//!   about 30 instructions, no call, no lock.
//! * No lock of the heap is held while anything could call the global
//!   allocator (`inspect` allocates its buffers before locking and writes
//!   after unlocking).
//!
//! Files: `meta.rs` (metadata layout, arena table, pointer lookup),
//! `pool.rs` (the internal pool for allocations made while binding),
//! `bind.rs` (thread -> arena), `fork.rs` (the `pthread_atfork` handlers every heap registers),
//! `sized.rs` (frees told the size: `dealloc`, `free_sized`), `allocator.rs`
//! (`Allocator` for `&Heap`, behind the `allocator-api2` and `nightly` features).

#[cfg(any(feature = "allocator-api2", feature = "nightly"))]
mod allocator;
mod bind;
mod fork;
mod meta;
mod pool;
pub(crate) mod purge;
mod sized;
mod stress;

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, Ordering};

use crate::arena::cache::{CACHE_BIG_MAX_BLOCK, CACHE_MAX_BLOCK};
use crate::arena::{self, Arena, ArenaState, Push};
use crate::block::{self, GRANULE};
use crate::config::{
    Config, CACHE_BIG_MAX_REQUEST, CACHE_MAX_REQUEST, LARGE_THRESHOLD, MAX_REMOTE_QUEUE_CAPACITY,
};
use crate::error::{abort_on_free_error, FreeError};
use crate::large;
use crate::region::{ChunkUse, StartTest};
use crate::sync::MpmcQueue;
use crate::thread::cache;

use bind::Bound;
pub(crate) use meta::HeapMeta;
use meta::{create_meta, locate, Owner};

// The largest remote queue's buffer fits the internal pool's share of an
// arena, and computing its size cannot overflow (a compile error if it did):
// what lets `Config::resolved` clamp the capacity instead of failing.
const _: () = assert!(MpmcQueue::buffer_bytes(MAX_REMOTE_QUEUE_CAPACITY) <= LARGE_THRESHOLD);

const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;

/// A thread-safe heap: a region, its arenas and its large allocations.
///
/// ```
/// let heap = arenalloc::Heap::new();
/// let p = heap.malloc(100);
/// assert!(!p.is_null() && heap.is_allocated(p));
/// assert!(heap.usable_size(p).unwrap() >= 100);
/// unsafe { heap.free(p) }.unwrap();
/// assert_eq!(unsafe { heap.free(p) }, Err(arenalloc::FreeError::DoubleFree));
/// heap.check().unwrap();
/// ```
pub struct Heap {
    config: Config,
    meta: AtomicPtr<HeapMeta>,
    /// `meta.id` once `meta` is set, `NO_HEAP_ID` before: what the alloc
    /// and free fast paths compare the thread's binding with, without
    /// loading (and null-testing) `meta`.
    id: AtomicU64,
    init: AtomicU8,
    /// The region's range and map once `meta` is set, on a heap whose
    /// block-start queries need no more than the map, the start bit and
    /// the header (neither hardened nor in stress mode); empty before and
    /// on every other heap: what `start_usable` reads instead of `meta`.
    start_test: StartTest,
}

/// `Heap::id` of a heap not yet initialised: no heap has it (ids count up
/// from 1) and no binding holds it (an empty one holds 0).
const NO_HEAP_ID: u64 = u64::MAX;

// SAFETY: (1) every allocation returned satisfies the layout: `alloc_impl`
// aligns to `max(align, 16)` and serves at least `size` bytes; (2) `dealloc`
// and `realloc` take pointers this heap returned (the caller's contract),
// and invalid ones abort instead of corrupting; (3) nothing here unwinds.
unsafe impl GlobalAlloc for Heap {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.alloc_impl(layout.size(), layout.align().max(GRANULE))
    }

    /// Uses the layout's size (`sized.rs`): a block too large for the
    /// owner cache skips the fast path; hardened and stress-mode heaps
    /// check it against the block.
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a live block of this heap, allocated
        // with `layout`.
        unsafe { self.dealloc_sized(ptr, layout.size()) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.alloc_zeroed_impl(layout.size(), layout.align().max(GRANULE))
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a live block of this heap and a non-zero
        // `new_size`, so this never frees without allocating.
        unsafe { self.realloc_impl(ptr, new_size, layout.align().max(GRANULE)) }
    }
}

impl Heap {
    // ----- allocation ---------------------------------------------------

    /// Allocates `size` bytes aligned to `align` (a power of two >= 16):
    /// the owner cache's fast path inline, everything else out of line.
    #[inline(always)]
    fn alloc_impl(&self, size: usize, align: usize) -> *mut u8 {
        if align <= GRANULE && size <= CACHE_MAX_REQUEST {
            if let Some(p) = self.alloc_fast(size) {
                return p;
            }
        }
        self.alloc_slow(size, align)
    }

    /// The fast path of a small `malloc`: a hit in the caller's own owner
    /// cache, on a heap that does not check. One TLS access (the thread's
    /// fast binding, `cache::fast`), the heap id compare, a list pop: no
    /// call, no lock, no locked instruction. `None` sends the caller to
    /// `alloc_slow`, which decides everything again (an uninitialised heap,
    /// another binding, a miss, hardening).
    #[inline(always)]
    fn alloc_fast(&self, size: usize) -> Option<*mut u8> {
        let (heap, a) = cache::fast();
        // As in `free_fast`: an empty fast binding holds 0 and an
        // uninitialised heap `NO_HEAP_ID`, so a match means this thread
        // owns the cache of arena `a` of this (live) heap — no load of
        // `meta`, no owner test.
        if heap != self.id.load(Ordering::Relaxed) {
            return None;
        }
        // SAFETY: the fast binding matched this heap's id, so the pointer
        // is an arena of this (live) heap.
        let arena = unsafe { &*a };
        let need = block::request_to_block_size(size).unwrap_or(CACHE_MAX_BLOCK);
        // SAFETY: the fast binding says the cache is ours on an unchecked
        // heap (`cache::fast`), and `need` is a block size the cache holds
        // (`size <= CACHE_MAX_REQUEST`).
        unsafe { arena.cache_pop_fast(need) }
    }

    /// Every allocation the fast path did not serve.
    #[inline(never)]
    fn alloc_slow(&self, size: usize, align: usize) -> *mut u8 {
        self.alloc_with(size, align, true)
    }

    /// The region had no room: take back what decay would (empty chunks,
    /// orphaned caches, queued frees, cached large runs) and try once more.
    #[cold]
    #[inline(never)]
    fn alloc_after_reclaim(&self, meta: &HeapMeta, size: usize, align: usize) -> *mut u8 {
        if meta.reclaim(crate::arena::purge::Step::Space).chunks == 0 {
            return ptr::null_mut();
        }
        self.alloc_with(size, align, false)
    }

    /// `alloc_impl`; `reclaim` says whether exhaustion may reclaim and
    /// retry (once).
    #[inline(always)]
    fn alloc_with(&self, size: usize, align: usize, reclaim: bool) -> *mut u8 {
        let Some(meta) = self.meta() else {
            return ptr::null_mut();
        };
        if meta.stress_on() {
            // Its own reclaim and retry: one injected failure, not two.
            return self.stress_alloc(meta, size, align, false);
        }
        if arena::arena_serves(size, align) {
            let (arena, me) = match cache::binding(meta.id) {
                // SAFETY: the cache matched this heap's id, so the pointer is
                // an arena of this (live) heap.
                Some((a, me)) => (unsafe { &*a }, me),
                None => match self.bind_slow(meta) {
                    Bound::Arena(a) => (a, crate::thread::registry::current_token()),
                    Bound::Internal => return meta.internal_alloc(size, align),
                    Bound::None => return ptr::null_mut(),
                },
            };
            if align <= GRANULE && size <= CACHE_BIG_MAX_REQUEST && arena.cache_is_mine_with(me) {
                let need = block::request_to_block_size(size).unwrap_or(CACHE_BIG_MAX_BLOCK);
                // SAFETY: the cache is ours (just checked) and `need` is a
                // block size the cache holds (`size <= CACHE_BIG_MAX_REQUEST`).
                let p = unsafe {
                    match arena.cache_pop(need) {
                        Some(p) => return p,
                        None => {
                            // A slow path: unsent remote frees go out too.
                            arena.flush_batches(&meta.region, |id| meta.arena(id));
                            arena.cache_refill(&meta.region, need)
                        }
                    }
                };
                return self.slow_path_done(meta, p, size, align, reclaim);
            }
            let mut st = arena.lock_and_drain_some(&meta.region);
            if arena.cache_is_mine_with(me) {
                // SAFETY: the cache is ours (just checked); the lock is held.
                unsafe { arena.cache_tick(&mut st, &meta.region) };
            }
            // SAFETY: `arena_serves` holds, the lock is held, and the region
            // and id are this arena's.
            let p = unsafe { st.alloc(&meta.region, arena.home().id, size, align) };
            drop(st);
            self.slow_path_done(meta, p, size, align, reclaim)
        } else {
            let p = large::alloc(&meta.region, &meta.large, size, align, false);
            self.slow_path_done(meta, p, size, align, reclaim)
        }
    }

    /// The end of every allocation slow path, with no lock held: a null
    /// `p` reclaims and retries (if `reclaim`), and decay gets its kick.
    #[inline(always)]
    fn slow_path_done(
        &self,
        meta: &HeapMeta,
        p: *mut u8,
        size: usize,
        align: usize,
        reclaim: bool,
    ) -> *mut u8 {
        meta.kick_decay();
        if p.is_null() && reclaim {
            return self.alloc_after_reclaim(meta, size, align);
        }
        p
    }

    /// Allocates `size` bytes, 16-byte aligned, like C `malloc`. Null when
    /// the region is exhausted. `malloc(0)` returns a unique pointer.
    #[inline]
    pub fn malloc(&self, size: usize) -> *mut u8 {
        self.alloc_impl(size, GRANULE)
    }

    /// Allocates `count * size` zeroed bytes; null on overflow or exhaustion.
    pub fn calloc(&self, count: usize, size: usize) -> *mut u8 {
        let Some(total) = count.checked_mul(size) else {
            return ptr::null_mut();
        };
        self.alloc_zeroed_impl(total, GRANULE)
    }

    fn alloc_zeroed_impl(&self, size: usize, align: usize) -> *mut u8 {
        if let Some(meta) = self.meta().filter(|m| m.stress_on()) {
            return self.stress_alloc(meta, size, align, true);
        }
        if !arena::arena_serves(size, align) {
            // Fresh runs are already zero; `large` clears a reused one.
            let Some(meta) = self.meta() else {
                return ptr::null_mut();
            };
            let mut p = large::alloc(&meta.region, &meta.large, size, align, true);
            if p.is_null() && meta.reclaim(crate::arena::purge::Step::Space).chunks != 0 {
                p = large::alloc(&meta.region, &meta.large, size, align, true);
            }
            meta.kick_decay();
            return p;
        }
        let p = self.alloc_impl(size, align);
        if !p.is_null() {
            // SAFETY: `p` is a fresh allocation of at least `size` bytes.
            unsafe { ptr::write_bytes(p, 0, size) };
        }
        p
    }

    /// Allocates `size` bytes aligned to `align`, which must be a power of
    /// two (any, up to what the region can hold; below 16 means 16). Null
    /// for a bad alignment or exhaustion.
    pub fn aligned_alloc(&self, align: usize, size: usize) -> *mut u8 {
        if !align.is_power_of_two() {
            return ptr::null_mut();
        }
        self.alloc_impl(size, align.max(GRANULE))
    }

    // ----- free -----------------------------------------------------------

    /// Frees the block whose payload starts at `ptr`; null is a no-op.
    /// Reports a double free, an interior or foreign pointer as an error
    /// instead of corrupting anything.
    ///
    /// # Safety
    ///
    /// If `ptr` is a live allocation of this heap, nobody uses it after this
    /// call. (Invalid pointers are detected, not undefined behaviour. Two
    /// threads freeing one live block at once are decided at once: exactly
    /// one gets `Ok(())`, the other `Err(DoubleFree)`. Not covered: a free
    /// racing a `realloc` of the same pointer, and one window on the owner
    /// cache's fast push described in `docs/DESIGN.md` — an invalid pointer
    /// into a chunk that another arena reuses during that free.)
    #[inline]
    pub unsafe fn free(&self, ptr: *mut u8) -> Result<(), FreeError> {
        // SAFETY: forwarded contract.
        if unsafe { self.free_fast(ptr) } {
            return Ok(());
        }
        // SAFETY: forwarded contract.
        unsafe { self.free_slow(ptr) }
    }

    /// The fast path of `free`: a live small block of the caller's own
    /// arena goes on its owner cache, on a heap that does not check. One
    /// TLS access (the fast binding), the heap id compare (`Heap::id`, no
    /// load of `meta`), the chunk test (the arena's copy of the range and
    /// map: nothing outside a committed chunk of ours is read), the start
    /// bit and the header, a list push whose header change is one
    /// compare-exchange (a racing foreign free of the block loses): no
    /// call, no lock, no other locked instruction. False (nothing done)
    /// sends the caller to the slow path, which classifies the pointer
    /// exactly.
    ///
    /// # Safety
    ///
    /// As for [`Heap::free`].
    #[inline(always)]
    unsafe fn free_fast(&self, ptr: *mut u8) -> bool {
        let (heap, a) = cache::fast();
        // An empty fast binding holds 0 and an uninitialised heap
        // `NO_HEAP_ID`, so a match means this thread owns the cache of
        // arena `a` of this (live) heap, whose id no other heap of the
        // process ever has.
        if heap != self.id.load(Ordering::Relaxed) {
            return false;
        }
        // SAFETY: the fast binding matched this heap's id: an arena of it,
        // which this thread stored with the id and which lives as long as
        // the heap.
        let arena = unsafe { &*a };
        let addr = ptr as usize;
        // Null, unaligned and foreign pointers fail the range (which is
        // the alignment test too) or map test before anything is read at
        // them.
        arena.chunk_test.holds(addr)
            // SAFETY: the cache is ours on an unchecked heap (the fast
            // binding); `ptr` is aligned and in a committed chunk of `arena`.
            && matches!(unsafe { arena.cache_push_fast(ptr) }, Push::Done)
    }

    /// Every free the fast path did not take (a hardened heap, a full
    /// class, another arena's block, a large one, an invalid pointer).
    ///
    /// # Safety
    ///
    /// As for [`Heap::free`].
    #[inline(never)]
    unsafe fn free_slow(&self, ptr: *mut u8) -> Result<(), FreeError> {
        if ptr.is_null() {
            return Ok(());
        }
        let meta = self.meta_if_ready().ok_or(FreeError::OutsideHeap)?;
        // SAFETY: forwarded; `ptr` is not null.
        unsafe { self.free_slow_with(meta, ptr, true) }
    }

    /// `free_slow` once `meta` is known; `cacheable: false` says the block
    /// is too large for the owner cache (a sized free, `sized.rs`), so the
    /// push is not tried.
    ///
    /// # Safety
    ///
    /// As for [`Heap::free`]; `ptr` is not null.
    #[inline(always)]
    unsafe fn free_slow_with(
        &self,
        meta: &HeapMeta,
        ptr: *mut u8,
        cacheable: bool,
    ) -> Result<(), FreeError> {
        if meta.stress_on() {
            // SAFETY: forwarded; `ptr` is not null.
            return unsafe { self.stress_free(meta, ptr) };
        }
        // A small block of the caller's own arena goes on its owner cache,
        // with no lock and no arena-table lookup (checked, on a hardened
        // heap; flushing half its class when that is full).
        let bind = cache::binding(meta.id);
        if let Some((a, me)) = bind.filter(|_| cacheable) {
            // SAFETY: the binding matched this heap's id: an arena of it.
            let arena = unsafe { &*a };
            let addr = ptr as usize;
            if addr % GRANULE == 0 && arena.chunk_test.holds(addr) && arena.cache_is_mine_with(me) {
                // SAFETY: the cache is ours; `ptr` is aligned and in one of
                // `arena`'s chunks.
                match unsafe { arena.cache_push(ptr) } {
                    Push::Done => return Ok(()),
                    Push::Full(b, size) => {
                        arena.flush_batches(&meta.region, |id| meta.arena(id));
                        // SAFETY: a live block of ours the caller gives up.
                        return unsafe { arena.cache_flush(&meta.region, b, size) };
                    }
                    Push::Locked => {}
                }
            }
        }
        // SAFETY: forwarded. (No decay kick here: a thread must never be
        // started from inside `free`, `heap/purge.rs`.)
        unsafe { self.free_located(meta, ptr, bind) }
    }

    /// `free` past the owner cache: locate the owner, then a locked,
    /// remote or large free. `bind` is the caller's `cache::binding` for
    /// this heap, read once for the whole free.
    ///
    /// # Safety
    ///
    /// As for [`Heap::free`]; `ptr` is not null.
    #[inline(always)]
    unsafe fn free_located(
        &self,
        meta: &HeapMeta,
        ptr: *mut u8,
        bind: Option<(*const Arena, u64)>,
    ) -> Result<(), FreeError> {
        match locate(meta, ptr as usize)? {
            Owner::Arena(arena) => {
                if ptr as usize % GRANULE != 0 {
                    return Err(FreeError::NotAllocated);
                }
                // Local: the caller's own arena, or the arena its owner slot
                // shares (freed through the slot, whose cache it may tick)
                // — or the only arena, so that max_arenas(1) stays one lock
                // even for a thread that frees before it ever allocated
                // (and so has no binding).
                if let Some((a, _)) = bind {
                    // SAFETY: the binding matched this heap's id.
                    let mine = unsafe { &*a };
                    if arena.serves(mine) {
                        // SAFETY: `ptr` is aligned and in one of the chunks
                        // of `mine`'s arena.
                        return unsafe { mine.free_locked(&meta.region, ptr, false) };
                    }
                }
                if meta.config.get_max_arenas() == 1 {
                    // SAFETY: `ptr` is aligned and in one of `arena`'s chunks.
                    return unsafe { arena.free_locked(&meta.region, ptr, false) };
                }
                // A foreign block: batched by a thread that owns an arena
                // (and its cache), pushed one by one by any other.
                if let Some((mine, me)) = bind {
                    // SAFETY: the binding matched this heap's id.
                    let mine = unsafe { &*mine };
                    if mine.cache_is_mine_with(me) {
                        // SAFETY: we own `mine`'s cache; `ptr` is aligned
                        // and in a chunk the map gives to `arena`.
                        return unsafe {
                            mine.batch_remote_mt(&meta.region, arena, ptr, |id| meta.arena(id))
                        };
                    }
                }
                // SAFETY: as above.
                unsafe { arena.free_remote_mt(&meta.region, ptr) }
            }
            // SAFETY: `ptr` is in a large slot; the caller gives it up.
            Owner::Large => unsafe { large::free(&meta.region, &meta.large, ptr) },
            // A live pool block goes back on its class's free list (pool.rs).
            Owner::Pool(..) => meta.pool_free(ptr as usize),
        }
    }

    /// Frees the live block that contains `ptr` anywhere in its payload
    /// (an interior pointer), like a conservative collector would.
    ///
    /// # Safety
    ///
    /// As for [`Heap::free`], for the block containing `ptr`.
    pub unsafe fn free_containing(&self, ptr: *mut u8) -> Result<(), FreeError> {
        if ptr.is_null() {
            return Ok(());
        }
        let meta = self.meta_if_ready().ok_or(FreeError::OutsideHeap)?;
        match locate(meta, ptr as usize)? {
            Owner::Pool(payload, _) => meta.pool_free(payload),
            Owner::Arena(arena) => {
                let found = with_chunk_pinned(meta, arena, ptr as usize, |st| {
                    // SAFETY: `ptr` is in a chunk of `arena`, pinned, lock
                    // held (`with_chunk_pinned`).
                    match unsafe { st.find_containing(ptr as usize) } {
                        Some(b) => Ok(block::block_to_payload(b)),
                        None => {
                            // Classify with the block-start rules, at the
                            // granule.
                            let aligned = (ptr as usize & !(GRANULE - 1)) as *mut u8;
                            // SAFETY: as above; `aligned` is in the same chunk.
                            let err = unsafe { st.find_live(aligned) }
                                .err()
                                .unwrap_or(FreeError::NotAllocated);
                            Err(err)
                        }
                    }
                });
                // A chunk that left the arena meanwhile was free at some
                // instant of this call: what `locate` says of a free slot.
                let start = found.unwrap_or(Err(FreeError::DoubleFree))?;
                // SAFETY: `start` is the payload of the live block the caller
                // gives up (a racing free of it is excluded by the contract).
                unsafe { self.free(start) }
            }
            Owner::Large => match large::containing(&meta.region, ptr as usize) {
                // SAFETY: as above.
                Some((payload, _)) => unsafe { self.free(payload as *mut u8) },
                // SAFETY: classification only; `ptr` is not a live payload.
                None => unsafe { large::free(&meta.region, &meta.large, ptr) },
            },
        }
    }

    // ----- realloc ----------------------------------------------------------

    /// Resizes the allocation at `ptr` to `size` bytes, like C `realloc`:
    /// null `ptr` allocates; `size == 0` frees and returns null; otherwise
    /// the block shrinks or grows in place when it can, else moves (contents
    /// preserved up to the smaller size). Null on exhaustion, with `ptr`
    /// still valid. Aborts with a message if `ptr` is not a live block.
    ///
    /// # Safety
    ///
    /// `ptr` is null or a live allocation of this heap, not used again
    /// unless null is returned for a non-zero `size`.
    pub unsafe fn realloc(&self, ptr: *mut u8, size: usize) -> *mut u8 {
        if size == 0 && !ptr.is_null() {
            // SAFETY: the caller gives `ptr` up.
            if let Err(e) = unsafe { self.free(ptr) } {
                abort_on_free_error(e, ptr);
            }
            return ptr::null_mut();
        }
        // SAFETY: forwarded contract.
        unsafe { self.realloc_impl(ptr, size, GRANULE) }
    }

    /// `realloc` keeping alignment `align` (a power of two >= 16).
    unsafe fn realloc_impl(&self, ptr: *mut u8, size: usize, align: usize) -> *mut u8 {
        if ptr.is_null() {
            return self.alloc_impl(size, align);
        }
        let Some(meta) = self.meta_if_ready() else {
            abort_on_free_error(FreeError::OutsideHeap, ptr)
        };
        if meta.stress_on() {
            // SAFETY: forwarded; `ptr` is not null.
            return unsafe { self.stress_realloc(meta, ptr, size, align) };
        }
        // Without the lock, for an arena block start (`start_usable`): a
        // size the block still holds, and not less than half of it, keeps
        // the block; growing to a size the owner cache serves is a move
        // through it (lock-free when the cache hits, as the free is).
        // Growing in place needs the free block after this one, which only
        // the lock can take: worth it past the cache, where the copy is
        // long, or with no cache (the move would lock too); so is
        // shrinking in place, which gives the tail back. (Every `realloc`
        // took the lock before: 300 of the `service` workload's 400 lock
        // acquisitions per 1,000 allocations at 2 threads.)
        if let Some(usable) = self.start_usable(ptr) {
            if size <= usable && size >= usable / 2 {
                return ptr;
            }
            if size > usable && size <= CACHE_BIG_MAX_REQUEST && meta.config.get_owner_cache() != 0
            {
                // SAFETY: forwarded; `ptr`'s block holds `usable` bytes
                // (an invalid or racing free of it aborts in the move).
                return unsafe { self.realloc_by_moving(ptr, usable, size, align) };
            }
        }
        let owner = match locate(meta, ptr as usize) {
            Ok(o) => o,
            Err(e) => abort_on_free_error(e, ptr),
        };
        let old_usable = match owner {
            Owner::Pool(_, usable) => usable,
            Owner::Arena(arena) => {
                if ptr as usize % GRANULE != 0 {
                    abort_on_free_error(FreeError::NotAllocated, ptr);
                }
                let mut st = arena.lock();
                // SAFETY: `ptr` is aligned and in `arena`'s chunk; lock held.
                let b = match unsafe { st.find_live(ptr) } {
                    Ok(b) => b,
                    Err(e) => {
                        drop(st);
                        abort_on_free_error(e, ptr)
                    }
                };
                // SAFETY: `b` is live and ours; lock held.
                if unsafe { st.resize_in_place(&meta.region, b, size) } {
                    return ptr;
                }
                // SAFETY: `b` is a valid live header.
                block::block_to_usable(unsafe { (*b).size() })
            }
            Owner::Large => {
                let live = large::containing(&meta.region, ptr as usize)
                    .filter(|&(p, _)| p == ptr as usize);
                let Some((_, usable)) = live else {
                    // SAFETY: classification only: `ptr` is no live payload.
                    let e = unsafe { large::free(&meta.region, &meta.large, ptr) }.err();
                    abort_on_free_error(e.unwrap_or(FreeError::NotAllocated), ptr)
                };
                if !arena::arena_serves(size, align) {
                    // SAFETY: `ptr` is a live large allocation the caller owns.
                    if unsafe { large::resize_in_place(&meta.region, &meta.large, ptr, size) } {
                        return ptr;
                    }
                }
                usable
            }
        };
        // SAFETY: forwarded; `old_usable` is what `ptr`'s block holds.
        unsafe { self.realloc_by_moving(ptr, old_usable, size, align) }
    }

    /// The moving half of every `realloc`: a new block of `size` bytes
    /// aligned to `align`, the first `min(old_usable, size)` bytes copied,
    /// the old block freed (an invalid free aborts). Null, with the old block
    /// untouched, when the allocation fails.
    ///
    /// # Safety
    ///
    /// `ptr` is a live block of this heap holding `old_usable` bytes, which
    /// the caller gives up if the result is not null.
    pub(super) unsafe fn realloc_by_moving(
        &self,
        ptr: *mut u8,
        old_usable: usize,
        size: usize,
        align: usize,
    ) -> *mut u8 {
        let new = self.alloc_impl(size, align);
        if new.is_null() {
            return new;
        }
        // SAFETY: both blocks are live and distinct; `old_usable` and `size`
        // bound what each holds.
        unsafe {
            ptr::copy_nonoverlapping(ptr, new, old_usable.min(size));
            if let Err(e) = self.free(ptr) {
                abort_on_free_error(e, ptr);
            }
        }
        new
    }

    // ----- pointer queries ----------------------------------------------------
    //
    // They answer for any pointer at any time, while other threads allocate
    // and free: see `with_chunk_pinned` for how an arena chunk's memory is
    // kept readable, and `large::containing` for large runs.

    /// Whether `ptr` points into the payload of a live block of this heap.
    pub fn is_allocated(&self, ptr: *const u8) -> bool {
        self.start_usable(ptr).is_some() || self.containing(ptr).is_some()
    }

    /// The usable size of the live block whose payload contains `ptr`.
    /// Without a lock when `ptr` is where a block of an arena starts (what
    /// `malloc_usable_size` is asked: inline, or out of line on a hardened
    /// heap); an interior pointer, a large block or stress mode takes the
    /// locked path.
    pub fn usable_size(&self, ptr: *const u8) -> Option<usize> {
        self.start_usable(ptr)
            .or_else(|| self.containing(ptr).map(|(_, usable)| usable))
    }

    /// The usable size of the live block whose payload starts at `ptr`:
    /// C's `malloc_usable_size`, which answers only for the pointer an
    /// allocating call returned. `None` for any other pointer, an interior
    /// one included (which [`Heap::usable_size`] accepts). Without a lock
    /// for a block of an arena.
    ///
    /// ```
    /// let heap = arenalloc::Heap::new();
    /// let p = heap.malloc(100);
    /// assert!(heap.usable_size_at_start(p).unwrap() >= 100);
    /// assert_eq!(heap.usable_size_at_start(p.wrapping_add(16)), None);
    /// # unsafe { heap.free(p) }.unwrap();
    /// ```
    #[inline]
    pub fn usable_size_at_start(&self, ptr: *const u8) -> Option<usize> {
        match self.start_usable(ptr) {
            Some(usable) => Some(usable),
            None => self.start_usable_locked(ptr),
        }
    }

    /// C's `malloc_usable_size`: [`Heap::usable_size_at_start`], 0 where
    /// that says `None` (NULL, an interior, freed or foreign pointer).
    /// What the `LD_PRELOAD` library exports; a block start of an arena
    /// costs about 30 instructions, no call and no stack frame on a heap
    /// that is neither hardened nor in stress mode.
    ///
    /// ```
    /// let heap = arenalloc::Heap::new();
    /// let p = heap.malloc(100);
    /// assert!(heap.malloc_usable_size(p) >= 100);
    /// assert_eq!(heap.malloc_usable_size(p.wrapping_add(16)), 0);
    /// assert_eq!(heap.malloc_usable_size(core::ptr::null()), 0);
    /// # unsafe { heap.free(p) }.unwrap();
    /// ```
    #[inline]
    pub fn malloc_usable_size(&self, ptr: *const u8) -> usize {
        match self.start_usable(ptr) {
            Some(usable) => usable,
            // Returning what the callee returns: a tail call.
            None => Heap::start_usable_or_zero(ptr, self),
        }
    }

    /// `malloc_usable_size` past the inline path: as
    /// `start_usable_locked`, 0 for `None`. `extern "C"` so that it cannot
    /// unwind (a panic would abort here; nothing here panics): an
    /// `extern "C"` caller such as the preload library's then needs no
    /// landing pad around the call, and makes it a tail call. `ptr` first:
    /// where C's `malloc_usable_size` has it, so the inline path keeps it
    /// in its register.
    #[cold]
    #[inline(never)]
    extern "C" fn start_usable_or_zero(ptr: *const u8, heap: &Heap) -> usize {
        heap.start_usable_locked(ptr).unwrap_or(0)
    }

    /// `usable_size_at_start` past the inline path (a hardened heap, whose
    /// block starts `containing` still reads without a lock; a large or
    /// pool block, stress mode, a pointer that is no block start): out of
    /// line, so that the inline path keeps no stack frame.
    #[cold]
    #[inline(never)]
    fn start_usable_locked(&self, ptr: *const u8) -> Option<usize> {
        self.containing(ptr)
            .filter(|&(start, _)| start == ptr as usize)
            .map(|(_, usable)| usable)
    }

    /// The usable size of the live arena block that starts at `ptr`, read
    /// without a lock on a heap that is neither hardened nor in stress
    /// mode; `None` whenever that is not sure (any other pointer, a block
    /// that is not live, another heap), for the out-of-line paths to
    /// decide. Like a remote claim: the map gives the header's chunk to an
    /// arena (`StartTest::arena_header`: the heap's own copy of the range
    /// and map, so no load of `meta`), the start bit says a block begins
    /// at `ptr - HEADER`, its header says live, and the map, read again,
    /// still holds the same word. A live block keeps its chunk, so for a
    /// block start the answer is exact; for anything else every read is
    /// of a chunk once handed out, which stays readable (`region.rs`), and
    /// a chunk that changed hands in between fails the second map test.
    /// About 30 instructions, no call, no stack frame.
    #[inline(always)]
    fn start_usable(&self, ptr: *const u8) -> Option<usize> {
        let at = self.start_test.arena_header(ptr as usize)?;
        // SAFETY: `at.header` is granule-aligned, in a slot the map gave to
        // an arena (handed out, so readable from then on: `region.rs`), and
        // `at.granule` is its index from the region's base; a set start bit
        // means it is a header, whose word is an atomic in the same chunk.
        // (Which arena's chunk does not matter: it is only read.)
        let size = unsafe {
            if !crate::chunk::is_block_start(at.header, at.granule) {
                return None;
            }
            (*(at.header as *const block::Header)).read_live_unchecked(crate::chunk::CHUNK_DATA)?
        };
        (at.entry.load(Ordering::Acquire) == at.word).then(|| block::block_to_usable(size))
    }

    /// `start_usable` for a hardened heap, whose header read verifies the
    /// check value under the heap's key: the same reads, through `meta`.
    /// `None` on a heap in stress mode (whose usable size is the request,
    /// kept under the lock).
    fn start_usable_checked(meta: &HeapMeta, ptr: *const u8) -> Option<usize> {
        if meta.stress_on() || !crate::chunk::payload_in_block_area(ptr as usize) {
            return None;
        }
        let (entry, word) = meta.region.arena_entry_at(ptr as usize)?;
        let c = crate::chunk::chunk_of(ptr as usize);
        // SAFETY: the map gave the chunk to an arena (a slot handed out, so
        // readable from then on: `region.rs`); the bitmap and the header at
        // a set start bit are atomics, read in bounds of the chunk (the
        // header lies in its block area, `payload_in_block_area`).
        let (size, _) = unsafe {
            if !(*c).starts_payload(ptr as usize) {
                return None;
            }
            (*block::payload_to_block(ptr.cast_mut()))
                .read_live_at_most(meta.key, crate::chunk::CHUNK_DATA)?
        };
        (size >= block::MIN_BLOCK && entry.load(Ordering::Acquire) == word)
            .then(|| block::block_to_usable(size))
    }

    /// The live allocation whose payload contains `ptr` (its start, an
    /// interior pointer or its last byte): `(start, usable size)`, where
    /// `start` is the pointer the allocating call returned. `None` for any
    /// other pointer. C's `malloc_usable_size`, which answers only for
    /// `start` itself, is `Some((s, n)) if s == ptr`.
    ///
    /// ```
    /// let heap = arenalloc::Heap::new();
    /// let p = heap.malloc(100);
    /// let (start, usable) = heap.allocation_containing(p.wrapping_add(60)).unwrap();
    /// assert!(start == p && usable >= 100);
    /// # unsafe { heap.free(p) }.unwrap();
    /// ```
    #[inline]
    pub fn allocation_containing(&self, ptr: *const u8) -> Option<(*mut u8, usize)> {
        if let Some(usable) = self.start_usable(ptr) {
            return Some((ptr.cast_mut(), usable));
        }
        self.containing(ptr)
            .map(|(payload, usable)| (payload as *mut u8, usable))
    }

    /// `(payload, usable)` of the live block containing `ptr`.
    #[inline(never)]
    fn containing(&self, ptr: *const u8) -> Option<(usize, usize)> {
        let meta = self.meta_if_ready()?;
        if meta.key.hardened() {
            // A block start of a hardened heap, still without a lock.
            if let Some(usable) = Heap::start_usable_checked(meta, ptr) {
                return Some((ptr as usize, usable));
            }
        }
        match locate(meta, ptr as usize).ok()? {
            Owner::Pool(payload, usable) => Some((payload, usable)),
            // The chunk left the arena after `locate` read the map: then
            // there was an instant, during this call, at which it was free
            // and no block contained `ptr`, and `None` is that instant's
            // answer.
            Owner::Arena(arena) => with_chunk_pinned(meta, arena, ptr as usize, |st| {
                // SAFETY: `ptr` is in a chunk of `arena` whose memory is
                // pinned, and the lock is held (`with_chunk_pinned`); a found
                // block is a valid live header.
                unsafe {
                    let b = st.find_containing(ptr as usize)?;
                    let payload = block::block_to_payload(b) as usize;
                    if st.stress_on() {
                        let request = st.stress_request(b);
                        return stress::stress_usable(payload, request, ptr as usize)
                            .map(|u| (payload, u));
                    }
                    Some((payload, block::block_to_usable((*b).size())))
                }
            })
            .flatten(),
            Owner::Large => {
                let (payload, usable) = large::containing(&meta.region, ptr as usize)?;
                if !meta.stress_on() {
                    return Some((payload, usable));
                }
                let request = stress::large_body(meta, payload as *mut u8)
                    .and_then(|b| b.record())
                    .map_or(usable, |r| r.request as usize);
                stress::stress_usable(payload, request, ptr as usize).map(|u| (payload, u))
            }
        }
    }

    // ----- construction and initialisation -------------------------------------

    /// A heap with the default [`Config`]. Reserves nothing until first use.
    pub const fn new() -> Heap {
        Heap::with_config(Config::new())
    }

    /// A heap with the given configuration.
    pub const fn with_config(config: Config) -> Heap {
        Heap {
            config,
            meta: AtomicPtr::new(ptr::null_mut()),
            id: AtomicU64::new(NO_HEAP_ID),
            init: AtomicU8::new(UNINIT),
            start_test: StartTest::empty(),
        }
    }

    /// The configuration this heap was built with.
    pub fn config(&self) -> Config {
        self.config
    }

    /// The configuration in force, once the heap initialised (its first
    /// allocation): `at_init` applied, every value clamped, the region as
    /// granted and the table as built, `max_indexes` resolved to a number.
    /// `None` before.
    ///
    /// ```
    /// let heap = arenalloc::Heap::new();
    /// assert!(heap.config_in_force().is_none());
    /// let p = heap.malloc(8);
    /// assert!(heap.config_in_force().unwrap().get_max_indexes() >= 1);
    /// # unsafe { heap.free(p) }.unwrap();
    /// ```
    pub fn config_in_force(&self) -> Option<Config> {
        self.meta_if_ready().map(|m| m.config)
    }

    /// The metadata, initialising the heap on first use; `None` if the OS
    /// refused the reservation.
    #[inline]
    pub(crate) fn meta(&self) -> Option<&HeapMeta> {
        let m = self.meta.load(Ordering::Acquire);
        if m.is_null() {
            return self.init_slow();
        }
        // SAFETY: a non-null `meta` points at initialised metadata that
        // lives until `Drop`, which cannot run while `&self` is borrowed.
        Some(unsafe { &*m })
    }

    /// The metadata if the heap was ever used.
    #[inline]
    pub(crate) fn meta_if_ready(&self) -> Option<&HeapMeta> {
        let m = self.meta.load(Ordering::Acquire);
        // SAFETY: as in `meta`.
        (!m.is_null()).then(|| unsafe { &*m })
    }

    #[cold]
    fn init_slow(&self) -> Option<&HeapMeta> {
        loop {
            match self
                .init
                .compare_exchange(UNINIT, BUSY, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => {
                    let m = create_meta(self.config.resolved());
                    if m.is_null() {
                        self.init.store(UNINIT, Ordering::Release);
                        return None;
                    }
                    // SAFETY: just built, lives until Drop.
                    let meta = unsafe { &*m };
                    if !meta.key.hardened() && !meta.stress_on() {
                        self.start_test.publish(&meta.region);
                    }
                    self.meta.store(m, Ordering::Release);
                    self.id.store(meta.id, Ordering::Release);
                    self.init.store(READY, Ordering::Release);
                    // READY first: the registration may allocate from us.
                    fork::register(meta);
                    return Some(meta);
                }
                Err(READY) => return self.meta_if_ready(),
                // Another thread is reserving the region: a few syscalls.
                Err(_) => crate::sync::yield_now(),
            }
        }
    }
}

/// Runs `f` on `arena`'s locked state while the chunk holding `addr` is
/// pinned: still `arena`'s, committed, and not released until `f` returns.
/// `None`, without calling `f`, if the chunk left the arena after `locate`
/// read the map. For the queries and error paths that may name any
/// address, not for the alloc/free fast path.
///
/// Why: `locate` reads the chunk map without a lock, and a chunk that
/// empties is unlinked under the arena lock but handed back to the region
/// — marked `Free`, then purged — after that lock is released
/// (`ArenaGuard`, `arena/mod.rs`), and may be handed out again at once. Holding the arena
/// lock alone therefore does not keep the chunk's contents ours: a bitmap
/// read after the lock is taken could see zeros or another owner's words.
/// So `f` runs:
/// 1. under the arena lock, so the chunk's blocks and bitmap are those of
///    one consistent state (only this lock's holder changes them; a remote
///    claim changes one flag with a compare-exchange); and
/// 2. inside `Region::with_map_stable`, after the map entry is re-read as
///    `Arena(arena.id)`: the region marks a slot `Free` under that lock
///    before it purges it, so a slot still marked as `arena`'s there stays
///    `arena`'s until the lock is let go. Its contents are
///    valid too: a chunk can become `arena`'s again only through a grow
///    under the arena lock, which we hold; a chunk unlinked but not yet
///    released still reads as one free block, so it answers "not live".
///
/// The lock order is kept: the region lock is taken while the arena lock
/// is held (arena → region), never the reverse. `f` runs under both locks:
/// it must not allocate, and it does not (queries only read).
fn with_chunk_pinned<R>(
    meta: &HeapMeta,
    arena: &Arena,
    addr: usize,
    f: impl FnOnce(&ArenaState) -> R,
) -> Option<R> {
    let st = arena.lock();
    let region = &meta.region;
    let idx = region.chunk_index(addr);
    region.with_map_stable(|| {
        (region.chunk_use(idx) == ChunkUse::Arena(arena.home().id)).then(|| f(&st))
    })
}

impl Default for Heap {
    fn default() -> Heap {
        Heap::new()
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        let m = *self.meta.get_mut();
        if m.is_null() {
            return;
        }
        // SAFETY: `&mut self` means no other reference to the heap exists;
        // ready slots hold initialised arenas, each dropped once (a slot
        // reserved but never readied cannot exist once creators returned);
        // the region is unmapped last and `m` is not used after.
        unsafe {
            let meta = &*m;
            // A fork in progress finishes with the heap still whole.
            fork::unregister(meta);
            // The decay thread reads the heap: it goes first.
            meta.stop_decay();
            for id in 0..meta.arena_count() {
                let slot = &mut *meta.arenas.add(id);
                if *slot.ready.get_mut() {
                    slot.arena.assume_init_drop();
                }
            }
            meta.region.unreserve();
        }
    }
}
