//! C23's sized frees, `free_sized` and `free_aligned_sized`, over
//! `Heap::free_sized`: the size lets a block too large for the owner
//! cache skip it, and a hardened heap (`ARENALLOC_HARDENED=1`) or stress
//! mode (`ARENALLOC_STRESS`) check it — a size above the block's usable
//! bytes (hardened) or other than its request (stress mode) aborts with
//! `arenalloc: free of 0x… with size 48, block holds 32`. The C++ sized
//! `operator delete`s (`cxx.rs`) come here too.
//!
//! Invariant: a sized free frees exactly what `free` would; without the
//! checks a wrong size changes nothing but which path is tried first.

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;

use crate::heap;

/// Frees `p`, an allocation of `size` bytes, aborting with DESIGN's
/// one-line message if it is not a live block of the heap or (checked
/// heaps) does not match `size` — through `GlobalAlloc::dealloc`, the
/// library's sized free that aborts naming both sizes.
#[inline]
pub(crate) fn free_sized_or_abort(p: *mut u8, size: usize) {
    if p.is_null() {
        return;
    }
    match Layout::from_size_align(size, 1) {
        // SAFETY: the C contract: `p` is a live allocation of `size` bytes
        // (what the layout says; `dealloc` reads only its size) that the
        // caller gives up; anything else is detected and reported.
        Ok(layout) => unsafe { heap().dealloc(p, layout) },
        // A size no block can hold (above `isize::MAX`): a mismatch on a
        // checked heap, a hint like any other without checks.
        Err(_) => {
            // SAFETY: as above.
            let freed = unsafe { heap().free_sized(p, size) };
            if let Err(e) = freed {
                e.abort(p);
            }
        }
    }
}

/// C23 `free_sized`: `free(p)` for a block allocated by `malloc`,
/// `calloc` or `realloc` with `size` bytes (`count * size` for `calloc`).
#[no_mangle]
pub extern "C" fn free_sized(p: *mut c_void, size: usize) {
    free_sized_or_abort(p.cast(), size);
}

/// C23 `free_aligned_sized`: `free(p)` for a block allocated by
/// `aligned_alloc(align, size)`. The alignment is not checked (the block
/// keeps none); the size is, as for `free_sized`.
#[no_mangle]
pub extern "C" fn free_aligned_sized(p: *mut c_void, align: usize, size: usize) {
    let _ = align;
    free_sized_or_abort(p.cast(), size);
}
