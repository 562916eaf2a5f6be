//! `Line`: one line of output assembled in a stack buffer, for everything
//! that must report without allocating: the one-line aborts (`error.rs`),
//! stress mode's reports (`stress.rs`), a malformed variable's warning
//! (`config.rs`), and the preload library's `malloc_stats`, `malloc_info`
//! and C++ messages. It uses no `core::fmt` either, whose panicking paths
//! the panic audit (`.ci/no-panics.py`) would have to argue away.
//!
//! Public only so that the preload library (another crate) shares it;
//! hidden from the documentation, not part of the supported API.
//!
//! Invariants:
//! * `len <= CAP`, and `buf[..len]` is the text pushed so far.
//! * Text that does not fit is dropped, whole numbers included (a
//!   truncated line, never a panic, an allocation or a split digit string
//!   that reads as another number).
//! * Nothing here indexes a slice unchecked: every access is `get`/`get_mut`
//!   or provably in bounds (`hex`'s fixed buffer).

/// Bytes a line holds: the longest written (the preload library's
/// `malloc_info` `<arenalloc>` element with every counter at 20 digits) is
/// about 400.
const CAP: usize = 512;

/// Decimal digits of the largest `u64`.
const U64_DIGITS: usize = 20;

/// A line of text in a stack buffer (module doc).
pub struct Line {
    /// The text; only `buf[..len]` is meaningful.
    buf: [u8; CAP],
    /// Bytes pushed, `<= CAP`.
    len: usize,
}

impl Default for Line {
    fn default() -> Line {
        Line::new()
    }
}

impl Line {
    /// An empty line.
    pub fn new() -> Line {
        Line {
            buf: [0; CAP],
            len: 0,
        }
    }

    /// Appends `bytes`, or as much of them as fits.
    pub fn push(&mut self, bytes: &[u8]) -> &mut Line {
        let n = bytes.len().min(CAP - self.len);
        if let (Some(dst), Some(src)) = (self.buf.get_mut(self.len..self.len + n), bytes.get(..n)) {
            dst.copy_from_slice(src);
            self.len += n;
        }
        self
    }

    /// Appends `n` in decimal, right-aligned in `width` columns (`%*lu`);
    /// `width` 0 is `%lu`. Nothing if the number does not fit whole.
    pub fn num_width(&mut self, n: u64, width: usize) -> &mut Line {
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
    pub fn num(&mut self, n: u64) -> &mut Line {
        self.num_width(n, 0)
    }

    /// Appends `n` as `0x`-prefixed lowercase hex (`%#lx`, and `0x0` for 0).
    pub fn hex(&mut self, n: usize) -> &mut Line {
        self.push(&hex(n))
    }

    /// The text so far.
    pub fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// Empties the line for reuse.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Writes the line to standard error in one `write(2)` (a short write
    /// is not retried: these are diagnostics).
    pub fn write_stderr(&self) {
        crate::sys::write_stderr(self.bytes());
    }
}

/// `0x`-prefixed lowercase hex of `n`, in a fixed buffer.
fn hex(n: usize) -> HexBuf {
    let mut out = HexBuf {
        bytes: [0; 18],
        len: 0,
    };
    out.bytes[0] = b'0';
    out.bytes[1] = b'x';
    let digits = ((usize::BITS - n.leading_zeros()).div_ceil(4)).max(1) as usize;
    for i in 0..digits {
        let nibble = (n >> (4 * (digits - 1 - i))) & 0xf;
        out.bytes[2 + i] = b"0123456789abcdef"[nibble];
    }
    out.len = 2 + digits;
    out
}

/// At most 16 hex digits after `0x`; `bytes[..len]` is the text.
struct HexBuf {
    bytes: [u8; 18],
    len: usize,
}

impl core::ops::Deref for HexBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
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

    #[test]
    fn hex_formats_like_printf() {
        let mut l = Line::new();
        l.hex(0)
            .push(b" ")
            .hex(0xdead_beef)
            .push(b" ")
            .hex(usize::MAX);
        assert_eq!(l.bytes(), b"0x0 0xdeadbeef 0xffffffffffffffff");
    }
}
