//! HPKE (RFC 9180) in base mode with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256
//! and AES-256-GCM, single-shot.

use core::fmt;

use ::hpke::aead::AesGcm256;
use ::hpke::kdf::HkdfSha256;
use ::hpke::kem::X25519HkdfSha256;
use ::hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};

use crate::rand::SystemRng;
use crate::{Error, Result, Secret32, SecretBytes};

type KemPrivateKey = <X25519HkdfSha256 as Kem>::PrivateKey;
type KemPublicKey = <X25519HkdfSha256 as Kem>::PublicKey;
type EncappedKey = <X25519HkdfSha256 as Kem>::EncappedKey;

/// Length of the encapsulated key (`enc`) that starts every sealed message.
pub const ENC_LEN: usize = 32;
/// Length of the AEAD tag at the end of every sealed message.
pub const TAG_LEN: usize = 16;

/// An X25519 private key for HPKE (the module's transport key).
pub struct PrivateKey(Secret32);

impl PrivateKey {
    /// A fresh key pair, checked by sealing and opening a probe message.
    ///
    /// # Errors
    /// [`Error::Rng`] if the RNG fails; [`Error::SelfTest`] if the probe does not round-trip.
    pub fn generate() -> Result<(PrivateKey, PublicKey)> {
        const INFO: &[u8] = b"postvault-crypto hpke pairwise test";
        const PROBE: &[u8] = b"probe";
        let sk = Self(Secret32::generate()?);
        let pk = sk.public_key()?;
        let sealed = seal(&pk, INFO, INFO, PROBE)?;
        match open(&sk, INFO, INFO, &sealed) {
            Ok(pt) if pt.expose() == PROBE => Ok((sk, pk)),
            _ => Err(Error::SelfTest {
                primitive: "HPKE pairwise consistency",
            }),
        }
    }

    /// Wraps stored private key bytes (as returned by [`PrivateKey::secret`]).
    ///
    /// # Errors
    /// None for X25519 (every 32-byte string is a key); kept fallible for other KEMs.
    pub fn from_secret(s: Secret32) -> Result<Self> {
        Ok(Self(s))
    }

    /// RFC 9180 `DeriveKeyPair(ikm)`: a deterministic key from input keying material
    /// of at least 32 bytes.
    ///
    /// # Errors
    /// [`Error::Malformed`] if `ikm` is shorter than 32 bytes.
    pub fn derive(ikm: &[u8]) -> Result<Self> {
        if ikm.len() < 32 {
            return Err(Error::Malformed {
                what: "HPKE input keying material",
            });
        }
        let (sk, _) = X25519HkdfSha256::derive_keypair(ikm);
        let mut key = Secret32::from_bytes([0; 32]);
        sk.write_exact(key.expose_mut());
        Ok(Self(key))
    }

    /// The private key bytes, for sealing into non-volatile memory only.
    #[must_use]
    pub fn secret(&self) -> &Secret32 {
        &self.0
    }

    /// The matching public key.
    ///
    /// # Errors
    /// None in practice; see [`PrivateKey::from_secret`].
    pub fn public_key(&self) -> Result<PublicKey> {
        let pk = X25519HkdfSha256::sk_to_pk(&self.kem_key()?);
        PublicKey::from_slice(&pk.to_bytes())
    }

    fn kem_key(&self) -> Result<KemPrivateKey> {
        KemPrivateKey::from_bytes(self.0.expose()).map_err(|_| Error::Malformed {
            what: "HPKE private key",
        })
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("hpke::PrivateKey([redacted])")
    }
}

/// An X25519 public key for HPKE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Parses 32 bytes.
    ///
    /// # Errors
    /// [`Error::Malformed`] if `b` is not 32 bytes long.
    pub fn from_slice(b: &[u8]) -> Result<Self> {
        b.try_into().map(Self).map_err(|_| Error::Malformed {
            what: "HPKE public key",
        })
    }

    /// The key bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Encrypts `plaintext` to `pk`, binding `info` (key schedule) and `aad`.
/// Output: `enc (32 bytes) || ciphertext || tag`.
///
/// # Errors
/// [`Error::Rng`] if the RNG fails; [`Error::WeakSharedSecret`] if `pk` is a
/// low-order point; [`Error::Internal`] if sealing fails otherwise.
pub fn seal(pk: &PublicKey, info: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let pk = KemPublicKey::from_bytes(&pk.0).map_err(|_| Error::Malformed {
        what: "HPKE public key",
    })?;
    let mut rng = SystemRng::new();
    let sealed = ::hpke::single_shot_seal_with_rng::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
        &OpModeS::Base,
        &pk,
        info,
        plaintext,
        aad,
        &mut rng,
    );
    rng.finish()?;
    let (enc, ct) = sealed.map_err(|e| match e {
        ::hpke::HpkeError::EncapError => Error::WeakSharedSecret,
        _ => Error::Internal { what: "HPKE seal" },
    })?;
    let mut out = enc.to_bytes().to_vec();
    out.extend(ct);
    Ok(out)
}

/// Decrypts `enc || ciphertext || tag` as produced by [`seal`].
///
/// # Errors
/// [`Error::Malformed`] if `sealed` is shorter than `enc` and a tag;
/// [`Error::VerificationFailed`] on a wrong key, `info` or `aad`, or any tampering.
pub fn open(sk: &PrivateKey, info: &[u8], aad: &[u8], sealed: &[u8]) -> Result<SecretBytes> {
    let malformed = Error::Malformed {
        what: "HPKE ciphertext",
    };
    let (enc, ct) = sealed
        .split_first_chunk::<ENC_LEN>()
        .ok_or_else(|| malformed.clone())?;
    if ct.len() < TAG_LEN {
        return Err(malformed);
    }
    let enc = EncappedKey::from_bytes(enc).map_err(|_| Error::VerificationFailed)?;
    ::hpke::single_shot_open::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        &sk.kem_key()?,
        &enc,
        info,
        ct,
        aad,
    )
    .map(SecretBytes::new)
    .map_err(|_| Error::VerificationFailed)
}
