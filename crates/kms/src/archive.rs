//! The domain archive's rules (seed 002, "Domain Archive", figs. 14-15):
//! which signed record may follow which for one domain master key. The
//! archive keeps, per install domain, monotonic key ids and, per key, every
//! record in order; this module decides whether a record is admitted, and
//! the store writes it.
//!
//! A record is admitted only if
//! - it is of a kind the archive keeps (its record table);
//! - its domain is one the archive knows (its configuration table), from a
//!   directory signed by the domain key set;
//! - it is signed by the process that must write it: oak for New, the install
//!   domain's brass for Installed or Bad, the country sub-domain's brass for
//!   Active and Obsolete;
//! - its status follows the current one (New → Installed or Bad → Active →
//!   Obsolete), for the same key and meter;
//! - its time event is later than the key's last.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Fault, KmsError, Result};
use crate::ids::DomainId;
use crate::message::{
    self, ArchiveInstalled, ArchiveNew, ArchiveRegistered, DomainDirectory, KeyStatus, RecordKind,
    Signed,
};

/// The record kinds the archive keeps.
pub const RECORD_TABLE: [RecordKind; 3] = [
    RecordKind::ArchiveNew,
    RecordKind::ArchiveInstalled,
    RecordKind::ArchiveRegistered,
];

/// The domains the archive knows, from directories checked against the
/// domain key set's authentication key.
#[derive(Clone, Debug)]
pub struct Directories {
    dks: Vec<u8>,
    map: BTreeMap<DomainId, DomainDirectory>,
}

impl Directories {
    /// No domains yet; `dks` checks directories.
    #[must_use]
    pub fn new(dks: &[u8]) -> Self {
        Self {
            dks: dks.to_vec(),
            map: BTreeMap::new(),
        }
    }

    /// Adds a domain from its signed directory.
    ///
    /// # Errors
    /// [`Fault::BadSignature`] if the domain key set did not sign it;
    /// [`Fault::UnknownDomain`] for a sub-domain whose install domain is unknown.
    pub fn add(&mut self, signed: &Signed) -> Result<DomainDirectory> {
        let dir: DomainDirectory = signed.open(
            RecordKind::DomainDirectory,
            &message::public_key(&self.dks)?,
        )?;
        if dir.domain.is_sub_domain() && !self.map.contains_key(&dir.domain.install_domain()) {
            return Err(KmsError::refused(
                Fault::UnknownDomain,
                format!("{} before its install domain", dir.domain),
            ));
        }
        self.map.insert(dir.domain.clone(), dir.clone());
        Ok(dir)
    }

    /// A known domain's directory.
    ///
    /// # Errors
    /// [`Fault::UnknownDomain`] if it is not known.
    pub fn get(&self, domain: &DomainId) -> Result<&DomainDirectory> {
        self.map.get(domain).ok_or_else(|| {
            KmsError::refused(
                Fault::UnknownDomain,
                format!("{domain} is not in the archive's configuration table"),
            )
        })
    }

    /// Every known domain.
    pub fn domains(&self) -> impl Iterator<Item = &DomainId> {
        self.map.keys()
    }
}

/// What the archive writes for an admitted record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The install domain (the key's id space).
    pub domain: DomainId,
    /// The key id.
    pub key_id: u64,
    /// The country sub-domain, once registered.
    pub sub_domain: Option<DomainId>,
    /// The meter, once installed.
    pub device: Option<[u8; 6]>,
    /// The status this record sets.
    pub status: KeyStatus,
    /// Its time event (Unix milliseconds).
    pub time: u64,
    /// Which process signed it (`oak`, `brass`, `brass COUNTRY`).
    pub signer: String,
    /// The record.
    pub record: Signed,
}

fn signed_by(record: &Signed, kind: RecordKind, key: Option<&[u8]>) -> Result<()> {
    let key = key
        .ok_or_else(|| KmsError::refused(Fault::UnknownDomain, "the domain has no such process"))?;
    record.verify(kind, &message::public_key(key)?)
}

/// Decides whether `record` may follow `current` (the key's latest entry, or
/// `None` for a new key).
///
/// # Errors
/// The [`Fault`] of the first rule it breaks; nothing is written then.
pub fn admit(dirs: &Directories, current: Option<&Entry>, record: &Signed) -> Result<Entry> {
    if !RECORD_TABLE.contains(&record.kind) {
        return Err(KmsError::refused(
            Fault::UnknownRecord,
            format!("the archive keeps no {:?} records", record.kind),
        ));
    }
    let entry = match record.kind {
        RecordKind::ArchiveNew => {
            let r: ArchiveNew = record.peek()?;
            let dir = dirs.get(&r.domain)?;
            signed_by(record, record.kind, dir.oak_auth.as_deref())?;
            Entry {
                domain: r.domain,
                key_id: r.key_id,
                sub_domain: None,
                device: None,
                status: r.status,
                time: r.time,
                signer: "oak".into(),
                record: record.clone(),
            }
        }
        RecordKind::ArchiveInstalled => {
            let r: ArchiveInstalled = record.peek()?;
            let dir = dirs.get(&r.domain)?;
            signed_by(record, record.kind, Some(&dir.brass_auth))?;
            Entry {
                domain: r.domain,
                key_id: r.key_id,
                sub_domain: None,
                device: Some(r.device),
                status: r.status,
                time: r.time,
                signer: "brass".into(),
                record: record.clone(),
            }
        }
        _ => {
            let r: ArchiveRegistered = record.peek()?;
            let dir = dirs.get(&r.domain)?;
            if !r.domain.is_sub_domain() {
                return Err(KmsError::refused(
                    Fault::UnknownDomain,
                    "registration lives in a country sub-domain",
                ));
            }
            signed_by(record, record.kind, Some(&dir.brass_auth))?;
            Entry {
                domain: r.domain.install_domain(),
                key_id: r.key_id,
                sub_domain: Some(r.domain.clone()),
                device: Some(r.device),
                status: r.status,
                time: r.time,
                signer: format!("brass {}", r.domain),
                record: record.clone(),
            }
        }
    };
    match current {
        None if entry.status == KeyStatus::New => Ok(entry),
        None => Err(KmsError::refused(
            Fault::InvalidTransition,
            format!("key {} of {} has no New record", entry.key_id, entry.domain),
        )),
        Some(cur) => {
            if cur.domain != entry.domain || cur.key_id != entry.key_id {
                return Err(KmsError::refused(
                    Fault::Mismatch,
                    "the record is for another key",
                ));
            }
            if !cur.status.can_become(entry.status) {
                return Err(KmsError::refused(
                    Fault::InvalidTransition,
                    format!(
                        "{} → {} is not a key status transition",
                        cur.status.name(),
                        entry.status.name()
                    ),
                ));
            }
            if cur.device.is_some() && cur.device != entry.device {
                return Err(KmsError::refused(
                    Fault::Mismatch,
                    "the record is for another meter",
                ));
            }
            if cur.sub_domain.is_some() && cur.sub_domain != entry.sub_domain {
                return Err(KmsError::refused(
                    Fault::UnknownDomain,
                    "a key registered in one country never moves to another",
                ));
            }
            if entry.time <= cur.time {
                return Err(KmsError::refused(
                    Fault::TimeOrder,
                    format!(
                        "time event {} is not after the key's last ({})",
                        entry.time, cur.time
                    ),
                ));
            }
            Ok(entry)
        }
    }
}
