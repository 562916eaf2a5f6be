//! The heap's stress-mode paths (`Config::stress`; `docs/DESIGN.md`,
//! "Stress mode"): where `alloc`, `free`, `realloc` and the queries go when
//! the one `meta.stress_on()` branch on their slow paths says so.
//!
//! ```text
//! malloc ─▶ alloc_impl ─▶ (fast path: fast_owner is NOT_A_TOKEN) ─▶ alloc_slow
//!   └─ alloc_with: stress_on ─▶ stress_alloc (calloc: alloc_zeroed_impl ─▶ stress_alloc)
//!        bind ─▶ Shared::inject_failure? ─▶ null, nothing carved           stress.rs
//!        ├─ request + redzone + RECORD in an arena: lock ─▶ ArenaState::stress_alloc   arena/quarantine.rs
//!        └─ else large::alloc, then the record and fills                                stress.rs
//!        null: reclaim once and retry (no second injection decision)
//!        ─▶ Shared::jitter (no lock held) ─▶ return
//! free ─▶ free_slow: stress_on ─▶ stress_free
//!   ├─ arena block (any thread's): ITS arena's lock ─▶ find_live ─▶ ArenaState::stress_free
//!   │     verify redzone, poison, quarantine; evict the oldest past the limit (verify poison)
//!   ├─ large: verify redzone ─▶ large::free (no quarantine)
//!   └─ ─▶ Shared::jitter (no lock held) ─▶ return
//! realloc ─▶ stress_realloc: always moves (old request from its record), free verifies;
//!            an injected failure of the new block returns null, the old one untouched
//! ```
//!
//! Invariants:
//! * With stress on, no block is ever in an owner cache, a remote batch or
//!   a remote queue: the cache is off (`Config::resolved`), and a free of
//!   another arena's block takes that arena's lock instead of claiming it
//!   (the queue-full fallback, always). So a record is only ever read or
//!   written under the lock of the block's arena (or by the thread that
//!   holds the live block: a large run), and a quarantined block is
//!   quarantined in its own arena.
//! * Double and invalid frees are decided exactly as with the mode off
//!   (`find_live_word`: a quarantined block is not live).
//! * Nothing here allocates from a lock; reports are `stress::report`.
//! * Large runs (> 1 MiB reserved) get the record, the fills and the
//!   redzone check on free and realloc, but no quarantine (they go back to
//!   the run cache at once) and `check()` does not walk their redzones.
//! * An injected failure is decided once per allocation call, after the
//!   thread is bound (so its small id is known) and only when it is not
//!   binding (the runtime's own allocations while it binds never fail),
//!   before anything is carved: it changes no heap state but the counters.
//!   Jitter runs only after every lock is let go.

use core::ptr;

use super::bind::Bound;
use super::meta::{locate, HeapMeta, Owner};
use super::Heap;
use crate::arena;
use crate::block::GRANULE;
use crate::error::{abort_on_free_error, FreeError};
use crate::large;
use crate::stress::{self, Body, Who};
use crate::thread::cache;

impl Heap {
    /// A stress-mode allocation (module doc); `zeroed`: for `calloc`. The
    /// whole slow path: an injected failure, the allocation, one reclaim
    /// and retry on exhaustion, the decay kick, jitter.
    #[cold]
    #[inline(never)]
    pub(super) fn stress_alloc(
        &self,
        meta: &HeapMeta,
        size: usize,
        align: usize,
        zeroed: bool,
    ) -> *mut u8 {
        let (p, who) = match self.stress_alloc_once(meta, size, align, zeroed, true) {
            // An injected failure is final: no reclaim, no second decision.
            Err(who) => (ptr::null_mut(), who),
            Ok((p, who)) if p.is_null() => {
                let space = meta.reclaim(crate::arena::purge::Step::Space);
                let retried = (space.chunks != 0)
                    .then(|| self.stress_alloc_once(meta, size, align, zeroed, false));
                (retried.and_then(Result::ok).map_or(p, |(p, _)| p), who)
            }
            Ok(done) => done,
        };
        meta.kick_decay();
        meta.stress.jitter(meta.id, who.thread);
        p
    }

