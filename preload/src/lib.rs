//! `libarenalloc.so`: arenalloc as `malloc` for any dynamically linked
//! program — `LD_PRELOAD=target/release/libarenalloc.so prog`.
//!
//! Exports the C allocation API with glibc's semantics (`malloc`, `free`,
//! `calloc`, `realloc`, `reallocarray`, `posix_memalign`, `aligned_alloc`,
//! `memalign`, `valloc`, `pvalloc`, `malloc_usable_size`) over one process
//! heap, and glibc's introspection and tuning calls (`malloc_trim`,
//! `mallinfo2`, `mallinfo`, `malloc_stats`, `malloc_info`, `mallopt`: see
//! `introspect.rs` for how each maps onto arenalloc), glibc's `__libc_*`
//! names, C23's sized frees, C++'s `operator new`/`delete`, and its own
//! functions (`include/arenalloc.h`). The `arenalloc` library crate itself
//! exports none of these: only this `cdylib` does.
//!
//! ```text
//! lib.rs         the allocation API, the environment, fork, the exit report
//! introspect.rs  malloc_trim, mallinfo2/mallinfo, malloc_stats, malloc_info, mallopt
//! libc_names.rs  __libc_malloc, __libc_free, … (glibc's internal names)
//! sized.rs       free_sized, free_aligned_sized (C23)
//! cxx.rs         operator new / delete, every form (Itanium names)
//! header.rs      arenalloc_check, arenalloc_stats_print, arenalloc_dump, arenalloc_leak_report
//! ```
//!
//! The environment (`ARENALLOC_*`) is read once, when the heap
//! initialises, by `arenalloc`'s one parser, `Config::with_env`; its doc
//! (`Config::from_env`) is the table of every variable. A malformed value
//! is reported once on stderr and the default used.
//!
//! Invariants:
//! * This *is* `malloc`: nothing here calls libc's allocator. Whatever runs
//!   before or during initialisation (the loader, TLS set-up, `pthread`
//!   internals calling `calloc`) is served by the heap itself; allocations
//!   made while a thread binds to its arena come from the heap's internal
//!   pool (see `arenalloc`'s `heap/bind.rs`), so there is no recursion.
//! * The heap is built on first use from the environment, read with
//!   `getenv` and parsed on the stack (`Config::with_env`: nothing
//!   allocates while the heap is being built).
//! * `fork`: the heap's own `pthread_atfork` handlers (`arenalloc`'s
//!   `heap/fork.rs`), registered when the heap first initialises, take
//!   every heap lock
//!   before `fork`, release them in parent and child and repair in the
//!   child what the parent's other threads left half-done, so a child
//!   forked while other threads allocate can allocate at once.
//! * A bad `free` or `realloc` aborts with one line on stderr naming the
//!   error and the address; a pointer from outside the heap is reported,
//!   never handed to another allocator.
//! * Nothing on an allocation path can panic (`.ci/no-panics.py` audits
//!   the built library); the introspection calls and the exit report run
//!   outside the allocator, with no heap lock held.

use core::ffi::{c_int, c_void, CStr};
use core::ptr;

use heap::{Config, Heap};

mod cxx;
mod header;
mod introspect;
mod libc_names;
mod sized;

/// `malloc`'s alignment: what `max_align_t` needs on x86-64 and aarch64.
const MALLOC_ALIGN: usize = 16;

/// The process heap. Its configuration is read from the environment by the
/// heap itself, once, on the first allocation (`Config::at_init`): the
/// heap's own start-up state machine is the only one, and the only reader
/// that reports malformed values.
static HEAP: Heap = Heap::with_config(Config::new().at_init(Config::with_env));

#[inline]
fn heap() -> &'static Heap {
    &HEAP
}

/// Runs when the dynamic loader has loaded this library, before `main`
/// and before any `fork` the program can make: with `ARENALLOC_STATS`,
/// registers the exit report. (The fork handlers are the heap's own: it
/// registers them when it first initialises, before which a fork has
/// nothing of it to protect.) (Allocations made before
/// this — by the loader or libc's own start-up — are served as usual: the
/// heap initialises itself on first use.)
extern "C" fn on_load() {
    let config = env_quietly();
    if config.get_stats_at_exit() {
        // SAFETY: `print_stats` is an `extern "C" fn()` that never unwinds.
        unsafe { libc::atexit(print_stats) };
    }
    if config.get_stress().is_on() {
        // Registered after `print_stats`, so it runs first (atexit is
        // LIFO): the sweep's reports come before the table.
        // SAFETY: as above.
        unsafe { libc::atexit(stress_at_exit) };
    }
}

#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn() = on_load;

// ----- environment -------------------------------------------------------

/// The value of `name`, if set.
fn env(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated; getenv returns null or a pointer to
    // a NUL-terminated string in the environment that outlives this use.
    let v = unsafe { libc::getenv(name.as_ptr()) };
    // SAFETY: non-null getenv results are valid C strings.
    (!v.is_null()).then(|| unsafe { CStr::from_ptr(v) }.to_bytes())
}

/// The settings of the environment, without reporting malformed values:
/// the heap's own reading (`Config::with_env`, on the first allocation) is
/// the one that reports them, once.
fn env_quietly() -> Config {
    Config::new().with_vars(env, |_| {})
}

