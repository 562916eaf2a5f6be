//! The `server` workload: bursts of allocation on many threads, freed on
//! other threads, then idle — and the process's RSS sampled all along, to
//! show how much of a burst each allocator keeps once the burst is over.
//!
//! ```text
//!  time ─▶   lead-in | burst 1                          | idle gap              | burst 2 ...        | tail
//!  workers   wait    | allocate a share, hand it over   | wait                  |
//!  freers    wait    | wait          | free it (remote) | wait                  |
//!  main      RSS     | start         | peak live        | RSS +100 ms, RSS +1 s | start ...
//!  sampler   (time, RSS from /proc/self/statm, live) every 5 ms, from the lead-in to the end
//! ```
//!
//! `threads` worker threads each allocate their share of the burst's
//! live set (16-512 B blocks and, one block in 128, 4-64 KiB: about half
//! the bytes each; every byte written), then — once every worker is done —
//! send their blocks through a channel to a freer thread of their own,
//! which frees them all. No freer ever allocates from the measured
//! allocator, so every free is a remote free. Then nothing allocates until
//! the next burst. Bursts start on a fixed schedule (every
//! [`Shape::period`] from the end of the lead-in), so that the bursts of
//! every allocator line up in the picture, but never sooner than
//! [`MIN_GAP`] after the previous burst's frees finished.
//!
//! Definitions (the row's keys, times in seconds from the workload's start):
//! * **live bytes** at an instant: the sum of the requested sizes
//!   (`Layout::size`) of the blocks whose `alloc` has returned and whose
//!   `dealloc` has not been called. A worker adds a block's size right
//!   after `alloc` returns, a freer subtracts it right before `dealloc`
//!   (one relaxed atomic counter, read by the sampler).
//! * **a burst's peak live bytes** (`peak_live_bytes`): the live bytes
//!   when every worker has allocated its share and no freer has started;
//!   since no block is freed during a burst's allocation, and none is live
//!   before it, this is the burst's maximum and the sum of its sizes.
//! * **allocated** (`allocated_s`): the instant the last worker finished
//!   allocating its share (stamped by the workers themselves, so it is
//!   never later than `freed_s`, however the scheduler delays main).
//! * **frees finished** (`freed_s`): the instant the last freer returned
//!   from its last `dealloc` of the burst.
//! * **RSS +100 ms / +1 s** (`rss_100ms_bytes`, `rss_1s_bytes`): the
//!   process's resident set (`Rss` of `/proc/self/smaps_rollup`, exact)
//!   read by the main thread 100 ms and 1 s after frees finished (the
//!   actual instants are `rss_100ms_at_s`, `rss_1s_at_s`).
//! * **÷ live** (`rss_100ms_per_live`, `rss_1s_per_live`): that RSS less
//!   the RSS before the first burst (`rss_before_bytes`), over the burst's
//!   peak live bytes: the share of the burst's memory still resident.
//!
//! Invariants:
//! * only workers allocate and only freers free from the measured
//!   allocator; the main thread and the sampler use the binary's global
//!   allocator, `System`, and the sampler reads `statm` into a buffer on
//!   its stack;
//! * every block a burst allocates is freed in that burst, through the
//!   allocator that made it, with its `Layout`, its tag checked
//!   (`free_tagged`); the live bytes are 0 between bursts (asserted);
//! * `samples` are in strictly increasing time order (by construction,
//!   re-checked when they are written), at most [`MAX_SAMPLES`] of them:
//!   beyond that consecutive runs of samples are merged into their
//!   highest-RSS member.

use std::alloc::GlobalAlloc;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::workloads::{
    alloc_tagged, free_tagged, rss_now, rss_peak, sleep_until, tagged_size, Block, Outcome, Params,
    Rng, Scale, RSS_LATER,
};

/// Sizes of the small blocks of a burst.
const SMALL_MIN: usize = 16;
const SMALL_MAX: usize = 512;
/// Sizes of the big blocks of a burst, one block in [`BIG_ONE_IN`]: with
/// these means (264 B and 34 KiB) about half of a burst's bytes.
const BIG_MIN: usize = 4 << 10;
const BIG_MAX: usize = 64 << 10;
const BIG_ONE_IN: u64 = 128;

/// Sampled RSS before the first burst.
const LEAD_IN: Duration = Duration::from_millis(50);
/// How often the sampler reads `statm`.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(5);
/// The two measurement points after a burst's frees finished (the second
/// the same as the fragmentation workload's).
const RSS_SOON: Duration = Duration::from_millis(100);
const RSS_IDLE: Duration = RSS_LATER;
/// Idle time after a burst's frees before the next burst may start (and
/// after the last one, before the run ends): the second measurement point
/// and a little of what follows it.
const MIN_GAP: Duration = RSS_IDLE.saturating_add(Duration::from_millis(100));
/// Most samples a row carries.
pub(crate) const MAX_SAMPLES: usize = 400;

