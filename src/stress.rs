//! Stress: the stress-testing mode's per-block record, its fill patterns
//! and its one-line reports (`Config::stress`; `docs/DESIGN.md`, "Stress
//! mode"). The arena side (quarantine FIFO, eviction, the walks) is
//! `arena/quarantine.rs`; the heap side (which path a call takes) is
//! `heap/stress.rs`.
//!
//! A block handed out in stress mode reserves `request + redzone +
//! RECORD` bytes of payload; the record sits at the end, where the block's
//! size (in its header) finds it:
//!
//! ```text
//!  header | payload ......................................................| next block
//!         | request bytes (user) | redzone: REDZONE_FILL ... | Record (64) |
//!         <------ request -------><-- redzone + slack --------><- RECORD -->
//!         <----------------------- cap --------------------->
//!
//!  Record: request | alloc thread, tid | free thread, tid | alloc seq | free seq | next | seal | 0
//! ```
//!
//! Invariants (what the verifications below test, and `check()` proves):
//! * `cap` is the block's payload minus `RECORD` (arena blocks: `size -
//!   HEADER - RECORD`; large runs: `usable - RECORD`), and the record at
//!   `payload + cap` is 16-aligned.
//! * A record is valid iff its `seal` is the hash of its other fields and
//!   its address, and `request <= cap`; anything else is a write past the
//!   redzone or after free that reached it ([`Kind::Record`]).
//! * While the block is live: `[request, redzone_end)` holds
//!   `REDZONE_FILL` ([`Body::redzone_end`]: all of it to `cap` for arena
//!   blocks; `redzone + 64` bytes of a large run), the user's bytes were
//!   filled with `alloc_fill` when handed out, `free_seq == 0`.
//! * While it is quarantined: `[0, cap)` holds `free_fill`; the free
//!   fields name the freeing thread; `next` links the arena's FIFO.
//! * Reports never allocate: one line in a stack buffer (`line::Line`),
//!   one `write(2)`; then `abort()` unless `keep_going`, and each report
//!   is counted (`HeapStats::stress_reports`).
//!
//! Bytes are compared while another thread of the program may be writing
//! them (the bug being hunted): the reads are plain loads of memory the
//! allocator owns, like a poison check in any allocator; a torn read can
//! only make a report name an earlier offset of the same write.
//!
//! # Failure injection and schedule jitter
//!
//! `fail_every`, `fail_rate`, `fail_after`, `fail_min`, `seed`, `jitter`
//! (`Stress`): [`Shared::inject_failure`] decides, after the calling thread
//! is bound and before anything is carved, whether an allocation fails;
//! [`Shared::jitter`] delays an allocation or free before it returns, with
//! no lock held. Invariants:
//! * Deterministic per thread: a decision is a pure function of the seed,
//!   the thread's small id and the thread's own count of calls (`Counts`,
//!   in a thread local of this module's) — never of another thread's
//!   calls or of time; only `fail_after` also reads the heap-wide live
//!   bytes, which is its meaning. Failures and jitter draw from separate
//!   streams (salts), so turning jitter on moves no failure.
//! * A thread's counts are per heap (for its four most recently used
//!   stress heaps; a heap that fell out of those starts again from zero).
//! * Nothing here allocates, locks or panics; the only system call is the
//!   `sched_yield` of a jitter delay.
//! * Every injected failure is counted (per small thread id, up to
//!   `INJECT_THREADS`) and remembered as the heap's and the process's
//!   latest, so that a report written after it can name it
//!   ([`push_after_injected`]).

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::block::GRANULE;
use crate::config::{Stress, INJECT_THREADS, JITTER_SPINS};
use crate::line::Line;
use crate::thread::registry;

/// Bytes of the per-block record at the block's end.
pub(crate) const RECORD: usize = core::mem::size_of::<Record>();
/// What a live block's redzone holds.
pub(crate) const REDZONE_FILL: u8 = 0xfa;
/// Rounding slack after the configured redzone that is still verified:
/// more than an arena block's slack can be (16 + a split that was too
/// small, < 48), so an arena block's whole `[request, cap)` is.
const SLACK_VERIFIED: usize = 64;

