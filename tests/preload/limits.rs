//! Resource-limit cases (issue 9 items 1, 5, 6): unbounded thread counts,
//! the internal pool, address-space limits.

#[allow(unused_imports)]
use super::*;
