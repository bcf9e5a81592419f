//! Signatures: ECDSA P-256 with SHA-256 (raw `r || s`, 64 bytes) and Ed25519.

use core::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair, ParsedPublicKey, UnparsedPublicKey, VerificationAlgorithm,
};

use crate::{Error, Result, SecretBytes};

/// Length of every signature produced or accepted here.
pub const SIGNATURE_LEN: usize = 64;

/// A signature algorithm, with a stable one-byte id for serialized forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SigAlg {
    /// ECDSA over P-256 with SHA-256; signatures are raw `r || s`.
    EcdsaP256Sha256 = 1,
    /// Ed25519 (RFC 8032).
    Ed25519 = 2,
}

impl SigAlg {
    /// The stable id.
    #[must_use]
    pub fn id(self) -> u8 {
        self as u8
    }

    /// The algorithm with id `id`.
    ///
    /// # Errors
    /// [`Error::Malformed`] for an unknown id.
    pub fn from_id(id: u8) -> Result<Self> {
        match id {
            1 => Ok(Self::EcdsaP256Sha256),
            2 => Ok(Self::Ed25519),
            _ => Err(Error::Malformed {
                what: "signature algorithm id",
            }),
        }
    }

    /// Signature length in bytes (64 for both).
    #[must_use]
    pub fn signature_len(self) -> usize {
        SIGNATURE_LEN
    }

    /// A short human-readable name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::EcdsaP256Sha256 => "ECDSA-P256-SHA256",
            Self::Ed25519 => "Ed25519",
        }
    }

    fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Self::EcdsaP256Sha256 => &ECDSA_P256_SHA256_FIXED,
            Self::Ed25519 => &signature::ED25519,
        }
    }
}

enum Inner {
    P256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private signing key.
pub struct SigningKey {
    alg: SigAlg,
    inner: Inner,
}

impl SigningKey {
    /// Generates a key, then signs and verifies a fixed message with it.
    ///
    /// # Errors
    /// [`Error::Internal`] if generation fails; [`Error::SelfTest`] if the
    /// pairwise-consistency test fails.
    pub fn generate(alg: SigAlg) -> Result<Self> {
        let internal = Error::Internal {
            what: "signing key generation",
        };
        let inner = match alg {
            SigAlg::EcdsaP256Sha256 => Inner::P256(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| internal)?,
            ),
            SigAlg::Ed25519 => Inner::Ed25519(Ed25519KeyPair::generate().map_err(|_| internal)?),
        };
        let key = Self { alg, inner };
        key.pairwise_test()?;
        Ok(key)
    }

    fn pairwise_test(&self) -> Result<()> {
        const PROBE: &[u8] = b"postvault-crypto pairwise consistency test";
        self.sign(PROBE)
            .and_then(|sig| self.public_key().verify(PROBE, &sig))
            .map_err(|_| Error::SelfTest {
                primitive: "signature pairwise consistency",
            })
    }

