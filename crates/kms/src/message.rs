//! The KMS's messages (seed 002, figs. 29-31) and the signed records inside
//! them. Records are signed by the box process that wrote them (ECDSA P-256
//! where the seed has RSA; DESIGN §2); keys travel HPKE-sealed to the
//! receiving process (for the seed's RSA encryption) or AES-256-GCM-sealed
//! under a brass process's own secret key (for its DES key).
//!
//! | message | from → to | what |
//! |---|---|---|
//! | MI0 `RequestKey` | KDC → KMS computer | domain, steel id |
//! | MI0' `KeyId` | archive → KMS computer | a new key id |
//! | MI1 `GenerateKey` | KMS computer → oak | domain, steel id, key id, time |
//! | MI2 `NewKey` | oak → KMS computer | MI3 and MI4 for the same key |
//! | MI3 [`ArchiveNew`] | oak → archive, for brass | the key sealed to brass, signed by oak |
//! | MI4 [`InstallRecord`] | oak → steel | the key sealed to steel and the test tokens, signed by oak |
//! | MI5 [`MeterInstall`] | steel → meter | the key sealed to the meter |
//! | MI6 [`MeterEvidence`] | meter → steel | the meter's test tokens |
//! | MI7 [`KeyInstalled`] | steel → brass | installed (or bad), with the meter's test tokens, signed by steel |
//! | MI8 `ConfirmInstalled` | KMS computer → brass | MI3 and MI7 with the same key id |
//! | MI9 [`ArchiveInstalled`] | brass → archive | installed or bad, the key under brass's secret key, signed by brass |
//! | MI10 [`ConfirmInstall`] | brass → KDC | installed, key id, meter, signed by brass |
//! | MR1 [`RegistrationReport`] | meter → brass of the country | meter, indicia number, country, date, under the key |
//! | MR2 `RegistrationRequest` | KMS computer → brass of the country | MR1 and MI9 for the same meter |
//! | MR3 [`ArchiveRegistered`] | brass → archive | active, the key under the country brass's secret key, signed |
//! | MR4 [`ConfirmRegistration`] | brass → KMS computer | registered, signed |

use postvault_crypto::sig::{PublicKey, SigAlg, Signature, SigningKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Fault, KmsError, Result};
use crate::ids::{BoxId, DomainId};

const SIGN_LABEL: &[u8] = b"postvault kms record v1";

/// The kinds of record (the system record table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RecordKind {
    /// A domain's public directory, signed by the manufacturing box.
    DomainDirectory,
    /// Set Secure Box ID, signed by the manufacturing box.
    SetBoxId,
    /// A box's answer to Set Secure Box ID: its startup confidentiality key.
    StartupReply,
    /// Make Domain Process: a domain's keys for one box, signed by the manufacturing box.
    MakeDomainProcess,
    /// MI3.
    ArchiveNew,
    /// MI4.
    InstallRecord,
    /// MI7.
    KeyInstalled,
    /// MI9.
    ArchiveInstalled,
    /// MI10.
    ConfirmInstall,
    /// MR3 (and the Obsolete record that follows it).
    ArchiveRegistered,
    /// MR4.
    ConfirmRegistration,
    /// A temporal token key for a tin box.
    TokenKey,
}

/// A record and the signature of the process that wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    /// What the body is.
    pub kind: RecordKind,
    /// The postcard encoding of the record.
    pub body: Vec<u8>,
    /// P-256 signature over a label, the kind and the body.
    pub signature: Vec<u8>,
}

fn kind_byte(kind: RecordKind) -> Result<u8> {
    Ok(*postcard::to_allocvec(&kind)
        .map_err(|_| KmsError::refused(Fault::Crypto, "record kind encoding"))?
        .first()
        .unwrap_or(&0))
}

