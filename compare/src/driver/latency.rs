//! The `latency` workload: how long each malloc and each free takes, per
//! thread, in the tail (p99, p99.9, max) as well as typically (p50), while
//! memory is being returned to the OS — run by name only (`--workload
//! latency`; `Workload::NAMED`), not in a default run.
//!
//! ```text
//!  time ─▶    burst                                                        | pause     | burst ...
//!  thread i   malloc ×2048 (each timed), write | hand ¼ to thread i+1 |   | 20-50 ms  |
//!             free ¾ in random order (each timed) | free what thread i-1 handed over (each timed)
//!  decay      the allocator's own: arenalloc's decay thread purges (madvise) what stayed free
//! ```
//!
//! Each of `threads` threads repeats, until the measurement time is over
//! (the last burst and pause are finished, not cut short):
//! 1. a burst of [`BURST`] blocks, log-uniform 16 B-4 KiB and, one in
//!    [`BIG_ONE_IN`], log-uniform 16-256 KiB (so that whole free pages
//!    exist for the allocator to purge); every byte written after its
//!    malloc;
//! 2. the blocks shuffled; a quarter of them put in the next thread's
//!    inbox (a mutex-guarded vector with room set aside: handing over
//!    allocates nothing in steady state), which that thread frees at the
//!    end of its next burst: remote frees (at 1 thread the ring closes on
//!    itself, and they are local);
//! 3. the rest freed in the shuffled order, then what its inbox holds;
//! 4. a sleep of 20-50 ms (uniform): the idle time in which the
//!    allocator's decay returns memory to the OS (arenalloc: `purge_ms`
//!    200 ms by default, so pages freed in one burst are purged a few
//!    bursts later, and refaulted when reused).
//!
//! Timing: every `GlobalAlloc::alloc` and `dealloc` call, alone (not the
//! tag, the writes or the shuffle), between two readings of the
//! time-stamp counter (`rdtsc`, about 20 cycles, unserialised) on x86_64
//! CPUs whose counter is invariant (`constant_tsc` and `nonstop_tsc` in
//! `/proc/cpuinfo`), else `Instant::now()`. Ticks are turned into
//! nanoseconds with the ratio of the counter to `Instant` over the whole
//! run. Each thread records into two [`Histogram`]s it allocated before
//! the start (nothing allocates while it records).
//!
//! Figures (the row's keys; ns, to 0.1 ns):
//! * `malloc_ns_threads`, `free_ns_threads`: per thread, `calls`, `p50`,
//!   `p99`, `p999` (p99.9) and `max`. A percentile is the upper end of
//!   the histogram bucket holding that rank (at most 1/16 above the true
//!   value), but never above `max`, which is exact: so `p50 <= p99 <=
//!   p999 <= max`.
//! * `malloc_ns`, `free_ns`: the worst thread's, statistic by statistic
//!   (the largest p50 of any thread, the largest p99, ...; still ordered).
//! * `clock` (`"rdtsc"` or `"instant"`) and `ns_per_tick`.
//!
//! Invariants: only the worker threads call the measured allocator; every
//! block is freed, tag checked, through it (blocks still in an inbox at
//! the end are freed untimed by the main thread after the workers
//! joined); the harness's own allocations (inboxes, burst vectors,
//! histograms) are made before the start, from `System`.

use std::alloc::GlobalAlloc;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::workloads::{
    free_tagged, tag_block, tagged_layout, tagged_size, Block, Outcome, Params, Rng,
};

/// Blocks each thread allocates per burst.
pub(crate) const BURST: usize = 2048;
/// Sizes of the small blocks (log-uniform).
const SMALL_MIN: usize = 16;
const SMALL_MAX: usize = 4 << 10;
/// Sizes of the big blocks (log-uniform), one block in [`BIG_ONE_IN`].
const BIG_MIN: usize = 16 << 10;
const BIG_MAX: usize = 256 << 10;
const BIG_ONE_IN: u64 = 64;
/// One block in this many of a burst is freed by the next thread.
const REMOTE_ONE_IN: usize = 4;
/// Room set aside in each inbox: four bursts' hand-overs.
const INBOX: usize = 4 * BURST / REMOTE_ONE_IN;
/// The pause between bursts, in ms (uniform).
const PAUSE_MS: (usize, usize) = (20, 50);

