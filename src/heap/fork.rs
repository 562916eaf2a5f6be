//! Fork: a child forked while other threads allocate gets a heap it can
//! use and `check()` — whatever those threads were doing at the instant of
//! the fork. The heap registers its own `pthread_atfork` handlers the first
//! time any heap initialises, so a `#[global_allocator]` heap is covered as
//! the preload library's is.
//!
//! ```text
//!  prepare (parent, forking thread): FORK_LIST lock ─▶ each heap: decay tick
//!          lock, arena table, each arena by id, large-run cache, region
//!  parent: each heap's locks released, then the list's
//!  child:  locks released; registry: the parent's other threads die; each
//!          heap: every arena's batches dropped, a dead owner's cache
//!          dropped, a non-empty queue replaced, and the arena marked for
//!          repair (arena/fork.rs): the first lock holder frees every
//!          stranded REMOTE_PENDING (and, for a dead owner, CACHED) block
//! ```
//!
//! Why the repair: the locks make the *locked* state consistent, but the
//! owner cache and the batches are lock-free and owner-private, and a
//! thread may be anywhere in a push, a pop, a claim or a batch flush when
//! another forks — the child inherits a list whose head and count disagree,
//! a block claimed but in no batch, a queue slot half written. Those
//! threads do not exist in the child, so nobody holds what they held: the
//! child drops their lists and batches wholesale and the block headers,
//! which every such operation writes as one atomic word, say which blocks
//! were stranded. The forking thread itself is inside `fork`, so its own
//! cache is consistent and stays.
//!
//! Invariants: (1) `FORK_LIST` holds exactly the heaps that initialised and
//! have not dropped, linked through `HeapMeta::fork_next`, changed only
//! under `FORK_LOCK`; (2) `prepare` takes `FORK_LOCK` and then every heap's
//! locks in the lock order, and `parent`/`child` release exactly those;
//! (3) no heap lock is ever held while `FORK_LOCK` is taken (init and drop
//! hold none), so the handlers cannot deadlock against a heap user.

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering};

use crate::sync;
use crate::thread::registry;

use super::HeapMeta;

/// Serialises the list of heaps (a spin lock: held for a few stores, or by
/// the forking thread across `fork`).
static FORK_LOCK: AtomicBool = AtomicBool::new(false);
/// The first heap of the list (module doc, invariant 1).
static FORK_LIST: AtomicPtr<HeapMeta> = AtomicPtr::new(ptr::null_mut());
/// Whether the handlers are registered: `HANDLERS_NONE -> BUSY -> DONE`.
static HANDLERS: AtomicU8 = AtomicU8::new(HANDLERS_NONE);
const HANDLERS_NONE: u8 = 0;
const HANDLERS_BUSY: u8 = 1;
const HANDLERS_DONE: u8 = 2;

fn list_lock() {
    while FORK_LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        sync::yield_now();
    }
}

fn list_unlock() {
    FORK_LOCK.store(false, Ordering::Release);
}

/// Every registered heap, under `FORK_LOCK` (caller).
fn each_heap(mut f: impl FnMut(&HeapMeta)) {
    let mut m = FORK_LIST.load(Ordering::Acquire);
    while !m.is_null() {
        // SAFETY: a listed heap is initialised and not dropped: `drop`
        // unlinks it under `FORK_LOCK`, which the caller holds.
        let meta = unsafe { &*m };
        f(meta);
        m = meta.fork_next.load(Ordering::Acquire);
    }
}

