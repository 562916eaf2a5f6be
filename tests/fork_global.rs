//! `fork` at any instant, with `Heap` as the `#[global_allocator]` and no
//! preload library: the heap registers its own `pthread_atfork` handlers
//! when it first initialises (`heap/fork.rs`).
//!
//! Six threads churn 16 B–1 KiB blocks (every fourth free goes through a
//! shared mailbox to another thread: a remote free, batched by an owner)
//! while the main thread forks `FORKS` times. Each child starts eight
//! threads that allocate, hand blocks to each other through a mailbox,
//! verify and free what they take, and `trim`; once they have joined it
//! runs `check()`, which must be exact, and exits 0. A child that crashes,
//! fails `check()`, finds a block changed under it, or hangs (an alarm
//! kills it after 20 s) is counted as a failure; there must be none.
//!
//! The binary runs itself twice: in the default configuration and, as a
//! child process with `ARENALLOC_FORK_TEST_HARDENED=1`, hardened. A
//! `harness = false` binary (the test harness's threads would be parents'
//! threads too). `ARENALLOC_SOAK=<n>` multiplies the forks.

use std::alloc::{alloc, dealloc, Layout};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

mod common;
use common::{soak_env, Rng};

use arenalloc::{Config, Heap};

#[global_allocator]
static HEAP: Heap = Heap::with_config(Config::new().at_init(from_env));

const HARDENED_VAR: &std::ffi::CStr = c"ARENALLOC_FORK_TEST_HARDENED";

/// Reads the configuration this run tests, without allocating.
fn from_env(c: Config) -> Config {
    // SAFETY: a NUL-terminated name; getenv allocates nothing.
    let hardened = !unsafe { libc::getenv(HARDENED_VAR.as_ptr()) }.is_null();
    c.hardened(hardened)
}

const FORKS: usize = 300;
const CHURNERS: usize = 6;
const SLOTS: usize = 256;
const MAILBOX: usize = 64;
const CHILD_THREADS: usize = 8;
const CHILD_ROUNDS: usize = 3000;

static STOP: AtomicBool = AtomicBool::new(false);
static MAILBOX_SLOTS: [AtomicUsize; MAILBOX] = [const { AtomicUsize::new(0) }; MAILBOX];
static CHILD_BOX: [AtomicUsize; CHILD_THREADS * 4] =
    [const { AtomicUsize::new(0) }; CHILD_THREADS * 4];

/// A block whose first word holds its size and whose last byte a pattern
/// derived from it.
fn make(size: usize) -> usize {
    let layout = Layout::from_size_align(size, 16).unwrap();
    // SAFETY: a non-zero size.
    let p = unsafe { alloc(layout) };
    if p.is_null() {
        std::process::abort();
    }
    // SAFETY: `p` holds `size >= 16` bytes.
    unsafe {
        (p as *mut usize).write(size);
        p.add(size - 1).write(size as u8 ^ 0x5a);
    }
    p as usize
}

/// Verifies and frees a block `make` returned; false if it changed.
fn take(p: usize) -> bool {
    if p == 0 {
        return true;
    }
    // SAFETY: `p` came from `make` and was handed over whole.
    unsafe {
        let size = (p as *const usize).read();
        if !(16..=1024).contains(&size) || *(p as *const u8).add(size - 1) != size as u8 ^ 0x5a {
            return false;
        }
        dealloc(p as *mut u8, Layout::from_size_align(size, 16).unwrap());
    }
    true
}

fn churn(seed: u64) {
    let mut rng = Rng::from_path(0xf0_4c, &[seed]);
    let mut slots = [0usize; SLOTS];
    while !STOP.load(Ordering::Relaxed) {
        let i = rng.below(SLOTS);
        if slots[i] != 0 {
            let p = std::mem::take(&mut slots[i]);
            let p = if rng.below(4) == 0 {
                MAILBOX_SLOTS[rng.below(MAILBOX)].swap(p, Ordering::AcqRel)
            } else {
                p
            };
            assert!(take(p), "parent: a block changed under its owner");
        } else {
            slots[i] = make(16 + rng.below(1009));
        }
    }
    for p in slots {
        assert!(take(p));
    }
}

/// The child's work: returns false if a block changed under it.
fn child_work(seed: u64) -> bool {
    let mut rng = Rng::from_path(0xc41d, &[seed]);
    for r in 0..CHILD_ROUNDS {
        let p = make(16 + rng.below(1009));
        let q = CHILD_BOX[rng.below(CHILD_BOX.len())].swap(p, Ordering::AcqRel);
        if !take(q) {
            return false;
        }
        if r % 1000 == 999 {
            HEAP.trim();
        }
    }
    true
}

/// Runs in the forked child; its exit status is the verdict.
fn child() -> i32 {
    // SAFETY: arms a timer; the default SIGALRM action kills a hung child.
    unsafe { libc::alarm(20) };
    let workers: Vec<_> = (0..CHILD_THREADS as u64)
        .map(|i| thread::spawn(move || child_work(i)))
        .collect();
    let mut ok = true;
    for w in workers {
        ok &= w.join().unwrap_or(false);
    }
    for slot in &CHILD_BOX {
        ok &= take(slot.swap(0, Ordering::AcqRel));
    }
    if !ok {
        return 4;
    }
    match HEAP.check() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("child {}: check() failed: {e}", std::process::id());
            5
        }
    }
}

fn fork_storm(forks: usize) -> usize {
    let churners: Vec<_> = (0..CHURNERS as u64)
        .map(|i| thread::spawn(move || churn(i)))
        .collect();
    let mut failed = 0;
    for f in 0..forks {
        // SAFETY: the child runs only `child` and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = child();
            // SAFETY: leaves the child without running the parent's atexit work.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            failed += 1;
            if libc::WIFSIGNALED(status) {
                eprintln!(
                    "fork {f}: child killed by signal {}",
                    libc::WTERMSIG(status)
                );
            } else {
                eprintln!("fork {f}: child exited {}", libc::WEXITSTATUS(status));
            }
        }
    }
    STOP.store(true, Ordering::Relaxed);
    for c in churners {
        c.join().unwrap();
    }
    for slot in &MAILBOX_SLOTS {
        assert!(take(slot.swap(0, Ordering::AcqRel)));
    }
    HEAP.check().expect("parent: check() after the fork storm");
    failed
}

fn main() {
    let forks = FORKS * soak_env();
    let hardened = std::env::var_os("ARENALLOC_FORK_TEST_HARDENED").is_some();
    let name = if hardened { "hardened" } else { "default" };
    let failed = fork_storm(forks);
    println!("fork storm ({name}): {forks} forks, {failed} children failed");
    assert_eq!(
        failed, 0,
        "children failed after fork ({name} configuration)"
    );
    println!("test fork_storm_{name} ... ok");
    if hardened {
        return;
    }
    let me = std::env::current_exe().unwrap();
    let out = Command::new(me)
        .env("ARENALLOC_FORK_TEST_HARDENED", "1")
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the hardened run failed: {:?}",
        out.status
    );
    println!("\ntest result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
}
