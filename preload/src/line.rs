//! `Line`: one line of output assembled in a stack buffer, so that the
//! preload library can report (`malloc_stats`, `malloc_info`) without
//! allocating while it formats and without `core::fmt` (whose panicking
//! paths the panic audit, `.ci/no-panics.py`, would have to argue away).
//!
//! The `arenalloc` crate has its own, smaller one in `src/error.rs` for its
//! abort messages; it is private to that crate, and this is the only copy
//! in this one.
//!
//! Invariants:
//! * `len <= CAP`, and `buf[..len]` is the text pushed so far.
//! * Text that does not fit is dropped, whole numbers included (a
//!   truncated line, never a panic, an allocation or a split digit string
//!   that reads as another number).
//! * Nothing here indexes a slice unchecked: every access is `get`/`get_mut`.

use core::ffi::c_void;

/// Bytes a line holds: the longest written (a `malloc_info` `<arenalloc>`
/// element with every counter at 20 digits) is about 400.
const CAP: usize = 512;

/// Decimal digits of the largest `u64`.
const U64_DIGITS: usize = 20;

/// A line of text in a stack buffer.
pub(crate) struct Line {
    /// The text; only `buf[..len]` is meaningful.
    buf: [u8; CAP],
    /// Bytes pushed, `<= CAP`.
    len: usize,
}

impl Line {
    /// An empty line.
    pub(crate) fn new() -> Line {
        Line {
            buf: [0; CAP],
            len: 0,
        }
    }

    /// Appends `bytes`, or as much of them as fits.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> &mut Line {
        let n = bytes.len().min(CAP - self.len);
        if let (Some(dst), Some(src)) = (self.buf.get_mut(self.len..self.len + n), bytes.get(..n)) {
            dst.copy_from_slice(src);
            self.len += n;
        }
        self
    }

    /// Appends `n` in decimal, right-aligned in `width` columns (`%*lu`);
    /// `width` 0 is `%lu`. Nothing if the number does not fit whole.
    pub(crate) fn num_width(&mut self, n: u64, width: usize) -> &mut Line {
        let mut digits = [0u8; U64_DIGITS];
        let mut start = U64_DIGITS;
        let mut rest = n;
        loop {
            start -= 1;
            if let Some(d) = digits.get_mut(start) {
                *d = b'0' + (rest % 10) as u8;
            }
            rest /= 10;
            if rest == 0 || start == 0 {
                break;
            }
        }
        let text = digits.get(start..).unwrap_or_default();
        let pad = width.saturating_sub(text.len());
        if pad + text.len() > CAP - self.len {
            return self;
        }
        for _ in 0..pad {
            self.push(b" ");
        }
        self.push(text)
    }

    /// Appends `n` in decimal.
    pub(crate) fn num(&mut self, n: u64) -> &mut Line {
        self.num_width(n, 0)
    }

    /// The text so far.
    pub(crate) fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// Empties the line for reuse.
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Writes the line to file descriptor `fd` in one `write(2)` (a short
    /// write is not retried: these are diagnostics).
    pub(crate) fn write_fd(&self, fd: i32) {
        let text = self.bytes();
        // SAFETY: `text` is initialised memory of `text.len()` bytes;
        // write(2) only reads it, and a bad `fd` is an error return.
        unsafe { libc::write(fd, text.as_ptr().cast::<c_void>(), text.len()) };
    }

    /// Writes the line to standard error.
    pub(crate) fn write_stderr(&self) {
        self.write_fd(2);
    }

    /// Writes the line to the stdio stream `fp`; whether every byte went.
    /// (stdio may `malloc` the stream's buffer: the caller holds no heap
    /// lock.)
    ///
    /// # Safety
    ///
    /// `fp` is a valid, open `FILE *` that no other thread closes meanwhile.
    pub(crate) unsafe fn write_file(&self, fp: *mut libc::FILE) -> bool {
        let text = self.bytes();
        if text.is_empty() {
            return true;
        }
        // SAFETY: 1. `fp` is valid and open (the caller's contract);
        // 2. `text` is initialised memory of `text.len()` bytes that fwrite
        // only reads.
        unsafe { libc::fwrite(text.as_ptr().cast::<c_void>(), 1, text.len(), fp) == text.len() }
    }
}

#[cfg(test)]
mod tests {
    use super::{Line, CAP};

    #[test]
    fn numbers_are_decimal_and_padded_like_printf() {
        let mut l = Line::new();
        l.num(0).push(b"|").num(1234567890).push(b"|").num(u64::MAX);
        assert_eq!(l.bytes(), b"0|1234567890|18446744073709551615");
        l.clear();
        l.num_width(135168, 10)
            .push(b"|")
            .num_width(12345678901, 10);
        assert_eq!(l.bytes(), b"    135168|12345678901");
    }

    #[test]
    fn overflow_truncates_and_drops_whole_numbers() {
        let mut l = Line::new();
        l.push(&[b'x'; CAP - 3]);
        l.num(12345);
        assert_eq!(l.bytes().len(), CAP - 3, "a number that does not fit");
        l.num(12).push(b"abc");
        assert_eq!(l.bytes().len(), CAP);
        assert_eq!(&l.bytes()[CAP - 3..], b"12a");
    }
}