    /// Parses an unencrypted PKCS#8 document (v1 or v2), e.g. one from [`SigningKey::to_pkcs8`].
    ///
    /// # Errors
    /// [`Error::Malformed`] if `der` is not a valid `alg` private key.
    pub fn from_pkcs8(alg: SigAlg, der: &[u8]) -> Result<Self> {
        let malformed = Error::Malformed {
            what: "PKCS#8 private key",
        };
        let inner = match alg {
            SigAlg::EcdsaP256Sha256 => Inner::P256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| malformed)?,
            ),
            SigAlg::Ed25519 => {
                Inner::Ed25519(Ed25519KeyPair::from_pkcs8(der).map_err(|_| malformed)?)
            }
        };
        Ok(Self { alg, inner })
    }

    /// Serializes the key as PKCS#8 (v1 for P-256, v2 with the public key for Ed25519).
    ///
    /// # Errors
    /// [`Error::Internal`] if aws-lc cannot serialize the key.
    pub fn to_pkcs8(&self) -> Result<SecretBytes> {
        let doc = match &self.inner {
            Inner::P256(k) => k.to_pkcs8v1(),
            Inner::Ed25519(k) => k.to_pkcs8(),
        }
        .map_err(|_| Error::Internal {
            what: "PKCS#8 serialization",
        })?;
        Ok(SecretBytes::new(doc.as_ref().to_vec()))
    }

    /// The algorithm.
    #[must_use]
    pub fn alg(&self) -> SigAlg {
        self.alg
    }

    /// The matching public key.
    #[must_use]
    pub fn public_key(&self) -> PublicKey {
        let bytes = match &self.inner {
            Inner::P256(k) => k.public_key().as_ref().to_vec(),
            Inner::Ed25519(k) => k.public_key().as_ref().to_vec(),
        };
        PublicKey {
            alg: self.alg,
            bytes,
        }
    }

    /// Signs `msg` (ECDSA hashes it with SHA-256 and uses a random nonce; Ed25519 is deterministic).
    ///
    /// # Errors
    /// [`Error::Internal`] if aws-lc fails to sign.
    pub fn sign(&self, msg: &[u8]) -> Result<Signature> {
        let internal = Error::Internal { what: "signing" };
        let sig = match &self.inner {
            Inner::P256(k) => k.sign(&SystemRandom::new(), msg),
            Inner::Ed25519(k) => k.try_sign(msg),
        }
        .map_err(|_| internal.clone())?;
        Signature::from_bytes(self.alg, sig.as_ref()).map_err(|_| internal)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey {{ alg: {:?}, key: [redacted] }}", self.alg)
    }
}

/// A public verification key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    alg: SigAlg,
    bytes: Vec<u8>,
}

impl PublicKey {
    /// P-256: a 65-byte uncompressed SEC1 point, checked to be on the curve. Ed25519: 32 bytes.
    ///
    /// # Errors
    /// [`Error::Malformed`] for any other length or form, or a point not on the curve.
    pub fn from_bytes(alg: SigAlg, bytes: &[u8]) -> Result<Self> {
        let well_formed = match alg {
            SigAlg::EcdsaP256Sha256 => bytes.len() == 65 && bytes.first() == Some(&0x04),
            SigAlg::Ed25519 => bytes.len() == 32,
        };
        if !well_formed || ParsedPublicKey::new(alg.verification(), bytes).is_err() {
            return Err(Error::Malformed { what: "public key" });
        }
        Ok(Self {
            alg,
            bytes: bytes.to_vec(),
        })
    }

    /// The algorithm.
    #[must_use]
    pub fn alg(&self) -> SigAlg {
        self.alg
    }

    /// The encoded key, as accepted by [`PublicKey::from_bytes`].
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Checks `sig` over `msg`.
    ///
    /// # Errors
    /// [`Error::VerificationFailed`] on a bad signature or an algorithm mismatch.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<()> {
        if sig.alg != self.alg {
            return Err(Error::VerificationFailed);
        }
        UnparsedPublicKey::new(self.alg.verification(), &self.bytes)
            .verify(msg, &sig.bytes)
            .map_err(|_| Error::VerificationFailed)
    }
}

/// A signature (P-256: raw `r || s`; Ed25519: `R || S`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    alg: SigAlg,
    bytes: [u8; SIGNATURE_LEN],
}

impl Signature {
    /// Wraps 64 signature bytes. Their validity is only checked by [`PublicKey::verify`].
    ///
    /// # Errors
    /// [`Error::Malformed`] if `bytes` is not 64 bytes long.
    pub fn from_bytes(alg: SigAlg, bytes: &[u8]) -> Result<Self> {
        let bytes = bytes
            .try_into()
            .map_err(|_| Error::Malformed { what: "signature" })?;
        Ok(Self { alg, bytes })
    }

    /// The algorithm.
    #[must_use]
    pub fn alg(&self) -> SigAlg {
        self.alg
    }

    /// The 64 signature bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}
