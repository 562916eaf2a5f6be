//! The LD_PRELOAD library on real programs: each runs with
//! `LD_PRELOAD=libarenalloc.so` — in the default configuration (what
//! users run) and hardened (whose checks must stay silent on them) — and
//! is checked for exit status 0 and its expected output, and for `ARENALLOC_STATS` figures (appended to a file,
//! so that programs that check their own stderr are undisturbed) that prove
//! its allocations went through arenalloc.
//!
//! The library is built by this test (`cargo build --release -p
//! arenalloc-preload` into `target/preload-test`). A program missing from
//! the machine fails the test: CI installs them (`.ci/run`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Builds `libarenalloc.so` once and returns its path.
fn library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = root.join("target").join("preload-test");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--release",
                "-p",
                "arenalloc-preload",
                "--target-dir",
            ])
            .arg(&target)
            .current_dir(root)
            .status()
            .expect("run cargo");
        assert!(status.success(), "building the preload library failed");
        let lib = target.join("release").join("libarenalloc.so");
        assert!(lib.exists(), "{} missing", lib.display());
        lib
    })
}

/// A scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("preload-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Allocation figures summed over every process that ran under the library.
#[derive(Debug, Default)]
struct Stats {
    processes: u64,
    allocations: u64,
    frees: u64,
    remote_frees: u64,
    max_arenas: u64,
    lines: Vec<String>,
}

fn read_stats(file: &Path) -> Stats {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut s = Stats::default();
    let field = |line: &str, name: &str| -> Option<u64> {
        let rest = line.split(name).nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    };
    for line in text.lines() {
        if line.contains("stats at exit") {
            s.processes += 1;
        }
        if let (Some(a), Some(f), Some(r)) = (
            field(line, "allocations"),
            field(line, " frees"),
            field(line, "remote frees"),
        ) {
            s.allocations += a;
            s.frees += f;
            s.remote_frees += r;
        }
        if let Some(n) = field(line, "arenas used") {
            s.max_arenas = s.max_arenas.max(n);
        }
        s.lines.push(line.to_string());
    }
    s
}

/// Runs `cmd` under the library, hardened, with statistics going to a
/// file beside `dir`.
fn run(dir: &Path, cmd: &mut Command) -> (Output, Stats) {
    run_configured(dir, cmd, true)
}

/// `run`, in the default configuration (`hardened` false) or hardened.
fn run_configured(dir: &Path, cmd: &mut Command, hardened: bool) -> (Output, Stats) {
    // Beside the directory, not in it: `git add .` must not see it.
    let stats = dir.with_extension("stats");
    let _ = std::fs::remove_file(&stats);
    let out = cmd
        .current_dir(dir)
        .env("LD_PRELOAD", library())
        .env("ARENALLOC_STATS", &stats)
        // Hardened, the checks must not fire on real programs; the
        // default configuration is what users run.
        .env("ARENALLOC_HARDENED", if hardened { "1" } else { "0" })
        .output()
        .expect("spawn");
    let s = read_stats(&stats);
    for line in &s.lines {
        eprintln!("{line}");
    }
    (out, s)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn assert_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The real interpreter (a pyenv shim would spawn shells of its own).
fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3");
    stdout(&out).trim().to_string()
}

#[test]
fn python_multithreaded_script() {
    // The default configuration (what users run) and hardened (whose
    // checks must stay silent).
    for hardened in [false, true] {
        let dir = scratch(&format!("python-{hardened}"));
        let script = r#"
import threading
results = []
def work(n):
    total = 0
    for i in range(3000):
        d = {str(j): [j] * 8 for j in range(30)}
        s = "-".join(d.keys()) * 3
        total += len(d) + len(s) + sum(sum(v) for v in d.values())
    results.append((n, total))
threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(len(results), sorted(set(t for _, t in results)))
"#;
        let plain = Command::new(python())
            .args(["-c", script])
            .output()
            .expect("python3");
        assert_ok(&plain, "python3 script without the library");
        let (out, s) = run_configured(
            &dir,
            Command::new(python())
                .args(["-c", script])
                .env("PYTHONMALLOC", "malloc"),
            hardened,
        );
        assert_ok(&out, "python3 script");
        assert!(stdout(&out).starts_with("8 ["), "{}", stdout(&out));
        assert_eq!(
            stdout(&out),
            stdout(&plain),
            "same output as with glibc's malloc"
        );
        assert!(s.allocations > 1_000_000, "{s:?}");
        assert!(s.max_arenas > 1, "threads used arenas of their own: {s:?}");
    }
}

