//! Ephemeral X25519 key agreement (RFC 7748).

use core::fmt;

use aws_lc_rs::agreement::{self, UnparsedPublicKey, X25519};
use subtle::ConstantTimeEq;

use crate::{Error, Result, Secret32};

/// Length of an X25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// An X25519 private key, consumed by the one agreement it takes part in.
pub struct EphemeralSecret(agreement::PrivateKey);

impl EphemeralSecret {
    /// A fresh random private key.
    ///
    /// # Errors
    /// [`Error::Internal`] if aws-lc cannot generate a key.
    pub fn generate() -> Result<Self> {
        agreement::PrivateKey::generate(&X25519)
            .map(Self)
            .map_err(|_| Error::Internal {
                what: "X25519 key generation",
            })
    }

    /// A private key with the given scalar bytes (clamped by X25519 itself).
    /// For known-answer tests and keys derived deterministically elsewhere.
    ///
    /// # Errors
    /// [`Error::Malformed`] if aws-lc rejects the scalar.
    pub fn from_secret(secret: &Secret32) -> Result<Self> {
        agreement::PrivateKey::from_private_key(&X25519, secret.expose())
            .map(Self)
            .map_err(|_| Error::Malformed {
                what: "X25519 private key",
            })
    }

    /// The public key (u-coordinate) to send to the peer.
    ///
    /// # Errors
    /// [`Error::Internal`] if aws-lc cannot compute it.
    pub fn public_key(&self) -> Result<[u8; PUBLIC_KEY_LEN]> {
        let internal = Error::Internal {
            what: "X25519 public key",
        };
        let public = self.0.compute_public_key().map_err(|_| internal.clone())?;
        public.as_ref().try_into().map_err(|_| internal)
    }

    /// Computes the shared secret with `peer_public` and consumes this secret.
    ///
    /// # Errors
    /// [`Error::Malformed`] if `peer_public` is not 32 bytes;
    /// [`Error::WeakSharedSecret`] if the result is all zero (a low-order peer point,
    /// which aws-lc reports as a failed agreement).
    pub fn agree(self, peer_public: &[u8]) -> Result<Secret32> {
        if peer_public.len() != PUBLIC_KEY_LEN {
            return Err(Error::Malformed {
                what: "X25519 public key",
            });
        }
        agreement::agree(
            &self.0,
            UnparsedPublicKey::new(&X25519, peer_public),
            Error::WeakSharedSecret,
            |shared| {
                let shared = Secret32::from_slice(shared)?;
                if bool::from(shared.expose().ct_eq(&[0; 32])) {
                    Err(Error::WeakSharedSecret)
                } else {
                    Ok(shared)
                }
            },
        )
    }
}

impl fmt::Debug for EphemeralSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EphemeralSecret([redacted])")
    }
}