const _: () = assert!(RSS_SOON.as_nanos() < RSS_IDLE.as_nanos());
const _: () = assert!(RSS_IDLE.as_nanos() < MIN_GAP.as_nanos());
const _: () = assert!(SMALL_MIN >= 16 && BIG_MIN > SMALL_MAX);

/// How big and how long a run is, per scale.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    /// Bursts in the run.
    pub(crate) bursts: usize,
    /// Bytes each burst allocates (all workers together).
    pub(crate) live: usize,
    /// Time from one burst's planned start to the next's.
    pub(crate) period: Duration,
}

impl Shape {
    pub(crate) fn of(scale: Scale) -> Shape {
        let (bursts, live, period_ms) = match scale {
            Scale::Quick => (2, 32 << 20, 1250),
            Scale::Default => (2, 256 << 20, 1600),
            Scale::Full => (3, 512 << 20, 2500),
        };
        Shape {
            bursts,
            live,
            period: Duration::from_millis(period_ms),
        }
    }
}

/// One sample: nanoseconds since the workload's start, RSS and live bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sample {
    at_ns: u64,
    rss: u64,
    live: u64,
}

/// What the main thread measured of one burst (module doc).
struct BurstRecord {
    start: Duration,
    allocated: Duration,
    freed: Duration,
    peak_live: u64,
    rss_soon: (Duration, u64),
    rss_idle: (Duration, u64),
}

/// Size of one block of a burst.
fn block_size(rng: &mut Rng) -> usize {
    if rng.next() % BIG_ONE_IN == 0 {
        rng.range(BIG_MIN, BIG_MAX)
    } else {
        rng.range(SMALL_MIN, SMALL_MAX)
    }
}

/// The server workload (module doc) with allocator `a`.
pub(crate) fn server<A: GlobalAlloc + Sync>(a: &A, p: &Params) -> Outcome {
    let shape = Shape::of(p.scale);
    let t = p.threads.max(1);
    let share = shape.live / t;
    let live = AtomicU64::new(0);
    // Bytes the workers allocated this burst (reset by main before it).
    let burst_bytes = AtomicU64::new(0);
    let ops = AtomicU64::new(0);
    // The latest end of a freer's frees this burst, in ns since `origin`.
    let freed_ns = AtomicU64::new(0);
    // The latest end of a worker's allocations this burst, likewise: taken
    // by the workers, not by main after the barrier, so that a main thread
    // the scheduler delays cannot stamp it after the freers finished.
    let allocated_ns = AtomicU64::new(0);
    // Main and the workers: a burst starts; every block of it is allocated.
    let start = Barrier::new(t + 1);
    let allocated = Barrier::new(t + 1);
    // Main and the freers: every block of the burst is freed.
    let freed = Barrier::new(t + 1);
    let stop = AtomicBool::new(false);
    let origin = Instant::now();
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..t).map(|_| mpsc::channel::<Vec<Block>>()).unzip();
    std::thread::scope(|s| {
        for inbox in receivers {
            let (live, freed_ns, freed) = (&live, &freed_ns, &freed);
            s.spawn(move || {
                for _ in 0..shape.bursts {
                    let blocks = inbox.recv().expect("a worker left before its burst");
                    for Block(b) in blocks {
                        // SAFETY: a live block of the measured allocator,
                        // sent to this thread alone, freed once here.
                        unsafe {
                            live.fetch_sub(tagged_size(b) as u64, Ordering::Relaxed);
                            free_tagged(a, b);
                        }
                    }
                    let done = origin.elapsed().as_nanos() as u64;
                    freed_ns.fetch_max(done, Ordering::Relaxed);
                    freed.wait();
                }
            });
        }
        for (id, outbox) in senders.into_iter().enumerate() {
            let (live, burst_bytes, ops, allocated_ns) = (&live, &burst_bytes, &ops, &allocated_ns);
            let (start, allocated) = (&start, &allocated);
            s.spawn(move || {
                let mut rng = Rng::new(id as u64 + 600);
                for _ in 0..shape.bursts {
                    let mut blocks = Vec::with_capacity(share / 256);
                    start.wait();
                    let mut got = 0;
                    while got < share {
                        let n = block_size(&mut rng);
                        let b = alloc_tagged(a, n);
                        live.fetch_add(n as u64, Ordering::Relaxed);
                        // SAFETY: `b` holds `n >= 16` bytes; the tag word
                        // stays intact.
                        unsafe { ptr::write_bytes(b.add(8), 0x5c, n - 9) };
                        blocks.push(Block(b));
                        got += n;
                    }
                    ops.fetch_add(2 * blocks.len() as u64, Ordering::Relaxed);
                    burst_bytes.fetch_add(got as u64, Ordering::Relaxed);
                    allocated_ns.fetch_max(origin.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    allocated.wait();
                    outbox.send(blocks).expect("a freer left before its burst");
                }
            });
        }
        let rss_before = rss_now();
        let sampler = s.spawn(|| sample(&live, &stop, origin));

        let mut records = Vec::with_capacity(shape.bursts);
        let mut not_before = origin + LEAD_IN;
        for k in 0..shape.bursts {
            sleep_until(not_before.max(origin + LEAD_IN + shape.period * k as u32));
            assert_eq!(live.load(Ordering::Relaxed), 0, "live bytes between bursts");
            freed_ns.store(0, Ordering::Relaxed);
            allocated_ns.store(0, Ordering::Relaxed);
            burst_bytes.store(0, Ordering::Relaxed);
            let began = origin.elapsed();
            start.wait();
            allocated.wait();
            let allocated_at = Duration::from_nanos(allocated_ns.load(Ordering::Relaxed));
            // Every worker added its burst's bytes before the barrier, and
            // no block of the burst was freed before every one was
            // allocated: the burst's peak live bytes. (Not `live` now: the
            // freers may have started.)
            let peak_live = burst_bytes.load(Ordering::Relaxed);
            freed.wait();
            let done = Duration::from_nanos(freed_ns.load(Ordering::Relaxed));
            let read_at = |after: Duration| {
                sleep_until(origin + done + after);
                (origin.elapsed(), rss_now())
            };
            let rss_soon = read_at(RSS_SOON);
            let rss_idle = read_at(RSS_IDLE);
            records.push(BurstRecord {
                start: began,
                allocated: allocated_at,
                freed: done,
                peak_live,
                rss_soon,
                rss_idle,
            });
            not_before = origin + done + MIN_GAP;
        }
        sleep_until(not_before);
        stop.store(true, Ordering::Relaxed);
        let samples = sampler
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        outcome(&records, samples, rss_before, ops.load(Ordering::Relaxed))
    })
}

