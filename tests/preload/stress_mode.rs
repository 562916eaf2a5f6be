//! Stress mode through the preload library (`ARENALLOC_STRESS`, issue
//! 12): the bugs of `tests/c/bugs.c` — a use-after-free write racing a
//! free on another thread, a one-byte and a 16-byte overflow, an
//! uninitialised read, a leak — each run twice. With the mode off the
//! program must run to its end silently (exit 0, `ok`, no `arenalloc:`
//! line); with it on, the bug must be reported with the right line: the
//! exact address and offset, the request size, and both threads (the
//! kernel thread ids the program printed, and the heap's small ids).
//!
//! Issue 20's knobs on C programs written for them: `tests/c/inject.c`
//! (a double free only on the cleanup path after a failed `malloc`, found
//! with `fail_rate` and silent without; the failure pattern a seed gives,
//! replayed; every C entry point failing as exhaustion does) and
//! `tests/c/race_window.c` (a use-after-free race whose window contains a
//! `malloc`, found in fewer runs with `jitter=1`).

use super::hardening::{run_with_deadline_env, Finished};
use super::*;

use std::os::unix::process::ExitStatusExt;

/// Compiles `tests/c/bugs.c` once.
fn bugs_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| compile_c(&scratch("c-bugs"), "bugs", &[]))
}

/// What the program printed about itself: (alloc tid, free tid, block).
fn ids(run: &Finished) -> (u64, u64, usize) {
    let field = |name: &str| {
        run.stdout
            .split(name)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {name:?} in stdout:\n{}", run.stdout))
            .to_string()
    };
    let block = field("block ");
    let block = usize::from_str_radix(block.trim_start_matches("0x"), 16).unwrap();
    (
        field("alloc tid ").parse().unwrap(),
        field("free tid ").parse().unwrap(),
        block,
    )
}

fn context(what: &str, run: &Finished) -> String {
    format!(
        "{what}: {:?}\nstdout:\n{}\nstderr:\n{}",
        run.status, run.stdout, run.stderr
    )
}

/// Runs case `case` with the mode off (must be silent and complete) and
/// with `ARENALLOC_STRESS=stress` (returned).
fn off_then_on(case: &str, stress: &str) -> (Finished, Finished) {
    let dir = scratch(&format!("stress-{case}"));
    let off = run_with_deadline_env(&dir, bugs_binary(), &[case], &[]);
    let ctx = context(&format!("{case} with stress mode off"), &off);
    assert!(
        off.status.success() && off.stdout.ends_with("ok\n"),
        "{ctx}"
    );
    assert!(!off.stderr.contains("arenalloc:"), "{ctx}");
    assert!(!off.stdout.contains("uninitialised"), "{ctx}");
    let on = run_with_deadline_env(
        &dir,
        bugs_binary(),
        &[case],
        &[("ARENALLOC_STRESS", stress)],
    );
    (off, on)
}

/// The one report line starting with `prefix`.
fn report<'a>(run: &'a Finished, prefix: &str, what: &str) -> &'a str {
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with(prefix))
        .collect();
    assert_eq!(lines.len(), 1, "one report: {}", context(what, run));
    lines[0]
}

/// `… allocated by thread N [tid A] at #S, freed by thread M [tid B] at #T)`
/// with A and B the program's threads, N != M and S < T.
fn assert_threads(line: &str, alloc_tid: u64, free_tid: u64) {
    let rest = line
        .split("allocated by thread ")
        .nth(1)
        .unwrap_or_else(|| panic!("{line}"));
    let (alloc, free) = rest
        .split_once(", freed by thread ")
        .unwrap_or_else(|| panic!("{line}"));
    let parse = |s: &str| -> (u64, u64, u64) {
        let (small, s) = s.split_once(" [tid ").unwrap();
        let (tid, s) = s.split_once("] at #").unwrap();
        let seq = s.trim_end_matches(')');
        (
            small.parse().unwrap(),
            tid.parse().unwrap(),
            seq.parse().unwrap(),
        )
    };
    let (a_small, a_tid, a_seq) = parse(alloc);
    let (f_small, f_tid, f_seq) = parse(free);
    assert_eq!((a_tid, f_tid), (alloc_tid, free_tid), "{line}");
    assert!(a_small != 0 && f_small != 0 && a_small != f_small, "{line}");
    assert!(a_seq < f_seq, "{line}");
}

