//! Remote signing (seed 003, second embodiment with the first's PIN
//! handling; DESIGN §9). A person's private signing key lives on the server
//! only encrypted; each signature needs their portable security device.
//!
//! The seed's invertible "+" combinations become keyed derivations
//! (DESIGN §2), so the server never sees the device's KEK1 at all:
//!
//! - the device holds KEK1 and KCAR, sealed under a key derived from its PIN
//!   (Argon2id), with a one-way PIN check value; PIN change needs no server;
//! - the server holds KCAR, the current random number RNx and the private
//!   key sealed under V(RNx) = HMAC(KEK1, RNx), all sealed under its own
//!   storage key (the module's master key in the vault);
//! - to sign, the server hands out RNx and a fresh RN(x+1); the device
//!   returns V(RNx) and V(RN(x+1)) sealed under a key derived from KCAR and
//!   the hash of the one message the person approved;
//! - the server opens them only with that message's hash, opens the private
//!   key with V(RNx), signs that message, re-seals the key under V(RN(x+1))
//!   and erases the clear values; a captured request cannot sign another
//!   message and does not work twice;
//! - revocation deletes the server's record; a replica node gets its own
//!   record from a signing session (its own random number, its own variant).
#![forbid(unsafe_code)]

pub mod device;
pub mod server;
pub mod token;

/// What can go wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteSignError {
    /// The PIN is wrong (the count of wrong PINs in a row is given).
    #[error("wrong PIN ({failures} in a row)")]
    WrongPin {
        /// Wrong PINs in a row.
        failures: u8,
    },
    /// Too many wrong PINs: the device is locked.
    #[error("the device is locked after too many wrong PINs")]
    Locked,
    /// The request does not open for this message and record (another
    /// message, a replay, another person's device, an altered request).
    #[error("the request does not authorise signing this message")]
    NotAuthorised,
    /// The record or challenge is for another person or another counter.
    #[error("the request is for another signing session ({what})")]
    Stale {
        /// What did not match.
        what: &'static str,
    },
    /// No record for this person on this node (revoked, or never initialised).
    #[error("no signing key for {0} on this node")]
    Revoked(String),
    /// Bytes that do not parse.
    #[error("malformed {what}")]
    Malformed {
        /// What.
        what: &'static str,
    },
    /// A primitive failed.
    #[error("crypto: {0}")]
    Crypto(#[from] postvault_crypto::Error),
}

/// Result with [`RemoteSignError`].
pub type Result<T> = core::result::Result<T, RemoteSignError>;

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(v).map_err(|_| RemoteSignError::Malformed { what: "encoding" })
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8], what: &'static str) -> Result<T> {
    match postcard::take_from_bytes(b) {
        Ok((v, [])) => Ok(v),
        _ => Err(RemoteSignError::Malformed { what }),
    }
}

const VARIANT_LABEL: &[u8] = b"postvault remotesign variant v1";
const MESSAGE_LABEL: &[u8] = b"postvault remotesign message v1";

/// V(RN) = HMAC-SHA-256(KEK1, label ‖ RN): the key-encrypting key variant for
/// one random number. A keyed PRF (HKDF-Expand of a uniform key, one block),
/// so a PKCS#11 token computes it with CKM_SHA256_HMAC without KEK1 ever
/// leaving it ([`variant_input`] is what it MACs).
fn variant(kek1: &postvault_crypto::Secret32, rn: &[u8; 32]) -> Result<postvault_crypto::Secret32> {
    Ok(postvault_crypto::Secret32::from_bytes(
        postvault_crypto::mac::hmac_sha256(kek1, &[&variant_input(rn)]),
    ))
}

/// The transport key bound to one message: HMAC-SHA-256(KCAR, label ‖ H(message)).
fn transport(
    kcar: &postvault_crypto::Secret32,
    hash: &[u8; 32],
) -> Result<postvault_crypto::Secret32> {
    Ok(postvault_crypto::Secret32::from_bytes(
        postvault_crypto::mac::hmac_sha256(kcar, &[&transport_input(hash)]),
    ))
}

fn variant_input(rn: &[u8; 32]) -> Vec<u8> {
    [VARIANT_LABEL, rn].concat()
}

fn transport_input(hash: &[u8; 32]) -> Vec<u8> {
    [MESSAGE_LABEL, hash].concat()
}

/// A device's answer to a challenge, whatever computes the keyed
/// derivations: `v` gives V(RN) under KEK1, `t` the transport key under
/// KCAR for the message's hash.
fn approve_with(
    id: &str,
    message: &[u8],
    challenge: &server::Challenge,
    mut v: impl FnMut(&[u8; 32]) -> Result<postvault_crypto::Secret32>,
    t: impl FnOnce(&[u8; 32]) -> Result<postvault_crypto::Secret32>,
) -> Result<server::SignRequest> {
    if challenge.id != id {
        return Err(RemoteSignError::Stale {
            what: "the challenge is for another person",
        });
    }
    let h = postvault_crypto::hash::sha256(&[message]);
    let mut plain =
        zeroize::Zeroizing::new(Vec::with_capacity(32 * (2 + challenge.replicas.len())));
    for rn in [&challenge.current, &challenge.next]
        .into_iter()
        .chain(challenge.replicas.iter())
    {
        plain.extend_from_slice(v(rn)?.expose());
    }
    let sealed = postvault_crypto::aead::seal(&t(&h)?, &challenge.aad(), &plain)?;
    Ok(server::SignRequest {
        id: id.to_owned(),
        counter: challenge.counter,
        sealed,
    })
}
