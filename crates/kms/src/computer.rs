//! The KMS computer (seed 002, figs. 24-28): it holds no keys. It relays
//! framed messages between the secure boxes, the domain archive and the
//! meters, stamps time events, and keeps the archive's rules
//! ([`crate::archive::admit`]) before anything is written.
//!
//! A meter is reached through its host (the vault), so installation is two
//! calls around the meter's own step: [`Kms::steel_install`] hands back MI5,
//! the host has the meter install it and returns MI6 to
//! [`Kms::finish_install`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::OperationShare;
use crate::archive::{self, Directories, Entry};
use crate::boxes::{SecureBox, role_of};
use crate::error::{Fault, KmsError, Result};
use crate::ids::{BoxId, BoxKind, DomainId};
use crate::message::{
    self, ArchiveRegistered, ConfirmInstall, ConfirmRegistration, DomainDirectory, KeyStatus,
    MeterEvidence, MeterInstall, RecordKind, RegistrationReport, Signed, StartupReply,
};
use crate::request::{Request, Response, Verdict};
use crate::storage::BoxStorage;

/// Where the KMS computer keeps the domain archive.
pub trait Archive: Send + Sync {
    /// Stores a new domain.
    fn add_domain(
        &self,
        directory: &Signed,
        domain: &DomainId,
        sealed_keys: &[u8],
        created: u64,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Every domain's signed directory, oldest first.
    fn directories(&self) -> impl Future<Output = Result<Vec<Signed>>> + Send;
    /// Allocates the domain's next key id (monotonic, never reused).
    fn next_key_id(&self, domain: &DomainId) -> impl Future<Output = Result<u64>> + Send;
    /// A key's records, oldest first.
    fn history(
        &self,
        domain: &DomainId,
        key_id: u64,
    ) -> impl Future<Output = Result<Vec<Entry>>> + Send;
    /// Appends an admitted record as the key's record number `seq`.
    fn append(&self, entry: &Entry, seq: u32) -> impl Future<Output = Result<()>> + Send;
    /// The latest record of each key of an install domain ever given to `device`.
    fn by_device(
        &self,
        domain: &DomainId,
        device: [u8; 6],
    ) -> impl Future<Output = Result<Vec<Entry>>> + Send;
    /// The latest record of each key registered in a country sub-domain.
    fn registered(&self, sub_domain: &DomainId) -> impl Future<Output = Result<Vec<Entry>>> + Send;
}

/// The KMS computer.
pub struct Kms<A> {
    archive: A,
    boxes: Mutex<BTreeMap<BoxId, SecureBox>>,
    directories: Mutex<Directories>,
    last_time: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| KmsError::refused(Fault::Storage, "a box lock was poisoned"))
}

/// Unix milliseconds now.
#[must_use]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What an installation came to (MI10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    /// Installed or Bad.
    pub status: KeyStatus,
    /// The key id.
    pub key_id: u64,
    /// MI10, signed by brass.
    pub confirm: Signed,
}

impl<A: Archive> Kms<A> {
    /// A KMS computer over `archive`; `dks` is the domain key set's
    /// authentication key, which checks domain directories.
    ///
    /// # Errors
    /// If a stored directory does not verify.
    pub async fn new(archive: A, dks: &[u8]) -> Result<Self> {
        let mut dirs = Directories::new(dks);
        for d in archive.directories().await? {
            dirs.add(&d)?;
        }
        Ok(Self {
            archive,
            boxes: Mutex::new(BTreeMap::new()),
            directories: Mutex::new(dirs),
            last_time: AtomicU64::new(0),
        })
    }

    /// The archive.
    pub fn archive(&self) -> &A {
        &self.archive
    }

