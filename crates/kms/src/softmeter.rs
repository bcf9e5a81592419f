//! A software meter: what a postal security device does with its domain
//! master keys (open MI5, show test tokens, report MR1, put tokens on an
//! indicium), without the rest of a PSD. For the token benchmark and the
//! KMS's own tests; the vault's meters are real PSDs in its modules.

use postvault_crypto::sig::{SigAlg, SigningKey};
use postvault_crypto::{Secret32, hpke};
use postvault_indicium::indicium::SIGNED_LEN;
use postvault_indicium::token::{self, Period, RegistrationFacts, TokenKey};
use postvault_indicium::{Date, DeviceId};

use crate::boxes::role_of;
use crate::error::{Fault, KmsError, Result};
use crate::ids::DomainId;
use crate::message::{MeterEvidence, MeterInstall, RegistrationReport};

/// The registration signing key every software meter's key is vouched for
/// by, as a vault's crypto-card vouches for its vendor key.
fn vouching_key() -> Result<&'static SigningKey> {
    static KEY: std::sync::OnceLock<Option<SigningKey>> = std::sync::OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate(SigAlg::EcdsaP256Sha256).ok())
        .as_ref()
        .ok_or_else(|| KmsError::refused(Fault::Crypto, "no vouching key"))
}

/// The anchor steel boxes need for software meters.
///
/// # Errors
/// If the key could not be made.
pub fn anchor() -> Result<(u8, Vec<u8>)> {
    let k = vouching_key()?.public_key();
    Ok((k.alg().id(), k.as_bytes().to_vec()))
}

/// A software meter.
pub struct SoftMeter {
    /// Its device id.
    pub device: [u8; 6],
    key: hpke::PrivateKey,
    /// Its HPKE public key, which steel seals keys to.
    pub public: [u8; 32],
    keys: Vec<(DomainId, u64, Secret32)>,
}

impl SoftMeter {
    /// A meter `PV` + `serial`.
    ///
    /// # Errors
    /// If key generation fails.
    pub fn new(serial: u32) -> Result<Self> {
        let (key, public) = hpke::PrivateKey::generate()?;
        let [a, b, c, d] = serial.to_be_bytes();
        Ok(Self {
            device: [b'P', b'V', a, b, c, d],
            key,
            public: public.0,
            keys: Vec::new(),
        })
    }

    /// The anchor's signature over this meter's key.
    ///
    /// # Errors
    /// If signing fails.
    pub fn vouch(&self) -> Result<(u8, Vec<u8>)> {
        let sig = vouching_key()?.sign(&token::meter_key_message(&self.public))?;
        Ok((sig.alg().id(), sig.as_bytes().to_vec()))
    }

    /// MI5 → MI6: installs the key and shows its test tokens.
    ///
    /// # Errors
    /// If the key does not open for this meter.
    pub fn install(&mut self, m: &MeterInstall) -> Result<MeterEvidence> {
        let aad = token::install_aad(m.domain.as_str(), m.key_id, m.device, m.role);
        let k = hpke::open(&self.key, token::INSTALL_INFO, &aad, &m.sealed_key)?;
        let k = Secret32::from_slice(k.expose())?;
        self.install_raw(&m.domain, m.key_id, k)
    }

    /// Installs `key` as if it had come in MI5 (a meter whose key is not the
    /// archive's, for the test-token check).
    ///
    /// # Errors
    /// Only if HKDF refuses.
    pub fn install_raw(
        &mut self,
        domain: &DomainId,
        key_id: u64,
        key: Secret32,
    ) -> Result<MeterEvidence> {
        let test_tokens = token::test_tokens(&key, domain.as_str())?;
        self.keys.push((domain.clone(), key_id, key));
        Ok(MeterEvidence {
            device: self.device,
            domain: domain.clone(),
            key_id,
            test_tokens,
        })
    }

    fn device_id(&self) -> Result<DeviceId> {
        DeviceId::from_bytes(self.device)
            .map_err(|_| KmsError::refused(Fault::Mismatch, "device id"))
    }

    /// MR1 for its key of `domain`.
    ///
    /// # Errors
    /// If it has no key of that domain.
    pub fn report(
        &self,
        domain: &DomainId,
        indicia_number: &str,
        country: &str,
        date: Date,
    ) -> Result<RegistrationReport> {
        let (_, key_id, k) = self
            .keys
            .iter()
            .find(|(d, _, _)| d == domain)
            .ok_or_else(|| KmsError::refused(Fault::UnknownDomain, "no key of that domain"))?;
        let facts = RegistrationFacts {
            device: self.device_id()?,
            indicia_number: indicia_number.into(),
            country: country.into(),
            date,
        };
        Ok(RegistrationReport {
            domain: domain.clone(),
            key_id: *key_id,
            device: self.device,
            indicia_number: indicia_number.into(),
            country: country.into(),
            date: date.days(),
            token: token::registration_token(k, domain.as_str(), &facts)?,
        })
    }

    /// An indicium's signed part dated `date` with the tokens of every key in place.
    ///
    /// # Errors
    /// Only if HKDF refuses.
    pub fn indicium(&self, date: Date, postage_tenths: u32) -> Result<[u8; SIGNED_LEN]> {
        let mut b = [0u8; SIGNED_LEN];
        let [_, p1, p2, p3] = postage_tenths.to_be_bytes();
        let [d1, d2] = date.days().to_be_bytes();
        for (i, v) in [
            (0, 1),
            (1, 1),
            (17, p1),
            (18, p2),
            (19, p3),
            (20, d1),
            (21, d2),
        ] {
            if let Some(x) = b.get_mut(i) {
                *x = v;
            }
        }
        if let Some(dev) = b.get_mut(6..12) {
            dev.copy_from_slice(&self.device);
        }
        let covered = token::covered(&b);
        for (domain, _, k) in &self.keys {
            let tk = token::token_key(k, domain.as_str(), self.device_id()?, Period::of(date))?;
            let t = TokenKey::new(&tk).token(&covered);
            let at = if role_of(domain) == 1 { 43 } else { 47 };
            if let Some(slot) = b.get_mut(at..at + 4) {
                slot.copy_from_slice(&t);
            }
        }
        Ok(b)
    }
}
