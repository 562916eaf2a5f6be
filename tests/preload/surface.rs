//! The C surface beyond `malloc`/`free` (issue 19, item 3): glibc's
//! `__libc_*` names, C23's `free_sized`/`free_aligned_sized`, C++'s
//! `operator new`/`delete` family, and `include/arenalloc.h`'s functions —
//! each from C (`tests/c/surface.c`) and from C++ (`tests/c/surface.cpp`),
//! in the default configuration, hardened and in stress mode; the sized
//! frees' mismatch abort; and `nm -D` showing every symbol.
//!
//! Both programs include `include/arenalloc.h` and link the library
//! (`-larenalloc`, as a program calling its own functions would); they run
//! under `LD_PRELOAD` as well, like every case here.

use super::hardening::{run_with_deadline_env, Finished};
use super::*;

use std::os::unix::process::ExitStatusExt;

/// Every symbol item 3 adds (`nm -D` must list each as defined).
const SYMBOLS: &[&str] = &[
    "__libc_malloc",
    "__libc_free",
    "__libc_calloc",
    "__libc_realloc",
    "__libc_memalign",
    "__libc_valloc",
    "__libc_pvalloc",
    "__libc_mallinfo",
    "__libc_mallopt",
    "free_sized",
    "free_aligned_sized",
    "_Znwm",
    "_Znam",
    "_ZnwmRKSt9nothrow_t",
    "_ZnamRKSt9nothrow_t",
    "_ZnwmSt11align_val_t",
    "_ZnamSt11align_val_t",
    "_ZnwmSt11align_val_tRKSt9nothrow_t",
    "_ZnamSt11align_val_tRKSt9nothrow_t",
    "_ZdlPv",
    "_ZdaPv",
    "_ZdlPvm",
    "_ZdaPvm",
    "_ZdlPvRKSt9nothrow_t",
    "_ZdaPvRKSt9nothrow_t",
    "_ZdlPvSt11align_val_t",
    "_ZdaPvSt11align_val_t",
    "_ZdlPvmSt11align_val_t",
    "_ZdaPvmSt11align_val_t",
    "_ZdlPvSt11align_val_tRKSt9nothrow_t",
    "_ZdaPvSt11align_val_tRKSt9nothrow_t",
    "arenalloc_check",
    "arenalloc_stats_print",
    "arenalloc_dump",
    "arenalloc_leak_report",
];

/// The configurations every positive case runs in.
const MODES: [(&str, &[(&str, &str)]); 3] = [
    ("default", &[("ARENALLOC_HARDENED", "0")]),
    ("hardened", &[("ARENALLOC_HARDENED", "1")]),
    (
        "stress",
        &[("ARENALLOC_HARDENED", "0"), ("ARENALLOC_STRESS", "1")],
    ),
];

/// Compiles `tests/c/<file>` with `compiler` (`gcc` or `g++`), the
/// header's directory on the include path and the library linked.
fn compile(compiler: &str, file: &str, flags: &[&str]) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = scratch(&format!("c-{file}"));
    let bin = dir.join(file.replace('.', "_"));
    let libdir = library().parent().unwrap();
    let out = Command::new(compiler)
        .args(["-O2", "-pthread", "-Wall", "-Wno-alloc-size-larger-than"])
        .args(flags)
        .arg("-I")
        .arg(root.join("include"))
        .arg("-o")
        .arg(&bin)
        .arg(root.join("tests/c").join(file))
        .arg("-L")
        .arg(libdir)
        .arg("-larenalloc")
        .arg(format!("-Wl,-rpath,{}", libdir.display()))
        .output()
        .expect(compiler);
    assert_ok(&out, &format!("{compiler} {file}"));
    bin
}

fn c_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| compile("gcc", "surface.c", &["-std=gnu11", "-fno-builtin"]))
}

/// g++ builds the C++ side (CI installs it with gcc: `.ci/run`).
fn cxx_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| compile("g++", "surface.cpp", &["-std=c++17"]))
}

/// Runs `bin case` in each mode; each must exit 0 printing `ok <case>`.
fn assert_ok_in_every_mode(bin: &Path, case: &str, extra_env: &[(&str, &str)]) -> Vec<Finished> {
    MODES
        .iter()
        .map(|(mode, env)| {
            let dir = scratch(&format!("surface-{case}-{mode}"));
            let env: Vec<(&str, &str)> = env.iter().chain(extra_env).copied().collect();
            let run = run_with_deadline_env(&dir, bin, &[case], &env);
            assert!(
                run.status.success() && run.stdout.ends_with(&format!("ok {case}\n")),
                "{} {case} ({mode}): {:?}\nstdout:\n{}\nstderr:\n{}",
                bin.display(),
                run.status,
                run.stdout,
                run.stderr
            );
            run
        })
        .collect()
}