const _: () = assert!(RECORD == 64 && RECORD % GRANULE == 0);

/// Who did something: the heap's small id for the thread (its registry
/// slot + 1; 0 for a thread without one) and its OS thread id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Who {
    pub(crate) thread: u32,
    pub(crate) tid: u32,
}

impl Who {
    /// The calling thread (no allocation, no claim: `registry`).
    pub(crate) fn current() -> Who {
        let (thread, tid) = registry::stress_identity();
        Who { thread, tid }
    }

    fn word(self) -> u64 {
        u64::from(self.thread) << 32 | u64::from(self.tid)
    }
}

/// The record at the end of a stress-mode block (module doc).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Record {
    /// Bytes the program asked for.
    pub(crate) request: u64,
    /// The allocating thread.
    pub(crate) alloc: Who,
    /// The freeing thread (zero while live).
    pub(crate) free: Who,
    /// The allocation's global sequence number.
    pub(crate) alloc_seq: u64,
    /// The free's sequence number; 0 while live.
    pub(crate) free_seq: u64,
    /// Quarantined: the next younger quarantined block's header address
    /// (0: this is the tail).
    pub(crate) next: u64,
    /// Hash of the fields above and the record's address.
    seal: u64,
    _zero: u64,
}

impl Record {
    fn sealed_at(&self, at: usize) -> u64 {
        let mut h = at as u64 ^ 0x5354_5245_5353_2121;
        for w in [
            self.request,
            self.alloc.word(),
            self.free.word(),
            self.alloc_seq,
            self.free_seq,
            self.next,
        ] {
            h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        }
        h
    }
}

/// The heap-wide part of stress mode: the sequence, the report count, and
/// failure injection's and jitter's seed and counters.
pub(crate) struct Shared {
    /// The last sequence number handed out (allocations and frees).
    seq: AtomicU64,
    /// Reports written so far.
    reports: AtomicU64,
    /// The generator's seed: `Stress::seed`, or drawn at init.
    seed: u64,
    /// Whether `seed` was given (the exit report says how to replay one
    /// that was not).
    seed_given: bool,
    /// `fail_rate` as a threshold on a 64-bit draw (`u64::MAX`: always).
    fail_threshold: u64,
    /// `jitter_rate` as a threshold (0 with jitter off).
    jitter_threshold: u64,
    /// Requested bytes of live stress-mode blocks (kept with `fail_after`
    /// only).
    live: AtomicUsize,
    /// Injected failures, in all.
    injected: AtomicU64,
    /// Injected failures by small thread id (the last slot sums the rest).
    injected_by_thread: [AtomicU64; INJECT_THREADS],
    /// Calls jitter delayed.
    jittered: AtomicU64,
    /// The latest injected failure (`injection_word`; 0: none yet).
    last_injected: AtomicU64,
    /// Set once injection and jitter have ended (`Heap::end_injection`).
    ended: AtomicBool,
}

/// The latest injected failure of any heap of the process
/// (`injection_word`; 0: none): what the abort line of a bad free, which
/// names no heap, says came before it (`error::abort_on_free_error`).
static LAST_INJECTED: AtomicU64 = AtomicU64::new(0);
/// The seed of the heap that injected `LAST_INJECTED`.
static LAST_INJECTED_SEED: AtomicU64 = AtomicU64::new(0);

/// Salts of the two streams drawn from the seed.
const SALT_FAIL: u64 = 0x6661_696c_7572_6573;
const SALT_JITTER: u64 = 0x6a69_7474_6572_2121;

/// A probability as a threshold on a uniform 64-bit draw.
fn threshold(p: f64) -> u64 {
    if p >= 1.0 {
        u64::MAX
    } else if p > 0.0 {
        // Saturating conversion; p < 1 keeps it below 2^64.
        (p * 18_446_744_073_709_551_616.0) as u64
    } else {
        0
    }
}

