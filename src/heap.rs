//! Heap: the public API, `GlobalAlloc`, and the metadata that ties a region
//! to its arenas.
//!
//! A `Heap` value is three words and const-constructible. On first use it
//! reserves its region and builds [`HeapMeta`] *inside* the region's first
//! chunk(s):
//!
//! ```text
//!  +----------+---------------------------+-----------+----------------+
//!  | HeapMeta | Arena table (max_arenas)  | chunk map | free-slot bits |   metadata chunk(s)
//!  +----------+---------------------------+-----------+----------------+
//! ```
//!
//! so that nothing about a heap is ever allocated through another allocator
//! (the heap can be the global allocator, or `malloc` itself, without
//! recursion) and nothing of it moves.
//!
//! Invariants:
//! * `meta` is null until initialisation finished, then never changes until
//!   `Drop`; `init` goes `UNINIT -> BUSY -> READY` (back to `UNINIT` if the
//!   OS refuses the reservation, so a later call may retry).
//! * Arenas `0..arena_count` of the table are initialised; the count only
//!   grows, under `arena_lock`, with `Release` so that a reader who sees the
//!   count (`Acquire`) sees the arena.
//! * A pointer is ours iff it lies in the region and the chunk map says so;
//!   the owning arena is named by the map entry, so `free` never searches.
//! * Allocation fast path: one `Acquire` load of `meta`, the arena lock
//!   (uncontended with per-thread arenas), an O(1) bin search, a split, the
//!   unlock. No syscall, no allocation, no formatting, no panic.
//! * No lock of the heap is held while anything could call the global
//!   allocator: `stats` and `dump` allocate their buffers before locking and
//!   write after unlocking.

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::ptr::{self, addr_of_mut};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering};

use crate::arena::{self, Arena};
use crate::block::{self, GRANULE};
use crate::chunk::CHUNK;
use crate::config::Config;
use crate::error::{abort_on_free_error, FreeError, HeapError, HeapErrorKind};
use crate::large::LARGE_THRESHOLD;
use crate::large::{self, LargeStats};
use crate::region::{ChunkUse, MetaLayout, Region};
use crate::remote::RemoteQueue;
use crate::sync::RawLock;
use crate::thread;

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
    init: AtomicU8,
}

/// Everything a heap keeps, stored at the start of its own region.
pub(crate) struct HeapMeta {
    pub(crate) region: Region,
    pub(crate) large: LargeStats,
    /// The configuration in force (clamped).
    pub(crate) config: Config,
    /// Process-unique id: the key of every thread's binding cache.
    pub(crate) id: u64,
    /// The arena table: `config.max_arenas` slots.
    arenas: *mut ArenaSlot,
    /// Slots handed to creators so far; a prefix of the table. Raised only
    /// under `arena_lock`.
    arenas_reserved: AtomicUsize,
    /// Serialises slot reservation (never held while allocating).
    arena_lock: RawLock,
    /// Start of the internal pool.
    pool_start: usize,
    /// Bump pointer of the internal pool (next free byte).
    pool_next: AtomicUsize,
    /// End of the internal pool.
    pool_end: usize,
}

/// One entry of the arena table: `ready` is set (`Release`) once `arena`
/// is initialised, and never cleared until the heap drops.
struct ArenaSlot {
    ready: AtomicBool,
    arena: MaybeUninit<Arena>,
}

/// Extra internal-pool bytes beyond the arenas' queue buffers, for the few
/// allocations the runtime may make while a thread binds (a TLS destructor
/// list, say).
const POOL_SLACK: usize = 64 << 10;

/// Bytes of internal pool a heap of `config` sets aside.
fn pool_bytes(config: &Config) -> usize {
    let per_arena =
        RemoteQueue::buffer_bytes(config.get_remote_queue_capacity()).min(LARGE_THRESHOLD) + 256;
    config.get_max_arenas() * per_arena + POOL_SLACK
}

impl HeapMeta {
    /// Arena `id`, if it exists.
    #[inline]
    pub(crate) fn arena(&self, id: u32) -> Option<&Arena> {
        let id = id as usize;
        if id >= self.arenas_reserved.load(Ordering::Acquire) {
            return None;
        }
        // SAFETY: `id` is below the reserved count, so inside the table; a
        // ready slot holds an initialised arena that lives until Drop.
        unsafe {
            let slot = &*self.arenas.add(id);
            slot.ready
                .load(Ordering::Acquire)
                .then(|| slot.arena.assume_init_ref())
        }
    }

