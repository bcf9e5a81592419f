//! The vault's key management system (seed 002, DESIGN §6): the KMS computer
//! over the store's domain archive, and its secure boxes in `DIR/kms/`.
//!
//! Every new meter gets a vendor (`VE`) and a postal domain master key
//! through oak → steel → meter → brass; when its customer is licensed, its
//! keys are registered to its indicia number in the country sub-domains
//! (`VE.US`, `USPS.US`); when it leaves service they become Obsolete. The
//! brass box of each sub-domain verifies tokens.
//!
//! A development vault keeps each box's operation shares beside it and
//! enters them at start (with a warning); a production KMS has their holders
//! enter them.

use std::path::{Path, PathBuf};

use postvault_kms::archive::Entry;
use postvault_kms::computer::Archive;
use postvault_kms::message::{self, Signed};
use postvault_kms::setup::{Plan, set_up};
use postvault_kms::storage::{FileStorage, write_atomic};
use postvault_kms::{
    BoxId, BoxKind, DomainId, Fault, KeyStatus, Kms, KmsError, OperationShare, SecureBox,
};
use postvault_store::{KmsDomainRow, KmsRecordRow, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::config::VaultConfig;

fn store_err(e: StoreError) -> KmsError {
    let fault = match e {
        StoreError::NotFound { .. } => Fault::UnknownDomain,
        StoreError::Conflict { .. } => Fault::Mismatch,
        StoreError::Invalid { what } if what.contains("time") => Fault::TimeOrder,
        StoreError::Invalid { .. } => Fault::KeyIdNotNew,
        _ => Fault::Storage,
    };
    KmsError::refused(fault, format!("archive: {e}"))
}

fn status_of(name: &str) -> Result<KeyStatus, KmsError> {
    [
        KeyStatus::New,
        KeyStatus::Installed,
        KeyStatus::Bad,
        KeyStatus::Active,
        KeyStatus::Obsolete,
    ]
    .into_iter()
    .find(|s| s.name() == name)
    .ok_or_else(|| KmsError::refused(Fault::Storage, format!("archive: unknown status {name}")))
}

fn entry(row: KmsRecordRow) -> Result<Entry, KmsError> {
    Ok(Entry {
        domain: DomainId::new(&row.domain)?,
        key_id: row.key_id,
        sub_domain: row.sub_domain.as_deref().map(DomainId::new).transpose()?,
        device: row.device,
        status: status_of(&row.status)?,
        time: row.time,
        signer: row.signer,
        record: message::decode(&row.record)?,
    })
}

fn entries(rows: Vec<KmsRecordRow>) -> Result<Vec<Entry>, KmsError> {
    rows.into_iter().map(entry).collect()
}

/// The domain archive in the vault's store.
#[derive(Clone, Debug)]
pub struct StoreArchive<S>(pub S);

impl<S: Store> Archive for StoreArchive<S> {
    async fn add_domain(
        &self,
        directory: &Signed,
        domain: &DomainId,
        sealed_keys: &[u8],
        created: u64,
    ) -> Result<(), KmsError> {
        self.0
            .kms_add_domain(&KmsDomainRow {
                domain: domain.to_string(),
                directory: message::encode(directory)?,
                sealed_keys: sealed_keys.to_vec(),
                created,
            })
            .await
            .map_err(store_err)
    }

    async fn directories(&self) -> Result<Vec<Signed>, KmsError> {
        self.0
            .kms_domains()
            .await
            .map_err(store_err)?
            .iter()
            .map(|r| message::decode(&r.directory))
            .collect()
    }

    async fn next_key_id(&self, domain: &DomainId) -> Result<u64, KmsError> {
        self.0
            .kms_next_key_id(domain.as_str())
            .await
            .map_err(store_err)
    }

    async fn history(&self, domain: &DomainId, key_id: u64) -> Result<Vec<Entry>, KmsError> {
        entries(
            self.0
                .kms_history(domain.as_str(), key_id)
                .await
                .map_err(store_err)?,
        )
    }

    async fn append(&self, e: &Entry, seq: u32) -> Result<(), KmsError> {
        self.0
            .kms_append(&KmsRecordRow {
                domain: e.domain.to_string(),
                key_id: e.key_id,
                seq,
                sub_domain: e.sub_domain.as_ref().map(ToString::to_string),
                device: e.device,
                status: e.status.name().to_owned(),
                time: e.time,
                signer: e.signer.clone(),
                record: message::encode(&e.record)?,
            })
            .await
            .map_err(store_err)
    }

    async fn by_device(&self, domain: &DomainId, device: [u8; 6]) -> Result<Vec<Entry>, KmsError> {
        entries(
            self.0
                .kms_latest_by_device(domain.as_str(), device)
                .await
                .map_err(store_err)?,
        )
    }

    async fn registered(&self, sub_domain: &DomainId) -> Result<Vec<Entry>, KmsError> {
        entries(
            self.0
                .kms_latest_in_sub_domain(sub_domain.as_str())
                .await
                .map_err(store_err)?,
        )
    }
}

/// `DIR/kms/kms.json`: which boxes the vault's KMS has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsFile {
    /// Format version (1).
    pub version: u8,
    /// The domain key set's authentication key (hex): checks domain directories.
    pub domain_key_set: String,
    /// The boxes, by id.
    pub boxes: Vec<String>,
    /// The steel box that installs the vault's meters.
    pub steel: String,
    /// The tin box for remote verification.
    pub tin: String,
}

