//! The Linux port of `sys` (see `mod.rs` for the interface): raw `libc`
//! calls, no allocation, no panics.
//!
//! Invariant: every range passed in is page-aligned and inside a mapping
//! this crate made; the functions below only change protection, contents
//! or mapping of exactly that range.

use core::sync::atomic::AtomicU32;

/// Reserves `len` bytes of address space aligned to `align` (a power of
/// two), inaccessible and without swap reservation. `None` if the kernel
/// refuses (address-space limit, `RLIMIT_AS`).
pub(crate) fn reserve_aligned(len: usize, align: usize) -> Option<*mut u8> {
    let over = len.checked_add(align)?;
    // SAFETY: an anonymous private mapping at a kernel-chosen address
    // touches no existing memory.
    let raw = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            over,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return None;
    }
    let start = raw as usize;
    let aligned = (start + align - 1) & !(align - 1);
    let head = aligned - start;
    let tail = over - head - len;
    // SAFETY: both trimmed pieces are parts of the mapping just made and
    // outside the `aligned..aligned+len` range we keep.
    unsafe {
        if head > 0 {
            libc::munmap(raw, head);
        }
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
    }
    Some(aligned as *mut u8)
}

/// Makes `len` bytes at `addr` readable and writable; `false` if the
/// kernel refuses (out of memory for page tables, a map-count limit).
pub(crate) fn commit(addr: *mut u8, len: usize) -> bool {
    // SAFETY: callers pass page-aligned ranges inside our reservation;
    // changing protection of memory we own cannot affect anything else.
    unsafe { libc::mprotect(addr.cast(), len, libc::PROT_READ | libc::PROT_WRITE) == 0 }
}

/// Drops the pages' contents and their residency but keeps them
/// committed: they read as zero when touched again (`MADV_DONTNEED` on
/// private anonymous memory; `MADV_FREE` would leave them counted in RSS
/// until the kernel is short of memory, which is not what decay is for).
///
/// # Safety
///
/// `addr..addr+len` is a page-aligned range of committed memory of ours
/// whose contents nobody needs.
pub(crate) unsafe fn purge(addr: *mut u8, len: usize) {
    // SAFETY: the caller gives up the contents of the range.
    unsafe { libc::madvise(addr.cast(), len, libc::MADV_DONTNEED) };
}

/// How many of the `len / PAGE` pages at `addr` are resident
/// (`mincore(2)`), counted `PAGE_BATCH` pages at a time through a stack
/// buffer; 0 for a range the kernel will not report on.
pub(crate) fn resident_pages(addr: *mut u8, len: usize) -> usize {
    const PAGE_BATCH: usize = 1024;
    let page = crate::config::PAGE;
    let mut vec = [0u8; PAGE_BATCH];
    let mut done = 0;
    let mut resident = 0;
    while done < len {
        let n = ((len - done) / page).min(PAGE_BATCH);
        if n == 0 {
            break;
        }
        // SAFETY: `addr + done` is page-aligned inside the caller's mapped
        // range; `vec` has room for `n` entries; mincore only reads the
        // page tables.
        let ok = unsafe { libc::mincore(addr.add(done).cast(), n * page, vec.as_mut_ptr()) == 0 };
        if !ok {
            break;
        }
        resident += vec.iter().take(n).filter(|&&v| v & 1 != 0).count();
        done += n * page;
    }
    resident
}

/// Unmaps a whole reservation.
///
/// # Safety
///
/// Nothing will touch `addr..addr+len` again.
pub(crate) unsafe fn unreserve(addr: *mut u8, len: usize) {
    // SAFETY: the caller gives up the whole range.
    unsafe { libc::munmap(addr.cast(), len) };
}

/// Sleeps while `*word == expected`, until a [`futex_wake`] (or a spurious
/// wake-up: callers loop).
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32) {
    futex_wait_timeout(word, expected, core::ptr::null());
}