/// Links a heap that just initialised into the list and makes sure the
/// process's handlers are registered. Call with no heap lock held: the
/// registration may allocate (glibc's `pthread_atfork` does), which may
/// come back to this very heap.
pub(super) fn register(meta: &HeapMeta) {
    if !sync::FORK_HANDLERS {
        return;
    }
    list_lock();
    meta.fork_next
        .store(FORK_LIST.load(Ordering::Relaxed), Ordering::Relaxed);
    FORK_LIST.store(meta as *const HeapMeta as *mut HeapMeta, Ordering::Release);
    list_unlock();
    if HANDLERS
        .compare_exchange(
            HANDLERS_NONE,
            HANDLERS_BUSY,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok()
    {
        crate::sys::register_atfork(prepare, parent, child);
        HANDLERS.store(HANDLERS_DONE, Ordering::Release);
    }
}

/// Unlinks a heap that is being dropped (a fork in progress finishes first).
pub(super) fn unregister(meta: &HeapMeta) {
    if !sync::FORK_HANDLERS {
        return;
    }
    let me = meta as *const HeapMeta as *mut HeapMeta;
    list_lock();
    let mut link = &FORK_LIST;
    loop {
        let m = link.load(Ordering::Relaxed);
        if m.is_null() {
            break;
        }
        // SAFETY: listed heaps are live (invariant 1; we hold the lock).
        let next = unsafe { &(*m).fork_next };
        if m == me {
            link.store(next.load(Ordering::Relaxed), Ordering::Release);
            break;
        }
        link = next;
    }
    list_unlock();
}

/// `pthread_atfork` prepare: every lock of every heap (invariant 2).
extern "C" fn prepare() {
    list_lock();
    each_heap(HeapMeta::fork_prepare);
}

/// `pthread_atfork` parent: releases what `prepare` took.
extern "C" fn parent() {
    // SAFETY: `prepare` took these locks on this thread.
    each_heap(|m| unsafe { m.fork_release() });
    list_unlock();
}

/// `pthread_atfork` child: releases what the parent's `prepare` took, ends
/// the parent's other threads in the registry and repairs every heap.
extern "C" fn child() {
    // SAFETY: the parent thread this one continues took these locks.
    each_heap(|m| unsafe { m.fork_release() });
    // SAFETY: the child's only thread.
    unsafe { registry::reset_after_fork() };
    registry::forget_os_tid();
    // Every heap forgets what the other threads left before any of them
    // allocates (replacing a stale queue does, perhaps from another heap).
    // SAFETY: the child's only thread, holding no heap lock.
    each_heap(|m| unsafe { m.fork_child_forget() });
    // SAFETY: as above.
    each_heap(|m| unsafe { m.fork_child_queues() });
    // The lock word was copied held; nobody else exists to hold it.
    list_unlock();
}

impl HeapMeta {
    /// Takes every lock of this heap, in the lock order (the decay's tick
    /// lock, the arena table, each arena by id, the large-run cache, the
    /// region). Waits first for arenas being created to be published, so
    /// that exactly the arenas locked here are unlocked by `fork_release`.
    fn fork_prepare(&self) {
        // The decay's lock first (the lock order): a tick in flight ends.
        self.decay_lock().lock();
        self.arena_lock.lock();
        for id in 0..self.arena_count() as u32 {
            // Creation reserves under the table lock, then publishes without
            // taking any heap lock: it finishes without us.
            let arena = loop {
                match self.arena(id) {
                    Some(a) => break a,
                    None => sync::yield_now(),
                }
            };
            // An owner slot's lock is its arena's, locked by id already.
            if arena.has_index() {
                arena.raw_lock().lock();
            }
        }
        self.large.raw_lock().lock();
        self.region.raw_lock().lock();
    }

    /// Releases what `fork_prepare` took.
    ///
    /// # Safety
    ///
    /// This thread called `fork_prepare` (or is the fork child of the
    /// thread that did) and has not released since.
    unsafe fn fork_release(&self) {
        // SAFETY: `fork_prepare` took each of these locks (caller), and the
        // arena count could not change while it held the table lock.
        unsafe {
            self.region.raw_lock().unlock();
            self.large.raw_lock().unlock();
            for arena in self.indexes() {
                arena.raw_lock().unlock();
            }
            self.arena_lock.unlock();
            self.decay_lock().unlock();
        }
    }

    /// The child's first step (module doc): every arena forgets the
    /// lock-free state of the threads that did not come along and is
    /// marked for repair; the decay thread is forgotten. Allocates nothing.
    ///
    /// # Safety
    ///
    /// The calling thread is the child's only thread and holds no lock of
    /// this heap.
    unsafe fn fork_child_forget(&self) {
        let me = registry::current_token();
        for arena in self.arenas() {
            // A reclaim the decay thread had begun is abandoned with it.
            arena.abandon_reclaim();
            // SAFETY: the only thread (caller).
            unsafe { arena.forget_batches_after_fork(me) };
        }
        // Every arena now knows whether any of its owners was left behind.
        for arena in self.arenas() {
            // SAFETY: the only thread (caller).
            unsafe { arena.forget_cache_after_fork() };
        }
        self.decay_after_fork();
    }

    /// The child's second step: stale queues replaced (allocating).
    ///
    /// # Safety
    ///
    /// As for `fork_child_forget`, which ran on every heap first.
    unsafe fn fork_child_queues(&self) {
        for arena in self.indexes() {
            // SAFETY: the only thread, holding no lock and no queue reference.
            unsafe { arena.replace_stale_queue(self.config.get_remote_queue_capacity()) };
        }
    }
}
