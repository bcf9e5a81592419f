//! Initialize Crypto-Card (seed 001): the settings and keys every module of the
//! vault shares for postal work. The security officer runs it once on the master,
//! which generates the shared keys and hands them out as key tokens under the
//! MKS; each clone runs it with those tokens. Loaded: the postal CA certificate,
//! the provider's public key, indicium value limits and register ceilings.
//! Generated and shared: the registration signing key (signs challenges during
//! customer registration), the registration HPKE key (customers seal their
//! secrets to it) and the checkpoint MAC key.

use postvault_crypto::hpke;
use postvault_crypto::sig::{PublicKey, SigAlg, SigningKey};
use postvault_indicium::Money;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::mks::MksSlots;
use crate::token::{KeyToken, KeyType, KeyUsage};

/// What the security officer loads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardSettings {
    /// The provider's public key (algorithm id, bytes): it signs value downloads and authorisations.
    pub provider_key: (u8, Vec<u8>),
    /// The postal certificate authority's certificate, DER.
    pub ca_certificate: Vec<u8>,
    /// Smallest indicium value.
    #[serde(with = "crate::codec::tenths")]
    pub min_value: Money,
    /// Largest indicium value.
    #[serde(with = "crate::codec::tenths")]
    pub max_value: Money,
    /// The descending register may not exceed this after a download.
    #[serde(with = "crate::codec::tenths")]
    pub dr_ceiling: Money,
    /// The ascending register may not exceed this after an indicium.
    #[serde(with = "crate::codec::tenths")]
    pub ar_ceiling: Money,
}

impl CardSettings {
    /// Checks the settings make sense.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for inconsistent limits, a malformed provider key or an empty certificate.
    pub fn check(&self) -> Result<()> {
        if self.min_value > self.max_value
            || self.max_value > self.dr_ceiling
            || self.dr_ceiling > self.ar_ceiling
            || self.min_value == Money::ZERO
        {
            return Err(Error::InvalidArgument {
                what: "limits: need 0 < minimum value <= maximum value <= DR ceiling <= AR ceiling",
            });
        }
        // A refund indicium carries the whole DR as its postage value.
        if self.dr_ceiling > postvault_indicium::indicium::MAX_POSTAGE
            || self.ar_ceiling > postvault_indicium::indicium::MAX_REGISTER
        {
            return Err(Error::InvalidArgument {
                what: "ceilings: the DR ceiling must fit an indicium's postage field and the AR ceiling its register field",
            });
        }
        if self.ca_certificate.is_empty() || self.ca_certificate.len() > 8192 {
            return Err(Error::InvalidArgument {
                what: "the CA certificate must be 1 to 8192 bytes of DER",
            });
        }
        let (alg, key) = &self.provider_key;
        SigAlg::from_id(*alg)
            .and_then(|a| PublicKey::from_bytes(a, key))
            .map_err(|_| Error::InvalidArgument {
                what: "the provider key is not a valid public key",
            })?;
        Ok(())
    }
}

/// The shared secret keys as key tokens, to load into other modules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardTokens {
    /// Registration signing key (PKCS#8).
    pub registration_signing: Vec<u8>,
    /// Registration HPKE private key.
    pub registration_hpke: Vec<u8>,
    /// Checkpoint MAC key.
    pub checkpoint_mac: Vec<u8>,
}

/// The public halves customers' software needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardPublic {
    /// Registration signing public key (algorithm id, bytes): built into the client.
    pub registration_signing: (u8, Vec<u8>),
    /// Registration HPKE public key: customers seal their secrets to it.
    pub registration_hpke: [u8; 32],
}

/// The crypto-card as kept in NVM slot [`crate::nvm::Slot::CryptoCard`].
#[derive(Clone, Serialize, Deserialize)]
pub struct CryptoCard {
    /// Loaded settings.
    pub settings: CardSettings,
    /// Registration signing key, PKCS#8.
    pub registration_signing: Zeroizing<Vec<u8>>,
    /// Registration HPKE private key.
    pub registration_hpke: Zeroizing<[u8; 32]>,
    /// Checkpoint MAC key.
    pub checkpoint_mac: Zeroizing<[u8; 32]>,
}