impl Signed {
    /// Signs a record.
    ///
    /// # Errors
    /// If encoding or signing fails.
    pub fn sign<T: Serialize>(kind: RecordKind, record: &T, key: &SigningKey) -> Result<Self> {
        let body = encode(record)?;
        let signature = key.sign(&[SIGN_LABEL, &[kind_byte(kind)?], &body].concat())?;
        Ok(Self {
            kind,
            body,
            signature: signature.as_bytes().to_vec(),
        })
    }

    /// Checks the signature under `signer` and that the record is of `kind`,
    /// then decodes it.
    ///
    /// # Errors
    /// [`Fault::UnknownRecord`] for another kind, [`Fault::BadSignature`] if
    /// the signature does not verify, a syntax error if the body does not parse.
    pub fn open<T: DeserializeOwned>(&self, kind: RecordKind, signer: &PublicKey) -> Result<T> {
        self.verify(kind, signer)?;
        decode(&self.body)
    }

    /// Checks the signature under `signer` and that the record is of `kind`.
    ///
    /// # Errors
    /// [`Fault::UnknownRecord`] for another kind, [`Fault::BadSignature`] if
    /// the signature does not verify.
    pub fn verify(&self, kind: RecordKind, signer: &PublicKey) -> Result<()> {
        if self.kind != kind {
            return Err(KmsError::refused(
                Fault::UnknownRecord,
                format!("expected a {kind:?} record, got {:?}", self.kind),
            ));
        }
        let sig = Signature::from_bytes(signer.alg(), &self.signature)
            .map_err(|_| KmsError::refused(Fault::BadSignature, "malformed signature"))?;
        signer
            .verify(
                &[SIGN_LABEL, &[kind_byte(kind)?], &self.body].concat(),
                &sig,
            )
            .map_err(|_| {
                KmsError::refused(
                    Fault::BadSignature,
                    format!("the {kind:?} record is not signed by the process that must write it"),
                )
            })
    }

    /// Decodes the body without checking the signature (to learn which key
    /// should check it; never to trust it).
    ///
    /// # Errors
    /// A syntax error if the body does not parse.
    pub fn peek<T: DeserializeOwned>(&self) -> Result<T> {
        decode(&self.body)
    }
}

/// Postcard encoding.
///
/// # Errors
/// Never for the crate's own types.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|_| KmsError::refused(Fault::Crypto, "encoding"))
}

/// Postcard decoding of untrusted bytes.
///
/// # Errors
/// [`KmsError::Syntax`] if they do not parse.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        _ => Err(KmsError::Syntax {
            what: "KMS record or message (malformed, or with bytes after it)",
        }),
    }
}

/// A P-256 public key from its bytes.
///
/// # Errors
/// [`Fault::Crypto`] if malformed.
pub fn public_key(bytes: &[u8]) -> Result<PublicKey> {
    Ok(PublicKey::from_bytes(SigAlg::EcdsaP256Sha256, bytes)?)
}

/// A domain's public directory (signed by the manufacturing box that created
/// it): which keys sign and receive in each process of the domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainDirectory {
    /// The domain.
    pub domain: DomainId,
    /// The manufacturing box that created it.
    pub manufacturing: BoxId,
    /// Creation time (Unix milliseconds).
    pub created: u64,
    /// The oak process's authentication key (install domains).
    pub oak_auth: Option<Vec<u8>>,
    /// The steel process's authentication key (install domains).
    pub steel_auth: Option<Vec<u8>>,
    /// The steel process's confidentiality key, HPKE (install domains).
    pub steel_conf: Option<[u8; 32]>,
    /// The brass process's authentication key.
    pub brass_auth: Vec<u8>,
    /// The brass process's confidentiality key, HPKE (install domains).
    pub brass_conf: Option<[u8; 32]>,
}

/// Domain master key status (seed 002, figs. 14-15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyStatus {
    /// Generated by oak, archived.
    New,
    /// Installed in a meter and checked by brass.
    Installed,
    /// Something failed during distribution or installation.
    Bad,
    /// Registered to an indicia number: verification allowed.
    Active,
    /// The meter left service.
    Obsolete,
}