const KMS_FILE_VERSION: u8 = 1;

/// The vault's KMS: the KMS computer and the vault's domains.
pub struct VaultKms<S: Store> {
    /// The KMS computer.
    pub kms: Kms<StoreArchive<S>>,
    /// The steel box of the vault's meters.
    pub steel: BoxId,
    /// The tin box.
    pub tin: BoxId,
    /// `VE`.
    pub vendor: DomainId,
    /// The post.
    pub post: DomainId,
    /// The country.
    pub country: String,
}

fn kms_file(dir: &Path) -> PathBuf {
    dir.join("kms.json")
}

/// A box's state file.
#[must_use]
pub fn box_file(dir: &Path, id: BoxId) -> PathBuf {
    dir.join("boxes").join(format!("{id}.box"))
}

/// A box's operation shares (development).
#[must_use]
pub fn share_file(dir: &Path, id: BoxId) -> PathBuf {
    dir.join("shares").join(format!("{id}.share"))
}

fn config_err(what: impl Into<String>) -> KmsError {
    KmsError::refused(Fault::Storage, what)
}

impl<S: Store> VaultKms<S> {
    /// Opens the KMS in `dir` over `store`, setting it up first if the vault
    /// has none yet (a vault made before the KMS: its older meters keep zero
    /// tokens). Development shares are entered from `dir/shares`.
    ///
    /// # Errors
    /// A box that does not open, shares that do not fit, an archive failure.
    pub async fn open_or_create(
        dir: &Path,
        store: S,
        config: &VaultConfig,
        meter_anchor: &(u8, Vec<u8>),
    ) -> Result<Self, KmsError> {
        if !kms_file(dir).exists() {
            // A set-up interrupted after the archive got its domains: setting
            // up again would make a second domain key set the archive refuses.
            if !store.kms_domains().await.map_err(store_err)?.is_empty() {
                return Err(config_err(format!(
                    "the archive holds KMS domains but {} is missing: a set-up was interrupted or the file was lost; restore {} from its backup",
                    kms_file(dir).display(),
                    dir.display()
                )));
            }
            tracing::warn!(
                "setting up the key management system in {} (development: each box's operation shares are stored beside it)",
                dir.display()
            );
            Self::create(dir, store.clone(), config, meter_anchor).await?;
        }
        let this = Self::open(dir, store, config).await?;
        // Every steel box seals only to meter keys the vault's registration
        // key vouches for; a box set up for another vault refuses.
        for (id, _, _) in this.kms.boxes()? {
            if id.kind == BoxKind::Steel {
                this.kms.set_meter_anchor(id, meter_anchor)?;
            }
        }
        Ok(this)
    }

    async fn create(
        dir: &Path,
        store: S,
        config: &VaultConfig,
        meter_anchor: &(u8, Vec<u8>),
    ) -> Result<(), KmsError> {
        let plan =
            Plan::vendor_and_post(&config.postal_domain, &config.country, meter_anchor.clone())?;
        let boxes = dir.join("boxes");
        let s = set_up(StoreArchive(store), &plan, |id| {
            Box::new(FileStorage::new(&boxes.join(format!("{id}.box"))))
        })
        .await?;
        for (id, shares) in &s.shares {
            let text: String = shares.iter().map(|sh| sh.to_text().to_string()).collect();
            write_atomic(&share_file(dir, *id), text.as_bytes())?;
        }
        let file = KmsFile {
            version: KMS_FILE_VERSION,
            domain_key_set: hex::encode(&s.dks),
            boxes: s.shares.iter().map(|(id, _)| id.to_string()).collect(),
            steel: s.steel.to_string(),
            tin: s.tin.to_string(),
        };
        let text = serde_json::to_vec_pretty(&file).map_err(|e| config_err(e.to_string()))?;
        write_atomic(&kms_file(dir), &text)
    }