/// Whether a draw falls under `threshold` (`u64::MAX`: always).
fn hit(draw: u64, threshold: u64) -> bool {
    threshold == u64::MAX || draw < threshold
}

/// The draw of stream `salt` for call `n` of thread `thread` under
/// `seed`: splitmix64's finaliser over the four.
fn draw(seed: u64, salt: u64, thread: u32, n: u64) -> u64 {
    let mut z = seed
        ^ salt
        ^ u64::from(thread).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ n.wrapping_mul(0xd1b5_4a32_d192_ed03);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `thread << 32 | n`: failure number `n` (from 1) of small thread id
/// `thread`.
fn injection_word(thread: u32, n: u64) -> u64 {
    u64::from(thread) << 32 | (n & 0xffff_ffff)
}

/// A thread's counts of its stress-mode calls on one heap: what its
/// decisions are drawn by.
struct Counts {
    /// The heap they belong to (0: free entry).
    heap: Cell<u64>,
    /// Eligible allocations (those `fail_min` lets through).
    allocs: Cell<u64>,
    /// Allocation and free calls (the jitter stream's index).
    calls: Cell<u64>,
    /// Failures injected into this thread.
    failures: Cell<u64>,
}

/// Stress heaps a thread keeps counts for at once; a fifth one takes the
/// place of the one used least recently, whose counts start again.
const COUNT_WAYS: usize = 4;

impl Counts {
    const fn new() -> Counts {
        Counts {
            heap: Cell::new(0),
            allocs: Cell::new(0),
            calls: Cell::new(0),
            failures: Cell::new(0),
        }
    }

    fn swap(&self, other: &Counts) {
        self.heap.swap(&other.heap);
        self.allocs.swap(&other.allocs);
        self.calls.swap(&other.calls);
        self.failures.swap(&other.failures);
    }
}

// Stress mode's own thread local, not the registry's `ThreadState`: only
// stress-mode paths touch it, so the fast paths' TLS block does not grow.
// Const-initialised and without a destructor, like that one: no
// allocation, readable during thread exit. Most recently used first.
crate::sync::shim_thread_local! {
    static COUNTS: [Counts; COUNT_WAYS] = [const { Counts::new() }; COUNT_WAYS];
}

/// Runs `f` on this thread's counts for heap `heap` (from zero if it had
/// none); `None` once the thread local is gone.
fn with_counts<R>(heap: u64, f: impl FnOnce(&Counts) -> R) -> Option<R> {
    COUNTS
        .try_with(|ways| {
            // Move `heap`'s entry (or, on a miss, the least recently used
            // one, cleared) to the front, shifting the others back.
            let at = ways
                .iter()
                .position(|c| c.heap.get() == heap)
                .unwrap_or(COUNT_WAYS - 1);
            for i in (0..at).rev() {
                if let (Some(a), Some(b)) = (ways.get(i), ways.get(i + 1)) {
                    a.swap(b);
                }
            }
            let front = ways.first()?;
            if front.heap.get() != heap {
                front.heap.set(heap);
                front.allocs.set(0);
                front.calls.set(0);
                front.failures.set(0);
            }
            Some(f(front))
        })
        .ok()
        .flatten()
}

/// Adds one to `cell` and returns the new value.
fn bump(cell: &Cell<u64>) -> u64 {
    let n = cell.get().wrapping_add(1);
    cell.set(n);
    n
}

impl Shared {
    /// The shared state of a heap with settings `stress`; `drawn` is the
    /// seed used when none was given.
    pub(crate) fn new(stress: &Stress, drawn: u64) -> Shared {
        Shared {
            seq: AtomicU64::new(0),
            reports: AtomicU64::new(0),
            seed: stress.get_seed().unwrap_or(drawn),
            seed_given: stress.get_seed().is_some(),
            fail_threshold: threshold(stress.get_fail_rate()),
            jitter_threshold: if stress.get_jitter() {
                threshold(stress.get_jitter_rate())
            } else {
                0
            },
            live: AtomicUsize::new(0),
            injected: AtomicU64::new(0),
            injected_by_thread: [const { AtomicU64::new(0) }; INJECT_THREADS],
            jittered: AtomicU64::new(0),
            last_injected: AtomicU64::new(0),
            ended: AtomicBool::new(false),
        }
    }

    /// Ends failure injection and jitter for good: allocations from now on
    /// fail only for real, and nothing is delayed.
    pub(crate) fn end(&self) {
        self.ended.store(true, Ordering::Relaxed);
    }

    /// The next sequence number (from 1). `Relaxed`: a number, not an
    /// ordering; allocations and frees of one block are ordered by the
    /// arena lock, so its alloc number is below its free number.
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Reports written so far.
    pub(crate) fn reports(&self) -> u64 {
        self.reports.load(Ordering::Relaxed)
    }

    /// The seed in use, and whether it was given.
    pub(crate) fn seed(&self) -> (u64, bool) {
        (self.seed, self.seed_given)
    }

    /// Injected failures so far, and by small thread id (`(id, count)`
    /// for each id with any; the last id stands for itself and all above).
    pub(crate) fn injected(&self) -> (u64, impl Iterator<Item = (u32, u64)> + '_) {
        let by_thread = self
            .injected_by_thread
            .iter()
            .enumerate()
            .map(|(id, n)| (id as u32, n.load(Ordering::Relaxed)))
            .filter(|&(_, n)| n != 0);
        (self.injected.load(Ordering::Relaxed), by_thread)
    }

    /// Calls jitter delayed so far.
    pub(crate) fn jittered(&self) -> u64 {
        self.jittered.load(Ordering::Relaxed)
    }

    /// The heap's latest injected failure (`injection_word`; 0: none).
    pub(crate) fn last_injected(&self) -> u64 {
        self.last_injected.load(Ordering::Relaxed)
    }

    /// Whether the allocation of `size` bytes that thread `thread` (its
    /// small id) is making on heap `heap` fails by injection (module doc);
    /// counts it if so. `stress` is the heap's (clamped) settings.
    pub(crate) fn inject_failure(
        &self,
        stress: &Stress,
        heap: u64,
        thread: u32,
        size: usize,
    ) -> bool {
        if !stress.injects() || size < stress.get_fail_min() || self.ended.load(Ordering::Relaxed) {
            return false;
        }
        let fail = with_counts(heap, |c| {
            let n = bump(&c.allocs);
            let every = stress.get_fail_every();
            let fail = (every != 0 && n % every == 0)
                || (self.fail_threshold != 0
                    && hit(draw(self.seed, SALT_FAIL, thread, n), self.fail_threshold))
                || stress.get_fail_after().is_some_and(|limit| {
                    self.live.load(Ordering::Relaxed).saturating_add(size) > limit
                });
            fail.then(|| bump(&c.failures))
        });
        let Some(Some(nth)) = fail else {
            return false;
        };
        self.injected.fetch_add(1, Ordering::Relaxed);
        let slot = (thread as usize).min(INJECT_THREADS - 1);
        if let Some(count) = self.injected_by_thread.get(slot) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let word = injection_word(thread, nth);
        self.last_injected.store(word, Ordering::Relaxed);
        LAST_INJECTED_SEED.store(self.seed, Ordering::Relaxed);
        LAST_INJECTED.store(word, Ordering::Relaxed);
        true
    }

    /// Keeps the live bytes `fail_after` compares with: `size` bytes were
    /// allocated (`grew`) or freed. A no-op without `fail_after`.
    pub(crate) fn count_live(&self, stress: &Stress, size: usize, grew: bool) {
        if stress.get_fail_after().is_none() {
            return;
        }
        if grew {
            self.live.fetch_add(size, Ordering::Relaxed);
        } else {
            // Saturating: a request read back from a record the program
            // overwrote may be wrong (that is reported, not trusted).
            let _ = self
                .live
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                    Some(l.saturating_sub(size))
                });
        }
    }

    /// Schedule jitter (module doc): at the seeded share of calls, yields
    /// or spins a random short time. Called as an allocation or free of
    /// thread `thread` on heap `heap` returns, with no lock held.
    pub(crate) fn jitter(&self, heap: u64, thread: u32) {
        if self.jitter_threshold == 0 || self.ended.load(Ordering::Relaxed) {
            return;
        }
        let Some(n) = with_counts(heap, |c| bump(&c.calls)) else {
            return;
        };
        let d = draw(self.seed, SALT_JITTER, thread, n);
        if !hit(d, self.jitter_threshold) {
            return;
        }
        self.jittered.fetch_add(1, Ordering::Relaxed);
        // The delay's kind and length from the draw's other bits (the low
        // ones decided whether).
        let how = draw(d, SALT_JITTER, thread, n);
        if how & 1 == 0 {
            crate::sync::yield_now();
        } else {
            for _ in 0..(how >> 1) % JITTER_SPINS {
                core::hint::spin_loop();
            }
        }
    }
}