    /// One try of `stress_alloc`: the block (null on exhaustion) and the
    /// caller, or `Err(caller)` when injection failed it. `may_fail`:
    /// whether injection decides this try.
    fn stress_alloc_once(
        &self,
        meta: &HeapMeta,
        size: usize,
        align: usize,
        zeroed: bool,
        may_fail: bool,
    ) -> Result<(*mut u8, Who), Who> {
        let s = meta.config.get_stress();
        let Some(reserve) = stress::reserve(size, s.get_redzone()) else {
            return Ok((ptr::null_mut(), Who::current()));
        };
        // Bound first, large requests too, so that the thread has its
        // token (its small id) before the record names it.
        let arena = match cache::binding(meta.id) {
            // SAFETY: the cache matched this heap's id: an arena of it.
            Some((a, _)) => Some(unsafe { &*a }),
            None => match self.bind_slow(meta) {
                Bound::Arena(a) => Some(a),
                Bound::Internal if arena::arena_serves(size, align) => {
                    return Ok((meta.internal_alloc(size, align), Who::current()))
                }
                Bound::None if arena::arena_serves(reserve, align) => {
                    return Ok((ptr::null_mut(), Who::current()))
                }
                Bound::Internal | Bound::None => None,
            },
        };
        let who = Who::current();
        if may_fail
            && !cache::is_binding(meta.id)
            && meta.stress.inject_failure(&s, meta.id, who.thread, size)
        {
            return Err(who);
        }
        let p = if let Some(arena) = arena.filter(|_| arena::arena_serves(reserve, align)) {
            let mut st = arena.lock_and_drain_some(&meta.region);
            // SAFETY: `arena_serves(reserve, align)`; the lock is held.
            let p =
                unsafe { st.stress_alloc(&meta.region, size, reserve, align, who, &meta.stress) };
            drop(st);
            if !p.is_null() && zeroed {
                // SAFETY: a fresh block of at least `size` bytes.
                unsafe { ptr::write_bytes(p, 0, size) };
            }
            p
        } else {
            let p = large::alloc(&meta.region, &meta.large, reserve, align, zeroed);
            if let Some(body) = large_body(meta, p) {
                let fill = (!zeroed).then_some(s.get_alloc_fill());
                body.stamp_alloc(size, s.get_redzone(), who, meta.stress.next_seq(), fill);
            }
            p
        };
        if !p.is_null() {
            meta.stress.count_live(&s, size, true);
        }
        Ok((p, who))
    }

    /// A stress-mode free (module doc).
    ///
    /// # Safety
    ///
    /// As for [`Heap::free`]; `ptr` is not null.
    #[cold]
    #[inline(never)]
    pub(super) unsafe fn stress_free(
        &self,
        meta: &HeapMeta,
        ptr: *mut u8,
    ) -> Result<(), FreeError> {
        // SAFETY: forwarded.
        let done = unsafe { self.stress_free_now(meta, ptr) };
        meta.stress.jitter(meta.id, Who::current().thread);
        done
    }

    /// `stress_free` but for the jitter.
    ///
    /// # Safety
    ///
    /// As for `stress_free`.
    unsafe fn stress_free_now(&self, meta: &HeapMeta, ptr: *mut u8) -> Result<(), FreeError> {
        let s = meta.config.get_stress();
        match locate(meta, ptr as usize)? {
            Owner::Arena(arena) => {
                if ptr as usize % GRANULE != 0 {
                    return Err(FreeError::NotAllocated);
                }
                // A thread that frees before it ever allocated gets its
                // token (its small id) as an allocation would.
                if cache::binding(meta.id).is_none() {
                    let _ = self.bind_slow(meta);
                }
                let who = Who::current();
                let mut st = arena.lock_and_drain_some(&meta.region);
                // SAFETY: `ptr` is aligned and in a chunk of `arena`; the
                // lock is held; the block found is live and the caller's.
                unsafe {
                    let (b, w) = st.find_live_word(ptr)?;
                    meta.stress.count_live(&s, st.stress_request(b), false);
                    st.stress_free(&meta.region, b, w, who, &meta.stress);
                }
                Ok(())
            }
            Owner::Large => {
                let live = large::containing(&meta.region, ptr as usize)
                    .is_some_and(|(p, _)| p == ptr as usize);
                if live {
                    if let Some(body) = large_body(meta, ptr) {
                        let found = match body.record() {
                            None => Some(body.record_finding()),
                            Some(mut rec) => {
                                meta.stress.count_live(&s, rec.request as usize, false);
                                rec.free = Who::current();
                                rec.free_seq = meta.stress.next_seq();
                                let request = rec.request as usize;
                                body.first_not(
                                    request,
                                    body.redzone_end(request, s.get_redzone()),
                                    stress::REDZONE_FILL,
                                )
                                .map(|off| body.finding(stress::Kind::Overflow, off, rec))
                            }
                        };
                        if let Some(f) = found {
                            stress::report(&f, &s, &meta.stress);
                        }
                    }
                }
                // SAFETY: forwarded; `large::free` classifies `ptr`.
                unsafe { large::free(&meta.region, &meta.large, ptr) }
            }
            Owner::Pool(..) => meta.pool_free(ptr as usize),
        }
    }

