//! The lock-free reads (`Heap::allocated_bytes`, `resident_bytes`,
//! `committed_bytes`) against the locked `Heap::stats`, and `HeapStats`'
//! `Display` (the preload library's exit table).
//!
//! The heaps here run without a decay thread, so that nothing changes the
//! counters between two readings but the test itself.

use std::sync::Barrier;

use arenalloc::{Config, Heap, LARGE_THRESHOLD};

fn heap(config: Config) -> Heap {
    Heap::with_config(config.region_size(1 << 30).purge_thread(false))
}

/// Every read agrees with `stats()` (which drains nothing here: no block
/// was freed by another thread).
fn assert_reads_agree(heap: &Heap, what: &str) {
    let (allocated, resident, committed) = (
        heap.allocated_bytes(),
        heap.resident_bytes(),
        heap.committed_bytes(),
    );
    let s = heap.stats();
    assert_eq!(allocated, s.allocated_bytes(), "{what}: allocated");
    assert_eq!(resident, s.resident_bytes(), "{what}: resident");
    assert_eq!(committed, s.committed_bytes(), "{what}: committed");
}

#[test]
fn lock_free_reads_equal_the_locked_statistics_when_nothing_is_in_flight() {
    for (name, config) in [
        ("default", Config::new()),
        ("hardened", Config::new().hardened(true)),
        ("no owner cache", Config::new().owner_cache(0)),
        ("purge at once", Config::new().purge_ms(0)),
    ] {
        let heap = heap(config);
        assert_eq!(heap.allocated_bytes(), 0, "{name}: before first use");
        let mut live = Vec::new();
        for i in 0..3000usize {
            let size = match i % 7 {
                0 => 100_000,
                1 | 2 => 16 + i % 1000,
                3 => 4096,
                _ => 24,
            };
            live.push(heap.malloc(size));
        }
        live.push(heap.malloc(3 * LARGE_THRESHOLD));
        assert_reads_agree(&heap, name);
        assert!(heap.allocated_bytes() > 3000 * 24);
        // Free every other block: holes to coalesce and purge.
        for p in live.iter().step_by(2) {
            // SAFETY: a live block of this heap, freed once.
            unsafe { heap.free(*p) }.unwrap();
        }
        assert_reads_agree(&heap, name);
        heap.trim();
        assert_reads_agree(&heap, name);
        for p in live.iter().skip(1).step_by(2) {
            // SAFETY: as above.
            unsafe { heap.free(*p) }.unwrap();
        }
        heap.trim();
        assert_reads_agree(&heap, name);
        assert_eq!(heap.allocated_bytes(), 0, "{name}: all freed");
        assert!(heap.resident_bytes() <= heap.committed_bytes());
    }
}

/// Blocks another thread freed and nobody handed back yet (queued remote
/// frees) still count as allocated in the lock-free read; `stats()` drains
/// them, after which the two agree again.
#[test]
fn lock_free_read_counts_queued_remote_frees_until_they_are_drained() {
    let heap = heap(Config::new());
    let owner_done = Barrier::new(2);
    let freed = Barrier::new(2);
    std::thread::scope(|s| {
        let blocks: Vec<usize> = (0..100).map(|_| heap.malloc(2000) as usize).collect();
        let owned = heap.allocated_bytes();
        assert!(owned >= 100 * 2000);
        let (heap, freed, owner_done) = (&heap, &freed, &owner_done);
        s.spawn(move || {
            // A thread with no arena of its own: each free is one queue
            // entry for the owner's arena.
            for &p in &blocks {
                // SAFETY: live blocks of this heap, each freed once.
                unsafe { heap.free(p as *mut u8) }.unwrap();
            }
            freed.wait();
            owner_done.wait();
        });
        freed.wait();
        assert_eq!(heap.allocated_bytes(), owned, "queued frees not applied");
        assert_eq!(heap.stats().allocated_bytes(), 0, "stats drains them");
        assert_eq!(heap.allocated_bytes(), 0, "and publishes the result");
        owner_done.wait();
    });
}

#[test]
fn stats_display_is_the_exit_table() {
    let heap = heap(Config::new());
    let blocks: Vec<*mut u8> = (0..10).map(|i| heap.malloc(64 << i)).collect();
    let s = heap.stats();
    let table = s.to_string();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 6, "{table}");
    let figure = |name: &str| -> u64 {
        table
            .split(name)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name:?} in {table}"))
    };
    assert_eq!(figure("allocations"), s.allocations());
    assert_eq!(figure("live blocks"), 10);
    assert_eq!(figure("live bytes"), s.allocated_bytes() as u64);
    assert_eq!(figure("arenas used"), s.arenas().len() as u64);
    assert_eq!(figure("reserved bytes"), s.reserved_bytes() as u64);
    let long = format!("{s:#}");
    assert!(long.starts_with(&table));
    assert_eq!(long.lines().count(), 6 + s.arenas().len(), "{long}");
    assert!(long.lines().nth(6).unwrap().starts_with("arena    0: live"));
    for p in blocks {
        // SAFETY: live blocks, freed once.
        unsafe { heap.free(p) }.unwrap();
    }
}
