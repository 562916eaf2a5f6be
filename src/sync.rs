//! The one shim for concurrency primitives: std (plus the futex in `sys`)
//! normally, loom's under `cfg(arenalloc_loom)` — the only file that names
//! that cfg (crossbeam's `crossbeam_loom` pattern).
//!
//! Everything in the allocator that two threads may touch at once and that
//! the loom models must see goes through this module: the arena lock
//! ([`RawLock`] and the [`Locked`] cell it guards), the atomics of arena
//! state, the remote-free queue ([`MpmcQueue`]), scheduling points for the
//! models ([`model_point`]), [`yield_now`], the thread-local binding
//! cache ([`shim_thread_local!`]) and the thread-exit hook that releases a
//! thread's registry slot ([`shim_thread_exit!`]: a `pthread` key under
//! std, so that binding allocates nothing per thread). Memory whose races are argued elsewhere
//! and not modelled (the chunk allocation-start bitmaps, the region's chunk
//! map, the thread registry, the heap's one-time initialisation) uses
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
//! panics, and can live in mmapped metadata and be taken by `pthread_atfork`
//! handlers through [`RawLock::lock`] / [`RawLock::unlock`] without a guard.

#[cfg(not(arenalloc_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(arenalloc_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::config::SPINS_BEFORE_SLEEP;

/// `thread_local!` with a const initialiser (std), or loom's, which models
/// one value per loom thread.
#[cfg(not(arenalloc_loom))]
macro_rules! shim_thread_local {
    (static $name:ident: $t:ty = $init:expr;) => {
        std::thread_local! { static $name: $t = const { $init }; }
    };
}
#[cfg(arenalloc_loom)]
macro_rules! shim_thread_local {
    (static $name:ident: $t:ty = $init:expr;) => {
        loom::thread_local! { static $name: $t = $init; }
    };
}
pub(crate) use shim_thread_local;

/// Whether the heap may start background threads (the decay thread):
/// never under loom, whose models own every thread.
pub(crate) const BACKGROUND_THREADS: bool = !cfg!(arenalloc_loom);

/// Whether heaps register process-wide `fork` handlers (`heap/fork.rs`):
/// never under loom, whose models never fork and whose primitives cannot
/// live in a process-wide static.
pub(crate) const FORK_HANDLERS: bool = !cfg!(arenalloc_loom);

/// A scheduling point for loom where the allocator touches shared words
/// that live in raw heap memory (block headers), which loom cannot model as
/// its own atomics: the models then interleave threads at every such access
/// (with sequentially consistent memory). Nothing at all under std.
#[inline(always)]
pub(crate) fn model_point() {
    #[cfg(arenalloc_loom)]
    MODEL_POINT.fetch_add(1, Ordering::SeqCst);
}

#[cfg(arenalloc_loom)]
loom::lazy_static! {
    /// The loom object whose read-modify-writes are the scheduling points of
    /// `model_point` (writes, so partial-order reduction cannot prune them).
    static ref MODEL_POINT: AtomicU32 = AtomicU32::new(0);
}

/// Lets another thread run: a waiter on something another thread finishes
/// without needing anything from us (a slot being published).
#[inline]
pub(crate) fn yield_now() {
    #[cfg(not(arenalloc_loom))]
    std::thread::yield_now();
    #[cfg(arenalloc_loom)]
    loom::thread::yield_now();
}

// ----- thread exit -----------------------------------------------------------

