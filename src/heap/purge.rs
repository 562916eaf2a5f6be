//! Decay: giving free memory back to the OS when nobody asks for it
//! again — the background thread that drives the clock (`decay.rs`: the
//! epoch, the request flag, the parking), `Heap::trim`, and the reclaim
//! that runs before the heap reports exhaustion.
//!
//! ```text
//!  free / remote free / chunk emptied ─▶ region.decay.want()   (a flag; wakes a parked thread)
//!  allocation slow paths (no lock held) ─▶ kick: no thread yet, and something
//!      to decay or more than DECAY_THREAD_AFTER committed? ─▶ start the thread
//!  decay thread: every purge_ms/2 ─▶ epoch += 1; for each arena: decay_step(Tick)
//!                                      (arena/purge.rs: reclaim an orphan, apply
//!                                       remote frees of an idle arena, purge pages
//!                                       a whole epoch old that the arena did not reuse,
//!                                       release empty chunks)
//!                                   ─▶ expire cached large runs
//!  two ticks with nothing to do ─▶ region.decay.park() until the next request
//! ```
//!
//! **Why a thread.** A server that frees a burst and goes idle makes no
//! further call into the allocator, so a decay driven only by allocator
//! calls (jemalloc without `background_thread`) would keep the burst's
//! pages forever. The thread never allocates, never waits for a busy arena
//! lock (a tick skips busy arenas; their owner is active), runs with every
//! signal blocked, and takes locks only in the heap's lock order.
//!
//! **Why it starts only on an allocation, and parks instead of exiting.**
//! glibc calls `free` while it holds its thread-stack cache lock (freeing
//! a dead thread's TLS), and `pthread_create` takes that lock: a thread
//! started from inside `free` deadlocks (seen: Python's `test_threading`).
//! glibc allocates with no such lock held, so the thread is started only
//! on an allocation slow path — once something waits for decay, or once
//! the heap has committed `DECAY_THREAD_AFTER` of chunks, metadata aside (so that it exists before a
//! burst of frees that no allocation follows) — and, once started, it
//! parks when idle and is woken by the next request with one `futex` wake,
//! which takes no lock. Small programs never get one.
//!
//! **Why it leaves when it is alone.** A process whose last thread calls
//! `pthread_exit` (a C `main` doing so, or a child forked from a non-main
//! thread whose thread returns: Python's `test_threading` does this) ends
//! only when no thread is left; the decay thread must not be the one left.
//! A parked thread looks every `PARKED_CHECK_NS` whether any thread that
//! ever allocated is still alive (`registry::live_threads`), and exits if
//! none is — glibc then ends the process as it would have.
//! `Config::purge_thread(false)` runs the same ticks inline on allocation
//! slow paths instead (rate-limited by the clock).
//!
//! **States** (`Decay::state`): `IDLE` (no thread) → `STARTING` (an
//! allocation won the compare-exchange and is creating it) → `RUNNING`
//! (ticking, or parked on the clock, `DecayClock::park`); `INLINE` (no thread
//! allowed, or the system refused one: ticks run inline); `OFF`
//! (`purge_ms` is 0 or -1: nothing is timed); `SHUTDOWN` (the heap is
//! dropping: `Drop` waits until `alive` is 0). A `fork` child goes back
//! to `IDLE`: its thread did not come along.
//!
//! Invariants:
//! * `alive` counts the threads that may still touch this heap's memory;
//!   only the thread itself decrements it, as its last access, so `Drop`
//!   unmaps nothing while one runs.
//! * No request for decay is lost (`decay.rs` proves it for the clock's
//!   `want` and `park`).
//! * Under loom no thread is ever started and no tick runs by itself
//!   (`sync::BACKGROUND_THREADS`): the models call `trim`, the same steps.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::{Heap, HeapMeta};
use crate::arena::purge::{Purged, Step};
use crate::arena::Arena;
use crate::config::{Config, DECAY_THREAD_AFTER};
use crate::sync::RawLock;
use crate::sys;

