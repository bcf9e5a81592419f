//! Storage for the vault server.
//!
//! [`Store`] is what the server needs from a database; [`MeterTx`] is one
//! write transaction, in which a meter's package is locked from the moment it
//! is read until commit, so a PSD command's new package, checkpoint record,
//! indicium and idempotency reply are stored together or not at all
//! (confirm-before-release: the server releases a result only after commit).
//! Writes of packages and checkpoint records are compare-and-swap on what the
//! caller read, so two servers can never both advance the same meter or module.
//!
//! The audit log is kept in a database of its own (restoring the vault
//! database from a backup must not rewind it), appended in order per module.
//!
//! The key management system's archive (security domains, and each domain
//! master key's history of signed records) lives in the vault database too;
//! a record is appended only where it continues its key's history.
//!
//! [`sqlite::SqliteStore`] is the first backend; the behavioural suite in
//! `tests/suite` is written against the traits so a PostgreSQL backend is a
//! second implementation of the same tests.
#![forbid(unsafe_code)]

use core::future::Future;

pub mod sqlite;

/// Result with [`StoreError`].
pub type Result<T> = core::result::Result<T, StoreError>;

/// What can go wrong in the store.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A compare-and-swap found something else than the caller read: another
    /// transaction got there first, or the database is not what the caller thinks.
    #[error("conflict: {what}")]
    Conflict {
        /// What was contended.
        what: &'static str,
    },
    /// A uniqueness rule was broken (a second certificate serial, a second
    /// customer for a meter, a second indicium for one client transaction id).
    #[error("duplicate: {what}")]
    Duplicate {
        /// What was duplicated.
        what: &'static str,
    },
    /// An audit entry does not continue its module's log.
    #[error("audit log of module {module}: expected entry {expected}, got {got}")]
    AuditGap {
        /// The module.
        module: String,
        /// The next sequence number the log expects.
        expected: u64,
        /// What was offered.
        got: u64,
    },
    /// A value does not fit the store (a negative or oversized integer, a wrong length).
    #[error("invalid value: {what}")]
    Invalid {
        /// What.
        what: &'static str,
    },
    /// The database failed or could not be opened.
    #[error("database: {0}")]
    Database(String),
    /// A migration failed (or the database is newer than this program).
    #[error("database migration: {0}")]
    Migration(String),
    /// Something asked for is not there.
    #[error("not found: {what}")]
    NotFound {
        /// What.
        what: &'static str,
    },
    /// A message or request was already taken (a replay, or out of order).
    #[error("replayed: {what}")]
    Replayed {
        /// What.
        what: &'static str,
    },
}

/// A module of the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleRow {
    /// Module serial (from its audit log).
    pub serial: String,
    /// Where the server finds it (a directory for a software module).
    pub location: String,
}

/// A meter's package as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRow {
    /// Device id.
    pub device_id: [u8; 6],
    /// The encoded package.
    pub package: Vec<u8>,
    /// Its MAC (the compare-and-swap token).
    pub mac: [u8; 32],
    /// The customer it is assigned to.
    pub customer_id: Option<String>,
}

/// An indicium the vault issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndiciumRow {
    /// Store id (assigned on insert; 0 before).
    pub id: i64,
    /// Device id.
    pub device_id: [u8; 6],
    /// The customer it was issued to (none for a refund indicium made for the provider).
    pub customer_id: Option<String>,
    /// The client's transaction id, for idempotent retries.
    pub client_txn: Option<String>,
    /// postage, correction, refund or redate.
    pub kind: String,
    /// Postage in tenths of a cent.
    pub postage: u64,
    /// The meter's AR after it, in tenths of a cent.
    pub ascending_register: u64,
    /// Duplicate-detection key (device id and AR).
    pub mail_piece_key: [u8; 32],
    /// The indicium's bytes.
    pub bytes: Vec<u8>,
    /// Whether the customer asked for it to be refunded.
    pub refund_requested: bool,
}

/// A customer, and the meter assigned to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRow {
    /// Customer id.
    pub id: String,
    /// Their meter.
    pub device_id: Option<[u8; 6]>,
    /// The server's record of them (opaque here).
    pub record: Vec<u8>,
}

/// Where a purchase stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurchaseStatus {
    /// Waits for the provider.
    Pending,
    /// Downloaded into the meter.
    Done,
    /// The provider or the module refused it.
    Refused,
}

impl PurchaseStatus {
    /// The stored name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            PurchaseStatus::Pending => "pending",
            PurchaseStatus::Done => "done",
            PurchaseStatus::Refused => "refused",
        }
    }

    /// From the stored name.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an unknown name.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "pending" => Ok(PurchaseStatus::Pending),
            "done" => Ok(PurchaseStatus::Done),
            "refused" => Ok(PurchaseStatus::Refused),
            _ => Err(StoreError::Invalid {
                what: "purchase status",
            }),
        }
    }
}

