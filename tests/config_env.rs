//! `Config::from_env` (issue 19, item 2): every `ARENALLOC_*` variable
//! through the library's one parser. Each variable is given a good value
//! (which must reach the `Config`) and each kind of malformed value (which
//! must be reported — variable, value, what was expected — and leave the
//! setting as it was); the list of variables the parser asks for must be
//! exactly the list tested here. `from_env` itself is run in a child
//! process with a real environment, which checks the stderr line.

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::process::Command;

use arenalloc::{Config, Malformed, Stress, DEFAULT_MAX_ARENAS};

/// `base` with `vars` applied through `with_vars`, and the reports.
fn apply(base: Config, vars: &[(&str, &str)]) -> (Config, Vec<(String, String, String)>) {
    let mut reports = Vec::new();
    let config = base.with_vars(
        |name: &'static CStr| {
            let name = name.to_str().ok()?;
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_bytes())
        },
        |m: &Malformed<'_>| {
            reports.push((
                m.var.to_string(),
                String::from_utf8_lossy(m.value).into_owned(),
                m.expected.to_string(),
            ))
        },
    );
    (config, reports)
}

/// A good value of one variable and the setting it must produce.
struct Good {
    var: &'static str,
    value: &'static str,
    is_set: fn(&Config) -> bool,
}

const GOOD: &[Good] = &[
    Good {
        var: "ARENALLOC_MAX_ARENAS",
        value: "7",
        is_set: |c| c.get_max_arenas() == 7,
    },
    Good {
        var: "ARENALLOC_MAX_INDEXES",
        value: "3",
        is_set: |c| c.get_max_indexes() == 3,
    },
    Good {
        var: "ARENALLOC_REGION_SIZE",
        value: "3G",
        is_set: |c| c.get_region_size() == 3 << 30,
    },
    Good {
        var: "ARENALLOC_REGION_SIZE",
        value: "8MiB",
        is_set: |c| c.get_region_size() == 8 << 20,
    },
    Good {
        var: "ARENALLOC_OWNER_CACHE",
        value: "0",
        is_set: |c| c.get_owner_cache() == 0,
    },
    Good {
        var: "ARENALLOC_OWNER_CACHE",
        value: "256k",
        is_set: |c| c.get_owner_cache() == 256 << 10,
    },
    Good {
        var: "ARENALLOC_PURGE_MS",
        value: "-1",
        is_set: |c| c.get_purge_ms() == -1,
    },
    Good {
        var: "ARENALLOC_PURGE_MS",
        value: "0",
        is_set: |c| c.get_purge_ms() == 0,
    },
    Good {
        var: "ARENALLOC_PURGE_MS",
        value: "1500",
        is_set: |c| c.get_purge_ms() == 1500,
    },
    Good {
        var: "ARENALLOC_PURGE_MIN",
        value: "1M",
        is_set: |c| c.get_purge_min() == 1 << 20,
    },
    Good {
        var: "ARENALLOC_PURGE_THREAD",
        value: "0",
        is_set: |c| !c.get_purge_thread(),
    },
    Good {
        var: "ARENALLOC_HARDENED",
        value: "1",
        is_set: |c| c.get_hardened(),
    },
    Good {
        var: "ARENALLOC_STRESS",
        value: "1",
        is_set: |c| c.get_stress() == Stress::new(),
    },
    Good {
        var: "ARENALLOC_STRESS",
        value: "quarantine=1M,redzone=64,free_fill=0x11,alloc_fill=34,continue=1,leaks=0",
        is_set: |c| {
            c.get_stress()
                == Stress::new()
                    .quarantine(1 << 20)
                    .redzone(64)
                    .free_fill(0x11)
                    .alloc_fill(34)
                    .keep_going(true)
                    .leak_report(false)
        },
    },
    Good {
        var: "ARENALLOC_STRESS",
        value: "fail_every=10,fail_rate=1e-2,fail_after=64M,fail_min=4K,seed=0xabc,jitter=1,jitter_rate=0.5",
        is_set: |c| {
            c.get_stress()
                == Stress::new()
                    .fail_every(10)
                    .fail_rate(0.01)
                    .fail_after(64 << 20)
                    .fail_min(4096)
                    .seed(0xabc)
                    .jitter_rate(0.5)
        },
    },
    Good {
        var: "ARENALLOC_STATS",
        value: "1",
        is_set: |c| c.get_stats_at_exit(),
    },
    Good {
        var: "ARENALLOC_STATS",
        value: "/tmp/arenalloc-stats",
        is_set: |c| c.get_stats_at_exit(),
    },
];

/// Malformed values of one variable and what the report must expect.
struct Bad {
    var: &'static str,
    values: &'static [&'static str],
    expected: &'static str,
}

