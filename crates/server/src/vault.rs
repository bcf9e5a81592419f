//! The vault: a pool of software modules sharing one MKS over a store. Every
//! PSD transaction runs the same path:
//!
//! 1. a store transaction locks the meter's package;
//! 2. a module of the pool runs the command with the module table's record for it;
//! 3. the module's audit entries go to the audit log (its file, then the store);
//! 4. the new package and checkpoint record are written compare-and-swap on what
//!    was read, with the indicium and idempotency reply, and committed;
//! 5. only then is the result released (confirm-before-release).
//!
//! A module whose checkpoint is not the module table's refuses every PSD
//! command (`CheckpointMismatch`), and the vault passes that on: whether the
//! database lost committed work (restored from a backup) or only work never
//! released (a crash before commit) is an operator's decision for now.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use postvault_module::audit::AuditEntry;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use postvault_indicium::cert::{PostalCa, Validity};
use postvault_indicium::{Date, DeviceId, Indicium};
use postvault_module::checkpoint::CheckpointRecord;
use postvault_module::codec;
use postvault_module::postal::{
    CustomerReply, CustomerRequest, PostalCommand, PostalOutcome, PostalReply, PostalRequest,
    SignedOrder,
};
use postvault_module::psd::PsdPackage;
use postvault_module::wire::{Outer, OuterReply};
use postvault_store::{IndiciumRow, MeterTx, ModuleRow, PackageRow, Store, StoreError};

use crate::moduledir::{ModuleHost, power_on};

/// What the vault reports.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The module refused (the typed check says why).
    #[error("module: {0}")]
    Module(#[from] postvault_module::Error),
    /// The store refused or failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The certificate authority refused the meter's request, or its certificate.
    #[error("certificate: {0}")]
    Certificate(#[from] postvault_indicium::Error),
    /// A request names something the vault does not have.
    #[error("{0}")]
    NotFound(&'static str),
    /// A module's audit log in the store does not verify.
    #[error("audit log of module {module}: {error}")]
    Audit {
        /// The module.
        module: String,
        /// The first failure, naming the entry.
        error: postvault_module::audit::VerifyError,
    },
    /// The pool has no module, or a module is unusable.
    #[error("module pool: {0}")]
    Pool(String),
    /// PSD processing stopped: too many checkpoint mismatches.
    #[error(
        "PSD processing stopped after {mismatches} checkpoint mismatches between the module table and the modules (a database restored from an older copy?); an operator must investigate"
    )]
    Halted {
        /// Mismatches seen.
        mismatches: u32,
    },
}

/// Result with [`VaultError`].
pub type Result<T> = core::result::Result<T, VaultError>;

struct PoolModule {
    serial: String,
    dir: PathBuf,
    slot: tokio::sync::Mutex<Slot>,
}

/// A module and the audit entries it made that the store does not hold yet.
struct Slot {
    host: ModuleHost,
    backlog: Vec<AuditEntry>,
}

/// A module held for one operation: nobody else uses it until it is dropped,
/// so its audit entries reach the store in order.
struct Held<'a> {
    m: &'a PoolModule,
    slot: tokio::sync::MutexGuard<'a, Slot>,
}

impl Held<'_> {
    /// Runs a request; its audit entries join the backlog.
    fn run(&mut self, request: Outer) -> Result<OuterReply> {
        let slot = &mut *self.slot;
        let result = slot.host.call(request);
        let entries = slot.host.sink.take_last();
        slot.backlog.extend(entries);
        Ok(result?)
    }
}

/// The vault over a store `S`.
pub struct Vault<S: Store> {
    store: S,
    modules: Vec<PoolModule>,
    next: AtomicUsize,
    mismatches: AtomicU32,
    max_mismatches: u32,
    halted: AtomicBool,
}

/// How a module that is ahead of the module table was dealt with at start.
enum Reconciled {
    /// Its transactions after the table's record were never committed (a
    /// crash between the module and the commit): Auto-Recover discarded them.
    Recovered(usize),
    /// The store lost committed work, or the module cannot go back.
    Mismatch(String),
}

impl<S: Store> Vault<S> {
    /// Opens the vault: powers on each module directory and registers any the
    /// store does not know yet.
    ///
    /// # Errors
    /// A module that cannot be powered on or has no serial; a store failure.
    pub async fn open(store: S, module_dirs: &[PathBuf]) -> Result<Self> {
        Self::open_with_limit(store, module_dirs, u32::MAX).await
    }