#[test]
fn stress_use_after_free_write_by_another_thread_is_reported() {
    let (_, on) = off_then_on("uaf", "1");
    let ctx = context("uaf", &on);
    assert_eq!(on.status.signal(), Some(libc::SIGABRT), "{ctx}");
    let (a, b, block) = ids(&on);
    let line = report(&on, "arenalloc: use-after-free write at ", "uaf");
    assert!(
        line.starts_with(&format!(
            "arenalloc: use-after-free write at {:#x} (+24 of a 64-byte block allocated by",
            block + 24
        )),
        "{ctx}"
    );
    assert_threads(line, a, b);
}

fn overflow(case: &str) {
    let (_, on) = off_then_on(case, "1");
    let ctx = context(case, &on);
    assert_eq!(on.status.signal(), Some(libc::SIGABRT), "{ctx}");
    let (a, b, block) = ids(&on);
    let line = report(&on, "arenalloc: heap overflow at ", case);
    assert!(
        line.starts_with(&format!(
            "arenalloc: heap overflow at {:#x} (+64 of a 64-byte block allocated by",
            block + 64
        )),
        "{ctx}"
    );
    assert_threads(line, a, b);
    assert!(!on.stdout.contains("ok"), "aborted at the free: {ctx}");
}

#[test]
fn stress_one_byte_overflow_is_reported_on_free_by_the_other_thread() {
    overflow("overflow1");
}

#[test]
fn stress_sixteen_byte_overflow_is_reported_on_free_by_the_other_thread() {
    overflow("overflow16");
}

#[test]
fn stress_continue_counts_the_report_and_runs_to_the_end() {
    let dir = scratch("stress-continue");
    let stats = dir.join("stats");
    let run = run_with_deadline_env(
        &dir,
        bugs_binary(),
        &["overflow1"],
        &[
            ("ARENALLOC_STRESS", "continue=1,leaks=0,redzone=32"),
            ("ARENALLOC_STATS", stats.to_str().unwrap()),
        ],
    );
    let ctx = context("overflow1 continue=1", &run);
    assert!(
        run.status.success() && run.stdout.ends_with("ok\n"),
        "{ctx}"
    );
    report(&run, "arenalloc: heap overflow at ", "continue");
    let table = std::fs::read_to_string(&stats).unwrap();
    assert!(table.contains("stress reports           1"), "{table}");
    assert!(!table.contains("leak report"), "leaks=0: {table}");
}

#[test]
fn stress_uninitialised_read_sees_the_alloc_fill() {
    let (_, on) = off_then_on("uninit", "1");
    let ctx = context("uninit", &on);
    assert!(on.status.success(), "{ctx}");
    assert!(
        on.stdout.contains("uninitialised: ready = 0xbebebebe"),
        "{ctx}"
    );
    let dir = scratch("stress-uninit-knob");
    let knob = run_with_deadline_env(
        &dir,
        bugs_binary(),
        &["uninit"],
        &[("ARENALLOC_STRESS", "alloc_fill=0x5a,leaks=0")],
    );
    let ctx = context("uninit alloc_fill=0x5a", &knob);
    assert!(
        knob.stdout.contains("uninitialised: ready = 0x5a5a5a5a"),
        "{ctx}"
    );
    assert!(!knob.stderr.contains("leak report"), "{ctx}");
}

#[test]
fn stress_leak_report_names_sizes_and_threads() {
    let (_, on) = off_then_on("leak", "1");
    let ctx = context("leak", &on);
    assert!(on.status.success(), "{ctx}");
    let (a, b, _) = ids(&on);
    assert!(on.stderr.contains("arenalloc: leak report: "), "{ctx}");
    let group = |n: &str, size: usize, tid: u64| {
        on.stderr.lines().any(|l| {
            l.starts_with(&format!("arenalloc:   {n} of {size} bytes ("))
                && l.contains(&format!("[tid {tid}], first at #"))
        })
    };
    assert!(group("3 blocks", 100, a), "thread A's leak: {ctx}");
    assert!(group("2 blocks", 4000, b), "thread B's leak: {ctx}");
    // Largest groups first: B's 8000 bytes before A's 300.
    let pos = |s: &str| on.stderr.find(s).unwrap();
    assert!(pos("of 4000 bytes") < pos("of 100 bytes"), "{ctx}");
}

