//! Stress mode as the `#[global_allocator]` — the one line a Rust user
//! adds to a test binary — under rayon work that allocates on one worker
//! and drops on another (`Vec`, `String`, `HashMap`, boxed slices, some
//! above the large threshold), with blocks handed through channels. It
//! must run clean: no stress report, `check()` exact (every quarantined
//! block's poison and every live block's redzone verified), the
//! quarantine in use and within its bound.
//!
//! A `harness = false` binary (like `global_alloc_threads.rs`), so that
//! nothing else allocates through the heap; it prints `test <name> ... ok`.

use std::collections::HashMap;
use std::sync::mpsc;

use arenalloc::{Config, Heap, Stress, DEFAULT_QUARANTINE};
use rayon::prelude::*;

#[global_allocator]
static A: Heap = Heap::with_config(Config::new().stress(Stress::new()));

/// A parcel of mixed allocations.
type Parcel = (Vec<u64>, String, HashMap<u64, Vec<u8>>, Box<[u8]>);

/// One parcel, built from `seed`.
fn parcel(seed: u64) -> Parcel {
    let n = (seed % 97 + 1) as usize;
    let v: Vec<u64> = (0..n as u64).map(|i| i * seed).collect();
    let s: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let m: HashMap<u64, Vec<u8>> = (0..n as u64 % 13).map(|k| (k, vec![k as u8; n])).collect();
    let big = if seed % 61 == 0 { 3 << 20 } else { n * 40 };
    let b = vec![(seed & 0xff) as u8; big].into_boxed_slice();
    (v, s, m, b)
}

fn verify(seed: u64, p: &Parcel) {
    let n = (seed % 97 + 1) as usize;
    assert!(p.0.iter().enumerate().all(|(i, &x)| x == i as u64 * seed));
    assert_eq!(p.1.len(), n);
    assert!(p
        .2
        .iter()
        .all(|(&k, v)| v.len() == n && v.iter().all(|&b| b == k as u8)));
    assert!(p.3.iter().all(|&b| b == (seed & 0xff) as u8));
}

fn main() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(8)
        .build()
        .expect("a rayon pool");
    for round in 0..20u64 {
        let (tx, rx) = mpsc::channel();
        pool.install(|| {
            (0..400u64).into_par_iter().for_each_with(tx, |tx, i| {
                let seed = round * 1000 + i + 1;
                tx.send((seed, parcel(seed))).unwrap();
            })
        });
        let parcels: Vec<_> = rx.into_iter().collect();
        // Dropped on other workers than the ones that built them, in
        // another split.
        pool.install(|| {
            parcels
                .into_par_iter()
                .rev()
                .with_max_len(3)
                .for_each(|(seed, p)| {
                    verify(seed, &p);
                    drop(p);
                })
        });
        A.check()
            .unwrap_or_else(|e| panic!("check() after round {round}: {e:?}"));
    }
    let s = A.stats();
    assert_eq!(s.stress_reports(), 0, "stress reports");
    let q = s.quarantined_bytes();
    assert!(q > 0, "nothing quarantined");
    for a in s.arenas() {
        assert!(
            a.quarantined_bytes <= DEFAULT_QUARANTINE,
            "arena {} over its bound",
            a.id
        );
    }
    println!("test stress_mode_global_allocator_rayon ... ok ({q} bytes quarantined)");
}