const BAD: &[Bad] = &[
    Bad {
        var: "ARENALLOC_MAX_ARENAS",
        values: &["lots", "0", "", "4K", "-2", "99999999999999999999999"],
        expected: "a whole number >= 1",
    },
    Bad {
        var: "ARENALLOC_MAX_INDEXES",
        values: &["some", "", "4K", "-1", "99999999999999999999999"],
        expected: "a whole number (0: no limit)",
    },
    Bad {
        var: "ARENALLOC_REGION_SIZE",
        values: &["12Q", "4M", "", "1GG", "64 G"],
        expected: "bytes with an optional K/M/G/T suffix, at least 8M",
    },
    Bad {
        var: "ARENALLOC_OWNER_CACHE",
        values: &["big", "", "1P", "-1"],
        expected: "bytes with an optional K/M/G/T suffix (0: off)",
    },
    Bad {
        var: "ARENALLOC_PURGE_MS",
        values: &["soon", "", "-2", "1s", "200ms"],
        expected: "milliseconds (0: purge at once, -1: never)",
    },
    Bad {
        var: "ARENALLOC_PURGE_MIN",
        values: &["page", "", "4Kx"],
        expected: "bytes with an optional K/M/G/T suffix",
    },
    Bad {
        var: "ARENALLOC_PURGE_THREAD",
        values: &["yes", "", "2", "true"],
        expected: "0 or 1",
    },
    Bad {
        var: "ARENALLOC_HARDENED",
        values: &["on", "", "01"],
        expected: "0 or 1",
    },
    Bad {
        var: "ARENALLOC_STRESS",
        values: &["yes", "", "redzone", "color=red", "redzone=1,", "=1"],
        expected: "1, 0, or key=value knobs separated by commas (Config::from_env)",
    },
    Bad {
        var: "ARENALLOC_STRESS",
        values: &["quarantine=lots", "redzone=1,quarantine=-1"],
        expected: "quarantine=bytes, optional K/M/G/T suffix",
    },
    Bad {
        var: "ARENALLOC_STRESS",
        values: &["redzone=lots", "redzone=16Q"],
        expected: "redzone=bytes, optional K/M/G/T suffix",
    },
    Bad {
        var: "ARENALLOC_STRESS",
        values: &["free_fill=0x100", "free_fill=256", "free_fill=0x"],
        expected: "free_fill=a byte, 0x.. or decimal",
    },
    Bad {
        var: "ARENALLOC_STRESS",
        values: &["alloc_fill=x"],
        expected: "alloc_fill=a byte, 0x.. or decimal",
    },
    Bad {
        var: "ARENALLOC_STRESS",
        values: &["continue=yes"],
        expected: "continue=0 or 1",
    },
    Bad {
        var: "ARENALLOC_STRESS",
        values: &["leaks=2"],
        expected: "leaks=0 or 1",
    },
    Bad {
        var: "ARENALLOC_STRESS",
        values: &["fail_every=x", "fail_every=-3", "fail_every=1K"],
        expected: "fail_every=a whole number (0: off)",
    },
    Bad {
        var: "ARENALLOC_STRESS",
        values: &[
            "fail_rate=2",
            "fail_rate=-0.1",
            "fail_rate=",
            "fail_rate=1%",
            "fail_rate=.",
            "fail_rate=1e",
        ],
        expected: "fail_rate=a probability, 0 to 1 (0.001, 1e-3)",
    },
    Bad {
        var: "ARENALLOC_STRESS",
        values: &["fail_after=lots", "fail_after=1X"],
        expected: "fail_after=bytes, optional K/M/G/T suffix",
    },
    Bad {
        var: "ARENALLOC_STRESS",
        values: &["fail_min=", "fail_min=1.5K"],
        expected: "fail_min=bytes, optional K/M/G/T suffix",
    },
    Bad {
        var: "ARENALLOC_STRESS",
        values: &["seed=x", "seed=-1", "seed=0x", "seed=18446744073709551616"],
        expected: "seed=a 64-bit number, decimal or 0x..",
    },
    Bad {
        var: "ARENALLOC_STRESS",
        values: &["jitter=yes", "jitter=0.5"],
        expected: "jitter=0 or 1",
    },
    Bad {
        var: "ARENALLOC_STRESS",
        values: &["jitter_rate=1.1", "jitter_rate=often"],
        expected: "jitter_rate=a probability, 0 to 1",
    },
    Bad {
        var: "ARENALLOC_STATS",
        values: &["yes", "", "stats.txt", "2"],
        expected: "1, 0 or an absolute path",
    },
];

/// The variables the parser asks `lookup` for: its table.
fn parser_vars() -> BTreeSet<String> {
    let mut asked = BTreeSet::new();
    Config::new().with_vars(
        |name: &'static CStr| {
            asked.insert(name.to_str().unwrap().to_string());
            None
        },
        |_: &Malformed<'_>| panic!("nothing is set"),
    );
    asked
}

#[test]
fn every_variable_of_the_parser_is_tested_here() {
    let asked = parser_vars();
    assert_eq!(asked.len(), 10, "{asked:?}");
    let good: BTreeSet<String> = GOOD.iter().map(|g| g.var.to_string()).collect();
    let bad: BTreeSet<String> = BAD.iter().map(|b| b.var.to_string()).collect();
    assert_eq!(good, asked, "a good value of each variable");
    assert_eq!(bad, asked, "malformed values of each variable");
}