#[test]
fn stress_malformed_setting_is_reported_and_ignored() {
    let dir = scratch("stress-malformed");
    let run = run_with_deadline_env(
        &dir,
        bugs_binary(),
        &["overflow1"],
        &[("ARENALLOC_STRESS", "redzone=lots")],
    );
    let ctx = context("ARENALLOC_STRESS=redzone=lots", &run);
    assert!(
        run.status.success() && run.stdout.ends_with("ok\n"),
        "{ctx}"
    );
    assert!(
        run.stderr
            .contains("arenalloc: ignoring malformed ARENALLOC_STRESS=\"redzone=lots\""),
        "{ctx}"
    );
}

/// Compiles `tests/c/inject.c` once.
fn inject_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| compile_c(&scratch("c-inject"), "inject", &[]))
}

/// Compiles `tests/c/race_window.c` once.
fn race_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| compile_c(&scratch("c-race-window"), "race_window", &[]))
}

/// `inject args` under `ARENALLOC_STRESS=stress`, in `dir`.
fn inject(dir: &str, args: &[&str], stress: &str) -> Finished {
    run_with_deadline_env(
        &scratch(dir),
        inject_binary(),
        args,
        &[("ARENALLOC_STRESS", stress)],
    )
}

/// The exit report's `injected N allocation failures (thread 1: N)`.
fn injected_by_thread_1(run: &Finished) -> u64 {
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("arenalloc: injected "))
        .unwrap_or_else(|| panic!("no injection report: {}", context("inject", run)));
    let total: u64 = line
        .trim_start_matches("arenalloc: injected ")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        line.ends_with(&format!(" ({}thread 1: {total})", "")),
        "one thread: {line}"
    );
    total
}

#[test]
fn inject_cleanup_double_free_is_found_by_fail_rate_and_silent_without() {
    // Without injection the bug never runs: silent, to the end.
    for stress in ["leaks=0", "0"] {
        let run = inject("inject-cleanup-off", &["cleanup", "1000"], stress);
        let ctx = context(&format!("cleanup, ARENALLOC_STRESS={stress}"), &run);
        assert!(run.status.success(), "{ctx}");
        assert_eq!(run.stdout, "ok cleanup 1000 0\n", "{ctx}");
        assert!(!run.stderr.contains("arenalloc:"), "{ctx}");
    }
    // With it the cleanup path runs, and its double free is reported.
    let run = inject(
        "inject-cleanup-on",
        &["cleanup", "1000"],
        "fail_rate=0.05,seed=7,leaks=0",
    );
    let ctx = context("cleanup, fail_rate=0.05,seed=7", &run);
    assert_eq!(run.status.signal(), Some(libc::SIGABRT), "{ctx}");
    let name = run
        .stdout
        .split("cleanup frees name ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{ctx}"));
    let line = report(&run, "arenalloc: double free of ", "cleanup");
    let rest = line
        .strip_prefix(&format!(
            "arenalloc: double free of {name} after injected failure #"
        ))
        .unwrap_or_else(|| panic!("the name's second free, after a failure: {ctx}"));
    let (nth, rest) = rest.split_once(" in thread ").unwrap();
    assert!(nth.parse::<u64>().unwrap() >= 1, "{ctx}");
    assert_eq!(rest, "1 (seed 7)", "{ctx}");
    assert!(!run.stdout.contains("ok cleanup"), "{ctx}");
    // The same seed, the same run: the same failure number.
    let again = inject(
        "inject-cleanup-again",
        &["cleanup", "1000"],
        "fail_rate=0.05,seed=7,leaks=0",
    );
    assert_eq!(
        report(&again, "arenalloc: double free of ", "cleanup again")
            .split_once(" after ")
            .map(|(_, r)| r.to_string()),
        line.split_once(" after ").map(|(_, r)| r.to_string()),
        "{}",
        context("cleanup again", &again)
    );
}