    /// A time event: Unix milliseconds, strictly increasing within this computer.
    pub fn time(&self) -> u64 {
        let now = now_ms();
        let prev = self
            .last_time
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last.saturating_add(1)))
            })
            .unwrap_or(now);
        now.max(prev.saturating_add(1))
    }

    /// Connects a box.
    ///
    /// # Errors
    /// If a box with that id is connected already.
    pub fn add_box(&self, b: SecureBox) -> Result<()> {
        let mut boxes = lock(&self.boxes)?;
        if boxes.contains_key(&b.id()) {
            return Err(KmsError::refused(
                Fault::WrongBox,
                format!("{} is connected already", b.id()),
            ));
        }
        boxes.insert(b.id(), b);
        Ok(())
    }

    /// Runs `f` on a connected box.
    ///
    /// # Errors
    /// [`Fault::WrongBox`] if no such box is connected, or `f`'s error.
    pub fn with_box<T>(&self, id: BoxId, f: impl FnOnce(&mut SecureBox) -> Result<T>) -> Result<T> {
        let mut boxes = lock(&self.boxes)?;
        let b = boxes
            .get_mut(&id)
            .ok_or_else(|| KmsError::refused(Fault::WrongBox, format!("{id} is not connected")))?;
        f(b)
    }

    /// Connected boxes: id, enabled, domains.
    ///
    /// # Errors
    /// Only on a poisoned lock.
    pub fn boxes(&self) -> Result<Vec<(BoxId, bool, Vec<DomainId>)>> {
        let mut boxes = lock(&self.boxes)?;
        let mut out = Vec::new();
        for b in boxes.values_mut() {
            if let Ok(Response::Status {
                id,
                enabled,
                domains,
            }) = b.call(&Request::Status)
            {
                out.push((id, enabled, domains));
            }
        }
        Ok(out)
    }

    /// Has box `id` answer `request`, its time event taken while the boxes
    /// are held, so time events reach each box in the order they were taken.
    fn call(&self, id: BoxId, request: &Request) -> Result<Response> {
        self.with_box(id, |b| b.call(&request.clone().at(self.time())))
    }

    /// The first connected, enabled box of `kind` whose configuration table has `domain`.
    ///
    /// # Errors
    /// [`Fault::UnknownDomain`] if there is none.
    pub fn box_for(&self, kind: BoxKind, domain: &DomainId) -> Result<BoxId> {
        let mut boxes = lock(&self.boxes)?;
        let mut disabled = None;
        for b in boxes.values_mut() {
            if b.id().kind != kind {
                continue;
            }
            if !b.is_enabled() {
                disabled = Some(b.id());
                continue;
            }
            if let Ok(Response::Status { id, domains, .. }) = b.call(&Request::Status)
                && domains.contains(domain)
            {
                return Ok(id);
            }
        }
        Err(match disabled {
            Some(id) => KmsError::refused(
                Fault::Disabled,
                format!(
                    "no enabled {} box serves {domain} ({id} needs its operation shares)",
                    kind.name()
                ),
            ),
            None => KmsError::refused(
                Fault::UnknownDomain,
                format!("no {} box serves {domain}", kind.name()),
            ),
        })
    }

    /// The connected manufacturing box.
    ///
    /// # Errors
    /// [`Fault::WrongBox`] if none is connected.
    pub fn manufacturing_box(&self) -> Result<BoxId> {
        lock(&self.boxes)?
            .keys()
            .copied()
            .find(|id| id.kind == BoxKind::Manufacturing)
            .ok_or_else(|| KmsError::refused(Fault::WrongBox, "no manufacturing box is connected"))
    }

    /// The directory of a known domain.
    ///
    /// # Errors
    /// [`Fault::UnknownDomain`].
    pub fn directory(&self, domain: &DomainId) -> Result<DomainDirectory> {
        lock(&self.directories)?.get(domain).cloned()
    }

    /// Every known domain.
    ///
    /// # Errors
    /// Only on a poisoned lock.
    pub fn domains(&self) -> Result<Vec<DomainId>> {
        Ok(lock(&self.directories)?.domains().cloned().collect())
    }

    // ----- setting up -----------------------------------------------------------------

    /// Has manufacturing box `mfg` create `domain`, and archives it.
    ///
    /// # Errors
    /// The box's or the archive's refusal.
    pub async fn create_domain(&self, mfg: BoxId, domain: &DomainId) -> Result<DomainDirectory> {
        let time = self.time();
        let Response::Domain {
            directory,
            sealed_keys,
        } = self.call(
            mfg,
            &Request::CreateDomain {
                domain: domain.clone(),
                time,
            },
        )?
        else {
            return Err(unexpected());
        };
        let dir = lock(&self.directories)?.add(&directory)?;
        self.archive
            .add_domain(&directory, domain, &sealed_keys, time)
            .await?;
        Ok(dir)
    }

    /// Initialises a new box of `kind` (fig. 23) with the storage `storage` gives for its id:
    /// Set Secure Box ID from `mfg`, the box's startup key back. Returns
    /// its id and operation shares; the box is connected and enabled.
    ///
    /// # Errors
    /// The boxes' refusals.
    pub fn init_box(
        &self,
        mfg: BoxId,
        kind: BoxKind,
        storage: impl FnOnce(BoxId) -> Box<dyn BoxStorage>,
    ) -> Result<(BoxId, Vec<OperationShare>)> {
        let Response::BoxId(set_id) = self.call(
            mfg,
            &Request::SetBoxId {
                kind,
                time: self.time(),
            },
        )?
        else {
            return Err(unexpected());
        };
        let mfg_key = self.with_box(mfg, |b| b.manufacturing_key())?;
        let given: message::SetBoxId = set_id.peek()?;
        let (b, reply, shares) = SecureBox::install(storage(given.id), &set_id, &mfg_key)?;
        let id = b.id();
        self.add_box(b)?;
        match self.call(mfg, &Request::RecordStartup { reply })? {
            Response::Startup(_) => Ok((id, shares)),
            _ => Err(unexpected()),
        }
    }

    /// Has `mfg` make a process for `domain` in box `id`, and the box take it.
    ///
    /// # Errors
    /// The boxes' refusals.
    pub fn make_process(&self, mfg: BoxId, id: BoxId, domain: &DomainId) -> Result<()> {
        let startup = self.with_box(id, |b| b.startup_key())?;
        let Response::Process(process) = self.call(
            mfg,
            &Request::MakeDomainProcess {
                domain: domain.clone(),
                reply: StartupReply {
                    id,
                    startup_conf: startup,
                },
                kind: id.kind,
                time: self.time(),
            },
        )?
        else {
            return Err(unexpected());
        };
        match self.call(id, &Request::AcceptDomainProcess { process })? {
            Response::Done => Ok(()),
            _ => Err(unexpected()),
        }
    }

    // ----- the archive ----------------------------------------------------------------

    /// Admits `record` by the archive's rules and appends it.
    ///
    /// # Errors
    /// The rule it breaks, or the store's refusal.
    pub async fn archive_record(
        &self,
        domain: &DomainId,
        key_id: u64,
        record: &Signed,
    ) -> Result<Entry> {
        let history = self.archive.history(domain, key_id).await?;
        let entry = {
            let dirs = lock(&self.directories)?;
            archive::admit(&dirs, history.last(), record)?
        };
        if entry.domain != *domain || entry.key_id != key_id {
            return Err(KmsError::refused(
                Fault::Mismatch,
                "the record is for another key",
            ));
        }
        let seq = u32::try_from(history.len())
            .map_err(|_| KmsError::refused(Fault::Storage, "history too long"))?;
        self.archive.append(&entry, seq).await?;
        Ok(entry)
    }

    // ----- installation (figs. 24-25, MI0-MI10) --------------------------------------

    /// MI0 → MI4: a new key id from the archive, a key from the domain's oak
    /// box, its New record archived. Returns MI4 for `steel`.
    ///
    /// # Errors
    /// Any box's or the archive's refusal.
    pub async fn request_key(&self, domain: &DomainId, steel: BoxId) -> Result<Signed> {
        // The oak box first: no key id is used up for a box that cannot act.
        let oak = self.box_for(BoxKind::Oak, domain)?;
        let key_id = self.archive.next_key_id(domain).await?;
        let Response::NewKey { archive, install } = self.call(
            oak,
            &Request::GenerateKey {
                domain: domain.clone(),
                steel,
                key_id,
                time: self.time(),
            },
        )?
        else {
            return Err(unexpected());
        };
        self.archive_record(domain, key_id, &archive).await?;
        Ok(install)
    }

    /// MI4' → MI5: the steel box seals the key to the meter.
    ///
    /// # Errors
    /// The steel box's refusal.
    pub fn steel_install(
        &self,
        steel: BoxId,
        record: &Signed,
        device: [u8; 6],
        meter_key: [u8; 32],
        meter_key_signature: &(u8, Vec<u8>),
    ) -> Result<MeterInstall> {
        let peek: message::InstallRecord = record.peek()?;
        match self.call(
            steel,
            &Request::InstallKey {
                record: record.clone(),
                device,
                role: role_of(&peek.domain),
                meter_key,
                meter_key_signature: meter_key_signature.clone(),
                time: self.time(),
            },
        )? {
            Response::MeterInstall(m) => Ok(m),
            _ => Err(unexpected()),
        }
    }

    /// Gives a steel box the key that vouches for meter keys (once; the
    /// same key again is accepted).
    ///
    /// # Errors
    /// The steel box's refusal (another anchor is set).
    pub fn set_meter_anchor(&self, steel: BoxId, anchor: &(u8, Vec<u8>)) -> Result<()> {
        match self.call(
            steel,
            &Request::SetMeterAnchor {
                anchor: anchor.clone(),
            },
        )? {
            Response::Done => Ok(()),
            _ => Err(unexpected()),
        }
    }

    /// MI6 → MI10: the steel box reports, the brass box checks the archive's
    /// key against the meter's test tokens, the archive records Installed or Bad.
    ///
    /// # Errors
    /// Any box's or the archive's refusal.
    pub async fn finish_install(
        &self,
        steel: BoxId,
        evidence: &MeterEvidence,
    ) -> Result<Installed> {
        // Brass first: steel's report is made once, so it must have somewhere to go.
        let brass = self.box_for(BoxKind::Brass, &evidence.domain)?;
        let Response::KeyInstalled(installed) = self.call(
            steel,
            &Request::MeterEvidence {
                evidence: evidence.clone(),
                time: self.time(),
            },
        )?
        else {
            return Err(unexpected());
        };
        let history = self
            .archive
            .history(&evidence.domain, evidence.key_id)
            .await?;
        let new = history
            .first()
            .filter(|e| e.status == KeyStatus::New)
            .ok_or_else(|| {
                KmsError::refused(Fault::Mismatch, "the archive has no New record of that key")
            })?;
        let Response::Installed { archive, confirm } = self.call(
            brass,
            &Request::ConfirmInstalled {
                archive: new.record.clone(),
                installed,
                time: self.time(),
            },
        )?
        else {
            return Err(unexpected());
        };
        let entry = self
            .archive_record(&evidence.domain, evidence.key_id, &archive)
            .await?;
        let c: ConfirmInstall = confirm.peek()?;
        Ok(Installed {
            status: entry.status,
            key_id: c.key_id,
            confirm,
        })
    }

    // ----- registration (fig. 26, MR1-MR4) ---------------------------------------------

    /// MR1 → MR4: the country's brass process checks the meter's report
    /// against the installed key; the archive records it Active, and the
    /// brass box loads it for verification.
    ///
    /// # Errors
    /// Any box's or the archive's refusal.
    pub async fn register(
        &self,
        sub_domain: &DomainId,
        report: &RegistrationReport,
    ) -> Result<ConfirmRegistration> {
        let history = self.archive.history(&report.domain, report.key_id).await?;
        let installed = history
            .last()
            .filter(|e| {
                e.status == KeyStatus::Installed && e.record.kind == RecordKind::ArchiveInstalled
            })
            .ok_or_else(|| {
                KmsError::refused(
                    Fault::InvalidTransition,
                    format!(
                        "key {} of {} is not installed",
                        report.key_id, report.domain
                    ),
                )
            })?;
        let brass = self.box_for(BoxKind::Brass, sub_domain)?;
        let Response::Registered { archive, confirm } = self.call(
            brass,
            &Request::RegistrationRequest {
                domain: sub_domain.clone(),
                report: report.clone(),
                installed: installed.record.clone(),
                time: self.time(),
            },
        )?
        else {
            return Err(unexpected());
        };
        self.archive_record(&report.domain, report.key_id, &archive)
            .await?;
        self.call(
            brass,
            &Request::LoadRecords {
                domain: sub_domain.clone(),
                records: vec![archive],
            },
        )?;
        confirm.peek()
    }

    /// Fig. 27: the meter left service. Its Active keys in `sub_domain`
    /// become Obsolete; tokens dated after `last_day` no longer verify.
    /// Returns how many keys changed.
    ///
    /// # Errors
    /// Any box's or the archive's refusal.
    pub async fn obsolete(
        &self,
        sub_domain: &DomainId,
        device: [u8; 6],
        last_day: u16,
    ) -> Result<usize> {
        let install = sub_domain.install_domain();
        let brass = self.box_for(BoxKind::Brass, sub_domain)?;
        let mut n = 0;
        for e in self.archive.by_device(&install, device).await? {
            if e.status != KeyStatus::Active || e.sub_domain.as_ref() != Some(sub_domain) {
                continue;
            }
            let Response::Archive(record) = self.call(
                brass,
                &Request::Obsolete {
                    record: e.record.clone(),
                    last_day,
                    time: self.time(),
                },
            )?
            else {
                return Err(unexpected());
            };
            self.archive_record(&install, e.key_id, &record).await?;
            self.call(
                brass,
                &Request::LoadRecords {
                    domain: sub_domain.clone(),
                    records: vec![record],
                },
            )?;
            n += 1;
        }
        Ok(n)
    }

    // ----- verification (fig. 28) ------------------------------------------------------

    /// Loads every Active and Obsolete record of `sub_domain` into its brass box.
    ///
    /// # Errors
    /// The box's or the archive's refusal.
    pub async fn load_verifier(&self, sub_domain: &DomainId) -> Result<usize> {
        let brass = self.box_for(BoxKind::Brass, sub_domain)?;
        let records: Vec<Signed> = self
            .archive
            .registered(sub_domain)
            .await?
            .into_iter()
            .filter(|e| matches!(e.status, KeyStatus::Active | KeyStatus::Obsolete))
            .map(|e| e.record)
            .collect();
        match self.call(
            brass,
            &Request::LoadRecords {
                domain: sub_domain.clone(),
                records,
            },
        )? {
            Response::Loaded(n) => Ok(n),
            _ => Err(unexpected()),
        }
    }

    /// Verifies `sub_domain`'s token of each indicium (signed parts).
    ///
    /// # Errors
    /// The brass box's refusal.
    pub fn verify(&self, sub_domain: &DomainId, indicia: Vec<Vec<u8>>) -> Result<Vec<Verdict>> {
        let brass = self.box_for(BoxKind::Brass, sub_domain)?;
        match self.call(
            brass,
            &Request::Verify {
                domain: sub_domain.clone(),
                indicia,
            },
        )? {
            Response::Verdicts(v) => Ok(v),
            _ => Err(unexpected()),
        }
    }

    /// Temporal token keys of `sub_domain`'s loaded meters for one month,
    /// sealed to tin box `tin` under the startup key the manufacturing box
    /// recorded for it.
    ///
    /// # Errors
    /// The brass box's refusal.
    pub fn export_token_keys(
        &self,
        sub_domain: &DomainId,
        tin: BoxId,
        period: u32,
    ) -> Result<Vec<Signed>> {
        let brass = self.box_for(BoxKind::Brass, sub_domain)?;
        let mfg = self.manufacturing_box()?;
        let Response::Startup(tin) = self.call(mfg, &Request::StartupOf { id: tin })? else {
            return Err(unexpected());
        };
        match self.call(
            brass,
            &Request::ExportTokenKeys {
                domain: sub_domain.clone(),
                tin,
                period,
            },
        )? {
            Response::TokenKeys(v) => Ok(v),
            _ => Err(unexpected()),
        }
    }

    /// A meter's keys in an install domain: each key's history.
    ///
    /// # Errors
    /// The archive's refusal.
    pub async fn meter_keys(&self, domain: &DomainId, device: [u8; 6]) -> Result<Vec<Vec<Entry>>> {
        let mut out = Vec::new();
        for e in self.archive.by_device(domain, device).await? {
            out.push(self.archive.history(domain, e.key_id).await?);
        }
        Ok(out)
    }

    /// The active record of a meter's key in a sub-domain, if any.
    ///
    /// # Errors
    /// The archive's refusal.
    pub async fn active_record(
        &self,
        sub_domain: &DomainId,
        device: [u8; 6],
    ) -> Result<Option<ArchiveRegistered>> {
        for e in self
            .archive
            .by_device(&sub_domain.install_domain(), device)
            .await?
        {
            if e.sub_domain.as_ref() == Some(sub_domain) {
                return Ok(Some(e.record.peek()?));
            }
        }
        Ok(None)
    }
}