/// A purchase of postage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseRow {
    /// The meter.
    pub device_id: [u8; 6],
    /// The client's purchase id (unique per meter).
    pub id: String,
    /// Amount, tenths of a cent.
    pub amount: u64,
    /// The client's control total (AR + DR) when it asked, tenths of a cent.
    pub control_total: u64,
    /// Where it stands.
    pub status: PurchaseStatus,
}

/// A security domain in the KMS archive: its directory (signed by the
/// manufacturing box's domain key set) and its keys sealed for the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsDomainRow {
    /// The domain's name (unique in the archive).
    pub domain: String,
    /// The domain directory, as signed (opaque here).
    pub directory: Vec<u8>,
    /// The domain's keys, sealed for the archive (opaque here).
    pub sealed_keys: Vec<u8>,
    /// When it was created (seconds since the Unix epoch; at most `i64::MAX`).
    pub created: u64,
}

/// One record in a domain master key's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsRecordRow {
    /// The key's install domain.
    pub domain: String,
    /// The key's id in its domain (from [`Store::kms_next_key_id`]).
    pub key_id: u64,
    /// The record's place in the key's history, from 0.
    pub seq: u32,
    /// The sub-domain the key serves, if any (a domain of the archive).
    pub sub_domain: Option<String>,
    /// The meter the record is about, if any.
    pub device: Option<[u8; 6]>,
    /// The key's status after this record: one of [`KMS_KEY_STATUSES`].
    pub status: String,
    /// When it happened (strictly increasing along a key's history; at most `i64::MAX`).
    pub time: u64,
    /// Who signed the record.
    pub signer: String,
    /// The signed record's bytes (opaque here).
    pub record: Vec<u8>,
}

/// The key statuses a [`KmsRecordRow`] may carry.
pub const KMS_KEY_STATUSES: [&str; 5] = ["new", "installed", "bad", "active", "obsolete"];