#[test]
fn inject_the_same_seed_replays_the_same_failures() {
    let pattern = |dir: &str, stress: &str| {
        let run = inject(dir, &["pattern", "400", "48"], stress);
        let ctx = context(&format!("pattern, {stress}"), &run);
        assert!(run.status.success(), "{ctx}");
        let line = run.stdout.trim_end().to_string();
        assert_eq!(line.len(), 400, "{ctx}");
        // Only the program's mallocs are eligible (48 bytes and up), and
        // the exit report counts exactly its NULLs.
        let nulls = line.matches('1').count() as u64;
        assert_eq!(injected_by_thread_1(&run), nulls, "{ctx}");
        (line, run)
    };
    let (first, _) = pattern("inject-seed-a", "fail_rate=0.3,fail_min=48,seed=42,leaks=0");
    let (second, _) = pattern("inject-seed-b", "fail_rate=0.3,fail_min=48,seed=42,leaks=0");
    assert_eq!(first, second, "the same seed, the same failures");
    let nulls = first.matches('1').count();
    assert!((80..160).contains(&nulls), "about 30 %: {nulls}");
    let (other, _) = pattern("inject-seed-c", "fail_rate=0.3,fail_min=48,seed=43,leaks=0");
    assert_ne!(other, first, "another seed, other failures");
    // No seed: the report prints the one drawn, which replays the run.
    let (drawn, run) = pattern("inject-seed-d", "fail_rate=0.3,fail_min=48,leaks=0");
    let seed = run
        .stderr
        .split("arenalloc: seed ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{}", context("drawn seed", &run)))
        .to_string();
    assert!(
        run.stderr.contains(&format!(
            "(drawn; replay with seed={seed} in ARENALLOC_STRESS"
        )),
        "{}",
        context("drawn seed", &run)
    );
    let (replayed, _) = pattern(
        "inject-seed-e",
        &format!("fail_rate=0.3,fail_min=48,seed={seed},leaks=0"),
    );
    assert_eq!(replayed, drawn);
    // fail_every counts the program's mallocs of the thread.
    let (every, _) = pattern("inject-seed-f", "fail_every=4,fail_min=48,leaks=0");
    assert_eq!(every, "0001".repeat(100));
}

#[test]
fn inject_every_c_entry_point_fails_like_exhaustion() {
    let run = inject("inject-api", &["api"], "fail_every=1,fail_min=1000,leaks=0");
    let ctx = context("api", &run);
    assert!(run.status.success(), "{ctx}");
    assert_eq!(run.stdout, "ok api\n", "{ctx}");
    assert_eq!(injected_by_thread_1(&run), 10, "{ctx}");
}

/// Runs `race_window` `runs` times under `stress` (each with its own seed
/// after `seed=`); how many runs stress mode caught the race in. A run
/// that catches it must say so the one way (an aborting use-after-free
/// report); one that does not must complete.
fn race_detections(stress: &str, runs: u64) -> u64 {
    let dir = scratch(&format!("race-{}", stress.replace([',', '='], "-")));
    let mut found = 0;
    for k in 1..=runs {
        let knobs = format!("{stress},seed={k}");
        let run =
            run_with_deadline_env(&dir, race_binary(), &["4"], &[("ARENALLOC_STRESS", &knobs)]);
        let ctx = context(&format!("race_window 4, {knobs}"), &run);
        if run.status.success() {
            assert!(run.stdout.starts_with("ok 4 "), "{ctx}");
            // Nothing but jitter's exit report.
            assert!(
                run.stderr
                    .lines()
                    .all(|l| l.starts_with("arenalloc: jitter delayed ")
                        || l == format!("arenalloc: seed {k}")),
                "{ctx}"
            );
            continue;
        }
        assert_eq!(run.status.signal(), Some(libc::SIGABRT), "{ctx}");
        let line = report(&run, "arenalloc: use-after-free write at ", "race");
        assert!(
            line.contains(" (+8 of a 64-byte block allocated by thread "),
            "{ctx}"
        );
        if stress.contains("jitter") {
            assert!(line.ends_with(&format!(" (seed {k})")), "{ctx}");
        }
        found += 1;
    }
    found
}

#[test]
fn jitter_finds_a_race_around_a_malloc_in_fewer_runs() {
    // The race is real without jitter too, only rarer (the table of
    // tests/c/jitter-table.sh measures how much): over the same runs,
    // jitter must catch it more often, and often.
    let runs = 30;
    let without = race_detections("leaks=0", runs);
    let with = race_detections("leaks=0,jitter=1", runs);
    eprintln!("race_window: caught in {without} of {runs} runs without jitter, {with} with");
    assert!(
        with > without && with >= 5,
        "{without} without jitter, {with} with"
    );
}