/// The row's figures (module doc) from what the run measured.
fn outcome(records: &[BurstRecord], samples: Vec<Sample>, rss_before: u64, ops: u64) -> Outcome {
    let seconds: f64 = records
        .iter()
        .map(|r| (r.freed.saturating_sub(r.start)).as_secs_f64())
        .sum();
    let peak_live = records.iter().map(|r| r.peak_live).max().unwrap_or(0);
    let seen = samples
        .iter()
        .map(|s| s.rss)
        .chain(records.iter().flat_map(|r| [r.rss_soon.1, r.rss_idle.1]))
        .max()
        .unwrap_or(0);
    let per_live = |rss: u64, live: u64| {
        let ratio = rss.saturating_sub(rss_before) as f64 / live.max(1) as f64;
        (ratio * 1000.0).round() / 1000.0
    };
    let bursts: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "start_s": secs(r.start),
                "allocated_s": secs(r.allocated),
                "freed_s": secs(r.freed),
                "peak_live_bytes": r.peak_live,
                "rss_100ms_bytes": r.rss_soon.1,
                "rss_100ms_at_s": secs(r.rss_soon.0),
                "rss_100ms_per_live": per_live(r.rss_soon.1, r.peak_live),
                "rss_1s_bytes": r.rss_idle.1,
                "rss_1s_at_s": secs(r.rss_idle.0),
                "rss_1s_per_live": per_live(r.rss_idle.1, r.peak_live),
            })
        })
        .collect();
    let (every, samples) = downsample(samples, MAX_SAMPLES);
    let samples: Vec<Value> = samples
        .iter()
        .map(|s| json!([secs(Duration::from_nanos(s.at_ns)), s.rss, s.live]))
        .collect();
    Outcome {
        ops,
        seconds,
        extra: vec![
            ("peak_live_bytes", peak_live),
            ("rss_before_bytes", rss_before),
            ("peak_rss_bytes", rss_peak(seen)),
        ],
        json: vec![
            (
                "sample_fields",
                json!(["seconds", "rss_bytes", "live_bytes"]),
            ),
            ("sample_every_ms", json!(every.as_secs_f64() * 1000.0)),
            ("samples", Value::Array(samples)),
            ("bursts", Value::Array(bursts)),
        ],
    }
}

/// Seconds, to the microsecond.
fn secs(d: Duration) -> f64 {
    d.as_micros() as f64 / 1e6
}

