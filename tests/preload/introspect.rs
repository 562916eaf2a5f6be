//! glibc's introspection and tuning calls (issue 11, part 3):
//! `mallinfo2`/`mallinfo`, `malloc_info`, `malloc_stats`, `malloc_trim`
//! and `mallopt` under the preload library. The C side is
//! `tests/c/introspect.c`; each case checks real behaviour (figures that
//! must agree with known sizes or with the exit report, RSS that must
//! drop, threads that must share an arena), never a sleep.

use super::*;

/// Compiles `tests/c/introspect.c` once.
fn introspect_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| compile_c(&scratch("c-introspect"), "introspect", &[]))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `key=<n>` in a line of `key=value` words.
fn word(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}=<n> in {line:?}"))
}

/// The first figure after `name` in the exit report's lines.
fn report_figure(s: &Stats, name: &str) -> u64 {
    s.lines
        .iter()
        .find_map(|l| {
            l.split(name)
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {name:?} in the exit report: {s:?}"))
}

#[test]
fn c_mallinfo2_and_mallinfo_agree_with_known_sizes_and_the_exit_report() {
    let dir = scratch("c-mallinfo");
    // No decay thread: starting one (the 5 MiB block takes the heap past
    // 16 MiB) makes glibc allocate the thread's TLS block between the
    // readings the C side compares.
    let (out, s) = run(
        &dir,
        Command::new(introspect_binary())
            .arg("mallinfo")
            .env("ARENALLOC_PURGE_THREAD", "0"),
    );
    assert_ok(&out, "introspect mallinfo");
    let text = stdout(&out);
    assert!(text.ends_with("ok mallinfo\n"), "{text}");
    let line = text.lines().next().unwrap();
    let (hblks, hblkhd, uordblks) = (
        word(line, "hblks"),
        word(line, "hblkhd"),
        word(line, "uordblks"),
    );
    assert_eq!(hblks, 1, "one large block live: {line}");
    assert!(hblkhd >= 5 << 20, "{line}");
    // 1000 blocks of 112 usable bytes are live, and little else.
    assert!(
        (112_000..112_000 + (64 << 10)).contains(&uordblks),
        "{line}"
    );
    assert!(
        word(line, "uordblks") + word(line, "fordblks") <= word(line, "arena"),
        "{line}"
    );
    // The exit report's live bytes are mallinfo2's in-use figures plus
    // what was allocated after the call (the stdout buffer).
    let live = report_figure(&s, "live bytes");
    let in_use = uordblks + hblkhd;
    assert!(
        (in_use..in_use + (64 << 10)).contains(&live),
        "mallinfo2 in use {in_use}, exit report {live}: {line}"
    );
}

/// Well-formedness and structure of a `malloc_info` document, checked by
/// python3's XML parser; prints `heaps=N` and the totals it verified.
const CHECK_XML: &str = r#"
import sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.read())
assert root.tag == "malloc" and root.get("version") == "1", root.tag
heaps = root.findall("heap")
assert heaps, "no <heap>"
for i, h in enumerate(heaps):
    assert h.get("nr") is not None and int(h.get("nr")) >= 0
    assert h.find("sizes") is not None
    kinds = [(e.tag, e.get("type")) for e in h if e.tag != "sizes"]
    assert kinds == [("total", "fast"), ("total", "rest"), ("system", "current"),
                     ("system", "max"), ("aspace", "total"), ("aspace", "mprotect"),
                     ("arenalloc", None)], kinds
    a = h.find("arenalloc")
    for key in ("owner", "in_use", "chunks", "resident", "purged", "pending_blocks",
                "lock_acquisitions", "lock_contended", "allocations", "frees"):
        assert a.get(key) is not None, key
    assert int(h.find("system[@type='current']").get("size")) == int(a.get("chunks")) * 4194304
    assert int(a.get("in_use")) + int(h.find("total[@type='rest']").get("size")) \
        <= int(h.find("system[@type='current']").get("size"))
def total(kind):
    return [e for e in root.findall("total") if e.get("type") == kind][0]
def size(e):
    return int(e.get("size"))
for kind in ("fast", "rest"):
    assert size(total(kind)) == sum(size(h.find("total[@type='%s']" % kind)) for h in heaps), kind
    assert int(total(kind).get("count")) == sum(int(h.find("total[@type='%s']" % kind).get("count")) for h in heaps)
current = [e for e in root.findall("system") if e.get("type") == "current"][0]
assert size(current) == sum(size(h.find("system[@type='current']")) for h in heaps)
mmap = total("mmap")
a = root.find("arenalloc")
assert int(a.get("in_use")) == sum(int(h.find("arenalloc").get("in_use")) for h in heaps) + size(mmap)
print("heaps=%d mmap_count=%s mmap_size=%d" % (len(heaps), mmap.get("count"), size(mmap)))
"#;

#[test]
fn c_malloc_info_is_well_formed_xml_with_one_heap_per_arena() {
    let dir = scratch("c-malloc-info");
    let (out, s) = run(&dir, Command::new(introspect_binary()).arg("info"));
    assert_ok(&out, "introspect info");
    let xml = stdout(&out);
    assert!(
        xml.starts_with("<malloc version=\"1\">\n<heap nr=\"0\">\n"),
        "{xml}"
    );
    let mut py = Command::new(python())
        .args(["-c", CHECK_XML])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    py.stdin.take().unwrap().write_all(xml.as_bytes()).unwrap();
    let checked = py.wait_with_output().unwrap();
    assert_ok(&checked, &format!("the XML check of\n{xml}"));
    let summary = stdout(&checked);
    let heaps = word(&summary, "heaps");
    assert!(
        heaps >= 2 && heaps == s.max_arenas,
        "one <heap> per arena (exit report: {s:?}): {summary}"
    );
    assert_eq!(word(&summary, "mmap_count"), 1, "{summary}");
    assert!(word(&summary, "mmap_size") >= 3 << 20, "{summary}");
}

#[test]
fn c_malloc_stats_prints_glibc_lines_and_arenallocs_per_arena() {
    let dir = scratch("c-malloc-stats");
    let (out, s) = run(&dir, Command::new(introspect_binary()).arg("stats"));
    assert_ok(&out, "introspect stats");
    let err = stderr(&out);
    let report = err
        .split("before\n")
        .nth(1)
        .and_then(|r| r.split("after\n").next())
        .unwrap_or_else(|| panic!("stderr: {err}"));
    let lines: Vec<&str> = report.lines().collect();
    // glibc's shape: per arena its header and two lines, then the totals.
    let arenas: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("Arena "))
        .collect();
    assert!(arenas.len() >= 2, "{report}");
    assert_eq!(arenas.len() as u64, s.max_arenas, "{report}");
    assert_eq!(lines[0], "Arena 0:", "{report}");
    for &i in &arenas {
        assert!(lines[i].ends_with(':'), "{}", lines[i]);
        assert!(lines[i + 1].starts_with("system bytes     = "), "{report}");
        assert!(lines[i + 2].starts_with("in use bytes     = "), "{report}");
    }
    let total = lines
        .iter()
        .position(|l| *l == "Total (incl. mmap):")
        .unwrap_or_else(|| panic!("{report}"));
    for (k, label) in [
        "system bytes     = ",
        "in use bytes     = ",
        "max mmap regions = ",
        "max mmap bytes   = ",
    ]
    .iter()
    .enumerate()
    {
        assert!(lines[total + 1 + k].starts_with(label), "{report}");
    }
    // Every other line is `label = value` in glibc's columns (%-16s =
    // %10lu), arenalloc's per-arena figures among them.
    for l in lines.iter().filter(|l| !l.ends_with(':')) {
        let (label, value) = l.split_at(16);
        let value = value.strip_prefix(" = ").unwrap_or_else(|| panic!("{l:?}"));
        assert!(!label.trim().is_empty() && value.len() >= 10, "{l:?}");
        let v = value.trim_start();
        assert!(v == "none" || v.parse::<u64>().is_ok(), "{l:?}");
    }
    for label in [
        "owner thread",
        "cached bytes",
        "pending blocks",
        "resident bytes",
        "purged bytes",
        "lock acquired",
        "lock contended",
        "remote frees",
    ] {
        let n = lines.iter().filter(|l| l.starts_with(label)).count();
        assert!(
            n >= arenas.len(),
            "{label:?} for every arena ({n}): {report}"
        );
    }
    // Totals agree with the arenas: in use = Σ arenas' in use + large.
    let figure = |l: &str| -> u64 { l.rsplit(' ').next().unwrap().parse().unwrap() };
    let arena_in_use: u64 = arenas.iter().map(|&i| figure(lines[i + 2])).sum();
    let large = figure(lines[total + 4]);
    assert!(large >= 3 << 20, "{report}");
    assert_eq!(figure(lines[total + 2]), arena_in_use + large, "{report}");
}

