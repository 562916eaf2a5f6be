//! Heap map picture: [`Heap::render_svg`] draws every arena of a heap, chunk
//! by chunk, as an SVG image whose blocks are coloured live, free or cached
//! (parked in the arena's owner cache, `arena/cache.rs`: neither the user's
//! nor free in the index).
//!
//! ```text
//!  arena 0 (owned): 3 chunks, 12.0 MiB live in 9,811 blocks, ...    <g id="arena-0">
//!   #1  [hdr|████ live ████|░░ free ░░|▓ mixed ▓|████ ...    ]     one row = one 4 MiB chunk
//!   #4  [hdr|████████████████████░░░░░░░░░░░░░░░░░░░░░░░░░░░]     x = byte offset in the chunk
//!  arena 1 (no live owner): ...                                    <g id="arena-1">
//! ```
//!
//! Invariants:
//! * **No heap lock is held while this module allocates or writes.** As in
//!   `dump.rs`, every buffer is sized and allocated first (under no
//!   lock), filled under one arena lock at a time without growing, and the
//!   picture is written only after every lock is released. A buffer that
//!   turns out too small (the heap grew in between) truncates the picture
//!   of that arena, which then says so; it never grows under the lock.
//! * **The output is bounded, whatever the number of blocks.** Blocks are
//!   folded into *segments* while the arena is walked: adjacent blocks of
//!   the same state (live, free, cached) merge into one run; a run of at
//!   least [`MIN_SOLID`] bytes is drawn as its own rectangle, in its
//!   state's colour; shorter runs are pooled into a *mixed* segment of at
//!   most [`MAX_MIXED`] bytes, coloured by its share of live bytes (cached
//!   bytes in it count as not live: they are not the user's). A chunk
//!   therefore yields at most [`MAX_SEGMENTS`] rectangles, and at most [`MAX_ROWS`] chunks are drawn in all (the
//!   rest are counted in their arena's caption): a heap of a million blocks
//!   renders to well under a megabyte.
//! * There is exactly one `<g id="arena-N">` group per arena that exists,
//!   in id order, even for arenas whose chunks were not drawn (tests count
//!   them).
//!
//! The picture is exact only while no other thread uses the heap, like
//! `dump` and `check`: each arena is captured under its own lock, at a
//! slightly different moment.

use std::io::{self, BufWriter, Write};

use super::dump::{Bytes, State};
use crate::arena::Counters;
use crate::chunk::{CHUNK, FIRST_BLOCK};
use crate::heap::Heap;

/// A same-state run at least this long is drawn as its own rectangle
/// (3 px of a row at [`ROW_WIDTH`]).
pub(crate) const MIN_SOLID: usize = CHUNK / 256;
/// The longest stretch of short runs pooled into one mixed rectangle.
pub(crate) const MAX_MIXED: usize = CHUNK / 64;
/// Rectangles one chunk can yield: every solid run is at least
/// `MIN_SOLID` long; a mixed segment is flushed before a solid run (at
/// most one per solid run), when it would exceed `MAX_MIXED` (it is then
/// longer than `MAX_MIXED - MIN_SOLID`), or at the chunk's end; plus the
/// chunk header.
pub(crate) const MAX_SEGMENTS: usize =
    2 * (CHUNK / MIN_SOLID) + CHUNK / (MAX_MIXED - MIN_SOLID) + 4;
/// Chunk rows drawn in all, over every arena.
pub(crate) const MAX_ROWS: usize = 256;

const _: () = assert!(MAX_MIXED > MIN_SOLID && MAX_SEGMENTS < 1024);
const _: () = assert!(CHUNK <= u32::MAX as usize, "segments store offsets as u32");

/// Width in pixels of one chunk row.
const ROW_WIDTH: f64 = 768.0;
/// Height of a chunk row, and the gap below it.
const ROW_HEIGHT: u32 = 12;
const ROW_GAP: u32 = 3;
/// Left margin for the chunk labels.
const LABEL_WIDTH: u32 = 64;
/// Height of an arena caption line.
const CAPTION: u32 = 18;
/// Height of an arena's caption (two lines: who and how busy, then what it
/// holds) and the gap below it.
const ARENA_CAPTION: u32 = 2 * CAPTION + 4;
const MARGIN: u32 = 10;
/// Narrowest rectangle drawn: a lone live block in a free chunk stays visible.
const MIN_PX: f64 = 0.75;

/// Colours, by CSS class: live, free, cached, four shades of mixed (live
/// share up to 25 %, 50 %, 75 %, below 100 %), chunk header + start bitmap.
const STYLE: &str = "text{font:11px sans-serif;fill:#222}.l{fill:#2b63a6}.f{fill:#e3e3e3}\
.c{fill:#e8a33d}.m1{fill:#c3d1e6}.m2{fill:#95b0d6}.m3{fill:#6a8fc4}.m4{fill:#4676b5}.h{fill:#505050}";