    /// [`Vault::open`], stopping PSD processing after `max_mismatches`
    /// checkpoint mismatches reported by the modules while running, and at
    /// once if comparing each module's newest record with the table's now
    /// finds one that is not a crash before commit (see `reconcile`).
    ///
    /// # Errors
    /// As [`Vault::open`].
    pub async fn open_with_limit(
        store: S,
        module_dirs: &[PathBuf],
        max_mismatches: u32,
    ) -> Result<Self> {
        if module_dirs.is_empty() {
            return Err(VaultError::Pool("no module directories".into()));
        }
        let known = store.modules().await?;
        let mut modules = Vec::new();
        for dir in module_dirs {
            let mut host = power_on(dir)?;
            let serial = host
                .status()?
                .serial
                .ok_or_else(|| VaultError::Pool(format!("{} is not initialised", dir.display())))?;
            if !known.iter().any(|k| k.serial == serial) {
                let mut tx = store.begin().await?;
                tx.add_module(&ModuleRow {
                    serial: serial.clone(),
                    location: dir.display().to_string(),
                })
                .await?;
                tx.commit().await?;
            }
            let newest = host
                .status()?
                .checkpoint
                .map(|c| codec::encode(&c))
                .transpose()?;
            let table = store.checkpoint(&serial).await?;
            let mut mismatch = None;
            if newest != table {
                match reconcile(&store, &serial, dir, &mut host, table.as_deref()).await? {
                    Reconciled::Recovered(n) => tracing::warn!(
                        module = %serial,
                        discarded = n,
                        "the module was ahead of the module table by {n} transaction(s) never committed (a crash before commit): Auto-Recover discarded them"
                    ),
                    Reconciled::Mismatch(why) => mismatch = Some(why),
                }
            }
            // The module's log file holds every entry (the power-on's, any
            // Auto-Recover's): the catch-up copies what the store lacks, so the
            // sink's copies are dropped.
            catch_up(&store, &serial, dir).await?;
            host.sink.take_last();
            modules.push((
                PoolModule {
                    serial,
                    dir: dir.clone(),
                    slot: tokio::sync::Mutex::new(Slot {
                        host,
                        backlog: Vec::new(),
                    }),
                },
                mismatch,
            ));
        }
        let vault = Self {
            store,
            modules: Vec::new(),
            next: AtomicUsize::new(0),
            mismatches: AtomicU32::new(0),
            max_mismatches: max_mismatches.max(1),
            halted: AtomicBool::new(false),
        };
        let mut vault = vault;
        let mut lost = false;
        for (m, mismatch) in modules {
            if let Some(why) = mismatch {
                tracing::error!(module = %m.serial, "{why}");
                vault.mismatch(&m.serial);
                lost = true;
            }
            vault.modules.push(m);
        }
        // A mismatch found at start is evidence that the vault database lost
        // committed work, and a restore rewinds every meter, not only those of
        // the modules that notice: the other modules would serve the stale
        // packages and print value already spent. So PSD work stops at once.
        if lost && !vault.halted.swap(true, Ordering::SeqCst) {
            tracing::error!(
                mismatches = vault.mismatches.load(Ordering::SeqCst),
                "STOPPING PSD processing: the module table is behind the modules' committed work (a database restored from an older copy?); an operator must investigate before the server is restarted"
            );
        }
        Ok(vault)
    }

    /// Counts a checkpoint mismatch; at the limit, stops PSD processing.
    fn mismatch(&self, serial: &str) {
        let n = self
            .mismatches
            .fetch_add(1, Ordering::SeqCst)
            .saturating_add(1);
        tracing::error!(
            module = serial,
            mismatches = n,
            limit = self.max_mismatches,
            "checkpoint mismatch: the module's newest checkpoint is not the module table's"
        );
        if n >= self.max_mismatches && !self.halted.swap(true, Ordering::SeqCst) {
            tracing::error!(
                mismatches = n,
                "STOPPING PSD processing: {n} checkpoint mismatches between the module table and the modules (a database restored from an older copy?); an operator must investigate before the server is restarted"
            );
        }
    }

    /// Whether PSD processing has stopped, and the mismatches seen.
    pub fn halted(&self) -> (bool, u32) {
        (
            self.halted.load(Ordering::SeqCst),
            self.mismatches.load(Ordering::SeqCst),
        )
    }

