//! HMAC-SHA-256.

use aws_lc_rs::hmac;
use subtle::ConstantTimeEq;

use crate::{Error, Result, Secret32, hash::to_array};

/// Length of an HMAC-SHA-256 tag.
pub const TAG_LEN: usize = 32;

/// HMAC-SHA-256 under `key` of the concatenation of `parts`.
#[must_use]
pub fn hmac_sha256(key: &Secret32, parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, key.expose()));
    for part in parts {
        ctx.update(part);
    }
    to_array(ctx.sign().as_ref())
}

/// Checks `tag` against the HMAC-SHA-256 of `parts`, in constant time.
///
/// # Errors
/// [`Error::VerificationFailed`] on a mismatch or a tag that is not [`TAG_LEN`] bytes.
pub fn verify_hmac_sha256(key: &Secret32, parts: &[&[u8]], tag: &[u8]) -> Result<()> {
    let expected = hmac_sha256(key, parts);
    if tag.len() == TAG_LEN && bool::from(expected.as_slice().ct_eq(tag)) {
        Ok(())
    } else {
        Err(Error::VerificationFailed)
    }
}

/// HMAC-SHA-256 with a raw key of any length (used by the RFC 4231 known-answer tests).
#[must_use]
pub fn hmac_sha256_raw(key: &[u8], data: &[u8]) -> [u8; 32] {
    to_array(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data).as_ref())
}
