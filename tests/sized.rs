//! Sized frees (`Heap::free_sized`, `GlobalAlloc::dealloc`): the size is a
//! hint on a default heap, checked against the block on a hardened one
//! (`size <= usable`) and in stress mode (`size == request`); DESIGN.md's
//! error-table row "sized free with a size the block does not match".
//! The aborting path runs in a child process (this binary re-executed).

use std::alloc::{GlobalAlloc, Layout};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use arenalloc::{Config, FreeError, Heap, Stress, LARGE_THRESHOLD};

fn free_sized(heap: &Heap, p: *mut u8, size: usize) -> Result<(), FreeError> {
    // SAFETY: the checked API validates `p`; tests never use a block after
    // freeing it, and bad pointers and sizes are what it must report.
    unsafe { heap.free_sized(p, size) }
}

fn region(config: Config) -> Heap {
    Heap::with_config(config.region_size(512 << 20))
}

/// Request sizes that take each path: owner cache, locked index, large.
const SIZES: [usize; 4] = [20, 1000, 5000, 2 * LARGE_THRESHOLD];

#[test]
fn default_heap_takes_the_size_as_a_hint_only() {
    let heap = region(Config::new());
    for size in SIZES {
        // A size far off either way frees the right block all the same:
        // a small one too large for the cache skips it, a large one
        // claimed small tries the fast path first.
        for wrong in [0, 1, size / 2, size * 3, usize::MAX] {
            let p = heap.malloc(size);
            let q = heap.malloc(size);
            assert!(!p.is_null() && !q.is_null());
            free_sized(&heap, p, wrong).unwrap();
            assert!(!heap.is_allocated(p) && heap.is_allocated(q));
            assert_eq!(free_sized(&heap, p, size), Err(FreeError::DoubleFree));
            free_sized(&heap, q, size).unwrap();
        }
    }
    heap.check().unwrap();
    assert_eq!(heap.stats().live_blocks(), 0);
}

#[test]
fn hardened_heap_reports_a_size_above_the_usable_bytes_and_frees_nothing() {
    let heap = region(Config::new().hardened(true));
    for size in SIZES {
        let p = heap.malloc(size);
        let usable = heap.usable_size(p).unwrap();
        assert!(usable >= size);
        assert_eq!(
            free_sized(&heap, p, usable + 1),
            Err(FreeError::SizeMismatch),
            "request {size}"
        );
        assert!(heap.is_allocated(p), "a rejected sized free frees nothing");
        heap.check().unwrap();
        // Any size up to the usable bytes passes: the block keeps no
        // request, and a smaller size may have asked for it.
        free_sized(&heap, p, usable).unwrap();
        assert!(!heap.is_allocated(p));
        let q = heap.malloc(size);
        free_sized(&heap, q, 1).unwrap();
    }
    heap.check().unwrap();
    assert_eq!(heap.stats().live_blocks(), 0);
}

#[test]
fn hardened_check_reads_another_threads_block_too() {
    let heap = region(Config::new().hardened(true));
    let blocks: Vec<(usize, usize)> = std::thread::scope(|s| {
        s.spawn(|| {
            SIZES
                .iter()
                .map(|&n| (heap.malloc(n) as usize, n))
                .collect()
        })
        .join()
        .unwrap()
    });
    // The allocating thread exited: its arena's blocks are foreign to
    // this one (a remote free, no binding to that arena).
    for (p, size) in blocks {
        let p = p as *mut u8;
        let usable = heap.usable_size(p).unwrap();
        assert_eq!(
            free_sized(&heap, p, usable + 16),
            Err(FreeError::SizeMismatch)
        );
        free_sized(&heap, p, size).unwrap();
    }
    heap.check().unwrap();
    assert_eq!(heap.stats().live_blocks(), 0);
}

#[test]
fn stress_mode_reports_any_size_but_the_request() {
    let heap = region(Config::new().stress(Stress::new()));
    for size in SIZES {
        let p = heap.malloc(size);
        for wrong in [size + 1, size - 1, 0] {
            assert_eq!(free_sized(&heap, p, wrong), Err(FreeError::SizeMismatch));
        }
        // What the block holds, for the caller: its request.
        assert_eq!(heap.usable_size(p), Some(size));
        free_sized(&heap, p, size).unwrap();
        // A reallocated block's request is the new size.
        let q = heap.malloc(size);
        // SAFETY: a live block; only the result is used after.
        let r = unsafe { heap.realloc(q, size + 100) };
        assert_eq!(free_sized(&heap, r, size), Err(FreeError::SizeMismatch));
        free_sized(&heap, r, size + 100).unwrap();
    }
    heap.check().unwrap();
    assert_eq!(heap.stats().live_blocks(), 0);
}

