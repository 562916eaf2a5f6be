//! Registry: thread tokens, the process-wide identity an arena's owner is.
//!
//! A thread that binds to an arena claims a slot in a global registry of
//! `MAX_THREADS` generation counters. Its token is
//! `(slot + 1) << 32 | generation`, where an odd generation means "alive".
//! At thread exit a hook bumps the slot's generation (to even), so every
//! token of that thread dies at once — without touching any heap, which may
//! already be gone. An arena's owner is a token; the owner is alive iff the
//! registry still holds that generation. No hashing, no global lock.
//!
//! The exit hook is `sync::shim_thread_exit!` — a `pthread` key whose value
//! is the slot — and not a `thread_local!` with a destructor: std registers
//! those through glibc's `__cxa_thread_atexit_impl`, which `calloc`s a node
//! per thread, and a token is claimed while the thread binds, when the
//! heap serves its own allocations from the internal pool. That node, one
//! per thread ever bound, exhausted the pool after ~12,500 threads (issue
//! 9, item 1). Claiming a token allocates nothing now, so the number of
//! threads a process may ever create is unbounded.
//!
//! | slot value | meaning |
//! | --- | --- |
//! | even `g` | free; the next claimant makes it `g + 1` |
//! | odd `g` | held by a live thread whose tokens carry `g` |
//!
//! The registry words are `core` atomics (a `static` array; loom's are not
//! const): tokens are claimed and released once per thread, and the models
//! observe their effect only through the arena owner word, which is a loom
//! atomic.

use core::cell::Cell;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::config::{BINDING_WAYS, MAX_THREADS};
use crate::thread::fast_slot::{self, FastSlot};

/// The registry of thread slots (see the module doc's table).
static REGISTRY: [AtomicU32; MAX_THREADS] = [const { AtomicU32::new(0) }; MAX_THREADS];
/// Where the next claim starts looking.
static REGISTRY_HINT: AtomicU32 = AtomicU32::new(0);
/// Source of heap ids: never reused, 0 means "none".
static NEXT_HEAP_ID: AtomicU64 = AtomicU64::new(1);
/// Hands out sharing ordinals.
static NEXT_ORDINAL: AtomicU64 = AtomicU64::new(1);
/// Slots held now: threads alive that ever bound to a heap (the decay
/// thread, which never allocates, is not one of them).
static LIVE: AtomicU32 = AtomicU32::new(0);

/// How many threads that ever bound to a heap are alive (a thread's exit
/// hook releases its slot as its exit begins). The decay thread leaves when
/// this is 0: it must not be what keeps a process alive after its last
/// thread called `pthread_exit` (`heap/purge.rs`).
pub(crate) fn live_threads() -> u32 {
    LIVE.load(Ordering::SeqCst)
}

/// A fresh, process-unique heap id.
pub(crate) fn new_heap_id() -> u64 {
    NEXT_HEAP_ID.fetch_add(1, Ordering::Relaxed)
}

/// Whether the thread that holds `token` is still alive.
pub(crate) fn is_alive(token: u64) -> bool {
    if token == 0 {
        return false;
    }
    let slot = (token >> 32) as usize - 1;
    slot < MAX_THREADS && REGISTRY[slot].load(Ordering::Acquire) == token as u32
}

