//! arenalloc's own C functions, declared in `include/arenalloc.h`: the
//! heap's invariant walk, its statistics, its map and its leak report,
//! for a C or C++ program running under the library (`LD_PRELOAD`).
//!
//! ```text
//! arenalloc_check        → Heap::check           0, or 1 and one line on stderr
//! arenalloc_stats_print  → Heap::stats, {:#}     the exit table and a line per arena
//! arenalloc_dump         → Heap::dump            the heap map
//! arenalloc_leak_report  → Heap::leak_report     live blocks by size and thread
//! ```
//!
//! Output goes to the program's `write_cb(opaque, text)` as
//! `malloc_stats_print`'s does in jemalloc: NUL-terminated text, one call
//! per line (each ending in `\n`); a NULL `write_cb` writes to standard
//! error instead.
//!
//! Invariants:
//! * Like `introspect.rs`, nothing here runs inside the allocator: the
//!   text is produced in full (the `Heap` functions allocate their buffers
//!   before they lock, and hold no lock while writing) before the first
//!   callback, so `write_cb` may call `malloc`, `free` or these functions.
//! * A callback that unwinds ends the process (the functions are
//!   `extern "C"`).

use core::ffi::{c_char, c_int, c_void};

use crate::heap;

/// `arenalloc_write_cb`: receives NUL-terminated text.
type WriteCb = Option<unsafe extern "C" fn(opaque: *mut c_void, text: *const c_char)>;

/// Hands `text` to `cb` a line at a time (each NUL-terminated), or writes
/// it to stderr in one `write(2)` when `cb` is NULL.
///
/// # Safety
///
/// `cb`, if not NULL, may be called with `opaque` and a C string.
unsafe fn emit(cb: WriteCb, opaque: *mut c_void, text: &[u8]) {
    let Some(cb) = cb else {
        // SAFETY: `text` is initialised memory of `text.len()` bytes.
        unsafe { libc::write(2, text.as_ptr().cast(), text.len()) };
        return;
    };
    let mut line = Vec::new();
    for piece in text.split_inclusive(|&b| b == b'\n') {
        line.clear();
        line.extend_from_slice(piece);
        line.push(0);
        // SAFETY: the caller's contract; `line` is NUL-terminated and
        // lives across the call.
        unsafe { cb(opaque, line.as_ptr().cast()) };
    }
}

/// `int arenalloc_check(void)`: walks every invariant of the heap
/// (`Heap::check`). 0 when all hold; else 1, after one line on stderr
/// (`arenalloc: heap corrupt in arena 2 at 0x…: BadHeader`). Exact when no
/// other thread allocates or frees meanwhile.
#[no_mangle]
pub extern "C" fn arenalloc_check() -> c_int {
    match heap().check() {
        Ok(()) => 0,
        Err(e) => {
            let text = format!("arenalloc: {e}\n");
            // SAFETY: NULL: stderr, no callback.
            unsafe { emit(None, core::ptr::null_mut(), text.as_bytes()) };
            1
        }
    }
}

/// `void arenalloc_stats_print(arenalloc_write_cb write_cb, void *opaque)`:
/// the statistics table the library prints at exit with `ARENALLOC_STATS`
/// (`HeapStats`' `Display`), then a line per arena.
///
/// # Safety
///
/// `write_cb` is NULL or a function that may be called with `opaque` and
/// a C string.
#[no_mangle]
pub unsafe extern "C" fn arenalloc_stats_print(write_cb: WriteCb, opaque: *mut c_void) {
    let text = format!("{:#}", heap().stats());
    // SAFETY: forwarded contract.
    unsafe { emit(write_cb, opaque, text.as_bytes()) };
}

/// `int arenalloc_dump(arenalloc_write_cb write_cb, void *opaque)`: the
/// heap map (`Heap::dump`): each arena's chunks and blocks, then the large
/// allocations. 0; -1 if the map could not be produced.
///
/// # Safety
///
/// As for `arenalloc_stats_print`.
#[no_mangle]
pub unsafe extern "C" fn arenalloc_dump(write_cb: WriteCb, opaque: *mut c_void) -> c_int {
    let mut text = Vec::new();
    if heap().dump(&mut text).is_err() {
        return -1;
    }
    // SAFETY: forwarded contract.
    unsafe { emit(write_cb, opaque, &text) };
    0
}

/// `size_t arenalloc_leak_report(arenalloc_write_cb write_cb, void
/// *opaque)`: the blocks still allocated, grouped by size and allocating
/// thread (`Heap::leak_report`; threads and sequence numbers are known in
/// stress mode). Returns how many blocks it reported.
///
/// # Safety
///
/// As for `arenalloc_stats_print`.
#[no_mangle]
pub unsafe extern "C" fn arenalloc_leak_report(write_cb: WriteCb, opaque: *mut c_void) -> usize {
    let mut text = Vec::new();
    let Ok(blocks) = heap().leak_report(&mut text) else {
        return 0;
    };
    // SAFETY: forwarded contract.
    unsafe { emit(write_cb, opaque, &text) };
    blocks
}