#[test]
fn sized_free_of_an_invalid_pointer_is_classified_as_free_would() {
    for config in [
        Config::new(),
        Config::new().hardened(true),
        Config::new().stress(Stress::new()),
    ] {
        let heap = region(config);
        let p = heap.malloc(100);
        let keep = heap.malloc(100);
        free_sized(&heap, p, 100).unwrap();
        assert_eq!(free_sized(&heap, p, 100), Err(FreeError::DoubleFree));
        assert_eq!(
            free_sized(&heap, keep.wrapping_add(16), 100),
            Err(FreeError::NotAllocated)
        );
        let outside = Box::into_raw(Box::new(0u64)).cast::<u8>();
        assert_eq!(free_sized(&heap, outside, 8), Err(FreeError::OutsideHeap));
        // SAFETY: allocated by `Box::new` above, not freed.
        drop(unsafe { Box::from_raw(outside.cast::<u64>()) });
        assert_eq!(free_sized(&heap, std::ptr::null_mut(), 5), Ok(()));
        free_sized(&heap, keep, 100).unwrap();
        heap.check().unwrap();
    }
}

/// The environment variable that makes this binary a child: the heap
/// configuration to abort in (`hardened` or `stress`).
const CHILD: &str = "ARENALLOC_TEST_SIZED_CHILD";

/// Runs test `name` of this binary again as a child with `CHILD=mode`,
/// asserts that it died of `SIGABRT`, and returns the block it named
/// (`child: block …`), its `arenalloc:` lines and its whole stderr.
fn run_aborting_child(name: &str, mode: &str) -> (String, Vec<String>, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, mode)
        .output()
        .expect("spawn the test binary");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{mode}: {:?}\n{stderr}",
        out.status
    );
    let block = stderr
        .lines()
        .find_map(|l| l.strip_prefix("child: block "))
        .expect("the child allocated")
        .to_owned();
    let reports = stderr
        .lines()
        .filter(|l| l.starts_with("arenalloc:"))
        .map(str::to_owned)
        .collect();
    (block, reports, stderr)
}

/// `GlobalAlloc::dealloc` with a layout 16 bytes larger than `alloc`'s:
/// one line, `SIGABRT`, in both checking modes. (A 32-byte request has
/// 32 usable bytes, so hardened and stress name the same figures.)
#[test]
fn dealloc_with_a_wrong_size_aborts_with_one_line() {
    const NAME: &str = "dealloc_with_a_wrong_size_aborts_with_one_line";
    if let Some(mode) = std::env::var_os(CHILD) {
        let config = match mode.to_str() {
            Some("hardened") => Config::new().hardened(true),
            _ => Config::new().stress(Stress::new()),
        };
        let heap = region(config);
        let layout = Layout::from_size_align(32, 8).unwrap();
        // SAFETY: a non-zero layout; the block is freed once, with a
        // layout of the wrong size (the bug under test).
        unsafe {
            let p = heap.alloc(layout);
            assert_eq!(heap.usable_size(p), Some(32));
            eprintln!("child: block {p:p}");
            heap.dealloc(p, Layout::from_size_align(48, 8).unwrap());
        }
        eprintln!("child: survived");
        return;
    }
    for mode in ["hardened", "stress"] {
        let (block, reports, stderr) = run_aborting_child(NAME, mode);
        assert_eq!(
            reports,
            [format!(
                "arenalloc: free of {block} with size 48, block holds 32"
            )],
            "{mode}: {stderr}"
        );
        assert!(!stderr.contains("child: survived"), "{stderr}");
    }
}

/// The hardened check reads the size as stored and verifies only an
/// apparent mismatch: a header the program overwrote is reported as the
/// corruption it is (by the free that follows), not as a size mismatch.
#[test]
fn sized_free_of_an_overwritten_header_reports_the_corruption() {
    const NAME: &str = "sized_free_of_an_overwritten_header_reports_the_corruption";
    if std::env::var_os(CHILD).is_some() {
        let heap = region(Config::new().hardened(true));
        let p = heap.malloc(100);
        let keep = heap.malloc(100);
        eprintln!("child: block {:p}", p.wrapping_sub(16));
        // SAFETY: `p`'s header is in a committed chunk of the heap; the
        // write of its size word is the bug under test.
        unsafe { p.sub(8).cast::<u64>().write(0) };
        let r = free_sized(&heap, p, 100);
        eprintln!("child: survived {r:?} {keep:p}");
        return;
    }
    let (block, reports, stderr) = run_aborting_child(NAME, "corrupt");
    assert_eq!(
        reports,
        [format!(
            "arenalloc: heap corruption at {block} (header check failed)"
        )],
        "{stderr}"
    );
}