/// Claims a registry slot; 0 if all are held.
fn claim_slot() -> u64 {
    let start = REGISTRY_HINT.load(Ordering::Relaxed) as usize;
    for i in 0..MAX_THREADS {
        let slot = (start + i) % MAX_THREADS;
        let g = REGISTRY[slot].load(Ordering::Relaxed);
        if g % 2 == 0
            && REGISTRY[slot]
                .compare_exchange(g, g.wrapping_add(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            REGISTRY_HINT.store((slot + 1) as u32, Ordering::Relaxed);
            LIVE.fetch_add(1, Ordering::SeqCst);
            return ((slot as u64 + 1) << 32) | u64::from(g.wrapping_add(1));
        }
    }
    0
}

/// Gives the slot of `token` back: every copy of the token dies.
fn release_slot(token: u64) {
    release_slot_index((token >> 32) as usize - 1);
}

/// Gives slot `slot` back if it is held. Only its holder releases a held
/// (odd) slot and claimants touch only free (even) ones, so the load and
/// the store cannot race with another write.
fn release_slot_index(slot: usize) {
    let Some(word) = REGISTRY.get(slot) else {
        return;
    };
    let g = word.load(Ordering::Relaxed);
    if g % 2 == 1 {
        word.store(g.wrapping_add(1), Ordering::Release);
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Token states of a thread's identity.
const TOKEN_NONE: u64 = 0;
/// The thread's exit has begun (or no slot was free): it owns nothing more.
const TOKEN_DEAD: u64 = u64::MAX;
/// A word that no thread's token word ever holds (it holds `TOKEN_NONE`,
/// `TOKEN_DEAD` or a token, and every token is at least `1 << 32`): what
/// an arena's fast-path owner word (`Arena::fast_owner`) says when no
/// thread may take the fast path, so that the test is one compare with the
/// token word as stored.
pub(crate) const NOT_A_TOKEN: u64 = 2;
const _: () =
    assert!(NOT_A_TOKEN != TOKEN_NONE && NOT_A_TOKEN != TOKEN_DEAD && NOT_A_TOKEN < 1 << 32);

/// Everything the crate keeps per thread, in ONE thread local: the token
/// and ordinal (this module's) and the arena bindings (`thread::cache`'s,
/// opaque words here). One thread local, so that the fast path pays one
/// TLS access — in a shared library (`libarenalloc.so`) each is a call to
/// `__tls_get_addr`. Const-initialised and without a destructor, so it
/// stays readable after the thread's other TLS is gone.
pub(crate) struct ThreadState {
    token: Cell<u64>,
    /// This thread's place in the order threads first needed to share an
    /// arena (0: not yet), for spreading sharers round-robin.
    ordinal: Cell<usize>,
    /// Heap ids of the cached bindings (0: none), most recent first.
    pub(crate) heaps: [Cell<u64>; BINDING_WAYS],
    /// The bound arenas, as addresses (`thread::cache` gives them a type).
    pub(crate) arenas: [Cell<usize>; BINDING_WAYS],
    /// The heap this thread is binding to right now (0: none).
    pub(crate) binding: Cell<u64>,
    /// The fast binding (`thread::cache::fast`): the id of a heap (0:
    /// none) and an arena of it that this thread owns with the owner
    /// cache on and the heap unchecked — that arena's `fast_owner` is this
    /// thread's token — for as long as both are set. Cleared as the
    /// thread's exit begins, with the token. Empty here when the slot is a
    /// thread-local block of its own (`fast_ie.rs`); the fast paths read it
    /// through `fast_binding`.
    pub(crate) fast: FastSlot,
    /// The thread's OS thread id once read (`sys::gettid`), 0 before:
    /// stress-mode records name it (`stress.rs`). A `fork` child's one
    /// thread forgets it (`forget_os_tid`).
    os_tid: Cell<u32>,
}

impl ThreadState {
    const fn new() -> ThreadState {
        ThreadState {
            token: Cell::new(TOKEN_NONE),
            ordinal: Cell::new(0),
            heaps: [const { Cell::new(0) }; BINDING_WAYS],
            arenas: [const { Cell::new(0) }; BINDING_WAYS],
            binding: Cell::new(0),
            fast: FastSlot::new(),
            os_tid: Cell::new(0),
        }
    }

    /// The token word as stored: a token, `TOKEN_NONE` or `TOKEN_DEAD`,
    /// never `NOT_A_TOKEN` (the fast paths compare it with
    /// `Arena::fast_owner`, which holds a token or `NOT_A_TOKEN`).
    #[inline(always)]
    pub(crate) fn token_word(&self) -> u64 {
        self.token.get()
    }

    /// The token if the thread has one and is not exiting, else 0 (as
    /// `current_token`).
    #[inline(always)]
    pub(crate) fn live_token(&self) -> u64 {
        match self.token.get() {
            TOKEN_DEAD => 0,
            t => t,
        }
    }
}

crate::sync::shim_thread_local! {
    static IDENTITY: ThreadState = ThreadState::new();
}

/// Runs `f` on this thread's state; `None` once it is gone.
#[inline(always)]
pub(crate) fn with_state<R>(f: impl FnOnce(&ThreadState) -> R) -> Option<R> {
    IDENTITY.try_with(f).ok()
}

/// This thread's fast binding `(heap id, arena address)`, `(0, 0)` if
/// none or its state is gone: from its own thread-local block where there
/// is one (no `ThreadState` access, no `__tls_get_addr`), else with one
/// access to the thread's state.
#[inline(always)]
pub(crate) fn fast_binding() -> (u64, usize) {
    match fast_slot::read_direct() {
        Some(b) => b,
        None => with_state(|c| c.fast.get()).unwrap_or((0, 0)),
    }
}

crate::sync::shim_thread_exit! {
    /// Releases the thread's registry slot at thread exit; armed with the
    /// slot index + 1 (never 0) when the thread claims it. It gets its own
    /// copy of the slot: exit hooks run in no fixed order, so `IDENTITY`
    /// may be gone already (under loom it is dropped too).
    static EXIT = release_at_exit;
}

/// The exit hook: marks the thread dead (so that an allocation made by a
/// later exit hook claims no new slot, which nothing would release) and
/// releases its slot.
fn release_at_exit(slot_plus_one: usize) {
    let _ = IDENTITY.try_with(|c| {
        c.token.set(TOKEN_DEAD);
        // Before the slot goes: an adopter may own the arena next.
        c.fast.clear();
    });
    release_slot_index(slot_plus_one.wrapping_sub(1));
}

/// This thread's token, claiming a registry slot (and arming the exit
/// hook) on first use; 0 if the thread cannot own arenas (exiting, TLS
/// gone, the registry full, or the hook impossible to arm). Allocates
/// nothing, unless the program had created 32 `pthread` keys before its
/// first allocation (`sync::ThreadExit::arm`); glibc frees that block at
/// thread exit.
pub(crate) fn token() -> u64 {
    IDENTITY
        .try_with(|c| match c.token.get() {
            TOKEN_DEAD => 0,
            TOKEN_NONE => {
                let mut t = claim_slot();
                // A slot whose release cannot be arranged would leak when
                // the thread exits: give it back at once.
                if t != 0 && !EXIT.arm((t >> 32) as usize) {
                    release_slot(t);
                    t = 0;
                }
                c.token.set(if t == 0 { TOKEN_DEAD } else { t });
                t
            }
            t => t,
        })
        .unwrap_or(0)
}

/// This thread's token if it has one and is not exiting, without claiming
/// one: the owner-cache test on the fast path (one TLS load). 0 otherwise.
#[inline]
pub(crate) fn current_token() -> u64 {
    IDENTITY
        .try_with(|c| c.token.get())
        .map_or(0, |t| if t == TOKEN_DEAD { 0 } else { t })
}

/// In a `fork` child, whose only thread is the caller: every other
/// thread's token dies (those threads do not exist here), so their arenas
/// become adoptable and `live_threads` counts what is really alive.
///
/// # Safety
///
/// The calling thread is the only thread of the process.
pub(crate) unsafe fn reset_after_fork() {
    let mine = current_token();
    let my_slot = if mine == 0 {
        usize::MAX
    } else {
        (mine >> 32) as usize - 1
    };
    let mut live = 0;
    for (slot, word) in REGISTRY.iter().enumerate() {
        let g = word.load(Ordering::Relaxed);
        if g % 2 == 1 {
            if slot == my_slot {
                live += 1;
            } else {
                word.store(g.wrapping_add(1), Ordering::Release);
            }
        }
    }
    LIVE.store(live, Ordering::SeqCst);
}

/// This thread's names in a stress-mode report (`stress.rs`): its small
/// id — the registry slot + 1 of its token, 0 for a thread that has none
/// (it never allocated, or is exiting) — and its OS thread id, read once
/// per thread. Claims nothing and allocates nothing.
pub(crate) fn stress_identity() -> (u32, u32) {
    IDENTITY
        .try_with(|c| {
            let small = match c.token.get() {
                TOKEN_DEAD => 0,
                t => (t >> 32) as u32,
            };
            let mut tid = c.os_tid.get();
            if tid == 0 {
                tid = crate::sys::gettid();
                c.os_tid.set(tid);
            }
            (small, tid)
        })
        .unwrap_or_else(|_| (0, crate::sys::gettid()))
}

/// In a `fork` child: the calling thread has a new OS thread id.
pub(crate) fn forget_os_tid() {
    let _ = IDENTITY.try_with(|c| c.os_tid.set(0));
}

/// A number that differs between threads, for spreading threads that must
/// share arenas round-robin. (Not a TLS address: thread stacks, and their
/// TLS, sit at a fixed stride, so every thread got the same arena.)
pub(crate) fn spread() -> usize {
    IDENTITY
        .try_with(|c| {
            if c.ordinal.get() == 0 {
                c.ordinal
                    .set(NEXT_ORDINAL.fetch_add(1, Ordering::Relaxed) as usize);
            }
            c.ordinal.get()
        })
        .unwrap_or(0)
}
