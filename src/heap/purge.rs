//! Decay: the clock that gives free memory back to the OS when nobody
//! asks for it again, its background thread, `Heap::trim`, and the
//! reclaim that runs before the heap reports exhaustion.
//!
//! ```text
//!  free / remote free / chunk emptied ─▶ region.want_decay()      (a flag, under any lock)
//!  heap slow paths (no lock held) ─▶ kick: wanted? ─▶ start or wake the thread
//!  decay thread: every purge_ms/2 ─▶ epoch += 1; for each arena: decay_step(Tick)
//!                                      (arena/purge.rs: reclaim an orphan, apply
//!                                       remote frees of an idle arena, purge pages
//!                                       a whole epoch old, release empty chunks)
//!                                   ─▶ expire cached large runs
//!  two ticks with nothing to do ─▶ the thread exits; the next want starts a new one
//! ```
//!
//! **Why a thread.** A server that frees a burst and goes idle makes no
//! further call into the allocator, so a decay driven only by allocator
//! calls (jemalloc without `background_thread`) would keep the burst's
//! pages forever. The thread exists only while there is something to
//! decay: it starts on the first slow path that finds a request for decay,
//! and exits after two idle ticks. It never allocates, never waits for a
//! busy arena lock (a tick skips busy arenas; their owner is active), runs
//! with every signal blocked, and takes locks only in the heap's lock
//! order. `Config::purge_thread(false)` runs the same ticks inline on the
//! allocating threads' slow paths instead (rate-limited by the clock).
//!
//! **States** (`Decay::state`): `IDLE` (no thread) → `STARTING` (a slow
//! path won the compare-exchange and is creating it) → `RUNNING` → back to
//! `IDLE` when it exits; `INLINE` (no thread allowed, or the system refused
//! one: ticks run inline); `OFF` (`purge_ms` is 0 or -1: nothing is timed);
//! `SHUTDOWN` (the heap is dropping: `Drop` waits until `alive` is 0).
//!
//! Invariants:
//! * `alive` counts the threads that may still touch this heap's memory;
//!   only the thread itself decrements it, as its last access, so `Drop`
//!   unmaps nothing while one runs.
//! * No request for decay is lost: a requester sets `decay_wanted` and then
//!   reads the state (both `SeqCst`); an exiting thread publishes `IDLE`
//!   and then reads `decay_wanted` (`SeqCst`): one of them sees the other,
//!   so either the thread stays or the requester's next slow path starts
//!   a new one.
//! * Under loom no thread is ever started (`sync::BACKGROUND_THREADS`).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::{Heap, HeapMeta};
use crate::arena::purge::{Purged, Step};
use crate::config::Config;
use crate::sys;

const IDLE: u32 = 0;
const STARTING: u32 = 1;
const RUNNING: u32 = 2;
const INLINE: u32 = 3;
const OFF: u32 = 4;
const SHUTDOWN: u32 = 5;

/// Idle ticks after which the thread exits.
const IDLE_TICKS_BEFORE_EXIT: u32 = 2;

/// The decay state of one heap (module doc).
pub(crate) struct Decay {
    state: AtomicU32,
    /// The futex word the thread sleeps on between ticks; bumped to wake
    /// it early (shutdown).
    wake: AtomicU32,
    /// Threads that may still touch the heap (module doc).
    alive: AtomicU32,
    /// Time between ticks: half the decay.
    tick_ns: u64,
    /// `INLINE`: when the next inline tick is due (`monotonic_ns`).
    next_tick_ns: AtomicU64,
    /// Decay threads started, ever (statistics).
    started: AtomicU64,
}

impl Decay {
    /// The decay state for a heap configured with `config` (resolved).
    pub(crate) fn new(config: &Config) -> Decay {
        let ms = config.get_purge_ms();
        let state = if ms <= 0 {
            OFF
        } else if config.get_purge_thread() && crate::sync::BACKGROUND_THREADS {
            IDLE
        } else {
            INLINE
        };
        Decay {
            state: AtomicU32::new(state),
            wake: AtomicU32::new(0),
            alive: AtomicU32::new(0),
            tick_ns: (ms.max(1) as u64) * 500_000,
            next_tick_ns: AtomicU64::new(0),
            started: AtomicU64::new(0),
        }
    }

