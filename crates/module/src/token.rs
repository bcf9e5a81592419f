//! Key tokens: how a secret or private key exists outside a module. The header
//! (format version, key type, usage, owner, MKS id) is authenticated as AEAD
//! associated data; the key material is sealed with AES-256-GCM under the MEK of
//! the named master key set.

use postvault_crypto::aead;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::codec;
use crate::error::{Error, Result};
use crate::mks::{MasterKeySet, MksId, MksSlots};
use crate::wire::OpenedUnder;

/// Token format version.
pub const TOKEN_VERSION: u8 = 1;
const AAD_LABEL: &[u8] = b"postvault key token v1";
/// Longest owner label.
pub const MAX_OWNER: usize = 64;

/// What kind of key a token holds.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    /// 32 bytes of symmetric key.
    Secret32,
    /// A PKCS#8 signing key of the given algorithm id.
    Signing(u8),
    /// An X25519 HPKE private key.
    HpkeX25519,
}

/// What a token's key may be used for.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyUsage {
    /// A ceremony test key, used to show that two modules share an MKS.
    Test,
    /// The crypto-card's registration signing key.
    RegistrationSigning,
    /// The crypto-card's registration HPKE key.
    RegistrationHpke,
    /// The crypto-card's checkpoint MAC key.
    CheckpointMac,
    /// A PSD's indicium signing key.
    IndiciumSigning,
    /// A PSD's package MAC key.
    PackageMac,
    /// A PSD's key-encrypting key for the customer's secrets.
    CustomerKek,
    /// A customer's session key (sign-on).
    Session,
    /// A KMS domain master key installed in a PSD (seed 002).
    DomainMaster,
}

/// The authenticated clear part of a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenHeader {
    /// Format version.
    pub version: u8,
    /// Key type.
    pub key_type: KeyType,
    /// Usage.
    pub usage: KeyUsage,
    /// Owner label.
    pub owner: String,
    /// The MKS whose MEK sealed the key.
    pub mks_id: MksId,
}

/// A key token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyToken {
    /// Clear, authenticated header.
    pub header: TokenHeader,
    /// nonce || ciphertext || tag.
    pub sealed: Vec<u8>,
}

impl KeyToken {
    /// Seals key material under an MKS.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an over-long owner; [`Error::Crypto`].
    pub fn seal(
        mks: &MasterKeySet,
        key_type: KeyType,
        usage: KeyUsage,
        owner: &str,
        key: &[u8],
    ) -> Result<Self> {
        if owner.len() > MAX_OWNER {
            return Err(Error::InvalidArgument {
                what: "token owner: at most 64 bytes",
            });
        }
        let header = TokenHeader {
            version: TOKEN_VERSION,
            key_type,
            usage,
            owner: owner.to_owned(),
            mks_id: mks.id,
        };
        let sealed = aead::seal(&mks.mek(), &Self::aad(&header)?, key)?;
        Ok(Self { header, sealed })
    }

    fn aad(header: &TokenHeader) -> Result<Vec<u8>> {
        Ok([AAD_LABEL, &codec::encode(header)?].concat())
    }

    /// Opens the token with whichever MKS slot it names.
    ///
    /// # Errors
    /// [`Error::Token`] if no slot holds its MKS or the token fails authentication.
    pub fn open(&self, slots: &MksSlots) -> Result<(Zeroizing<Vec<u8>>, OpenedUnder)> {
        if self.header.version != TOKEN_VERSION {
            return Err(Error::Token {
                what: "unknown token format version",
            });
        }
        let (mks, under) = [
            (slots.active.as_ref(), OpenedUnder::Active),
            (slots.dormant.as_ref(), OpenedUnder::Dormant),
        ]
        .into_iter()
        .find_map(|(m, u)| m.filter(|m| m.id == self.header.mks_id).map(|m| (m, u)))
        .ok_or(Error::Token {
            what: "sealed under a master key set this module does not hold",
        })?;
        let key =
            aead::open(&mks.mek(), &Self::aad(&self.header)?, &self.sealed).map_err(|_| {
                Error::Token {
                    what: "failed authentication (tampered)",
                }
            })?;
        Ok((Zeroizing::new(key.expose().to_vec()), under))
    }

    /// Encodes the token.
    ///
    /// # Errors
    /// [`Error::Malformed`] (never for a well-formed token).
    pub fn encode(&self) -> Result<Vec<u8>> {
        codec::encode(self)
    }

    /// Decodes a token.
    ///
    /// # Errors
    /// [`Error::Malformed`].
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        codec::decode(bytes, "key token")
    }
}
