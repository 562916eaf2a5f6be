//! The `service` workload and its table: a small JSON service on a tokio
//! multi-thread runtime, the shape of program users run (issue 18, item
//! 5), measured in requests per second.
//!
//! ```text
//!  client tasks (4 per worker)                   handler tasks (1 per worker)
//!  build a document: 8-64 items   ── mpsc ──▶    parse it, keep the items whose
//!  (numbers, names, tags, a note                 qty reaches the threshold, add a
//!  of 16 B-4 KiB), serialise it                  total to each, re-serialise
//!  parse the answer, check it     ◀─ oneshot ─   the answer
//! ```
//!
//! Unlike every other workload it does not call the allocator under test
//! through its value: the runtime, serde_json's strings, vectors and maps,
//! the channels and the tasks allocate through the global allocator, which
//! in this workload's children *is* the allocator under test (`global.rs`;
//! the parent sets its environment variable and the child checks it).
//! Blocks range from tens of bytes (keys, tags, map nodes) through the
//! notes (up to 4 KiB, many above 1 KiB) to the documents' bodies, tens of
//! KiB grown by `realloc` as they are written.
//!
//! Invariants:
//! * An op is one request answered and checked (the answer's sequence
//!   number, kept count and quantity sum match what the client computed
//!   while building the document): a wrong answer fails the run.
//! * Only requests answered before the stop flag was seen count; the time
//!   is from the clients' spawn to the flag.
//! * The runtime is shut down, and so every task, channel and document
//!   freed, before the workload returns (the child then runs `check()` on
//!   arenalloc).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::plan::Plan;
use super::table::{mib, ok, rate, Table};
use super::workloads::{Outcome, Params, Rng, Workload};

/// Client tasks per worker thread: enough requests in flight to keep every
/// worker busy while others wait on their answers.
const CLIENTS_PER_WORKER: usize = 4;
/// Requests a handler's channel holds before senders wait.
const QUEUE: usize = 16;
/// Items per document.
const ITEMS_MIN: usize = 8;
const ITEMS_MAX: usize = 64;
/// A note's length, log-uniform in `NOTE_MIN..NOTE_MAX` (powers of two).
const NOTE_MIN: usize = 16;
const NOTE_MAX: usize = 4096;
/// `qty` is uniform in `0..=QTY_MAX`; the threshold too.
const QTY_MAX: usize = 1000;

/// One request: a serialised document and where its answer goes.
struct Request {
    body: String,
    reply: oneshot::Sender<String>,
}

/// What the client expects back for one document.
#[derive(Debug, PartialEq, Eq)]
struct Expect {
    seq: u64,
    kept: u64,
    qty_sum: u64,
}

/// Runs the service on `p.threads` workers for `p.seconds`.
pub(super) fn service(p: &Params) -> Outcome {
    let workers = p.threads.max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("service-worker")
        .build()
        .expect("a tokio runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let mut queues = Vec::with_capacity(workers);
    let mut handlers = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (tx, rx) = mpsc::channel(QUEUE);
        queues.push(tx);
        handlers.push(runtime.spawn(handler(rx)));
    }
    let queues = Arc::new(queues);
    let clients = workers * CLIENTS_PER_WORKER;
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|id| runtime.spawn(client(id, Arc::clone(&queues), Arc::clone(&stop))))
        .collect();
    // The measurement period, as `timed` in workloads.rs: the clients run
    // until they see the flag.
    std::thread::sleep(Duration::from_secs_f64(p.seconds));
    stop.store(true, Ordering::Relaxed);
    let seconds = start.elapsed().as_secs_f64();
    drop(queues);
    let (requests, body_bytes) = runtime.block_on(async {
        let (mut requests, mut bytes) = (0, 0);
        for t in tasks {
            let (n, b) = t.await.expect("a client task failed");
            requests += n;
            bytes += b;
        }
        // Every client has dropped its senders: each handler's `recv`
        // returns `None` once its queue is empty.
        for h in handlers {
            h.await.expect("a handler task failed");
        }
        (requests, bytes)
    });
    drop(runtime);
    Outcome {
        ops: requests,
        seconds,
        extra: vec![
            ("requests", requests),
            ("clients", clients as u64),
            ("handlers", workers as u64),
            (
                "mean_request_bytes",
                body_bytes.checked_div(requests).unwrap_or(0),
            ),
        ],
        json: Vec::new(),
    }
}