/// One rectangle of a chunk row, in bytes from the chunk's base.
#[derive(Clone, Copy)]
struct Segment {
    start: u32,
    len: u32,
    /// Bytes of live blocks (headers included) inside the segment.
    live: u32,
    /// Bytes of cached blocks (headers included) inside the segment.
    cached: u32,
}

impl Segment {
    /// The CSS class: live, free, cached, or a mixed shade by live share.
    fn class(&self) -> &'static str {
        if self.cached >= self.len {
            "c"
        } else if self.live == 0 {
            "f"
        } else if self.live >= self.len {
            "l"
        } else {
            match u64::from(self.live) * 4 / u64::from(self.len) {
                0 => "m1",
                1 => "m2",
                2 => "m3",
                _ => "m4",
            }
        }
    }
}

/// One drawn chunk: its region chunk index and its segments
/// (`segments[first..first + count]` of its arena's picture).
#[derive(Clone, Copy)]
struct Row {
    index: usize,
    base: usize,
    first: usize,
    count: usize,
}

/// What one arena looks like, captured under its lock.
struct ArenaPicture {
    id: u32,
    owned: bool,
    counters: Counters,
    /// The user's live blocks and their usable bytes, and the cached blocks
    /// and their bytes: what `stats` says of this arena (the index counts
    /// cached blocks as live, since they are carved).
    live: (usize, usize),
    cached: (usize, usize),
    rows: Vec<Row>,
    segments: Vec<Segment>,
    /// The buffers filled up (the arena grew since they were sized, or the
    /// row budget ran out): some chunks are not drawn.
    truncated: bool,
}

/// Folds one chunk's blocks into segments (module doc). Pushes only into
/// spare capacity: never allocates.
struct Painter {
    /// Current run of equal-state blocks: start, length, state.
    run: Option<(usize, usize, State)>,
    /// Pending mixed segment: start, length, live bytes, cached bytes.
    mixed: Option<(usize, usize, usize, usize)>,
}

impl Painter {
    fn new() -> Painter {
        Painter {
            run: None,
            mixed: None,
        }
    }

    /// Adds the block at `start` (offset in the chunk) of `size` bytes.
    fn block(&mut self, out: &mut Vec<Segment>, start: usize, size: usize, state: State) {
        match self.run {
            Some((s, len, st)) if st == state && s + len == start => {
                self.run = Some((s, len + size, st));
            }
            _ => {
                self.finish_run(out);
                self.run = Some((start, size, state));
            }
        }
    }

    fn finish_run(&mut self, out: &mut Vec<Segment>) {
        let Some((start, len, state)) = self.run.take() else {
            return;
        };
        let live = if state == State::Live { len } else { 0 };
        let cached = if state == State::Cached { len } else { 0 };
        if len >= MIN_SOLID {
            self.flush_mixed(out);
            push(out, start, len, live, cached);
            return;
        }
        match self.mixed {
            Some((s, l, lb, cb)) if l + len <= MAX_MIXED && s + l == start => {
                self.mixed = Some((s, l + len, lb + live, cb + cached));
            }
            _ => {
                self.flush_mixed(out);
                self.mixed = Some((start, len, live, cached));
            }
        }
    }

    fn flush_mixed(&mut self, out: &mut Vec<Segment>) {
        if let Some((start, len, live, cached)) = self.mixed.take() {
            push(out, start, len, live, cached);
        }
    }

    /// Ends the chunk.
    fn finish(&mut self, out: &mut Vec<Segment>) {
        self.finish_run(out);
        self.flush_mixed(out);
    }
}

/// Appends a segment if there is spare capacity (callers reserve
/// `MAX_SEGMENTS` per chunk, so there always is).
fn push(out: &mut Vec<Segment>, start: usize, len: usize, live: usize, cached: usize) {
    if out.len() < out.capacity() {
        // Offsets and lengths are below CHUNK <= u32::MAX (const assert).
        out.push(Segment {
            start: start as u32,
            len: len as u32,
            live: live as u32,
            cached: cached as u32,
        });
    }
}

impl Heap {
    /// Writes an SVG picture of the heap: one `<g id="arena-N">` group per
    /// arena, one row per 4 MiB chunk, live blocks dark, free blocks light,
    /// blocks parked in an owner cache orange, stretches of small
    /// interleaved blocks shaded by their live share, and a legend. The
    /// file stays small however many blocks there are (at most 256 chunk
    /// rows, a bounded number of rectangles per row).
    ///
    /// No heap lock is held while the picture is written, so `out` may
    /// allocate from this very heap. Exact only while no other thread uses
    /// the heap, like [`Heap::dump`].
    ///
    /// ```
    /// let heap = arenalloc::Heap::new();
    /// let p = heap.malloc(1000);
    /// let mut svg = Vec::new();
    /// heap.render_svg(&mut svg).unwrap();
    /// let svg = String::from_utf8(svg).unwrap();
    /// assert!(svg.starts_with("<svg") && svg.contains(r#"<g id="arena-0""#));
    /// unsafe { heap.free(p) }.unwrap();
    /// ```
    pub fn render_svg(&self, out: &mut dyn Write) -> io::Result<()> {
        let (pictures, large) = self.capture();
        let mut out = BufWriter::new(out);
        write_svg(&mut out, &pictures, large)?;
        out.flush()
    }