impl KeyStatus {
    /// Whether the lifecycle allows moving from `self` to `next`:
    /// New → Installed or Bad; Installed → Active; Active → Obsolete.
    #[must_use]
    pub fn can_become(self, next: KeyStatus) -> bool {
        matches!(
            (self, next),
            (KeyStatus::New, KeyStatus::Installed | KeyStatus::Bad)
                | (KeyStatus::Installed, KeyStatus::Active)
                | (KeyStatus::Active, KeyStatus::Obsolete)
        )
    }

    /// The status's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            KeyStatus::New => "new",
            KeyStatus::Installed => "installed",
            KeyStatus::Bad => "bad",
            KeyStatus::Active => "active",
            KeyStatus::Obsolete => "obsolete",
        }
    }
}

/// MI3: a new domain master key for the archive, readable only by the domain's brass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveNew {
    /// Always [`KeyStatus::New`].
    pub status: KeyStatus,
    /// The oak box that made it.
    pub oak: BoxId,
    /// The install domain.
    pub domain: DomainId,
    /// The steel box it is for.
    pub steel: BoxId,
    /// The key id the archive gave.
    pub key_id: u64,
    /// The key, HPKE-sealed to the domain's brass confidentiality key.
    pub key_for_brass: Vec<u8>,
    /// Time event: generation (Unix milliseconds).
    pub time: u64,
}

/// MI4: a new domain master key for one steel box.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallRecord {
    /// Always [`KeyStatus::New`].
    pub status: KeyStatus,
    /// The oak box that made it.
    pub oak: BoxId,
    /// The install domain.
    pub domain: DomainId,
    /// The steel box that may install it.
    pub steel: BoxId,
    /// The key id.
    pub key_id: u64,
    /// The key, HPKE-sealed to the domain's steel confidentiality key.
    pub key_for_steel: Vec<u8>,
    /// The test tokens under the key (the test data of the seed).
    pub test_tokens: [u8; 16],
    /// Time event: generation.
    pub time: u64,
}

/// MI5: the key sealed to one meter (see `postvault_indicium::token::install_aad`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterInstall {
    /// The install domain.
    pub domain: DomainId,
    /// The key id.
    pub key_id: u64,
    /// The meter (manufacturing sequence number: the device id).
    pub device: [u8; 6],
    /// Vendor (1) or postal (2) token key.
    pub role: u8,
    /// The key, HPKE-sealed to the meter.
    pub sealed_key: Vec<u8>,
}

/// MI6: the meter's evidence of the installed key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterEvidence {
    /// The meter.
    pub device: [u8; 6],
    /// The install domain.
    pub domain: DomainId,
    /// The key id.
    pub key_id: u64,
    /// The meter's test tokens under the key it installed.
    pub test_tokens: [u8; 16],
}

/// MI7: the steel box reports the installation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInstalled {
    /// Installed if the meter's test tokens matched oak's, else Bad.
    pub status: KeyStatus,
    /// The oak box that made the key.
    pub oak: BoxId,
    /// The install domain.
    pub domain: DomainId,
    /// The steel box.
    pub steel: BoxId,
    /// The key id.
    pub key_id: u64,
    /// The meter.
    pub device: [u8; 6],
    /// The meter's test tokens.
    pub test_tokens: [u8; 16],
    /// Time event: installation.
    pub time: u64,
}

/// MI9: the archive record after installation, readable only by this domain's brass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveInstalled {
    /// Installed or Bad.
    pub status: KeyStatus,
    /// The oak box.
    pub oak: BoxId,
    /// The install domain.
    pub domain: DomainId,
    /// The steel box.
    pub steel: BoxId,
    /// The key id.
    pub key_id: u64,
    /// The meter.
    pub device: [u8; 6],
    /// The key, AES-256-GCM under the brass process's secret key.
    pub key_for_brass: Vec<u8>,
    /// Time event: the brass check.
    pub time: u64,
}