/// `bin case` frees a 32-byte block with size 48 after printing `block
/// <p>`: hardened and in stress mode it must die of `SIGABRT` with
/// exactly one line naming both sizes; in the default configuration the
/// size is a hint and the program runs on.
fn assert_size_mismatch_aborts_when_checked(bin: &Path, case: &str) {
    for (mode, env) in MODES {
        let dir = scratch(&format!("surface-{case}-{mode}"));
        let run = run_with_deadline_env(&dir, bin, &[case], env);
        let what = format!("{} {case} ({mode})", bin.display());
        if mode == "default" {
            assert!(
                run.status.success() && run.stdout == "survived\n",
                "{what}: {:?}\n{}",
                run.status,
                run.stderr
            );
            continue;
        }
        assert_eq!(
            run.status.signal(),
            Some(libc::SIGABRT),
            "{what}: {:?}\n{}",
            run.status,
            run.stderr
        );
        let block = run
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("block "))
            .unwrap_or_else(|| panic!("{what}: no block line\n{}", run.stderr));
        let reports: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("arenalloc:"))
            .collect();
        assert_eq!(
            reports,
            [format!("arenalloc: free of {block} with size 48, block holds 32").as_str()],
            "{what}:\n{}",
            run.stderr
        );
        assert!(!run.stdout.contains("survived"), "{what}");
    }
}

#[test]
fn nm_lists_every_symbol_of_the_c_surface() {
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(library())
        .output()
        .expect("nm (binutils)");
    assert_ok(&out, "nm -D");
    let text = stdout(&out);
    let defined: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    let missing: Vec<&&str> = SYMBOLS.iter().filter(|s| !defined.contains(s)).collect();
    assert!(missing.is_empty(), "not exported: {missing:?}");
}

#[test]
fn c_libc_names_share_the_heap_with_malloc_and_free() {
    assert_ok_in_every_mode(c_binary(), "libc", &[]);
}

#[test]
fn c_free_sized_and_free_aligned_sized_free_every_kind_of_block() {
    assert_ok_in_every_mode(c_binary(), "sized", &[]);
}

#[test]
fn c_free_sized_with_a_wrong_size_aborts_when_checked() {
    assert_size_mismatch_aborts_when_checked(c_binary(), "sized-bad");
    assert_size_mismatch_aborts_when_checked(c_binary(), "aligned-bad");
}

#[test]
fn c_calls_every_operator_new_and_delete_by_its_mangled_name() {
    assert_ok_in_every_mode(c_binary(), "cxx", &[]);
}

/// From C there is no C++ runtime: the nothrow forms return NULL, the
/// throwing one aborts with its one line.
#[test]
fn c_operator_new_failure_without_a_cxx_runtime_aborts_with_one_line() {
    let dir = scratch("surface-cxx-oom");
    let run = run_with_deadline_env(&dir, c_binary(), &["cxx-oom"], &[]);
    assert_eq!(
        run.status.signal(),
        Some(libc::SIGABRT),
        "{:?}\n{}",
        run.status,
        run.stderr
    );
    assert!(run.stderr.starts_with("nothrow ok\n"), "{}", run.stderr);
    let reports: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("arenalloc:"))
        .collect();
    assert_eq!(
        reports,
        [
            "arenalloc: operator new: out of memory for 4611686018427387904 bytes, \
          and no C++ runtime to throw std::bad_alloc"
        ],
        "{}",
        run.stderr
    );
}

#[test]
fn c_header_functions_write_through_the_callback_and_to_stderr() {
    for run in assert_ok_in_every_mode(c_binary(), "header", &[]) {
        // The table the callback received is the exit report's.
        assert!(run.stdout.starts_with("allocations"), "{}", run.stdout);
        let leaked: usize = run
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("leaked "))
            .and_then(|n| n.parse().ok())
            .expect("leaked <n>");
        assert!(leaked >= 3);
        let to_stderr = run.stderr.split("to stderr:\n").nth(1).unwrap_or_default();
        assert!(
            to_stderr.starts_with("allocations") && to_stderr.contains("leak report"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn c_arenalloc_check_reports_an_overwritten_header() {
    let dir = scratch("surface-corrupt");
    let run = run_with_deadline_env(&dir, c_binary(), &["corrupt"], &[]);
    assert!(
        run.status.success() && run.stdout == "check 1\n",
        "{:?}\n{}{}",
        run.status,
        run.stdout,
        run.stderr
    );
    let reports: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("arenalloc:"))
        .collect();
    assert_eq!(reports.len(), 1, "{}", run.stderr);
    assert!(
        reports[0].starts_with("arenalloc: heap corrupt in arena 0 at 0x")
            && reports[0].ends_with(": BadHeader"),
        "{}",
        reports[0]
    );
}

#[test]
fn cxx_new_and_delete_expressions_are_served_by_the_heap() {
    assert_ok_in_every_mode(cxx_binary(), "new", &[]);
}

#[test]
fn cxx_failed_new_throws_bad_alloc_through_the_library() {
    assert_ok_in_every_mode(cxx_binary(), "bad-alloc", &[]);
}

#[test]
fn cxx_failed_new_calls_the_new_handler_until_it_gives_up() {
    assert_ok_in_every_mode(cxx_binary(), "handler", &[]);
}

#[test]
fn cxx_new_handler_that_frees_a_reserve_lets_new_succeed() {
    assert_ok_in_every_mode(cxx_binary(), "reserve", &[("ARENALLOC_REGION_SIZE", "64M")]);
}

#[test]
fn cxx_sized_delete_with_a_wrong_size_aborts_when_checked() {
    assert_size_mismatch_aborts_when_checked(cxx_binary(), "sized-bad");
    assert_size_mismatch_aborts_when_checked(cxx_binary(), "array-bad");
}

#[test]
fn cxx_calls_the_c_functions_and_the_header() {
    assert_ok_in_every_mode(cxx_binary(), "c", &[]);
}