/// Appends ` after injected failure #N in thread T` for the injected
/// failure `word` names (`Shared::last_injected`; nothing for 0), so a
/// report that follows one says so.
pub(crate) fn push_after_injected(line: &mut Line, word: u64) {
    if word == 0 {
        return;
    }
    line.push(b" after injected failure #");
    line.num(word & 0xffff_ffff);
    line.push(b" in thread ");
    line.num(word >> 32);
}

/// Appends ` (seed S)`: a report that aborts the run comes before the exit
/// report that prints the seed, and the seed is what replays it.
pub(crate) fn push_seed(line: &mut Line, seed: u64) {
    line.push(b" (seed ");
    line.num(seed);
    line.push(b")");
}

/// For the abort line of a bad free, which names no heap: ` after injected
/// failure #N in thread T (seed S)` for the process's latest injected
/// failure, if there was one.
pub(crate) fn push_last_injected_anywhere(line: &mut Line) {
    let word = LAST_INJECTED.load(Ordering::Relaxed);
    if word != 0 {
        push_after_injected(line, word);
        push_seed(line, LAST_INJECTED_SEED.load(Ordering::Relaxed));
    }
}

/// Payload bytes a stress-mode request of `size` reserves.
#[inline]
pub(crate) fn reserve(size: usize, redzone: usize) -> Option<usize> {
    size.checked_add(redzone)?.checked_add(RECORD)
}

