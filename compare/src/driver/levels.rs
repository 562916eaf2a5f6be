//! What the lock-granularity lesson (`--sweep-arenas`, `sweep.rs`)
//! measures: its three levels and the points (a level at an arena limit)
//! a run plans. A leaf beside `plan.rs`, which plans the points, and
//! `sweep.rs` and `report.rs`, which print them.
//!
//! Invariant: each level differs from the one before it in one setting
//! (`sweep.rs`'s module doc has the table); a point's `owner_cache` is
//! always its level's.

use arenalloc::DEFAULT_OWNER_CACHE;

/// A level of the lesson (module doc), in teaching order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    OneLock,
    LockedArenas,
    OwnerCaches,
}

impl Level {
    /// Every level, in teaching order.
    pub(crate) const ALL: [Level; 3] = [Level::OneLock, Level::LockedArenas, Level::OwnerCaches];

    /// The name in the JSON (`level`) and in the picture's group ids.
    pub(crate) fn id(self) -> &'static str {
        match self {
            Level::OneLock => "one-lock",
            Level::LockedArenas => "locked-arenas",
            Level::OwnerCaches => "owner-caches",
        }
    }

    /// The name in the tables and under the picture's bars.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Level::OneLock => "one lock",
            Level::LockedArenas => "locked arenas",
            Level::OwnerCaches => "owner caches",
        }
    }

    /// Its colour in the picture (Okabe-Ito, safe for colour-blind
    /// readers): hot for the contended lock, blue for the lock-free path.
    pub(crate) fn colour(self) -> &'static str {
        match self {
            Level::OneLock => "#d55e00",
            Level::LockedArenas => "#e69f00",
            Level::OwnerCaches => "#0072b2",
        }
    }

    /// Bytes of each arena's owner cache at this level.
    fn owner_cache(self) -> usize {
        match self {
            Level::OneLock | Level::LockedArenas => 0,
            Level::OwnerCaches => DEFAULT_OWNER_CACHE,
        }
    }

    /// The arena limits the level is measured at.
    fn arena_counts(self) -> &'static [usize] {
        match self {
            Level::OneLock => &[1],
            Level::LockedArenas | Level::OwnerCaches => &[2, 4, 8],
        }
    }

    /// The level's configuration, for the legend and the header.
    pub(crate) fn config(self) -> String {
        match self {
            Level::OneLock => "max_arenas(1), owner_cache(0)".into(),
            Level::LockedArenas => "owner_cache(0)".into(),
            Level::OwnerCaches => format!("owner_cache({})", kib(self.owner_cache())),
        }
    }
}

/// One measurement of the sweep: a level at an arena limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Point {
    pub(crate) level: Level,
    pub(crate) max_arenas: usize,
    /// Always `level.owner_cache()`; passed to the child as `--owner-cache`.
    pub(crate) owner_cache: usize,
}

/// Every point of `--sweep-arenas`, level by level.
pub(crate) fn points() -> Vec<Point> {
    Level::ALL
        .into_iter()
        .flat_map(|level| {
            level.arena_counts().iter().map(move |&max_arenas| Point {
                level,
                max_arenas,
                owner_cache: level.owner_cache(),
            })
        })
        .collect()
}

/// The points in words, for the report's header.
pub(crate) fn describe(points: &[Point]) -> String {
    Level::ALL
        .into_iter()
        .filter_map(|level| {
            let counts: Vec<String> = points
                .iter()
                .filter(|p| p.level == level)
                .map(|p| p.max_arenas.to_string())
                .collect();
            (!counts.is_empty()).then(|| {
                format!(
                    "{} ({}) at max_arenas {}",
                    level.title(),
                    level.config(),
                    counts.join(", ")
                )
            })
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `bytes` as "256 KiB" (or bytes when not whole KiB).
fn kib(bytes: usize) -> String {
    if bytes % 1024 == 0 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_go_level_by_level_and_each_level_changes_one_setting() {
        let got: Vec<(&str, usize, usize)> = points()
            .iter()
            .map(|p| (p.level.id(), p.max_arenas, p.owner_cache))
            .collect();
        let c = DEFAULT_OWNER_CACHE;
        assert!(c > 0);
        assert_eq!(
            got,
            [
                ("one-lock", 1, 0),
                ("locked-arenas", 2, 0),
                ("locked-arenas", 4, 0),
                ("locked-arenas", 8, 0),
                ("owner-caches", 2, c),
                ("owner-caches", 4, c),
                ("owner-caches", 8, c),
            ]
        );
    }
}
