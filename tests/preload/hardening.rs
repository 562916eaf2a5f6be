//! Heap-corruption and bad-input cases (issue 9 items 2, 3, 4, 7): C
//! programs under the preload library, each asserting its abort message.

#[allow(unused_imports)]
use super::*;
