//! The decay clock: the epoch every arena dates its dirty pages by, the
//! flag that asks for a tick, and the futex word the decay thread parks on
//! between requests. The thread itself, its states and what a tick does
//! are in `heap/purge.rs`; one arena's step in `arena/purge.rs`.
//!
//! ```text
//!  free / remote free / chunk emptied ─▶ want()   (a flag; wakes a parked thread)
//!  decay thread: take_wanted(), advance() ─▶ a tick over every arena
//!  two ticks with nothing to do ─▶ park() on `wanted` until the next want()
//! ```
//!
//! The clock rides in the heap's [`Region`](crate::region::Region)
//! (`region.decay`) because every path that frees memory — arena, large
//! runs, remote frees — already holds the region, and nothing above it.
//!
//! Invariants:
//! * `epoch` only grows, by one per tick ([`DecayClock::advance`]); it is
//!   read `Relaxed` (a date, not a synchronisation).
//! * `wanted` is 1 when something waits for the decay (dirty pages, a
//!   kept empty chunk, remote frees nobody applied, a cached large run),
//!   else 0; each tick clears it first and sets it again if work is left.
//! * No request is lost: a requester sets `wanted` and then reads
//!   `parked`; the thread sets `parked` and then reads `wanted` (all
//!   `SeqCst`, and the kernel re-checks the word before sleeping): one of
//!   them sees the other, so either the thread does not sleep or the
//!   requester wakes it.
//! * A request costs no lock: a load, and a swap and a `futex` wake only
//!   for the first request after the thread parked, so it is safe wherever
//!   `free` is called from.
//!
//! The words are `core` atomics, not loom's: under loom no decay thread
//! exists (`sync::BACKGROUND_THREADS`) and no model depends on them.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::sys;

/// One heap's decay clock (module doc).
pub(crate) struct DecayClock {
    /// Ticks so far (`heap/purge.rs` advances it; arenas date their dirty
    /// pages by it, `arena/purge.rs`).
    epoch: AtomicU64,
    /// 1 when something waits for the decay, else 0; cleared by each
    /// tick. Also the futex word a parked decay thread sleeps on.
    wanted: AtomicU32,
    /// The decay thread is parked (or about to be) on `wanted`: a request
    /// must wake it (module doc: no request is lost).
    parked: AtomicBool,
}

impl DecayClock {
    /// A clock at epoch 0, nothing asked for, no thread parked.
    pub(crate) const fn new() -> DecayClock {
        DecayClock {
            epoch: AtomicU64::new(0),
            wanted: AtomicU32::new(0),
            parked: AtomicBool::new(false),
        }
    }

    /// The current epoch.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Advances the clock by one tick; returns the new epoch.
    pub(crate) fn advance(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Asks for a decay tick (see `wanted`), waking a parked decay
    /// thread: one `futex` wake per request after it parked, a system call
    /// that takes no lock, so safe wherever `free` is called from. A load
    /// first, so that many arenas asking do not bounce the line.
    #[inline]
    pub(crate) fn want(&self) {
        if self.wanted.load(Ordering::Relaxed) == 0
            && self.wanted.swap(1, Ordering::SeqCst) == 0
            && self.parked.load(Ordering::SeqCst)
        {
            sys::futex_wake(&self.wanted);
        }
    }

    /// Whether a decay tick was asked for.
    #[inline(always)]
    pub(crate) fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed) != 0
    }

    /// Takes the request for a decay tick (the tick is about to run).
    pub(crate) fn take_wanted(&self) -> bool {
        self.wanted.swap(0, Ordering::SeqCst) != 0
    }

    /// The decay thread parks until the next request: returns `true` at
    /// once if one came in (or comes in while it parks), else after a
    /// wake-up; returns `false` when `leave` says so, which it asks every
    /// `check_ns`. `leave` is checked after publishing `parked`, so a
    /// shutdown that sets it and then calls [`DecayClock::wake`] is never
    /// missed.
    pub(crate) fn park(&self, check_ns: u64, leave: impl Fn() -> bool) -> bool {
        self.parked.store(true, Ordering::SeqCst);
        let mut stay = true;
        while self.wanted.load(Ordering::SeqCst) == 0 {
            if leave() {
                stay = false;
                break;
            }
            sys::futex_wait_for(&self.wanted, 0, check_ns);
        }
        self.parked.store(false, Ordering::SeqCst);
        stay
    }

    /// Wakes a parked decay thread whatever it waits for (shutdown).
    pub(crate) fn wake(&self) {
        self.wanted.store(1, Ordering::SeqCst);
        sys::futex_wake_n(&self.wanted, i32::MAX);
    }

    /// Whether the decay thread is parked.
    pub(crate) fn is_parked(&self) -> bool {
        self.parked.load(Ordering::Relaxed)
    }

    /// In a `fork` child: no decay thread is parked.
    pub(crate) fn unparked_after_fork(&self) {
        self.parked.store(false, Ordering::SeqCst);
    }
}