    /// The pool's module serials, in pool order.
    pub fn module_serials(&self) -> Vec<&str> {
        self.modules.iter().map(|m| m.serial.as_str()).collect()
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Powers every module off cleanly.
    ///
    /// # Errors
    /// The first module that could not record its power-off.
    pub fn shutdown(&self) -> Result<()> {
        for m in &self.modules {
            let mut slot = m.slot.try_lock().map_err(|_| {
                VaultError::Pool(format!("module {} is busy; cannot power it off", m.serial))
            })?;
            slot.host.shutdown()?;
        }
        Ok(())
    }

    /// Verifies each module's audit log as the store holds it: the hash chain,
    /// the signatures and the signing policy from the first entry on, and that
    /// its head is the head the module itself witnesses. Returns one summary
    /// per module, in pool order.
    ///
    /// # Errors
    /// [`VaultError::Audit`] naming the module and the first bad entry.
    pub async fn verify_audit(&self) -> Result<Vec<postvault_module::audit::LogSummary>> {
        let mut out = Vec::new();
        for m in &self.modules {
            let entries = self.store.audit_entries(&m.serial, 0, u32::MAX).await?;
            let head =
                postvault_module::module::stored_audit_head(m.slot.lock().await.host.module.nvm())?
                    .map(|(_, hash)| hash);
            let summary = postvault_module::audit::verify_log(&entries.concat(), head.as_ref())
                .map_err(|error| VaultError::Audit {
                    module: m.serial.clone(),
                    error,
                })?;
            out.push(summary);
        }
        Ok(out)
    }

    /// The module directories, in pool order.
    pub fn module_dirs(&self) -> Vec<&Path> {
        self.modules.iter().map(|m| m.dir.as_path()).collect()
    }

    /// Holds a module for one operation: a free one if there is one (round
    /// robin), else the next in turn once it is free.
    async fn hold(&self) -> Result<Held<'_>> {
        let n = self.modules.len();
        if n == 0 {
            return Err(VaultError::Pool("no modules".into()));
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            if let Some(m) = self.modules.get((start + i) % n)
                && let Ok(slot) = m.slot.try_lock()
            {
                return Ok(Held { m, slot });
            }
        }
        let m = self
            .modules
            .get(start)
            .ok_or_else(|| VaultError::Pool("no modules".into()))?;
        Ok(Held {
            m,
            slot: m.slot.lock().await,
        })
    }

    /// Hands a held module's backlog of audit entries to the store, in order
    /// (they are already in the module's own log). Entries the store holds
    /// already (copied from the module's log at start) are skipped; on failure
    /// the backlog stays for the next flush.
    async fn flush(&self, held: &mut Held<'_>) -> Result<()> {
        let slot = &mut *held.slot;
        let Some(first) = slot.backlog.first() else {
            return Ok(());
        };
        let first_seq = first.decode_body()?.seq;
        let next = self.store.audit_next(&held.m.serial).await?;
        let skip = usize::try_from(next.saturating_sub(first_seq)).unwrap_or(usize::MAX);
        let stored: Vec<Vec<u8>> = slot
            .backlog
            .iter()
            .skip(skip)
            .map(AuditEntry::to_stored)
            .collect::<postvault_module::Result<_>>()?;
        if !stored.is_empty() {
            self.store
                .append_audit(&held.m.serial, first_seq.max(next), &stored)
                .await?;
        }
        slot.backlog.clear();
        Ok(())
    }

    /// Runs one request that is not a PSD transaction on any module, and
    /// stores its audit entries (a refusal's too).
    async fn call(&self, request: Outer) -> Result<OuterReply> {
        let mut held = self.hold().await?;
        let result = held.run(request);
        self.flush(&mut held).await?;
        result
    }

    /// Sends one PSD command with the module table's record. A checkpoint
    /// mismatch is counted (see [`Vault::open_with_limit`]) and returned as it
    /// is: the vault does not Auto-Recover while running, because a database
    /// restored from a backup looks the same to the module as one that missed
    /// an uncommitted transaction (docs/decisions.md); at start it can tell
    /// them apart from the audit database. The audit entries stay in the
    /// backlog until the caller has committed.
    fn postal(
        &self,
        held: &mut Held<'_>,
        checkpoint: Option<&[u8]>,
        command: PostalCommand,
    ) -> Result<PostalReply> {
        if self.halted.load(Ordering::SeqCst) {
            return Err(VaultError::Halted {
                mismatches: self.mismatches.load(Ordering::SeqCst),
            });
        }
        let checkpoint = checkpoint
            .map(|b| codec::decode::<CheckpointRecord>(b, "checkpoint record"))
            .transpose()?;
        let reply = held.run(Outer::Postal(Box::new(PostalRequest {
            checkpoint,
            command,
        })));
        if let Err(VaultError::Module(postvault_module::Error::PsdCheck(
            postvault_module::PsdCheck::CheckpointMismatch | postvault_module::PsdCheck::Inhibited,
        ))) = &reply
        {
            self.mismatch(&held.m.serial);
        }
        match reply? {
            OuterReply::Postal(r) => Ok(*r),
            _ => Err(VaultError::Pool("unexpected reply to a PSD command".into())),
        }
    }

    /// Stores a command's package and checkpoint in `tx` (compare-and-swap).
    async fn keep(
        tx: &mut S::Tx,
        serial: &str,
        old_package: Option<[u8; 32]>,
        old_checkpoint: Option<&[u8]>,
        reply: &PostalReply,
        customer_id: Option<String>,
    ) -> Result<()> {
        let body = reply.package.peek()?;
        tx.put_package(
            &PackageRow {
                device_id: body.device_id,
                package: reply.package.encode()?,
                mac: reply.package.mac,
                customer_id,
            },
            old_package,
        )
        .await?;
        tx.put_checkpoint(serial, &codec::encode(&reply.checkpoint)?, old_checkpoint)
            .await?;
        Ok(())
    }

