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

/// An HMAC-SHA-256 key with its inner and outer pads computed once, for MACs
/// taken many times under the same key (token verification at sorting speed).
pub struct MacKey(hmac::Key);

impl MacKey {
    /// Prepares `key`.
    #[must_use]
    pub fn new(key: &Secret32) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, key.expose()))
    }

    /// HMAC-SHA-256 of `data`.
    #[must_use]
    pub fn tag(&self, data: &[u8]) -> [u8; 32] {
        to_array(hmac::sign(&self.0, data).as_ref())
    }

    /// Checks that `tag` is the first `tag.len()` bytes (at least 4) of the
    /// HMAC of `data`, in constant time: a truncated MAC, as in a token.
    ///
    /// # Errors
    /// [`Error::VerificationFailed`] on a mismatch or a tag shorter than 4 or
    /// longer than [`TAG_LEN`] bytes.
    pub fn verify_truncated(&self, data: &[u8], tag: &[u8]) -> Result<()> {
        let full = self.tag(data);
        match full.get(..tag.len()) {
            Some(expected) if tag.len() >= 4 && bool::from(expected.ct_eq(tag)) => Ok(()),
            _ => Err(Error::VerificationFailed),
        }
    }
}

impl core::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MacKey(..)")
    }
}