fn unexpected() -> KmsError {
    KmsError::refused(Fault::Mismatch, "the box answered with another message")
}

/// The domain archive in memory (for tests and tools that need no database).
#[derive(Debug, Default)]
pub struct MemArchive {
    inner: Mutex<MemInner>,
}

#[derive(Debug, Default)]
struct MemInner {
    domains: Vec<(DomainId, Signed)>,
    last_ids: BTreeMap<DomainId, u64>,
    records: BTreeMap<(DomainId, u64), Vec<Entry>>,
}

impl Archive for MemArchive {
    async fn add_domain(
        &self,
        directory: &Signed,
        domain: &DomainId,
        _sealed: &[u8],
        _created: u64,
    ) -> Result<()> {
        let mut m = lock(&self.inner)?;
        if m.last_ids.contains_key(domain) {
            return Err(KmsError::refused(Fault::Mismatch, "domain exists"));
        }
        m.domains.push((domain.clone(), directory.clone()));
        m.last_ids.insert(domain.clone(), 0);
        Ok(())
    }

    async fn directories(&self) -> Result<Vec<Signed>> {
        Ok(lock(&self.inner)?
            .domains
            .iter()
            .map(|(_, s)| s.clone())
            .collect())
    }

    async fn next_key_id(&self, domain: &DomainId) -> Result<u64> {
        let mut m = lock(&self.inner)?;
        let id = m.last_ids.get_mut(domain).ok_or_else(|| {
            KmsError::refused(Fault::UnknownDomain, format!("{domain} is not archived"))
        })?;
        *id += 1;
        Ok(*id)
    }

