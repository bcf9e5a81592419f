//! Sign-on and the customer's session (seed 000, DESIGN §7).
//!
//! The client makes a session key and seals it, with the customer's passphrase
//! hash and a nonce, to the vendor key: the crypto-card's registration HPKE key,
//! which only a module holds (a distinct HPKE `info` keeps the two uses apart).
//! Inside a module the sign-on checks the passphrase against the package, and
//! answers under the session key with the PSD-signed audit response the client
//! checks against the PSD certificate. The session key leaves the module only
//! as a key token under the MKS, bound to the meter and an expiry, so any
//! module of the pool can open later messages and no server holds it in clear.
//!
//! After sign-on every message is sealed under its own key, derived from the
//! session key, the direction and the message counter, with the meter in the
//! associated data: a message cannot be replayed into the other direction, into
//! another counter or into another meter's session.

use postvault_crypto::sig::{PublicKey, Signature, SigningKey};
use postvault_crypto::{Secret32, aead, hpke, kdf};
use postvault_indicium::Money;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::codec;
use crate::error::{Error, PsdCheck, Result};
use crate::mks::MksSlots;
use crate::psd::PsdState;
use crate::token::{KeyToken, KeyType, KeyUsage};

/// How long a session lasts, in module seconds.
pub const SESSION_SECONDS: u64 = 8 * 3600;
/// Largest sealed sign-on accepted (it is about 130 bytes).
pub const MAX_SEALED_SIGN_ON: usize = 1024;
/// Largest message sealed in a session (an indicium reply is under 1 KiB).
pub const MAX_SESSION_MESSAGE: usize = 64 * 1024;

const SIGN_ON_INFO: &[u8] = b"postvault sign-on v1";
const ANSWER_AAD: &[u8] = b"postvault sign-on answer v1";
const AUDIT_RESPONSE_LABEL: &[u8] = b"postvault audit response v1";
const TOKEN_OWNER: &str = "session";

/// What the client seals to the vendor key at sign-on.
#[derive(Serialize, Deserialize)]
pub struct SignOnSecrets {
    /// The hash of the customer's passphrase, as at registration.
    pub passphrase: Zeroizing<[u8; 32]>,
    /// The session key the client made.
    pub session_key: Zeroizing<[u8; 32]>,
    /// The client's nonce, signed back in the audit response.
    pub nonce: [u8; 16],
}

fn sign_on_aad(device_id: &[u8; 6], customer_id: &str) -> Vec<u8> {
    [device_id.as_slice(), customer_id.as_bytes()].concat()
}

/// Client: seals a sign-on to the vendor key, bound to the meter and customer.
///
/// # Errors
/// [`Error::Crypto`].
pub fn seal_sign_on(
    vendor_key: &hpke::PublicKey,
    device_id: &[u8; 6],
    customer_id: &str,
    secrets: &SignOnSecrets,
) -> Result<Vec<u8>> {
    let plain = Zeroizing::new(codec::encode(secrets)?);
    Ok(hpke::seal(
        vendor_key,
        SIGN_ON_INFO,
        &sign_on_aad(device_id, customer_id),
        &plain,
    )?)
}

/// Module: opens a sign-on.
pub(crate) fn open_sign_on(
    vendor_key: &hpke::PrivateKey,
    device_id: &[u8; 6],
    customer_id: &str,
    sealed: &[u8],
) -> Result<SignOnSecrets> {
    let fail = || Error::PsdCheck(PsdCheck::CustomerSecrets);
    if sealed.len() > MAX_SEALED_SIGN_ON {
        return Err(fail());
    }
    let plain = hpke::open(
        vendor_key,
        SIGN_ON_INFO,
        &sign_on_aad(device_id, customer_id),
        sealed,
    )
    .map_err(|_| fail())?;
    codec::decode(plain.expose(), "sign-on").map_err(|_| fail())
}

