//! `Heap` as the `#[global_allocator]` of a binary whose 64 threads do std
//! collection work *across* threads: parcels of `HashMap`, `BTreeMap`,
//! `Vec`, `String` and boxed slices (some big enough for the large path)
//! are built on one thread, sent through channels to others that check,
//! mutate and forward them, and dropped by a third or fourth thread; waves
//! of 64 short-lived threads take apart collections the main thread built
//! and hand theirs back to it to drop. Every result is checked against a
//! replay, then `check()` must pass and the statistics must balance:
//! allocations - frees = live blocks, few blocks live once everything is
//! dropped, frees that went through remote queues, several arenas used and
//! exited threads' arenas adopted.
//!
//! A `harness = false` binary (like `global_alloc.rs`), so the test
//! harness's own threads and allocations are not mixed into what is
//! measured. It prints `test <name> ... ok` per part and a summary line.
//! Modelled on mimalloc's `test-stress.c`; never a benchmark (no timing,
//! no sleeps: threads synchronise through channels, mutexes and joins).
//!
//! `ARENALLOC_SOAK=<n>` (a positive integer, default 1) multiplies the
//! rounds and waves by `n`, turning the default run (about 6 s in release
//! or debug on two cores; release does four times the work) into a long
//! soak:
//!
//! ```text
//! ARENALLOC_SOAK=50 cargo test --release --test global_alloc_threads
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

mod common;
use common::{mix, soak_env, Rng};

use arenalloc::{Config, Heap};

/// Hardened, as the test suites run (`tests/global_alloc.rs` keeps the defaults).
#[global_allocator]
static HEAP: Heap = Heap::with_config(Config::new().hardened(true));

/// Worker threads alive at once.
const THREADS: usize = 64;
/// Parcels each worker sends off, times the soak multiplier.
const ROUNDS: usize = 48;
/// Threads a parcel visits after the one that built it; the last one
/// checks it against a replay and drops it.
const HOPS: usize = 3;
/// Rounds whose parcels a worker may have in flight before it waits.
const WINDOW: usize = 4;
/// Waves of `THREADS` short-lived threads in the fan-out part, times the
/// soak multiplier.
const WAVES: usize = 16;
/// Strings per thread in a fan-out wave.
const PIECE: usize = 400;

/// How much more an optimised build does by default than a debug one.
const RELEASE_SCALE: usize = if cfg!(debug_assertions) { 1 } else { 4 };

/// The work multiplier: `ARENALLOC_SOAK` (default 1) times `RELEASE_SCALE`.
fn soak() -> usize {
    RELEASE_SCALE * soak_env()
}

/// A generator of this binary's stream (`Rng`), seeded by `path`.
fn rng(path: &[u64]) -> Rng {
    Rng::from_path(0x01ba_d5ee_d0fa_110c, path)
}

// ----- parcels: collections that travel --------------------------------------------

/// What travels between threads. Its contents are a function of where it
/// was built and where it has been, so the last holder can replay it.
#[derive(Debug, PartialEq, Eq)]
struct Parcel {
    origin: usize,
    round: usize,
    hop: usize,
    map: HashMap<String, Vec<u32>>,
    tree: BTreeMap<u64, String>,
    list: Vec<String>,
    text: String,
    boxes: VecDeque<Box<[u64]>>,
}

/// The thread that holds parcel (`origin`, `round`) at hop `hop`. Each hop
/// adds a stride in `1..THREADS` that depends only on the round and hop, so
/// a parcel never stays put and, for a fixed round and hop, holders are a
/// permutation of origins: every thread receives exactly `ROUNDS * HOPS`
/// parcels.
fn holder(origin: usize, round: usize, hop: usize) -> usize {
    (0..hop).fold(origin, |at, h| {
        let stride = 1 + (round * HOPS + h) * 7 % (THREADS - 1);
        (at + stride) % THREADS
    })
}

/// Builds parcel (`origin`, `round`) as its origin does.
fn build(origin: usize, round: usize) -> Parcel {
    let mut r = rng(&[origin as u64, round as u64]);
    let n = 32 + r.below(96);
    let map = (0..n)
        .map(|i| {
            let v = (0..(i % 41) as u32).map(|x| x ^ i as u32).collect();
            (format!("{origin}/{round}/{i}"), v)
        })
        .collect();
    let tree = (0..n as u64)
        .map(|i| {
            let key = (origin as u64) << 40 | (round as u64) << 20 | i;
            (key, i.to_string().repeat(i as usize % 5 + 1))
        })
        .collect();
    let list = (0..n)
        .map(|i| format!("item {i} of {origin}/{round}"))
        .collect();
    let mut text = String::new();
    for i in 0..n {
        write!(text, "{i},").unwrap();
    }
    let boxes = (0..8u64)
        .map(|b| {
            // About one parcel in four carries a box for the large path.
            let len = if r.below(32) == 0 {
                150_000 + r.below(100_000)
            } else {
                1 + r.below(2_000)
            };
            let seed = mix((origin as u64) << 32 ^ (round as u64) << 8 ^ b);
            (0..len as u64).map(|k| seed ^ k).collect()
        })
        .collect();
    Parcel {
        origin,
        round,
        hop: 0,
        map,
        tree,
        list,
        text,
        boxes,
    }
}