    /// Ends a PSD operation: if it failed after the module ran (nothing was
    /// committed), Auto-Recovers the module to the record it was given, so it
    /// serves the next request; then stores the audit entries, which after a
    /// commit are the record that the transactions were committed. (After a
    /// module's very first transaction there is no record to return to; that
    /// module then needs an operator.)
    async fn finish_psd<T>(
        &self,
        held: &mut Held<'_>,
        ran: bool,
        before: Option<&[u8]>,
        result: Result<T>,
    ) -> Result<T> {
        if ran
            && result.is_err()
            && let Some(bytes) = before
            && let Ok(checkpoint) = codec::decode::<CheckpointRecord>(bytes, "checkpoint record")
        {
            // The original error is what the caller needs; a failed recovery
            // shows in the audit log and in the next command's refusal.
            let _ = held.run(Outer::AutoRecoverCheckpoint { checkpoint });
        }
        if let Err(e) = self.flush(held).await {
            // Committed work stays committed; the entries are in the module's
            // own log and are copied to the store at the next start.
            tracing::error!(module = %held.m.serial, error = %e, "audit entries not stored yet");
            if result.is_err() {
                return Err(e);
            }
        }
        result
    }

    /// Meter generation: a module makes the package and key, the CA certifies
    /// the module's request, the vault checks the certificate against the CA
    /// before storing it, and the module authorises the package with it.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] if the device id exists; the module's or CA's refusal.
    pub async fn generate_meter(
        &self,
        ca: &PostalCa,
        device: DeviceId,
        serial: u32,
        validity: Validity,
        today: Date,
    ) -> Result<()> {
        let mut tx = self.store.begin().await?;
        if tx.lock_meter(device.to_bytes()).await?.is_some() {
            return Err(StoreError::Duplicate {
                what: "a meter with this device id",
            }
            .into());
        }
        let mut held = self.hold().await?;
        let module = held.m.serial.clone();
        let before = tx.checkpoint(&module).await?;
        let first = match self.postal(
            &mut held,
            before.as_deref(),
            PostalCommand::Initialize {
                device_id: device.to_bytes(),
            },
        ) {
            Ok(r) => r,
            Err(e) => return self.finish_psd(&mut held, false, None, Err(e)).await,
        };
        let rest = async {
            let PostalOutcome::Initialized {
                certificate_request,
                ..
            } = &first.outcome
            else {
                return Err(VaultError::Pool(
                    "unexpected reply to Initialize PSD".into(),
                ));
            };
            let certificate = ca.issue_from_request(certificate_request, serial, validity)?;
            postvault_indicium::cert::verify_chain(
                ca.certificate(),
                certificate.certificate(),
                today,
            )?;
            if certificate.device_id() != device {
                return Err(VaultError::Pool(
                    "the CA certified another device id".into(),
                ));
            }
            let mid = codec::encode(&first.checkpoint)?;
            let second = self.postal(
                &mut held,
                Some(&mid),
                PostalCommand::Authorize {
                    package: first.package.clone(),
                    certificate: certificate.certificate().der().to_vec(),
                },
            )?;
            Self::keep(&mut tx, &module, None, before.as_deref(), &second, None).await?;
            tx.put_certificate(device.to_bytes(), serial, certificate.certificate().der())
                .await?;
            tx.commit().await.map_err(VaultError::from)
        }
        .await;
        self.finish_psd(&mut held, true, before.as_deref(), rest)
            .await
    }

    /// Runs a command on a meter's stored package and commits its results; `extra`
    /// adds writes to the same transaction (the indicium, an idempotency reply).
    /// With an idempotency key already answered, returns that answer instead,
    /// checked under the meter lock so two retries cannot both run.
    async fn on_meter<F>(
        &self,
        device: DeviceId,
        customer_id: Option<String>,
        idempotency: Option<&str>,
        command: impl FnOnce(PsdPackage) -> PostalCommand,
        extra: F,
    ) -> Result<Done>
    where
        F: AsyncFnOnce(&mut S::Tx, &PostalReply) -> Result<()>,
    {
        let mut tx = self.store.begin().await?;
        let row = tx
            .lock_meter(device.to_bytes())
            .await?
            .ok_or(VaultError::NotFound("no meter with this device id"))?;
        if let Some(key) = idempotency
            && let Some(answer) = tx.idempotent(key).await?
        {
            return Ok(Done::Replayed(answer));
        }
        let package = PsdPackage::decode(&row.package)?;
        let mut held = self.hold().await?;
        let module = held.m.serial.clone();
        let before = tx.checkpoint(&module).await?;
        let reply = match self.postal(&mut held, before.as_deref(), command(package)) {
            Ok(r) => r,
            Err(e) => return self.finish_psd(&mut held, false, None, Err(e)).await,
        };
        let customer = customer_id.or(row.customer_id);
        let rest = async {
            Self::keep(
                &mut tx,
                &module,
                Some(row.mac),
                before.as_deref(),
                &reply,
                customer,
            )
            .await?;
            extra(&mut tx, &reply).await?;
            tx.commit().await.map_err(VaultError::from)
        }
        .await;
        self.finish_psd(&mut held, true, before.as_deref(), rest)
            .await?;
        Ok(Done::Ran(Box::new(reply)))
    }