#[test]
fn each_good_value_reaches_its_setting_and_nothing_else() {
    for g in GOOD {
        let (config, reports) = apply(Config::new(), &[(g.var, g.value)]);
        assert!(reports.is_empty(), "{}={}: {reports:?}", g.var, g.value);
        assert!((g.is_set)(&config), "{}={}: {config:?}", g.var, g.value);
        assert!(!(g.is_set)(&Config::new()), "{}: not the default", g.var);
    }
}

#[test]
fn each_malformed_value_is_reported_and_keeps_the_setting() {
    // A base that differs from the defaults everywhere, so that "kept"
    // cannot be mistaken for "reset to the default".
    let base = Config::new()
        .max_arenas(3)
        .max_indexes(2)
        .region_size(1 << 30)
        .owner_cache(4096)
        .purge_ms(77)
        .purge_min(1 << 17)
        .purge_thread(false)
        .hardened(true)
        .stress(Stress::new().redzone(48))
        .stats_at_exit(true);
    for b in BAD {
        for &value in b.values {
            let (config, reports) = apply(base, &[(b.var, value)]);
            assert_eq!(
                reports,
                [(b.var.to_string(), value.to_string(), b.expected.to_string())],
                "{}={value:?}",
                b.var
            );
            assert_eq!(config, base, "{}={value:?} changed a setting", b.var);
        }
    }
}

#[test]
fn good_and_malformed_variables_together() {
    let (config, reports) = apply(
        Config::new(),
        &[
            ("ARENALLOC_MAX_ARENAS", "lots"),
            ("ARENALLOC_REGION_SIZE", "1G"),
            ("ARENALLOC_HARDENED", "maybe"),
            ("ARENALLOC_STRESS", "redzone=32"),
            ("ARENALLOC_OTHER", "ignored"),
        ],
    );
    assert_eq!(config.get_max_arenas(), DEFAULT_MAX_ARENAS);
    assert_eq!(config.get_region_size(), 1 << 30);
    assert!(!config.get_hardened());
    assert_eq!(config.get_stress(), Stress::new().redzone(32));
    let vars: Vec<&str> = reports.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(vars, ["ARENALLOC_MAX_ARENAS", "ARENALLOC_HARDENED"]);
}

#[test]
fn a_report_quotes_at_most_64_bytes_of_the_value() {
    let long = "9".repeat(100) + "x";
    let mut line = String::new();
    Config::new().with_vars(
        |name: &'static CStr| {
            (name.to_bytes() == b"ARENALLOC_PURGE_MIN").then_some(long.as_bytes())
        },
        |m: &Malformed<'_>| line = m.to_string(),
    );
    assert_eq!(
        line,
        format!(
            "ignoring malformed ARENALLOC_PURGE_MIN=\"{}\" (expected bytes with an \
             optional K/M/G/T suffix); using the default",
            "9".repeat(64)
        )
    );
}

/// Set in the child that runs `from_env` under a real environment.
const CHILD: &str = "ARENALLOC_TEST_FROM_ENV_CHILD";

#[test]
fn from_env_reads_the_process_environment_and_reports_on_stderr() {
    if std::env::var_os(CHILD).is_some() {
        let c = Config::from_env();
        println!(
            "max_arenas={} region={} purge_ms={} hardened={} redzone={} stats={}",
            c.get_max_arenas(),
            c.get_region_size(),
            c.get_purge_ms(),
            c.get_hardened(),
            c.get_stress().get_redzone(),
            c.get_stats_at_exit()
        );
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "from_env_reads_the_process_environment_and_reports_on_stderr",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ARENALLOC_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .env(CHILD, "1")
        .env("ARENALLOC_MAX_ARENAS", "5")
        .env("ARENALLOC_REGION_SIZE", "lots")
        .env("ARENALLOC_PURGE_MS", "-1")
        .env("ARENALLOC_STRESS", "redzone=128")
        .env("ARENALLOC_STATS", "relative/path")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let ctx = format!("{:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    assert!(out.status.success(), "{ctx}");
    assert!(
        stdout.contains(&format!(
            "max_arenas=5 region={} purge_ms=-1 hardened=false redzone=128 stats=false",
            arenalloc::DEFAULT_REGION_SIZE
        )),
        "{ctx}"
    );
    let reports: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("arenalloc:"))
        .collect();
    assert_eq!(
        reports,
        [
            "arenalloc: ignoring malformed ARENALLOC_REGION_SIZE=\"lots\" (expected bytes \
             with an optional K/M/G/T suffix, at least 8M); using the default",
            "arenalloc: ignoring malformed ARENALLOC_STATS=\"relative/path\" (expected 1, \
             0 or an absolute path); using the default",
        ],
        "{ctx}"
    );
}