/// [`futex_wait`] for at most `timeout_ns` nanoseconds.
pub(crate) fn futex_wait_for(word: &AtomicU32, expected: u32, timeout_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
    };
    futex_wait_timeout(word, expected, &ts);
}

/// `FUTEX_WAIT` with a relative timeout (null: none).
fn futex_wait_timeout(word: &AtomicU32, expected: u32, timeout: *const libc::timespec) {
    // SAFETY: `word` is a live, aligned u32 for the whole call; FUTEX_WAIT
    // only reads it and returns at once if it no longer holds `expected`;
    // `timeout` is null or a live timespec of the caller. EINTR, EAGAIN and
    // ETIMEDOUT are what the callers' loops expect, so the result is
    // ignored.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            timeout,
        );
    }
}

/// Starts a detached thread running `main(arg)` with a small stack and
/// every signal blocked (so no handler of the program ever runs on it).
/// `false` if the system refuses.
///
/// glibc's `pthread_create` allocates (the thread's TLS block) through
/// `malloc`: call this with no lock of the heap held.
pub(crate) fn spawn_detached(
    main: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
    arg: *mut libc::c_void,
) -> bool {
    // SAFETY: every pointer passed is to a live local or the caller's
    // argument; the attribute object is initialised before use and
    // destroyed after; the signal mask is restored before returning.
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        if libc::pthread_attr_init(&mut attr) != 0 {
            return false;
        }
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setstacksize(&mut attr, 256 << 10);
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut thread: libc::pthread_t = 0;
        let ok = libc::pthread_create(&mut thread, &attr, main, arg) == 0;
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
        libc::pthread_attr_destroy(&mut attr);
        ok
    }
}

/// Names the calling thread (at most 15 bytes show) for `ps` and `top`.
pub(crate) fn name_this_thread(name: &core::ffi::CStr) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string, which `name` is.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

/// Wakes one thread sleeping in [`futex_wait`] on `word`.
/// Registers `fork` handlers for the whole process (`pthread_atfork`).
/// glibc's registration allocates: call with no heap lock held.
pub(crate) fn register_atfork(
    prepare: extern "C" fn(),
    parent: extern "C" fn(),
    child: extern "C" fn(),
) {
    // SAFETY: three `extern "C" fn()` that never unwind, valid for the
    // whole process (they are functions of this library).
    unsafe {
        libc::pthread_atfork(Some(prepare), Some(parent), Some(child));
    }
}

pub(crate) fn futex_wake(word: &AtomicU32) {
    futex_wake_n(word, 1);
}

/// Wakes up to `n` threads sleeping in [`futex_wait`] on `word`.
pub(crate) fn futex_wake_n(word: &AtomicU32, n: i32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE touches no memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            n,
        );
    }
}

/// 64 random bits from the kernel (`getrandom(2)`, non-blocking), mixed
/// with `salt`; if the kernel has none to give (early boot, seccomp), the
/// time-stamp counter and the salt, which still differ between processes
/// and heaps. Never blocks, never fails.
pub(crate) fn random_u64(salt: u64) -> u64 {
    let mut word = 0u64;
    // SAFETY: the buffer is a live, writable u64; getrandom writes at most
    // its 8 bytes.
    let got = unsafe {
        libc::getrandom(
            (&mut word as *mut u64).cast(),
            core::mem::size_of::<u64>(),
            libc::GRND_NONBLOCK,
        )
    };
    if got != core::mem::size_of::<u64>() as isize {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a live, writable timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        word = (ts.tv_sec as u64) << 30 ^ ts.tv_nsec as u64 ^ (&ts as *const _ as u64);
    }
    // splitmix64's finaliser over the two, so neither shows through.
    let mut z = word ^ salt.rotate_left(29);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Nanoseconds on the monotonic clock (through the vDSO: no system call
/// in steady state). 0 if the clock cannot be read.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The value of environment variable `name`, if set (`getenv(3)`: a look
/// through the process environment, no allocation). The slice points into
/// the environment: valid until the program changes that variable, so
/// callers parse it at once and keep nothing of it.
pub(crate) fn getenv(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated; getenv returns null or a pointer to
    // a NUL-terminated string in the environment.
    let v = unsafe { libc::getenv(name.as_ptr()) };
    // SAFETY: a non-null getenv result is a valid C string (see above for
    // how long it stays one).
    (!v.is_null()).then(|| unsafe { core::ffi::CStr::from_ptr(v) }.to_bytes())
}

/// Writes `bytes` to file descriptor 2 with one `write(2)`; a short or
/// failed write is ignored (the callers abort next).
pub(crate) fn write_stderr(bytes: &[u8]) {
    // SAFETY: `bytes` is a live, initialised buffer; write(2) only reads it.
    unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
}

/// The calling thread's kernel thread id (`gettid(2)`), for the thread
/// names of stress-mode reports (`stress.rs`).
pub(crate) fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() as u32 }
}

