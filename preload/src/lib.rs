//! `libarenalloc.so`: arenalloc as `malloc` for any dynamically linked
//! program — `LD_PRELOAD=target/release/libarenalloc.so prog`.
//!
//! Exports the C allocation API with glibc's semantics (`malloc`, `free`,
//! `calloc`, `realloc`, `reallocarray`, `posix_memalign`, `aligned_alloc`,
//! `memalign`, `valloc`, `pvalloc`, `malloc_usable_size`) over one process
//! heap, and glibc's introspection and tuning calls (`malloc_trim`,
//! `mallinfo2`, `mallinfo`, `malloc_stats`, `malloc_info`, `mallopt`: see
//! `introspect.rs` for how each maps onto arenalloc). The `arenalloc`
//! library crate itself exports none of these: only this `cdylib` does.
//!
//! ```text
//! lib.rs         the allocation API, the environment, fork, the exit report
//! introspect.rs  malloc_trim, mallinfo2/mallinfo, malloc_stats, malloc_info, mallopt
//! line.rs        Line: output assembled on the stack (no allocation, no fmt)
//! ```
//!
//! The environment, read once when the heap initialises (a malformed value
//! is reported once on stderr and the default used):
//!
//! | variable | value | default | sets |
//! | --- | --- | --- | --- |
//! | `ARENALLOC_MAX_ARENAS` | a whole number >= 1 | 128 | `Config::max_arenas` (1: one lock for every thread); `mallopt(M_ARENA_MAX)` can lower it later |
//! | `ARENALLOC_REGION_SIZE` | bytes, optional `K`/`M`/`G`/`T` suffix, >= 8M | 64 GiB, or what `RLIMIT_AS` leaves | `Config::region_size`: the one reservation |
//! | `ARENALLOC_OWNER_CACHE` | bytes, optional suffix; 0 = off | 1M (at most 4M) | `Config::owner_cache`: each arena's lock-free cache of freed blocks |
//! | `ARENALLOC_PURGE_MS` | milliseconds; 0 = purge at once, -1 = never | 200 | `Config::purge_ms`: how long free pages stay resident before decay purges them |
//! | `ARENALLOC_PURGE_MIN` | bytes, optional suffix | 64K | `Config::purge_min`: the smallest free block whose pages are purged (one page … one chunk); `mallopt(M_TRIM_THRESHOLD)` changes it later |
//! | `ARENALLOC_PURGE_THREAD` | `0` or `1` | `1` | `Config::purge_thread`: whether a background thread runs decay (0: only allocating threads do) |
//! | `ARENALLOC_HARDENED` | `0` or `1` | `0` | `Config::hardened`: heap-corruption checks on every free and allocation |
//! | `ARENALLOC_STATS` | `1`, or an absolute path | unset | a statistics table at exit, on stderr or appended to that file (for programs whose stderr is checked) |
//! | `ARENALLOC_STRESS` | `1`, or `key=value` knobs separated by `,`: `quarantine=` bytes (suffixes), `redzone=` bytes, `free_fill=` / `alloc_fill=` a byte (`0x..` or decimal), `continue=0/1`, `leaks=0/1` | unset (off) | `Config::stress`: quarantine, poison, redzones, fills, thread-attributed reports; at exit every quarantined block and redzone is verified and (unless `leaks=0`) a leak report goes where `ARENALLOC_STATS` says, else to stderr |
//!
//! Invariants:
//! * This *is* `malloc`: nothing here calls libc's allocator. Whatever runs
//!   before or during initialisation (the loader, TLS set-up, `pthread`
//!   internals calling `calloc`) is served by the heap itself; allocations
//!   made while a thread binds to its arena come from the heap's internal
//!   pool (see `arenalloc`'s `heap/bind.rs`), so there is no recursion.
//! * The heap is built on first use from the environment, read with
//!   `getenv` and parsed into a stack buffer (nothing allocates while the
//!   heap is being built).
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

use heap::{Config, Heap, Stress};

mod introspect;
mod line;

use line::Line;

/// `malloc`'s alignment: what `max_align_t` needs on x86-64 and aarch64.
const MALLOC_ALIGN: usize = 16;

