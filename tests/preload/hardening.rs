//! Heap-corruption and bad-input cases (issue 9 items 2, 3, 4, 7): C
//! programs under the preload library, each asserting its abort message.
//!
//! Corruption cases (`tests/c/corrupt.c`): every case runs twice. Clean
//! (the same steps without the corrupting write) it must exit 0 printing
//! `ok`, so a detection is no false positive; corrupted it must be killed
//! by `SIGABRT` — not `SIGSEGV`, not a hang (a deadline kills it and fails
//! the test) — with exactly one `arenalloc: heap corruption at 0x… (…)`
//! line on stderr naming what failed to verify.

use super::*;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a case may run: they take milliseconds; one that runs this
/// long hangs (a lock held across a panic, say).
const DEADLINE: Duration = Duration::from_secs(20);

/// The abort line's fixed start (`error.rs`).
const CORRUPTION_PREFIX: &str = "arenalloc: heap corruption at 0x";
/// The three reasons the line may give.
const HEADER: &str = "header check failed";
const PREV_SIZE: &str = "prev_size corrupt";
const LINK: &str = "free-list link corrupt";

/// Compiles `tests/c/corrupt.c` once.
fn corrupt_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| compile_c(&scratch("c-corrupt"), "corrupt", &[]))
}

/// How a run under the library ended.
pub(super) struct Finished {
    pub(super) status: ExitStatus,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

/// Runs `bin args` under the library with output to files in `dir` (no
/// pipe can fill and stall it), polling for its exit until `DEADLINE`;
/// a child still running then is killed and the test fails.
fn run_with_deadline(dir: &Path, bin: &Path, args: &[&str]) -> Finished {
    run_with_deadline_env(dir, bin, args, &[])
}

/// `run_with_deadline` in the default configuration (not hardened).
fn run_with_deadline_default(dir: &Path, bin: &Path, args: &[&str]) -> Finished {
    run_with_deadline_env(dir, bin, args, &[("ARENALLOC_HARDENED", "0")])
}

/// `run_with_deadline` with extra environment variables (`env`), for the
/// stress-mode cases (`stress_mode.rs`).
pub(super) fn run_with_deadline_env(
    dir: &Path,
    bin: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Finished {
    let out_path = dir.join("stdout");
    let err_path = dir.join("stderr");
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .current_dir(dir)
        .env("LD_PRELOAD", library())
        // The corruption checks are a setting (`Config::hardened`).
        .env("ARENALLOC_HARDENED", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .envs(env.iter().copied());
    // SAFETY: the hook runs in the forked child before exec and only calls
    // setrlimit, which is async-signal-safe; it touches no parent state.
    // (No core files: the aborts are expected.)
    unsafe {
        cmd.pre_exec(|| {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} {args:?} still running after {DEADLINE:?} (a hang); killed.\nstderr:\n{}",
                bin.display(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    Finished {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

/// Runs the corruption case `args` clean, then corrupted; asserts the
/// clean run prints `ok` and the corrupted one aborts with one line naming
/// one of `phrases`. Returns the corrupted run.
fn assert_corruption_detected(name: &str, args: &[&str], phrases: &[&str]) -> Finished {
    assert_corruption_detected_in(name, args, phrases, true)
}

/// `assert_corruption_detected`, hardened or in the default configuration.
fn assert_corruption_detected_in(
    name: &str,
    args: &[&str],
    phrases: &[&str],
    hardened: bool,
) -> Finished {
    let dir = scratch(&format!("corrupt-{name}-{hardened}"));
    let bin = corrupt_binary();
    let run = if hardened {
        run_with_deadline
    } else {
        run_with_deadline_default
    };
    let clean_args: Vec<&str> = args.iter().copied().chain(["clean"]).collect();
    let clean = run(&dir, bin, &clean_args);
    assert!(
        clean.status.success() && clean.stdout.ends_with("ok\n"),
        "clean {args:?}: {:?}\nstdout:\n{}\nstderr:\n{}",
        clean.status,
        clean.stdout,
        clean.stderr
    );
    let bad = run(&dir, bin, args);
    let context = format!(
        "corrupted {args:?}: {:?} (signal {:?})\nstdout:\n{}\nstderr:\n{}",
        bad.status,
        bad.status.signal(),
        bad.stdout,
        bad.stderr
    );
    assert_eq!(
        bad.status.signal(),
        Some(libc::SIGABRT),
        "not an abort: {context}"
    );
    let lines: Vec<&str> = bad
        .stderr
        .lines()
        .filter(|l| l.starts_with(CORRUPTION_PREFIX))
        .collect();
    assert_eq!(lines.len(), 1, "one corruption line: {context}");
    let line = lines[0];
    assert!(
        line.ends_with(')'),
        "the line ends with its reason: {context}"
    );
    let reason = line.rsplit_once('(').map_or("", |(_, r)| r);
    assert!(
        phrases.iter().any(|p| reason.contains(p)),
        "reason is one of {phrases:?}: {context}"
    );
    assert!(!bad.stdout.contains("ok"), "{context}");
    bad
}

/// One test per corruption case: whether the heap is hardened, then per
/// case `name`, the program's arguments, the reasons the abort line may
/// give.
macro_rules! corruption_cases {
    ($hardened:expr; $($name:ident: [$($arg:expr),+] => [$($phrase:expr),+];)+) => {$(
        #[test]
        fn $name() {
            assert_corruption_detected_in(stringify!($name), &[$($arg),+], &[$($phrase),+], $hardened);
        }
    )+};
}

corruption_cases! {
    true;
    // The issue's reproducer: today a panic inside the allocator, with the
    // arena lock held, then a hang.
    issue_reproducer_aborts_instead_of_hanging: ["hang"] => [HEADER, PREV_SIZE, LINK];

    // Overflow out of p into the live q's prev_size (1, 8 bytes) or on into
    // its size word (9, 16 bytes); p is freed.
    overflow_by_1_into_live_next_then_free_self: ["overflow-free-p", "1"] => [PREV_SIZE];
    overflow_by_8_into_live_next_then_free_self: ["overflow-free-p", "8"] => [PREV_SIZE];
    overflow_by_9_into_live_next_then_free_self: ["overflow-free-p", "9"] => [HEADER];
    overflow_by_16_into_live_next_then_free_self: ["overflow-free-p", "16"] => [HEADER];

    // The same overflows; the damaged neighbour q is freed first.
    overflow_by_1_into_live_next_then_free_next: ["overflow-free-q", "1"] => [PREV_SIZE];
    overflow_by_8_into_live_next_then_free_next: ["overflow-free-q", "8"] => [PREV_SIZE];
    overflow_by_9_into_live_next_then_free_next: ["overflow-free-q", "9"] => [HEADER];
    overflow_by_16_into_live_next_then_free_next: ["overflow-free-q", "16"] => [HEADER];

    // q is free (r live after it) when p overflows into it; p is freed.
    overflow_by_1_into_free_next_then_free_self: ["overflow-into-free", "1"] => [PREV_SIZE];
    overflow_by_8_into_free_next_then_free_self: ["overflow-into-free", "8"] => [PREV_SIZE];
    overflow_by_9_into_free_next_then_free_self: ["overflow-into-free", "9"] => [HEADER];
    overflow_by_16_into_free_next_then_free_self: ["overflow-into-free", "16"] => [HEADER];

    // Underflow into p's own header: its size word, then its prev_size.
    underflow_by_1_into_own_header_then_free: ["underflow", "1"] => [HEADER];
    underflow_by_8_into_own_header_then_free: ["underflow", "8"] => [HEADER];
    underflow_by_9_into_own_header_then_free: ["underflow", "9"] => [HEADER];
    underflow_by_16_into_own_header_then_free: ["underflow", "16"] => [HEADER];

    size_word_zeroed_then_free: ["size-zero"] => [HEADER];
    size_word_tripled_then_free: ["size-triple"] => [HEADER];

    // A free block's next link overwritten, then the bin is taken from.
    write_after_free_then_malloc: ["write-after-free"] => [LINK];
}

// The same cases in the default configuration, which has no check values
// in its headers: what it catches from links (safe-linked and validated
// on every heap) and from headers that are not well formed or do not
// tile (a size word zeroed or overwritten, checked on every locked free).
// It catches everything glibc 2.36 catches by default on these cases
// (overflow by 16 into a neighbour, underflow by 1-16, a zeroed size);
// overflows of 1-8 bytes into a neighbour's `prev_size` and a tripled
// size it does not, nor does glibc.
corruption_cases! {
    false;
    default_overflow_by_9_into_live_next_then_free_self: ["overflow-free-p", "9"] => [HEADER];
    default_overflow_by_16_into_live_next_then_free_self: ["overflow-free-p", "16"] => [HEADER];
    default_overflow_by_9_into_live_next_then_free_next: ["overflow-free-q", "9"] => [HEADER];
    default_overflow_by_16_into_live_next_then_free_next: ["overflow-free-q", "16"] => [HEADER];
    default_underflow_by_1_into_own_header_then_free: ["underflow", "1"] => [HEADER];
    default_underflow_by_8_into_own_header_then_free: ["underflow", "8"] => [HEADER];
    default_underflow_by_9_into_own_header_then_free: ["underflow", "9"] => [HEADER];
    default_underflow_by_16_into_own_header_then_free: ["underflow", "16"] => [HEADER];
    default_size_word_zeroed_then_free: ["size-zero"] => [HEADER];
    // A use-after-free write into a cached block: an abort naming the
    // link, never SIGSEGV.
    default_write_after_free_then_malloc: ["write-after-free"] => [LINK];
}

/// In the default configuration too, a poisoned link in a freed (cached)
/// block is refused, and malloc never returns the program's address.
#[test]
fn default_poisoned_free_list_link_is_refused_not_followed() {
    let bad = assert_corruption_detected_in(
        "default_poisoned_free_list_link",
        &["poisoned-link"],
        &[LINK],
        false,
    );
    assert!(
        !bad.stdout.contains("got "),
        "no malloc returned: {}",
        bad.stdout
    );
}

/// The classic "make malloc return an address the program chose": a freed
/// block's link pointed at a fake free block in a static array. The
/// allocator must abort before it hands any of that array out.
#[test]
fn poisoned_free_list_link_is_refused_not_followed() {
    let bad = assert_corruption_detected("poisoned_free_list_link", &["poisoned-link"], &[LINK]);
    let target = bad
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("target "))
        .expect("the program prints the array's bounds");
    let bounds: Vec<usize> = target
        .split_whitespace()
        .map(|h| usize::from_str_radix(h.trim_start_matches("0x"), 16).unwrap())
        .collect();
    for got in bad.stdout.lines().filter_map(|l| l.strip_prefix("got ")) {
        let addr = usize::from_str_radix(got.trim_start_matches("0x"), 16).unwrap();
        assert!(
            !(bounds[0]..bounds[1]).contains(&addr),
            "malloc returned {got}, inside the static array {target}"
        );
    }
}

// ----- the C API's edge cases (item 7) --------------------------------------

/// Compiles `tests/c/glibc_api.c` once.
fn glibc_api_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| compile_c(&scratch("c-glibc-api"), "glibc_api", &[]))
}

/// Runs one case of `glibc_api.c` under the library: it must print `ok`.
fn assert_glibc_api_case(case: &str) {
    let dir = scratch(&format!("glibc-api-{case}"));
    let (out, s) = run(&dir, Command::new(glibc_api_binary()).arg(case));
    assert_ok(&out, &format!("glibc_api {case}"));
    assert_eq!(stdout(&out), format!("ok {case}\n"));
    assert!(
        s.processes == 1 && s.allocations > 0,
        "ran under the library: {s:?}"
    );
}

/// `malloc_usable_size` answers only for a live block's start: 0 for an
/// interior pointer (`p + 48` used to give the whole block's size), the
/// header, a freed block, NULL and the stack.
#[test]
fn malloc_usable_size_is_zero_except_at_a_live_block_start() {
    assert_glibc_api_case("usable-size");
}

/// `aligned_alloc` with an alignment that is not a power of two (0, 3,
/// 48, `SIZE_MAX`) is NULL with `EINVAL`: C17 as glibc 2.38 implements it
/// (glibc 2.36 would return a block).
#[test]
fn aligned_alloc_rejects_alignments_that_are_not_powers_of_two() {
    assert_glibc_api_case("aligned-alloc");
}
