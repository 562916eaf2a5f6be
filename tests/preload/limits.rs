//! Resource-limit cases (issue 9 items 1, 5, 6): unbounded thread counts,
//! the internal pool, address-space limits. The C side is
//! `tests/c/limits.c`; the Rust-side figures (pool bytes, adoptions) are
//! asserted by `tests/thread_churn.rs` and `tests/pool.rs`.

use super::*;

/// Compiles `tests/c/limits.c` once.
fn limits_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| compile_c(&scratch("c-limits"), "limits", &[]))
}

/// The `peak committed` figure of every process's exit report.
fn peaks(s: &Stats) -> Vec<u64> {
    s.lines
        .iter()
        .filter_map(|l| l.split("peak committed").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Item 1: every thread that ever allocated used to leave a TLS-destructor
/// node in the never-reclaimed internal pool; glibc aborted with "failed to
/// register TLS destructor: out of memory" after ~12,500 threads.
#[test]
fn c_120k_threads_sequential_and_churned_run_to_the_end() {
    let dir = scratch("c-threads");
    let (out, s) = run(&dir, Command::new(limits_binary()).arg("threads"));
    assert_ok(&out, "limits threads");
    assert_eq!(stdout(&out), "ok threads 120000\n");
    assert!(s.allocations >= 120_000, "every thread allocated: {s:?}");
    assert!(
        s.max_arenas <= 16,
        "exited threads' arenas were adopted: {s:?}"
    );
}

/// Item 1 with one arena: the pool is a few KiB plus the slack, and it
/// used to run out after ~1,000 threads.
#[test]
fn c_threads_with_one_arena_run_to_the_end() {
    let dir = scratch("c-threads-one");
    let (out, s) = run(
        &dir,
        Command::new(limits_binary())
            .args(["threads", "20000", "20000"])
            .env("ARENALLOC_MAX_ARENAS", "1"),
    );
    assert_ok(&out, "limits threads (one arena)");
    assert_eq!(stdout(&out), "ok threads 40000\n");
    assert!(s.allocations >= 40_000, "{s:?}");
    assert_eq!(s.max_arenas, 1, "{s:?}");
}

/// Item 5: with 40 pthread keys created before the first malloc, the
/// allocator's thread-exit key is past glibc's first 32, so every binding
/// thread's `pthread_setspecific` callocs a 512-byte block from the
/// internal pool, which glibc frees at thread exit. Without reuse of freed
/// pool blocks the pool ran out after ~1,100 threads (and the next arena's
/// queue buffer could not be allocated: abort); with it, its use is what
/// 9 threads at once need.
#[test]
fn c_pool_blocks_freed_by_glibc_at_thread_exit_are_reused() {
    for arenas in ["128", "1"] {
        let dir = scratch(&format!("c-keys-{arenas}"));
        let (out, s) = run(
            &dir,
            Command::new(limits_binary())
                .arg("keys")
                .env("ARENALLOC_MAX_ARENAS", arenas),
        );
        assert_ok(&out, &format!("limits keys (max arenas {arenas})"));
        assert_eq!(stdout(&out), "ok keys 40000\n");
        assert!(s.allocations >= 40_000, "{s:?}");
    }
}

/// Item 6: under `ulimit -v` the region used to be refused and every
/// program failed ("memory exhausted"); now it is sized to what the limit
/// leaves, and the program's allocations, large ones included, succeed.
#[test]
fn ulimit_v_4g_python_and_a_c_program_allocate() {
    let dir = scratch("ulimit");
    let under_limit = |prog: &str, args: &[&str]| {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("ulimit -v 4000000 && exec \"$0\" \"$@\"")
            .arg(prog)
            .args(args);
        c
    };
    let (out, s) = run(
        &dir,
        under_limit(&python(), &["-c", "print(1)"]).env("PYTHONMALLOC", "malloc"),
    );
    assert_ok(&out, "python3 under ulimit -v 4000000");
    assert_eq!(stdout(&out), "1\n");
    assert!(s.processes >= 1 && s.allocations > 1_000, "{s:?}");

    let bin = limits_binary().to_str().unwrap().to_string();
    let (out, s) = run(&dir, &mut under_limit(&bin, &["alloc"]));
    assert_ok(&out, "limits alloc under ulimit -v 4000000");
    assert_eq!(stdout(&out), "ok alloc 65536 8\n");
    assert!(s.allocations >= 65_536 + 8, "{s:?}");
    // The 8 large blocks of 16 MiB and the 64 Ki small ones were live at
    // once: all of it was committed inside the (smaller) region.
    let peak = peaks(&s).into_iter().max().unwrap_or(0);
    assert!(
        peak >= 8 * (16 << 20) + (32 << 20),
        "peak committed {peak}: {s:?}"
    );
}
