//! C++'s replaceable allocation functions, under their Itanium-mangled
//! names (x86-64 and aarch64, where `size_t` is `unsigned long`, `m`):
//! every `operator new` / `operator delete` form libstdc++ exports, so that
//! a C++ program's `new` and `delete` come here directly (not through
//! libstdc++'s, which would call `malloc` anyway) and its sized deletes
//! are checked like `free_sized` (`sized.rs`).
//!
//! | form | names | here |
//! | --- | --- | --- |
//! | `new(size_t)`, `new[]` | `_Znwm`, `_Znam` | `malloc`; on failure the new-handler loop, then `std::bad_alloc` |
//! | `new(size_t, nothrow_t)` | `_ZnwmRKSt9nothrow_t`, `_ZnamRKSt9nothrow_t` | the same loop; NULL instead of the throw |
//! | `new(size_t, align_val_t)` | `_ZnwmSt11align_val_t`, `_ZnamSt11align_val_t` | `aligned_alloc`; as `new` |
//! | `new(size_t, align_val_t, nothrow_t)` | `_ZnwmSt11align_val_tRKSt9nothrow_t`, `_Znam…` | as nothrow `new` |
//! | `delete(void*)`, `delete[]` | `_ZdlPv`, `_ZdaPv` | `free` |
//! | `delete(void*, size_t)` | `_ZdlPvm`, `_ZdaPvm` | `free_sized` (checked: hardened, stress) |
//! | `delete(void*, align_val_t)` | `_ZdlPvSt11align_val_t`, `_ZdaPvSt11align_val_t` | `free` |
//! | `delete(void*, size_t, align_val_t)` | `_ZdlPvmSt11align_val_t`, `_ZdaPvmSt11align_val_t` | `free_sized` |
//! | `delete(void*, nothrow_t)`, aligned | `_ZdlPvRKSt9nothrow_t`, `_ZdlPvSt11align_val_tRKSt9nothrow_t`, `_Zda…` | `free` |
//!
//! Failure. `new` must call the installed `std::new_handler` until
//! allocation succeeds and throw `std::bad_alloc` when there is none. A
//! Rust library cannot throw a C++ exception, so this one asks the C++
//! runtime the program runs with, at the moment of failure, through
//! `dlsym`: `std::get_new_handler()` (`_ZSt15get_new_handlerv`) for the
//! handler, and libstdc++'s `std::__throw_bad_alloc()`
//! (`_ZSt17__throw_bad_allocv`) for the throw. Both are called through
//! the `C-unwind` ABI, so an exception they (or a handler) throw unwinds
//! through this library's frames — which hold nothing to clean up — into
//! the program's `catch`. (mimalloc's C build does the handler half the
//! same way, through a weak `_ZSt15get_new_handlerv`, and aborts instead
//! of throwing.) Where the runtime has no `__throw_bad_alloc` (a C program
//! calling `_Znwm`, a runtime other than libstdc++), a failed `new` with
//! no handler aborts with one line, `arenalloc: operator new: out of
//! memory for N bytes, and no C++ runtime to throw std::bad_alloc`. The
//! nothrow forms are `extern "C"`: a handler that throws inside one ends
//! the process (Rust cannot catch a foreign exception) where C++ would
//! return NULL — a handler that frees memory and returns works as in C++.
//!
//! Invariants:
//! * Nothing here allocates or locks before the heap call; the failure
//!   path (`dlsym`, the handler) runs with no heap lock held, as a program
//!   calling `malloc` would.
//! * An alignment that is not a power of two fails at once (no handler
//!   call: no memory can make it valid).

use core::ffi::{c_void, CStr};
use core::ptr;

use crate::sized::free_sized_or_abort;
use crate::{free_or_abort, heap, MALLOC_ALIGN};
use ::heap::line::Line;

/// `std::new_handler`: returns after making memory available, throws
/// `std::bad_alloc`, or ends the process.
type NewHandler = unsafe extern "C-unwind" fn();