/// A client: builds, sends and checks documents until `stop`; returns the
/// requests answered before it saw `stop` and their bodies' bytes.
async fn client(
    id: usize,
    queues: Arc<Vec<mpsc::Sender<Request>>>,
    stop: Arc<AtomicBool>,
) -> (u64, u64) {
    let mut rng = Rng::new(id as u64 + 900);
    let (mut requests, mut bytes) = (0, 0);
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let (doc, expect) = document(&mut rng, id, seq);
        let body = doc.to_string();
        drop(doc);
        let len = body.len() as u64;
        let (reply, answer) = oneshot::channel();
        let Some(queue) = queues.get(rng.range(0, queues.len() - 1)) else {
            break;
        };
        queue
            .send(Request { body, reply })
            .await
            .expect("a handler stopped early");
        let answer = answer.await.expect("a handler dropped a request");
        let answer: Value = serde_json::from_str(&answer).expect("the answer is JSON");
        let got = Expect {
            seq: answer["seq"].as_u64().unwrap_or(0),
            kept: answer["kept"].as_u64().unwrap_or(u64::MAX),
            qty_sum: answer["qty_sum"].as_u64().unwrap_or(u64::MAX),
        };
        assert_eq!(got, expect, "client {id}: wrong answer");
        assert_eq!(
            answer["items"].as_array().map(Vec::len),
            Some(expect.kept as usize),
            "client {id}: wrong item list"
        );
        if stop.load(Ordering::Relaxed) {
            break;
        }
        requests += 1;
        bytes += len;
    }
    (requests, bytes)
}

/// A handler: answers the requests of its queue until every sender is
/// gone.
async fn handler(mut queue: mpsc::Receiver<Request>) {
    while let Some(Request { body, reply }) = queue.recv().await {
        let doc: Value = serde_json::from_str(&body).expect("the request is JSON");
        drop(body);
        // Every client waits for its answer; a closed channel would be
        // no error of the handler's, and the client's own check fails.
        let _ = reply.send(answer(doc).to_string());
    }
}

/// The answer to `doc`: its items whose `qty` reaches its `threshold`,
/// each with a `total`, their count and the sum of their `qty`.
fn answer(mut doc: Value) -> Value {
    let threshold = doc["threshold"].as_u64().unwrap_or(0);
    let items = match doc["items"].take() {
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    let mut qty_sum = 0;
    let kept: Vec<Value> = items
        .into_iter()
        .filter_map(|mut item| {
            let qty = item["qty"].as_u64()?;
            if qty < threshold {
                return None;
            }
            qty_sum += qty;
            let total = item["price"].as_f64().unwrap_or(0.0) * qty as f64;
            item["total"] = json!(total);
            Some(item)
        })
        .collect();
    json!({
        "seq": doc["seq"],
        "client": doc["client"],
        "kept": kept.len(),
        "qty_sum": qty_sum,
        "items": kept,
    })
}

/// Letters for names, tags and notes; the quote and the newline make the
/// serialiser escape and the parser unescape.
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,\"\n";

/// Random characters of [`ALPHABET`], twice the longest note: every text
/// is a copy of a random stretch of it (cheap, so that the clients'
/// time goes to JSON and allocation rather than to random numbers).
fn source() -> &'static str {
    static SOURCE: OnceLock<String> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let mut rng = Rng::new(7);
        (0..2 * NOTE_MAX)
            .map(|_| char::from(ALPHABET[rng.range(0, ALPHABET.len() - 1)]))
            .collect()
    })
}

/// `len <= 2 * NOTE_MAX` random characters of [`ALPHABET`], in a string of
/// their own.
fn text(rng: &mut Rng, len: usize) -> String {
    let source = source();
    let len = len.min(source.len());
    let at = rng.range(0, source.len() - len);
    // ASCII throughout: every offset is a character boundary.
    source.get(at..at + len).unwrap_or_default().to_owned()
}

/// A document of 8-64 items and what its answer must say.
fn document(rng: &mut Rng, client: usize, seq: u64) -> (Value, Expect) {
    let n = rng.range(ITEMS_MIN, ITEMS_MAX);
    let threshold = rng.range(0, QTY_MAX) as u64;
    let (mut kept, mut qty_sum) = (0, 0);
    let items: Vec<Value> = (0..n)
        .map(|i| {
            let qty = rng.range(0, QTY_MAX) as u64;
            if qty >= threshold {
                kept += 1;
                qty_sum += qty;
            }
            let tags: Vec<String> = (0..rng.range(1, 4))
                .map(|_| {
                    let len = rng.range(3, 12);
                    text(rng, len)
                })
                .collect();
            let name_len = rng.range(4, 40);
            let note_len = rng.log_range(NOTE_MIN, NOTE_MAX);
            json!({
                "id": seq * 100 + i as u64,
                "name": text(rng, name_len),
                "price": rng.range(1, 100_000) as f64 / 100.0,
                "qty": qty,
                "tags": tags,
                "note": text(rng, note_len),
            })
        })
        .collect();
    let doc = json!({
        "client": client,
        "seq": seq,
        "threshold": threshold,
        "items": items,
    });
    (doc, Expect { seq, kept, qty_sum })
}