#[test]
fn python_test_suite_selection() {
    // The default configuration (what users run) and hardened (whose
    // checks must stay silent).
    for hardened in [false, true] {
        let dir = scratch(&format!("pytest-{hardened}"));
        // test_import_from_another_thread fails on this machine's Python
        // without the library too (its site set-up imports threading).
        let (out, s) = run_configured(
            &dir,
            Command::new(python())
                .args([
                    "-m",
                    "test",
                    "test_list",
                    "test_dict",
                    "test_set",
                    "test_unicode",
                    "test_bytes",
                    "test_threading",
                ])
                .args(["-i", "test_import_from_another_thread"])
                .env("PYTHONMALLOC", "malloc"),
            hardened,
        );
        assert_ok(&out, "python3 -m test");
        assert!(stdout(&out).contains("Result: SUCCESS"), "{}", stdout(&out));
        assert!(s.allocations > 5_000_000, "{s:?}");
        assert!(s.remote_frees > 0, "{s:?}");
    }
}

#[test]
fn sqlite_inserts_index_and_queries() {
    // The default configuration (what users run) and hardened (whose
    // checks must stay silent).
    for hardened in [false, true] {
        let dir = scratch(&format!("sqlite-{hardened}"));
        let sql = "CREATE TABLE t(a INTEGER, b TEXT);
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000)
  INSERT INTO t SELECT x, hex(randomblob(16)) FROM c;
COMMIT;
CREATE INDEX tb ON t(b);
SELECT count(*), sum(a) FROM t;
SELECT count(*) FROM t WHERE b >= '0' AND length(b) = 32;
SELECT count(*) FROM (SELECT DISTINCT a % 1000 FROM t);
";
        let (out, s) = run_configured(
            &dir,
            Command::new("sqlite3").arg(dir.join("db.sqlite")).arg(sql),
            hardened,
        );
        assert_ok(&out, "sqlite3");
        assert_eq!(stdout(&out), "300000|45000150000\n300000\n1000\n");
        assert!(s.allocations > 100_000, "{s:?}");
    }
}

#[test]
fn sort_a_multi_mib_file() {
    // The default configuration (what users run) and hardened (whose
    // checks must stay silent).
    for hardened in [false, true] {
        let dir = scratch(&format!("sort-{hardened}"));
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut numbers: Vec<u64> = (0..400_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % 1_000_000_000
            })
            .collect();
        let text: String = numbers.iter().map(|n| format!("{n}\n")).collect();
        assert!(text.len() > 3 << 20);
        std::fs::write(dir.join("in.txt"), &text).unwrap();
        let (out, s) = run_configured(&dir, Command::new("sort").args(["-n", "in.txt"]), hardened);
        assert_ok(&out, "sort");
        numbers.sort_unstable();
        let expected: String = numbers.iter().map(|n| format!("{n}\n")).collect();
        assert!(stdout(&out) == expected, "sort output differs");
        assert!(s.processes >= 1 && s.allocations > 10, "{s:?}");
    }
}

#[test]
fn perl_builds_a_large_hash() {
    // The default configuration (what users run) and hardened (whose
    // checks must stay silent).
    for hardened in [false, true] {
        let dir = scratch(&format!("perl-{hardened}"));
        let code = r#"my %h; $h{"k$_"} = $_ * 2 for 1..500000; my $s = 0; $s += $h{"k$_"} for 1..500000; print scalar(keys %h), " $s\n";"#;
        let (out, s) = run_configured(&dir, Command::new("perl").args(["-e", code]), hardened);
        assert_ok(&out, "perl");
        assert_eq!(stdout(&out), "500000 250000500000\n");
        assert!(s.allocations > 500_000, "{s:?}");
    }
}

