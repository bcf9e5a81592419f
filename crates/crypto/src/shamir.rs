//! Shamir secret sharing over GF(2^8), byte by byte, via `vsss-rs`.

use vsss_rs::Gf256;
use zeroize::Zeroizing;

use crate::rand::SystemRng;
use crate::{Error, Result, SecretBytes};

/// One share: `id` is the x-coordinate (1..=255), `value` the y-bytes, as long as the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    /// The x-coordinate, never 0.
    pub id: u8,
    /// One y-coordinate per secret byte.
    pub value: SecretBytes,
}

fn shares_error(reason: &'static str) -> Error {
    Error::Shares { reason }
}

/// Splits `secret` into `shares` shares (ids 1..=`shares`), any `threshold` of which recover it.
///
/// # Errors
/// [`Error::Shares`] unless 2 <= `threshold` <= `shares` and `secret` is non-empty;
/// [`Error::Rng`] if the RNG fails.
pub fn split(secret: &[u8], threshold: u8, shares: u8) -> Result<Vec<Share>> {
    if threshold < 2 {
        return Err(shares_error("threshold must be at least 2"));
    }
    if shares < threshold {
        return Err(shares_error("fewer shares than the threshold"));
    }
    if secret.is_empty() {
        return Err(shares_error("empty secret"));
    }
    let mut rng = SystemRng::new();
    let raw = Gf256::split_bytes(
        usize::from(threshold),
        usize::from(shares),
        secret,
        &mut rng,
    )
    .map(Zeroizing::new)
    .map_err(|_| shares_error("splitting failed"));
    rng.finish()?;
    raw?.iter()
        .map(|share| match share.split_first() {
            Some((&id, value)) if id != 0 => Ok(Share {
                id,
                value: SecretBytes::new(value.to_vec()),
            }),
            _ => Err(shares_error("splitting produced a malformed share")),
        })
        .collect()
}

/// Recovers the secret from the first `threshold` of `shares`.
///
/// # Errors
/// [`Error::Shares`] if `threshold` < 2, fewer than `threshold` shares are given, or
/// the given shares have a zero id, duplicate ids, empty values or different lengths.
pub fn combine(shares: &[Share], threshold: u8) -> Result<SecretBytes> {
    if threshold < 2 {
        return Err(shares_error("threshold must be at least 2"));
    }
    let used = shares
        .get(..usize::from(threshold))
        .ok_or_else(|| shares_error("fewer shares than the threshold"))?;
    let len = shares.first().map_or(0, |s| s.value.len());
    for (i, share) in shares.iter().enumerate() {
        if share.id == 0 {
            return Err(shares_error("share id 0"));
        }
        if share.value.is_empty() || share.value.len() != len {
            return Err(shares_error("shares of different or zero lengths"));
        }
        if shares.iter().skip(i + 1).any(|other| other.id == share.id) {
            return Err(shares_error("duplicate share ids"));
        }
    }
    let raw: Zeroizing<Vec<Vec<u8>>> = Zeroizing::new(
        used.iter()
            .map(|s| [core::slice::from_ref(&s.id), s.value.expose()].concat())
            .collect(),
    );
    Gf256::combine_bytes(raw.as_slice())
        .map(SecretBytes::new)
        .map_err(|_| shares_error("combining failed"))
}