/// The PSD's audit response (seed 000): its registers and state, signed by the
/// PSD's own key over the client's nonce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditResponse {
    /// The meter.
    pub device_id: [u8; 6],
    /// The client's nonce.
    pub nonce: [u8; 16],
    /// Ascending register.
    #[serde(with = "crate::codec::tenths")]
    pub ar: Money,
    /// Descending register.
    #[serde(with = "crate::codec::tenths")]
    pub dr: Money,
    /// The package's transaction count after the sign-on.
    pub sequence: u64,
    /// The meter's state.
    pub state: PsdState,
    /// Module time.
    pub time: u64,
}

impl AuditResponse {
    fn message(&self) -> Result<Vec<u8>> {
        // The label keeps these signatures apart from indicium signatures, whose
        // signed bytes start with the layout's version, never with this text.
        Ok([AUDIT_RESPONSE_LABEL, &codec::encode(self)?].concat())
    }

    pub(crate) fn sign(&self, key: &SigningKey) -> Result<(u8, Vec<u8>)> {
        let s = key.sign(&self.message()?)?;
        Ok((s.alg().id(), s.as_bytes().to_vec()))
    }

    /// Client: checks the PSD's signature with the key from its certificate.
    ///
    /// # Errors
    /// [`Error::Crypto`] if it does not verify.
    pub fn verify(&self, key: &PublicKey, signature: &(u8, Vec<u8>)) -> Result<()> {
        let alg = postvault_crypto::sig::SigAlg::from_id(signature.0)?;
        let sig = Signature::from_bytes(alg, &signature.1)?;
        key.verify(&self.message()?, &sig)?;
        Ok(())
    }
}

/// The module's answer to a sign-on, sealed under the session key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignOnAnswer {
    /// The signed audit response.
    pub response: AuditResponse,
    /// The PSD's signature over it (algorithm id, bytes).
    pub signature: (u8, Vec<u8>),
    /// The challenge the next customer request must carry.
    pub challenge: [u8; 16],
    /// When the session ends (module time).
    pub expires: u64,
}

/// Module: seals the answer.
pub(crate) fn seal_answer(
    session_key: &[u8; 32],
    device_id: &[u8; 6],
    customer_id: &str,
    answer: &SignOnAnswer,
) -> Result<Vec<u8>> {
    let key = Secret32::from_bytes(*session_key);
    let aad = [ANSWER_AAD, &sign_on_aad(device_id, customer_id)].concat();
    Ok(aead::seal(&key, &aad, &codec::encode(answer)?)?)
}

/// Client: opens the module's answer; only a module that opened the sign-on can
/// have made it (seed 000: the server is authenticated to the client).
///
/// # Errors
/// [`PsdCheck::Session`] if it does not open.
pub fn open_answer(
    session_key: &[u8; 32],
    device_id: &[u8; 6],
    customer_id: &str,
    sealed: &[u8],
) -> Result<SignOnAnswer> {
    let key = Secret32::from_bytes(*session_key);
    let aad = [ANSWER_AAD, &sign_on_aad(device_id, customer_id)].concat();
    let plain = aead::open(&key, &aad, sealed).map_err(|_| Error::PsdCheck(PsdCheck::Session))?;
    codec::decode(plain.expose(), "sign-on answer")
}

/// Module: the session key as a token under the active MKS, naming the meter
/// and the expiry in its authenticated owner label.
pub(crate) fn session_token(
    slots: &MksSlots,
    device_id: &[u8; 6],
    expires: u64,
    session_key: &[u8; 32],
) -> Result<Vec<u8>> {
    let mks = slots.active.as_ref().ok_or(Error::Mks {
        what: "there is no active master key set",
    })?;
    let owner = format!("{TOKEN_OWNER}:{}:{expires}", hex::encode(device_id));
    KeyToken::seal(
        mks,
        KeyType::Secret32,
        KeyUsage::Session,
        &owner,
        session_key,
    )?
    .encode()
}

/// An opened session: the meter it is for and its key.
pub(crate) struct Session {
    pub device_id: [u8; 6],
    key: Secret32,
}

