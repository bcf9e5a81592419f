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

/// Fills `dest` from two independent generators combined by XOR, as the key
/// management system's key generators do (seed 002): the operating system's
/// randomness and aws-lc's DRBG. Each source's output passes its own health
/// tests first ([`HealthTest`]), so one failing source is caught rather than
/// silently masked; if either fails, nothing is returned.
///
/// # Errors
/// [`Error::Rng`] if a source fails or fails its health test.
pub fn combined_fill(dest: &mut [u8]) -> Result<()> {
    let mut os = zeroize::Zeroizing::new(vec![0u8; dest.len()]);
    getrandom::fill(&mut os).map_err(|_| Error::Rng)?;
    let mut drbg = zeroize::Zeroizing::new(vec![0u8; dest.len()]);
    fill(&mut drbg)?;
    health(&OS_HEALTH, &os)?;
    health(&DRBG_HEALTH, &drbg)?;
    for ((d, a), b) in dest.iter_mut().zip(os.iter()).zip(drbg.iter()) {
        *d = a ^ b;
    }
    Ok(())
}

/// A random 32-byte secret from [`combined_fill`].
///
/// # Errors
/// [`Error::Rng`] if a source fails or fails its health test.
pub fn combined_secret32() -> Result<Secret32> {
    let mut b = zeroize::Zeroizing::new([0u8; 32]);
    combined_fill(b.as_mut())?;
    Ok(Secret32::from_bytes(*b))
}

/// Health tests on one source's output (after SP 800-90B §4.4 and the
/// FIPS 140-2 continuous test):
/// - continuous test: the first 16 bytes of a draw never repeat the previous draw's;
/// - repetition count: no byte value repeats [`REPETITION_CUTOFF`] times in a row;
/// - proportion: no byte value fills more than half of a draw of 64 bytes or more.
pub struct HealthTest {
    last: std::sync::Mutex<Option<[u8; 16]>>,
}

/// A run of this many equal bytes fails the repetition count test (for a good
/// source, a chance of about 2^-40 per position).
pub const REPETITION_CUTOFF: usize = 6;

static OS_HEALTH: HealthTest = HealthTest::new();
static DRBG_HEALTH: HealthTest = HealthTest::new();

impl HealthTest {
    /// A test with no previous draw.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            last: std::sync::Mutex::new(None),
        }
    }

    /// Checks one draw.
    ///
    /// # Errors
    /// [`Error::Rng`] if the draw fails a test.
    pub fn check(&self, draw: &[u8]) -> Result<()> {
        health(self, draw)
    }
}

impl Default for HealthTest {
    fn default() -> Self {
        Self::new()
    }
}

fn health(test: &HealthTest, draw: &[u8]) -> Result<()> {
    let mut run = 0usize;
    let mut prev: Option<u8> = None;
    let mut counts = [0usize; 256];
    for &b in draw {
        run = if prev == Some(b) { run + 1 } else { 1 };
        if run >= REPETITION_CUTOFF {
            return Err(Error::Rng);
        }
        prev = Some(b);
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c += 1;
        }
    }
    if draw.len() >= 64 && counts.iter().any(|&c| c * 2 > draw.len()) {
        return Err(Error::Rng);
    }
    if let Some(head) = draw.get(..16) {
        let mut last = test.last.lock().map_err(|_| Error::Rng)?;
        if last.as_ref().is_some_and(|l| l.as_slice() == head) {
            return Err(Error::Rng);
        }
        let mut h = [0u8; 16];
        h.copy_from_slice(head);
        *last = Some(h);
    }
    Ok(())
}