/// At exit in stress mode: every quarantined block's poison and every
/// live block's redzone is verified (a finding is reported and, unless
/// `continue=1`, aborts); then, where `ARENALLOC_STATS` names a file, else
/// to stderr: what failure injection and jitter did (failures per thread,
/// the seed) and the leak report (`leaks=0`: none).
extern "C" fn stress_at_exit() {
    let stress = env_quietly().get_stress();
    if !stress.is_on() {
        return;
    }
    // The reports below allocate: nothing may fail or wait from here on.
    heap().end_injection();
    heap().stress_verify();
    let mut text = Vec::new();
    let _ = heap().stress_injection_report(&mut text);
    if stress.get_leak_report() {
        let _ = heap().leak_report(&mut text);
    }
    if !text.is_empty() {
        write_report(&text);
    }
}

/// Writes `text` with one `write(2)`: appended to the file
/// `ARENALLOC_STATS` names (an absolute path), else on stderr.
fn write_report(text: &[u8]) {
    let fd = match env(c"ARENALLOC_STATS") {
        Some(path) if path.starts_with(b"/") => {
            // SAFETY: getenv's value is a NUL-terminated string.
            let path = unsafe { libc::getenv(c"ARENALLOC_STATS".as_ptr()) };
            // SAFETY: `path` is a valid C string; the flags create or append.
            unsafe {
                libc::open(
                    path,
                    libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC,
                    0o644,
                )
            }
        }
        _ => 2,
    };
    if fd < 0 {
        return;
    }
    // SAFETY: `text` is a live byte buffer; write(2) only reads it; one
    // write so that appends from several processes do not interleave.
    unsafe { libc::write(fd, text.as_ptr().cast(), text.len()) };
    if fd != 2 {
        // SAFETY: we opened `fd` above.
        unsafe { libc::close(fd) };
    }
}

extern "C" fn print_stats() {
    // At exit the heap may be used by nothing else; formatting allocates
    // through it, with no heap lock held. The table is `HeapStats`'
    // `Display`, each line prefixed.
    let table = heap().stats().to_string();
    let mut text = format!("arenalloc: stats at exit (pid {})\n", std::process::id());
    for line in table.lines() {
        text.push_str("arenalloc:   ");
        text.push_str(line);
        text.push('\n');
    }
    write_report(text.as_bytes());
}

// ----- the C API ---------------------------------------------------------

fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

/// `p`, or NULL with `errno = ENOMEM`.
#[inline]
fn or_enomem(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p.cast()
}

/// Frees `p`, aborting with DESIGN's one-line message if it is not a live
/// block of the heap.
#[inline]
fn free_or_abort(p: *mut u8) {
    // SAFETY: the C contract: `p` is NULL or a live allocation the caller
    // gives up; anything else is detected and reported.
    if let Err(e) = unsafe { heap().free(p) } {
        e.abort(p);
    }
}

/// C `malloc`.
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    or_enomem(heap().malloc(size))
}

/// C `free`.
#[no_mangle]
pub extern "C" fn free(p: *mut c_void) {
    free_or_abort(p.cast());
}

/// C `calloc`: NULL with `ENOMEM` on overflow.
#[no_mangle]
pub extern "C" fn calloc(count: usize, size: usize) -> *mut c_void {
    or_enomem(heap().calloc(count, size))
}

/// C `realloc`: NULL `p` allocates; size 0 frees and returns NULL (glibc).
///
/// # Safety
///
/// `p` is NULL or a live allocation of this heap.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if !p.is_null() && size == 0 {
        free_or_abort(p.cast());
        return ptr::null_mut();
    }
    // SAFETY: forwarded C contract; invalid pointers abort with a message.
    or_enomem(unsafe { heap().realloc(p.cast(), size) })
}

/// glibc `reallocarray`: `realloc(p, count * size)`, NULL with `ENOMEM` on
/// overflow (leaving `p` untouched).
///
/// # Safety
///
/// As for `realloc`.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, count: usize, size: usize) -> *mut c_void {
    match count.checked_mul(size) {
        // SAFETY: forwarded.
        Some(total) => unsafe { realloc(p, total) },
        None => or_enomem(ptr::null_mut()),
    }
}

/// POSIX `posix_memalign`: `EINVAL` unless `align` is a power of two and a
/// multiple of `sizeof(void *)`; `ENOMEM` on exhaustion (errno untouched).
///
/// # Safety
///
/// `out` is valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<*mut c_void>()) {
        return libc::EINVAL;
    }
    let p = heap().aligned_alloc(align, size);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller passes a writable `out`.
    unsafe { *out = p.cast() };
    0
}

/// C11 `aligned_alloc`: NULL with `EINVAL` unless `align` is a power of
/// two (so for 0 and 3 too). These are C17's semantics (an alignment the
/// implementation does not support gives NULL) as glibc implements them
/// from 2.38 on; glibc 2.36 and 2.37 instead round such an alignment up,
/// as `memalign` does, and return a block.
#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    or_enomem(heap().aligned_alloc(align, size))
}

/// glibc `memalign`: an alignment that is not a power of two is rounded up
/// to the next one, as glibc does.
#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let Some(align) = align.max(MALLOC_ALIGN).checked_next_power_of_two() else {
        return or_enomem(ptr::null_mut());
    };
    or_enomem(heap().aligned_alloc(align, size))
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// `valloc`: page-aligned.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    or_enomem(heap().aligned_alloc(page_size(), size))
}

/// `pvalloc`: page-aligned, size rounded up to whole pages (one page for 0).
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = page_size();
    match size.max(1).checked_next_multiple_of(page) {
        Some(rounded) => or_enomem(heap().aligned_alloc(page, rounded)),
        None => or_enomem(ptr::null_mut()),
    }
}

/// glibc `malloc_usable_size`: the usable size of the live block `p`
/// starts; 0 for NULL or for any other pointer — an interior one included
/// (glibc reads garbage there; the Rust `usable_size` accepts interior
/// pointers, the C API does not).
#[no_mangle]
pub extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    heap().malloc_usable_size(p.cast())
}