/// The payload of one stress-mode block and where its record starts.
#[derive(Clone, Copy)]
pub(crate) struct Body {
    payload: *mut u8,
    cap: usize,
}

impl Body {
    /// The block whose payload is `payload`, with `avail` payload bytes
    /// (record included); `None` if that cannot hold a record.
    ///
    /// # Safety
    ///
    /// `payload..payload + avail` is committed memory of one block that
    /// the caller holds for as long as it uses the value (the block's arena
    /// lock, or the block is live and the caller's), and `payload` is
    /// 16-aligned.
    pub(crate) unsafe fn new(payload: *mut u8, avail: usize) -> Option<Body> {
        let cap = avail.checked_sub(RECORD)?;
        Some(Body {
            payload,
            cap: cap & !(GRANULE - 1),
        })
    }

    /// Payload bytes before the record.
    pub(crate) fn cap(self) -> usize {
        self.cap
    }

    fn record_ptr(self) -> *mut Record {
        self.payload.wrapping_add(self.cap).cast()
    }

    /// The record as stored, verified or not.
    pub(crate) fn raw_record(self) -> Record {
        // SAFETY: the record lies inside the block (`new`), 16-aligned.
        unsafe { self.record_ptr().read() }
    }

    /// The record, if it is valid (module doc).
    pub(crate) fn record(self) -> Option<Record> {
        let r = self.raw_record();
        let ok = r.seal == r.sealed_at(self.record_ptr() as usize) && r.request <= self.cap as u64;
        ok.then_some(r)
    }