/// What thread `me` does to a parcel at hop `hop`: removes some of
/// everything, adds its own entries, resorts.
fn mutate(p: &mut Parcel, hop: usize, me: usize) {
    p.hop = hop;
    let tag = format!("/{hop}");
    p.map.retain(|k, _| !k.ends_with(&tag));
    for j in 0..16 {
        p.map
            .insert(format!("hop {hop} at {me} #{j}"), vec![me as u32; j + 1]);
    }
    p.tree.retain(|k, _| k % 3 != hop as u64 % 3);
    p.tree.insert(
        u64::MAX - (hop * THREADS + me) as u64,
        format!("hop {hop} at {me}"),
    );
    p.list.reverse();
    p.list.retain(|s| s.len() % 3 != hop % 3);
    p.list.push(format!("hop {hop} at {me}"));
    p.list.sort_unstable();
    write!(p.text, "|hop {hop} at {me}|").unwrap();
    p.text.shrink_to_fit();
    p.boxes.pop_front();
    p.boxes
        .push_back(vec![(hop * THREADS + me) as u64; 100 * hop].into_boxed_slice());
}

/// The parcel (`origin`, `round`) as its last holder must find it.
fn replay(origin: usize, round: usize) -> Parcel {
    let mut p = build(origin, round);
    for hop in 1..=HOPS {
        mutate(&mut p, hop, holder(origin, round, hop));
    }
    p
}

/// A value shared by all workers, mutated under a lock: entries one thread
/// inserts, another removes (and checks).
type Board = Mutex<BTreeMap<String, Vec<u8>>>;

/// What a worker reports: the parcels it finished and its board traffic.
struct Report {
    finished: Vec<(usize, usize)>,
    inserted: usize,
    removed: usize,
}

fn worker(
    me: usize,
    rounds: usize,
    inbox: mpsc::Receiver<Parcel>,
    outboxes: Vec<mpsc::Sender<Parcel>>,
    board: Arc<Board>,
    shared: Arc<Vec<String>>,
) -> Report {
    let mut report = Report {
        finished: Vec::new(),
        inserted: 0,
        removed: 0,
    };
    let handle = |mut p: Parcel, report: &mut Report| {
        let hop = p.hop + 1;
        assert_eq!(
            holder(p.origin, p.round, hop),
            me,
            "parcel delivered to the wrong thread"
        );
        mutate(&mut p, hop, me);
        if hop == HOPS {
            let want = replay(p.origin, p.round);
            assert!(
                p == want,
                "parcel {}/{} differs from its replay",
                p.origin,
                p.round
            );
            report.finished.push((p.origin, p.round));
        } else {
            let to = holder(p.origin, p.round, hop + 1);
            outboxes[to]
                .send(p)
                .expect("every worker receives its count");
        }
    };
    let mut received = 0;
    for round in 0..rounds {
        let p = build(me, round);
        outboxes[holder(me, round, 1)]
            .send(p)
            .expect("every worker receives its count");
        // Bound the parcels in flight: wait (handling arrivals) until the
        // parcels of all but the last `WINDOW` rounds have come by. Cannot
        // deadlock: the thread furthest behind waits only for parcels of
        // rounds every thread has built, and waiting threads forward what
        // they receive, so it always progresses.
        while received < (round + 1).saturating_sub(WINDOW) * HOPS {
            let p = inbox.recv().expect("every parcel is delivered");
            handle(p, &mut report);
            received += 1;
        }
        while let Ok(p) = inbox.try_recv() {
            handle(p, &mut report);
            received += 1;
        }
        // Board traffic: insert ours, take the neighbour's previous one.
        let mine = format!("{me}/{round}");
        let value = vec![(me ^ round) as u8; 64 + (me * 31 + round) % 2_000];
        let prev = round.checked_sub(1).map(|r| {
            (
                format!("{}/{r}", (me + 1) % THREADS),
                ((me + 1) % THREADS) ^ r,
            )
        });
        let mut b = board.lock().unwrap();
        b.insert(mine, value);
        report.inserted += 1;
        if let Some((key, byte)) = prev {
            if let Some(v) = b.remove(&key) {
                drop(b);
                assert!(v.iter().all(|&x| x == byte as u8), "board entry {key}");
                report.removed += 1;
            }
        }
        let s = &shared[(me + round) % shared.len()];
        assert!(s.starts_with("shared "), "shared string corrupted: {s}");
    }
    while received < rounds * HOPS {
        let p = inbox.recv().expect("every parcel is delivered");
        handle(p, &mut report);
        received += 1;
    }
    report
}

