//! `cargo run --release --example demo`: a short demonstration of
//! arenalloc's public API. Several threads churn blocks of random sizes
//! through one heap, some freed by the thread next door; then the heap
//! proves its invariants, prints its statistics and the first lines of its
//! dump, and shows a double free being caught.

use std::io::Write;
use std::sync::Arc;
use std::thread;

use arenalloc::{Config, Heap};

const THREADS: usize = 4;
const ROUNDS: usize = 200_000;

/// A raw pointer that may cross threads (the heap is `Sync`).
struct Block(*mut u8);
// SAFETY: a block is plain memory owned by whoever holds the `Block`.
unsafe impl Send for Block {}

fn main() {
    let heap = Arc::new(Heap::with_config(Config::new().region_size(8 << 30)));
    let (tx, rx): (Vec<_>, Vec<_>) = (0..THREADS)
        .map(|_| std::sync::mpsc::channel::<Vec<Block>>())
        .unzip();
    let started = std::time::Instant::now();
    let handles: Vec<_> = rx
        .into_iter()
        .enumerate()
        .map(|(id, inbox)| {
            let heap = Arc::clone(&heap);
            let next = tx[(id + 1) % THREADS].clone();
            thread::spawn(move || churn(&heap, id, next, inbox))
        })
        .collect();
    drop(tx);
    let kept: Vec<Vec<Block>> = handles
        .into_iter()
        .map(|h| h.join().expect("worker"))
        .collect();
    let elapsed = started.elapsed();

    heap.check().expect("heap invariants");
    let s = heap.stats();
    let ops = THREADS * ROUNDS * 2;
    println!("arenalloc demo: {THREADS} threads x {ROUNDS} alloc/free rounds in {elapsed:.2?} ({:.1} M ops/s)", ops as f64 / elapsed.as_secs_f64() / 1e6);
    println!(
        "check(): ok — every chunk tiles, every free block is in its bin, counters reconcile\n"
    );
    println!(
        "{:>5} {:>8} {:>12} {:>10} {:>12} {:>10} {:>12} {:>12}",
        "arena",
        "chunks",
        "live bytes",
        "live blks",
        "free bytes",
        "free blks",
        "allocs",
        "locks(cont)"
    );
    for a in s.arenas() {
        println!(
            "{:>5} {:>8} {:>12} {:>10} {:>12} {:>10} {:>12} {:>8}({})",
            a.id,
            a.chunks,
            a.allocated_bytes,
            a.live_blocks,
            a.free_bytes,
            a.free_blocks,
            a.allocations,
            a.lock_acquisitions,
            a.lock_contended
        );
    }
    println!(
        "total: {} live bytes in {} blocks, {} free bytes in {} blocks (largest {}), {} committed, {} allocations, {} frees\n",
        s.allocated_bytes(),
        s.live_blocks(),
        s.free_bytes(),
        s.free_blocks(),
        s.largest_free_block(),
        s.committed_bytes(),
        s.allocations(),
        s.frees()
    );

    let mut dump = Vec::new();
    heap.dump(&mut dump).expect("dump to memory");
    println!("dump (first 16 lines):");
    for line in String::from_utf8_lossy(&dump).lines().take(16) {
        println!("  {line}");
    }

    let mut freed = 0;
    for blocks in kept {
        for Block(p) in blocks {
            // SAFETY: every kept block is live and freed once here.
            unsafe { heap.free(p) }.expect("free of a kept block");
            freed += 1;
        }
    }
    let p = heap.malloc(64);
    // SAFETY: `p` is live; the second free is the error being demonstrated.
    let (first, second) = unsafe { (heap.free(p), heap.free(p)) };
    println!("\nfreed {freed} kept blocks; free(p) -> {first:?}, free(p) again -> {second:?}");
    heap.check().expect("heap invariants at the end");
    let _ = std::io::stdout().flush();
}

/// Allocates and frees random sizes, keeps a working set, sends a share of
/// its blocks to the next thread and frees what the previous one sent.
fn churn(
    heap: &Heap,
    id: usize,
    next: std::sync::mpsc::Sender<Vec<Block>>,
    inbox: std::sync::mpsc::Receiver<Vec<Block>>,
) -> Vec<Block> {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (id as u64 + 1);
    let mut rand = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut slots: Vec<Option<Block>> = (0..1000).map(|_| None).collect();
    let mut outgoing = Vec::new();
    for round in 0..ROUNDS {
        let r = rand();
        let size = match r % 16 {
            0 => (r >> 8) as usize % 65536,
            1..=4 => (r >> 8) as usize % 4096,
            _ => (r >> 8) as usize % 256 + 1,
        };
        let p = heap.malloc(size);
        assert!(!p.is_null());
        // SAFETY: `p` holds `size` bytes.
        unsafe { p.write_bytes(id as u8, size) };
        let slot = (r >> 40) as usize % slots.len();
        if let Some(old) = slots[slot].replace(Block(p)) {
            if round % 8 == 0 {
                outgoing.push(old);
            } else {
                // SAFETY: `old` is live and owned here.
                unsafe { heap.free(old.0) }.expect("free");
            }
        }
        if outgoing.len() == 64 {
            let _ = next.send(std::mem::take(&mut outgoing));
        }
        while let Ok(batch) = inbox.try_recv() {
            for Block(q) in batch {
                // SAFETY: blocks arrive live and are freed once.
                unsafe { heap.free(q) }.expect("free of a block from another thread");
            }
        }
    }
    outgoing.extend(slots.into_iter().flatten());
    outgoing
}