/// Samples (time, RSS, live) every [`SAMPLE_EVERY`] until `stop`.
fn sample(live: &AtomicU64, stop: &AtomicBool, origin: Instant) -> Vec<Sample> {
    let statm = File::open("/proc/self/statm").expect("the server workload reads /proc/self/statm");
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let mut out = Vec::with_capacity(4096);
    let mut next = Instant::now();
    let mut last_ns = None;
    while !stop.load(Ordering::Relaxed) {
        let rss = statm_resident(&statm) * page;
        let at_ns = origin.elapsed().as_nanos() as u64;
        // Each reading takes a system call, so two are never the same
        // nanosecond; the check keeps the order promise regardless.
        if last_ns.map_or(true, |l| at_ns > l) {
            out.push(Sample {
                at_ns,
                rss,
                live: live.load(Ordering::Relaxed),
            });
            last_ns = Some(at_ns);
        }
        next += SAMPLE_EVERY;
        let now = Instant::now();
        if next <= now {
            // Late (a busy machine): skip the ticks missed.
            next = now + SAMPLE_EVERY;
        }
        sleep_until(next);
    }
    out
}

/// The resident pages field (the second) of `/proc/self/statm`, read
/// afresh at offset 0 into a stack buffer (no allocation); 0 if unreadable.
fn statm_resident(statm: &File) -> u64 {
    let mut buf = [0u8; 128];
    let n = statm.read_at(&mut buf, 0).unwrap_or(0);
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|s| s.split_ascii_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// At most `max` samples, in order: when there are more, each run of `k`
/// consecutive samples (`k` the smallest that fits) becomes the one with
/// the highest RSS (the first of equals), so peaks survive. Returns the
/// sampling interval the result stands for (`k` × [`SAMPLE_EVERY`]) and
/// the samples, strictly increasing in time.
fn downsample(samples: Vec<Sample>, max: usize) -> (Duration, Vec<Sample>) {
    let k = samples.len().div_ceil(max.max(1)).max(1);
    let mut out: Vec<Sample> = samples
        .chunks(k)
        .filter_map(|run| {
            run.iter()
                .copied()
                .reduce(|best, s| if s.rss > best.rss { s } else { best })
        })
        .collect();
    // Re-checked here so that the promise does not rest on the sampler
    // alone: times to the microsecond (as written) strictly increase.
    let mut last = None;
    out.retain(|s| {
        let us = s.at_ns / 1000;
        let keep = last.map_or(true, |l| us > l);
        if keep {
            last = Some(us);
        }
        keep
    });
    (SAMPLE_EVERY * k as u32, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, rss: u64) -> Sample {
        Sample {
            at_ns: ms * 1_000_000,
            rss,
            live: 0,
        }
    }

    #[test]
    fn downsampling_keeps_order_and_peaks() {
        let samples: Vec<Sample> = (0..1000).map(|i| at(5 * i, i % 7)).collect();
        let (every, few) = downsample(samples.clone(), 400);
        assert_eq!(every, SAMPLE_EVERY * 3);
        assert_eq!(few.len(), 334);
        assert!(few.windows(2).all(|w| w[0].at_ns < w[1].at_ns));
        // Every run of three keeps its highest RSS.
        for (run, got) in samples.chunks(3).zip(&few) {
            assert_eq!(got.rss, run.iter().map(|s| s.rss).max().unwrap());
        }
        let (every, same) = downsample(samples[..400].to_vec(), 400);
        assert_eq!((every, same.as_slice()), (SAMPLE_EVERY, &samples[..400]));
        assert_eq!(downsample(Vec::new(), 400).1, Vec::new());
    }

    #[test]
    fn statm_is_read_again_at_every_call() {
        let statm = File::open("/proc/self/statm").unwrap();
        let before = statm_resident(&statm);
        assert!(before > 0);
        // 64 MiB touched page by page (System: the test's own allocator).
        let big = std::hint::black_box(vec![1u8; 64 << 20]);
        let after = statm_resident(&statm);
        assert!(
            after >= before + (32 << 20) / 4096,
            "{before} -> {after} pages"
        );
        drop(big);
    }

    #[test]
    fn a_burst_is_half_small_half_big_blocks_by_bytes() {
        let mut rng = Rng::new(1);
        let (mut small, mut big) = (0usize, 0usize);
        for _ in 0..200_000 {
            let n = block_size(&mut rng);
            assert!((SMALL_MIN..=SMALL_MAX).contains(&n) || (BIG_MIN..=BIG_MAX).contains(&n));
            if n >= BIG_MIN {
                big += n;
            } else {
                small += n;
            }
        }
        let share = big as f64 / (big + small) as f64;
        assert!(
            (0.4..0.6).contains(&share),
            "big blocks: {share:.2} of the bytes"
        );
    }
}