const _: () = assert!(SMALL_MIN >= 16 && BIG_MIN > SMALL_MAX);

/// Size of one block of a burst.
fn block_size(rng: &mut Rng) -> usize {
    if rng.next() % BIG_ONE_IN == 0 {
        rng.log_range(BIG_MIN, BIG_MAX)
    } else {
        rng.log_range(SMALL_MIN, SMALL_MAX)
    }
}

// ----- the clock -------------------------------------------------------------

/// Where the ticks come from (module doc).
#[derive(Clone, Copy, Debug)]
enum Ticker {
    /// The time-stamp counter.
    #[cfg(target_arch = "x86_64")]
    Tsc,
    /// Nanoseconds since this instant.
    Monotonic(Instant),
}

impl Ticker {
    /// The TSC where it is invariant, else `Instant`.
    fn pick() -> Ticker {
        #[cfg(target_arch = "x86_64")]
        {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            let flags = cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("flags")?.split_once(':').map(|(_, f)| f))
                .unwrap_or("");
            let has = |f: &str| flags.split_ascii_whitespace().any(|x| x == f);
            if has("constant_tsc") && has("nonstop_tsc") {
                return Ticker::Tsc;
            }
        }
        Ticker::Monotonic(Instant::now())
    }

    #[inline(always)]
    fn now(self) -> u64 {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `rdtsc` reads the time-stamp counter, present on
            // every x86_64 CPU; it touches no memory.
            Ticker::Tsc => unsafe { core::arch::x86_64::_rdtsc() },
            Ticker::Monotonic(origin) => origin.elapsed().as_nanos() as u64,
        }
    }

    fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Ticker::Tsc => "rdtsc",
            Ticker::Monotonic(_) => "instant",
        }
    }
}

// ----- histograms ------------------------------------------------------------

/// Sub-buckets per power of two: 2^4, so a bucket spans at most 1/16 of
/// its values.
const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// Values below [`SUB`] have a bucket each; each power of two above, from
/// 2^4 to 2^63, has [`SUB`].
const BUCKETS: usize = SUB + (64 - SUB_BITS as usize) * SUB;

/// Counts of tick values in log2 buckets, each split in [`SUB`]; fixed
/// size, allocated once.
pub(crate) struct Histogram {
    counts: Box<[u64]>,
    calls: u64,
    max: u64,
}

/// The bucket of `v`.
#[inline(always)]
fn bucket(v: u64) -> usize {
    if v < SUB as u64 {
        v as usize
    } else {
        let shift = 63 - v.leading_zeros() - SUB_BITS;
        SUB + shift as usize * SUB + ((v >> shift) as usize - SUB)
    }
}

/// The largest value in bucket `i`.
fn bucket_top(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let (shift, sub) = ((i - SUB) / SUB, (i - SUB) % SUB);
    let top = ((SUB + sub + 1) as u128) << shift;
    (top - 1).min(u64::MAX as u128) as u64
}

impl Histogram {
    pub(crate) fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            calls: 0,
            max: 0,
        }
    }

    #[inline(always)]
    pub(crate) fn record(&mut self, v: u64) {
        self.counts[bucket(v)] += 1;
        self.calls += 1;
        self.max = self.max.max(v);
    }

    /// The value at quantile `q` (0 < q <= 1): the top of the bucket
    /// holding rank `ceil(q × calls)`, at most `max`; 0 when empty.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        let rank = ((q * self.calls as f64).ceil() as u64).clamp(1, self.calls.max(1));
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank && c > 0 {
                return bucket_top(i).min(self.max);
            }
        }
        self.max
    }

    /// `{calls, p50, p99, p999, max}` in ns.
    fn summary(&self, ns_per_tick: f64) -> Value {
        let ns = |ticks: u64| (ticks as f64 * ns_per_tick * 10.0).round() / 10.0;
        json!({
            "calls": self.calls,
            "p50": ns(self.quantile(0.5)),
            "p99": ns(self.quantile(0.99)),
            "p999": ns(self.quantile(0.999)),
            "max": ns(self.max),
        })
    }
}

/// The statistics a latency summary carries, in order.
pub(crate) const STATS: [&str; 4] = ["p50", "p99", "p999", "max"];

