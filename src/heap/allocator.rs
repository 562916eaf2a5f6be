//! `Allocator` for `&Heap`: collections in a heap of their own —
//! `allocator_api2::alloc::Allocator` with the `allocator-api2` feature
//! (stable Rust: allocator_api2's `Vec` and `Box`, hashbrown, bumpalo's
//! collections), `core::alloc::Allocator` with the `nightly` feature (the
//! standard library's `Vec::new_in`, `Box::new_in`). One macro writes both
//! impls, so they cannot drift apart.
//!
//! ```text
//! allocate        ─▶ alloc_impl (fast path as malloc)              heap/mod.rs
//! allocate_zeroed ─▶ alloc_zeroed_impl
//! deallocate      ─▶ dealloc_sized (the layout's size)             heap/sized.rs
//! grow / shrink   ─▶ realloc_impl (in place, or move) | aligned by hand
//! ```
//!
//! Invariants:
//! * The length returned is the layout's size, not the block's usable size
//!   (reading that is a lookup, not free): so the only size that "fits"
//!   the block (the trait's term) is the one asked for, which is what a
//!   hardened or stress-mode heap checks `deallocate`'s size against.
//! * A zero-sized layout gets a real, unique block, as `malloc(0)` does:
//!   `deallocate` never meets a dangling pointer to tell apart.
//! * `grow` and `shrink` keep the new layout's alignment: a block that
//!   `realloc` would keep in place is aligned already, one that is not (a
//!   larger alignment asked for) moves by hand.

use core::alloc::Layout;
use core::ptr::{self, NonNull};

use super::Heap;
use crate::block::GRANULE;

impl Heap {
    /// A block of `layout`, as the traits hand it out (module doc).
    #[inline(always)]
    fn trait_allocate(&self, layout: Layout, zeroed: bool) -> Option<NonNull<[u8]>> {
        let align = layout.align().max(GRANULE);
        let p = if zeroed {
            self.alloc_zeroed_impl(layout.size(), align)
        } else {
            self.alloc_impl(layout.size(), align)
        };
        NonNull::new(p).map(|p| NonNull::slice_from_raw_parts(p, layout.size()))
    }

    /// `grow` and `shrink`: the block at `ptr` (allocated with `old`)
    /// resized to `new`, contents kept up to the smaller size.
    ///
    /// # Safety
    ///
    /// `ptr` is a live block of this heap allocated with `old`; the caller
    /// gives it up if the result is `Some`.
    unsafe fn trait_resize(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Option<NonNull<[u8]>> {
        let align = new.align().max(GRANULE);
        let p = ptr.as_ptr();
        let q = if (p as usize) % align == 0 {
            // SAFETY: a live block the caller gives up on success; `p` is
            // aligned to `align`, which kept-in-place keeps and a move
            // allocates with.
            unsafe { self.realloc_impl(p, new.size(), align) }
        } else {
            let q = self.alloc_impl(new.size(), align);
            if !q.is_null() {
                // SAFETY: two live, distinct blocks holding at least the
                // sizes copied; the caller gives `p` up (allocated with
                // `old`).
                unsafe {
                    ptr::copy_nonoverlapping(p, q, old.size().min(new.size()));
                    self.dealloc_sized(p, old.size());
                }
            }
            q
        };
        NonNull::new(q).map(|q| NonNull::slice_from_raw_parts(q, new.size()))
    }
}

/// `unsafe impl $Allocator for &Heap`, with `$AllocError` as its error.
macro_rules! allocator_for_heap_ref {
    ($Allocator:path, $AllocError:path) => {
        // SAFETY: (1) a returned block is live until `deallocate` (or a
        // successful `grow`/`shrink`) and the heap outlives `&Heap`, so
        // it stays valid while the reference lives and its copies (they
        // are the same heap) may free it; (2) each block satisfies its
        // layout (`alloc_impl` aligns to `max(align, 16)` and serves at
        // least `size` bytes); (3) nothing here unwinds.
        unsafe impl $Allocator for &Heap {
            #[inline]
            fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, $AllocError> {
                self.trait_allocate(layout, false).ok_or($AllocError)
            }

            #[inline]
            fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, $AllocError> {
                self.trait_allocate(layout, true).ok_or($AllocError)
            }

            #[inline]
            unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
                // SAFETY: the trait's contract: a block of this heap
                // allocated with a layout `layout` fits, so its size is the
                // one asked for (module doc).
                unsafe { self.dealloc_sized(ptr.as_ptr(), layout.size()) }
            }

            unsafe fn grow(
                &self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, $AllocError> {
                // SAFETY: the trait's contract (a live block, `old` fits).
                unsafe { self.trait_resize(ptr, old, new) }.ok_or($AllocError)
            }

            unsafe fn grow_zeroed(
                &self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, $AllocError> {
                // SAFETY: as for `grow`.
                let q = unsafe { self.trait_resize(ptr, old, new) }.ok_or($AllocError)?;
                // SAFETY: the new block holds `new.size() >= old.size()`
                // bytes (the trait's precondition for `grow`).
                unsafe {
                    ptr::write_bytes(
                        q.cast::<u8>().as_ptr().add(old.size()),
                        0,
                        new.size() - old.size(),
                    )
                };
                Ok(q)
            }

            unsafe fn shrink(
                &self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, $AllocError> {
                // SAFETY: as for `grow`.
                unsafe { self.trait_resize(ptr, old, new) }.ok_or($AllocError)
            }
        }
    };
}

#[cfg(feature = "allocator-api2")]
allocator_for_heap_ref!(
    allocator_api2::alloc::Allocator,
    allocator_api2::alloc::AllocError
);

#[cfg(feature = "nightly")]
allocator_for_heap_ref!(core::alloc::Allocator, core::alloc::AllocError);
