//! Bind: which arena a thread allocates from (DESIGN: Threads).
//!
//! A thread with no cached binding for this heap takes, in order: the arena
//! (or owner slot) it owns; an orphan whose owner exited (adoption: drain
//! its queue first); a new arena, up to `max_arenas` — with an index of its
//! own, or past `max_indexes` an owner slot in front of an existing one's
//! (`HeapMeta::create_arena`); else a shared one, with no cache, spread
//! round-robin by the thread's ordinal. While it binds, `cache::set_binding` marks it,
//! so an allocation from this heap made meanwhile (the new arena's queue
//! buffer, a TLS destructor list) is served from the internal pool instead
//! of recursing.
//!
//! Invariant: binding never holds a heap lock while it allocates; the only
//! waits are for an arena slot another thread reserved and is publishing,
//! which finishes without needing anything from us.

use crate::arena::Arena;
use crate::sync;
use crate::thread::{cache, registry};

use super::{Heap, HeapMeta};

/// What a thread without a cached arena gets.
pub(super) enum Bound<'a> {
    Arena(&'a Arena),
    /// The thread is binding to this very heap: serve from the pool.
    Internal,
    /// No arena could be had.
    None,
}

impl Heap {
    /// Binds the calling thread to an arena of this heap (module doc).
    #[cold]
    #[inline(never)]
    pub(super) fn bind_slow<'m>(&self, meta: &'m HeapMeta) -> Bound<'m> {
        if cache::is_binding(meta.id) {
            return Bound::Internal;
        }
        let previous = cache::set_binding(meta.id);
        let token = registry::token();
        let chosen = meta.choose_arena(token, previous.is_some());
        if let Some(prev) = previous {
            cache::set_binding(prev);
        }
        match chosen {
            Some(a) => {
                cache::cache_arena(meta.id, a);
                Bound::Arena(a)
            }
            None => Bound::None,
        }
    }
}

impl HeapMeta {
    /// Picks the arena for a thread that has none cached (module doc,
    /// Threads): the one it owns, else an orphan it adopts, else a new one,
    /// else a shared one. `may_create` is false when the thread cannot mark
    /// itself as binding (its TLS is gone), since creating would recurse.
    fn choose_arena(&self, token: u64, may_create: bool) -> Option<&Arena> {
        if token != 0 {
            if let Some(a) = self.arenas().find(|a| a.is_owned_by(token)) {
                return Some(a);
            }
            if let Some(a) = self.arenas().find(|a| a.try_adopt(token)) {
                // Adoption sends out the batches of remote frees the last
                // owner left unsent, and drains what was freed into the
                // arena meanwhile.
                a.flush_batches(&self.region, |id| self.arena(id));
                drop(a.lock_drained(&self.region));
                return Some(a);
            }
        }
        if may_create {
            if let Some(a) = self.create_arena(token) {
                return Some(a);
            }
        }
        // Share. A slot may be reserved but not yet published (another
        // thread is building its queue, with no heap lock held and without
        // needing anything from us): wait for it rather than fail, since it
        // may be the only arena there will ever be.
        let n = self.arena_count();
        let first = registry::spread() % n.max(1);
        loop {
            let shared = (0..n)
                .map(|i| (first + i) % n)
                .find_map(|id| self.arena(id as u32));
            if shared.is_some() || n == 0 {
                return shared;
            }
            sync::yield_now();
        }
    }
}
