//! The preload library's environment (issue 19, item 2): it reads every
//! `ARENALLOC_*` variable through `Config::with_env`, so a malformed value
//! of any of them is reported exactly once (the library reads the
//! environment twice: quietly when it loads, to know which exit reports to
//! register, and through the heap's one start-up, which reports) and the
//! program runs on with the default.

use super::*;

/// Runs `perl -e 'print qq(hi\n)'` under the library with exactly `vars`
/// of the `ARENALLOC_*` variables set.
fn perl_with(vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("perl");
    cmd.args(["-e", "print qq(hi\\n)"]);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ARENALLOC_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("LD_PRELOAD", library())
        .envs(vars.iter().copied())
        .output()
        .expect("perl")
}

#[test]
fn every_malformed_variable_is_reported_once_and_the_program_runs() {
    let vars = [
        ("ARENALLOC_MAX_ARENAS", "lots"),
        ("ARENALLOC_REGION_SIZE", "12Q"),
        ("ARENALLOC_OWNER_CACHE", "big"),
        ("ARENALLOC_PURGE_MS", "soon"),
        ("ARENALLOC_PURGE_MIN", "page"),
        ("ARENALLOC_PURGE_THREAD", "yes"),
        ("ARENALLOC_HARDENED", "on"),
        ("ARENALLOC_STRESS", "redzone=lots"),
        ("ARENALLOC_STATS", "stats.txt"),
    ];
    let out = perl_with(&vars);
    assert_ok(&out, "perl");
    assert_eq!(stdout(&out), "hi\n");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    for (var, value) in vars {
        let prefix = format!("arenalloc: ignoring malformed {var}=\"{value}\" (expected ");
        let n = lines.iter().filter(|l| l.starts_with(&prefix)).count();
        assert_eq!(n, 1, "{var}: reported once\n{err}");
    }
    assert_eq!(lines.len(), vars.len(), "nothing else on stderr:\n{err}");
    assert!(
        !err.contains("leak report") && !err.contains("stats at exit"),
        "malformed STRESS and STATS stay off:\n{err}"
    );
}

#[test]
fn good_values_take_effect() {
    let dir = scratch("config-good");
    let stats = dir.join("stats");
    let out = perl_with(&[
        ("ARENALLOC_MAX_ARENAS", "1"),
        ("ARENALLOC_REGION_SIZE", "256M"),
        ("ARENALLOC_STATS", stats.to_str().unwrap()),
        ("ARENALLOC_STRESS", "leaks=1"),
    ]);
    assert_ok(&out, "perl");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = std::fs::read_to_string(&stats).unwrap();
    assert!(
        table.contains("stats at exit"),
        "STATS to its file: {table}"
    );
    assert!(
        table.contains("arenalloc: leak report: "),
        "STRESS on, its leak report to the STATS file: {table}"
    );
    let field = |name: &str| -> u64 {
        let rest = table.split(name).nth(1).unwrap();
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    assert_eq!(field("arenas used"), 1, "{table}");
    assert_eq!(field("reserved bytes"), 256 << 20, "{table}");
}