/// Declares `static $name: ThreadExit` whose [`ThreadExit::arm`] makes
/// `$hook(value)` (a `fn(usize)` that must not panic) run once when the
/// calling thread exits.
///
/// Under std this is one process-wide `pthread` key whose destructor gets
/// the armed value back from glibc, and *not* a `thread_local!` with a
/// `Drop`: std registers such a destructor with `__cxa_thread_atexit_impl`,
/// which `calloc`s a list node per thread — and when the heap is `malloc`,
/// that node comes from the heap's never-growing internal pool, because
/// the thread is binding at that moment. Storing a value under a key
/// allocates nothing (`sys::thread_key_set`). Under loom it is the
/// `thread_local!` guard the models can see.
#[cfg(not(arenalloc_loom))]
macro_rules! shim_thread_exit {
    ($(#[$meta:meta])* static $name:ident = $hook:path;) => {
        $(#[$meta])*
        static $name: $crate::sync::ThreadExit = {
            extern "C" fn at_exit(value: *mut core::ffi::c_void) {
                $hook(value as usize)
            }
            $crate::sync::ThreadExit::new(at_exit)
        };
    };
}
#[cfg(arenalloc_loom)]
macro_rules! shim_thread_exit {
    ($(#[$meta:meta])* static $name:ident = $hook:path;) => {
        $(#[$meta])*
        static $name: $crate::sync::ThreadExit = $crate::sync::ThreadExit::new($hook);
    };
}
pub(crate) use shim_thread_exit;

/// A thread-exit hook (see [`shim_thread_exit!`]).
///
/// | `key` word | meaning |
/// | --- | --- |
/// | `KEY_NONE` | no key yet (or creating one failed: the next `arm` retries) |
/// | `KEY_BUSY` | a thread is creating the key (a few instructions, no allocation) |
/// | `k` (`< 2^32`) | the key: published with `Release`, read with `Acquire` |
///
/// A `core` atomic, not loom's (a `static` must be const-constructed); the
/// models use the loom variant below instead. The destructor is a function
/// of this crate: a library that links arenalloc and is `dlclose`d while
/// threads that armed the hook still run would leave glibc a dangling
/// destructor (std's TLS destructors pin the library; a key does not).
#[cfg(not(arenalloc_loom))]
pub(crate) struct ThreadExit {
    key: core::sync::atomic::AtomicU64,
    dtor: extern "C" fn(*mut core::ffi::c_void),
}

#[cfg(not(arenalloc_loom))]
const KEY_NONE: u64 = u64::MAX;
#[cfg(not(arenalloc_loom))]
const KEY_BUSY: u64 = u64::MAX - 1;

#[cfg(not(arenalloc_loom))]
impl ThreadExit {
    pub(crate) const fn new(dtor: extern "C" fn(*mut core::ffi::c_void)) -> ThreadExit {
        ThreadExit {
            key: core::sync::atomic::AtomicU64::new(KEY_NONE),
            dtor,
        }
    }

    /// Makes the hook run with `value` (non-zero) when the calling thread
    /// exits, replacing a value armed before; `false` if that cannot be
    /// arranged (every `pthread` key taken, or glibc out of memory for a
    /// key past its first 32). Never allocates for a key among the first
    /// 32, which ours is unless the program created that many before its
    /// first allocation.
    pub(crate) fn arm(&self, value: usize) -> bool {
        debug_assert!(value != 0, "a null value never reaches the destructor");
        match self.key() {
            Some(key) => crate::sys::thread_key_set(key, value),
            None => false,
        }
    }

    /// The key, created on first use.
    fn key(&self) -> Option<crate::sys::ThreadKey> {
        use core::sync::atomic::Ordering as O;
        loop {
            match self.key.load(O::Acquire) {
                KEY_NONE => {
                    if self
                        .key
                        .compare_exchange(KEY_NONE, KEY_BUSY, O::Acquire, O::Acquire)
                        .is_err()
                    {
                        continue;
                    }
                    let key = crate::sys::thread_key_create(self.dtor);
                    let word = key.map_or(KEY_NONE, u64::from);
                    self.key.store(word, O::Release);
                    return key;
                }
                // Another thread is in pthread_key_create: it finishes
                // without needing anything from us.
                KEY_BUSY => yield_now(),
                key => return crate::sys::ThreadKey::try_from(key).ok(),
            }
        }
    }
}

/// A thread-exit hook (see [`shim_thread_exit!`]): under loom, the value
/// is kept by a `thread_local!` guard whose `Drop` runs the hook, so the
/// models see thread exit where loom ends each thread. A thread holds one
/// armed hook (the crate has one: the registry's).
#[cfg(arenalloc_loom)]
pub(crate) struct ThreadExit {
    hook: fn(usize),
}

/// An armed hook and the value it gets.
#[cfg(arenalloc_loom)]
type Armed = (fn(usize), usize);

#[cfg(arenalloc_loom)]
struct ExitGuard {
    armed: core::cell::Cell<Option<Armed>>,
}

// Under loom the hook is the guard above, so `sys`'s `pthread` key calls,
// which only the std `ThreadExit` makes, would be dead code there (and
// `clippy -D warnings` under loom would fail on it): naming them here keeps
// them live without a cfg outside this file.
#[cfg(arenalloc_loom)]
const _: () = {
    let _ = crate::sys::thread_key_create;
    let _ = crate::sys::thread_key_set;
};

#[cfg(arenalloc_loom)]
impl Drop for ExitGuard {
    fn drop(&mut self) {
        if let Some((hook, value)) = self.armed.take() {
            hook(value);
        }
    }
}

#[cfg(arenalloc_loom)]
loom::thread_local! {
    static EXIT_GUARD: ExitGuard = ExitGuard { armed: core::cell::Cell::new(None) };
}

#[cfg(arenalloc_loom)]
impl ThreadExit {
    pub(crate) const fn new(hook: fn(usize)) -> ThreadExit {
        ThreadExit { hook }
    }

    /// As under std: `false` if the thread's TLS is already gone.
    pub(crate) fn arm(&self, value: usize) -> bool {
        EXIT_GUARD
            .try_with(|g| g.armed.set(Some((self.hook, value))))
            .is_ok()
    }
}

// ----- a cell with loom's interface ------------------------------------

/// `UnsafeCell` with loom's access interface: the value is reached through
/// a [`MutPtr`] so that loom can track every access; under std both are
/// thin wrappers over `core::cell::UnsafeCell` and a raw pointer.
#[cfg(not(arenalloc_loom))]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);
#[cfg(arenalloc_loom)]
pub(crate) use loom::cell::UnsafeCell;

/// A tracked `*mut T` (loom's `MutPtr`).
#[cfg(not(arenalloc_loom))]
pub(crate) struct MutPtr<T>(*mut T);
#[cfg(arenalloc_loom)]
pub(crate) use loom::cell::MutPtr;

#[cfg(not(arenalloc_loom))]
impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> Self {
        UnsafeCell(core::cell::UnsafeCell::new(value))
    }

    /// The value's address, as loom hands it out.
    #[inline(always)]
    pub(crate) fn get_mut(&self) -> MutPtr<T> {
        MutPtr(self.0.get())
    }
}

#[cfg(not(arenalloc_loom))]
impl<T> MutPtr<T> {
    /// # Safety
    ///
    /// No other reference to the value is live while the result is.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn deref(&self) -> &mut T {
        // SAFETY: the pointer came from a live cell (`get_mut`); exclusivity
        // is the caller's contract.
        unsafe { &mut *self.0 }
    }
}

// ----- the lock ------------------------------------------------------------

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// A mutual-exclusion lock with no data, no guard and no poisoning.
pub(crate) struct RawLock {
    state: AtomicU32,
}

impl RawLock {
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
    #[cfg(not(arenalloc_loom))]
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
            crate::sys::futex_wait(&self.state, CONTENDED);
        }
    }

    #[cold]
    #[cfg(arenalloc_loom)]
    fn lock_slow(&self) {
        let _ = SPINS_BEFORE_SLEEP;
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
            #[cfg(not(arenalloc_loom))]
            crate::sys::futex_wake(&self.state);
        }
    }
}