/// The process heap. Its configuration is read from the environment by the
/// heap itself, once, on the first allocation (`Config::at_init`): the
/// heap's own start-up state machine is the only one.
static HEAP: Heap = Heap::with_config(Config::new().at_init(config_from_env));

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
    if env_flag(c"ARENALLOC_STATS") {
        // SAFETY: `print_stats` is an `extern "C" fn()` that never unwinds.
        unsafe { libc::atexit(print_stats) };
    }
    if env_flag(c"ARENALLOC_STRESS") {
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

fn env_flag(name: &CStr) -> bool {
    matches!(env(name), Some(v) if !v.is_empty() && v != b"0")
}

/// The `ARENALLOC_*` settings over `config`; runs once, inside the first
/// allocation (it allocates nothing: `getenv` and a stack buffer).
fn config_from_env(mut config: Config) -> Config {
    if let Some(v) = env(c"ARENALLOC_MAX_ARENAS") {
        match parse_size(v, false) {
            Some(n) if n >= 1 => config = config.max_arenas(n),
            _ => report_malformed(b"ARENALLOC_MAX_ARENAS", v, b"a whole number >= 1"),
        }
    }
    if let Some(v) = env(c"ARENALLOC_REGION_SIZE") {
        match parse_size(v, true) {
            Some(n) if n >= 2 * heap::CHUNK => config = config.region_size(n),
            _ => report_malformed(
                b"ARENALLOC_REGION_SIZE",
                v,
                b"bytes with an optional K/M/G/T suffix, at least 8M",
            ),
        }
    }
    if let Some(v) = env(c"ARENALLOC_OWNER_CACHE") {
        match parse_size(v, true) {
            Some(n) => config = config.owner_cache(n),
            None => report_malformed(
                b"ARENALLOC_OWNER_CACHE",
                v,
                b"bytes with an optional K/M/G/T suffix (0: off)",
            ),
        }
    }
    if let Some(v) = env(c"ARENALLOC_PURGE_MS") {
        match v {
            b"-1" => config = config.purge_ms(-1),
            _ => match parse_size(v, false) {
                Some(n) => config = config.purge_ms(n.min(i64::MAX as usize) as i64),
                None => report_malformed(
                    b"ARENALLOC_PURGE_MS",
                    v,
                    b"milliseconds (0: purge at once, -1: never)",
                ),
            },
        }
    }
    if let Some(v) = env(c"ARENALLOC_PURGE_MIN") {
        match parse_size(v, true) {
            Some(n) => config = config.purge_min(n),
            None => report_malformed(
                b"ARENALLOC_PURGE_MIN",
                v,
                b"bytes with an optional K/M/G/T suffix",
            ),
        }
    }
    if let Some(v) = env(c"ARENALLOC_PURGE_THREAD") {
        match v {
            b"1" => config = config.purge_thread(true),
            b"0" => config = config.purge_thread(false),
            _ => report_malformed(b"ARENALLOC_PURGE_THREAD", v, b"0 or 1"),
        }
    }
    if let Some(v) = env(c"ARENALLOC_STRESS") {
        match parse_stress(v) {
            Some(s) => config = config.stress(s),
            None => report_malformed(
                b"ARENALLOC_STRESS",
                v,
                b"1, 0, or key=value knobs separated by commas: quarantine, redzone, \
                  free_fill, alloc_fill, continue, leaks",
            ),
        }
    }
    if let Some(v) = env(c"ARENALLOC_HARDENED") {
        match v {
            b"1" => config = config.hardened(true),
            b"0" => config = config.hardened(false),
            _ => report_malformed(b"ARENALLOC_HARDENED", v, b"0 or 1"),
        }
    }
    config
}

/// `ARENALLOC_STRESS`'s value: `1` (on, defaults), `0` (off), or
/// `key=value` knobs separated by commas, which turn it on (`None`:
/// malformed). Allocates nothing.
fn parse_stress(v: &[u8]) -> Option<Stress> {
    match v {
        b"0" => return Some(Stress::off()),
        b"1" => return Some(Stress::new()),
        _ => {}
    }
    let mut s = Stress::new();
    for knob in v.split(|&b| b == b',') {
        let eq = knob.iter().position(|&b| b == b'=')?;
        let (key, value) = (knob.get(..eq)?, knob.get(eq + 1..)?);
        let flag = || match value {
            b"0" => Some(false),
            b"1" => Some(true),
            _ => None,
        };
        s = match key {
            b"quarantine" => s.quarantine(parse_size(value, true)?),
            b"redzone" => s.redzone(parse_size(value, true)?),
            b"free_fill" => s.free_fill(parse_byte(value)?),
            b"alloc_fill" => s.alloc_fill(parse_byte(value)?),
            b"continue" => s.keep_going(flag()?),
            b"leaks" => s.leak_report(flag()?),
            _ => return None,
        };
    }
    Some(s)
}

/// A byte: `0x` and hex digits, or decimal.
fn parse_byte(v: &[u8]) -> Option<u8> {
    let n = match v.strip_prefix(b"0x").or_else(|| v.strip_prefix(b"0X")) {
        Some(hex) if !hex.is_empty() && hex.len() <= 2 => {
            let mut n = 0u32;
            for &b in hex {
                n = n * 16 + (b as char).to_digit(16)?;
            }
            n as usize
        }
        Some(_) => return None,
        None => parse_size(v, false)?,
    };
    u8::try_from(n).ok()
}

/// Parses a decimal number with, when `suffixes`, one of `K M G T`
/// (binary multiples, case-insensitive, an optional trailing `B` or `iB`).
fn parse_size(v: &[u8], suffixes: bool) -> Option<usize> {
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut n: usize = 0;
    let (number, rest) = v.split_at(digits.min(v.len()));
    for &b in number {
        n = n.checked_mul(10)?.checked_add(usize::from(b - b'0'))?;
    }
    if rest.is_empty() {
        return Some(n);
    }
    if !suffixes {
        return None;
    }
    let (&unit, tail) = rest.split_first()?;
    let shift = match unit.to_ascii_uppercase() {
        b'K' => 10,
        b'M' => 20,
        b'G' => 30,
        b'T' => 40,
        _ => return None,
    };
    match tail {
        b"" | b"B" | b"b" | b"iB" | b"IB" | b"ib" => n.checked_mul(1usize << shift),
        _ => None,
    }
}

/// One line on stderr, assembled in a stack buffer (the heap is not ready).
fn report_malformed(name: &[u8], value: &[u8], expected: &[u8]) {
    let mut line = Line::new();
    line.push(b"arenalloc: ignoring malformed ");
    line.push(name);
    line.push(b"=\"");
    line.push(value.get(..64).unwrap_or(value));
    line.push(b"\" (expected ");
    line.push(expected);
    line.push(b"); using the default\n");
    line.write_stderr();
}

/// At exit in stress mode: every quarantined block's poison and every
/// live block's redzone is verified (a finding is reported and, unless
/// `continue=1`, aborts), then the leak report goes where `ARENALLOC_STATS`
/// names a file, else to stderr (`leaks=0`: none).
extern "C" fn stress_at_exit() {
    let Some(stress) = env(c"ARENALLOC_STRESS").and_then(parse_stress) else {
        return;
    };
    if !stress.is_on() {
        return;
    }
    heap().stress_verify();
    if !stress.get_leak_report() {
        return;
    }
    let mut text = Vec::new();
    if heap().leak_report(&mut text).is_ok() {
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
    let s = heap().stats();
    let remote: u64 = s
        .arenas()
        .iter()
        .map(|a| a.remote_frees + a.queue_full_fallbacks)
        .sum();
    let contended: u64 = s.arenas().iter().map(|a| a.lock_contended).sum();
    let adoptions: u64 = s.arenas().iter().map(|a| a.adoptions).sum();
    // At exit the heap may be used by nothing else; formatting allocates
    // through it, with no heap lock held.
    let text = format!(
        "arenalloc: stats at exit (pid {})\n\
         arenalloc:   allocations {:>14}   frees {:>14}   remote frees {:>12}\n\
         arenalloc:   live blocks {:>14}   live bytes {:>9}   peak committed {:>10}\n\
         arenalloc:   arenas used {:>14}   adoptions {:>10}   contended locks {:>9}\n\
         arenalloc:   pool used {:>16}   pool size {:>10}   reserved bytes {:>10}\n\
         arenalloc:   cached blocks {:>12}   cached bytes {:>7}   large cached {:>12}\n\
         arenalloc:   stress reports {:>11}   quarantined {:>8}\n",
        std::process::id(),
        s.allocations(),
        s.frees(),
        remote,
        s.live_blocks(),
        s.allocated_bytes(),
        s.peak_committed_bytes(),
        s.arenas().len(),
        adoptions,
        contended,
        s.pool_used_bytes(),
        s.pool_capacity_bytes(),
        s.reserved_bytes(),
        s.cached_blocks(),
        s.cached_bytes(),
        s.large_cached_bytes(),
        s.stress_reports(),
        s.quarantined_bytes(),
    );
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
    match heap().allocation_containing(p.cast()) {
        Some((start, usable)) if start == p.cast() => usable,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_size, parse_stress};
    use heap::Stress;

    #[test]
    fn stress_knobs_parse() {
        assert_eq!(parse_stress(b"1"), Some(Stress::new()));
        assert_eq!(parse_stress(b"0"), Some(Stress::off()));
        assert_eq!(
            parse_stress(
                b"quarantine=64M,redzone=32,free_fill=0xdd,alloc_fill=190,continue=1,leaks=0"
            ),
            Some(
                Stress::new()
                    .quarantine(64 << 20)
                    .redzone(32)
                    .free_fill(0xdd)
                    .alloc_fill(190)
                    .keep_going(true)
                    .leak_report(false)
            )
        );
        for bad in [
            &b"yes"[..],
            b"redzone",
            b"free_fill=0x100",
            b"leaks=2",
            b"color=red",
            b"redzone=1,",
        ] {
            assert_eq!(
                parse_stress(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size(b"123", true), Some(123));
        assert_eq!(parse_size(b"8M", true), Some(8 << 20));
        assert_eq!(parse_size(b"64g", true), Some(64 << 30));
        assert_eq!(parse_size(b"1TiB", true), Some(1 << 40));
        assert_eq!(parse_size(b"2KB", true), Some(2048));
        assert_eq!(parse_size(b"12x", true), None);
        assert_eq!(parse_size(b"", true), None);
        assert_eq!(parse_size(b"8M", false), None);
        assert_eq!(parse_size(b"99999999999999999999999", true), None);
    }
}