/// MI10: the brass box confirms the installation to manufacturing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmInstall {
    /// Installed or Bad.
    pub status: KeyStatus,
    /// The install domain.
    pub domain: DomainId,
    /// The key id.
    pub key_id: u64,
    /// The meter.
    pub device: [u8; 6],
}

/// MR1: the meter's registration report for one of its keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationReport {
    /// The install domain of the key.
    pub domain: DomainId,
    /// The key id.
    pub key_id: u64,
    /// The meter.
    pub device: [u8; 6],
    /// Indicia serial number.
    pub indicia_number: String,
    /// Country.
    pub country: String,
    /// Meter registration date (days since 2000-01-01).
    pub date: u16,
    /// The registration token under the key.
    pub token: [u8; 16],
}

/// MR3: the archive record of a registered (Active) key, and later its Obsolete
/// record: the key under the country sub-domain brass's secret key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRegistered {
    /// Active or Obsolete.
    pub status: KeyStatus,
    /// The country sub-domain.
    pub domain: DomainId,
    /// The key id in the install domain.
    pub key_id: u64,
    /// The meter.
    pub device: [u8; 6],
    /// Indicia serial number.
    pub indicia_number: String,
    /// Country.
    pub country: String,
    /// Meter registration date (days since 2000-01-01): tokens dated earlier do not verify.
    pub registered: u16,
    /// For Obsolete: the last day tokens verify (days since 2000-01-01).
    pub last_day: Option<u16>,
    /// The key, AES-256-GCM under the sub-domain brass's secret key.
    pub key_for_brass: Vec<u8>,
    /// Time event: registration, or obsolescence.
    pub time: u64,
}

/// MR4: the brass box confirms registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmRegistration {
    /// Active.
    pub status: KeyStatus,
    /// The country sub-domain.
    pub domain: DomainId,
    /// The meter.
    pub device: [u8; 6],
    /// Indicia serial number.
    pub indicia_number: String,
    /// Country.
    pub country: String,
}

/// Set Secure Box ID, from a manufacturing box to a new box.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetBoxId {
    /// The id given.
    pub id: BoxId,
    /// The manufacturing box giving it.
    pub manufacturing: BoxId,
    /// Time.
    pub time: u64,
}

/// A new box's answer: its id and startup confidentiality key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartupReply {
    /// The box.
    pub id: BoxId,
    /// Its startup confidentiality key (HPKE public).
    pub startup_conf: [u8; 32],
}

/// Make Domain Process: one domain's keys for one box, sealed to its startup key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MakeDomainProcess {
    /// The box.
    pub id: BoxId,
    /// The domain's directory (signed by the manufacturing box).
    pub directory: Signed,
    /// For a sub-domain: the install domain's directory.
    pub parent: Option<Signed>,
    /// The process's keys, HPKE-sealed to the box's startup confidentiality key.
    pub sealed_keys: Vec<u8>,
    /// Time.
    pub time: u64,
}

/// A temporal token key record for a tin box (claims 5-7 of the seed): the
/// meter, the month, and the token key sealed to that tin box, signed by the
/// country brass process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenKeyRecord {
    /// The country sub-domain.
    pub domain: DomainId,
    /// The tin box it is for.
    pub tin: BoxId,
    /// The meter.
    pub device: [u8; 6],
    /// Vendor (1) or postal (2).
    pub role: u8,
    /// The month (`year * 100 + month`).
    pub period: u32,
    /// First day tokens verify (registration).
    pub first_day: u16,
    /// Last day tokens verify (when the key is Obsolete).
    pub last_day: Option<u16>,
    /// The temporal token key, HPKE-sealed to the tin box's startup key.
    pub sealed_key: Vec<u8>,
}