#[test]
fn git_init_add_commit_of_a_generated_tree() {
    // The default configuration (what users run) and hardened (whose
    // checks must stay silent).
    for hardened in [false, true] {
        let dir = scratch(&format!("git-{hardened}"));
        for d in 0..20 {
            let sub = dir.join(format!("dir{d}"));
            std::fs::create_dir_all(&sub).unwrap();
            for f in 0..20 {
                let body: String = (0..200).map(|i| format!("line {d} {f} {i}\n")).collect();
                std::fs::write(sub.join(format!("file{f}.txt")), body).unwrap();
            }
        }
        let git = |args: &[&str]| {
            let mut c = Command::new("git");
            c.args(args)
                .env("GIT_AUTHOR_NAME", "arenalloc")
                .env("GIT_AUTHOR_EMAIL", "ci@arenalloc.invalid")
                .env("GIT_COMMITTER_NAME", "arenalloc")
                .env("GIT_COMMITTER_EMAIL", "ci@arenalloc.invalid")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("HOME", &dir);
            c
        };
        let mut total = 0;
        for args in [
            &["init", "-q", "."][..],
            &["add", "."],
            &["commit", "-q", "-m", "generated tree"],
            &["fsck", "--strict"],
        ] {
            let (out, s) = run_configured(&dir, &mut git(args), hardened);
            assert_ok(&out, &format!("git {args:?}"));
            assert!(
                s.processes >= 1,
                "git {args:?} ran under the library: {s:?}"
            );
            total += s.allocations;
        }
        let (out, _) = run_configured(&dir, &mut git(&["ls-files"]), hardened);
        assert_eq!(stdout(&out).lines().count(), 400);
        assert!(total > 2_000, "{total}");
    }
}

#[test]
fn gcc_compiles_a_small_program() {
    // The default configuration (what users run) and hardened (whose
    // checks must stay silent).
    for hardened in [false, true] {
        let dir = scratch(&format!("gcc-{hardened}"));
        std::fs::write(
            dir.join("hello.c"),
            "#include <stdio.h>\n#include <stdlib.h>\nint main(void) { int *v = malloc(1000 * sizeof *v); long s = 0;\n\
             for (int i = 0; i < 1000; i++) { v[i] = i; s += v[i]; } free(v); printf(\"sum %ld\\n\", s); return 0; }\n",
        )
        .unwrap();
        let (out, s) = run_configured(
            &dir,
            Command::new("gcc").args(["-O2", "-o", "hello", "hello.c"]),
            hardened,
        );
        assert_ok(&out, "gcc");
        assert!(
            s.processes >= 2,
            "gcc and its passes ran under the library: {s:?}"
        );
        assert!(s.allocations > 10_000, "{s:?}");
        let (out, _) = run_configured(&dir, &mut Command::new(dir.join("hello")), hardened);
        assert_ok(&out, "hello");
        assert_eq!(stdout(&out), "sum 499500\n");
    }
}

/// Compiles the C program `tests/c/<name>.c` into `dir` (`-O2
/// -fno-builtin -pthread -Wall`, plus `extra` flags) and returns the
/// binary. `-fno-builtin`: the compiler must not fold malloc/free pairs
/// away or reason about out-of-bounds writes into them.
fn compile_c(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(format!("{name}.c"));
    let bin = dir.join(name);
    let out = Command::new("cc")
        .args([
            "-O2",
            "-fno-builtin",
            "-pthread",
            "-Wall",
            "-Wno-alloc-size-larger-than",
        ])
        .args(extra)
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("cc");
    assert_ok(&out, &format!("cc {name}.c"));
    bin
}

