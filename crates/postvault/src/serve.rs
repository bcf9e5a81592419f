//! A vault on disk: the development ceremony that makes one, opening its
//! service, and serving its HTTP API.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use postvault_crypto::sig::{SigAlg, SigningKey};
use postvault_indicium::cert::{Certificate, PostalCa};
use postvault_indicium::{Date, Money};
use postvault_module::wire::ModuleConfig;
use postvault_server::config::{CONFIG_VERSION, DEFAULT_LISTEN, DataDir, VaultConfig};
use postvault_server::service::Service;
use postvault_server::{Vault, http};
use postvault_store::sqlite::SqliteStore;

use crate::ceremony::{self, write_private};
use crate::error::CliError;
use crate::postal::{PostalParties, initialize_crypto_card};

/// The service of a vault on disk over SQLite.
pub type LocalService = Service<SqliteStore>;

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::io(path, &e))
}

/// Options of a new development vault.
pub struct InitOptions {
    /// Modules in the pool (the master and its clones).
    pub modules: usize,
}

/// The development ceremony: a pool of modules sharing one MKS (the master's,
/// cloned by 2-of-3 shares), a postal CA and provider key, the crypto-card
/// loaded on every module, and the configuration. The custodians'
/// passphrases and the CA and provider keys are written into the data
/// directory: fine for development, never for a real vault.
///
/// # Errors
/// [`CliError::Input`] if the directory already holds a vault; the first step that fails.
pub fn init_vault(
    data: &DataDir,
    opts: &InitOptions,
    say: &mut dyn FnMut(&str),
) -> Result<VaultConfig, CliError> {
    if data.config().exists() {
        return Err(CliError::Input(format!(
            "{} already holds a vault",
            data.path().display()
        )));
    }
    if opts.modules == 0 {
        return Err(CliError::Input("a pool needs at least one module".into()));
    }
    say(
        "WARNING: development vault: the custodians' passphrases, the CA key and the provider officer's device PIN are written to disk",
    );
    let work = data.path().join("ceremony");
    let postal = data.path().join("postal");
    for d in [&work, &postal, &data.modules()] {
        std::fs::create_dir_all(d).map_err(|e| CliError::io(d, &e))?;
    }
    let names: Vec<PathBuf> = (1..=opts.modules)
        .map(|i| PathBuf::from("modules").join(format!("m{i}")))
        .collect();
    let dirs: Vec<PathBuf> = names.iter().map(|n| data.module(n)).collect();
    let accounts = ceremony::generated_accounts(&data.path().join("dev-credentials.json"), say)?;
    let so = ceremony::security_officer(&accounts)?;
    let config = ModuleConfig::default();
    let (master, clones) = dirs
        .split_first()
        .ok_or_else(|| CliError::Input("no modules".into()))?;
    let mks = ceremony::found_master(master, &accounts, config, say)?;
    for clone in clones {
        ceremony::join_clone(master, clone, &accounts, config, &work, &mks, say)?;
    }

    let now = crate::vault::with_module(master, |h| Ok(h.status()?.time))?;
    let today = Date::from_unix_seconds(i64::try_from(now).unwrap_or(i64::MAX))?;
    let parties = PostalParties::generate(today)?;
    let mut settings = parties.settings(Money::from_tenths(5_000_000));
    // The provider's order-signing key is held by the vault's signing node,
    // sealed under the provider officer's device (seed 003): its public half
    // goes on the crypto-card.
    let provider_pin = hex::encode(postvault_crypto::rand::bytes::<8>()?);
    settings.provider_key = crate::sign::enrol_file(
        &data.signing_node(),
        PROVIDER_ID,
        &data.provider_device(),
        &provider_pin,
        crate::meter::CUSTOMER_KDF,
    )?;
    write_private(&data.provider_pin(), provider_pin.as_bytes())?;
    let (tokens, card) = initialize_crypto_card(master, &so, settings.clone(), None)?;
    for clone in clones {
        let (_, public) =
            initialize_crypto_card(clone, &so, settings.clone(), Some(tokens.clone()))?;
        if public != card {
            return Err(CliError::Check(
                "a clone's crypto-card keys differ from the master's".into(),
            ));
        }
    }
    say(&format!(
        "crypto-card: postal CA, provider key and limits loaded on {} module(s); the clones took the registration and checkpoint keys from the master's tokens",
        dirs.len()
    ));
    std::fs::write(data.ca_certificate(), parties.ca.certificate().to_pem())
        .map_err(|e| CliError::io(&data.ca_certificate(), &e))?;
    write_private(&data.ca_key(), parties.ca.key_to_pkcs8_pem()?.as_bytes())?;
    say(&format!(
        "the provider's order-signing key is held sealed by the signing node in {}; each order is approved on the provider officer's device {} (development: its PIN is in {} and the node's storage key beside its records, so this directory alone can recover the key)",
        data.signing_node().display(),
        data.provider_device().display(),
        data.provider_pin().display()
    ));
    say(&format!(
        "the registration signing key, for customers to pin (meter register --vault-key): {}",
        hex::encode(&card.registration_signing.1)
    ));
    let auditor_token = hex::encode(postvault_crypto::rand::bytes::<16>()?);
    write_private(&data.auditor_token(), auditor_token.as_bytes())?;
    say(&format!(
        "the auditor's bearer token for /v1/audit is in {} (development)",
        data.auditor_token().display()
    ));
    let vault = VaultConfig {
        version: CONFIG_VERSION,
        name: "postvault development vault".into(),
        modules: names,
        listen: DEFAULT_LISTEN.into(),
        auto_approve: false,
        max_checkpoint_mismatches: 3,
        dr_limit: 5_000_000,
        certificate_days: 730,
        vendor_code: "PV".into(),
        auditor_token_sha256: Some(hex::encode(postvault_crypto::hash::sha256(&[
            auditor_token.as_bytes(),
        ]))),
        audit_interval_seconds: 30,
        postal_domain: "USPS".into(),
        country: "US".into(),
    };
    vault
        .write(&data.config())
        .map_err(|e| CliError::Input(e.to_string()))?;
    say(&format!(
        "vault configuration written to {}",
        data.config().display()
    ));
    Ok(vault)
}

