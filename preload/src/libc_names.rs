//! glibc's internal names for its allocator (`__libc_malloc`, …), which
//! glibc exports and some programs and libraries call directly — to reach
//! "the real malloc" from inside a `malloc` hook, say. Each is the same
//! function as its public name here, so a block is never allocated by one
//! heap and freed into the other.
//!
//! Invariant: nothing here but forwarding; the semantics (errno, NULL,
//! aborts) are the public functions' in `lib.rs` and `introspect.rs`.

use core::ffi::{c_int, c_void};

/// glibc `__libc_malloc`: [`malloc`](crate::malloc).
#[no_mangle]
pub extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    crate::malloc(size)
}

/// glibc `__libc_free`: [`free`](crate::free).
#[no_mangle]
pub extern "C" fn __libc_free(p: *mut c_void) {
    crate::free(p)
}

/// glibc `__libc_calloc`: [`calloc`](crate::calloc).
#[no_mangle]
pub extern "C" fn __libc_calloc(count: usize, size: usize) -> *mut c_void {
    crate::calloc(count, size)
}

/// glibc `__libc_realloc`: [`realloc`](crate::realloc).
///
/// # Safety
///
/// As for `realloc`: `p` is NULL or a live allocation of this heap.
#[no_mangle]
pub unsafe extern "C" fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { crate::realloc(p, size) }
}

/// glibc `__libc_memalign`: [`memalign`](crate::memalign).
#[no_mangle]
pub extern "C" fn __libc_memalign(align: usize, size: usize) -> *mut c_void {
    crate::memalign(align, size)
}

/// glibc `__libc_valloc`: [`valloc`](crate::valloc).
#[no_mangle]
pub extern "C" fn __libc_valloc(size: usize) -> *mut c_void {
    crate::valloc(size)
}

/// glibc `__libc_pvalloc`: [`pvalloc`](crate::pvalloc).
#[no_mangle]
pub extern "C" fn __libc_pvalloc(size: usize) -> *mut c_void {
    crate::pvalloc(size)
}

/// glibc `__libc_mallinfo`: `mallinfo` (`introspect.rs`).
#[no_mangle]
pub extern "C" fn __libc_mallinfo() -> libc::mallinfo {
    crate::introspect::mallinfo()
}

/// glibc `__libc_mallopt`: `mallopt` (`introspect.rs`).
#[no_mangle]
pub extern "C" fn __libc_mallopt(param: c_int, value: c_int) -> c_int {
    crate::introspect::mallopt(param, value)
}