#[test]
fn c_malloc_trim_after_a_mass_free_drops_rss_to_what_is_live() {
    let dir = scratch("c-malloc-trim");
    let (out, _) = run(
        &dir,
        Command::new(introspect_binary())
            .arg("trim")
            // No decay: what comes back, comes back through malloc_trim.
            .env("ARENALLOC_PURGE_MS", "-1"),
    );
    assert_ok(&out, "introspect trim");
    let line = stdout(&out);
    eprintln!("{line}");
    let (full, freed, trimmed, live) = (
        word(&line, "rss_full"),
        word(&line, "rss_freed"),
        word(&line, "rss_trimmed"),
        word(&line, "live"),
    );
    assert!(word(&line, "allocated") >= 256 << 20, "{line}");
    assert!(full >= 256 << 20, "the blocks were resident: {line}");
    assert_eq!(
        word(&line, "trim"),
        1,
        "malloc_trim released memory: {line}"
    );
    assert!(
        trimmed + (4 << 20) < freed,
        "malloc_trim itself gave memory back: {line}"
    );
    assert!(
        trimmed as f64 <= 1.2 * live as f64 + (8 << 20) as f64,
        "RSS after malloc_trim is what is live plus the program: {line}"
    );
}

#[test]
fn c_mallopt_arena_max_1_makes_later_threads_share_one_arena() {
    let dir = scratch("c-mallopt-arenas");
    let (out, s) = run(
        &dir,
        Command::new(introspect_binary()).args(["arenas", "0"]),
    );
    assert_ok(&out, "introspect arenas 0");
    let heaps = word(&stdout(&out), "heaps");
    assert!(
        heaps >= 5 && s.max_arenas >= 5,
        "without mallopt, 4 live threads have arenas of their own: {heaps}, {s:?}"
    );
    let (out, s) = run(
        &dir,
        Command::new(introspect_binary()).args(["arenas", "1"]),
    );
    assert_ok(&out, "introspect arenas 1");
    assert_eq!(stdout(&out), "heaps=1\n");
    assert_eq!(s.max_arenas, 1, "{s:?}");
}