/// Opens a vault's service: the configuration, the store, the module pool, the
/// CA and provider. `auto_approve` turns development auto-approval on whatever
/// the configuration says.
///
/// # Errors
/// A missing or invalid file; a module that cannot be powered on; a store failure.
pub async fn open_service(
    data: &DataDir,
    config_file: Option<&Path>,
    auto_approve: bool,
) -> Result<LocalService, CliError> {
    let lock_path = data.path().join("vault.lock");
    // This process may open the same vault again (after closing it, as
    // `kms demo` does between its steps): the lock it holds is its own.
    static HELD: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let poisoned = |_| CliError::Check("the vault lock table is poisoned".into());
    let canonical = std::fs::canonicalize(data.path()).unwrap_or_else(|_| data.path().to_owned());
    let ours = HELD.lock().map_err(poisoned)?.contains(&canonical);
    if ours {
        return open_locked(data, config_file, auto_approve).await;
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| CliError::io(&lock_path, &e))?;
    if lock.try_lock().is_err() {
        return Err(CliError::Input(format!(
            "the vault in {} is in use by another process (is `postvault serve` running there?)",
            data.path().display()
        )));
    }
    // Held until the process exits: one process drives the modules at a time.
    std::mem::forget(lock);
    HELD.lock().map_err(poisoned)?.push(canonical);
    open_locked(data, config_file, auto_approve).await
}

/// The provider officer's id on the vault's signing node.
pub const PROVIDER_ID: &str = "provider";

/// The device the provider's orders are approved on, if the command line
/// named one (`provider … --device` or `--pkcs11-module`); else the
/// development device beside the vault.
static PROVIDER_DEVICE: std::sync::Mutex<Option<(crate::sign::DeviceSpec, Option<PathBuf>)>> =
    std::sync::Mutex::new(None);

