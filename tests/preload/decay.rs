//! Memory back to the OS under the preload library (issue 11): the C side
//! is `tests/c/decay.c`, which prints its RSS figures; the library's own
//! accounting is asserted by `tests/decay.rs`.

use super::*;

/// Compiles `tests/c/decay.c` once.
fn decay_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| compile_c(&scratch("c-decay"), "decay", &[]))
}

/// The number after `key` in `line`.
fn field(line: &str, key: &str) -> i64 {
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == key {
            return words
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(i64::MIN);
        }
    }
    panic!("no {key} in {line:?}")
}

/// 256 MiB freed by a thread that owns none of it, with the owners alive
/// and idle and no thread allocating afterwards: the decay gives it back
/// within its time (200 ms by default; 3 s allowed) without anyone else
/// calling the allocator.
#[test]
fn c_remote_frees_to_idle_owners_go_back_without_any_new_call() {
    let dir = scratch("c-decay-remote");
    let (out, _) = run(&dir, Command::new(decay_binary()).args(["remote", "256"]));
    assert_ok(&out, "decay remote");
    let line = stdout(&out);
    eprintln!("{line}");
    assert!(field(&line, "live_kib") >= 256 * 1024, "{line}");
    let fell = field(&line, "fell_kib");
    // To 1.2x of what is live (nothing) plus a fixed 16 MiB: metadata,
    // the idle owners' caches, the process's own pages.
    assert!(fell >= 0, "RSS never fell to 16 MiB within 3 s: {line}");
    assert!(
        field(&line, "fell_ms") <= 1000,
        "slower than the decay: {line}"
    );
}

/// With decay off, `malloc_trim(0)` gives the same memory back at once.
#[test]
fn c_malloc_trim_returns_remote_freed_memory_at_once() {
    let dir = scratch("c-decay-trim");
    let (out, _) = run(
        &dir,
        Command::new(decay_binary())
            .args(["trim", "256"])
            .env("ARENALLOC_PURGE_MS", "-1"),
    );
    assert_ok(&out, "decay trim");
    let line = stdout(&out);
    eprintln!("{line}");
    assert_eq!(field(&line, "returned"), 1, "{line}");
    assert!(field(&line, "trimmed_kib") <= 16 * 1024, "{line}");
}

/// 14 exited threads each left an arena holding a chunk (its cache's
/// refill) in a 64 MiB region: the 3 MiB blocks are still served, from
/// what the region takes back before it reports exhaustion.
#[test]
fn c_exhausted_region_takes_back_what_exited_threads_keep() {
    let dir = scratch("c-decay-exhaust");
    let (out, s) = run(
        &dir,
        Command::new(decay_binary())
            .arg("exhaust")
            .env("ARENALLOC_REGION_SIZE", "64M")
            .env("ARENALLOC_PURGE_MS", "-1"),
    );
    assert_ok(&out, "decay exhaust");
    assert_eq!(stdout(&out), "ok exhaust served 3\n", "{s:?}");
}

/// The decay thread never keeps a process alive: when the main thread
/// calls `pthread_exit` and the last worker returns, the process ends with
/// status 0 as it would without arenalloc (`timeout` turns a hang into
/// status 124).
#[test]
fn c_a_process_ends_when_its_last_thread_exits_despite_the_decay_thread() {
    let dir = scratch("c-decay-lastexit");
    let (out, _) = run(
        &dir,
        Command::new("timeout")
            .arg("30")
            .arg(decay_binary())
            .arg("lastexit"),
    );
    assert_ok(&out, "decay lastexit");
    assert_eq!(stdout(&out), "ok worker done\n");
}

/// The same in a child forked from a non-main thread whose thread then
/// returns: the child's registry knows only that thread is alive, so the
/// decay thread (started in the child) leaves and the child exits 0.
#[test]
fn c_a_child_forked_from_a_thread_ends_when_that_thread_returns() {
    let dir = scratch("c-decay-forkthread");
    let (out, _) = run(
        &dir,
        Command::new("timeout")
            .arg("30")
            .arg(decay_binary())
            .arg("forkthread"),
    );
    assert_ok(&out, "decay forkthread");
    assert_eq!(stdout(&out), "ok forkthread child exited 0\n");
}