    async fn history(&self, domain: &DomainId, key_id: u64) -> Result<Vec<Entry>> {
        Ok(lock(&self.inner)?
            .records
            .get(&(domain.clone(), key_id))
            .cloned()
            .unwrap_or_default())
    }

    async fn append(&self, entry: &Entry, seq: u32) -> Result<()> {
        let mut m = lock(&self.inner)?;
        let last = m.last_ids.get(&entry.domain).copied().unwrap_or(0);
        if entry.key_id == 0 || entry.key_id > last {
            return Err(KmsError::refused(
                Fault::KeyIdNotNew,
                "key id never allocated",
            ));
        }
        let h = m
            .records
            .entry((entry.domain.clone(), entry.key_id))
            .or_default();
        if usize::try_from(seq).ok() != Some(h.len()) {
            return Err(KmsError::refused(
                Fault::Mismatch,
                "another record came first",
            ));
        }
        if h.last().is_some_and(|l| entry.time <= l.time) {
            return Err(KmsError::refused(
                Fault::TimeOrder,
                "time events must increase",
            ));
        }
        h.push(entry.clone());
        Ok(())
    }

    async fn by_device(&self, domain: &DomainId, device: [u8; 6]) -> Result<Vec<Entry>> {
        Ok(lock(&self.inner)?
            .records
            .iter()
            .filter(|((d, _), h)| d == domain && h.iter().any(|e| e.device == Some(device)))
            .filter_map(|(_, h)| h.last().cloned())
            .collect())
    }

    async fn registered(&self, sub_domain: &DomainId) -> Result<Vec<Entry>> {
        Ok(lock(&self.inner)?
            .records
            .values()
            .filter_map(|h| h.last())
            .filter(|e| e.sub_domain.as_ref() == Some(sub_domain))
            .cloned()
            .collect())
    }
}