    /// Configure PSD for a customer; returns the module's reply MAC'd with their new key.
    ///
    /// # Errors
    /// The module's refusal; a store failure.
    pub async fn configure(
        &self,
        device: DeviceId,
        customer_id: &str,
        sealed_secrets: Vec<u8>,
    ) -> Result<CustomerReply> {
        let id = customer_id.to_owned();
        let done = self
            .on_meter(
                device,
                Some(id.clone()),
                None,
                |package| PostalCommand::Configure {
                    package,
                    customer_id: id.clone(),
                    sealed_secrets,
                },
                async |_: &mut S::Tx, _: &PostalReply| Ok(()),
            )
            .await?;
        customer_reply(done.ran()?)
    }

    /// KMS message MI5 into the meter's package; returns MI6, the test tokens.
    ///
    /// # Errors
    /// The module's refusal (installed already, wrong state, a key that does
    /// not open for this meter); a store failure.
    pub async fn install_domain_key(
        &self,
        device: DeviceId,
        role: postvault_module::psd::DomainRole,
        domain: &str,
        key_id: u64,
        sealed_key: Vec<u8>,
    ) -> Result<[u8; 16]> {
        let done = self
            .on_meter(
                device,
                None,
                None,
                |package| PostalCommand::InstallDomainKey {
                    package,
                    role,
                    domain: domain.to_owned(),
                    key_id,
                    sealed_key,
                },
                async |_: &mut S::Tx, _: &PostalReply| Ok(()),
            )
            .await?;
        match done.ran()?.outcome {
            PostalOutcome::KeyInstalled { test_tokens } => Ok(test_tokens),
            _ => Err(VaultError::Pool(
                "unexpected reply to Install Domain Key".into(),
            )),
        }
    }

    /// KMS message MR1: the meter records its indicia number and country and
    /// reports them under each domain key; returns the reports' tokens and date.
    ///
    /// # Errors
    /// The module's refusal (registered already, keys missing); a store failure.
    pub async fn register_domain_keys(
        &self,
        device: DeviceId,
        indicia_number: &str,
        country: &str,
    ) -> Result<(
        Vec<(postvault_module::psd::DomainRole, String, u64, [u8; 16])>,
        u16,
    )> {
        let done = self
            .on_meter(
                device,
                None,
                None,
                |package| PostalCommand::RegisterDomainKeys {
                    package,
                    indicia_number: indicia_number.to_owned(),
                    country: country.to_owned(),
                },
                async |_: &mut S::Tx, _: &PostalReply| Ok(()),
            )
            .await?;
        match done.ran()?.outcome {
            PostalOutcome::KeysRegistered { tokens, date } => Ok((tokens, date)),
            _ => Err(VaultError::Pool(
                "unexpected reply to Register Domain Keys".into(),
            )),
        }
    }

    /// A provider order (authorise customer, download, refund, password reset).
    /// A refund indicium is stored like any other.
    ///
    /// # Errors
    /// The module's refusal; a store failure.
    pub async fn provider(&self, device: DeviceId, order: SignedOrder) -> Result<PostalOutcome> {
        self.provider_for(device, order, None).await
    }

    /// [`Vault::provider`]; a download for a purchase marks it done in the
    /// same transaction.
    ///
    /// # Errors
    /// As [`Vault::provider`]; [`StoreError::NotFound`] for an unknown purchase.
    pub async fn provider_for(
        &self,
        device: DeviceId,
        order: SignedOrder,
        purchase: Option<&str>,
    ) -> Result<PostalOutcome> {
        let done = self
            .on_meter(
                device,
                None,
                None,
                |package| PostalCommand::Provider { package, order },
                async |tx: &mut S::Tx, reply: &PostalReply| {
                    if let PostalOutcome::Refund { indicium } = &reply.outcome {
                        tx.insert_indicium(&indicium_row(indicium, None, None)?)
                            .await?;
                    }
                    if let Some(id) = purchase {
                        tx.set_purchase_status(
                            device.to_bytes(),
                            id,
                            postvault_store::PurchaseStatus::Done,
                        )
                        .await?;
                    }
                    Ok(())
                },
            )
            .await?;
        Ok(done.ran()?.outcome)
    }