/// Names the provider officer's device (and PIN file) for the services this
/// process opens.
pub fn use_provider_device(device: crate::sign::DeviceSpec, pin_file: Option<PathBuf>) {
    if let Ok(mut d) = PROVIDER_DEVICE.lock() {
        *d = Some((device, pin_file));
    }
}

/// The provider's order signer: through the signing node and the officer's
/// device, or, for a vault made before remote signing, its key file.
fn provider_signer(data: &DataDir) -> Result<postvault_server::service::OrderSigner, CliError> {
    if crate::sign::enrolled(&data.signing_node(), PROVIDER_ID) {
        let named = PROVIDER_DEVICE.lock().ok().and_then(|d| d.clone());
        let (device, pin_file) = named.unwrap_or_else(|| {
            let pin = data.provider_pin();
            (
                crate::sign::DeviceSpec::File(data.provider_device()),
                pin.exists().then_some(pin),
            )
        });
        return Ok(crate::sign::remote_signer(
            data.signing_node(),
            device,
            pin_file,
        ));
    }
    if PROVIDER_DEVICE.lock().ok().is_some_and(|d| d.is_some()) {
        return Err(CliError::Input(
            "this vault's provider key is a key file (made before remote signing): no device approves its orders".into(),
        ));
    }
    let provider_der = zeroize::Zeroizing::new(read(&data.provider_key())?);
    Ok(postvault_server::service::local_signer(
        SigningKey::from_pkcs8(SigAlg::EcdsaP256Sha256, &provider_der)?,
    ))
}

async fn open_locked(
    data: &DataDir,
    config_file: Option<&Path>,
    auto_approve: bool,
) -> Result<LocalService, CliError> {
    let file = config_file.map_or_else(|| data.config(), Path::to_owned);
    let mut config = VaultConfig::read(&file).map_err(|e| CliError::Input(e.to_string()))?;
    config.auto_approve |= auto_approve;
    let store = SqliteStore::open(data.path())
        .await
        .map_err(|e| CliError::Check(format!("store: {e}")))?;
    let dirs: Vec<PathBuf> = config.modules.iter().map(|m| data.module(m)).collect();
    let vault = Vault::open_with_limit(store, &dirs, config.max_checkpoint_mismatches)
        .await
        .map_err(|e| CliError::Check(format!("vault: {e}")))?;
    let ca_pem = String::from_utf8(read(&data.ca_certificate())?)
        .map_err(|_| CliError::Input("ca.pem is not text".into()))?;
    let key_pem = zeroize::Zeroizing::new(
        String::from_utf8(read(&data.ca_key())?)
            .map_err(|_| CliError::Input("ca-key.pem is not text".into()))?,
    );
    let ca = PostalCa::from_parts(
        Certificate::from_pem(&ca_pem)?,
        PostalCa::key_from_pkcs8_pem(&key_pem)?,
    )?;
    let provider = provider_signer(data)?;
    let (card, _) = vault
        .vendor_key()
        .await
        .map_err(|e| CliError::Check(format!("vault: {e}")))?;
    let kms = postvault_server::kms::VaultKms::open_or_create(
        &data.kms(),
        vault.store().clone(),
        &config,
        &card.registration_signing,
    )
    .await
    .map_err(|e| CliError::Check(format!("key management system: {e}")))?;
    Service::new(vault, ca, provider, config, kms)
        .await
        .map_err(|e| CliError::Check(format!("vault: {e}")))
}