/// What the registration signing key signs about the vendor key.
/// What the registration signing key signs when new customer secrets are installed.
const REGISTRATION_LABEL: &[u8] = b"postvault registration v1";

fn registration_message(
    device_id: &[u8; 6],
    customer_id: &str,
    challenge: &[u8; 16],
    vendor_key: &[u8; 32],
) -> Vec<u8> {
    let id_len = u32::try_from(customer_id.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes();
    [
        REGISTRATION_LABEL,
        device_id.as_slice(),
        &id_len,
        customer_id.as_bytes(),
        challenge.as_slice(),
        vendor_key.as_slice(),
    ]
    .concat()
}

fn check_signature(key: &(u8, Vec<u8>), message: &[u8], signature: &(u8, Vec<u8>)) -> Result<()> {
    let pk = postvault_crypto::sig::PublicKey::from_bytes(SigAlg::from_id(key.0)?, &key.1)?;
    let sig =
        postvault_crypto::sig::Signature::from_bytes(SigAlg::from_id(signature.0)?, &signature.1)?;
    pk.verify(message, &sig)?;
    Ok(())
}

impl CardPublic {
    /// Client: checks the registration signing key's signature over the vendor
    /// key (the client holds the signing key's public half from a trusted source).
    ///
    /// # Errors
    /// [`Error::Crypto`] if it does not verify.
    pub fn verify_vendor_key(&self, signature: &(u8, Vec<u8>)) -> Result<()> {
        check_signature(
            &self.registration_signing,
            &postvault_indicium::token::meter_key_message(&self.registration_hpke),
            signature,
        )
    }

    /// Client: checks the module's signature over a registration (the meter,
    /// the customer id, the reply's challenge and the vendor key).
    ///
    /// # Errors
    /// [`Error::Crypto`] if it does not verify.
    pub fn verify_registration(
        &self,
        device_id: &[u8; 6],
        customer_id: &str,
        challenge: &[u8; 16],
        signature: &(u8, Vec<u8>),
    ) -> Result<()> {
        check_signature(
            &self.registration_signing,
            &registration_message(device_id, customer_id, challenge, &self.registration_hpke),
            signature,
        )
    }
}

impl CryptoCard {
    fn sign(&self, message: &[u8]) -> Result<(u8, Vec<u8>)> {
        let key = SigningKey::from_pkcs8(SigAlg::EcdsaP256Sha256, &self.registration_signing)?;
        let s = key.sign(message)?;
        Ok((s.alg().id(), s.as_bytes().to_vec()))
    }

    /// The registration signing key's signature over the vendor key.
    ///
    /// # Errors
    /// [`Error::Crypto`].
    pub(crate) fn sign_vendor_key(&self) -> Result<(u8, Vec<u8>)> {
        let public = hpke::PrivateKey::from_secret(postvault_crypto::Secret32::from_bytes(
            *self.registration_hpke,
        ))?
        .public_key()?;
        self.sign(&postvault_indicium::token::meter_key_message(
            public.as_bytes(),
        ))
    }

    /// The registration signing key's signature over a registration.
    ///
    /// # Errors
    /// [`Error::Crypto`].
    pub(crate) fn sign_registration(
        &self,
        device_id: &[u8; 6],
        customer_id: &str,
        challenge: &[u8; 16],
    ) -> Result<(u8, Vec<u8>)> {
        let public = hpke::PrivateKey::from_secret(postvault_crypto::Secret32::from_bytes(
            *self.registration_hpke,
        ))?
        .public_key()?;
        self.sign(&registration_message(
            device_id,
            customer_id,
            challenge,
            public.as_bytes(),
        ))
    }

    /// Generates the shared keys (on the master).
    ///
    /// # Errors
    /// [`Error::Crypto`].
    pub fn generate(settings: CardSettings) -> Result<Self> {
        let signing = SigningKey::generate(SigAlg::EcdsaP256Sha256)?;
        let (hpke_key, _) = hpke::PrivateKey::generate()?;
        Ok(Self {
            settings,
            registration_signing: Zeroizing::new(signing.to_pkcs8()?.expose().to_vec()),
            registration_hpke: Zeroizing::new(*hpke_key.secret().expose()),
            checkpoint_mac: Zeroizing::new(*postvault_crypto::Secret32::generate()?.expose()),
        })
    }

    /// Loads the shared keys from tokens made by another module (on a clone).
    ///
    /// # Errors
    /// [`Error::Token`] if a token does not open or has the wrong usage; [`Error::Malformed`].
    pub fn load(settings: CardSettings, tokens: &CardTokens, slots: &MksSlots) -> Result<Self> {
        let open = |bytes: &[u8], usage: KeyUsage| -> Result<Zeroizing<Vec<u8>>> {
            let token = KeyToken::decode(bytes)?;
            if token.header.usage != usage {
                return Err(Error::Token {
                    what: "a crypto-card token has the wrong usage",
                });
            }
            Ok(token.open(slots)?.0)
        };
        let fixed = |v: Zeroizing<Vec<u8>>| -> Result<Zeroizing<[u8; 32]>> {
            <[u8; 32]>::try_from(v.as_slice())
                .map(Zeroizing::new)
                .map_err(|_| Error::Token {
                    what: "a crypto-card token holds a key of the wrong length",
                })
        };
        let card = Self {
            settings,
            registration_signing: open(
                &tokens.registration_signing,
                KeyUsage::RegistrationSigning,
            )?,
            registration_hpke: fixed(open(&tokens.registration_hpke, KeyUsage::RegistrationHpke)?)?,
            checkpoint_mac: fixed(open(&tokens.checkpoint_mac, KeyUsage::CheckpointMac)?)?,
        };
        card.public()?;
        Ok(card)
    }

    /// The shared keys as tokens under the active MKS.
    ///
    /// # Errors
    /// [`Error::Mks`] without an active MKS; [`Error::Crypto`].
    pub fn tokens(&self, slots: &MksSlots) -> Result<CardTokens> {
        let mks = slots.active.as_ref().ok_or(Error::Mks {
            what: "there is no active master key set",
        })?;
        let seal = |t: KeyType, u: KeyUsage, key: &[u8]| {
            KeyToken::seal(mks, t, u, "crypto-card", key)?.encode()
        };
        Ok(CardTokens {
            registration_signing: seal(
                KeyType::Signing(SigAlg::EcdsaP256Sha256.id()),
                KeyUsage::RegistrationSigning,
                &self.registration_signing,
            )?,
            registration_hpke: seal(
                KeyType::HpkeX25519,
                KeyUsage::RegistrationHpke,
                &self.registration_hpke[..],
            )?,
            checkpoint_mac: seal(
                KeyType::Secret32,
                KeyUsage::CheckpointMac,
                &self.checkpoint_mac[..],
            )?,
        })
    }

    /// Whether two cards hold the same shared keys (constant time).
    #[must_use]
    pub fn same_keys(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        let a = [
            self.registration_signing.as_slice(),
            &self.registration_hpke[..],
            &self.checkpoint_mac[..],
        ]
        .concat();
        let b = [
            other.registration_signing.as_slice(),
            &other.registration_hpke[..],
            &other.checkpoint_mac[..],
        ]
        .concat();
        let (a, b) = (Zeroizing::new(a), Zeroizing::new(b));
        bool::from(a.ct_eq(&b))
    }

    /// The registration signing key.
    ///
    /// # Errors
    /// [`Error::Crypto`] if the stored key is unreadable.
    pub fn registration_signer(&self) -> Result<SigningKey> {
        Ok(SigningKey::from_pkcs8(
            SigAlg::EcdsaP256Sha256,
            &self.registration_signing,
        )?)
    }

    /// The public keys for customers' software.
    ///
    /// # Errors
    /// [`Error::Crypto`] if a stored key is unreadable.
    pub fn public(&self) -> Result<CardPublic> {
        let pk = self.registration_signer()?.public_key();
        let hpke_key = hpke::PrivateKey::from_secret(postvault_crypto::Secret32::from_bytes(
            *self.registration_hpke,
        ))?;
        Ok(CardPublic {
            registration_signing: (pk.alg().id(), pk.as_bytes().to_vec()),
            registration_hpke: *hpke_key.public_key()?.as_bytes(),
        })
    }
}
