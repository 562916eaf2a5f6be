//! The comparison driver (`cargo run --release`, the `arenalloc-compare`
//! binary), run as a user would: `--quick --json` on the fragmentation
//! workload must give a row for every allocator with positive throughput
//! and RSS, and write a heap map that parses as SVG with one
//! `<g id="arena-N">` group per arena arenalloc reports; a child that
//! outlives its timeout must become a failed row, not a hung driver.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const ALLOCATORS: [&str; 7] = [
    "arenalloc",
    "arenalloc-1lock",
    "system",
    "mimalloc",
    "jemalloc",
    "talc",
    "linked_list",
];

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("driver-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn driver(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arenalloc-compare"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run the driver")
}

fn explain(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn quick_json_has_every_allocator_and_the_heap_map_one_group_per_arena() {
    let dir = scratch("quick");
    let out = driver(
        &dir,
        &[
            "--quick",
            "--workload",
            "fragmentation",
            "--threads",
            "2",
            "--json",
            "out.json",
        ],
    );
    assert!(out.status.success(), "{}", explain(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("### fragmentation"), "{}", explain(&out));

    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out.json")).expect("out.json"))
            .expect("out.json is JSON");
    let rows = json.as_array().expect("a JSON list");
    assert_eq!(rows.len(), ALLOCATORS.len(), "{json:#}");
    for name in ALLOCATORS {
        let row = rows
            .iter()
            .find(|r| r["allocator"] == name)
            .unwrap_or_else(|| panic!("no row for {name}: {json:#}"));
        assert_eq!(row["status"], "ok", "{row:#}");
        assert_eq!(row["workload"], "fragmentation", "{row:#}");
        assert_eq!(row["threads"], 2, "{row:#}");
        let rate = row["ops_per_sec"].as_f64().unwrap_or(0.0);
        assert!(rate > 0.0, "{name}: ops_per_sec {rate}");
        for key in ["peak_rss_bytes", "peak_live_bytes", "rss_after_free_bytes"] {
            let v = row[key].as_u64().unwrap_or(0);
            assert!(v > 0, "{name}: {key} = {v}");
        }
        // The live set is 16 MiB in quick mode; every byte is written.
        assert!(
            row["peak_rss_bytes"].as_u64().unwrap() >= 16 << 20,
            "{row:#}"
        );
    }

    let arenalloc = rows.iter().find(|r| r["allocator"] == "arenalloc").unwrap();
    assert_eq!(arenalloc["check"], "ok");
    let arenas = arenalloc["arenas"].as_array().expect("arenalloc's arenas");
    assert!(
        arenas.len() >= 2,
        "2 threads, per-thread arenas: {arenalloc:#}"
    );

    let svg = std::fs::read_to_string(dir.join("heap-map.svg")).expect("heap-map.svg");
    let groups = svg_arena_groups(&svg).unwrap_or_else(|e| panic!("heap-map.svg: {e}"));
    let ids: Vec<u64> = arenas.iter().map(|a| a["id"].as_u64().unwrap()).collect();
    assert_eq!(groups, ids, "one <g id=\"arena-N\"> per arena");
}

#[test]
fn a_child_past_its_timeout_is_a_failed_row() {
    let dir = scratch("timeout");
    let out = driver(
        &dir,
        &[
            "--alloc",
            "system",
            "--workload",
            "larson",
            "--threads",
            "1",
            "--seconds",
            "30",
            "--timeout",
            "1",
            "--json",
            "out.json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out.json")).expect("out.json"))
            .expect("JSON");
    assert_eq!(json[0]["status"], "timeout", "{json:#}");
    assert_eq!(json[0]["allocator"], "system");
}

#[test]
fn unknown_names_are_refused() {
    let dir = scratch("names");
    for args in [["--workload", "nope"], ["--alloc", "nope"]] {
        let out = driver(&dir, &args);
        assert_eq!(out.status.code(), Some(2), "{}", explain(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("one of"));
    }
}

/// Checks that `svg` is well-formed XML whose root is an `<svg>` in the SVG
/// namespace, and returns the N of every `<g id="arena-N">`, in order.
fn svg_arena_groups(svg: &str) -> Result<Vec<u64>, String> {
    let mut stack: Vec<String> = Vec::new();
    let mut groups = Vec::new();
    let mut roots = 0;
    let mut rest = svg;
    while let Some(lt) = rest.find('<') {
        check_text(&rest[..lt])?;
        if stack.is_empty() && !rest[..lt].trim().is_empty() {
            return Err("text outside the root element".into());
        }
        rest = &rest[lt..];
        if let Some(body) = rest.strip_prefix("<!--") {
            let end = body.find("-->").ok_or("unterminated comment")?;
            rest = &body[end + 3..];
            continue;
        }
        if let Some(body) = rest.strip_prefix("<?") {
            let end = body.find("?>").ok_or("unterminated declaration")?;
            rest = &body[end + 2..];
            continue;
        }
        let gt = tag_end(rest).ok_or("unterminated tag")?;
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name.trim() => continue,
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
        let (name, attrs) = tag.split_at(name_end);
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_alphanumeric() || "-_:.".contains(c))
        {
            return Err(format!("bad element name {name:?}"));
        }
        let attrs = parse_attrs(attrs)?;
        if stack.is_empty() {
            roots += 1;
            if name != "svg" {
                return Err(format!("root element is <{name}>"));
            }
            let ns = attrs
                .iter()
                .find(|(k, _)| k == "xmlns")
                .map(|(_, v)| v.as_str());
            if ns != Some("http://www.w3.org/2000/svg") {
                return Err(format!("root xmlns is {ns:?}"));
            }
        }
        if name == "g" {
            if let Some((_, id)) = attrs.iter().find(|(k, _)| k == "id") {
                if let Some(n) = id.strip_prefix("arena-") {
                    groups.push(n.parse::<u64>().map_err(|e| format!("id {id}: {e}"))?);
                }
            }
        }
        if !self_closing {
            stack.push(name.to_string());
        }
    }
    check_text(rest)?;
    if !stack.is_empty() {
        return Err(format!("unclosed elements {stack:?}"));
    }
    if roots != 1 {
        return Err(format!("{roots} root elements"));
    }
    Ok(groups)
}

/// The index of the `>` that ends the tag starting at `s[0] == '<'`,
/// skipping quoted attribute values.
fn tag_end(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s.char_indices().skip(1) {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(i),
            (None, '<') => return None,
            _ => {}
        }
    }
    None
}