    /// Number of arena slots handed out so far (some may still be in
    /// creation: `arena(id)` tells).
    pub(crate) fn arena_count(&self) -> usize {
        self.arenas_reserved.load(Ordering::Acquire)
    }

    /// The arenas that exist, by id.
    pub(crate) fn arenas(&self) -> impl Iterator<Item = &Arena> + '_ {
        (0..self.arena_count() as u32).filter_map(|id| self.arena(id))
    }

    /// Creates an arena owned by `owner` (a token or 0) if the table has
    /// room. Reserves the slot under `arena_lock`, then builds the arena —
    /// whose queue allocates — with no lock held.
    fn create_arena(&self, owner: u64) -> Option<&Arena> {
        self.arena_lock.lock();
        let n = self.arenas_reserved.load(Ordering::Relaxed);
        let room = n < self.config.get_max_arenas();
        if room {
            self.arenas_reserved.store(n + 1, Ordering::Release);
        }
        // SAFETY: taken above.
        unsafe { self.arena_lock.unlock() };
        if !room {
            return None;
        }
        let arena = Arena::new(n as u32, self.config.get_remote_queue_capacity(), owner);
        // SAFETY: slot `n` was reserved by us alone and is inside the table;
        // it is published with `ready` only after it is written.
        unsafe {
            let slot = &mut *self.arenas.add(n);
            slot.arena.write(arena);
            slot.ready.store(true, Ordering::Release);
        }
        self.arena(n as u32)
    }

    /// Serves an allocation made while this thread binds to this heap
    /// (module doc, Reentrancy) from the internal pool. Each block is
    /// preceded by a `GRANULE`-byte header holding its usable size, so that
    /// `usable_size` and `realloc` work; freeing one is a no-op (the pool is
    /// never reclaimed: it serves only a queue buffer per arena and the odd
    /// runtime allocation made during binding).
    fn internal_alloc(&self, size: usize, align: usize) -> *mut u8 {
        let mut cur = self.pool_next.load(Ordering::Relaxed);
        loop {
            let Some(start) = cur
                .checked_add(GRANULE + align - 1)
                .map(|v| v & !(align - 1))
            else {
                return ptr::null_mut();
            };
            let Some(end) = start
                .checked_add(size.max(1))
                .map(|e| e.next_multiple_of(GRANULE))
            else {
                return ptr::null_mut();
            };
            if end > self.pool_end {
                return ptr::null_mut();
            }
            match self.pool_next.compare_exchange_weak(
                cur,
                end,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // SAFETY: `start - GRANULE .. end` lies in the committed
                    // pool and was just reserved by this thread alone.
                    unsafe { ((start - GRANULE) as *mut usize).write(end - start) };
                    return start as *mut u8;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// `(payload, usable)` of the pool block whose payload contains `addr`
    /// exactly at its start, if `addr` is one.
    fn pool_block(&self, addr: usize) -> Option<(usize, usize)> {
        let inside =
            addr >= self.pool_start + GRANULE && addr < self.pool_next.load(Ordering::Relaxed);
        if !inside || addr % GRANULE != 0 {
            return None;
        }
        // SAFETY: the header before a pool payload is in the committed pool.
        let usable = unsafe { *((addr - GRANULE) as *const usize) };
        Some((addr, usable))
    }

    /// Picks the arena for a thread that has none cached (module doc,
    /// Threads): the one it owns, else an orphan it adopts, else a new one,
    /// else a shared one. `may_create` is false when the thread cannot mark
    /// itself as binding (its TLS is gone), since creating would recurse.
    fn choose_arena(&self, token: u64, may_create: bool) -> Option<&Arena> {
        if token != 0 {
            if let Some(a) = self.arenas().find(|a| a.is_owned_by(token)) {
                return Some(a);
            }
            if let Some(a) = self.arenas().find(|a| a.try_adopt(token)) {
                // Adoption drains what was freed into the arena meanwhile.
                drop(a.lock_drained(&self.region));
                return Some(a);
            }
        }
        if may_create {
            if let Some(a) = self.create_arena(token) {
                return Some(a);
            }
        }
        // Share. A slot may be reserved but not yet published (another
        // thread is building its queue, with no heap lock held and without
        // needing anything from us): wait for it rather than fail, since it
        // may be the only arena there will ever be.
        let n = self.arena_count();
        let first = thread::spread() % n.max(1);
        loop {
            let shared = (0..n)
                .map(|i| (first + i) % n)
                .find_map(|id| self.arena(id as u32));
            if shared.is_some() || n == 0 {
                return shared;
            }
            std::thread::yield_now();
        }
    }
}

/// What a thread without a cached arena gets.
enum Bound<'a> {
    Arena(&'a Arena),
    /// The thread is binding to this very heap: serve from the pool.
    Internal,
    /// No arena could be had.
    None,
}

/// Where a pointer lives.
enum Owner<'a> {
    Arena(&'a Arena),
    Large,
    /// A block of the internal pool: `(payload, usable)`.
    Pool(usize, usize),
}

impl Heap {
    /// A heap with the default [`Config`]. Reserves nothing until first use.
    pub const fn new() -> Heap {
        Heap::with_config(Config::new())
    }

    /// A heap with the given configuration.
    pub const fn with_config(config: Config) -> Heap {
        Heap {
            config,
            meta: AtomicPtr::new(ptr::null_mut()),
            init: AtomicU8::new(UNINIT),
        }
    }

    /// The configuration this heap was built with.
    pub fn config(&self) -> Config {
        self.config
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
                    self.meta.store(m, Ordering::Release);
                    self.init.store(READY, Ordering::Release);
                    // SAFETY: just built, lives until Drop.
                    return Some(unsafe { &*m });
                }
                Err(READY) => return self.meta_if_ready(),
                // Another thread is reserving the region: a few syscalls.
                Err(_) => std::thread::yield_now(),
            }
        }
    }

    // ----- allocation ---------------------------------------------------

    /// Allocates `size` bytes aligned to `align` (a power of two >= 16).
    #[inline]
    fn alloc_impl(&self, size: usize, align: usize) -> *mut u8 {
        let Some(meta) = self.meta() else {
            return ptr::null_mut();
        };
        if arena::arena_serves(size, align) {
            let arena = match thread::cached_arena(meta.id) {
                // SAFETY: the cache matched this heap's id, so the pointer is
                // an arena of this (live) heap.
                Some(a) => unsafe { &*a },
                None => match self.bind_slow(meta) {
                    Bound::Arena(a) => a,
                    Bound::Internal => return meta.internal_alloc(size, align),
                    Bound::None => return ptr::null_mut(),
                },
            };
            let mut st = arena.lock_and_drain_some(&meta.region);
            // SAFETY: `arena_serves` holds, the lock is held, and the region
            // and id are this arena's.
            unsafe { st.alloc(&meta.region, arena.id, size, align) }
        } else {
            large::alloc(&meta.region, &meta.large, size, align)
        }
    }

    /// Binds the calling thread to an arena of this heap (module doc).
    #[cold]
    #[inline(never)]
    fn bind_slow<'m>(&self, meta: &'m HeapMeta) -> Bound<'m> {
        if thread::is_binding(meta.id) {
            return Bound::Internal;
        }
        let previous = thread::set_binding(meta.id);
        let token = thread::token();
        let chosen = meta.choose_arena(token, previous.is_some());
        if let Some(prev) = previous {
            thread::set_binding(prev);
        }
        match chosen {
            Some(a) => {
                thread::cache_arena(meta.id, a);
                Bound::Arena(a)
            }
            None => Bound::None,
        }
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
        let p = self.alloc_impl(size, align);
        // Large runs come straight from the region, already zero.
        if !p.is_null() && arena::arena_serves(size, align) {
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
    /// call. (Invalid pointers are detected, not undefined behaviour, as long
    /// as no other thread frees or reallocates the same pointer concurrently.)
    #[inline]
    pub unsafe fn free(&self, ptr: *mut u8) -> Result<(), FreeError> {
        if ptr.is_null() {
            return Ok(());
        }
        let meta = self.meta_if_ready().ok_or(FreeError::OutsideHeap)?;
        match locate(meta, ptr as usize)? {
            Owner::Arena(arena) => {
                if ptr as usize % GRANULE != 0 {
                    return Err(FreeError::NotAllocated);
                }
                // Local: the caller's own arena — or the only arena, so that
                // max_arenas(1) stays one lock even for a thread that frees
                // before it ever allocated (and so has no binding).
                let local = thread::cached_arena(meta.id) == Some(arena as *const Arena)
                    || meta.config.get_max_arenas() == 1;
                if local {
                    // SAFETY: `ptr` is aligned and in one of `arena`'s chunks.
                    unsafe { free_locked(meta, arena, ptr, false) }
                } else {
                    // SAFETY: as above.
                    unsafe { free_remote(meta, arena, ptr) }
                }
            }
            // SAFETY: `ptr` is in a large slot; the caller gives it up.
            Owner::Large => unsafe { large::free(&meta.region, &meta.large, ptr) },
            // Internal-pool blocks are never reclaimed (`internal_alloc`).
            Owner::Pool(..) => Ok(()),
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
            Owner::Pool(..) => Ok(()),
            Owner::Arena(arena) => {
                let st = arena.lock();
                // SAFETY: `ptr` is in one of `arena`'s chunks; lock held.
                let found = unsafe { st.find_containing(ptr as usize) };
                let start = match found {
                    Some(b) => block::block_to_payload(b),
                    None => {
                        // Classify with the block-start rules, at the granule.
                        let aligned = (ptr as usize & !(GRANULE - 1)) as *mut u8;
                        // SAFETY: as above; `aligned` is in the same chunk.
                        let err = unsafe { st.find_live(aligned) }
                            .err()
                            .unwrap_or(FreeError::NotAllocated);
                        return Err(err);
                    }
                };
                drop(st);
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
                if unsafe { st.resize_in_place(b, size) } {
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

    // ----- introspection -----------------------------------------------------

    /// Whether `ptr` points into the payload of a live block of this heap.
    pub fn is_allocated(&self, ptr: *const u8) -> bool {
        self.containing(ptr).is_some()
    }

    /// The usable size of the live block whose payload contains `ptr`.
    pub fn usable_size(&self, ptr: *const u8) -> Option<usize> {
        self.containing(ptr).map(|(_, usable)| usable)
    }

    /// `(payload, usable)` of the live block containing `ptr`.
    fn containing(&self, ptr: *const u8) -> Option<(usize, usize)> {
        let meta = self.meta_if_ready()?;
        match locate(meta, ptr as usize).ok()? {
            Owner::Pool(payload, usable) => Some((payload, usable)),
            Owner::Arena(arena) => {
                let st = arena.lock();
                // SAFETY: `ptr` is in one of `arena`'s chunks; lock held; a
                // found block is a valid live header.
                unsafe {
                    let b = st.find_containing(ptr as usize)?;
                    Some((
                        block::block_to_payload(b) as usize,
                        block::block_to_usable((*b).size()),
                    ))
                }
            }
            Owner::Large => large::containing(&meta.region, ptr as usize),
        }
    }

    /// Proves the heap's invariants: every arena's chunks tile exactly, no
    /// two free blocks touch, every free block is in exactly one bin of its
    /// size, headers, footers and start bitmaps agree, counters equal what
    /// the walk counts, and large runs are consistent with the chunk map.
    /// Exact when no other thread is using the heap; each arena is checked
    /// under its own lock.
    pub fn check(&self) -> Result<(), HeapError> {
        let Some(meta) = self.meta_if_ready() else {
            return Ok(());
        };
        for arena in meta.arenas() {
            let mut st = arena.lock();
            if let Err(bad) = arena.drain(&mut st, &meta.region, usize::MAX) {
                let kind = HeapErrorKind::BadRemoteEntry;
                return Err(HeapError {
                    arena: Some(arena.id),
                    addr: bad,
                    kind,
                });
            }
            st.check(&meta.region, arena.id)?;
        }
        crate::stats::check_large(meta)
    }

    /// Statistics per arena and in total.
    pub fn stats(&self) -> crate::HeapStats {
        crate::stats::collect(self.meta_if_ready())
    }

    /// Writes a readable map of the heap: each arena's chunks and blocks
    /// (payload address, state, size; runs of equal blocks folded), then
    /// the large allocations.
    pub fn dump(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        crate::stats::dump(self.meta_if_ready(), out)
    }
}

/// `fork` support: a process that forks while other threads allocate must
/// not leave a lock held by a thread that does not exist in the child. The
/// preload library calls these from `pthread_atfork` handlers.
impl Heap {
    /// Takes every lock of this heap, in the lock order (the arena table,
    /// each arena by id, the region). Waits first for arenas being created
    /// to be published, so that exactly the arenas locked here are unlocked
    /// by `fork_parent` / `fork_child`.
    ///
    /// # Safety
    ///
    /// Must be followed, on the same thread and before any other use of
    /// this heap by it, by [`Heap::fork_parent`] (in the parent) or
    /// [`Heap::fork_child`] (in the child).
    pub unsafe fn fork_prepare(&self) {
        let Some(meta) = self.meta_if_ready() else {
            return;
        };
        meta.arena_lock.lock();
        for id in 0..meta.arena_count() as u32 {
            // Creation reserves under the table lock, then publishes without
            // taking any heap lock: it finishes without us.
            let arena = loop {
                match meta.arena(id) {
                    Some(a) => break a,
                    None => std::thread::yield_now(),
                }
            };
            arena.raw_lock().lock();
        }
        meta.region.raw_lock().lock();
    }

    /// Releases what `fork_prepare` took, in the parent.
    ///
    /// # Safety
    ///
    /// The calling thread called `fork_prepare` and has not released since.
    pub unsafe fn fork_parent(&self) {
        // SAFETY: forwarded.
        unsafe { self.fork_release() }
    }

    /// Releases what `fork_prepare` took, in the child, then replaces any
    /// remote queue a push in flight at the fork may have left half-written
    /// (its pending blocks are leaked in the child).
    ///
    /// # Safety
    ///
    /// The calling thread is the child's only thread and its parent called
    /// `fork_prepare` before forking.
    pub unsafe fn fork_child(&self) {
        // SAFETY: forwarded; the locks were taken by the parent thread this
        // thread continues.
        unsafe { self.fork_release() };
        let Some(meta) = self.meta_if_ready() else {
            return;
        };
        for arena in meta.arenas() {
            // SAFETY: the only thread (caller), holding no queue reference.
            unsafe { arena.reset_after_fork(meta.config.get_remote_queue_capacity()) };
        }
    }

    unsafe fn fork_release(&self) {
        let Some(meta) = self.meta_if_ready() else {
            return;
        };
        // SAFETY: `fork_prepare` took each of these locks (caller), and the
        // arena count could not change while it held the table lock.
        unsafe {
            meta.region.raw_lock().unlock();
            for arena in meta.arenas() {
                arena.raw_lock().unlock();
            }
            meta.arena_lock.unlock();
        }
    }
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

/// Which part of the heap owns `addr`, or why none does.
#[inline]
fn locate(meta: &HeapMeta, addr: usize) -> Result<Owner<'_>, FreeError> {
    if !meta.region.contains(addr) {
        return Err(FreeError::OutsideHeap);
    }
    match meta.region.chunk_use(meta.region.chunk_index(addr)) {
        ChunkUse::Arena(id) => meta
            .arena(id)
            .map(Owner::Arena)
            .ok_or(FreeError::NotAllocated),
        ChunkUse::LargeHead | ChunkUse::LargeTail(_) => Ok(Owner::Large),
        ChunkUse::Free => Err(FreeError::DoubleFree),
        ChunkUse::Meta => meta
            .pool_block(addr)
            .map(|(p, u)| Owner::Pool(p, u))
            .ok_or(FreeError::NotAllocated),
    }
}

/// Frees `ptr` under the arena lock: a local free, or the fallback of a
/// remote one (`claimed`: the caller already marked it pending).
///
/// # Safety
///
/// `ptr` is `GRANULE`-aligned and in a chunk of `arena`; if it is a live
/// block, its owner gives it up.
unsafe fn free_locked(
    meta: &HeapMeta,
    arena: &Arena,
    ptr: *mut u8,
    claimed: bool,
) -> Result<(), FreeError> {
    let mut st = arena.lock_and_drain_some(&meta.region);
    // SAFETY: `ptr` is aligned and in one of `arena`'s chunks; the lock is
    // held; the block freed is one `find_*` proved live (or pending and
    // claimed by us).
    let empty = unsafe {
        let b = if claimed {
            st.counters.queue_full += 1;
            match st.find_claimed(ptr) {
                Some(b) => b,
                None => {
                    drop(st);
                    abort_on_free_error(FreeError::DoubleFree, ptr)
                }
            }
        } else {
            st.find_live(ptr)?
        };
        st.free(b)
    };
    drop(st);
    if let Some(chunk) = empty {
        let idx = meta.region.chunk_index(chunk as usize);
        // SAFETY: the arena unlinked this empty chunk; nothing refers to it.
        unsafe { meta.region.release(idx, 1) };
    }
    Ok(())
}

/// A free of a block whose arena is not the calling thread's (`remote.rs`):
/// claim, then push on the owner's queue; under the owner's lock when the
/// queue is full or the claim fails (to classify the error exactly).
///
/// # Safety
///
/// As for [`free_locked`].
unsafe fn free_remote(meta: &HeapMeta, arena: &Arena, ptr: *mut u8) -> Result<(), FreeError> {
    // SAFETY: `ptr` is aligned and in a chunk the map marks as `arena`'s.
    if !unsafe { arena.claim_remote_mt(ptr) } {
        // SAFETY: forwarded; the lock decides what `ptr` is.
        return unsafe { free_locked(meta, arena, ptr, false) };
    }
    match arena.remote().push_mt(ptr as usize) {
        Ok(()) => Ok(()),
        // SAFETY: forwarded; we hold the claim on the block.
        Err(_) => unsafe { free_locked(meta, arena, ptr, true) },
    }
}

/// Reserves a region for `config` and builds the metadata in it; null if
/// the OS refuses or the region cannot even hold its metadata.
fn create_meta(config: Config) -> *mut HeapMeta {
    let chunks = config.get_region_size() / CHUNK;
    let arenas_offset =
        core::mem::size_of::<HeapMeta>().next_multiple_of(core::mem::align_of::<ArenaSlot>());
    let pool_offset = (arenas_offset + config.get_max_arenas() * core::mem::size_of::<ArenaSlot>())
        .next_multiple_of(64);
    let prefix = pool_offset + pool_bytes(&config);
    let layout = MetaLayout::new(prefix, chunks);
    if layout.total.div_ceil(CHUNK) >= chunks {
        return ptr::null_mut();
    }
    let Some(base) = Region::reserve(config.get_region_size(), layout.total) else {
        return ptr::null_mut();
    };
    let meta = base.cast::<HeapMeta>();
    // SAFETY: (1) the metadata chunks are committed, zeroed and ours alone;
    // (2) every field is written exactly once before `meta` is published;
    // (3) `layout` was computed for this region's size.
    unsafe {
        Region::init_in_place(
            addr_of_mut!((*meta).region),
            base,
            config.get_region_size(),
            &layout,
        );
        addr_of_mut!((*meta).large).write(LargeStats::default());
        addr_of_mut!((*meta).config).write(config);
        addr_of_mut!((*meta).arenas).write(base.add(arenas_offset).cast());
        addr_of_mut!((*meta).id).write(thread::new_heap_id());
        addr_of_mut!((*meta).arenas_reserved).write(AtomicUsize::new(0));
        addr_of_mut!((*meta).arena_lock).write(RawLock::new());
        let pool = base as usize + pool_offset;
        addr_of_mut!((*meta).pool_start).write(pool);
        addr_of_mut!((*meta).pool_next).write(AtomicUsize::new(pool));
        addr_of_mut!((*meta).pool_end).write(pool + pool_bytes(&config));
    }
    meta
}

// SAFETY: (1) every allocation returned satisfies the layout: `alloc_impl`
// aligns to `max(align, 16)` and serves at least `size` bytes; (2) `dealloc`
// and `realloc` take pointers this heap returned (the caller's contract),
// and invalid ones abort instead of corrupting; (3) nothing here unwinds.
unsafe impl GlobalAlloc for Heap {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.alloc_impl(layout.size(), layout.align().max(GRANULE))
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a live block of this heap.
        if let Err(e) = unsafe { self.free(ptr) } {
            abort_on_free_error(e, ptr);
        }
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