    /// Captures every arena (module doc: allocate, lock and fill, unlock),
    /// and the large allocations' `(count, bytes)`.
    fn capture(&self) -> (Vec<ArenaPicture>, (usize, usize)) {
        let Some(meta) = self.meta_if_ready() else {
            return (Vec::new(), (0, 0));
        };
        // The user's figures of each arena, as `stats` reports them (it
        // allocates before it locks, like everything here).
        let stats = self.stats();
        let mut pictures = Vec::with_capacity(meta.arena_count());
        let mut rows_left = MAX_ROWS;
        for arena in meta.indexes() {
            // Size the buffers under a short lock, allocate with none held.
            let chunks = arena.lock_drained(&meta.region).counters.chunk_count;
            let want = (chunks + 2).min(rows_left);
            let mut rows = Vec::with_capacity(want);
            let mut segments = Vec::with_capacity(want * MAX_SEGMENTS);
            let mut truncated = false;
            let st = arena.lock_drained(&meta.region);
            let counters = st.counters;
            let mut painter = Painter::new();
            let mut current: usize = 0;
            st.for_each_block(|c, b| {
                let base = c as usize;
                if base != current {
                    if current != 0 {
                        painter.finish(&mut segments);
                        close_row(&mut rows, segments.len());
                    }
                    if rows.len() == rows.capacity() {
                        truncated = true;
                        current = 0;
                        return false;
                    }
                    current = base;
                    rows.push(Row {
                        index: meta.region.chunk_index(base),
                        base,
                        first: segments.len(),
                        count: 0,
                    });
                    push(&mut segments, 0, FIRST_BLOCK, 0, 0);
                }
                // SAFETY: `for_each_block` hands out headers of this arena's
                // chunks while its lock is held.
                let (size, state) = unsafe { ((*b).size(), State::of(b)) };
                painter.block(&mut segments, b as usize - base, size, state);
                true
            });
            if current != 0 {
                painter.finish(&mut segments);
                close_row(&mut rows, segments.len());
            }
            let owned = arena.live_owner().is_some();
            drop(st);
            let figures = stats.arenas().iter().find(|a| a.id == arena.id);
            let live = figures.map_or((counters.live_blocks, counters.live_bytes), |a| {
                (a.live_blocks, a.allocated_bytes)
            });
            let cached = figures.map_or((0, 0), |a| (a.cached_blocks, a.cached_bytes));
            truncated |= rows.len() < counters.chunk_count;
            rows_left -= rows.len();
            // Rows in address order: arenas' chunks interleave in the region.
            rows.sort_unstable_by_key(|r| r.base);
            pictures.push(ArenaPicture {
                id: arena.id,
                owned,
                counters,
                live,
                cached,
                rows,
                segments,
                truncated,
            });
        }
        use core::sync::atomic::Ordering::Relaxed;
        let large = (
            meta.large.live.load(Relaxed),
            meta.large.live_bytes.load(Relaxed),
        );
        (pictures, large)
    }
}

/// Sets the segment count of the last row, now that its segments end at `end`.
fn close_row(rows: &mut [Row], end: usize) {
    if let Some(r) = rows.last_mut() {
        r.count = end - r.first;
    }
}

