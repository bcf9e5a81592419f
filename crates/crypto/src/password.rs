//! Argon2id password verifiers in PHC string format.

use argon2::{
    ARGON2ID_IDENT, Algorithm, Argon2, PasswordHash, PasswordHasher, PasswordVerifier as _, Version,
};

use crate::{Error, Result};

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Degree of parallelism (lanes).
    pub p_cost: u32,
}

impl Argon2Params {
    /// OWASP's recommendation: 19 MiB, 2 passes, 1 lane.
    pub const RECOMMENDED: Self = Self {
        m_cost_kib: 19_456,
        t_cost: 2,
        p_cost: 1,
    };
    /// Cheap parameters for tests only.
    pub const FAST_FOR_TESTS: Self = Self {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };
}

/// Length of the random salt in every verifier.
pub const SALT_LEN: usize = 16;

/// An Argon2id verifier as a PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordVerifier(String);

impl PasswordVerifier {
    /// Hashes `password` with a fresh random 16-byte salt.
    ///
    /// # Errors
    /// [`Error::Malformed`] for parameters Argon2 rejects; [`Error::Rng`] if the RNG fails;
    /// [`Error::Internal`] if hashing fails otherwise.
    pub fn create(password: &[u8], params: Argon2Params) -> Result<Self> {
        let params = argon2::Params::new(params.m_cost_kib, params.t_cost, params.p_cost, None)
            .map_err(|_| Error::Malformed {
                what: "Argon2 parameters",
            })?;
        let salt = crate::rand::bytes::<SALT_LEN>()?;
        let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_with_salt(password, &salt)
            .map_err(|_| Error::Internal {
                what: "Argon2 hashing",
            })?;
        Ok(Self(hash.to_string()))
    }

    /// Accepts a stored verifier.
    ///
    /// # Errors
    /// [`Error::Malformed`] unless `s` is an Argon2id PHC string with valid
    /// parameters, a salt and a hash.
    pub fn from_phc(s: &str) -> Result<Self> {
        let hash = PasswordHash::new(s).map_err(|_| Error::Malformed {
            what: "Argon2id PHC string",
        })?;
        let complete = hash.algorithm == ARGON2ID_IDENT
            && hash.salt.is_some()
            && hash.hash.is_some()
            && argon2::Params::try_from(&hash).is_ok();
        if complete {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::Malformed {
                what: "Argon2id PHC string",
            })
        }
    }

    /// The PHC string, for storage.
    #[must_use]
    pub fn as_phc(&self) -> &str {
        &self.0
    }

    /// Checks `password` (the hash comparison inside `argon2` is constant time).
    ///
    /// # Errors
    /// [`Error::VerificationFailed`] if the password does not match.
    pub fn verify(&self, password: &[u8]) -> Result<()> {
        let hash = PasswordHash::new(&self.0).map_err(|_| Error::VerificationFailed)?;
        Argon2::default()
            .verify_password(password, &hash)
            .map_err(|_| Error::VerificationFailed)
    }
}

/// Derives a 32-byte key from a password with Argon2id (a passphrase-protected
/// file's key, or a client's passphrase hash). `salt` must be at least 8 bytes.
///
/// # Errors
/// [`Error::Malformed`] for parameters or a salt Argon2 rejects.
pub fn derive_key(password: &[u8], salt: &[u8], params: Argon2Params) -> Result<crate::Secret32> {
    let p = argon2::Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
        .map_err(|_| Error::Malformed {
            what: "Argon2 parameters",
        })?;
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(password, salt, &mut *out)
        .map_err(|_| Error::Malformed {
            what: "Argon2 input (salt of at least 8 bytes)",
        })?;
    Ok(crate::Secret32::from_bytes(*out))
}