    /// A customer's request. With a client transaction id, a retry returns the
    /// reply already given and charges nothing again; the indicium is stored
    /// before the reply is released.
    ///
    /// # Errors
    /// The module's refusal (a retry with another request under the same id is
    /// refused by the module's challenge check); a store failure.
    pub async fn customer(
        &self,
        device: DeviceId,
        customer_id: &str,
        request: CustomerRequest,
        client_txn: Option<&str>,
    ) -> Result<CustomerReply> {
        Ok(self
            .customer_request(device, customer_id, request, client_txn)
            .await?
            .0)
    }

    /// [`Vault::customer`], with the store id of the indicium it issued.
    ///
    /// # Errors
    /// As [`Vault::customer`].
    pub async fn customer_request(
        &self,
        device: DeviceId,
        customer_id: &str,
        request: CustomerRequest,
        client_txn: Option<&str>,
    ) -> Result<(CustomerReply, Option<i64>)> {
        let key = client_txn.map(|t| format!("customer:{device}:{t}"));
        let id = customer_id.to_owned();
        let txn = client_txn.map(str::to_owned);
        let stored_id = Mutex::new(None);
        let stored_id = &stored_id;
        let done = self
            .on_meter(
                device,
                None,
                key.as_deref(),
                |package| PostalCommand::Customer { package, request },
                async |tx: &mut S::Tx, reply: &PostalReply| {
                    let r = match &reply.outcome {
                        PostalOutcome::Customer(r) => r,
                        _ => return Err(VaultError::Pool("unexpected customer reply".into())),
                    };
                    let mut issued = None;
                    if let Some(bytes) = &r.body.indicium {
                        issued = Some(
                            tx.insert_indicium(&indicium_row(
                                bytes,
                                Some(id.clone()),
                                txn.clone(),
                            )?)
                            .await?,
                        );
                    }
                    *stored_id
                        .lock()
                        .map_err(|_| VaultError::Pool("poisoned".into()))? = issued;
                    if let Some(key) = &key {
                        tx.put_idempotent(key, &codec::encode(&(r, issued))?)
                            .await?;
                    }
                    Ok(())
                },
            )
            .await?;
        match done {
            Done::Ran(reply) => {
                let issued = *stored_id
                    .lock()
                    .map_err(|_| VaultError::Pool("poisoned".into()))?;
                Ok((customer_reply(*reply)?, issued))
            }
            Done::Replayed(bytes) => Ok(codec::decode(&bytes, "stored reply")?),
        }
    }
}

impl<S: Store> Vault<S> {
    /// The crypto-card's public keys and the registration signing key's
    /// signature over the vendor key, from a module of the pool.
    ///
    /// # Errors
    /// The module's refusal (no crypto-card loaded).
    pub async fn vendor_key(
        &self,
    ) -> Result<(postvault_module::cryptocard::CardPublic, (u8, Vec<u8>))> {
        match self.call(Outer::VendorKey).await? {
            OuterReply::VendorKey { public, signature } => Ok((public, signature)),
            _ => Err(VaultError::Pool("unexpected reply to Vendor Key".into())),
        }
    }
}

/// How a sign-on ended.
#[derive(Debug)]
pub enum SignOn {
    /// Signed on: the session token (for the store and the client) and the
    /// answer sealed under the client's session key.
    SignedOn {
        /// The session key as a token under the MKS.
        session: Vec<u8>,
        /// The sealed answer.
        answer: Vec<u8>,
    },
    /// A wrong passphrase, counted in the package.
    Refused {
        /// Wrong passphrases in a row.
        failures: u8,
        /// Whether sign-on is now locked.
        locked: bool,
    },
}

impl<S: Store> Vault<S> {
    /// A customer's sign-on on their meter. A wrong passphrase is a committed
    /// transaction too: the package counts it.
    ///
    /// # Errors
    /// The module's refusal (locked, wrong customer, unreadable sign-on); a store failure.
    pub async fn sign_on(
        &self,
        device: DeviceId,
        customer_id: &str,
        sealed: Vec<u8>,
    ) -> Result<SignOn> {
        let id = customer_id.to_owned();
        let done = self
            .on_meter(
                device,
                None,
                None,
                |package| PostalCommand::SignOn {
                    package,
                    customer_id: id,
                    sealed,
                },
                async |_: &mut S::Tx, _: &PostalReply| Ok(()),
            )
            .await?;
        match done.ran()?.outcome {
            PostalOutcome::SignedOn { session, answer } => Ok(SignOn::SignedOn { session, answer }),
            PostalOutcome::SignOnRefused { failures, locked } => {
                Ok(SignOn::Refused { failures, locked })
            }
            _ => Err(VaultError::Pool("unexpected reply to sign-on".into())),
        }
    }

