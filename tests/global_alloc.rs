//! `Heap` as the `#[global_allocator]` of a whole test binary: real std work
//! (Vec, String, HashMap, BTreeMap, sorting, boxes crossing threads) on 8
//! threads, then `check()` and balanced statistics. A `harness = false`
//! binary, so the test harness's own threads and allocations are not mixed
//! into what is measured.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::thread;

use arenalloc::Heap;

#[global_allocator]
static HEAP: Heap = Heap::new();

const THREADS: usize = 8;

fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// Each worker builds and tears down collections; returns a checksum that
/// the main thread recomputes to prove no data was corrupted.
fn worker(
    id: usize,
    to_next: mpsc::Sender<Vec<String>>,
    from_prev: mpsc::Receiver<Vec<String>>,
) -> u64 {
    let mut rng = xorshift(0x9e37_79b9_7f4a_7c15 ^ id as u64);
    let mut sum = 0u64;
    for round in 0..40 {
        let mut v: Vec<u64> = (0..5_000).map(|_| rng() % 1_000_000).collect();
        v.sort_unstable();
        assert!(v.windows(2).all(|w| w[0] <= w[1]));
        sum = sum.wrapping_add(v[v.len() / 2]);

        let mut map: HashMap<String, Vec<u8>> = HashMap::new();
        for i in 0..2_000 {
            let key = format!("key-{id}-{round}-{i}");
            map.insert(key, vec![i as u8; (rng() % 300) as usize]);
        }
        for i in (0..2_000).step_by(3) {
            map.remove(&format!("key-{id}-{round}-{i}"));
        }
        sum = sum.wrapping_add(map.len() as u64);

        let mut tree = BTreeMap::new();
        for i in 0..3_000u64 {
            tree.insert(rng() % 10_000, i.to_string().repeat((i % 7) as usize + 1));
        }
        sum = sum.wrapping_add(tree.keys().take(10).sum::<u64>());

        // Strings allocated here are freed by the next thread: cross-thread frees.
        let batch: Vec<String> = (0..200).map(|i| "x".repeat(i % 97 + 1)).collect();
        to_next.send(batch).unwrap();
        let got = from_prev.recv().unwrap();
        assert_eq!(got.len(), 200);
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, s)| s.len() == i % 97 + 1 && s.bytes().all(|b| b == b'x')));
    }
    sum
}

fn std_work_on_eight_threads() {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel()).unzip();
    let mut receivers: Vec<Option<_>> = receivers.into_iter().map(Some).collect();
    let handles: Vec<_> = (0..THREADS)
        .map(|id| {
            let to_next = senders[(id + 1) % THREADS].clone();
            let from_prev = receivers[id].take().unwrap();
            thread::spawn(move || worker(id, to_next, from_prev))
        })
        .collect();
    drop(senders);
    let sums: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(sums.len(), THREADS);
    assert!(sums.iter().all(|&s| s > 0));
}

fn heap_checks_and_balances() {
    HEAP.check()
        .expect("heap invariants after the threads joined");
    let s = HEAP.stats();
    assert_eq!(
        s.allocations() - s.frees(),
        s.live_blocks() as u64,
        "every allocation is live or freed"
    );
    assert!(
        s.allocations() > 1_000_000,
        "the std work went through the heap: {}",
        s.allocations()
    );
    // Only the runtime's own few allocations remain.
    assert!(
        s.live_blocks() < 1_000,
        "leaked blocks: {}",
        s.live_blocks()
    );
}

fn realloc_and_zeroed_through_std() {
    let mut v: Vec<u32> = Vec::new();
    for i in 0..200_000 {
        v.push(i); // many reallocs, some in place, some large
    }
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32));
    let z = vec![0u64; 1 << 20]; // alloc_zeroed, large path
    assert!(z.iter().all(|&x| x == 0));
    let aligned = std::alloc::Layout::from_size_align(1000, 4096).unwrap();
    // SAFETY: non-zero size; freed with the same layout.
    unsafe {
        let p = std::alloc::alloc(aligned);
        assert_eq!(p as usize % 4096, 0);
        std::alloc::dealloc(p, aligned);
    }
    HEAP.check().unwrap();
}

/// A thread-local whose destructor allocates and frees: it runs during
/// thread teardown, after the heap's own exit guard (registered later, so
/// destroyed earlier), when the thread no longer owns its arena.
struct AllocatesOnDrop(std::cell::Cell<usize>);

impl Drop for AllocatesOnDrop {
    fn drop(&mut self) {
        let v: Vec<u64> = (0..1000).collect();
        let s = format!("{}", v.iter().sum::<u64>());
        assert_eq!(s, "499500");
        LATE_ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

thread_local! {
    static LATE: AllocatesOnDrop = const { AllocatesOnDrop(std::cell::Cell::new(0)) };
}

static LATE_ALLOCATIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn allocations_after_thread_teardown_began() {
    let handles: Vec<_> = (0..4)
        .map(|i| {
            thread::spawn(move || {
                // Register the destructor before this thread's first
                // allocation registers the heap's exit guard.
                LATE.with(|l| l.0.set(i));
                let v = vec![i; 100];
                assert_eq!(v.len(), 100);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        LATE_ALLOCATIONS.load(std::sync::atomic::Ordering::SeqCst),
        4
    );
    HEAP.check().unwrap();
}

fn main() {
    let tests: [(&str, fn()); 4] = [
        (
            "allocations_after_thread_teardown_began",
            allocations_after_thread_teardown_began,
        ),
        ("std_work_on_eight_threads", std_work_on_eight_threads),
        (
            "realloc_and_zeroed_through_std",
            realloc_and_zeroed_through_std,
        ),
        ("heap_checks_and_balances", heap_checks_and_balances),
    ];
    for (name, f) in tests {
        f();
        println!("test {name} ... ok");
    }
    println!("global_alloc: {} passed, 0 failed", tests.len());
}
