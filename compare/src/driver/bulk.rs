//! The two bulk workloads (issue 18, item 4): each thread allocates a
//! batch of blocks, writes them and frees the whole batch in an order
//! chosen for the round, again and again — the shapes of the held-out C
//! benchmarks where arenalloc trailed every peer.
//!
//! ```text
//!  bulk-fifo-lifo  round: n = 100..=1,600 blocks of one size s (16 B-4 KiB)
//!                  alloc b[0..n], write every byte
//!                  free b[0], b[1], ..., b[n/2 - 1]        (first half, oldest first)
//!                  free b[n-1], b[n-2], ..., b[n/2]        (second half, newest first)
//!
//!  bulk-varied     round: n = 2,000..=8,000 blocks, each 16 B-16 KiB (log-uniform)
//!                  alloc b[0..n], touch every page of each
//!                  free them in the round's order: random, FIFO, LIFO or
//!                  interleaved halves (b[0], b[n/2], b[1], b[n/2 + 1], ...);
//!                  one block in 16 goes to a random slot of a 1,024-slot
//!                  keep pool instead, freeing the block that was there
//! ```
//!
//! Invariants:
//! * Threads share nothing: every free is local (the remote paths are
//!   other workloads' subject).
//! * An op is one allocator call, as in every throughput workload; the
//!   clock is read between rounds only, so every round counted is whole
//!   and its time is inside the measurement.
//! * Every block is freed before the workload returns: a round's batch by
//!   the round, the keep pool after the measurement (untimed).
//! * bulk-varied writes the tag, the first byte of every page and the last
//!   byte of each block, not every byte: a round's batch averages about
//!   19 MiB, and filling it would measure `memset`, not the allocator;
//!   touching every page still makes an allocator that handed back pages
//!   pay for faulting them in again.

use std::alloc::GlobalAlloc;
use std::ptr;
use std::time::Instant;

use super::workloads::{alloc_tagged, free_tagged, timed, Params, Rng};

/// Blocks per bulk-fifo-lifo round, and their size.
const FIFO_LIFO_BLOCKS: (usize, usize) = (100, 1600);
const FIFO_LIFO_SIZE: (usize, usize) = (16, 4 << 10);

/// Blocks per bulk-varied round, and their size (log-uniform, powers of two).
const VARIED_BLOCKS: (usize, usize) = (2000, 8000);
const VARIED_SIZE: (usize, usize) = (16, 16 << 10);
/// Slots of each bulk-varied thread's keep pool; a block goes there
/// instead of being freed with its round one time in `VARIED_KEEP_ONE_IN`.
const VARIED_KEEP: usize = 1024;
const VARIED_KEEP_ONE_IN: u64 = 16;
/// Bytes between the writes that touch a bulk-varied block's pages.
const PAGE: usize = 4096;

/// bulk-fifo-lifo (module doc): rounds of one size, freed half oldest
/// first, half newest first.
pub(super) fn fifo_lifo<A: GlobalAlloc + Sync>(a: &A, p: &Params) -> (u64, f64) {
    timed(p.threads, p.seconds, |id, clock| {
        let mut rng = Rng::new(id as u64 + 600);
        let mut blocks: Vec<*mut u8> = Vec::with_capacity(FIFO_LIFO_BLOCKS.1);
        clock.go();
        let mut ops = 0;
        while clock.running() {
            let n = rng.range(FIFO_LIFO_BLOCKS.0, FIFO_LIFO_BLOCKS.1);
            let size = rng.log_range(FIFO_LIFO_SIZE.0, FIFO_LIFO_SIZE.1);
            for _ in 0..n {
                let b = alloc_tagged(a, size);
                // SAFETY: `b` holds `size >= 16` bytes; the tag word (the
                // first 8) stays intact.
                unsafe { ptr::write_bytes(b.add(8), 0x5c, size - 8) };
                blocks.push(b);
            }
            let (older, newer) = blocks.split_at(n / 2);
            for &b in older.iter().chain(newer.iter().rev()) {
                // SAFETY: our live block, freed once (each index once).
                unsafe { free_tagged(a, b) };
            }
            blocks.clear();
            ops += 2 * n as u64;
        }
        (ops, Instant::now())
    })
}

/// The order in which a bulk-varied round frees its batch.
#[derive(Clone, Copy)]
enum Order {
    Random,
    Fifo,
    Lifo,
    /// `b[0], b[n/2], b[1], b[n/2 + 1], ...`
    Interleaved,
}

impl Order {
    const ALL: [Order; 4] = [Order::Random, Order::Fifo, Order::Lifo, Order::Interleaved];

    /// Fills `idx` with the indices `0..idx.len()` in this order.
    fn arrange(self, idx: &mut [usize], rng: &mut Rng) {
        let n = idx.len();
        match self {
            Order::Fifo => idx.iter_mut().enumerate().for_each(|(i, x)| *x = i),
            Order::Lifo => idx.iter_mut().enumerate().for_each(|(i, x)| *x = n - 1 - i),
            Order::Interleaved => {
                let half = n.div_ceil(2);
                for (k, x) in idx.iter_mut().enumerate() {
                    *x = if k % 2 == 0 { k / 2 } else { half + k / 2 };
                }
            }
            Order::Random => {
                idx.iter_mut().enumerate().for_each(|(i, x)| *x = i);
                for i in (1..n).rev() {
                    idx.swap(i, rng.range(0, i));
                }
            }
        }
    }
}

/// bulk-varied (module doc): rounds of thousands of varied sizes, freed
/// in a varied order, some kept for later rounds.
pub(super) fn varied<A: GlobalAlloc + Sync>(a: &A, p: &Params) -> (u64, f64) {
    timed(p.threads, p.seconds, |id, clock| {
        let mut rng = Rng::new(id as u64 + 700);
        let mut blocks: Vec<*mut u8> = Vec::with_capacity(VARIED_BLOCKS.1);
        let mut order: Vec<usize> = Vec::with_capacity(VARIED_BLOCKS.1);
        let mut keep = vec![ptr::null_mut::<u8>(); VARIED_KEEP];
        clock.go();
        let mut ops = 0;
        while clock.running() {
            let n = rng.range(VARIED_BLOCKS.0, VARIED_BLOCKS.1);
            for _ in 0..n {
                let size = rng.log_range(VARIED_SIZE.0, VARIED_SIZE.1);
                let b = alloc_tagged(a, size);
                let mut off = PAGE;
                while off < size {
                    // SAFETY: `off < size`: inside the block, past its tag.
                    unsafe { b.add(off).write(0x5c) };
                    off += PAGE;
                }
                blocks.push(b);
            }
            order.clear();
            order.resize(n, 0);
            let pick = rng.range(0, Order::ALL.len() - 1);
            Order::ALL[pick].arrange(&mut order, &mut rng);
            for &i in &order {
                let b = blocks[i];
                let r = rng.next();
                let to_free = if r % VARIED_KEEP_ONE_IN == 0 {
                    let slot = &mut keep[(r >> 8) as usize % VARIED_KEEP];
                    std::mem::replace(slot, b)
                } else {
                    b
                };
                if !to_free.is_null() {
                    // SAFETY: a block of this round's, listed once in
                    // `order`, or one the keep pool held alone; freed once.
                    unsafe { free_tagged(a, to_free) };
                    ops += 1;
                }
            }
            blocks.clear();
            ops += n as u64;
        }
        let stopped = Instant::now();
        for b in keep.into_iter().filter(|b| !b.is_null()) {
            // SAFETY: the keep pool's blocks, each its only copy.
            unsafe { free_tagged(a, b) };
        }
        (ops, stopped)
    })
}