const IDLE: u32 = 0;
const INLINE: u32 = 1;
const STARTING: u32 = 2;
const RUNNING: u32 = 3;
const OFF: u32 = 4;
const SHUTDOWN: u32 = 5;

/// Idle ticks after which the thread parks.
const IDLE_TICKS_BEFORE_PARKING: u32 = 2;
/// How often a parked thread looks whether any thread that allocates is
/// still alive (module doc: it must not keep a process alive).
const PARKED_CHECK_NS: u64 = 250_000_000;

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
    /// Held for each arena's step of a tick (one at a time), and by
    /// `check`/`stats` while they walk: a step moves blocks between
    /// batches, queues and the index, so a walk that ran beside one would
    /// count some twice or not at all; between steps every arena is whole.
    /// Lock order: this, then the arena table, arenas, region.
    tick_lock: RawLock,
}

/// `check`/`stats` holding the decay off their walk (`Decay::tick_lock`).
pub(crate) struct DecayPaused<'a>(&'a RawLock);

impl Drop for DecayPaused<'_> {
    fn drop(&mut self) {
        // SAFETY: `HeapMeta::pause_decay` took the lock for this guard.
        unsafe { self.0.unlock() };
    }
}

impl Decay {
    /// The decay state for a heap configured with `config` (resolved).
    pub(crate) fn new(config: &Config) -> Decay {
        let ms = config.get_purge_ms();
        // Under loom decay is off (its clock is real time, which a model
        // cannot replay); the models call `trim`, which is the same steps.
        let state = if ms <= 0 || !crate::sync::BACKGROUND_THREADS {
            OFF
        } else if config.get_purge_thread() {
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
            tick_lock: RawLock::new(),
        }
    }

    /// Decay threads started so far.
    pub(crate) fn threads_started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Whether a decay thread exists (ticking or parked).
    pub(crate) fn thread_exists(&self) -> bool {
        matches!(self.state.load(Ordering::Relaxed), STARTING | RUNNING)
    }
}