    /// Opens a customer's sealed message in a module and takes its counter in
    /// the store (after it opened, so garbage cannot burn counters). Returns
    /// the meter the session is for and the message.
    ///
    /// # Errors
    /// The module's refusal ([`postvault_module::PsdCheck::Session`]);
    /// [`StoreError::Replayed`] for a counter already taken.
    pub async fn open_message(
        &self,
        session: &[u8],
        counter: u64,
        sealed: Vec<u8>,
    ) -> Result<(DeviceId, Vec<u8>)> {
        let reply = self
            .call(Outer::SessionOpen {
                session: session.to_vec(),
                counter,
                sealed,
            })
            .await?;
        let OuterReply::MessageOpened {
            device_id,
            plaintext,
        } = reply
        else {
            return Err(VaultError::Pool("unexpected reply to Session Open".into()));
        };
        let id = postvault_crypto::hash::sha256(&[b"postvault session id v1", session]);
        self.store
            .take_session_counter(id, device_id, counter)
            .await?;
        Ok((DeviceId::from_bytes(device_id)?, plaintext))
    }

    /// Seals a reply to a customer's message in a module.
    ///
    /// # Errors
    /// The module's refusal.
    pub async fn seal_message(
        &self,
        session: &[u8],
        counter: u64,
        plaintext: Vec<u8>,
    ) -> Result<Vec<u8>> {
        match self
            .call(Outer::SessionSeal {
                session: session.to_vec(),
                counter,
                plaintext,
            })
            .await?
        {
            OuterReply::MessageSealed(bytes) => Ok(bytes),
            _ => Err(VaultError::Pool("unexpected reply to Session Seal".into())),
        }
    }
}

/// What [`Vault::on_meter`] did.
enum Done {
    /// The command ran and its results are committed.
    Ran(Box<PostalReply>),
    /// The idempotency key was answered before: the stored answer.
    Replayed(Vec<u8>),
}

impl Done {
    fn ran(self) -> Result<PostalReply> {
        match self {
            Done::Ran(r) => Ok(*r),
            Done::Replayed(_) => Err(VaultError::Pool("unexpected replayed answer".into())),
        }
    }
}

/// Most PSD transactions one operation makes (meter generation makes two).
const MAX_IN_FLIGHT: usize = 2;

/// A module whose newest checkpoint is not the module table's, at start. The
/// audit database tells a crash from a restore: the vault stores a PSD
/// transaction's audit entries only after its commit, so an entry there for a
/// transaction newer than the table's record (and not discarded since) means
/// the vault database lost committed work.
///
/// Without one, it is a crash only if the module's own log says so too: the
/// entries the audit database lacks must be the PSD entries of one operation
/// (at most [`MAX_IN_FLIGHT`], all newer than the table's record) followed only
/// by this start's boot entry, and that boot must have found an unclean
/// power-off. Anything else (a clean power-off after the transaction, other
/// work after it, more missing entries) means the audit database was restored
/// together with the vault database: a mismatch, never an automatic recovery.
async fn reconcile<S: Store>(
    store: &S,
    serial: &str,
    dir: &Path,
    host: &mut ModuleHost,
    table: Option<&[u8]>,
) -> Result<Reconciled> {
    use std::collections::BTreeMap;

    use postvault_module::audit::{AuditData, parse_log};

    let Some(table) = table else {
        return Ok(Reconciled::Mismatch(format!(
            "checkpoint mismatch: module {serial} has made PSD transactions but the module table has no record for it (a database restored from before its first transaction?)"
        )));
    };
    let record: CheckpointRecord = codec::decode(table, "checkpoint record")?;
    let table_counter = record.peek()?.counter;
    let stored = store.audit_entries(serial, 0, u32::MAX).await?.concat();
    let entries = parse_log(&stored).map_err(|error| VaultError::Audit {
        module: serial.to_owned(),
        error,
    })?;
    let mut committed = BTreeMap::new();
    for e in &entries {
        match e.decode_body()?.data {
            AuditData::Psd(b) => {
                committed.insert(b.counter, *b);
            }
            AuditData::Discarded(b) if committed.get(&b.counter) == Some(&*b) => {
                committed.remove(&b.counter);
            }
            AuditData::CheckpointRecovered { discarded, .. } => {
                for b in discarded {
                    if committed.get(&b.counter) == Some(&b) {
                        committed.remove(&b.counter);
                    }
                }
            }
            _ => {}
        }
    }
    if let Some((counter, b)) = committed.range(table_counter.saturating_add(1)..).next() {
        return Ok(Reconciled::Mismatch(format!(
            "checkpoint mismatch: the audit database records committed transaction #{counter} of module {serial} (meter {}, package transaction {}), which the module table does not have: the vault database was restored from an older copy or lost writes",
            hex::encode(b.device_id),
            b.package_sequence
        )));
    }
    if let Some(why) = not_a_crash(store, serial, dir, table_counter).await? {
        return Ok(Reconciled::Mismatch(format!(
            "checkpoint mismatch: module {serial} is ahead of the module table, and {why}: the vault and audit databases were restored together, or lost writes"
        )));
    }
    match host.call(Outer::AutoRecoverCheckpoint { checkpoint: record }) {
        Ok(OuterReply::Recovered { discarded }) => Ok(Reconciled::Recovered(discarded)),
        Ok(_) => Ok(Reconciled::Mismatch(
            "unexpected reply to Auto-Recover".into(),
        )),
        Err(e) => Ok(Reconciled::Mismatch(format!(
            "checkpoint mismatch: module {serial} is ahead of the module table and Auto-Recover refused: {e}"
        ))),
    }
}

