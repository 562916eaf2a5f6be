//! The one shim for concurrency primitives: std (plus a futex) normally,
//! loom's under `cfg(loom)`.
//!
//! Everything in the allocator that two threads may touch at once and that
//! the loom models must see goes through this module: the arena lock
//! ([`RawLock`] and the [`Locked`] cell it guards), the atomics of arena
//! state, scheduling points for the models (`model_point`) and the
//! thread-local binding cache (`shim_thread_local!`). Memory whose races are
//! argued elsewhere and not modelled (the chunk allocation-start bitmaps, the
//! region's chunk map, the heap's one-time initialisation) uses
//! `core::sync::atomic` directly and says so in its module doc.
//!
//! # The lock word
//!
//! | state | meaning |
//! | --- | --- |
//! | `UNLOCKED` (0) | free |
//! | `LOCKED` (1) | held, nobody sleeps on it |
//! | `CONTENDED` (2) | held, and a waiter may sleep in `futex_wait`: unlock must wake one |
//!
//! Acquire is a compare-exchange `0 -> 1` with `Acquire` ordering; release is
//! a swap to `0` with `Release` ordering, so everything written under the lock
//! happens-before the next holder's reads. The lock never allocates, never
//! panics and is const-constructible, so it can live in mmapped metadata and
//! be taken by `pthread_atfork` handlers through [`RawLock::lock`] /
//! [`RawLock::unlock`] without a guard.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// `thread_local!` with a const initialiser (std), or loom's, which models
/// one value per loom thread.
#[cfg(not(loom))]
macro_rules! shim_thread_local {
    (static $name:ident: $t:ty = $init:expr;) => {
        std::thread_local! { static $name: $t = const { $init }; }
    };
}
#[cfg(loom)]
macro_rules! shim_thread_local {
    (static $name:ident: $t:ty = $init:expr;) => {
        loom::thread_local! { static $name: $t = $init; }
    };
}
pub(crate) use shim_thread_local;

/// A scheduling point for loom where the allocator touches shared words
/// that live in raw heap memory (block headers), which loom cannot model as
/// its own atomics: the models then interleave threads at every such access
/// (with sequentially consistent memory). Nothing at all under std.
#[inline(always)]
pub(crate) fn model_point() {
    #[cfg(loom)]
    MODEL_POINT.fetch_add(1, Ordering::SeqCst);
}

#[cfg(loom)]
loom::lazy_static! {
    /// The loom object whose read-modify-writes are the scheduling points of
    /// `model_point` (writes, so partial-order reduction cannot prune them).
    static ref MODEL_POINT: AtomicU32 = AtomicU32::new(0);
}

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;
/// Spins before a waiter goes to sleep: critical sections are short.
#[cfg(not(loom))]
const SPINS_BEFORE_SLEEP: u32 = 100;

/// A mutual-exclusion lock with no data, no guard and no poisoning.
pub(crate) struct RawLock {
    state: AtomicU32,
}

impl RawLock {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        RawLock {
            state: AtomicU32::new(UNLOCKED),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        RawLock {
            state: AtomicU32::new(UNLOCKED),
        }
    }

    /// Takes the lock if it is free.
    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        self.state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the lock; returns `true` when it had to wait (contention).
    #[inline]
    pub(crate) fn lock(&self) -> bool {
        if self.try_lock() {
            return false;
        }
        self.lock_slow();
        true
    }

    #[cold]
    #[cfg(not(loom))]
    fn lock_slow(&self) {
        for _ in 0..SPINS_BEFORE_SLEEP {
            if self.state.load(Ordering::Relaxed) == UNLOCKED && self.try_lock() {
                return;
            }
            core::hint::spin_loop();
        }
        // From here on we may sleep, so the word says CONTENDED whenever we
        // hold or wait: the holder's unlock then knows to wake somebody.
        while self.state.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
            futex_wait(&self.state, CONTENDED);
        }
    }

    #[cold]
    #[cfg(loom)]
    fn lock_slow(&self) {
        while !self.try_lock() {
            loom::thread::yield_now();
        }
    }

    /// Releases the lock.
    ///
    /// # Safety
    ///
    /// The caller holds the lock (it returned from `lock` or a successful
    /// `try_lock` and has not unlocked since), or is the child of a `fork`
    /// whose parent held it.
    #[inline]
    pub(crate) unsafe fn unlock(&self) {
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            #[cfg(not(loom))]
            futex_wake(&self.state);
        }
    }
}

#[cfg(not(loom))]
fn futex_wait(word: &AtomicU32, expected: u32) {
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

#[cfg(not(loom))]
fn futex_wake(word: &AtomicU32) {
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

/// A value guarded by a [`RawLock`].
pub(crate) struct Locked<T> {
    lock: RawLock,
    #[cfg(not(loom))]
    value: core::cell::UnsafeCell<T>,
    #[cfg(loom)]
    value: loom::cell::UnsafeCell<T>,
}

// SAFETY: the value is reached only through a `LockedGuard`, which exists
// only while the lock is held, so at most one thread touches it at a time;
// `T: Send` lets it move between those threads.
unsafe impl<T: Send> Sync for Locked<T> {}
// SAFETY: moving the cell moves the value; `T: Send` allows that.
unsafe impl<T: Send> Send for Locked<T> {}

/// Proof that the lock of a [`Locked`] is held; unlocks on drop.
pub(crate) struct LockedGuard<'a, T> {
    owner: &'a Locked<T>,
    #[cfg(loom)]
    ptr: loom::cell::MutPtr<T>,
}

impl<T> Locked<T> {
    #[cfg(not(loom))]
    pub(crate) const fn new(value: T) -> Self {
        Locked {
            lock: RawLock::new(),
            value: core::cell::UnsafeCell::new(value),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new(value: T) -> Self {
        Locked {
            lock: RawLock::new(),
            value: loom::cell::UnsafeCell::new(value),
        }
    }

    /// Takes the lock; the flag says whether it had to wait.
    #[inline]
    pub(crate) fn lock(&self) -> (LockedGuard<'_, T>, bool) {
        let contended = self.lock.lock();
        (self.guard(), contended)
    }

    /// The raw lock, for `fork` handlers that must hold every lock at once
    /// without guards.
    pub(crate) fn raw(&self) -> &RawLock {
        &self.lock
    }

    #[inline]
    fn guard(&self) -> LockedGuard<'_, T> {
        LockedGuard {
            owner: self,
            #[cfg(loom)]
            ptr: self.value.get_mut(),
        }
    }
}

impl<T> core::ops::Deref for LockedGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        #[cfg(not(loom))]
        // SAFETY: the guard exists only while the lock is held (`Locked::guard`
        // is called right after acquiring), so no other reference is live.
        unsafe {
            &*self.owner.value.get()
        }
        #[cfg(loom)]
        // SAFETY: as above; loom tracks the access through `ptr`.
        unsafe {
            self.ptr.deref()
        }
    }
}

impl<T> core::ops::DerefMut for LockedGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        #[cfg(not(loom))]
        // SAFETY: the lock is held and `&mut self` makes this the only
        // reference derived from the guard.
        unsafe {
            &mut *self.owner.value.get()
        }
        #[cfg(loom)]
        // SAFETY: as above; loom tracks the access through `ptr`.
        unsafe {
            self.ptr.deref()
        }
    }
}

impl<T> Drop for LockedGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: a guard is created only after the lock was taken and is
        // dropped once, so the lock is held by us here.
        unsafe { self.owner.lock.unlock() }
    }
}
