//! The plan: what a run does, resolved from the command line (workloads,
//! allocators, thread counts, the sweep's points, where pictures go).
//! Built by the parent (`parent.rs`), read by every report (`report.rs`,
//! `sweep.rs`, `timeline.rs`), which import it and not the parent.
//!
//! Invariants: `threads` is non-empty, positive and without repeats next
//! to each other; `seconds` is positive and finite; with a sweep,
//! `workloads` are larson and prodcons and `allocators` is arenalloc alone.

use std::path::PathBuf;
use std::time::Duration;

use super::levels::{self, Point};
use super::peers::ALLOCATORS;
use super::workloads::{Scale, Workload};
use crate::Args;

/// What a run does, resolved from the command line.
pub(crate) struct Plan {
    pub(crate) scale: Scale,
    pub(crate) seconds: f64,
    pub(crate) repeat: usize,
    pub(crate) workloads: Vec<Workload>,
    pub(crate) allocators: Vec<&'static str>,
    /// Whether `--alloc` chose them (then no workload leaves one out).
    alloc_asked: bool,
    pub(crate) threads: Vec<usize>,
    /// `Some(points)`: the lock-granularity sweep over these points.
    pub(crate) sweep: Option<Vec<Point>>,
    pub(super) timeout: Duration,
    pub(super) heap_map: PathBuf,
    pub(super) lock_svg: PathBuf,
    pub(super) rss_svg: PathBuf,
}

/// The entries of `all` that `asked` names (`--workload`, `--alloc`), in
/// the order asked, each once; a name not in `all` is an error listing
/// the known ones.
fn choose<T: Copy + PartialEq>(
    what: &str,
    asked: &[String],
    all: &[T],
    name: impl Fn(T) -> &'static str,
) -> Result<Vec<T>, String> {
    let mut chosen = Vec::new();
    for asked in asked {
        let x = all
            .iter()
            .copied()
            .find(|&x| name(x) == asked)
            .ok_or_else(|| {
                let names: Vec<_> = all.iter().map(|&x| name(x)).collect();
                format!("unknown {what} {asked:?} (one of: {})", names.join(", "))
            })?;
        if !chosen.contains(&x) {
            chosen.push(x);
        }
    }
    Ok(chosen)
}

impl Plan {
    pub(super) fn from_args(args: &Args) -> Result<Plan, String> {
        let scale = if args.quick {
            Scale::Quick
        } else if args.full {
            Scale::Full
        } else {
            Scale::Default
        };
        let (seconds, threads, repeat) = match scale {
            Scale::Quick => (0.15, vec![1, 4], 1),
            Scale::Default => (0.5, vec![1, 2, 8], 1),
            Scale::Full => (1.0, vec![1, 2, 4, 8], 3),
        };
        let mut workloads = choose("workload", &args.workload, &Workload::NAMED, Workload::name)?;
        let all_allocators = ALLOCATORS.map(|(n, _)| n);
        let mut allocators = choose("allocator", &args.alloc, &all_allocators, |n| n)?;
        if allocators.is_empty() {
            allocators = all_allocators.to_vec();
        }
        let sweep = args.sweep_arenas.then(levels::points);
        if sweep.is_some() {
            let sweepable = [Workload::Larson, Workload::ProdCons];
            if workloads.is_empty() {
                workloads = sweepable.to_vec();
            }
            if let Some(w) = workloads.iter().find(|w| !sweepable.contains(w)) {
                return Err(format!(
                    "--sweep-arenas runs larson and prodcons, not {}",
                    w.name()
                ));
            }
            allocators = vec!["arenalloc"];
        } else if workloads.is_empty() {
            workloads = Workload::ALL.to_vec();
        }
        let mut threads = if args.threads.is_empty() {
            if sweep.is_some() {
                vec![8]
            } else {
                threads
            }
        } else {
            args.threads.clone()
        };
        threads.retain(|&t| t > 0);
        threads.dedup();
        if threads.is_empty() {
            return Err("--threads needs at least one count above 0".into());
        }
        let seconds = args.seconds.unwrap_or(seconds);
        if !(seconds > 0.0 && seconds.is_finite()) {
            return Err("--seconds must be positive".into());
        }
        Ok(Plan {
            scale,
            seconds,
            repeat: args.repeat.unwrap_or(repeat).max(1),
            workloads,
            allocators,
            alloc_asked: !args.alloc.is_empty(),
            threads,
            sweep,
            timeout: Duration::from_secs_f64(args.timeout.max(1.0)),
            heap_map: args.heap_map.clone(),
            lock_svg: args.lock_svg.clone(),
            rss_svg: args.rss_svg.clone(),
        })
    }

    /// The thread counts workload `w` runs at (module doc).
    pub(crate) fn threads_of(&self, w: Workload) -> Vec<usize> {
        match self.threads.iter().copied().max() {
            Some(max) if w.one_thread_count() => vec![max],
            _ => self.threads.clone(),
        }
    }

    /// The allocators workload `w` runs with: all of the plan's, less
    /// those it leaves out ([`Workload::left_out`]) unless `--alloc`
    /// asked for them.
    pub(crate) fn allocators_of(&self, w: Workload) -> Vec<&'static str> {
        let mut chosen = self.allocators.clone();
        if !self.alloc_asked {
            chosen.retain(|a| w.left_out().iter().all(|(name, _)| name != a));
        }
        chosen
    }

    pub(crate) fn mode(&self) -> &'static str {
        match self.scale {
            Scale::Quick => "--quick",
            Scale::Default => "default",
            Scale::Full => "--full",
        }
    }
}
