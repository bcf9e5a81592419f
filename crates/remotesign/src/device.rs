//! The portable security device: a file protected by the PIN.
//!
//! It keeps KEK1 and KCAR sealed (AES-256-GCM) under a key derived from the
//! PIN with Argon2id, and a one-way check value of the PIN (a second
//! Argon2id with its own salt), so a stolen file without the PIN gives
//! nothing, and the PIN is checked before anything is opened. Wrong PINs are
//! counted in the file; at the limit the device locks. Changing the PIN
//! re-seals the secrets and needs no server.

use postvault_crypto::password::{Argon2Params, derive_key};
use postvault_crypto::{Secret32, aead, rand};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::server::{Challenge, SignRequest};
use crate::{RemoteSignError, Result, decode, encode, transport, variant};

/// Wrong PINs in a row after which the device locks.
pub const PIN_LIMIT: u8 = 3;
const FILE_VERSION: u8 = 1;

/// The device file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceFile {
    version: u8,
    /// The person (the seed's ICARa).
    pub id: String,
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
    check_salt: [u8; 16],
    /// One-way value of the PIN (the seed's POWF).
    pin_check: [u8; 32],
    seal_salt: [u8; 16],
    /// KEK1 ‖ KCAR under the PIN-derived key.
    sealed: Vec<u8>,
    /// Wrong PINs in a row.
    pub failures: u8,
}

/// What the server hands a new device (fig. 11, step 752): never stored in clear.
pub struct Issued {
    /// The person.
    pub id: String,
    /// KEK1.
    pub kek1: Secret32,
    /// KCAR.
    pub kcar: Secret32,
}

fn params(f: &DeviceFile) -> Argon2Params {
    Argon2Params {
        m_cost_kib: f.m_cost,
        t_cost: f.t_cost,
        p_cost: f.p_cost,
    }
}

impl DeviceFile {
    /// A device for `issued`, protected by `pin`.
    ///
    /// # Errors
    /// If randomness or Argon2id fails.
    pub fn new(issued: &Issued, pin: &[u8], kdf: Argon2Params) -> Result<Self> {
        let mut f = Self {
            version: FILE_VERSION,
            id: issued.id.clone(),
            m_cost: kdf.m_cost_kib,
            t_cost: kdf.t_cost,
            p_cost: kdf.p_cost,
            check_salt: rand::bytes()?,
            pin_check: [0; 32],
            seal_salt: rand::bytes()?,
            sealed: Vec::new(),
            failures: 0,
        };
        f.pin_check = *derive_key(pin, &f.check_salt, kdf)?.expose();
        let key = derive_key(pin, &f.seal_salt, kdf)?;
        let plain =
            Zeroizing::new([issued.kek1.expose().as_slice(), issued.kcar.expose()].concat());
        f.sealed = aead::seal(&key, f.id.as_bytes(), &plain)?;
        Ok(f)
    }

    /// The file's bytes.
    ///
    /// # Errors
    /// Never in practice.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        encode(self)
    }

    /// Parses a device file.
    ///
    /// # Errors
    /// [`RemoteSignError::Malformed`].
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let f: Self = decode(b, "device file")?;
        if f.version != FILE_VERSION {
            return Err(RemoteSignError::Malformed {
                what: "device file version",
            });
        }
        // Bounded before Argon2 allocates: at most 1 GiB, 16 passes, 8 lanes.
        if !(8..=1 << 20).contains(&f.m_cost)
            || !(1..=16).contains(&f.t_cost)
            || !(1..=8).contains(&f.p_cost)
        {
            return Err(RemoteSignError::Malformed {
                what: "device file: PIN derivation settings out of range",
            });
        }
        Ok(f)
    }

    /// Checks the PIN against the one-way value and opens KEK1 and KCAR.
    /// A wrong PIN is counted (the caller saves the file either way).
    fn open(&mut self, pin: &[u8]) -> Result<(Secret32, Secret32)> {
        if self.failures >= PIN_LIMIT {
            return Err(RemoteSignError::Locked);
        }
        let check = derive_key(pin, &self.check_salt, params(self))?;
        if !bool::from(check.expose().ct_eq(&self.pin_check)) {
            self.failures = self.failures.saturating_add(1);
            return Err(if self.failures >= PIN_LIMIT {
                RemoteSignError::Locked
            } else {
                RemoteSignError::WrongPin {
                    failures: self.failures,
                }
            });
        }
        self.failures = 0;
        let key = derive_key(pin, &self.seal_salt, params(self))?;
        let plain = aead::open(&key, self.id.as_bytes(), &self.sealed)?;
        let (a, b) = plain
            .expose()
            .split_at_checked(32)
            .ok_or(RemoteSignError::Malformed {
                what: "device secrets",
            })?;
        Ok((Secret32::from_slice(a)?, Secret32::from_slice(b)?))
    }

    /// Changes the PIN on the device alone.
    ///
    /// # Errors
    /// A wrong or locked old PIN.
    pub fn change_pin(&mut self, old: &[u8], new: &[u8]) -> Result<()> {
        let (kek1, kcar) = self.open(old)?;
        let fresh = Self::new(
            &Issued {
                id: self.id.clone(),
                kek1,
                kcar,
            },
            new,
            params(self),
        )?;
        *self = fresh;
        Ok(())
    }

    /// Approves `message` for the server's `challenge` (fig. 8): the
    /// variants for the current and next random numbers (and any replica's),
    /// sealed under the key bound to the message's hash and KCAR.
    ///
    /// # Errors
    /// A wrong or locked PIN; a challenge for another person.
    pub fn approve(
        &mut self,
        pin: &[u8],
        message: &[u8],
        challenge: &Challenge,
    ) -> Result<SignRequest> {
        if challenge.id != self.id {
            return Err(RemoteSignError::Stale {
                what: "the challenge is for another person",
            });
        }
        let (kek1, kcar) = self.open(pin)?;
        crate::approve_with(
            &self.id,
            message,
            challenge,
            |rn| variant(&kek1, rn),
            |h| transport(&kcar, h),
        )
    }
}