// ----- the table -------------------------------------------------------------

/// Requests per second, to three significant digits: "41.2 k", "1.23 M".
fn per_sec(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else if r >= 1e5 {
        format!("{:.0} k", r / 1e3)
    } else if r >= 1e4 {
        format!("{:.1} k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

/// The service row of `alloc` at `threads`.
fn find<'a>(rows: &'a [Value], alloc: &str, threads: usize) -> Option<&'a Value> {
    find_in(Workload::Service, rows, alloc, threads)
}

/// The comparison (not sweep) row of workload `w`, `alloc`, `threads`.
fn find_in<'a>(w: Workload, rows: &'a [Value], alloc: &str, threads: usize) -> Option<&'a Value> {
    rows.iter().find(|r| {
        r["workload"] == w.name()
            && r["allocator"] == alloc
            && r["threads"].as_u64() == Some(threads as u64)
            && r["max_arenas"].is_null()
    })
}

/// A cell: `value(row)` formatted, and for a peer ×(peer ÷ arenalloc).
fn cell(
    row: Option<&Value>,
    base: Option<&Value>,
    value: impl Fn(&Value) -> f64,
    show: impl Fn(f64) -> String,
) -> String {
    let Some(row) = row else {
        return "-".into();
    };
    if !ok(row) {
        return row["status"].as_str().unwrap_or("failed").to_string();
    }
    let v = value(row);
    match base.filter(|b| ok(b) && !std::ptr::eq(*b, row)).map(&value) {
        Some(b) if b > 0.0 => format!("{} ×{:.2}", show(v), v / b),
        _ => show(v),
    }
}

/// The service workload's table: requests/s and peak RSS per worker
/// count, each peer's ratio to arenalloc; then arenalloc's lock
/// acquisitions per 1,000 allocations.
pub(crate) fn print_table(plan: &Plan, rows: &[Value]) {
    let threads = plan.threads_of(Workload::Service);
    let mut head = vec!["allocator".to_string()];
    head.extend(threads.iter().map(|t| format!("req/s, {t} workers")));
    head.extend(threads.iter().map(|t| format!("peak RSS, {t} workers")));
    let mut t = Table::new(head);
    for a in plan.allocators_of(Workload::Service) {
        let mut cells = vec![a.to_string()];
        for &n in &threads {
            cells.push(cell(
                find(rows, a, n),
                find(rows, "arenalloc", n),
                rate,
                per_sec,
            ));
        }
        for &n in &threads {
            let rss = |r: &Value| r["peak_rss_bytes"].as_u64().unwrap_or(0) as f64;
            cells.push(cell(
                find(rows, a, n),
                find(rows, "arenalloc", n),
                rss,
                |b| mib(b as u64),
            ));
        }
        t.rows.push(cells);
    }
    let locks = lock_acquisitions(Workload::Service, &threads, rows, |n| {
        format!("{n} workers")
    });
    println!(
        "\nRequests per second (answered and checked) and peak RSS; ×(peer ÷ arenalloc): \
         above 1 the peer serves more (or uses more memory).\n\n{}{locks}",
        t.render()
    );
}

/// The paragraph under a workload's table giving arenalloc's lock
/// acquisitions per 1,000 allocations at each of `threads` (`label`
/// names a count: "2 workers", "2 threads"), from the fields every
/// arenalloc child reports (`child.rs`, `LockCounts`); empty when no
/// arenalloc row succeeded.
pub(crate) fn lock_acquisitions(
    w: Workload,
    threads: &[usize],
    rows: &[Value],
    label: impl Fn(usize) -> String,
) -> String {
    let mut locks = String::new();
    for &n in threads {
        let Some(r) = find_in(w, rows, "arenalloc", n).filter(|r| ok(r)) else {
            continue;
        };
        let per_1k = r["lock_acquisitions_per_1k_allocations"]
            .as_f64()
            .map_or("-".into(), |x| format!("{x:.1}"));
        let _ = write!(
            locks,
            "\n- {}: {per_1k} ({} lock acquisitions, {} allocations)",
            label(n),
            r["lock_acquisitions_during_run"],
            r["allocations_during_run"],
        );
    }
    if !locks.is_empty() {
        locks.insert_str(
            0,
            "\n\narenalloc's lock acquisitions per 1,000 allocations (every arena, the whole \
             child process while the workload ran):",
        );
    }
    locks
}