/// The worst of per-thread summaries, statistic by statistic.
fn worst(threads: &[Value]) -> Value {
    let mut out = serde_json::Map::new();
    for k in STATS {
        let m = threads
            .iter()
            .filter_map(|t| t[k].as_f64())
            .fold(0.0, f64::max);
        out.insert(k.into(), json!(m));
    }
    let calls: u64 = threads.iter().filter_map(|t| t["calls"].as_u64()).sum();
    out.insert("calls".into(), json!(calls));
    Value::Object(out)
}

// ----- the workload ----------------------------------------------------------

/// What one thread measured.
struct Measured {
    malloc: Histogram,
    free: Histogram,
    bursts: u64,
    stopped: Instant,
}

/// Frees `p` (a tagged block of `a`'s) and records how long `dealloc` took.
///
/// # Safety
///
/// `p` is a live block made by `alloc_tagged`/`tag_block` with `a`, not
/// used after.
#[inline(always)]
unsafe fn timed_free<A: GlobalAlloc>(a: &A, p: *mut u8, clock: Ticker, h: &mut Histogram) {
    // SAFETY: the caller's contract; the tag is checked here, untimed.
    let layout = tagged_layout(unsafe { tagged_size(p) });
    let t0 = clock.now();
    // SAFETY: `p` was allocated by `a` with exactly this layout.
    unsafe { a.dealloc(p, layout) };
    let t1 = clock.now();
    h.record(t1.saturating_sub(t0));
}

/// The latency workload (module doc) with allocator `a`.
pub(crate) fn latency<A: GlobalAlloc + Sync>(a: &A, p: &Params) -> Outcome {
    let t = p.threads.max(1);
    let clock = Ticker::pick();
    let inboxes: Vec<Mutex<Vec<Block>>> = (0..t)
        .map(|_| Mutex::new(Vec::with_capacity(INBOX)))
        .collect();
    let start = Barrier::new(t + 1);
    let stop = AtomicBool::new(false);
    let (measured, began, calibration) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..t)
            .map(|id| {
                let (inboxes, start, stop) = (&inboxes, &start, &stop);
                s.spawn(move || {
                    let mut rng = Rng::new(id as u64 + 700);
                    let mut malloc = Histogram::new();
                    let mut free = Histogram::new();
                    let mut blocks: Vec<*mut u8> = Vec::with_capacity(BURST);
                    let mut received: Vec<Block> = Vec::with_capacity(INBOX);
                    let (mine, next) = (&inboxes[id], &inboxes[(id + 1) % t]);
                    let mut bursts = 0;
                    start.wait();
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..BURST {
                            let n = block_size(&mut rng);
                            let layout = tagged_layout(n);
                            let t0 = clock.now();
                            // SAFETY: `layout` has a non-zero size.
                            let b = unsafe { a.alloc(layout) };
                            let t1 = clock.now();
                            malloc.record(t1.saturating_sub(t0));
                            // SAFETY: `b` is what `a` returned for
                            // `layout`; once tagged it holds `n >= 16`
                            // bytes, and the writes spare the tag word and
                            // the last byte.
                            unsafe {
                                tag_block(b, n);
                                ptr::write_bytes(b.add(8), 0x5c, n - 9);
                            }
                            blocks.push(b);
                        }
                        for i in (1..blocks.len()).rev() {
                            blocks.swap(i, rng.range(0, i));
                        }
                        let remote = blocks.len() / REMOTE_ONE_IN;
                        next.lock()
                            .unwrap()
                            .extend(blocks.drain(blocks.len() - remote..).map(Block));
                        for &b in &blocks {
                            // SAFETY: our live block, freed once (cleared
                            // from `blocks` below).
                            unsafe { timed_free(a, b, clock, &mut free) };
                        }
                        blocks.clear();
                        std::mem::swap(&mut *mine.lock().unwrap(), &mut received);
                        for Block(b) in received.drain(..) {
                            // SAFETY: a live block handed to this thread
                            // alone through its inbox, freed once here.
                            unsafe { timed_free(a, b, clock, &mut free) };
                        }
                        bursts += 1;
                        let pause = rng.range(PAUSE_MS.0, PAUSE_MS.1);
                        std::thread::sleep(Duration::from_millis(pause as u64));
                    }
                    Measured {
                        malloc,
                        free,
                        bursts,
                        stopped: Instant::now(),
                    }
                })
            })
            .collect();
        start.wait();
        let began = (Instant::now(), clock.now());
        std::thread::sleep(Duration::from_secs_f64(p.seconds));
        stop.store(true, Ordering::Relaxed);
        let measured: Vec<Measured> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect();
        let ended = (Instant::now(), clock.now());
        let ns = (ended.0 - began.0).as_nanos() as f64;
        let ticks = ended.1.saturating_sub(began.1).max(1) as f64;
        (measured, began.0, ns / ticks)
    });
    for inbox in &inboxes {
        for Block(b) in inbox.lock().unwrap().drain(..) {
            // SAFETY: every worker has joined; the inbox held the only copy.
            unsafe { free_tagged(a, b) };
        }
    }
    let ns_per_tick = match clock {
        Ticker::Monotonic(_) => 1.0,
        #[cfg(target_arch = "x86_64")]
        Ticker::Tsc => calibration,
    };
    outcome(&measured, began, clock, ns_per_tick)
}

