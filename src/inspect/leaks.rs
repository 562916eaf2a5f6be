//! Leaks: [`Heap::leak_report`] — the blocks the program still holds,
//! grouped by (request size, allocating thread), the largest groups (by
//! bytes) first. Meant for the end of a run in stress mode, where every
//! block's record names its request and its allocating thread; without
//! stress mode the groups are by usable size and name no thread.
//!
//! Invariants: the group table ([`LEAK_GROUPS`] entries) is allocated
//! before any lock is taken and never grows under one (blocks of groups
//! beyond it are summed on one line); each arena is walked under its own
//! lock, large runs under the region lock; the report is written after
//! every lock is released.

use std::io::{self, Write};

use crate::config::LEAK_GROUPS;
use crate::heap::Heap;
use crate::large;
use crate::stress::{Body, Who};

/// One group of the report.
#[derive(Clone, Copy, Debug)]
struct Group {
    size: usize,
    who: Who,
    blocks: usize,
    /// The lowest allocation sequence number met (stress mode).
    first_seq: u64,
}

/// The table being filled: sorted by (size, who), bounded.
struct Groups {
    list: Vec<Group>,
    other_blocks: usize,
    other_bytes: usize,
}

impl Groups {
    fn add(&mut self, size: usize, who: Who, seq: u64) {
        let key = |g: &Group| (g.size, g.who);
        match self.list.binary_search_by_key(&(size, who), key) {
            Ok(i) => {
                if let Some(g) = self.list.get_mut(i) {
                    g.blocks += 1;
                    g.first_seq = g.first_seq.min(seq);
                }
            }
            // Within the capacity reserved before the locks: no growth.
            Err(i) if self.list.len() < self.list.capacity() => self.list.insert(
                i,
                Group {
                    size,
                    who,
                    blocks: 1,
                    first_seq: seq,
                },
            ),
            Err(_) => {
                self.other_blocks += 1;
                self.other_bytes += size;
            }
        }
    }
}

impl Heap {
    /// Writes the blocks still allocated, grouped by (size, allocating
    /// thread), largest groups first, one line each:
    ///
    /// ```text
    /// arenalloc: leak report: 3 blocks, 4160 bytes still allocated, in 2 groups
    /// arenalloc:   2 blocks of 2048 bytes (4096 bytes) allocated by thread 2 [tid 4712], first at #5
    /// arenalloc:   1 block of 64 bytes (64 bytes) allocated by thread 1 [tid 4711], first at #2
    /// ```
    ///
    /// Returns the number of blocks reported. The preload library writes
    /// it at exit in stress mode (`ARENALLOC_STRESS`). After an injected
    /// allocation failure (`Stress::fail_every` and the like) the first
    /// line ends with the latest one: `… in 2 groups after injected
    /// failure #3 in thread 2`.
    ///
    /// ```
    /// use arenalloc::{Config, Heap, Stress};
    /// let heap = Heap::with_config(Config::new().stress(Stress::new()));
    /// let p = heap.malloc(48);
    /// let mut out = Vec::new();
    /// assert_eq!(heap.leak_report(&mut out).unwrap(), 1);
    /// assert!(String::from_utf8(out).unwrap().contains("1 block of 48 bytes"));
    /// # unsafe { heap.free(p) }.unwrap();
    /// ```
    pub fn leak_report(&self, out: &mut dyn Write) -> io::Result<usize> {
        let mut groups = Groups {
            list: Vec::with_capacity(LEAK_GROUPS),
            other_blocks: 0,
            other_bytes: 0,
        };
        if let Some(meta) = self.meta_if_ready() {
            for arena in meta.indexes() {
                let st = arena.lock_drained(&meta.region);
                st.for_each_live(|size, who, seq| groups.add(size, who, seq));
            }
            let stress = meta.stress_on();
            let _ = large::walk(&meta.region, |run| {
                // SAFETY: a live run's usable bytes are committed; its
                // record is read only (under the region lock).
                let rec = unsafe { Body::new(run.payload as *mut u8, run.usable) }
                    .filter(|_| stress)
                    .and_then(|b| b.record());
                match rec {
                    Some(r) => groups.add(r.request as usize, r.alloc, r.alloc_seq),
                    None => groups.add(run.usable, Who::default(), 0),
                }
                true
            });
        }
        let mut list = groups.list;
        list.sort_by_key(|g| core::cmp::Reverse((g.size * g.blocks, g.blocks)));
        let blocks: usize = list.iter().map(|g| g.blocks).sum::<usize>() + groups.other_blocks;
        let bytes: usize =
            list.iter().map(|g| g.size * g.blocks).sum::<usize>() + groups.other_bytes;
        let mut text = format!(
            "arenalloc: leak report: {blocks} block{}, {bytes} bytes still allocated, in {} group{}",
            if blocks == 1 { "" } else { "s" },
            list.len(),
            if list.len() == 1 { "" } else { "s" },
        );
        // Stress mode: leaks that follow an injected failure say so.
        if let Some(word) = self.meta_if_ready().map(|m| m.stress.last_injected()) {
            let mut line = crate::line::Line::new();
            crate::stress::push_after_injected(&mut line, word);
            text += &String::from_utf8_lossy(line.bytes());
        }
        text.push('\n');
        for g in &list {
            text += &format!(
                "arenalloc:   {} block{} of {} bytes ({} bytes)",
                g.blocks,
                if g.blocks == 1 { "" } else { "s" },
                g.size,
                g.size * g.blocks
            );
            if g.first_seq != 0 {
                text += &format!(
                    " allocated by thread {} [tid {}], first at #{}",
                    g.who.thread, g.who.tid, g.first_seq
                );
            }
            text.push('\n');
        }
        if groups.other_blocks != 0 {
            text += &format!(
                "arenalloc:   {} more blocks ({} bytes) in groups past the first {LEAK_GROUPS}\n",
                groups.other_blocks, groups.other_bytes
            );
        }
        out.write_all(text.as_bytes())?;
        Ok(blocks)
    }
}
