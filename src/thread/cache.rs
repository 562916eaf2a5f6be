//! Cache: each thread's bindings (heap id -> arena), the first thing every
//! allocation reads.
//!
//! A small `BINDING_WAYS`-entry cache kept in the registry's one
//! const-initialised, destructor-free thread local (`ThreadState`), so it
//! stays readable after the thread's other TLS is gone and the slow paths
//! read binding and token with one TLS access: entry 0 holds the most
//! recent heap. The fast paths read only the thread's *fast binding*
//! (`fast`), kept in the registry's fast slot: with the
//! `initial-exec-tls` feature on x86-64 Linux a thread-local block of its
//! own, read at `%fs:offset` with no call even in a shared object
//! (`thread/fast_ie.rs`), else two cells of the same thread local. A heap id is unique for the life of
//! the process (never reused), so a stale entry of a dropped heap is never
//! matched, and its arena pointer is never followed.
//!
//! **Reentrancy.** `binding` names the heap this thread is binding to right
//! now; an allocation from that heap while it is set (the arena's queue
//! buffer, when the heap is the global allocator) is served from the heap's
//! internal pool instead of recursing.

use crate::arena::Arena;
use crate::config::BINDING_WAYS as WAYS;
use crate::thread::registry;

/// The arena this thread is bound to in heap `heap`, if cached.
#[inline]
pub(crate) fn cached_arena(heap: u64) -> Option<*const Arena> {
    binding(heap).map(|(a, _)| a)
}

/// The arena this thread is bound to in heap `heap`, if cached, and the
/// thread's live token (0 if none): both from one TLS access, for the
/// slow paths, which also make it the fast binding if the thread owns it
/// (`fast`).
///
/// `heap` is the id of a live heap (the caller's), so a matching entry is
/// an arena of it.
#[inline(always)]
pub(crate) fn binding(heap: u64) -> Option<(*const Arena, u64)> {
    registry::with_state(|c| {
        let i = (0..WAYS).find(|&i| c.heaps[i].get() == heap)?;
        if i != 0 {
            // Move the hit to the front.
            c.heaps[0].swap(&c.heaps[i]);
            c.arenas[0].swap(&c.arenas[i]);
        }
        let a = c.arenas[0].get() as *const Arena;
        note_fast(c, heap, a);
        Some((a, c.live_token()))
    })
    .flatten()
}

/// Makes `(heap, a)` the thread's fast binding if the thread owns `a`'s
/// cache on an unchecked heap (`Arena::fast_owner` is its token word).
#[inline(always)]
fn note_fast(c: &registry::ThreadState, heap: u64, a: *const Arena) {
    // SAFETY: `a` is an arena of heap `heap`, which is live (callers).
    if unsafe { (*a).fast_owner() } == c.token_word() {
        c.fast.set(heap, a as usize);
    }
}

/// The fast paths' view of the thread: its fast binding, a heap id and an
/// arena of that heap whose owner cache this thread owns on an unchecked
/// heap; `(0, null)` if it has none or its TLS is gone (0 is no heap's
/// id). The caller compares the id itself, after the TLS read, so that
/// nothing needs to survive the TLS access (a call to `__tls_get_addr` in
/// a shared object without the initial-exec slot); a match means "this arena's cache is mine", with
/// no load of the arena's owner word.
///
/// Why that holds: the slow paths set the fast binding only to an arena
/// whose `fast_owner` equals the thread's token word (`note_fast`), which
/// is a token only while the cache is on and the heap unchecked (fixed for
/// the arena's life) and the thread owns the arena; a live thread keeps
/// its arena until it exits (ownership changes only from a dead token),
/// and the exit hook clears the fast binding as it kills the token, before
/// it releases the slot an adopter waits for. A heap id is never reused,
/// so a dropped heap's fast binding never matches another heap.
#[inline(always)]
pub(crate) fn fast() -> (u64, *const Arena) {
    let (heap, arena) = registry::fast_binding();
    (heap, arena as *const Arena)
}

/// Records a binding at the front of the cache (evicting the oldest).
pub(crate) fn cache_arena(heap: u64, arena: *const Arena) {
    let _ = registry::with_state(|c| {
        for i in (1..WAYS).rev() {
            c.heaps[i].set(c.heaps[i - 1].get());
            c.arenas[i].set(c.arenas[i - 1].get());
        }
        c.heaps[0].set(heap);
        c.arenas[0].set(arena as usize);
        note_fast(c, heap, arena);
    });
}

/// Marks this thread as binding to heap `heap` (0: done). Returns the
/// previous mark, or `None` if the thread's TLS is gone.
pub(crate) fn set_binding(heap: u64) -> Option<u64> {
    registry::with_state(|c| c.binding.replace(heap))
}

/// Whether this thread is in the middle of binding to heap `heap`.
pub(crate) fn is_binding(heap: u64) -> bool {
    registry::with_state(|c| c.binding.get() == heap).unwrap_or(false)
}