/// The row's figures (module doc).
fn outcome(measured: &[Measured], began: Instant, clock: Ticker, ns_per_tick: f64) -> Outcome {
    let end = measured.iter().map(|m| m.stopped).max().unwrap_or(began);
    let mallocs: Vec<Value> = measured
        .iter()
        .map(|m| m.malloc.summary(ns_per_tick))
        .collect();
    let frees: Vec<Value> = measured
        .iter()
        .map(|m| m.free.summary(ns_per_tick))
        .collect();
    let calls = |h: fn(&Measured) -> &Histogram| measured.iter().map(|m| h(m).calls).sum::<u64>();
    let (n_malloc, n_free) = (calls(|m| &m.malloc), calls(|m| &m.free));
    Outcome {
        ops: n_malloc + n_free,
        seconds: (end - began).as_secs_f64(),
        extra: vec![
            ("mallocs", n_malloc),
            ("frees", n_free),
            ("bursts", measured.iter().map(|m| m.bursts).sum()),
        ],
        json: vec![
            ("clock", json!(clock.name())),
            ("ns_per_tick", json!(ns_per_tick)),
            ("malloc_ns", worst(&mallocs)),
            ("free_ns", worst(&frees)),
            ("malloc_ns_threads", Value::Array(mallocs)),
            ("free_ns_threads", Value::Array(frees)),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order_within_a_sixteenth() {
        let mut last = 0;
        for v in (0..5000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let i = bucket(v);
            assert!(i < BUCKETS, "{v}: bucket {i}");
            assert!(i >= last, "{v}: buckets out of order");
            last = i;
            let top = bucket_top(i);
            assert!(top >= v, "{v}: top {top}");
            assert!(top - v <= v / 16, "{v}: top {top} too far");
            assert!(i == 0 || bucket_top(i - 1) < v, "{v}: not the first bucket");
        }
        assert_eq!(bucket_top(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn quantiles_are_ordered_and_capped_by_the_max() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.5), 0);
        for v in 1..=1000u64 {
            h.record(v);
        }
        h.record(1_000_000);
        let (p50, p99, p999) = (h.quantile(0.5), h.quantile(0.99), h.quantile(0.999));
        assert!((500..=532).contains(&p50), "p50 {p50}");
        assert!((990..=1023).contains(&p99), "p99 {p99}");
        assert!(
            p50 <= p99 && p99 <= p999 && p999 <= h.max,
            "{p50} {p99} {p999}"
        );
        assert_eq!(h.quantile(1.0), 1_000_000);
        let mut one = Histogram::new();
        one.record(37);
        assert_eq!([one.quantile(0.5), one.quantile(0.999)], [37, 37]);
    }

    #[test]
    fn burst_sizes_are_in_range_and_one_in_64_big() {
        let mut rng = Rng::new(3);
        let n = 200_000;
        let big = (0..n)
            .map(|_| block_size(&mut rng))
            .inspect(|&s| {
                assert!((SMALL_MIN..SMALL_MAX).contains(&s) || (BIG_MIN..BIG_MAX).contains(&s))
            })
            .filter(|&s| s >= BIG_MIN)
            .count();
        let share = big as f64 / n as f64;
        assert!((0.012..0.019).contains(&share), "big share {share}");
    }
}
