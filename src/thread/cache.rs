//! Cache: each thread's bindings (heap id -> arena), the first thing every
//! allocation reads.
//!
//! A small `BINDING_WAYS`-entry cache kept in the registry's one
//! const-initialised, destructor-free thread local (`ThreadState`), so it
//! stays readable after the thread's other TLS is gone and the fast path
//! reads binding and token with one TLS access. The fast path is one TLS access and one compare:
//! entry 0 holds the most recent heap. A heap id is unique for the life of
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
/// owner-cache fast path.
#[inline(always)]
pub(crate) fn binding(heap: u64) -> Option<(*const Arena, u64)> {
    registry::with_state(|c| {
        if c.heaps[0].get() == heap {
            return Some((c.arenas[0].get() as *const Arena, c.live_token()));
        }
        (1..WAYS).find(|&i| c.heaps[i].get() == heap).map(|i| {
            // Move the hit to the front.
            c.heaps[0].swap(&c.heaps[i]);
            c.arenas[0].swap(&c.arenas[i]);
            (c.arenas[0].get() as *const Arena, c.live_token())
        })
    })
    .flatten()
}

/// The fast paths' view of the binding cache: the front entry's heap id
/// and arena, and the thread's token word as stored (`token_word`: dead
/// and absent tokens included, which no arena's `fast_owner` ever equals);
/// `(0, null, 0)` once the thread's TLS is gone (0 is no heap's id). The
/// caller compares the id itself, after the TLS read, so that nothing
/// needs to survive the TLS access (in a library built for dynamic
/// linking it is a call). No move to the front: a binding in another entry
/// takes the slow path, which moves it there.
#[inline(always)]
pub(crate) fn front() -> (u64, *const Arena, u64) {
    registry::with_state(|c| {
        (
            c.heaps[0].get(),
            c.arenas[0].get() as *const Arena,
            c.token_word(),
        )
    })
    .unwrap_or((0, core::ptr::null(), 0))
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