    /// Opens the KMS in `dir`: every box from its file, its shares entered
    /// from `dir/shares`, and the sub-domains' verification tables loaded.
    ///
    /// # Errors
    /// As [`VaultKms::open_or_create`].
    pub async fn open(dir: &Path, store: S, config: &VaultConfig) -> Result<Self, KmsError> {
        let bytes = std::fs::read(kms_file(dir))
            .map_err(|e| config_err(format!("{}: {e}", kms_file(dir).display())))?;
        let file: KmsFile =
            serde_json::from_slice(&bytes).map_err(|e| config_err(format!("kms.json: {e}")))?;
        if file.version != KMS_FILE_VERSION {
            return Err(config_err(format!(
                "kms.json version {} is unknown",
                file.version
            )));
        }
        let dks = hex::decode(&file.domain_key_set)
            .map_err(|_| config_err("kms.json: domain key set"))?;
        let kms = Kms::new(StoreArchive(store), &dks).await?;
        for id in &file.boxes {
            let id: BoxId = id.parse()?;
            kms.add_box(open_box(dir, id)?)?;
        }
        let vendor = DomainId::new(postvault_kms::ids::VENDOR)?;
        let post = DomainId::new(&config.postal_domain)?;
        let this = Self {
            kms,
            steel: file.steel.parse()?,
            tin: file.tin.parse()?,
            vendor,
            post,
            country: config.country.clone(),
        };
        // Every country sub-domain a brass box serves, not only the vault's
        // own: an earth domain meter may have been registered elsewhere.
        for sub in this.kms.domains()? {
            if sub.is_sub_domain() && this.kms.box_for(BoxKind::Brass, &sub).is_ok() {
                this.kms.load_verifier(&sub).await?;
            }
        }
        Ok(this)
    }

    /// The install domains of a meter's two keys: vendor, then post.
    #[must_use]
    pub fn install_domains(&self) -> [DomainId; 2] {
        [self.vendor.clone(), self.post.clone()]
    }

    /// The country sub-domains where the vault's meters are registered.
    ///
    /// # Errors
    /// Only for a malformed country.
    pub fn sub_domains(&self) -> Result<[DomainId; 2], KmsError> {
        Ok([
            self.vendor.sub_domain(&self.country)?,
            self.post.sub_domain(&self.country)?,
        ])
    }
}

/// Records a new box in `dir`: its development shares beside it, and its id
/// in `kms.json` so the vault opens it at start.
///
/// # Errors
/// If a file cannot be read or written.
pub fn record_box(dir: &Path, id: BoxId, shares: &[OperationShare]) -> Result<(), KmsError> {
    let text: String = shares.iter().map(|sh| sh.to_text().to_string()).collect();
    write_atomic(&share_file(dir, id), text.as_bytes())?;
    let bytes = std::fs::read(kms_file(dir))
        .map_err(|e| config_err(format!("{}: {e}", kms_file(dir).display())))?;
    let mut file: KmsFile =
        serde_json::from_slice(&bytes).map_err(|e| config_err(format!("kms.json: {e}")))?;
    if !file.boxes.contains(&id.to_string()) {
        file.boxes.push(id.to_string());
    }
    let text = serde_json::to_vec_pretty(&file).map_err(|e| config_err(e.to_string()))?;
    write_atomic(&kms_file(dir), &text)
}

/// Opens box `id` from `dir` and enters its development shares.
///
/// # Errors
/// A missing or unreadable box or share file, or shares that do not open it.
pub fn open_box(dir: &Path, id: BoxId) -> Result<SecureBox, KmsError> {
    let mut b = SecureBox::open(Box::new(FileStorage::new(&box_file(dir, id))))?;
    let path = share_file(dir, id);
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(&path)
            .map_err(|e| config_err(format!("{}: {e}", path.display())))?,
    );
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        b.enter_share(&OperationShare::from_text(line)?)?;
    }
    if !b.is_enabled() {
        return Err(KmsError::refused(
            Fault::Disabled,
            format!("{id}: not all operation shares are there"),
        ));
    }
    Ok(b)
}