/// Why the entries the audit database lacks are not the shape a crash before
/// commit leaves (see [`reconcile`]); `None` if they are.
async fn not_a_crash<S: Store>(
    store: &S,
    serial: &str,
    dir: &Path,
    table_counter: u64,
) -> Result<Option<String>> {
    use postvault_module::audit::AuditData;

    let path = dir.join(crate::moduledir::AUDIT_LOG);
    let bytes =
        std::fs::read(&path).map_err(|e| VaultError::Pool(format!("{}: {e}", path.display())))?;
    let own = postvault_module::audit::parse_log(&bytes)
        .map_err(|e| VaultError::Pool(format!("{}: {e}", path.display())))?;
    let next = usize::try_from(store.audit_next(serial).await?).unwrap_or(usize::MAX);
    let missing: Vec<AuditData> = own
        .iter()
        .skip(next)
        .map(|e| e.decode_body().map(|b| b.data))
        .collect::<postvault_module::Result<_>>()?;
    // The boots since (one per start, more if a start was itself interrupted).
    let is_boot = |d: &AuditData| matches!(d, AuditData::Boot(_) | AuditData::Resumed(_));
    let boots = missing.iter().rev().take_while(|d| is_boot(d)).count();
    let (work, boots) = missing.split_at(missing.len().saturating_sub(boots));
    match boots.first() {
        Some(AuditData::Boot(_)) => {}
        Some(_) => {
            return Ok(Some(
                "its log shows a clean power-off after the transactions".into(),
            ));
        }
        None => return Ok(Some("its log shows no start since the transactions".into())),
    }
    if work.is_empty() || work.len() > MAX_IN_FLIGHT {
        return Ok(Some(format!(
            "the audit database lacks {} entries of its log, not the one operation a crash interrupts",
            work.len()
        )));
    }
    if !work
        .iter()
        .all(|d| matches!(d, AuditData::Psd(b) if b.counter > table_counter))
    {
        return Ok(Some(
            "the audit database lacks entries older than the uncommitted transactions".into(),
        ));
    }
    Ok(None)
}

/// Brings the store's copy of a module's audit log up to the module's own log
/// (entries made while no server ran: the ceremony, operators' commands).
async fn catch_up<S: Store>(store: &S, serial: &str, dir: &Path) -> Result<()> {
    let path = dir.join(crate::moduledir::AUDIT_LOG);
    let bytes =
        std::fs::read(&path).map_err(|e| VaultError::Pool(format!("{}: {e}", path.display())))?;
    let entries = postvault_module::audit::parse_log(&bytes)
        .map_err(|e| VaultError::Pool(format!("{}: {e}", path.display())))?;
    let next = store.audit_next(serial).await?;
    let missing: Vec<Vec<u8>> = entries
        .iter()
        .skip(usize::try_from(next).unwrap_or(usize::MAX))
        .map(postvault_module::audit::AuditEntry::to_stored)
        .collect::<postvault_module::Result<_>>()?;
    if !missing.is_empty() {
        store.append_audit(serial, next, &missing).await?;
    }
    Ok(())
}

fn customer_reply(reply: PostalReply) -> Result<CustomerReply> {
    match reply.outcome {
        PostalOutcome::Customer(r) => Ok(r),
        _ => Err(VaultError::Pool("expected a reply for the customer".into())),
    }
}

fn indicium_row(
    bytes: &[u8],
    customer_id: Option<String>,
    client_txn: Option<String>,
) -> Result<IndiciumRow> {
    let i = Indicium::parse(bytes)?;
    let d = i.data();
    Ok(IndiciumRow {
        id: 0,
        device_id: d.device_id.to_bytes(),
        customer_id,
        client_txn,
        kind: d.kind().name().to_owned(),
        postage: d.postage.tenths(),
        ascending_register: d.ascending_register.tenths(),
        mail_piece_key: i.mail_piece_key(),
        bytes: bytes.to_vec(),
        refund_requested: false,
    })
}
