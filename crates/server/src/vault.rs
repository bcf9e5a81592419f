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
use std::sync::atomic::{AtomicUsize, Ordering};

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
}

/// Result with [`VaultError`].
pub type Result<T> = core::result::Result<T, VaultError>;

struct PoolModule {
    serial: String,
    dir: PathBuf,
    host: Mutex<ModuleHost>,
}

/// The vault over a store `S`.
pub struct Vault<S: Store> {
    store: S,
    modules: Vec<PoolModule>,
    next: AtomicUsize,
}

fn lock(m: &PoolModule) -> Result<std::sync::MutexGuard<'_, ModuleHost>> {
    m.host
        .lock()
        .map_err(|_| VaultError::Pool(format!("module {} is poisoned", m.serial)))
}

impl<S: Store> Vault<S> {
    /// Opens the vault: powers on each module directory and registers any the
    /// store does not know yet.
    ///
    /// # Errors
    /// A module that cannot be powered on or has no serial; a store failure.
    pub async fn open(store: S, module_dirs: &[PathBuf]) -> Result<Self> {
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
            catch_up(&store, &serial, dir).await?;
            modules.push(PoolModule {
                serial,
                dir: dir.clone(),
                host: Mutex::new(host),
            });
        }
        Ok(Self {
            store,
            modules,
            next: AtomicUsize::new(0),
        })
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
            lock(m)?.shutdown()?;
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
            let head = postvault_module::module::stored_audit_head(lock(m)?.module.nvm())?
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

    fn pick(&self) -> Result<&PoolModule> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.modules
            .get(n % self.modules.len().max(1))
            .ok_or_else(|| VaultError::Pool("no modules".into()))
    }

    /// Runs one request on a module and hands its audit entries to the store
    /// (they are already in the module's own log). The entries are stored even
    /// when the module refused.
    async fn call(&self, m: &PoolModule, request: Outer) -> Result<OuterReply> {
        let (result, entries) = {
            let mut host = lock(m)?;
            let result = host.call(request);
            (result, host.sink.take_last())
        };
        if let Some(first) = entries.first() {
            let seq = first.decode_body()?.seq;
            let stored: Vec<Vec<u8>> = entries
                .iter()
                .map(postvault_module::audit::AuditEntry::to_stored)
                .collect::<postvault_module::Result<_>>()?;
            self.store.append_audit(&m.serial, seq, &stored).await?;
        }
        Ok(result?)
    }

    /// Sends one PSD command with the module table's record. A checkpoint
    /// mismatch is returned as it is: the vault does not Auto-Recover by itself,
    /// because a database restored from a backup looks the same as one that
    /// missed an uncommitted transaction, and recovering from the former would
    /// give back value already printed (docs/decisions.md).
    async fn postal(
        &self,
        m: &PoolModule,
        checkpoint: Option<&[u8]>,
        command: PostalCommand,
    ) -> Result<PostalReply> {
        let checkpoint = checkpoint
            .map(|b| codec::decode::<CheckpointRecord>(b, "checkpoint record"))
            .transpose()?;
        match self
            .call(
                m,
                Outer::Postal(Box::new(PostalRequest {
                    checkpoint,
                    command,
                })),
            )
            .await?
        {
            OuterReply::Postal(r) => Ok(*r),
            _ => Err(VaultError::Pool("unexpected reply to a PSD command".into())),
        }
    }

    /// Stores a command's package and checkpoint in `tx` (compare-and-swap).
    async fn keep(
        tx: &mut S::Tx,
        m: &PoolModule,
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
        tx.put_checkpoint(
            &m.serial,
            &codec::encode(&reply.checkpoint)?,
            old_checkpoint,
        )
        .await?;
        Ok(())
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
        let m = self.pick()?;
        let mut tx = self.store.begin().await?;
        if tx.lock_meter(device.to_bytes()).await?.is_some() {
            return Err(StoreError::Duplicate {
                what: "a meter with this device id",
            }
            .into());
        }
        let before = self.store.checkpoint(&m.serial).await?;
        let first = self
            .postal(
                m,
                before.as_deref(),
                PostalCommand::Initialize {
                    device_id: device.to_bytes(),
                },
            )
            .await?;
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
            let second = self
                .postal(
                    m,
                    Some(&mid),
                    PostalCommand::Authorize {
                        package: first.package.clone(),
                        certificate: certificate.certificate().der().to_vec(),
                    },
                )
                .await?;
            Self::keep(&mut tx, m, None, before.as_deref(), &second, None).await?;
            tx.put_certificate(device.to_bytes(), serial, certificate.certificate().der())
                .await?;
            tx.commit().await.map_err(VaultError::from)
        }
        .await;
        self.undo_on_error(m, before.as_deref(), rest).await
    }

    /// A failure after the module ran but before commit leaves the module ahead
    /// of the module table with transactions nothing was released for: Auto-
    /// Recover it to the record it was given, so it serves the next request.
    /// (After a module's very first transaction there is no record to return
    /// to; that module then needs an operator.)
    async fn undo_on_error<T>(
        &self,
        m: &PoolModule,
        before: Option<&[u8]>,
        result: Result<T>,
    ) -> Result<T> {
        if result.is_err()
            && let Some(bytes) = before
            && let Ok(checkpoint) = codec::decode::<CheckpointRecord>(bytes, "checkpoint record")
        {
            // The original error is what the caller needs; a failed recovery
            // shows in the audit log and in the next command's refusal.
            let _ = self
                .call(m, Outer::AutoRecoverCheckpoint { checkpoint })
                .await;
        }
        result
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
        let m = self.pick()?;
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
        let before = self.store.checkpoint(&m.serial).await?;
        let reply = self.postal(m, before.as_deref(), command(package)).await?;
        let customer = customer_id.or(row.customer_id);
        let rest = async {
            Self::keep(
                &mut tx,
                m,
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
        self.undo_on_error(m, before.as_deref(), rest).await?;
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

    /// A provider order (authorise customer, download, refund, password reset).
    /// A refund indicium is stored like any other.
    ///
    /// # Errors
    /// The module's refusal; a store failure.
    pub async fn provider(&self, device: DeviceId, order: SignedOrder) -> Result<PostalOutcome> {
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
        let key = client_txn.map(|t| format!("customer:{device}:{t}"));
        let id = customer_id.to_owned();
        let txn = client_txn.map(str::to_owned);
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
                    if let Some(bytes) = &r.body.indicium {
                        tx.insert_indicium(&indicium_row(bytes, Some(id.clone()), txn.clone())?)
                            .await?;
                    }
                    if let Some(key) = &key {
                        tx.put_idempotent(key, &codec::encode(r)?).await?;
                    }
                    Ok(())
                },
            )
            .await?;
        match done {
            Done::Ran(reply) => customer_reply(*reply),
            Done::Replayed(bytes) => Ok(codec::decode(&bytes, "stored reply")?),
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
