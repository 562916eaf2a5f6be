//! Sized frees: frees that are told the allocation's size —
//! `GlobalAlloc::dealloc`, the `Allocator` trait's `deallocate`
//! (`allocator.rs`), and [`Heap::free_sized`], which the preload library's
//! C23 `free_sized` / `free_aligned_sized` and C++ sized `operator delete`
//! call.
//!
//! ```text
//! dealloc / free_sized(ptr, size)
//!   ├─ size <= CACHE_MAX_REQUEST: free_fast (as free)           heap/mod.rs
//!   └─ else, or not taken: free_sized_slow
//!        ├─ hardened or stress: check_size ─▶ Err(SizeMismatch) (nothing freed)
//!        └─ free_slow_with(ptr, cacheable: size <= CACHE_BIG_MAX_REQUEST)
//! ```
//!
//! What the size buys:
//! * Work skipped. A request above `CACHE_MAX_REQUEST` has a block above
//!   the owner cache's small classes, so the inline fast path cannot take
//!   it and is skipped (a TLS read, the chunk test, a header read); one
//!   above `CACHE_BIG_MAX_REQUEST` is above its big classes too, so the
//!   slow path's (checked) cache push is skipped as well and the free goes
//!   straight to `locate`. Smaller frees take the same path as `free`; the
//!   size costs them one compare (none when it is a constant, as for a
//!   `Box`).
//! * A check, on a hardened heap and in stress mode: a size the live block
//!   cannot have come from is reported ([`FreeError::SizeMismatch`]:
//!   `arenalloc: free of 0x… with size 48, block holds 32` where the
//!   caller cannot take an error) before anything is freed. Hardened, the
//!   block keeps no request, so the check is `size <= usable bytes` (a
//!   size too large, never a false report); stress mode records every
//!   request, so the check is `size == request`.
//!
//! Invariants:
//! * Without hardening or stress the size is a hint only: a wrong one never
//!   changes which block is freed (that is found from the pointer, as by
//!   `free`), only which path is tried first.
//! * The check never decides an invalid free: a pointer whose live block
//!   it cannot find (not a block start, not live, a header that does not
//!   verify) passes it, and the free that follows classifies it exactly
//!   (double free, not allocated, heap corruption).
//! * The hardened check reads an arena block's bitmap bit and header
//!   without the lock, as the remote free's claim does (`arena/remote.rs`,
//!   `claim_mt`): the map marks the chunk as the arena's and the caller
//!   holds the block, so the chunk stays committed; a large block's size
//!   comes from `large::containing` (the region lock, which a large free
//!   takes anyway), a pool block's from `locate`. The stress check reads
//!   the record under the block's arena lock (`Heap::containing`), as the
//!   stress free that follows does.

use super::meta::{locate, HeapMeta, Owner};
use super::Heap;
use crate::block::{self, GRANULE};
use crate::chunk;
use crate::config::{CACHE_BIG_MAX_REQUEST, CACHE_MAX_REQUEST};
use crate::error::{abort_on_free_error, abort_on_size_mismatch, FreeError};
use crate::large;

impl Heap {
    /// Frees `ptr`, an allocation of `size` bytes (what was asked of
    /// `malloc`, `calloc` or the last `realloc`; for an `Allocator`, any
    /// size between the request and the length it returned). Like
    /// [`Heap::free`], plus: a size above the owner cache's classes skips
    /// the cache attempts; on a hardened heap a size above the block's
    /// usable bytes, in stress mode a size other than the block's request,
    /// is `Err(FreeError::SizeMismatch)` and frees nothing
    /// ([`Heap::usable_size`] says what the block holds).
    ///
    /// ```
    /// use arenalloc::{Config, FreeError, Heap};
    /// let heap = Heap::with_config(Config::new().hardened(true));
    /// let p = heap.malloc(20);
    /// let usable = heap.usable_size(p).unwrap();
    /// assert_eq!(
    ///     unsafe { heap.free_sized(p, usable + 16) },
    ///     Err(FreeError::SizeMismatch)
    /// );
    /// unsafe { heap.free_sized(p, 20) }.unwrap();
    /// ```
    ///
    /// # Safety
    ///
    /// As for [`Heap::free`].
    #[inline]
    pub unsafe fn free_sized(&self, ptr: *mut u8, size: usize) -> Result<(), FreeError> {
        // SAFETY: forwarded contract.
        if size <= CACHE_MAX_REQUEST && unsafe { self.free_fast(ptr) } {
            return Ok(());
        }
        // SAFETY: forwarded contract.
        unsafe { self.free_sized_slow(ptr, size) }
    }

    /// `GlobalAlloc::dealloc` and `Allocator::deallocate`: [`free_sized`]
    /// that aborts on an error.
    ///
    /// # Safety
    ///
    /// As for [`Heap::free`].
    ///
    /// [`free_sized`]: Heap::free_sized
    #[inline(always)]
    pub(super) unsafe fn dealloc_sized(&self, ptr: *mut u8, size: usize) {
        // SAFETY: forwarded contract.
        if !(size <= CACHE_MAX_REQUEST && unsafe { self.free_fast(ptr) }) {
            // SAFETY: forwarded contract.
            unsafe { self.dealloc_sized_slow(ptr, size) }
        }
    }