    /// Seals and stores `r`.
    pub(crate) fn set_record(self, mut r: Record) {
        r.seal = r.sealed_at(self.record_ptr() as usize);
        r._zero = 0;
        // SAFETY: as in `raw_record`.
        unsafe { self.record_ptr().write(r) };
    }

    /// Where the verified redzone of a `request`-byte block ends.
    pub(crate) fn redzone_end(self, request: usize, redzone: usize) -> usize {
        self.cap.min(
            request
                .saturating_add(redzone)
                .saturating_add(SLACK_VERIFIED),
        )
    }

    /// Fills `[from, to)` (clamped to `cap`) with `byte`.
    pub(crate) fn fill(self, from: usize, to: usize, byte: u8) {
        let to = to.min(self.cap);
        if from < to {
            // SAFETY: `[from, to)` lies inside the block's payload (`new`).
            unsafe { core::ptr::write_bytes(self.payload.wrapping_add(from), byte, to - from) };
        }
    }

    /// The first offset in `[from, to)` (clamped to `cap`) whose byte is
    /// not `byte`.
    pub(crate) fn first_not(self, from: usize, to: usize, byte: u8) -> Option<usize> {
        let to = to.min(self.cap);
        if from >= to {
            return None;
        }
        // SAFETY: as in `fill`; read only.
        let bytes =
            unsafe { core::slice::from_raw_parts(self.payload.wrapping_add(from), to - from) };
        let word = u64::from_ne_bytes([byte; 8]);
        let mut words = bytes.chunks_exact(8);
        let mut at = 0;
        for w in words.by_ref() {
            if <[u8; 8]>::try_from(w).map_or(true, |w| u64::from_ne_bytes(w) != word) {
                break;
            }
            at += 8;
        }
        bytes
            .get(at..)
            .unwrap_or_default()
            .iter()
            .position(|&b| b != byte)
            .map(|i| from + at + i)
    }

    /// Makes this the block of a new allocation of `request` bytes by
    /// `who` at `seq`: the user's bytes filled with `fill` (unless
    /// `None`: `calloc`), the redzone with `REDZONE_FILL`, the record.
    pub(crate) fn stamp_alloc(
        self,
        request: usize,
        redzone: usize,
        who: Who,
        seq: u64,
        fill: Option<u8>,
    ) {
        if let Some(byte) = fill {
            self.fill(0, request, byte);
        }
        self.fill(request, self.redzone_end(request, redzone), REDZONE_FILL);
        self.set_record(Record {
            request: request as u64,
            alloc: who,
            alloc_seq: seq,
            ..Record::default()
        });
    }

    /// What is wrong with this live block, if anything: its record, or
    /// the first redzone byte overwritten.
    pub(crate) fn inspect_live(self, redzone: usize) -> Option<Finding> {
        let Some(rec) = self.record() else {
            return Some(self.record_finding());
        };
        let request = rec.request as usize;
        self.first_not(request, self.redzone_end(request, redzone), REDZONE_FILL)
            .map(|off| self.finding(Kind::Overflow, off, rec))
    }

    /// What is wrong with this quarantined block, if anything: its
    /// record, or the first poisoned byte overwritten.
    pub(crate) fn inspect_quarantined(self, free_fill: u8) -> Option<Finding> {
        let Some(rec) = self.record() else {
            return Some(self.record_finding());
        };
        self.first_not(0, self.cap, free_fill)
            .map(|off| self.finding(Kind::UseAfterFree, off, rec))
    }

    /// A finding at offset `off` of this block.
    pub(crate) fn finding(self, kind: Kind, off: usize, rec: Record) -> Finding {
        Finding {
            kind,
            addr: self.payload as usize + off,
            payload: self.payload as usize,
            rec,
        }
    }