    /// A stress-mode `realloc`: always a new block (so a stale pointer to
    /// the old one lands in quarantine), the old request's bytes copied,
    /// the old block freed (its redzone verified).
    ///
    /// # Safety
    ///
    /// As for `realloc_impl`; `ptr` is not null.
    pub(super) unsafe fn stress_realloc(
        &self,
        meta: &HeapMeta,
        ptr: *mut u8,
        size: usize,
        align: usize,
    ) -> *mut u8 {
        let old = match locate(meta, ptr as usize) {
            Ok(Owner::Pool(_, usable)) => usable,
            Ok(Owner::Arena(arena)) => {
                if ptr as usize % GRANULE != 0 {
                    abort_on_free_error(FreeError::NotAllocated, ptr);
                }
                let st = arena.lock();
                // SAFETY: `ptr` is aligned and in `arena`'s chunk; lock held.
                match unsafe { st.find_live(ptr) } {
                    // SAFETY: `b` is live and ours; lock held.
                    Ok(b) => unsafe { st.stress_request(b) },
                    Err(e) => {
                        drop(st);
                        abort_on_free_error(e, ptr)
                    }
                }
            }
            Ok(Owner::Large) => match large::containing(&meta.region, ptr as usize) {
                Some((p, usable)) if p == ptr as usize => large_body(meta, ptr)
                    .and_then(|b| b.record())
                    .map_or(usable, |r| r.request as usize),
                _ => {
                    // SAFETY: classification only: `ptr` is no live payload.
                    let e = unsafe { large::free(&meta.region, &meta.large, ptr) }.err();
                    abort_on_free_error(e.unwrap_or(FreeError::NotAllocated), ptr)
                }
            },
            Err(e) => abort_on_free_error(e, ptr),
        };
        // SAFETY: forwarded; `old` is what `ptr`'s block holds.
        unsafe { self.realloc_by_moving(ptr, old, size, align) }
    }

    /// Verifies every arena's quarantined blocks (poison) and live blocks
    /// (redzone, record) now, each arena under its lock, reporting every
    /// finding (`Stress::keep_going` decides whether the first aborts).
    /// Returns how many it found; 0 on a heap without stress mode. The
    /// preload library runs it at exit.
    pub fn stress_verify(&self) -> usize {
        let Some(meta) = self.meta_if_ready() else {
            return 0;
        };
        if !meta.stress_on() {
            return 0;
        }
        meta.indexes()
            .map(|arena| {
                let st = arena.lock_drained(&meta.region);
                st.stress_sweep(&meta.stress)
            })
            .sum()
    }
}

impl Heap {
    /// Allocations that failed by injection so far (`Stress::fail_every`,
    /// `fail_rate`, `fail_after`); 0 on a heap without stress mode.
    pub fn injected_failures(&self) -> u64 {
        self.meta_if_ready()
            .filter(|m| m.stress_on())
            .map_or(0, |m| m.stress.injected().0)
    }