    /// `dealloc_sized` for what the fast path did not take: aborts on an
    /// invalid free, or on a size mismatch naming both sizes.
    ///
    /// # Safety
    ///
    /// As for [`Heap::free`].
    #[inline(never)]
    pub(super) unsafe fn dealloc_sized_slow(&self, ptr: *mut u8, size: usize) {
        // SAFETY: forwarded contract.
        match unsafe { self.free_sized_with(ptr, size) } {
            Ok(()) => {}
            Err(Mismatch::Holds(holds)) => abort_on_size_mismatch(ptr, size, holds),
            Err(Mismatch::Free(e)) => abort_on_free_error(e, ptr),
        }
    }

    /// `free_sized` for what the fast path did not take.
    ///
    /// # Safety
    ///
    /// As for [`Heap::free`].
    #[inline(never)]
    unsafe fn free_sized_slow(&self, ptr: *mut u8, size: usize) -> Result<(), FreeError> {
        // SAFETY: forwarded contract.
        unsafe { self.free_sized_with(ptr, size) }.map_err(|e| match e {
            Mismatch::Holds(_) => FreeError::SizeMismatch,
            Mismatch::Free(e) => e,
        })
    }

    /// Every sized free the fast path did not take (module doc), inlined
    /// into both of its callers (one call from `dealloc` to the free).
    ///
    /// # Safety
    ///
    /// As for [`Heap::free`].
    #[inline(always)]
    unsafe fn free_sized_with(&self, ptr: *mut u8, size: usize) -> Result<(), Mismatch> {
        if ptr.is_null() {
            return Ok(());
        }
        let meta = self
            .meta_if_ready()
            .ok_or(Mismatch::Free(FreeError::OutsideHeap))?;
        if meta.config.get_hardened() || meta.stress_on() {
            self.check_size(meta, ptr, size).map_err(Mismatch::Holds)?;
        }
        // SAFETY: forwarded contract; `ptr` is not null.
        unsafe { self.free_slow_with(meta, ptr, size <= CACHE_BIG_MAX_REQUEST) }
            .map_err(Mismatch::Free)
    }

    /// `Err(holds)` — what the block holds — if the live block at `ptr`
    /// cannot have been allocated with `size` (module doc); `Ok` too when
    /// there is no live block at `ptr` (the free decides what it is).
    fn check_size(&self, meta: &HeapMeta, ptr: *mut u8, size: usize) -> Result<(), usize> {
        if meta.stress_on() {
            // `containing` answers the request in stress mode (the record,
            // read under the block's arena lock).
            return match self.containing(ptr) {
                Some((start, request)) if start == ptr as usize && request != size => Err(request),
                _ => Ok(()),
            };
        }
        // The size as stored first (no check value computed: the free that
        // follows verifies the header anyway); only an apparent mismatch
        // is read again, verified, before it is reported.
        if !matches!(live_usable(meta, ptr, false), Some(u) if size > u) {
            return Ok(());
        }
        match live_usable(meta, ptr, true) {
            Some(usable) if size > usable => Err(usable),
            _ => Ok(()),
        }
    }
}

/// Why a sized free failed, inside this module: the free's own error, or
/// a mismatch with what the block holds (which the aborting path names;
/// the checked API returns `FreeError::SizeMismatch`).
enum Mismatch {
    Free(FreeError),
    Holds(usize),
}

/// The usable bytes of the live block whose payload starts at `ptr`, read
/// without an arena lock (module doc); `None` if there is none. With
/// `verify`, an arena block's header must verify under the arena's key and
/// say live; without, its size is taken as stored (a quick look, which a
/// corrupt header can fool: confirm before reporting).
#[inline(always)]
fn live_usable(meta: &HeapMeta, ptr: *mut u8, verify: bool) -> Option<usize> {
    let addr = ptr as usize;
    match locate(meta, addr).ok()? {
        Owner::Pool(payload, usable) => (payload == addr).then_some(usable),
        Owner::Large => large::containing(&meta.region, addr)
            .filter(|&(payload, _)| payload == addr)
            .map(|(_, usable)| usable),
        Owner::Arena(arena) => {
            if addr % GRANULE != 0 {
                return None;
            }
            let b = block::payload_to_block(ptr);
            let c = chunk::chunk_of(addr);
            // SAFETY: the map marks the chunk as `arena`'s and the caller
            // holds a block in it (the free's contract), so it is committed
            // (as for `Arena::claim_mt`); the bitmap and a header at a set
            // start bit inside the block area are readable atomics; `read`
            // verifies the header under the arena's key.
            unsafe {
                if (b as usize) < (*c).first_block() as usize
                    || b >= (*c).sentinel()
                    || !(*c).is_start(b as usize)
                {
                    return None;
                }
                if !verify {
                    return Some((*b).size().saturating_sub(block::HEADER));
                }
                let word = (*b).read(arena.key)?;
                word.is_live().then(|| block::block_to_usable(word.size))
            }
        }
    }
}
