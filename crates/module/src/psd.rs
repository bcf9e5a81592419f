//! PSD packages (seed 001): a postal security device's whole state, kept in the
//! host's database and trusted by a module only after its MAC verifies. The MAC
//! key, the indicium signing key and the key-encrypting key of the customer's
//! secrets travel inside the package as key tokens under the MKS.
//!
//! Built so far: the package, Initialize PSD and Authorize PSD. The customer
//! and provider commands, create indicium and checkpoints follow
//! (`docs/psd-plan.md`).

use postvault_crypto::mac;
use postvault_crypto::sig::{PublicKey, SigAlg, SigningKey};
use postvault_indicium::cert::{Certificate, PsdCertificate, verify_chain};
use postvault_indicium::{Date, DeviceId, Money};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::codec;
use crate::error::{Error, Result};
use crate::mks::MksSlots;
use crate::token::{KeyToken, KeyType, KeyUsage};

/// Package format version.
pub const PACKAGE_VERSION: u8 = 1;
const MAC_LABEL: &[u8] = b"postvault psd package v1";
const POSSESSION_LABEL: &[u8] = b"postvault psd key possession v1";

/// The PSD lifecycle (seed 001).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PsdState {
    /// Keys made, registers zero; waits for its certificate.
    Raw,
    /// Certificate loaded; waits for a customer.
    Unleased,
    /// Customer assigned and their secrets received.
    Assigned,
    /// Licensed: prints postage.
    Leased,
    /// A lost passphrase is being replaced.
    PasswordReset,
    /// Refunded and closed: no command runs on it again.
    Withdrawn,
}

/// The package's contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsdBody {
    /// Format version.
    pub version: u8,
    /// Device id (indicium layout bytes).
    pub device_id: [u8; 6],
    /// Lifecycle state.
    pub state: PsdState,
    /// Ascending register: postage printed.
    #[serde(with = "crate::codec::tenths")]
    pub ar: Money,
    /// Descending register: postage available.
    #[serde(with = "crate::codec::tenths")]
    pub dr: Money,
    /// Serial of the indicium key certificate, once authorised.
    pub certificate_serial: Option<u32>,
    /// Licensing ZIP (ZIP5 * 10000 + plus4), once the customer is authorised.
    pub licensing_zip: Option<u32>,
    /// Key token of the indicium signing key (P-256).
    pub signing_key: Vec<u8>,
    /// Key token of the package MAC key.
    pub mac_key: Vec<u8>,
    /// Key token of the key-encrypting key for the customer's secrets.
    pub kek: Vec<u8>,
    /// Module time of the last transaction.
    pub last_transaction: u64,
    /// The challenge the next customer request must carry.
    pub last_challenge: [u8; 16],
    /// Transactions on this package so far.
    pub sequence: u64,
}

/// Proof that a package's MAC verified under the module's MKS; only
/// [`PsdPackage::open`] makes one, and every change to a package needs one.
#[derive(Debug)]
pub struct PackageMacValid {
    _private: (),
}

/// A package as stored: the encoded body and its MAC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsdPackage {
    /// Encoded [`PsdBody`].
    pub body: Vec<u8>,
    /// HMAC-SHA-256 under the package MAC key over a label and the body.
    pub mac: [u8; 32],
}

fn open_token(bytes: &[u8], usage: KeyUsage, slots: &MksSlots) -> Result<Zeroizing<Vec<u8>>> {
    let token = KeyToken::decode(bytes)?;
    if token.header.usage != usage {
        return Err(Error::Psd {
            what: "a key token in the package has the wrong usage",
        });
    }
    Ok(token.open(slots)?.0)
}

fn mac_key(body: &PsdBody, slots: &MksSlots) -> Result<postvault_crypto::Secret32> {
    let key = open_token(&body.mac_key, KeyUsage::PackageMac, slots)?;
    Ok(postvault_crypto::Secret32::from_slice(&key)?)
}

impl PsdPackage {
    /// Encodes for the database.
    ///
    /// # Errors
    /// [`Error::Malformed`] (never for a package the module made).
    pub fn encode(&self) -> Result<Vec<u8>> {
        codec::encode(self)
    }

    /// Decodes from the database.
    ///
    /// # Errors
    /// [`Error::Malformed`].
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        codec::decode(bytes, "PSD package")
    }

    /// Seals a body under its own MAC key (which the body names as a token).
    ///
    /// # Errors
    /// [`Error::Token`] if the MAC key token does not open; [`Error::Malformed`].
    pub fn seal(body: &PsdBody, slots: &MksSlots, _proof: &PackageMacValid) -> Result<Self> {
        Self::seal_new(body, slots)
    }

    fn seal_new(body: &PsdBody, slots: &MksSlots) -> Result<Self> {
        let bytes = codec::encode(body)?;
        let mac = mac::hmac_sha256(&mac_key(body, slots)?, &[MAC_LABEL, &bytes]);
        Ok(Self { body: bytes, mac })
    }

    /// Checks the MAC (the seed's first check of every PSD command) and returns the body.
    ///
    /// # Errors
    /// [`Error::Psd`] if the MAC does not verify or the version is unknown;
    /// [`Error::Token`] if the MAC key token does not open under this module's MKS.
    pub fn open(&self, slots: &MksSlots) -> Result<(PsdBody, PackageMacValid)> {
        let body: PsdBody = codec::decode(&self.body, "PSD package body")?;
        if body.version != PACKAGE_VERSION {
            return Err(Error::Psd {
                what: "unknown PSD package version",
            });
        }
        mac::verify_hmac_sha256(&mac_key(&body, slots)?, &[MAC_LABEL, &self.body], &self.mac)
            .map_err(|_| Error::Psd {
                what: "the package MAC does not verify (altered or not this vault's)",
            })?;
        Ok((body, PackageMacValid { _private: () }))
    }
}