/// Ends the process with `SIGABRT`, running no destructor and no handler
/// of ours.
pub(crate) fn abort() -> ! {
    // SAFETY: abort(3) has no preconditions and does not return.
    unsafe { libc::abort() }
}

/// A thread-specific-data key: what [`thread_key_create`] hands out.
pub(crate) type ThreadKey = libc::pthread_key_t;

/// Creates a process-wide `pthread` key whose destructor `dtor` glibc
/// calls at the exit of every thread that stored a non-null value under
/// it, with that value (after setting it to null). `None` if every key is
/// taken (`PTHREAD_KEYS_MAX`). Allocates nothing: glibc claims a slot of
/// its static key table with an atomic compare-exchange.
pub(crate) fn thread_key_create(dtor: extern "C" fn(*mut libc::c_void)) -> Option<ThreadKey> {
    let mut key: ThreadKey = 0;
    // SAFETY: `key` is a live, writable key; `dtor` is a function that
    // lives as long as the program text (this crate is never unloaded
    // while threads run: see `sync::ThreadExit`).
    let r = unsafe { libc::pthread_key_create(&mut key, Some(dtor)) };
    (r == 0).then_some(key)
}

/// Stores `value` under `key` for the calling thread; `false` if glibc
/// could not. For a key below `PTHREAD_KEY_2NDLEVEL_SIZE` (32) the value
/// goes into the thread descriptor itself and nothing is allocated; for a
/// higher key, the thread's first store into each 32-key group `calloc`s
/// that group's block (512 bytes), which glibc frees at thread exit, and
/// fails with `ENOMEM` if that allocation does.
pub(crate) fn thread_key_set(key: ThreadKey, value: usize) -> bool {
    // SAFETY: `key` came from `thread_key_create` and is never deleted;
    // the value is an integer that glibc only stores and hands back.
    unsafe { libc::pthread_setspecific(key, value as *const libc::c_void) == 0 }
}

/// The soft address-space limit (`RLIMIT_AS`, what `ulimit -v` sets) in
/// bytes, or `None` if there is none (or it cannot be read).
pub(crate) fn address_space_limit() -> Option<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a live, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) } != 0
        || lim.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX))
}

/// Bytes of address space the process has mapped now (`VmSize`: the first
/// field of `/proc/self/statm`, in pages), read with `open`/`read` into a
/// stack buffer; `None` if `/proc` is not there.
pub(crate) fn address_space_used() -> Option<usize> {
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/self/statm".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 64];
    // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes; `fd`
    // is ours and closed exactly once.
    let n = unsafe {
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let text = buf.get(..usize::try_from(n).ok()?)?;
    let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut pages: usize = 0;
    for &b in text.get(..digits)? {
        pages = pages.checked_mul(10)?.checked_add(usize::from(b - b'0'))?;
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages.checked_mul(usize::try_from(page).ok()?)
}
