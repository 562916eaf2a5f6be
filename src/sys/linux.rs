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

/// Drops the pages' contents (they read as zero if committed again) and
/// makes the range inaccessible.
///
/// # Safety
///
/// `addr..addr+len` is a page-aligned range of our reservation that
/// nothing will read or write until it is committed again.
pub(crate) unsafe fn decommit(addr: *mut u8, len: usize) {
    // SAFETY: the caller gives up the range; purging and protecting it
    // cannot affect memory anyone still uses.
    unsafe {
        libc::madvise(addr.cast(), len, libc::MADV_DONTNEED);
        libc::mprotect(addr.cast(), len, libc::PROT_NONE);
    }
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
    // SAFETY: `word` is a live, aligned u32 for the whole call; FUTEX_WAIT
    // only reads it and returns at once if it no longer holds `expected`.
    // A null timeout means wait until woken; EINTR/EAGAIN are retried by the
    // caller's loop, so the result is ignored.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            core::ptr::null::<libc::timespec>(),
        );
    }
}

/// Wakes one thread sleeping in [`futex_wait`] on `word`.
pub(crate) fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE touches no memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
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

/// Writes `bytes` to file descriptor 2 with one `write(2)`; a short or
/// failed write is ignored (the callers abort next).
pub(crate) fn write_stderr(bytes: &[u8]) {
    // SAFETY: `bytes` is a live, initialised buffer; write(2) only reads it.
    unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
}

/// Ends the process with `SIGABRT`, running no destructor and no handler
/// of ours.
pub(crate) fn abort() -> ! {
    // SAFETY: abort(3) has no preconditions and does not return.
    unsafe { libc::abort() }
}