/// What the server reads outside a write transaction.
pub trait Store: Clone + Send + Sync + 'static {
    /// The write transaction type.
    type Tx: MeterTx;

    /// Starts a write transaction.
    fn begin(&self) -> impl Future<Output = Result<Self::Tx>> + Send;

    /// The pool's modules.
    fn modules(&self) -> impl Future<Output = Result<Vec<ModuleRow>>> + Send;

    /// The module table's record for a module.
    fn checkpoint(&self, serial: &str) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;

    /// A meter's package (a snapshot; change it only inside a transaction).
    fn package(
        &self,
        device_id: [u8; 6],
    ) -> impl Future<Output = Result<Option<PackageRow>>> + Send;

    /// A meter's certificate (DER).
    fn certificate(
        &self,
        device_id: [u8; 6],
    ) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;

    /// A customer.
    fn customer(&self, id: &str) -> impl Future<Output = Result<Option<CustomerRow>>> + Send;

    /// Takes a session message's counter: it must be above every counter taken
    /// for that session (`id`) so far, and the session must be this meter's.
    ///
    /// # Errors
    /// [`StoreError::Replayed`] otherwise.
    fn take_session_counter(
        &self,
        id: [u8; 32],
        device_id: [u8; 6],
        counter: u64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// A purchase.
    fn purchase(
        &self,
        device_id: [u8; 6],
        id: &str,
    ) -> impl Future<Output = Result<Option<PurchaseRow>>> + Send;

    /// Purchases in this status, oldest first, at most `limit`.
    fn purchases(
        &self,
        status: PurchaseStatus,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<PurchaseRow>>> + Send;

    /// Marks a meter's postage or correction indicium as to be refunded (once).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the meter has no such indicium;
    /// [`StoreError::Conflict`] if it was asked for already or is not refundable.
    fn request_refund(
        &self,
        device_id: [u8; 6],
        indicium_id: i64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Indicia whose refund was asked for, oldest first, at most `limit`.
    fn refunds_requested(
        &self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<IndiciumRow>>> + Send;

    /// One indicium.
    fn indicium(&self, id: i64) -> impl Future<Output = Result<Option<IndiciumRow>>> + Send;

    /// A customer's indicia, newest first, at most `limit`.
    fn indicia_of(
        &self,
        customer_id: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<IndiciumRow>>> + Send;

    /// How many stored indicia carry this mail-piece key.
    fn pieces(&self, mail_piece_key: [u8; 32]) -> impl Future<Output = Result<u64>> + Send;

    /// Appends a module's audit entries; `first_seq` must continue its log.
    fn append_audit(
        &self,
        module_serial: &str,
        first_seq: u64,
        entries: &[Vec<u8>],
    ) -> impl Future<Output = Result<()>> + Send;

    /// A module's audit entries from `from_seq` on, in order, at most `limit`.
    fn audit_entries(
        &self,
        module_serial: &str,
        from_seq: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Vec<u8>>>> + Send;

    /// The next sequence number of a module's audit log (0 if empty).
    fn audit_next(&self, module_serial: &str) -> impl Future<Output = Result<u64>> + Send;

    /// Adds a security domain to the KMS archive, with its key id counter
    /// (no key id allocated yet).
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] if the archive has the domain already;
    /// [`StoreError::Invalid`] if `created` is above `i64::MAX`.
    fn kms_add_domain(&self, row: &KmsDomainRow) -> impl Future<Output = Result<()>> + Send;

    /// The archive's domains, oldest first (then by name).
    fn kms_domains(&self) -> impl Future<Output = Result<Vec<KmsDomainRow>>> + Send;

    /// Allocates a domain's next key id: 1 first, then strictly increasing,
    /// never handed out twice, even to concurrent callers.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the archive has no such domain;
    /// [`StoreError::Invalid`] if the domain's key ids are exhausted.
    fn kms_next_key_id(&self, domain: &str) -> impl Future<Output = Result<u64>> + Send;

    /// Every record of a key, in order (empty if it has none).
    fn kms_history(
        &self,
        domain: &str,
        key_id: u64,
    ) -> impl Future<Output = Result<Vec<KmsRecordRow>>> + Send;

    /// Appends a record to its key's history, in one transaction: on any
    /// error nothing is written.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the domain, or the sub-domain named, is not
    /// in the archive;
    /// [`StoreError::Invalid`] if the key id is 0 or was never allocated in
    /// the domain, if the time is not after the key's latest record's, if the
    /// status is not one of [`KMS_KEY_STATUSES`], or if a number is above
    /// `i64::MAX`;
    /// [`StoreError::Conflict`] unless `seq` is the number of records the key
    /// has (another writer appended first: read the history again).
    fn kms_append(&self, row: &KmsRecordRow) -> impl Future<Output = Result<()>> + Send;

    /// For each key of install domain `domain` with any record about this
    /// meter, the key's latest record (whatever meter that one is about), by key id.
    fn kms_latest_by_device(
        &self,
        domain: &str,
        device: [u8; 6],
    ) -> impl Future<Output = Result<Vec<KmsRecordRow>>> + Send;

    /// For each key whose latest record names this sub-domain, that record,
    /// by domain and key id.
    fn kms_latest_in_sub_domain(
        &self,
        sub_domain: &str,
    ) -> impl Future<Output = Result<Vec<KmsRecordRow>>> + Send;
}

/// One write transaction. Dropping it without [`MeterTx::commit`] rolls back.
pub trait MeterTx: Send {
    /// Reads a meter's package and holds it until the end of the transaction.
    fn lock_meter(
        &mut self,
        device_id: [u8; 6],
    ) -> impl Future<Output = Result<Option<PackageRow>>> + Send;

    /// The module table's record for a module, read in this transaction (a
    /// transaction must not wait for a second connection of its pool).
    fn checkpoint(&mut self, serial: &str) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;

    /// Stores a package if the stored one's MAC is `expected` (`None`: no
    /// package yet for this meter).
    fn put_package(
        &mut self,
        row: &PackageRow,
        expected: Option<[u8; 32]>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Stores a module's checkpoint record if the stored one is `expected`.
    fn put_checkpoint(
        &mut self,
        serial: &str,
        record: &[u8],
        expected: Option<&[u8]>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Adds a module to the pool.
    fn add_module(&mut self, row: &ModuleRow) -> impl Future<Output = Result<()>> + Send;

    /// Stores a meter's certificate (one per meter, serials unique).
    fn put_certificate(
        &mut self,
        device_id: [u8; 6],
        serial: u32,
        der: &[u8],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Creates or replaces a customer's record, optionally bound to a meter.
    fn put_customer(
        &mut self,
        id: &str,
        device_id: Option<[u8; 6]>,
        record: &[u8],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Records a new purchase.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] if the meter has a purchase with this id.
    fn put_purchase(&mut self, row: &PurchaseRow) -> impl Future<Output = Result<()>> + Send;

    /// Changes a pending purchase's status (once: a purchase that is done or
    /// refused stays so, so two approvals cannot both download it).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if there is no such pending purchase.
    fn set_purchase_status(
        &mut self,
        device_id: [u8; 6],
        id: &str,
        status: PurchaseStatus,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Stores an issued indicium; returns its id.
    fn insert_indicium(&mut self, row: &IndiciumRow) -> impl Future<Output = Result<i64>> + Send;

    /// The indicium already issued for a client transaction id on a meter.
    fn indicium_by_txn(
        &mut self,
        device_id: [u8; 6],
        client_txn: &str,
    ) -> impl Future<Output = Result<Option<IndiciumRow>>> + Send;

    /// A reply already given for an idempotency key.
    fn idempotent(&mut self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;

    /// Records the reply for an idempotency key (once).
    fn put_idempotent(
        &mut self,
        key: &str,
        response: &[u8],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Makes everything durable.
    fn commit(self) -> impl Future<Output = Result<()>> + Send;
}
