//! Operator sessions (seed 001, "Session Management"): an ephemeral X25519
//! exchange gives two session master keys (MAC, encryption); every message in
//! either direction is MAC'd, and optionally sealed, under transaction keys derived
//! by HKDF from the master keys, the direction and a message counter. Counters
//! must arrive in order, so a replayed or reordered message is refused.
//!
//! The module signs the handshake transcript with its audit signing key, so a host
//! that knows the module's audit key (from the first audit entry) detects a
//! man in the middle; the seed's anonymous exchange had no such check.

use postvault_crypto::sig::{PublicKey, SigAlg, Signature};
use postvault_crypto::{Secret32, aead, hash, kdf, mac, x25519};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::{Error, Result};

const TRANSCRIPT_LABEL: &[u8] = b"postvault operator session v1";
const MESSAGE_LABEL: &[u8] = b"postvault session message v1";

/// Message direction, bound into every key and MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Host to module.
    Request = 1,
    /// Module to host.
    Response = 2,
}

/// A session message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionMessage {
    /// Session id.
    pub session: [u8; 16],
    /// Message counter: requests count 1, 2, 3 …; a response repeats its request's counter.
    pub counter: u64,
    /// Whether `body` is sealed (AES-256-GCM) or only MAC'd.
    pub sealed: bool,
    /// Encoded request or response, or its ciphertext.
    pub body: Vec<u8>,
    /// HMAC-SHA-256 under the transaction MAC key.
    pub tag: [u8; 32],
}

/// The module's answer to Open Session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionOpened {
    /// Session id.
    pub session: [u8; 16],
    /// Module ephemeral X25519 public key.
    pub module_public: [u8; 32],
    /// Audit-key signature (algorithm id, bytes) over the transcript.
    pub signature: (u8, Vec<u8>),
}

/// The two session master keys and the session id.
pub(crate) struct SessionKeys {
    id: [u8; 16],
    mac_master: Secret32,
    enc_master: Secret32,
}

/// The transcript both sides sign or check.
pub(crate) fn transcript(
    serial: &str,
    host_public: &[u8; 32],
    module_public: &[u8; 32],
) -> Vec<u8> {
    [
        TRANSCRIPT_LABEL,
        serial.as_bytes(),
        b"\0",
        host_public,
        module_public,
    ]
    .concat()
}

impl SessionKeys {
    pub(crate) fn derive(shared: &Secret32, transcript: &[u8]) -> Result<Self> {
        let th = hash::sha256(&[transcript]);
        let mut id = [0u8; 16];
        id.copy_from_slice(th.get(..16).ok_or(Error::Fatal {
            what: "hash length",
        })?);
        Ok(Self {
            id,
            mac_master: kdf::derive_secret32(&th, shared.expose(), &[b"session mac master"])?,
            enc_master: kdf::derive_secret32(&th, shared.expose(), &[b"session enc master"])?,
        })
    }

    pub(crate) fn id(&self) -> [u8; 16] {
        self.id
    }

    fn transaction_keys(&self, dir: Direction, counter: u64) -> Result<(Secret32, Secret32)> {
        let info = [dir as u8];
        let ctr = counter.to_be_bytes();
        Ok((
            kdf::derive_secret32(&self.id, self.mac_master.expose(), &[b"mac", &info, &ctr])?,
            kdf::derive_secret32(&self.id, self.enc_master.expose(), &[b"enc", &info, &ctr])?,
        ))
    }

    fn header(&self, dir: Direction, counter: u64, sealed: bool) -> Vec<u8> {
        [
            MESSAGE_LABEL,
            &self.id,
            &[dir as u8, u8::from(sealed)],
            &counter.to_be_bytes(),
        ]
        .concat()
    }

