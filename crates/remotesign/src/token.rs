//! A PKCS#11 token as the portable security device (SoftHSM2 in the
//! tests). KEK1 and KCAR are created in the token as sensitive,
//! non-extractable secret keys; the keyed derivations (HMAC-SHA-256) run in
//! the token, so the key-encrypting keys never leave it. The user PIN is the
//! token's own: it checks it, and counts and locks as that token does.

use std::path::Path;

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use postvault_crypto::Secret32;

use crate::device::Issued;
use crate::server::{Challenge, SignRequest};
use crate::{RemoteSignError, Result, transport_input, variant_input};

/// A person's keys in one PKCS#11 token.
pub struct TokenDevice {
    pkcs11: Pkcs11,
    slot: Slot,
    /// The person.
    pub id: String,
}

fn p11(e: P11Error) -> RemoteSignError {
    match e {
        P11Error::Pkcs11(RvError::PinIncorrect, _) => RemoteSignError::WrongPin { failures: 1 },
        P11Error::Pkcs11(RvError::PinLocked, _) => RemoteSignError::Locked,
        _ => RemoteSignError::Malformed {
            what: "a PKCS#11 call failed",
        },
    }
}

fn label(id: &str, which: &str) -> String {
    format!("postvault-remotesign/{id}/{which}")
}

impl TokenDevice {
    /// The token labelled `token` in the PKCS#11 module at `module`, for `id`.
    ///
    /// # Errors
    /// If the module does not load or has no such token.
    pub fn open(module: &Path, token: &str, id: &str) -> Result<Self> {
        let pkcs11 = Pkcs11::new(module).map_err(p11)?;
        pkcs11.initialize(CInitializeArgs::OsThreads).map_err(p11)?;
        let slot = pkcs11
            .get_slots_with_token()
            .map_err(p11)?
            .into_iter()
            .find(|s| {
                pkcs11
                    .get_token_info(*s)
                    .is_ok_and(|i| i.label().trim_end() == token)
            })
            .ok_or(RemoteSignError::Malformed {
                what: "no PKCS#11 token with that label",
            })?;
        Ok(Self {
            pkcs11,
            slot,
            id: id.to_owned(),
        })
    }

    fn session(&self, pin: &[u8]) -> Result<Session> {
        let session = self.pkcs11.open_rw_session(self.slot).map_err(p11)?;
        let pin = String::from_utf8(pin.to_vec()).map_err(|_| RemoteSignError::Malformed {
            what: "a PIN that is not text",
        })?;
        session
            .login(UserType::User, Some(&secrecy::Secret::new(pin)))
            .map_err(p11)?;
        Ok(session)
    }

    fn key(&self, session: &Session, which: &str) -> Result<ObjectHandle> {
        session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(label(&self.id, which).into_bytes()),
            ])
            .map_err(p11)?
            .first()
            .copied()
            .ok_or(RemoteSignError::Malformed {
                what: "the token holds no keys for this person",
            })
    }

    /// Puts the keys the server issued into the token: sensitive,
    /// non-extractable, usable only to MAC.
    ///
    /// # Errors
    /// A wrong PIN; keys for this person already there.
    pub fn install(&self, pin: &[u8], issued: &Issued) -> Result<()> {
        let session = self.session(pin)?;
        if self.key(&session, "kek1").is_ok() {
            return Err(RemoteSignError::Malformed {
                what: "the token holds keys for this person already",
            });
        }
        for (which, key) in [("kek1", &issued.kek1), ("kcar", &issued.kcar)] {
            session
                .create_object(&[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::GENERIC_SECRET),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Sign(true),
                    Attribute::Label(label(&issued.id, which).into_bytes()),
                    Attribute::Value(key.expose().to_vec()),
                ])
                .map_err(p11)?;
        }
        Ok(())
    }

    fn mac(session: &Session, key: ObjectHandle, data: &[u8]) -> Result<Secret32> {
        let tag = session
            .sign(&Mechanism::Sha256Hmac, key, data)
            .map_err(p11)?;
        Ok(Secret32::from_slice(&tag)?)
    }

    /// Approves `message` for `challenge`, the derivations done in the token.
    ///
    /// # Errors
    /// A wrong or locked PIN; a token without this person's keys.
    pub fn approve(
        &self,
        pin: &[u8],
        message: &[u8],
        challenge: &Challenge,
    ) -> Result<SignRequest> {
        let session = self.session(pin)?;
        let kek1 = self.key(&session, "kek1")?;
        let kcar = self.key(&session, "kcar")?;
        crate::approve_with(
            &self.id,
            message,
            challenge,
            |rn| Self::mac(&session, kek1, &variant_input(rn)),
            |h| Self::mac(&session, kcar, &transport_input(h)),
        )
    }

    /// Whether the token would let either key-encrypting key out (it must
    /// not): extractable, or not sensitive.
    ///
    /// # Errors
    /// A wrong PIN; a token that does not answer.
    pub fn keys_extractable(&self, pin: &[u8]) -> Result<bool> {
        use cryptoki::object::AttributeType;
        let session = self.session(pin)?;
        let mut out = false;
        for which in ["kek1", "kcar"] {
            let key = self.key(&session, which)?;
            let attrs = session
                .get_attributes(key, &[AttributeType::Extractable, AttributeType::Sensitive])
                .map_err(p11)?;
            if attrs.len() != 2 {
                return Err(RemoteSignError::Malformed {
                    what: "the token does not say whether its keys can leave it",
                });
            }
            out |= attrs.iter().any(|a| {
                matches!(
                    a,
                    Attribute::Extractable(true) | Attribute::Sensitive(false)
                )
            });
        }
        Ok(out)
    }
}
