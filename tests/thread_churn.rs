//! Issue 9, item 1: the number of threads a process ever creates is
//! unbounded. `Heap` is the `#[global_allocator]` of this `harness = false`
//! binary; 100,000 std threads run one after another, then 20,000 more 8
//! at a time, each allocating, and the heap's figures must not grow with
//! the thread count:
//!
//! * the internal pool (what serves allocations made while a thread binds)
//!   hands out no block and carves no byte during the churn, and stays far
//!   below its capacity;
//! * each thread's exit hook releases its registry slot, so the next
//!   thread adopts an orphaned arena: at most one arena per thread alive at
//!   once, and an adoption per thread.
//!
//! (The preload library's version of this, where glibc's own allocations
//! also come from the heap, is `tests/preload/limits.rs`; that one aborted
//! before the fix.)

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use arenalloc::{Heap, HeapStats};

#[global_allocator]
static HEAP: Heap = Heap::new();

const SEQUENTIAL: usize = 100_000;
const CHURNED: usize = 20_000;
const AT_ONCE: usize = 8;

fn work(i: usize) -> usize {
    let b = black_box(Box::new([i as u8; 16]));
    let v = black_box(vec![i; 4]);
    b[0] as usize + v.len()
}

/// `n` threads, `at_once` alive at a time; returns the sum of their results.
fn churn(n: usize, at_once: usize) -> usize {
    let mut sum = 0;
    for start in (0..n).step_by(at_once) {
        let handles: Vec<_> = (start..(start + at_once).min(n))
            .map(|i| thread::spawn(move || work(i)))
            .collect();
        sum += handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum::<usize>();
    }
    sum
}

fn adoptions(s: &HeapStats) -> u64 {
    s.arenas().iter().map(|a| a.adoptions).sum()
}

fn main() {
    // Warm up: the arenas 8 threads alive at once (and main) need, and
    // their queue buffers, which come from the pool. Held alive together,
    // so that each creates one; below, at most 8 are alive at once (a
    // batch is joined, and so has exited, before the next starts), so
    // every later thread finds an orphan to adopt.
    let barrier = Arc::new(Barrier::new(AT_ONCE));
    let held: Vec<_> = (0..AT_ONCE)
        .map(|i| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                let r = work(i);
                barrier.wait();
                r
            })
        })
        .collect();
    let warm: usize = held.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(warm, (0..AT_ONCE).map(|i| i + 4).sum::<usize>());
    let before = HEAP.stats();
    assert_eq!(before.arenas().len(), AT_ONCE + 1);
    assert!(
        before.pool_allocations() > 0,
        "queue buffers came from the pool"
    );

    let t = Instant::now();
    let expected: usize = (0..SEQUENTIAL).map(|i| (i as u8) as usize + 4).sum();
    assert_eq!(churn(SEQUENTIAL, 1), expected);
    let sequential = t.elapsed();
    let t = Instant::now();
    let expected: usize = (0..CHURNED).map(|i| (i as u8) as usize + 4).sum();
    assert_eq!(churn(CHURNED, AT_ONCE), expected);
    let churned = t.elapsed();
    let after = HEAP.stats();

    eprintln!(
        "thread_churn: {SEQUENTIAL} sequential threads in {sequential:?}, {CHURNED} \
         ({AT_ONCE} at once) in {churned:?}; pool used {} -> {} of {} bytes, \
         {} -> {} pool blocks served; {} arenas, {} adoptions",
        before.pool_used_bytes(),
        after.pool_used_bytes(),
        after.pool_capacity_bytes(),
        before.pool_allocations(),
        after.pool_allocations(),
        after.arenas().len(),
        adoptions(&after) - adoptions(&before),
    );
    assert_eq!(
        after.pool_allocations(),
        before.pool_allocations(),
        "binding allocated from the pool per thread"
    );
    assert_eq!(after.pool_used_bytes(), before.pool_used_bytes());
    assert_eq!(after.pool_live_bytes(), before.pool_live_bytes());
    // One queue buffer (a stamp and a value per slot, and its header) per
    // arena, and no more.
    let arenas = after.arenas().len();
    assert_eq!(arenas, AT_ONCE + 1);
    let buffer = arenalloc::DEFAULT_REMOTE_QUEUE_CAPACITY * 2 * std::mem::size_of::<usize>();
    assert!(after.pool_used_bytes() <= arenas * (buffer + 16));
    assert!(after.pool_used_bytes() < after.pool_capacity_bytes() / 8);
    // Every exited thread's slot was released: the next one adopted.
    let adopted = adoptions(&after) - adoptions(&before);
    assert!(
        adopted as usize >= SEQUENTIAL + CHURNED - 2 * AT_ONCE,
        "{adopted} adoptions"
    );
    HEAP.check().unwrap();
    println!("thread_churn: ok");
}
