//! HKDF-SHA-256 (RFC 5869).

use aws_lc_rs::hkdf;

use crate::{Error, Result, Secret32};

/// Largest output HKDF-SHA-256 can produce (255 blocks of 32 bytes).
pub const MAX_OUTPUT_LEN: usize = 255 * 32;

/// Output length requested from aws-lc's `Prk::expand`.
struct OutputLen(usize);

impl hkdf::KeyType for OutputLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA-256 extract-then-expand, filling `out`; `info` parts are concatenated.
///
/// # Errors
/// [`Error::Malformed`] if `out` is empty or longer than [`MAX_OUTPUT_LEN`].
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) -> Result<()> {
    let malformed = Error::Malformed {
        what: "HKDF output length",
    };
    if out.is_empty() || out.len() > MAX_OUTPUT_LEN {
        return Err(malformed);
    }
    hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
        .extract(ikm)
        .expand(info, OutputLen(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| malformed)
}

/// HKDF-SHA-256 producing a 32-byte key.
///
/// # Errors
/// None in practice; the signature matches [`hkdf_sha256`].
pub fn derive_secret32(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Result<Secret32> {
    let mut key = Secret32::from_bytes([0; 32]);
    hkdf_sha256(salt, ikm, info, key.expose_mut())?;
    Ok(key)
}