/// Writes the picture of `pictures` (no lock held) and the large
/// allocations' `(count, bytes)`.
fn write_svg(
    out: &mut dyn Write,
    pictures: &[ArenaPicture],
    large: (usize, usize),
) -> io::Result<()> {
    let rows: u32 = pictures.iter().map(|p| p.rows.len() as u32).sum();
    let legend_top = MARGIN + 3 * CAPTION;
    let first_arena = legend_top + CAPTION + 8;
    let height = first_arena
        + pictures.len() as u32 * ARENA_CAPTION
        + rows * (ROW_HEIGHT + ROW_GAP)
        + MARGIN
        + CAPTION;
    let width = LABEL_WIDTH + ROW_WIDTH as u32 + 2 * MARGIN;
    writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">"#
    )?;
    writeln!(out, "<style>{STYLE}</style>")?;
    writeln!(
        out,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    )?;

    // Title: totals over the captured arenas.
    let total =
        |f: fn(&Counters) -> usize| -> usize { pictures.iter().map(|p| f(&p.counters)).sum() };
    let total_of = |f: fn(&ArenaPicture) -> usize| -> usize { pictures.iter().map(f).sum() };
    writeln!(
        out,
        r#"<text x="{MARGIN}" y="{}" style="font-weight:bold">arenalloc heap map: {} arena(s), {} chunk(s) of {}</text>"#,
        MARGIN + 12,
        pictures.len(),
        total(|c| c.chunk_count),
        Bytes(CHUNK),
    )?;
    writeln!(
        out,
        r#"<text x="{MARGIN}" y="{}">{} live in {} block(s), {} free in {} block(s), {} cached in {} block(s); {} in {} large allocation(s) (not drawn)</text>"#,
        MARGIN + 12 + CAPTION,
        Bytes(total_of(|p| p.live.1)),
        total_of(|p| p.live.0),
        Bytes(total(|c| c.free_bytes)),
        total(|c| c.free_blocks),
        Bytes(total_of(|p| p.cached.1)),
        total_of(|p| p.cached.0),
        Bytes(large.1),
        large.0,
    )?;
    writeln!(
        out,
        r#"<text x="{MARGIN}" y="{}">One row per chunk (region chunk number on the left), bytes left to right; runs of small blocks are shaded by their live share.</text>"#,
        MARGIN + 12 + 2 * CAPTION
    )?;

    // Legend.
    let legend: [(&str, &str); 8] = [
        ("l", "live"),
        ("f", "free"),
        ("c", "cached"),
        ("m1", "mixed: &lt;25% live"),
        ("m2", "&lt;50%"),
        ("m3", "&lt;75%"),
        ("m4", "&lt;100%"),
        ("h", "chunk header + start bitmap"),
    ];
    writeln!(
        out,
        r#"<g id="legend" transform="translate({MARGIN},{legend_top})">"#
    )?;
    let mut x = 0;
    for (class, label) in legend {
        writeln!(
            out,
            r#"<rect x="{x}" y="0" width="12" height="12" class="{class}"/><text x="{}" y="10">{label}</text>"#,
            x + 16
        )?;
        x += 24 + 7 * label.replace("&lt;", "<").len() as u32;
    }
    writeln!(out, "</g>")?;

    let mut y = first_arena;
    for p in pictures {
        let c = &p.counters;
        let ((live_blocks, live_bytes), (cached_blocks, cached_bytes)) = (p.live, p.cached);
        writeln!(
            out,
            r#"<g id="arena-{}" transform="translate({MARGIN},{y})">"#,
            p.id
        )?;
        let drawn = if p.truncated {
            format!(
                " ({} of {} chunks drawn)",
                p.rows.len(),
                c.chunk_count.max(p.rows.len())
            )
        } else {
            String::new()
        };
        writeln!(
            out,
            r#"<text x="0" y="12"><tspan style="font-weight:bold">arena {}</tspan> ({}): {} chunk(s){drawn}; lock taken {} times ({} contended)</text>"#,
            p.id,
            if p.owned { "owned" } else { "no live owner" },
            c.chunk_count,
            c.lock_acquisitions,
            c.lock_contended,
        )?;
        writeln!(
            out,
            r#"<text x="0" y="{}">{} live in {} block(s), {} free in {} block(s), {} cached in {} block(s)</text>"#,
            12 + CAPTION,
            Bytes(live_bytes),
            live_blocks,
            Bytes(c.free_bytes),
            c.free_blocks,
            Bytes(cached_bytes),
            cached_blocks,
        )?;
        let mut ry = ARENA_CAPTION;
        for row in &p.rows {
            writeln!(
                out,
                r#"<g transform="translate({LABEL_WIDTH},{ry})"><text x="-6" y="10" text-anchor="end">#{}</text>"#,
                row.index
            )?;
            for s in &p.segments[row.first..row.first + row.count] {
                let scale = ROW_WIDTH / CHUNK as f64;
                let x = f64::from(s.start) * scale;
                let w = (f64::from(s.len) * scale).max(MIN_PX);
                let class = if s.start == 0 { "h" } else { s.class() };
                writeln!(
                    out,
                    r#"<rect x="{x:.2}" width="{w:.2}" height="{ROW_HEIGHT}" class="{class}"/>"#
                )?;
            }
            writeln!(out, "</g>")?;
            ry += ROW_HEIGHT + ROW_GAP;
        }
        writeln!(out, "</g>")?;
        y += ARENA_CAPTION + p.rows.len() as u32 * (ROW_HEIGHT + ROW_GAP);
    }
    if pictures.is_empty() {
        writeln!(
            out,
            r#"<text x="{MARGIN}" y="{}">(no arena: nothing allocated yet)</text>"#,
            y + 12
        )?;
    }
    writeln!(out, "</svg>")
}