/// A value guarded by a [`RawLock`].
pub(crate) struct Locked<T> {
    lock: RawLock,
    value: UnsafeCell<T>,
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
    ptr: MutPtr<T>,
}

impl<T> Locked<T> {
    pub(crate) fn new(value: T) -> Self {
        Locked {
            lock: RawLock::new(),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock; the flag says whether it had to wait.
    #[inline]
    pub(crate) fn lock(&self) -> (LockedGuard<'_, T>, bool) {
        let contended = self.lock.lock();
        (self.guard(), contended)
    }

    /// Takes the lock if it is free.
    #[inline]
    pub(crate) fn try_lock(&self) -> Option<LockedGuard<'_, T>> {
        self.lock.try_lock().then(|| self.guard())
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
            ptr: self.value.get_mut(),
        }
    }
}

impl<T> core::ops::Deref for LockedGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is held (`Locked::guard`
        // is called right after acquiring), so no other reference is live.
        unsafe { self.ptr.deref() }
    }
}

impl<T> core::ops::DerefMut for LockedGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the lock is held and `&mut self` makes this the only
        // reference derived from the guard.
        unsafe { self.ptr.deref() }
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

// ----- the remote-free queue -------------------------------------------------

/// A bounded lock-free multi-producer multi-consumer queue of words:
/// `crossbeam_queue::ArrayQueue`, or under loom a modelled
/// `Mutex<VecDeque>` with the same full/empty behaviour.
pub(crate) struct MpmcQueue {
    #[cfg(not(arenalloc_loom))]
    queue: crossbeam_queue::ArrayQueue<usize>,
    #[cfg(arenalloc_loom)]
    queue: loom::sync::Mutex<std::collections::VecDeque<usize>>,
    #[cfg(arenalloc_loom)]
    capacity: usize,
}