#[test]
fn c_mallopt_returns_0_for_what_it_does_not_apply() {
    let dir = scratch("c-mallopt");
    let (out, _) = run(&dir, Command::new(introspect_binary()).arg("opt"));
    assert_ok(&out, "introspect opt");
    assert_eq!(stdout(&out), "ok opt\n");
}

#[test]
fn c_mallopt_trim_threshold_sets_the_smallest_block_decay_purges() {
    let dir = scratch("c-mallopt-purge");
    let purged = |threshold: &str| {
        let (out, _) = run(
            &dir,
            Command::new(introspect_binary())
                .args(["purge", threshold])
                // Purge as blocks become free: the effect is immediate.
                .env("ARENALLOC_PURGE_MS", "0"),
        );
        assert_ok(&out, &format!("introspect purge {threshold}"));
        word(&stdout(&out), "purged")
    };
    // A 96 KiB free block (the smallest the owner cache does not keep) is
    // below a 128 KiB threshold: nothing is purged...
    assert_eq!(purged("131072"), 0);
    // ...and above 4 KiB and the default 64 KiB: its interior pages (about
    // 22 of its 24; the first keeps the free block's header and links, and
    // the second document's buffers may share the last) are purged.
    for threshold in ["4096", "-1"] {
        let n = purged(threshold);
        assert!((20 * 4096..=24 * 4096).contains(&n), "{threshold}: {n}");
    }
}
