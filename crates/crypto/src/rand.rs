//! Randomness from aws-lc's system RNG.

use core::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng};

use crate::{Error, Result, Secret32};

/// Fills `dest` with random bytes.
///
/// # Errors
/// [`Error::Rng`] if the RNG fails.
pub fn fill(dest: &mut [u8]) -> Result<()> {
    aws_lc_rs::rand::fill(dest).map_err(|_| Error::Rng)
}

/// `N` random bytes.
///
/// # Errors
/// [`Error::Rng`] if the RNG fails.
pub fn bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0; N];
    fill(&mut b)?;
    Ok(b)
}

/// A random 32-byte secret.
///
/// # Errors
/// [`Error::Rng`] if the RNG fails.
pub fn secret32() -> Result<Secret32> {
    Secret32::generate()
}

/// aws-lc's RNG behind the `rand_core` traits that `hpke` and `vsss-rs` take.
///
/// Those traits demand an infallible generator. Instead of panicking, a
/// failure is recorded here and [`SystemRng::finish`] turns it into
/// [`Error::Rng`]; whatever the caller computed meanwhile must be discarded.
pub(crate) struct SystemRng {
    failed: bool,
}

impl SystemRng {
    pub(crate) fn new() -> Self {
        Self { failed: false }
    }

    /// Reports whether every request was served.
    pub(crate) fn finish(self) -> Result<()> {
        if self.failed { Err(Error::Rng) } else { Ok(()) }
    }
}

impl TryRng for SystemRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> core::result::Result<u32, Infallible> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> core::result::Result<u64, Infallible> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> core::result::Result<(), Infallible> {
        if fill(dst).is_err() {
            self.failed = true;
        }
        Ok(())
    }
}

impl TryCryptoRng for SystemRng {}