/// Serves the API on `listen` until `shutdown` completes; `bound` learns the
/// address actually bound (port 0 picks a free one). The modules are powered
/// off cleanly afterwards.
///
/// # Errors
/// [`CliError::Io`] if the address cannot be bound.
pub async fn serve(
    service: Arc<LocalService>,
    listen: &str,
    bound: impl FnOnce(std::net::SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CliError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| CliError::io(Path::new(listen), &e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::io(Path::new(listen), &e))?;
    if !addr.ip().is_loopback() {
        // The CA and provider keys of a development vault are files in its
        // directory: whoever reaches the server must be on this machine.
        return Err(CliError::Input(format!(
            "{addr} is not a loopback address: a development vault (CA and provider keys on disk) serves 127.0.0.1 only"
        )));
    }
    bound(addr);
    let auditor = {
        let service = service.clone();
        tokio::spawn(async move {
            let every =
                std::time::Duration::from_secs(service.config().audit_interval_seconds.max(1));
            loop {
                tokio::time::sleep(every).await;
                let _ = service.audit_now().await;
            }
        })
    };
    let served = axum::serve(listener, http::router(service.clone()))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| CliError::io(Path::new(listen), &e));
    auditor.abort();
    served?;
    service
        .vault()
        .shutdown()
        .map_err(|e| CliError::Check(format!("power-off: {e}")))?;
    // Closing the pools checkpoints the WAL into the database files, so a
    // stopped vault is whole in vault.db and audit.db (for backups).
    service.vault().store().close().await;
    Ok(())
}

/// Server logs to stderr at `level` (or as `RUST_LOG` says).
pub fn init_logs(level: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// `postvault serve`: logs to stderr, serves until Ctrl-C.
///
/// # Errors
/// The vault cannot be opened or the address bound.
pub fn serve_cmd(
    dir: &Path,
    config: Option<&Path>,
    listen: Option<&str>,
    auto_approve: bool,
) -> Result<(), CliError> {
    init_logs("info");
    let data = DataDir::new(dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io(Path::new("runtime"), &e))?;
    rt.block_on(async {
        let service = Arc::new(open_service(&data, config, auto_approve).await?);
        let listen = listen.map_or_else(|| service.config().listen.clone(), str::to_owned);
        if service.config().auto_approve {
            tracing::warn!("auto-approval is on: customers and purchases are approved without an operator (development only)");
        }
        serve(
            service,
            &listen,
            |a| {
                // One plain line on stdout for scripts: where to connect.
                println!("listening on http://{a}");
                tracing::info!("postvault serving http://{a} (OpenAPI at http://{a}/openapi.json)");
            },
            async {
                let _ = tokio::signal::ctrl_c().await;
                tracing::info!("stopping");
            },
        )
        .await
    })
}

pub(crate) fn block_on<T>(f: impl Future<Output = Result<T, CliError>>) -> Result<T, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io(Path::new("runtime"), &e))?
        .block_on(f)
}

pub(crate) fn service_error(e: postvault_server::service::ServiceError) -> CliError {
    CliError::Check(e.to_string())
}

/// `provider pending`: purchases waiting for a download, one per line.
///
/// # Errors
/// The vault cannot be opened.
pub fn provider_pending(dir: &Path) -> Result<Vec<String>, CliError> {
    block_on(async {
        let service = open_service(&DataDir::new(dir), None, false).await?;
        let rows = service.pending_purchases().await.map_err(service_error)?;
        let lines = rows
            .iter()
            .map(|p| {
                let meter = postvault_indicium::DeviceId::from_bytes(p.device_id)
                    .map_or_else(|_| hex::encode(p.device_id), |d| d.to_string());
                format!("{meter} {} {}", p.id, Money::from_tenths(p.amount))
            })
            .collect();
        service
            .vault()
            .shutdown()
            .map_err(|e| CliError::Check(e.to_string()))?;
        Ok(lines)
    })
}

/// `provider approve`: downloads each pending purchase (of one meter, if given).
/// Returns one line per purchase.
///
/// # Errors
/// The vault cannot be opened.
pub fn provider_approve(dir: &Path, meter: Option<&str>) -> Result<Vec<String>, CliError> {
    let only = meter
        .map(|m| m.parse::<postvault_indicium::DeviceId>())
        .transpose()?;
    block_on(async {
        let service = open_service(&DataDir::new(dir), None, false).await?;
        let mut lines = Vec::new();
        for p in service.pending_purchases().await.map_err(service_error)? {
            let device = postvault_indicium::DeviceId::from_bytes(p.device_id)?;
            if only.is_some_and(|o| o != device) {
                continue;
            }
            let amount = Money::from_tenths(p.amount);
            lines.push(match service.approve_purchase(device, &p.id).await {
                Ok(()) => format!("{device} {}: downloaded {amount}", p.id),
                Err(e) => format!("{device} {}: refused: {e}", p.id),
            });
        }
        service
            .vault()
            .shutdown()
            .map_err(|e| CliError::Check(e.to_string()))?;
        Ok(lines)
    })
}