/// fork at any instant: six threads churn small blocks (a quarter of the
/// frees remote) while the main thread forks 300 times; each child's eight
/// threads allocate, free each other's blocks (verifying their contents)
/// and `malloc_trim(0)`. Before the fork repair, children died of SIGSEGV
/// or hung; no child may fail, in the default configuration or hardened.
#[test]
fn c_fork_storm_every_child_survives() {
    let dir = scratch("c-fork-storm");
    let bin = compile_c(&dir, "fork_storm", &[]);
    for hardened in [false, true] {
        let (out, s) = run_configured(&dir, &mut Command::new(&bin), hardened);
        assert_ok(&out, &format!("fork_storm (hardened: {hardened})"));
        assert_eq!(stdout(&out), "forks 300 failed 0\n");
        assert!(s.allocations > 100_000 && s.remote_frees > 1_000, "{s:?}");
    }
}

/// Compiles `tests/c/stress.c` once.
fn stress_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| compile_c(&scratch("c-stress"), "stress", &[]))
}

#[test]
fn c_stress_every_allocation_function_across_threads() {
    let dir = scratch("c-blocks");
    let (out, s) = run(&dir, Command::new(stress_binary()).arg("blocks"));
    assert_ok(&out, "stress blocks");
    assert_eq!(stdout(&out), "ok blocks\n");
    assert!(s.allocations > 300_000 && s.remote_frees > 10_000, "{s:?}");
}

#[test]
fn c_error_cases_set_errno_like_glibc() {
    let dir = scratch("c-errno");
    let (out, s) = run(&dir, Command::new(stress_binary()).arg("errno"));
    assert_ok(&out, "stress errno");
    assert_eq!(stdout(&out), "ok errno\n");
    assert!(s.allocations >= 3, "{s:?}");
}

#[test]
fn c_fork_while_threads_allocate() {
    let dir = scratch("c-fork");
    let (out, s) = run(&dir, Command::new(stress_binary()).arg("fork"));
    assert_ok(&out, "stress fork");
    assert_eq!(stdout(&out), "ok fork\n");
    // Children leave with _exit (no atexit report); the parent's counts
    // include what its threads did while it forked.
    assert!(s.processes >= 1 && s.allocations > 100_000, "{s:?}");
}

#[test]
fn c_double_free_aborts_with_one_clear_line() {
    let dir = scratch("c-double");
    let (out, _) = run(&dir, Command::new(stress_binary()).arg("double"));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{:?}", out.status);
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("arenalloc:"))
        .unwrap_or_default();
    assert!(
        line.starts_with("arenalloc: double free of 0x"),
        "stderr: {err}"
    );
    assert!(!stdout(&out).contains("ok"));
}

#[test]
fn malformed_environment_is_reported_and_defaults_used() {
    let dir = scratch("env");
    let (out, _) = run(
        &dir,
        Command::new("perl")
            .args(["-e", "print qq(hi\n)"])
            .env("ARENALLOC_MAX_ARENAS", "lots")
            .env("ARENALLOC_REGION_SIZE", "12Q"),
    );
    assert_ok(&out, "perl");
    assert_eq!(stdout(&out), "hi\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ignoring malformed ARENALLOC_MAX_ARENAS=\"lots\""),
        "{err}"
    );
    assert!(
        err.contains("ignoring malformed ARENALLOC_REGION_SIZE=\"12Q\""),
        "{err}"
    );
    let (out, s) = run(
        &dir,
        Command::new("perl")
            .args(["-e", "print qq(hi\n)"])
            .env("ARENALLOC_REGION_SIZE", "1G")
            .env("ARENALLOC_MAX_ARENAS", "2"),
    );
    assert_ok(&out, "perl");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.processes >= 1);
}

// Issue-specific C cases live in their own files under tests/preload/,
// sharing the helpers above.
#[path = "preload/config.rs"]
mod config;
#[path = "preload/decay.rs"]
mod decay;
#[path = "preload/hardening.rs"]
mod hardening;
#[path = "preload/introspect.rs"]
mod introspect;
#[path = "preload/limits.rs"]
mod limits;
#[path = "preload/stress_mode.rs"]
mod stress_mode;
#[path = "preload/surface.rs"]
mod surface;
#[path = "preload/tls.rs"]
mod tls;
