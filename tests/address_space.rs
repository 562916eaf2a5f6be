//! Issue 9, item 6: a heap starts wherever the process can map anything.
//! The region used to be all or nothing: under any `ulimit -v` below the
//! configured size (64 GiB by default) the reservation failed, every
//! allocation returned null, and every later one retried the same `mmap`.
//! Now it is capped under `RLIMIT_AS` and halved on refusal, and
//! `reserved_bytes` says what was granted.

use std::process::Command;

use arenalloc::{Config, Heap, CHUNK};

/// Set in the child that runs a test body under `ulimit -v`.
const CHILD: &str = "ARENALLOC_TEST_UNDER_ULIMIT";
/// The child's address-space limit, in KiB (`ulimit -v` units): 2 GB.
const LIMIT_KIB: usize = 2_000_000;

/// Re-runs the test `name` of this binary in a child whose address space
/// is limited (`sh -c 'ulimit -v ...; exec ...'`), and checks it passed.
fn run_under_ulimit(name: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {LIMIT_KIB} && exec \"$0\" \"$@\""))
        .arg(&exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .expect("spawn sh");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("1 passed") && stderr.contains("child ok"),
        "child under ulimit -v {LIMIT_KIB}: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}

/// Allocates `small` bytes in 1 KiB-ish blocks and `large` blocks of 32
/// MiB from `heap`, all live at once, fills and verifies them, frees them,
/// and checks the heap.
fn exercise(heap: &Heap, small: usize, large: u8) {
    let mut blocks = Vec::new();
    let mut total = 0;
    let mut i = 0usize;
    while total < small {
        let size = 16 + (i * 2_654_435_761) % 2032;
        let p = heap.malloc(size);
        assert!(!p.is_null(), "small block {i} of {size} bytes");
        // SAFETY: a fresh block of `size` bytes.
        unsafe { p.write_bytes(i as u8, size) };
        blocks.push((p, size, i as u8));
        total += size;
        i += 1;
    }
    for k in 0..large {
        let size = 32 << 20;
        let p = heap.malloc(size);
        assert!(!p.is_null(), "large block {k}");
        // SAFETY: a fresh block of `size` bytes.
        unsafe { p.write_bytes(0xa0 + k, size) };
        blocks.push((p, size, 0xa0 + k));
    }
    heap.check().unwrap();
    for (p, size, byte) in blocks {
        for off in (0..size).step_by(4093) {
            // SAFETY: inside the live block.
            assert_eq!(unsafe { *p.add(off) }, byte);
        }
        // SAFETY: a live block of this heap, not used again.
        unsafe { heap.free(p) }.unwrap();
    }
    heap.check().unwrap();
    assert_eq!(heap.stats().live_blocks(), 0);
}

#[test]
fn region_beyond_rlimit_as_is_capped_and_serves() {
    if std::env::var_os(CHILD).is_none() {
        return run_under_ulimit("region_beyond_rlimit_as_is_capped_and_serves");
    }
    let limit = LIMIT_KIB << 10;
    // 64 TiB asked, 2 GB allowed: half of what the limit leaves.
    let heap = Heap::with_config(Config::new().region_size(1 << 46));
    exercise(&heap, 64 << 20, 4);
    let reserved = heap.stats().reserved_bytes();
    assert!(reserved <= limit / 2, "{reserved}");
    assert!(reserved >= 256 << 20, "{reserved}");
    assert_eq!(reserved % CHUNK, 0);
    // A second heap gets half of what is left after the first.
    let default = Heap::new();
    exercise(&default, 16 << 20, 4);
    let second = default.stats().reserved_bytes();
    assert!(
        second <= (limit - reserved) / 2 && second >= 64 << 20,
        "{second}"
    );
    // A region that fits is granted as asked.
    let small = Heap::with_config(Config::new().region_size(96 << 20));
    exercise(&small, 1 << 20, 2);
    assert_eq!(small.stats().reserved_bytes(), 96 << 20);
    eprintln!("child ok: reserved {reserved}, then {second}, then 96 MiB");
}

/// Sets the soft `RLIMIT_AS` of this (child) process.
fn set_address_space_limit(bytes: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a live rlimit; lowering or restoring the soft limit
    // up to the hard one is always allowed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_AS, &mut lim), 0);
        lim.rlim_cur = bytes.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_AS, &lim), 0);
    }
}

/// Bytes this process has mapped (`/proc/self/statm`, first field).
fn mapped_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

#[test]
fn no_address_space_left_fails_cleanly_and_serves_once_there_is() {
    if std::env::var_os(CHILD).is_none() {
        return run_under_ulimit("no_address_space_left_fails_cleanly_and_serves_once_there_is");
    }
    let heap = Heap::with_config(Config::new().region_size(64 << 20));
    // 6 MiB of room: not even the smallest region (two 4 MiB chunks, plus
    // a chunk of alignment slack) fits, at any size halving reaches.
    set_address_space_limit(mapped_bytes() + (6 << 20));
    assert!(heap.malloc(16).is_null());
    assert!(heap.malloc(16).is_null(), "a later call retries, cleanly");
    assert!(heap.check().is_ok());
    assert_eq!(heap.stats().reserved_bytes(), 0);
    // SAFETY: null is always a valid argument.
    assert_eq!(unsafe { heap.free(std::ptr::null_mut()) }, Ok(()));
    // With room again, the next allocation reserves the region and serves.
    set_address_space_limit((LIMIT_KIB << 10) as u64);
    exercise(&heap, 1 << 20, 1);
    assert_eq!(heap.stats().reserved_bytes(), 64 << 20);
    eprintln!("child ok: refused, then granted 64 MiB");
}

#[test]
fn region_beyond_the_address_space_is_halved_until_granted() {
    // 512 TiB is more than any user address space arenalloc runs on (47 or
    // 48 bits without a hint), so the first tries are refused whatever
    // the limits.
    let asked = 1usize << 49;
    let heap = Heap::with_config(Config::new().region_size(asked));
    exercise(&heap, 8 << 20, 4);
    let reserved = heap.stats().reserved_bytes();
    assert!(reserved < asked, "{reserved}");
    assert!(
        reserved.is_power_of_two() && reserved >= CHUNK,
        "{reserved}"
    );
    drop(heap);
    // And a heap whose region is granted at once is unchanged.
    let heap = Heap::with_config(Config::new().region_size(64 << 20));
    exercise(&heap, 1 << 20, 1);
    assert_eq!(heap.stats().reserved_bytes(), 64 << 20);
}