/// The address of `name` in the process's global scope, or null.
fn symbol(name: &CStr) -> *mut c_void {
    // SAFETY: `name` is NUL-terminated; RTLD_DEFAULT searches the global
    // scope and returns null when nothing defines the name.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

/// `std::get_new_handler()`, if a C++ runtime that has one is loaded.
fn new_handler() -> Option<NewHandler> {
    let f = symbol(c"_ZSt15get_new_handlerv");
    if f.is_null() {
        return None;
    }
    // SAFETY: the symbol is `std::new_handler std::get_new_handler()
    // noexcept`: no arguments, returns a function pointer or null, which
    // `Option<fn>` represents exactly.
    let get: unsafe extern "C" fn() -> Option<NewHandler> = unsafe { core::mem::transmute(f) };
    // SAFETY: as above; it only reads the handler slot.
    unsafe { get() }
}

/// Throws `std::bad_alloc` through the C++ runtime; aborts with one line
/// if none that can is loaded (module doc).
#[cold]
fn throw_bad_alloc(size: usize) -> ! {
    let f = symbol(c"_ZSt17__throw_bad_allocv");
    if !f.is_null() {
        // SAFETY: libstdc++'s `[[noreturn]] void std::__throw_bad_alloc()`:
        // no arguments; it throws, and the `C-unwind` ABI lets the
        // exception unwind through this frame and our callers to the
        // program's handler.
        let throw: unsafe extern "C-unwind" fn() -> ! = unsafe { core::mem::transmute(f) };
        // SAFETY: as above.
        unsafe { throw() }
    }
    Line::new()
        .push(b"arenalloc: operator new: out of memory for ")
        .num(size as u64)
        .push(b" bytes, and no C++ runtime to throw std::bad_alloc\n")
        .write_stderr();
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// Every `operator new`: allocate; on failure call the new-handler and
/// retry while there is one; then throw (or, `nothrow`, return NULL).
#[inline(always)]
fn new_impl(size: usize, align: usize, nothrow: bool) -> *mut c_void {
    // No memory makes a bad alignment valid: no handler call for it.
    while align.is_power_of_two() {
        let p = if align <= MALLOC_ALIGN {
            heap().malloc(size)
        } else {
            heap().aligned_alloc(align, size)
        };
        if !p.is_null() {
            return p.cast();
        }
        let Some(h) = new_handler() else {
            break;
        };
        // SAFETY: the program's handler, called as C++'s `new` would.
        unsafe { h() };
    }
    if nothrow {
        return ptr::null_mut();
    }
    throw_bad_alloc(size)
}

/// `operator new(size_t)`.
#[export_name = "_Znwm"]
pub extern "C-unwind" fn operator_new(size: usize) -> *mut c_void {
    new_impl(size, MALLOC_ALIGN, false)
}

/// `operator new[](size_t)`.
#[export_name = "_Znam"]
pub extern "C-unwind" fn operator_new_array(size: usize) -> *mut c_void {
    new_impl(size, MALLOC_ALIGN, false)
}

/// `operator new(size_t, const std::nothrow_t&) noexcept`.
#[export_name = "_ZnwmRKSt9nothrow_t"]
pub extern "C" fn operator_new_nothrow(size: usize, _nt: *const c_void) -> *mut c_void {
    new_impl(size, MALLOC_ALIGN, true)
}

/// `operator new[](size_t, const std::nothrow_t&) noexcept`.
#[export_name = "_ZnamRKSt9nothrow_t"]
pub extern "C" fn operator_new_array_nothrow(size: usize, _nt: *const c_void) -> *mut c_void {
    new_impl(size, MALLOC_ALIGN, true)
}

/// `operator new(size_t, std::align_val_t)`.
#[export_name = "_ZnwmSt11align_val_t"]
pub extern "C-unwind" fn operator_new_aligned(size: usize, align: usize) -> *mut c_void {
    new_impl(size, align, false)
}

/// `operator new[](size_t, std::align_val_t)`.
#[export_name = "_ZnamSt11align_val_t"]
pub extern "C-unwind" fn operator_new_array_aligned(size: usize, align: usize) -> *mut c_void {
    new_impl(size, align, false)
}

/// `operator new(size_t, std::align_val_t, const std::nothrow_t&) noexcept`.
#[export_name = "_ZnwmSt11align_val_tRKSt9nothrow_t"]
pub extern "C" fn operator_new_aligned_nothrow(
    size: usize,
    align: usize,
    _nt: *const c_void,
) -> *mut c_void {
    new_impl(size, align, true)
}

/// `operator new[](size_t, std::align_val_t, const std::nothrow_t&) noexcept`.
#[export_name = "_ZnamSt11align_val_tRKSt9nothrow_t"]
pub extern "C" fn operator_new_array_aligned_nothrow(
    size: usize,
    align: usize,
    _nt: *const c_void,
) -> *mut c_void {
    new_impl(size, align, true)
}

/// `operator delete(void*) noexcept`.
#[export_name = "_ZdlPv"]
pub extern "C" fn operator_delete(p: *mut c_void) {
    free_or_abort(p.cast());
}

/// `operator delete[](void*) noexcept`.
#[export_name = "_ZdaPv"]
pub extern "C" fn operator_delete_array(p: *mut c_void) {
    free_or_abort(p.cast());
}

/// `operator delete(void*, size_t) noexcept`: checked on hardened and
/// stress-mode heaps.
#[export_name = "_ZdlPvm"]
pub extern "C" fn operator_delete_sized(p: *mut c_void, size: usize) {
    free_sized_or_abort(p.cast(), size);
}

/// `operator delete[](void*, size_t) noexcept`: checked likewise.
#[export_name = "_ZdaPvm"]
pub extern "C" fn operator_delete_array_sized(p: *mut c_void, size: usize) {
    free_sized_or_abort(p.cast(), size);
}

/// `operator delete(void*, const std::nothrow_t&) noexcept`.
#[export_name = "_ZdlPvRKSt9nothrow_t"]
pub extern "C" fn operator_delete_nothrow(p: *mut c_void, _nt: *const c_void) {
    free_or_abort(p.cast());
}

/// `operator delete[](void*, const std::nothrow_t&) noexcept`.
#[export_name = "_ZdaPvRKSt9nothrow_t"]
pub extern "C" fn operator_delete_array_nothrow(p: *mut c_void, _nt: *const c_void) {
    free_or_abort(p.cast());
}

/// `operator delete(void*, std::align_val_t) noexcept`.
#[export_name = "_ZdlPvSt11align_val_t"]
pub extern "C" fn operator_delete_aligned(p: *mut c_void, _align: usize) {
    free_or_abort(p.cast());
}

/// `operator delete[](void*, std::align_val_t) noexcept`.
#[export_name = "_ZdaPvSt11align_val_t"]
pub extern "C" fn operator_delete_array_aligned(p: *mut c_void, _align: usize) {
    free_or_abort(p.cast());
}

/// `operator delete(void*, size_t, std::align_val_t) noexcept`: checked
/// like the sized `delete`.
#[export_name = "_ZdlPvmSt11align_val_t"]
pub extern "C" fn operator_delete_sized_aligned(p: *mut c_void, size: usize, _align: usize) {
    free_sized_or_abort(p.cast(), size);
}

/// `operator delete[](void*, size_t, std::align_val_t) noexcept`.
#[export_name = "_ZdaPvmSt11align_val_t"]
pub extern "C" fn operator_delete_array_sized_aligned(p: *mut c_void, size: usize, _align: usize) {
    free_sized_or_abort(p.cast(), size);
}

/// `operator delete(void*, std::align_val_t, const std::nothrow_t&) noexcept`.
#[export_name = "_ZdlPvSt11align_val_tRKSt9nothrow_t"]
pub extern "C" fn operator_delete_aligned_nothrow(
    p: *mut c_void,
    _align: usize,
    _nt: *const c_void,
) {
    free_or_abort(p.cast());
}

/// `operator delete[](void*, std::align_val_t, const std::nothrow_t&) noexcept`.
#[export_name = "_ZdaPvSt11align_val_tRKSt9nothrow_t"]
pub extern "C" fn operator_delete_array_aligned_nothrow(
    p: *mut c_void,
    _align: usize,
    _nt: *const c_void,
) {
    free_or_abort(p.cast());
}