    /// The seed stress mode's failure injection and jitter draw from:
    /// [`Stress::seed`](crate::Stress::seed) if it was given, else the one
    /// the heap drew when it initialised — give it back as `seed=` to
    /// replay a run. `None` before the first allocation and without stress
    /// mode.
    ///
    /// ```
    /// use arenalloc::{Config, Heap, Stress};
    /// let heap = Heap::with_config(Config::new().stress(Stress::new().fail_rate(0.5)));
    /// let run = |heap: &Heap| (0..64).map(|_| heap.malloc(8).is_null()).collect::<Vec<_>>();
    /// let first = run(&heap);
    /// let seed = heap.stress_seed().unwrap();
    /// let replay = Heap::with_config(Config::new().stress(Stress::new().fail_rate(0.5).seed(seed)));
    /// assert_eq!(run(&replay), first);
    /// ```
    pub fn stress_seed(&self) -> Option<u64> {
        self.meta_if_ready()
            .filter(|m| m.stress_on())
            .map(|m| m.stress.seed().0)
    }

    /// Ends stress mode's failure injection and schedule jitter for the
    /// rest of the heap's life (the other checks go on): for code that must
    /// allocate for sure from here on — the preload library calls it at
    /// exit, before its reports, which allocate.
    pub fn end_injection(&self) {
        if let Some(meta) = self.meta_if_ready() {
            meta.stress.end();
        }
    }

    /// Writes what failure injection and jitter did, if either is set: the
    /// injected failures in all and per thread (the heap's small ids, as
    /// reports name them), the seed (and, when it was drawn, how to replay
    /// it), the calls jitter delayed. Returns the injected failures. The
    /// preload library writes it at exit in stress mode.
    ///
    /// ```text
    /// arenalloc: injected 7 allocation failures (thread 1: 3, thread 2: 4)
    /// arenalloc: jitter delayed 1520 calls
    /// arenalloc: seed 8034419221447326125 (drawn; replay with seed=8034419221447326125 in ARENALLOC_STRESS, or Stress::seed)
    /// ```
    pub fn stress_injection_report(&self, out: &mut dyn std::io::Write) -> std::io::Result<u64> {
        let Some(meta) = self.meta_if_ready().filter(|m| m.stress_on()) else {
            return Ok(0);
        };
        let s = meta.config.get_stress();
        let (total, by_thread) = meta.stress.injected();
        let mut text = String::new();
        if s.injects() {
            let threads: Vec<String> = by_thread
                .map(|(id, n)| {
                    let plus = if id as usize == crate::config::INJECT_THREADS - 1 {
                        " and above"
                    } else {
                        ""
                    };
                    format!("thread {id}{plus}: {n}")
                })
                .collect();
            text += &format!(
                "arenalloc: injected {total} allocation failure{}",
                if total == 1 { "" } else { "s" }
            );
            if !threads.is_empty() {
                text += &format!(" ({})", threads.join(", "));
            }
            text.push('\n');
        }
        if s.get_jitter() {
            text += &format!(
                "arenalloc: jitter delayed {} calls\n",
                meta.stress.jittered()
            );
        }
        if !text.is_empty() {
            let (seed, given) = meta.stress.seed();
            text += &format!("arenalloc: seed {seed}");
            if !given {
                text += &format!(
                    " (drawn; replay with seed={seed} in ARENALLOC_STRESS, or Stress::seed)"
                );
            }
            text.push('\n');
        }
        out.write_all(text.as_bytes())?;
        Ok(total)
    }
}

/// The stress body of the live large allocation at `p` (null: none).
pub(super) fn large_body(meta: &HeapMeta, p: *mut u8) -> Option<Body> {
    if p.is_null() {
        return None;
    }
    let (payload, usable) = large::containing(&meta.region, p as usize)?;
    // SAFETY: a live large run's `usable` bytes from `payload` are
    // committed and belong to the caller, which holds the allocation.
    unsafe { Body::new(payload as *mut u8, usable) }
}

/// The usable size a query reports for an arena block in stress mode (its
/// request), or `None` if `addr` is past it.
pub(super) fn stress_usable(payload: usize, request: usize, addr: usize) -> Option<usize> {
    (addr < payload + request.max(1)).then_some(request)
}
