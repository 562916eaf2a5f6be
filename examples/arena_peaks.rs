//! Where the memory of many threads on few cores goes: the driver's
//! `larson` shape (each thread replaces random 16-1024 B blocks in its part
//! of a shared array of 1,000 slots per thread, moving to the next part
//! every 4,000 replacements, so about a quarter of the frees are remote)
//! on its own `Heap`, whose `stats()` it samples every 10 ms. It prints, per
//! half second, the heap's live, free and committed bytes, and the peak
//! live-block count each arena reached so far (median, 90th percentile and
//! largest over the arenas):
//!
//! ```text
//! cargo build --release --example arena_peaks
//! target/release/examples/arena_peaks 64 2     # threads, seconds
//! ```
//!
//! An arena's chunks hold what its owner allocated and nobody has freed
//! yet, plus what its index keeps free; a chunk goes back only once empty.
//! With many more threads than cores, a thread that runs a time slice
//! allocates thousands of blocks, which other threads free long after
//! (its part moves on); so each arena's chunks grow to that arena's own
//! peak, and the heap commits about the sum of the peaks, not the peak of
//! the sum (`benches/RESULTS.md`, "Many threads on two cores").
//! Sampling takes every arena's lock in turn: the churn runs slower than
//! in the driver; the peaks are what this reports. The sampler is one
//! thread among the churn's: at 256 threads on 2 cores it gets a sample
//! every few seconds, so use 64 or fewer there.
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arenalloc::{Config, Heap};

/// Slots per thread, and replacements per part, as the driver's larson.
const SLOTS: usize = 1000;
const EPOCH: usize = 4000;

/// xorshift64: the slot and size picks.
struct Rng(u64);

impl Rng {
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + (self.0 as usize) % (hi - lo + 1)
    }
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn main() {
    let mut args = std::env::args().skip(1).map(|s| s.parse::<usize>());
    let threads = args.next().and_then(Result::ok).unwrap_or(64).max(1);
    let seconds = args.next().and_then(Result::ok).unwrap_or(2).max(1);
    let heap = Heap::with_config(Config::new());
    let slots: Vec<AtomicPtr<u8>> = (0..threads * SLOTS)
        .map(|_| AtomicPtr::new(core::ptr::null_mut()))
        .collect();
    let stop = AtomicBool::new(false);
    let replaced = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for id in 0..threads {
            let (heap, slots, stop, replaced) = (&heap, &slots, &stop, &replaced);
            s.spawn(move || {
                let mut rng = Rng(id as u64 * 7919 + 1);
                for slot in &slots[id * SLOTS..(id + 1) * SLOTS] {
                    slot.store(heap.malloc(rng.range(16, 1024)), Ordering::Relaxed);
                }
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let part = (id + n / EPOCH) % threads;
                    let slot = &slots[part * SLOTS + rng.range(0, SLOTS - 1)];
                    let old = slot.swap(heap.malloc(rng.range(16, 1024)), Ordering::AcqRel);
                    // SAFETY: the swap made this thread the block's only
                    // holder; null (an exhausted heap) frees as a no-op.
                    unsafe { heap.free(old) }.expect("a live block frees");
                    n += 1;
                }
                replaced.fetch_add(n as u64, Ordering::Relaxed);
            });
        }
        // The most live blocks each arena held at any sample.
        let mut peaks: Vec<usize> = Vec::new();
        // Sampling by the clock: a sample of a big heap takes a while.
        let end = Duration::from_secs(seconds as u64);
        let mut next_print = Duration::from_millis(500);
        while start.elapsed() < end {
            std::thread::sleep(Duration::from_millis(10));
            let st = heap.stats();
            for a in st.arenas() {
                let i = a.id as usize;
                if peaks.len() <= i {
                    peaks.resize(i + 1, 0);
                }
                peaks[i] = peaks[i].max(a.live_blocks);
            }
            let now = start.elapsed();
            if now >= next_print || now >= end {
                next_print += Duration::from_millis(500);
                let mut sorted = peaks.clone();
                sorted.sort_unstable();
                let at = |q: usize| sorted[(sorted.len() - 1) * q / 100];
                println!(
                    "{:4.1} s: live {:6.1} MiB in {:7} blocks, free {:7.1} MiB, committed {:7.1} MiB; \
                     peak live blocks per arena: median {}, p90 {}, max {}, sum {} ({} arenas)",
                    now.as_secs_f64(),
                    mib(st.allocated_bytes()),
                    st.live_blocks(),
                    mib(st.free_bytes()),
                    mib(st.committed_bytes()),
                    at(50),
                    at(90),
                    at(100),
                    sorted.iter().sum::<usize>(),
                    sorted.len(),
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let rate = replaced.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    println!(
        "{threads} threads: {:.1} M replacements/s (slowed by the sampling)",
        rate / 1e6
    );
    for slot in &slots {
        // SAFETY: every thread has joined; the array holds the only copies.
        unsafe { heap.free(slot.load(Ordering::Relaxed)) }.expect("a live block frees");
    }
    heap.check().expect("heap invariants after the churn");
}