/// Module: opens a session token, refusing one that has expired at `now`.
pub(crate) fn open_session(slots: &MksSlots, token: &[u8], now: u64) -> Result<Session> {
    let fail = || Error::PsdCheck(PsdCheck::Session);
    let token = KeyToken::decode(token).map_err(|_| fail())?;
    if token.header.usage != KeyUsage::Session {
        return Err(fail());
    }
    let mut parts = token.header.owner.split(':');
    let (Some(TOKEN_OWNER), Some(device), Some(expires), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(fail());
    };
    let device_id: [u8; 6] = hex::decode(device)
        .ok()
        .and_then(|d| d.try_into().ok())
        .ok_or_else(fail)?;
    let expires: u64 = expires.parse().map_err(|_| fail())?;
    if now > expires {
        return Err(fail());
    }
    let (key, _) = token.open(slots).map_err(|_| fail())?;
    Ok(Session {
        device_id,
        key: Secret32::from_slice(&key).map_err(|_| fail())?,
    })
}

/// Which way a session message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// Client to vault.
    Request,
    /// Vault to client.
    Reply,
}

fn message_key(session_key: &Secret32, direction: Direction, counter: u64) -> Result<Secret32> {
    let label: &[u8] = match direction {
        Direction::Request => b"postvault session request v1",
        Direction::Reply => b"postvault session reply v1",
    };
    Ok(kdf::derive_secret32(
        b"",
        session_key.expose(),
        &[label, &counter.to_be_bytes()],
    )?)
}

fn message_aad(device_id: &[u8; 6], direction: Direction, counter: u64) -> Vec<u8> {
    let d: u8 = match direction {
        Direction::Request => 1,
        Direction::Reply => 2,
    };
    [device_id.as_slice(), &[d], &counter.to_be_bytes()].concat()
}

/// Seals one session message under its own key (client with its session key;
/// module through [`Session::seal`]).
///
/// # Errors
/// [`Error::InvalidArgument`] if the message is too long; [`Error::Crypto`].
pub fn seal_message(
    session_key: &[u8; 32],
    device_id: &[u8; 6],
    direction: Direction,
    counter: u64,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    seal_with(
        &Secret32::from_bytes(*session_key),
        device_id,
        direction,
        counter,
        plaintext,
    )
}

/// Opens one session message.
///
/// # Errors
/// [`PsdCheck::Session`] if it does not open.
pub fn open_message(
    session_key: &[u8; 32],
    device_id: &[u8; 6],
    direction: Direction,
    counter: u64,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    open_with(
        &Secret32::from_bytes(*session_key),
        device_id,
        direction,
        counter,
        sealed,
    )
}

fn seal_with(
    key: &Secret32,
    device_id: &[u8; 6],
    direction: Direction,
    counter: u64,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    if plaintext.len() > MAX_SESSION_MESSAGE {
        return Err(Error::InvalidArgument {
            what: "session message too long",
        });
    }
    let k = message_key(key, direction, counter)?;
    Ok(aead::seal(
        &k,
        &message_aad(device_id, direction, counter),
        plaintext,
    )?)
}

fn open_with(
    key: &Secret32,
    device_id: &[u8; 6],
    direction: Direction,
    counter: u64,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let fail = || Error::PsdCheck(PsdCheck::Session);
    if sealed.len() > MAX_SESSION_MESSAGE.saturating_add(64) {
        return Err(fail());
    }
    let k = message_key(key, direction, counter)?;
    let plain =
        aead::open(&k, &message_aad(device_id, direction, counter), sealed).map_err(|_| fail())?;
    Ok(Zeroizing::new(plain.expose().to_vec()))
}

impl Session {
    /// Opens a client's request.
    pub(crate) fn open(&self, counter: u64, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        open_with(
            &self.key,
            &self.device_id,
            Direction::Request,
            counter,
            sealed,
        )
    }

    /// Seals the reply to the request with this counter.
    pub(crate) fn seal(&self, counter: u64, plaintext: &[u8]) -> Result<Vec<u8>> {
        seal_with(
            &self.key,
            &self.device_id,
            Direction::Reply,
            counter,
            plaintext,
        )
    }
}
