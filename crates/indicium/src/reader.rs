//! The checked reader every parser in this crate goes through.

use crate::{Error, Result};

/// Reads big-endian fields from a byte slice; short input is an error, never a panic.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
    needed: usize,
    got: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`, which the layout expects to be `needed` bytes long
    /// (used only to word the error).
    pub(crate) fn new(bytes: &'a [u8], needed: usize) -> Self {
        Self {
            rest: bytes,
            needed,
            got: bytes.len(),
        }
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let (head, tail) = self.rest.split_first_chunk::<N>().ok_or(Error::Truncated {
            needed: self.needed,
            got: self.got,
        })?;
        self.rest = tail;
        Ok(*head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        let [b] = self.array::<1>()?;
        Ok(b)
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        self.array::<2>().map(u16::from_be_bytes)
    }

    pub(crate) fn u24(&mut self) -> Result<u32> {
        let [a, b, c] = self.array::<3>()?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        self.array::<4>().map(u32::from_be_bytes)
    }

    pub(crate) fn u40(&mut self) -> Result<u64> {
        let [a, b, c, d, e] = self.array::<5>()?;
        Ok(u64::from_be_bytes([0, 0, 0, a, b, c, d, e]))
    }

    /// Succeeds only if every byte was read.
    pub(crate) fn finish(self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingBytes {
                count: self.rest.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_and_rejects_short_and_trailing_input() {
        let bytes = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
        let mut r = Reader::new(&bytes, 16);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(0x0203));
        assert_eq!(r.u24(), Ok(0x04_0506));
        assert_eq!(r.u40(), Ok(0x07_0809_0a0b));
        assert_eq!(r.u32(), Ok(0x0c0d_0e0f));
        assert!(matches!(
            r.u16(),
            Err(Error::Truncated {
                needed: 16,
                got: 16
            })
        ));
        let mut r = Reader::new(&bytes, 16);
        assert!(r.array::<15>().is_ok());
        assert_eq!(r.finish(), Err(Error::TrailingBytes { count: 1 }));
    }
}
