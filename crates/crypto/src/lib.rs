//! Every cryptographic primitive postvault uses, behind a small typed API.
//!
//! The heavy lifting is done by audited libraries: aws-lc-rs (hashing, MACs,
//! HKDF, AES-256-GCM, ECDSA P-256, Ed25519, X25519, randomness), the `hpke`
//! crate (RFC 9180), `argon2` (password verifiers) and `vsss-rs` (Shamir over
//! GF(2^8)). This crate adds secret types that zeroize, opaque errors, and
//! known-answer tests ([`selftest::run_all`]). It performs no I/O.
#![forbid(unsafe_code)]

pub mod error;
pub use error::Error;
/// Result of every fallible operation in this crate.
pub type Result<T> = core::result::Result<T, Error>;

pub mod secret;
pub use secret::{Secret32, SecretBytes};

pub mod aead;
pub mod hash;
pub mod hpke;
pub mod kdf;
pub mod mac;
pub mod password;
pub mod rand;
pub mod selftest;
pub mod shamir;
pub mod sig;
pub mod x25519;