    /// Wraps a plaintext body.
    pub(crate) fn wrap(
        &self,
        dir: Direction,
        counter: u64,
        sealed: bool,
        plain: &[u8],
    ) -> Result<SessionMessage> {
        let (mk, ek) = self.transaction_keys(dir, counter)?;
        let header = self.header(dir, counter, sealed);
        // Each transaction key encrypts exactly one message, so a fixed nonce is safe.
        let body = if sealed {
            aead::seal_with_nonce(&ek, &[0u8; 12], &header, plain)?
        } else {
            plain.to_vec()
        };
        let tag = mac::hmac_sha256(&mk, &[&header, &body]);
        Ok(SessionMessage {
            session: self.id,
            counter,
            sealed,
            body,
            tag,
        })
    }

    /// Checks and opens a body (the caller checks the counter order).
    pub(crate) fn unwrap(&self, dir: Direction, msg: &SessionMessage) -> Result<Vec<u8>> {
        if msg.session != self.id {
            return Err(Error::SessionMessageRejected);
        }
        let (mk, ek) = self.transaction_keys(dir, msg.counter)?;
        let header = self.header(dir, msg.counter, msg.sealed);
        mac::verify_hmac_sha256(&mk, &[&header, &msg.body], &msg.tag)
            .map_err(|_| Error::SessionMessageRejected)?;
        if msg.sealed {
            let plain = aead::open_with_nonce(&ek, &[0u8; 12], &header, &msg.body)
                .map_err(|_| Error::SessionMessageRejected)?;
            Ok(plain.expose().to_vec())
        } else {
            Ok(msg.body.clone())
        }
    }
}

/// The host's half of a session being opened.
pub struct HostOpening {
    secret: x25519::EphemeralSecret,
    public: [u8; 32],
}

impl HostOpening {
    /// Makes the host's ephemeral key.
    ///
    /// # Errors
    /// [`Error::Crypto`] if key generation fails.
    pub fn new() -> Result<Self> {
        let secret = x25519::EphemeralSecret::generate()?;
        let public = secret.public_key()?;
        Ok(Self { secret, public })
    }

    /// The public key to send in Open Session.
    #[must_use]
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// Completes the exchange; the transcript signature must verify with
    /// `module_key`, the module's audit verification key.
    ///
    /// # Errors
    /// [`Error::SessionMessageRejected`] if the signature fails; [`Error::Crypto`] for a weak exchange.
    pub fn finish(
        self,
        serial: &str,
        opened: &SessionOpened,
        module_key: &PublicKey,
    ) -> Result<HostSession> {
        let t = transcript(serial, &self.public, &opened.module_public);
        let (alg, bytes) = &opened.signature;
        SigAlg::from_id(*alg)
            .and_then(|a| Signature::from_bytes(a, bytes))
            .and_then(|s| module_key.verify(&t, &s))
            .map_err(|_| Error::SessionMessageRejected)?;
        let shared = self.secret.agree(&opened.module_public)?;
        let keys = SessionKeys::derive(&shared, &t)?;
        if keys.id() != opened.session {
            return Err(Error::SessionMessageRejected);
        }
        Ok(HostSession { keys, next: 1 })
    }
}

/// The host's side of an open session.
pub struct HostSession {
    keys: SessionKeys,
    next: u64,
}

impl HostSession {
    /// Wraps a request; the counter advances.
    ///
    /// # Errors
    /// [`Error::Malformed`] or [`Error::Crypto`].
    pub fn request(&mut self, req: &crate::wire::Request, sealed: bool) -> Result<SessionMessage> {
        let counter = self.next;
        self.next = self.next.checked_add(1).ok_or(Error::Busy {
            what: "session counter exhausted; open a new session",
        })?;
        self.keys
            .wrap(Direction::Request, counter, sealed, &codec::encode(req)?)
    }

    /// Checks and decodes the module's response to the last request.
    ///
    /// # Errors
    /// [`Error::SessionMessageRejected`] if it does not authenticate or answers another request.
    pub fn response(&self, msg: &SessionMessage) -> Result<crate::wire::Response> {
        if msg.counter.checked_add(1) != Some(self.next) {
            return Err(Error::SessionMessageRejected);
        }
        let plain = self.keys.unwrap(Direction::Response, msg)?;
        codec::decode(&plain, "session response")
    }
}
