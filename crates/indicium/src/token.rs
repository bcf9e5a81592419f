//! Vendor and postal tokens (seed 002, DESIGN §6).
//!
//! Every meter holds a domain master key per domain (the vendor's and its
//! post's), installed by the key management system. From it the meter derives
//! a *temporal token key* for each calendar month, and a token is the first
//! [`TOKEN_LEN`] bytes of HMAC-SHA-256 under that key over the indicium bytes
//! before the tokens ([`COVERED_LEN`]). A brass process (holding the master
//! keys) or a tin box (holding only the month's token keys) recomputes it: a
//! symmetric check fast enough for mail sorting, beside the signature that
//! anyone can check.
//!
//! The same master key also yields the *test tokens* that prove, at
//! installation, that the key in the meter is the key in the archive, and the
//! *registration tokens* that bind the meter to its indicia number and country.
//! Each use has its own key derived by HKDF, so no MAC can stand in for another.

use postvault_crypto::mac::MacKey;
use postvault_crypto::{Result, Secret32, kdf};

use crate::date::Date;
use crate::fields::DeviceId;
use crate::indicium::SIGNED_LEN;

/// Length of a token in the indicium.
pub const TOKEN_LEN: usize = 4;
/// The indicium bytes a token covers: every field before the vendor token.
pub const COVERED_LEN: usize = 43;
/// Length of the test tokens and of a registration token.
pub const TEST_TOKENS_LEN: usize = 16;

const SALT: &[u8] = b"postvault kms v1";
/// The test pattern (seed 002): two preformatted 64-bit values shared by the
/// key management system and every meter.
pub const TEST_PATTERN: [[u8; 8]; 2] = [
    [0x50, 0x56, 0x2D, 0x54, 0x45, 0x53, 0x54, 0x31],
    [0xA5, 0x5A, 0x0F, 0xF0, 0xC3, 0x3C, 0x96, 0x69],
];

/// A token key's period: one calendar month (`year * 100 + month`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period(pub u32);

impl Period {
    /// The month containing `date`.
    #[must_use]
    pub fn of(date: Date) -> Self {
        let (y, m, _) = date.ymd();
        Self(u32::try_from(y).unwrap_or(0) * 100 + u32::from(m))
    }
}

impl core::fmt::Display for Period {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:04}-{:02}", self.0 / 100, self.0 % 100)
    }
}

/// The temporal token key of one meter in one domain for one month.
///
/// # Errors
/// Only if HKDF refuses (it does not for these lengths).
pub fn token_key(
    master: &Secret32,
    domain: &str,
    device: DeviceId,
    period: Period,
) -> Result<Secret32> {
    kdf::derive_secret32(
        SALT,
        master.expose(),
        &[
            b"token key",
            &[0],
            domain.as_bytes(),
            &[0],
            &device.to_bytes(),
            &period.0.to_be_bytes(),
        ],
    )
}

/// A token key ready to make and check tokens.
#[derive(Debug)]
pub struct TokenKey(MacKey);

impl TokenKey {
    /// Prepares a temporal token key.
    #[must_use]
    pub fn new(key: &Secret32) -> Self {
        Self(MacKey::new(key))
    }

    /// The token over the covered bytes of an indicium.
    #[must_use]
    pub fn token(&self, covered: &[u8; COVERED_LEN]) -> [u8; TOKEN_LEN] {
        let [a, b, c, d, ..] = self.0.tag(covered);
        [a, b, c, d]
    }

    /// Checks a token, in constant time.
    ///
    /// # Errors
    /// [`postvault_crypto::Error::VerificationFailed`] if it does not match.
    pub fn verify(&self, covered: &[u8; COVERED_LEN], token: &[u8; TOKEN_LEN]) -> Result<()> {
        self.0.verify_truncated(covered, token)
    }
}

/// The bytes a token covers, from an indicium's signed part.
#[must_use]
pub fn covered(signed: &[u8; SIGNED_LEN]) -> [u8; COVERED_LEN] {
    let mut out = [0; COVERED_LEN];
    out.copy_from_slice(signed.get(..COVERED_LEN).unwrap_or(&[0; COVERED_LEN]));
    out
}

fn purpose_key(master: &Secret32, purpose: &[u8], domain: &str) -> Result<MacKey> {
    let k = kdf::derive_secret32(SALT, master.expose(), &[purpose, &[0], domain.as_bytes()])?;
    Ok(MacKey::new(&k))
}

/// The test tokens: the test pattern MAC'd under the master key (seed 002:
/// "encrypted with the target domain master key"), 8 bytes per pattern value.
///
/// # Errors
/// Only if HKDF refuses.
pub fn test_tokens(master: &Secret32, domain: &str) -> Result<[u8; TEST_TOKENS_LEN]> {
    let key = purpose_key(master, b"test tokens", domain)?;
    let mut out = [0; TEST_TOKENS_LEN];
    for (chunk, pattern) in out.chunks_exact_mut(8).zip(TEST_PATTERN.iter()) {
        let tag = key.tag(pattern);
        chunk.copy_from_slice(tag.get(..8).unwrap_or(&[0; 8]));
    }
    Ok(out)
}

/// What a meter reports at key registration (message MR1): its manufacturing
/// sequence number (the device id), the indicia number it was given, the
/// country it now belongs to, and the date.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationFacts {
    /// The meter.
    pub device: DeviceId,
    /// Indicia serial number given at registration.
    pub indicia_number: String,
    /// Country of registration (ISO 3166 alpha-2).
    pub country: String,
    /// Meter registration date.
    pub date: Date,
}

impl RegistrationFacts {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.extend_from_slice(&self.device.to_bytes());
        for s in [&self.indicia_number, &self.country] {
            out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(&self.date.days().to_be_bytes());
        out
    }
}

/// The registration token: the facts MAC'd under the master key.
///
/// # Errors
/// Only if HKDF refuses.
pub fn registration_token(
    master: &Secret32,
    domain: &str,
    facts: &RegistrationFacts,
) -> Result<[u8; TEST_TOKENS_LEN]> {
    let key = purpose_key(master, b"registration", domain)?;
    let tag = key.tag(&facts.encode());
    let mut out = [0; TEST_TOKENS_LEN];
    out.copy_from_slice(tag.get(..TEST_TOKENS_LEN).unwrap_or(&[0; TEST_TOKENS_LEN]));
    Ok(out)
}

/// What the vault's registration signing key signs to vouch for the meter
/// key (the vendor key) that steel boxes seal domain master keys to.
#[must_use]
pub fn meter_key_message(meter_key: &[u8; 32]) -> Vec<u8> {
    [b"postvault vendor key v1".as_slice(), meter_key].concat()
}

/// The HPKE `info` under which a steel box seals a domain master key to a
/// meter (message MI5).
pub const INSTALL_INFO: &[u8] = b"postvault kms install key v1";

/// The HPKE associated data of message MI5: it binds the sealed key to its
/// domain, key id, meter and role, so it opens for that installation only.
#[must_use]
pub fn install_aad(domain: &str, key_id: u64, device: [u8; 6], role: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(domain.len() + 16);
    out.extend_from_slice(domain.as_bytes());
    out.push(0);
    out.extend_from_slice(&key_id.to_be_bytes());
    out.extend_from_slice(&device);
    out.push(role);
    out
}