fn parcels_across_64_threads() {
    let rounds = ROUNDS * soak();
    let (outboxes, inboxes): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel()).unzip();
    let board = Arc::new(Board::default());
    let shared: Arc<Vec<String>> = Arc::new(
        (0..1_000)
            .map(|i| format!("shared {i} {}", "s".repeat(i % 64)))
            .collect(),
    );
    let handles: Vec<_> = inboxes
        .into_iter()
        .enumerate()
        .map(|(me, inbox)| {
            let (outboxes, board, shared) = (outboxes.clone(), board.clone(), shared.clone());
            thread::spawn(move || worker(me, rounds, inbox, outboxes, board, shared))
        })
        .collect();
    drop((outboxes, shared));
    let mut finished = Vec::new();
    let (mut inserted, mut removed) = (0, 0);
    for h in handles {
        let r = h.join().expect("a worker panicked");
        finished.extend(r.finished);
        inserted += r.inserted;
        removed += r.removed;
    }
    finished.sort_unstable();
    let all: Vec<_> = (0..THREADS)
        .flat_map(|o| (0..rounds).map(move |r| (o, r)))
        .collect();
    assert!(finished == all, "every parcel finishes exactly once");
    let board = Arc::try_unwrap(board).expect("the workers are gone");
    let board = board.into_inner().unwrap();
    assert_eq!(inserted, THREADS * rounds);
    assert_eq!(board.len(), inserted - removed);
    for (key, v) in &board {
        let (me, round) = key.split_once('/').unwrap();
        let byte = me.parse::<usize>().unwrap() ^ round.parse::<usize>().unwrap();
        assert!(v.iter().all(|&x| x == byte as u8), "board entry {key}");
    }
}

/// Waves of 64 short-lived threads: each takes a piece the main thread
/// built (so it frees the main thread's blocks) and returns a map the main
/// thread drops after the wave has exited (frees into orphaned arenas,
/// which the next wave adopts).
fn fan_out_and_back_in_waves() {
    for wave in 0..WAVES * soak() {
        let pieces: Vec<Vec<String>> = (0..THREADS)
            .map(|t| {
                (0..PIECE)
                    .map(|i| format!("{t}:{i}:{wave}:{}", "z".repeat(i % 50)))
                    .collect()
            })
            .collect();
        let maps: Vec<BTreeMap<String, usize>> = thread::scope(|s| {
            let handles: Vec<_> = pieces
                .into_iter()
                .map(|piece| {
                    s.spawn(move || {
                        piece
                            .into_iter()
                            .map(|s| {
                                let n = s.len();
                                (s.to_uppercase(), n)
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a wave thread panicked"))
                .collect()
        });
        for (t, m) in maps.iter().enumerate() {
            assert_eq!(m.len(), PIECE);
            for (k, &n) in m {
                let parts: Vec<&str> = k.split(':').collect();
                let i: usize = parts[1].parse().expect("an index");
                let want = [
                    t.to_string(),
                    i.to_string(),
                    wave.to_string(),
                    "Z".repeat(i % 50),
                ];
                assert!(parts == want, "{k} in map {t} of wave {wave}");
                assert_eq!(k.len(), n);
            }
        }
        drop(maps);
    }
}

fn heap_checks_and_balances() {
    HEAP.check()
        .expect("heap invariants after the threads joined");
    let s = HEAP.stats();
    let arenas = s.arenas();
    let sum = |f: fn(&arenalloc::ArenaStats) -> u64| arenas.iter().map(f).sum::<u64>();
    let (remote, fallbacks, adoptions) = (
        sum(|a| a.remote_frees),
        sum(|a| a.queue_full_fallbacks),
        sum(|a| a.adoptions),
    );
    let used = arenas.iter().filter(|a| a.allocations > 0).count();
    println!(
        "    {} allocations, {} live blocks, {used} arenas used, {remote} remote frees, \
         {fallbacks} queue-full fallbacks, {adoptions} adoptions",
        s.allocations(),
        s.live_blocks()
    );
    assert_eq!(
        s.allocations() - s.frees(),
        s.live_blocks() as u64,
        "every allocation is live or freed"
    );
    // Only the runtime's own few allocations remain.
    assert!(
        s.live_blocks() < 1_000,
        "leaked blocks: {}",
        s.live_blocks()
    );
    assert!(remote > 0, "no free went through a remote queue");
    assert!(used > 1, "only {used} arena used by 64 threads");
    assert!(adoptions > 0, "no exited thread's arena was adopted");
}

fn main() {
    let tests: [(&str, fn()); 3] = [
        ("parcels_across_64_threads", parcels_across_64_threads),
        ("fan_out_and_back_in_waves", fan_out_and_back_in_waves),
        ("heap_checks_and_balances", heap_checks_and_balances),
    ];
    for (name, f) in tests {
        f();
        println!("test {name} ... ok");
    }
    println!("global_alloc_threads: {} passed, 0 failed", tests.len());
}
