//! Heap map picture: `Heap::render_svg` (see the comparison driver).