    /// The finding of an invalid record.
    pub(crate) fn record_finding(self) -> Finding {
        Finding {
            kind: Kind::Record,
            addr: self.record_ptr() as usize,
            payload: self.payload as usize,
            rec: Record::default(),
        }
    }
}

/// What a stress-mode verification found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A quarantined block's poison was overwritten.
    UseAfterFree,
    /// A live block's redzone was overwritten.
    Overflow,
    /// A record does not verify (an overflow past the redzone, or a late
    /// write that reached it).
    Record,
}

/// One stress-mode finding: the first bad byte and the block's record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Finding {
    pub(crate) kind: Kind,
    /// The first byte found wrong.
    pub(crate) addr: usize,
    /// The block's payload.
    pub(crate) payload: usize,
    /// The block's record (zeros for `Kind::Record`).
    pub(crate) rec: Record,
}

impl Finding {
    /// The finding as `check()`'s error kind.
    pub(crate) fn error_kind(&self) -> crate::error::HeapErrorKind {
        match self.kind {
            Kind::UseAfterFree => crate::error::HeapErrorKind::UseAfterFree,
            Kind::Overflow | Kind::Record => crate::error::HeapErrorKind::Overflow,
        }
    }
}

/// Writes `f` as one line on stderr and counts it; aborts unless
/// `stress.keep_going`. Allocates nothing and takes no lock: callable with
/// any heap lock held.
///
/// ```text
/// arenalloc: use-after-free write at 0x… (+24 of a 64-byte block allocated by thread 3 [tid 4711] at #1022, freed by thread 5 [tid 4713] at #1090)
/// arenalloc: heap overflow at 0x… (+64 of a 64-byte block allocated by thread 1 [tid 4711] at #7, freed by thread 1 [tid 4711] at #9)
/// arenalloc: heap overflow at 0x… (+64 of a 64-byte block allocated by thread 1 [tid 4711] at #7, still live)
/// arenalloc: stress record overwritten at 0x… (block 0x…: a write past its redzone or after free)
/// arenalloc: use-after-free write at 0x… (+8 of a 32-byte block …, freed by thread 1 [tid 4711] at #41) after injected failure #3 in thread 2 (seed 42)
/// ```
#[cold]
#[inline(never)]
pub(crate) fn report(f: &Finding, stress: &Stress, shared: &Shared) {
    shared.reports.fetch_add(1, Ordering::Relaxed);
    let mut line = Line::new();
    line.push(b"arenalloc: ");
    if f.kind == Kind::Record {
        line.push(b"stress record overwritten at ");
        line.hex(f.addr);
        line.push(b" (block ");
        line.hex(f.payload);
        line.push(b": a write past its redzone or after free)");
    } else {
        line.push(match f.kind {
            Kind::UseAfterFree => b"use-after-free write at ",
            _ => b"heap overflow at ",
        });
        line.hex(f.addr);
        line.push(b" (+");
        line.num((f.addr - f.payload) as u64);
        line.push(b" of a ");
        line.num(f.rec.request);
        line.push(b"-byte block allocated by ");
        push_who(&mut line, f.rec.alloc, f.rec.alloc_seq);
        if f.rec.free_seq == 0 {
            line.push(b", still live)");
        } else {
            line.push(b", freed by ");
            push_who(&mut line, f.rec.free, f.rec.free_seq);
            line.push(b")");
        }
    }
    push_after_injected(&mut line, shared.last_injected());
    if stress.injects() || stress.get_jitter() {
        push_seed(&mut line, shared.seed);
    }
    line.push(b"\n");
    crate::sys::write_stderr(line.bytes());
    if !stress.get_keep_going() {
        crate::sys::abort();
    }
}

/// `thread 3 [tid 4711] at #1022`.
fn push_who(line: &mut Line, who: Who, seq: u64) {
    line.push(b"thread ");
    line.num(u64::from(who.thread));
    line.push(b" [tid ");
    line.num(u64::from(who.tid));
    line.push(b"] at #");
    line.num(seq);
}