impl HeapMeta {
    /// Called on the heap's allocation slow paths with no lock held (never
    /// from `free`: module doc): starts the decay thread when there is
    /// reason to, or runs an inline tick. One relaxed load once a thread
    /// exists.
    #[inline(always)]
    pub(super) fn kick_decay(&self) {
        if self.decay.state.load(Ordering::Relaxed) <= INLINE {
            self.kick_decay_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn kick_decay_slow(&self) {
        let d = &self.decay;
        match d.state.load(Ordering::SeqCst) {
            IDLE => {
                let reason = self.region.decay.wanted()
                    || self.region.chunk_bytes_committed() >= DECAY_THREAD_AFTER;
                if !reason
                    || d.state
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
            INLINE if self.region.decay.wanted() => {
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

    /// Holds the decay off until the guard drops: `check` and `stats` are
    /// exact only if no tick moves blocks while they walk.
    pub(crate) fn pause_decay(&self) -> DecayPaused<'_> {
        self.decay.tick_lock.lock();
        DecayPaused(&self.decay.tick_lock)
    }

    /// The decay's lock, for `fork` handlers (taken first).
    pub(super) fn decay_lock(&self) -> &RawLock {
        &self.decay.tick_lock
    }

    /// One tick of the decay clock over the whole heap; returns whether
    /// anything is left for a later tick. The tick lock is held for one
    /// arena's step at a time (each step leaves its arena whole), so that
    /// `fork`, `stats` and `check` wait for one step, not a tick: a step
    /// applies an idle arena's whole queue (up to a full queue of batches,
    /// a few ms), and a tick visits every arena.
    fn decay_tick(&self) -> bool {
        let wanted = self.region.decay.take_wanted();
        let epoch = self.region.decay.advance();
        let mut more = false;
        for arena in self.decay_order() {
            let _paused = self.pause_decay();
            let (_, left) = arena.decay_step(&self.region, Step::Tick(epoch), |id| self.arena(id));
            more |= left;
        }
        let _paused = self.pause_decay();
        more |= self.large.expire(&self.region);
        if more {
            // Keep the request standing for a thread that would park.
            self.region.decay.want();
        }
        more || wanted
    }

    /// The arenas in the order decay steps them: owner slots first, so
    /// that what an exited slot owner's reclaim frees into its arena's
    /// index is released (empty chunks) and purged by that arena's step
    /// in the same pass — else a `trim` left it, and the reclaim of a
    /// region that ran short (`Step::Space`) found no chunk to give the
    /// allocation that asked.
    fn decay_order(&self) -> impl Iterator<Item = &Arena> + '_ {
        self.arenas()
            .filter(|a| !a.has_index())
            .chain(self.indexes())
    }

    /// Everything decay would ever give back, now (`Step::Trim`), or just
    /// the chunks (`Step::Space`); waits for busy arenas. Returns what
    /// went back to the OS.
    pub(super) fn reclaim(&self, step: Step) -> Purged {
        // As a tick: nothing may see the blocks a step takes out to purge.
        let _paused = self.pause_decay();
        let mut out = Purged::default();
        for arena in self.decay_order() {
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
        self.region.decay.unparked_after_fork();
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
        self.region.decay.wake();
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
    let running = || d.state.load(Ordering::SeqCst) == RUNNING;
    let mut go = d
        .state
        .compare_exchange(STARTING, RUNNING, Ordering::SeqCst, Ordering::Relaxed)
        .is_ok();
    let mut idle = 0;
    while go {
        let w = d.wake.load(Ordering::SeqCst);
        if !running() {
            break;
        }
        sys::futex_wait_for(&d.wake, w, d.tick_ns);
        if !running() {
            break;
        }
        if meta.decay_tick() {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle >= IDLE_TICKS_BEFORE_PARKING {
            idle = 0;
            let alone = || crate::thread::registry::live_threads() == 0;
            go = meta
                .region
                .decay
                .park(PARKED_CHECK_NS, || !running() || alone());
            if go && !running() {
                break;
            }
            if !go {
                // Leave, so that the process ends when its last thread
                // does; the next allocation starts a new decay thread.
                let _ =
                    d.state
                        .compare_exchange(RUNNING, IDLE, Ordering::SeqCst, Ordering::Relaxed);
            }
        }
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
        if let Some(mine) = crate::thread::cache::cached_arena(meta.id) {
            // SAFETY: the binding matched this heap's id: an arena of it.
            let mine = unsafe { &*mine };
            if mine.cache_is_mine() {
                mine.flush_batches(&meta.region, |id| meta.arena(id));
                let mut st = mine.lock();
                // SAFETY: we own the cache (just checked); lock held.
                unsafe { mine.cache_flush_all(&mut st, &meta.region) };
            }
        }
        // Like glibc: true only if memory went back to the OS.
        meta.reclaim(Step::Trim).any()
    }

    /// Ticks of the decay clock so far (each is half of `purge_ms`); reads
    /// one word, takes no lock: what a test waits on to know decay ran.
    /// A test hook, not part of the supported API.
    #[doc(hidden)]
    pub fn decay_epoch(&self) -> u64 {
        self.meta_if_ready().map_or(0, |m| m.region.decay.epoch())
    }

    /// Whether the heap has its decay thread (ticking, or parked until
    /// something is freed). Takes no lock.
    pub fn decay_thread_exists(&self) -> bool {
        self.meta_if_ready()
            .is_some_and(|m| m.decay.thread_exists())
    }

    /// Whether the decay thread is parked: it found nothing to do for two
    /// ticks and sleeps until the next free that leaves something to
    /// decay. Takes no lock. A test hook, not part of the supported API.
    #[doc(hidden)]
    pub fn decay_thread_parked(&self) -> bool {
        self.meta_if_ready()
            .is_some_and(|m| m.decay.thread_exists() && m.region.decay.is_parked())
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
        for arena in meta.indexes() {
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
        meta.arena_cap.store(
            n.max(1).min(meta.config.get_max_arenas()),
            Ordering::Relaxed,
        );
        true
    }
}
