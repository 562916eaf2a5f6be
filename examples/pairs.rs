//! The bare owner-cache pair: `N` rounds of `Heap::malloc(SIZE)` +
//! `Heap::free` on one thread (default 1,000,000 rounds of 64 bytes), for
//! instruction counts and A/B timings of the fast path:
//!
//! ```text
//! cargo build --release --example pairs
//! valgrind --tool=callgrind target/release/examples/pairs 1100000 64   # minus a 100000 run: per pair
//! /usr/bin/time -f %e target/release/examples/pairs 100000000 64       # alternate with the other build
//! ```
use std::hint::black_box;

use arenalloc::{Config, Heap};

fn main() {
    let mut args = std::env::args().skip(1).map(|s| s.parse::<usize>());
    let n = args.next().and_then(Result::ok).unwrap_or(1_000_000);
    let size = args.next().and_then(Result::ok).unwrap_or(64);
    let heap = Heap::with_config(Config::new().region_size(256 << 20));
    for _ in 0..1000 + n {
        let p = black_box(heap.malloc(black_box(size)));
        // SAFETY: `p` is live and ours; nothing uses it after.
        black_box(unsafe { heap.free(p) }).expect("a live block frees");
    }
}