    /// Decay threads started so far.
    pub(crate) fn threads_started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Whether a decay thread is running now.
    pub(crate) fn thread_running(&self) -> bool {
        matches!(self.state.load(Ordering::Relaxed), STARTING | RUNNING)
    }
}

impl HeapMeta {
    /// Called on the heap's slow paths with no lock held: if decay was
    /// asked for, starts or wakes whoever runs it. One relaxed load when
    /// nothing is asked.
    #[inline(always)]
    pub(super) fn kick_decay(&self) {
        if self.region.decay_wanted() {
            self.kick_decay_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn kick_decay_slow(&self) {
        let d = &self.decay;
        match d.state.load(Ordering::SeqCst) {
            IDLE => {
                if d.state
                    .compare_exchange(IDLE, STARTING, Ordering::SeqCst, Ordering::Relaxed)
                    .is_err()
                {
                    return;
                }
                d.alive.fetch_add(1, Ordering::SeqCst);
                let arg = self as *const HeapMeta as *mut libc::c_void;
                if sys::spawn_detached(decay_main, arg) {
                    d.started.fetch_add(1, Ordering::Relaxed);
                } else {
                    // No thread to be had (a limit, seccomp): decay inline.
                    d.alive.fetch_sub(1, Ordering::SeqCst);
                    let _ = d.state.compare_exchange(
                        STARTING,
                        INLINE,
                        Ordering::SeqCst,
                        Ordering::Relaxed,
                    );
                }
            }
            INLINE => {
                let now = sys::monotonic_ns();
                let due = d.next_tick_ns.load(Ordering::Relaxed);
                if now >= due
                    && d.next_tick_ns
                        .compare_exchange(
                            due,
                            now + d.tick_ns,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                {
                    self.decay_tick();
                }
            }
            _ => {}
        }
    }

    /// One tick of the decay clock over the whole heap; returns whether
    /// anything is left for a later tick.
    fn decay_tick(&self) -> bool {
        let wanted = self.region.take_decay_wanted();
        let epoch = self.region.advance_decay_epoch();
        let mut more = false;
        for arena in self.arenas() {
            let (_, left) = arena.decay_step(&self.region, Step::Tick(epoch), |id| self.arena(id));
            more |= left;
        }
        more |= self.large.expire(&self.region);
        more || wanted
    }

    /// Everything decay would ever give back, now (`Step::Trim`), or just
    /// the chunks (`Step::Space`); waits for busy arenas. Returns what
    /// went back to the OS.
    pub(super) fn reclaim(&self, step: Step) -> Purged {
        let mut out = Purged::default();
        for arena in self.arenas() {
            let (done, _) = arena.decay_step(&self.region, step, |id| self.arena(id));
            out = out.add(done);
        }
        if self.large.release_all(&self.region) {
            out.chunks += 1;
        }
        out
    }

    /// In a `fork` child: the decay thread did not come along.
    pub(super) fn decay_after_fork(&self) {
        let d = &self.decay;
        d.alive.store(0, Ordering::SeqCst);
        let _ = d
            .state
            .compare_exchange(STARTING, IDLE, Ordering::SeqCst, Ordering::Relaxed);
        let _ = d
            .state
            .compare_exchange(RUNNING, IDLE, Ordering::SeqCst, Ordering::Relaxed);
    }

    /// Stops the decay thread, if any, and waits until it can no longer
    /// touch the heap (`Drop`).
    pub(super) fn stop_decay(&self) {
        let d = &self.decay;
        d.state.store(SHUTDOWN, Ordering::SeqCst);
        d.wake.fetch_add(1, Ordering::SeqCst);
        sys::futex_wake_n(&d.wake, i32::MAX);
        loop {
            let n = d.alive.load(Ordering::SeqCst);
            if n == 0 {
                break;
            }
            sys::futex_wait(&d.alive, n);
        }
    }
}

/// The decay thread (module doc). `arg` is the heap's `HeapMeta`, which
/// stays mapped while `alive` counts this thread.
extern "C" fn decay_main(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `arg` is the `HeapMeta` of a heap whose `Drop` waits for
    // `alive` (which counts us) to reach 0 before unmapping it.
    let meta = unsafe { &*(arg as *const HeapMeta) };
    let d = &meta.decay;
    sys::name_this_thread(c"arenalloc-decay");
    let mut go = d
        .state
        .compare_exchange(STARTING, RUNNING, Ordering::SeqCst, Ordering::Relaxed)
        .is_ok();
    let mut idle = 0;
    while go {
        let w = d.wake.load(Ordering::SeqCst);
        if d.state.load(Ordering::SeqCst) != RUNNING {
            break;
        }
        sys::futex_wait_for(&d.wake, w, d.tick_ns);
        if d.state.load(Ordering::SeqCst) != RUNNING {
            break;
        }
        if meta.decay_tick() {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle < IDLE_TICKS_BEFORE_EXIT {
            continue;
        }
        // Exit, unless a request came in meanwhile (module doc).
        if d.state
            .compare_exchange(RUNNING, IDLE, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            break;
        }
        go = meta.region.decay_wanted()
            && d.state
                .compare_exchange(IDLE, RUNNING, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok();
        idle = 0;
    }
    // Our last access to the heap: `Drop` may unmap it right after.
    d.alive.fetch_sub(1, Ordering::SeqCst);
    sys::futex_wake_n(&d.alive, i32::MAX);
    core::ptr::null_mut()
}

impl Heap {
    /// Gives back to the OS everything the heap does not need right now,
    /// like glibc's `malloc_trim(0)`: applies every queued remote free,
    /// empties the calling thread's own owner cache and the caches of
    /// arenas whose owner exited, releases every empty chunk and every
    /// cached large run, and purges the pages of every free block of at
    /// least `purge_min` bytes. Other live threads' owner caches stay (only
    /// their owner may touch them). Returns whether anything was released.
    pub fn trim(&self) -> bool {
        let Some(meta) = self.meta_if_ready() else {
            return false;
        };
        let mut any = false;
        if let Some(mine) = crate::thread::cache::cached_arena(meta.id) {
            // SAFETY: the binding matched this heap's id: an arena of it.
            let mine = unsafe { &*mine };
            if mine.cache_is_mine() {
                mine.flush_batches(&meta.region, |id| meta.arena(id));
                let mut st = mine.lock();
                // SAFETY: we own the cache (just checked); lock held.
                any |= unsafe { mine.cache_flush_all(&mut st, &meta.region) };
            }
        }
        any |= meta.reclaim(Step::Trim).any();
        any
    }

    /// Ticks of the decay clock so far (each is half of `purge_ms`); reads
    /// one word, takes no lock: what a test waits on to know decay ran.
    pub fn decay_epoch(&self) -> u64 {
        self.meta_if_ready().map_or(0, |m| m.region.decay_epoch())
    }

    /// Whether the decay thread is running now (it starts when there is
    /// something to decay and exits after two idle ticks). Takes no lock.
    pub fn decay_thread_running(&self) -> bool {
        self.meta_if_ready()
            .is_some_and(|m| m.decay.thread_running())
    }

    /// Changes the smallest free block whose pages decay purges, from now
    /// on (glibc's `M_TRIM_THRESHOLD`, through `mallopt` in the preload
    /// library); clamped like `Config::purge_min`. `false` before the heap
    /// initialised (nothing to change: configure it instead).
    pub fn set_purge_min(&self, bytes: usize) -> bool {
        let Some(meta) = self.meta_if_ready() else {
            return false;
        };
        let min = crate::config::clamp_purge_min(bytes);
        meta.purge_min.store(min, Ordering::Relaxed);
        for arena in meta.arenas() {
            arena.lock().set_purge_min(&meta.region, min);
        }
        meta.kick_decay();
        true
    }

    /// Caps the number of arenas created from now on at `n` (at least 1,
    /// at most the configured `max_arenas`, which sized the table): glibc's
    /// `M_ARENA_MAX`, through `mallopt` in the preload library. Arenas that
    /// exist stay; threads that bind later share them once the cap is
    /// reached. `false` before the heap initialised.
    pub fn set_max_arenas(&self, n: usize) -> bool {
        let Some(meta) = self.meta_if_ready() else {
            return false;
        };
        meta.arena_cap
            .store(n.clamp(1, meta.config.get_max_arenas()), Ordering::Relaxed);
        true
    }
}
