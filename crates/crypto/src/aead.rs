//! AES-256-GCM with 96-bit nonces and 128-bit tags.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::{Error, Result, Secret32, SecretBytes};

/// Nonce length in bytes.
pub const NONCE_LEN: usize = 12;
/// Tag length in bytes.
pub const TAG_LEN: usize = 16;

fn key(k: &Secret32) -> Result<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, k.expose())
        .map(LessSafeKey::new)
        .map_err(|_| Error::Internal {
            what: "AES-256-GCM key",
        })
}

/// Encrypts under a fresh random nonce. Output: `nonce || ciphertext || tag`.
///
/// # Errors
/// [`Error::Rng`] if no nonce can be drawn; [`Error::Internal`] if aws-lc refuses.
pub fn seal(key: &Secret32, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let nonce = crate::rand::bytes::<NONCE_LEN>()?;
    let mut out = nonce.to_vec();
    out.extend(seal_with_nonce(key, &nonce, aad, plaintext)?);
    Ok(out)
}

/// Decrypts `nonce || ciphertext || tag` as produced by [`seal`].
///
/// # Errors
/// [`Error::Malformed`] if `sealed` is shorter than a nonce and a tag;
/// [`Error::VerificationFailed`] on a wrong key, wrong `aad` or any tampering.
pub fn open(key: &Secret32, aad: &[u8], sealed: &[u8]) -> Result<SecretBytes> {
    let (nonce, ct_and_tag) = sealed
        .split_first_chunk::<NONCE_LEN>()
        .ok_or(Error::Malformed {
            what: "AEAD ciphertext",
        })?;
    open_with_nonce(key, nonce, aad, ct_and_tag)
}

/// Encrypts with an explicit nonce, which must never repeat under one key.
/// Output: `ciphertext || tag`.
///
/// # Errors
/// [`Error::Internal`] if aws-lc refuses (e.g. a plaintext beyond GCM's limit).
pub fn seal_with_nonce(
    key: &Secret32,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let mut in_out = plaintext.to_vec();
    self::key(key)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad),
            &mut in_out,
        )
        .map_err(|_| Error::Internal {
            what: "AES-256-GCM seal",
        })?;
    Ok(in_out)
}

/// Decrypts `ciphertext || tag` under an explicit nonce.
///
/// # Errors
/// [`Error::Malformed`] if the input is shorter than a tag;
/// [`Error::VerificationFailed`] on a wrong key, nonce or `aad`, or any tampering.
pub fn open_with_nonce(
    key: &Secret32,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ct_and_tag: &[u8],
) -> Result<SecretBytes> {
    if ct_and_tag.len() < TAG_LEN {
        return Err(Error::Malformed {
            what: "AEAD ciphertext",
        });
    }
    let mut buf = Zeroizing::new(ct_and_tag.to_vec());
    let len = self::key(key)?
        .open_in_place(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad),
            &mut buf,
        )
        .map_err(|_| Error::VerificationFailed)?
        .len();
    buf.truncate(len);
    Ok(SecretBytes::new(core::mem::take(&mut *buf)))
}