/// `provider authorize`: licenses a registered customer.
///
/// # Errors
/// The vault cannot be opened; the module's refusal.
pub fn provider_authorize(dir: &Path, customer: &str) -> Result<String, CliError> {
    block_on(async {
        let service = open_service(&DataDir::new(dir), None, false).await?;
        let r = service
            .authorize_registered(customer)
            .await
            .map_err(service_error);
        service
            .vault()
            .shutdown()
            .map_err(|e| CliError::Check(e.to_string()))?;
        let device = r?;
        Ok(format!("{customer}: meter {device} licensed (Leased)"))
    })
}

/// `audit verify --data-dir`: each module's log as the audit database holds
/// it (chain, signatures, and its head against the module's own), then every
/// meter's registers across all logs.
///
/// # Errors
/// [`CliError::Check`] naming the module and entry that fail.
pub fn audit_data_dir(dir: &Path) -> Result<String, CliError> {
    use postvault_module::audit::{parse_log, verify_log};
    use postvault_module::module::stored_audit_head;
    use postvault_module::nvm::file::{FileNvm, KEY_FILE};
    use postvault_store::Store;

    block_on(async {
        let store = SqliteStore::open(dir)
            .await
            .map_err(|e| CliError::Check(format!("store: {e}")))?;
        let modules = store
            .modules()
            .await
            .map_err(|e| CliError::Check(format!("store: {e}")))?;
        let mut lines = Vec::new();
        let mut logs = Vec::new();
        for m in &modules {
            let bytes = store
                .audit_entries(&m.serial, 0, u32::MAX)
                .await
                .map_err(|e| CliError::Check(format!("store: {e}")))?
                .concat();
            let location = Path::new(&m.location);
            let head = if location.join(KEY_FILE).exists() {
                stored_audit_head(&FileNvm::open(location)?)?.map(|(_, h)| h)
            } else {
                None
            };
            let s = verify_log(&bytes, None)
                .map_err(|e| CliError::Check(format!("module {}: {e}", m.serial)))?;
            if let Some(h) = head
                && h != s.head
            {
                // The store may lag the module by entries not yet copied (a
                // crash before the copy); the module's own log holds them.
                let file = location.join(crate::vault::AUDIT_LOG);
                let own = std::fs::read(&file).map_err(|e| CliError::io(&file, &e))?;
                if !own.starts_with(&bytes) {
                    return Err(CliError::Check(format!(
                        "module {}: the audit database's copy is not a prefix of the module's own log (entries changed or removed)",
                        m.serial
                    )));
                }
                lines.push(format!(
                    "module {}: the audit database holds {} entries; the module's own log has more (copied at the next start)",
                    m.serial, s.entries
                ));
            }
            lines.push(format!(
                "OK module {}: {} entries, {} signed, head {}",
                m.serial,
                s.entries,
                s.signed,
                hex::encode(s.head)
            ));
            logs.push((
                m.serial.clone(),
                parse_log(&bytes)
                    .map_err(|e| CliError::Check(format!("module {}: {e}", m.serial)))?,
            ));
        }
        let r = postvault_server::audit::check_register_history(&logs)
            .map_err(|e| CliError::Check(format!("register history: {e}")))?;
        lines.push(format!(
            "OK registers: {} meters, {} transactions followed across {} modules, {} discarded by recovery; no package used twice",
            r.meters,
            r.transactions,
            logs.len(),
            r.discarded
        ));
        store.close().await;
        Ok(lines.join("\n"))
    })
}