impl MpmcQueue {
    /// A queue of `capacity` (at least 1) slots. Allocates its buffer
    /// through the global allocator: call it with no heap lock held.
    pub(crate) fn new(capacity: usize) -> MpmcQueue {
        #[cfg(not(arenalloc_loom))]
        {
            MpmcQueue {
                queue: crossbeam_queue::ArrayQueue::new(capacity),
            }
        }
        #[cfg(arenalloc_loom)]
        {
            let q = std::collections::VecDeque::with_capacity(capacity);
            MpmcQueue {
                queue: loom::sync::Mutex::new(q),
                capacity,
            }
        }
    }

    /// Its slots.
    pub(crate) fn capacity(&self) -> usize {
        #[cfg(not(arenalloc_loom))]
        {
            self.queue.capacity()
        }
        #[cfg(arenalloc_loom)]
        {
            self.capacity
        }
    }

    /// Bytes the buffer of a queue of `capacity` slots asks the allocator
    /// for (an upper bound: a stamp and a value per slot).
    pub(crate) const fn buffer_bytes(capacity: usize) -> usize {
        capacity * 2 * core::mem::size_of::<usize>()
    }

    /// Pushes `value`; gives it back if the queue is full.
    #[inline]
    pub(crate) fn push(&self, value: usize) -> Result<(), usize> {
        #[cfg(not(arenalloc_loom))]
        {
            self.queue.push(value)
        }
        #[cfg(arenalloc_loom)]
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() == self.capacity {
                return Err(value);
            }
            q.push_back(value);
            Ok(())
        }
    }

    /// Pops the oldest entry.
    #[inline]
    pub(crate) fn pop(&self) -> Option<usize> {
        #[cfg(not(arenalloc_loom))]
        {
            self.queue.pop()
        }
        #[cfg(arenalloc_loom)]
        {
            self.queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front()
        }
    }

    /// Whether a quarter or more of the slots look taken (racy: pushes and
    /// pops in flight may be counted or not).
    #[inline]
    pub(crate) fn backlogged(&self) -> bool {
        #[cfg(not(arenalloc_loom))]
        {
            self.queue.len() * 4 >= self.queue.capacity()
        }
        #[cfg(arenalloc_loom)]
        {
            let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.len() * 4 >= self.capacity
        }
    }

    /// Whether the queue looks empty (exact when no push is in flight).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        #[cfg(not(arenalloc_loom))]
        {
            self.queue.is_empty()
        }
        #[cfg(arenalloc_loom)]
        {
            self.queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
        }
    }
}
