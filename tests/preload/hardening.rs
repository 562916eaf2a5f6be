//! Heap-corruption and bad-input cases (issue 9 items 2, 3, 4, 7): C
//! programs under the preload library, each asserting its abort message.

use super::*;

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
