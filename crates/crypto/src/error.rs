//! The one error type of this crate.

/// Why an operation failed. Messages never contain secret material.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// A MAC, signature, AEAD tag or HPKE open failed. Deliberately opaque.
    #[error("verification failed")]
    VerificationFailed,
    /// Bytes that should be a key/public key/signature have the wrong length or form.
    #[error("malformed {what}")]
    Malformed {
        /// What was malformed.
        what: &'static str,
    },
    /// The random number generator failed.
    #[error("random number generator failed")]
    Rng,
    /// X25519 produced the all-zero shared secret (low-order peer point).
    #[error("weak X25519 shared secret (low-order peer point)")]
    WeakSharedSecret,
    /// Shamir: fewer shares than the threshold, duplicate or zero share ids,
    /// threshold < 2, shares < threshold, shares of different lengths.
    #[error("invalid secret shares: {reason}")]
    Shares {
        /// Which rule was broken.
        reason: &'static str,
    },
    /// A known-answer or pairwise-consistency test failed.
    #[error("self-test failed: {primitive}")]
    SelfTest {
        /// The primitive whose test failed.
        primitive: &'static str,
    },
    /// The underlying library refused an operation for another reason (key generation etc.).
    #[error("internal error: {what}")]
    Internal {
        /// The operation that was refused.
        what: &'static str,
    },
}
