//! The preload library's fast paths reach the thread's state without a
//! call (issue 18, item 3): the exported `malloc` and `free`, as built,
//! read the fast binding at `%fs:offset` (initial-exec TLS,
//! `thread/fast_ie.rs`) and never call `__tls_get_addr`. Their slow paths
//! are out of line (`alloc_slow`, `free_slow`), so the exported bodies are
//! the fast paths plus the calls into those. Behaviour is the rest of this
//! suite's, which runs on the same library.
//!
//! Likewise `malloc_usable_size` (issue 18, item 2): its lock-free path is
//! the exported body itself, with no call and no stack frame; everything
//! else leaves by one tail jump (`Heap::start_usable_or_zero`).

use super::*;

/// The disassembly of the exported function `name` (its own body only).
fn disassembly(lib: &Path, name: &str) -> Vec<String> {
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(format!("--disassemble={name}"))
        .arg(lib)
        .output()
        .expect("run objdump");
    assert_ok(&out, &format!("objdump --disassemble={name}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let header = format!("<{name}>:");
    text.lines()
        .skip_while(|l| !l.ends_with(&header))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn malloc_and_free_fast_paths_make_no_tls_get_addr_call() {
    let lib = library();
    for name in ["malloc", "free"] {
        let body = disassembly(lib, name);
        // Found, and more than a jump to somewhere else.
        assert!(body.len() > 10, "{name}: no body in\n{}", body.join("\n"));
        assert!(
            body.iter().all(|l| !l.contains("__tls_get_addr")),
            "{name} calls __tls_get_addr:\n{}",
            body.join("\n")
        );
        // The fast binding is read at a thread-pointer offset instead.
        assert!(
            body.iter().any(|l| l.contains("%fs:")),
            "{name} reads no %fs-relative word:\n{}",
            body.join("\n")
        );
    }
}

#[test]
fn malloc_usable_size_is_one_body_with_no_call_and_no_frame() {
    let body = disassembly(library(), "malloc_usable_size");
    let text = body.join("\n");
    // Found: the map, the start bit and the header are read here.
    assert!(body.len() > 10, "no body in\n{text}");
    // No call (and so no landing pad), no stack frame: the out-of-line
    // path is reached by a jump that returns straight to the caller.
    for op in ["call", "push", "pop", "%rsp"] {
        assert!(body.iter().all(|l| !l.contains(op)), "`{op}` in\n{text}");
    }
    assert_eq!(
        body.iter().filter(|l| l.contains("ret")).count(),
        1,
        "one return, the lock-free one:\n{text}"
    );
    assert!(
        body.iter().any(|l| l.contains("jmp")),
        "no tail jump to the out-of-line path:\n{text}"
    );
}