/// `name="value"` pairs; duplicates and unquoted values are errors.
fn parse_attrs(mut s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return Ok(out);
        }
        let eq = s
            .find('=')
            .ok_or_else(|| format!("attribute without value: {s:?}"))?;
        let name = s[..eq].trim();
        let after = s[eq + 1..].trim_start();
        let q = after.chars().next().filter(|c| *c == '"' || *c == '\'');
        let q = q.ok_or_else(|| format!("unquoted value of {name}"))?;
        let end = after[1..].find(q).ok_or("unterminated value")? + 1;
        let value = &after[1..end];
        check_text(value)?;
        if out.iter().any(|(k, _)| k == name) {
            return Err(format!("duplicate attribute {name}"));
        }
        out.push((name.to_string(), value.to_string()));
        s = &after[end + 1..];
    }
}

/// Character data: no `<`, and every `&` starts a known or numeric entity.
fn check_text(s: &str) -> Result<(), String> {
    if s.contains('<') {
        return Err(format!("raw '<' in {s:?}"));
    }
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        let semi = rest[amp..].find(';').ok_or("unterminated entity")? + amp;
        let entity = &rest[amp + 1..semi];
        let known = ["lt", "gt", "amp", "quot", "apos"].contains(&entity)
            || entity.strip_prefix('#').is_some_and(|n| {
                n.strip_prefix('x').map_or(n.parse::<u32>().is_ok(), |h| {
                    u32::from_str_radix(h, 16).is_ok()
                })
            });
        if !known {
            return Err(format!("unknown entity &{entity};"));
        }
        rest = &rest[semi + 1..];
    }
    Ok(())
}

#[test]
fn the_checker_rejects_broken_svg() {
    let good = r#"<svg xmlns="http://www.w3.org/2000/svg"><g id="arena-0"><text>a &lt; b</text></g><g id="arena-1"/></svg>"#;
    assert_eq!(svg_arena_groups(good), Ok(vec![0, 1]));
    for bad in [
        r#"<svg xmlns="http://www.w3.org/2000/svg"><text>a < b</text></svg>"#,
        r#"<svg xmlns="http://www.w3.org/2000/svg"><g></svg>"#,
        r#"<svg><g id="arena-0"/></svg>"#,
        r#"<svg xmlns="http://www.w3.org/2000/svg"><g id=arena-0/></svg>"#,
        r#"<svg xmlns="http://www.w3.org/2000/svg"></svg><svg xmlns="http://www.w3.org/2000/svg"></svg>"#,
        r#"<svg xmlns="http://www.w3.org/2000/svg">&nbsp;</svg>"#,
    ] {
        assert!(svg_arena_groups(bad).is_err(), "accepted {bad}");
    }
}
