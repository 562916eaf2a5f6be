//! Fork: a process that forks while other threads allocate must not leave
//! a lock held by a thread that does not exist in the child. The preload
//! library calls these from `pthread_atfork` handlers.
//!
//! Invariant: `fork_prepare` takes every heap lock in the lock order (the
//! decay's tick lock, the arena table, each arena by id, the large-run
//! cache, the region) and the same set is released
//! by `fork_parent` / `fork_child`; the child then replaces any remote queue
//! a push in flight may have left half-written.

use crate::sync;

use super::Heap;

/// `fork` support (module doc).
impl Heap {
    /// Takes every lock of this heap, in the lock order (the arena table,
    /// each arena by id, the region). Waits first for arenas being created
    /// to be published, so that exactly the arenas locked here are unlocked
    /// by `fork_parent` / `fork_child`.
    ///
    /// # Safety
    ///
    /// Must be followed, on the same thread and before any other use of
    /// this heap by it, by [`Heap::fork_parent`] (in the parent) or
    /// [`Heap::fork_child`] (in the child).
    pub unsafe fn fork_prepare(&self) {
        let Some(meta) = self.meta_if_ready() else {
            return;
        };
        // The decay's lock first (the lock order): a tick in flight ends.
        meta.decay_lock().lock();
        meta.arena_lock.lock();
        for id in 0..meta.arena_count() as u32 {
            // Creation reserves under the table lock, then publishes without
            // taking any heap lock: it finishes without us.
            let arena = loop {
                match meta.arena(id) {
                    Some(a) => break a,
                    None => sync::yield_now(),
                }
            };
            arena.raw_lock().lock();
        }
        meta.large.raw_lock().lock();
        meta.region.raw_lock().lock();
    }

    /// Releases what `fork_prepare` took, in the parent.
    ///
    /// # Safety
    ///
    /// The calling thread called `fork_prepare` and has not released since.
    pub unsafe fn fork_parent(&self) {
        // SAFETY: forwarded.
        unsafe { self.fork_release() }
    }

    /// Releases what `fork_prepare` took, in the child, then replaces any
    /// remote queue a push in flight at the fork may have left half-written
    /// (its pending blocks are leaked in the child).
    ///
    /// # Safety
    ///
    /// The calling thread is the child's only thread and its parent called
    /// `fork_prepare` before forking.
    pub unsafe fn fork_child(&self) {
        // SAFETY: forwarded; the locks were taken by the parent thread this
        // thread continues.
        unsafe { self.fork_release() };
        // SAFETY: the only thread of the child (caller).
        unsafe { crate::thread::registry::reset_after_fork() };
        crate::thread::registry::forget_os_tid();
        let Some(meta) = self.meta_if_ready() else {
            return;
        };
        for arena in meta.arenas() {
            // SAFETY: the only thread (caller), holding no queue reference.
            unsafe { arena.reset_after_fork(meta.config.get_remote_queue_capacity()) };
            // A reclaim the decay thread had begun is abandoned with it.
            arena.abandon_reclaim();
        }
        meta.decay_after_fork();
    }

    unsafe fn fork_release(&self) {
        let Some(meta) = self.meta_if_ready() else {
            return;
        };
        // SAFETY: `fork_prepare` took each of these locks (caller), and the
        // arena count could not change while it held the table lock.
        unsafe {
            meta.region.raw_lock().unlock();
            meta.large.raw_lock().unlock();
            for arena in meta.arenas() {
                arena.raw_lock().unlock();
            }
            meta.arena_lock.unlock();
            meta.decay_lock().unlock();
        }
    }
}