/// What Initialize PSD returns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewPsd {
    /// The package for the database.
    pub package: PsdPackage,
    /// The indicium signing public key (algorithm id, bytes), for the CA.
    pub public_key: (u8, Vec<u8>),
    /// Signature with that key over a label, the device id and the key: proof
    /// of possession for the certificate authority.
    pub possession: Vec<u8>,
}

/// The bytes a PSD signs to prove it holds its key.
#[must_use]
pub fn possession_message(device_id: &[u8; 6], public_key: &[u8]) -> Vec<u8> {
    [POSSESSION_LABEL, device_id, public_key].concat()
}

/// Initialize PSD: keys, zero registers, Raw.
///
/// # Errors
/// [`Error::InvalidArgument`] for a malformed device id; [`Error::Mks`] without an active MKS.
pub fn initialize(device_id: [u8; 6], slots: &MksSlots, now: u64) -> Result<NewPsd> {
    DeviceId::from_bytes(device_id).map_err(|_| Error::InvalidArgument {
        what: "device id: two letters A-Z and a 32-bit serial",
    })?;
    let mks = slots.active.as_ref().ok_or(Error::Mks {
        what: "there is no active master key set",
    })?;
    let owner = hex::encode(device_id);
    let signing = SigningKey::generate(SigAlg::EcdsaP256Sha256)?;
    let public = signing.public_key();
    let seal =
        |t: KeyType, u: KeyUsage, key: &[u8]| KeyToken::seal(mks, t, u, &owner, key)?.encode();
    let body = PsdBody {
        version: PACKAGE_VERSION,
        device_id,
        state: PsdState::Raw,
        ar: Money::ZERO,
        dr: Money::ZERO,
        certificate_serial: None,
        licensing_zip: None,
        signing_key: seal(
            KeyType::Signing(public.alg().id()),
            KeyUsage::IndiciumSigning,
            signing.to_pkcs8()?.expose(),
        )?,
        mac_key: seal(
            KeyType::Secret32,
            KeyUsage::PackageMac,
            postvault_crypto::Secret32::generate()?.expose(),
        )?,
        kek: seal(
            KeyType::Secret32,
            KeyUsage::CustomerKek,
            postvault_crypto::Secret32::generate()?.expose(),
        )?,
        last_transaction: now,
        last_challenge: postvault_crypto::rand::bytes()?,
        sequence: 0,
    };
    let possession = signing.sign(&possession_message(&device_id, public.as_bytes()))?;
    Ok(NewPsd {
        package: PsdPackage::seal_new(&body, slots)?,
        public_key: (public.alg().id(), public.as_bytes().to_vec()),
        possession: possession.as_bytes().to_vec(),
    })
}

/// The indicium signing key's public half.
///
/// # Errors
/// [`Error::Token`] / [`Error::Crypto`] if the key token does not open.
pub fn signing_public_key(body: &PsdBody, slots: &MksSlots) -> Result<PublicKey> {
    let pkcs8 = open_token(&body.signing_key, KeyUsage::IndiciumSigning, slots)?;
    Ok(SigningKey::from_pkcs8(SigAlg::EcdsaP256Sha256, &pkcs8)?.public_key())
}

/// Authorize PSD: the certificate must chain to the crypto-card's postal CA and
/// be valid today, and name this package's device id and signing key → Unleased.
///
/// # Errors
/// [`Error::Psd`] naming the failed check; nothing changes.
pub fn authorize(
    body: &PsdBody,
    _proof: &PackageMacValid,
    ca_der: &[u8],
    certificate_der: &[u8],
    slots: &MksSlots,
    now: u64,
) -> Result<PsdBody> {
    if body.state != PsdState::Raw {
        return Err(Error::Psd {
            what: "Authorize PSD needs a package in the Raw state",
        });
    }
    let bad = |what: &'static str| move |_| Error::Psd { what };
    let ca = Certificate::from_der(ca_der)
        .map_err(bad("the crypto-card's CA certificate is unreadable"))?;
    let cert = PsdCertificate::from_certificate(
        Certificate::from_der(certificate_der).map_err(bad("the PSD certificate is unreadable"))?,
    )
    .map_err(bad("the certificate is not a PSD certificate"))?;
    let today = Date::from_unix_seconds(i64::try_from(now).unwrap_or(i64::MAX))
        .map_err(bad("the module clock is out of range"))?;
    verify_chain(&ca, cert.certificate(), today).map_err(bad(
        "the certificate does not chain to the postal CA or is not valid today",
    ))?;
    if cert.device_id().to_bytes() != body.device_id {
        return Err(Error::Psd {
            what: "the certificate names another device id",
        });
    }
    if cert.certificate().public_key() != Some(&signing_public_key(body, slots)?) {
        return Err(Error::Psd {
            what: "the certificate is for another key than this PSD's",
        });
    }
    Ok(PsdBody {
        state: PsdState::Unleased,
        certificate_serial: Some(cert.serial()),
        last_transaction: now,
        sequence: body.sequence.saturating_add(1),
        ..body.clone()
    })
}
