//! Key ceremonies: each step is one operator logging on to one module through a
//! real operator session. [`demo`] runs the whole sequence with generated
//! credentials and narrates it.

use std::fs;
use std::path::{Path, PathBuf};

use postvault_module::account::NewAccount;
use postvault_module::role::{Role, UserId};
use postvault_module::state::ModuleState;
use postvault_module::wire::{
    ModuleConfig, OpenedUnder, Outer, OuterReply, Request, Response, Status,
};

use crate::error::CliError;
use crate::vault::{self, Operator};

/// One line of an accounts file.
#[derive(serde::Deserialize, serde::Serialize, Clone)]
pub struct AccountSpec {
    /// User id.
    pub user: String,
    /// Role name (security-officer, key-custodian, administrator, auditor).
    pub role: String,
    /// Passphrase.
    pub passphrase: String,
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    fs::read(path).map_err(|e| CliError::io(path, &e))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    fs::write(path, bytes).map_err(|e| CliError::io(path, &e))
}

/// Writes a file only its owner can read (generated passphrases, development
/// keys, device files, signing records): through a temporary file beside it,
/// fsynced and renamed, so a crash leaves the old file or the new one.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(d).map_err(|e| CliError::io(d, &e))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| CliError::io(&tmp, &e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::io(&tmp, &e))?;
    fs::rename(&tmp, path).map_err(|e| CliError::io(path, &e))
}

fn unexpected(r: &Response) -> CliError {
    CliError::Check(format!(
        "the module answered with an unexpected reply: {r:?}"
    ))
}

/// Start Initialization and the minimal access-control database.
///
/// # Errors
/// Bad accounts, or the module's refusal.
pub fn init(
    dir: &Path,
    accounts: &[AccountSpec],
    config: ModuleConfig,
) -> Result<String, CliError> {
    let new = accounts
        .iter()
        .map(|a| {
            let user = UserId::new(&a.user)?;
            Ok(NewAccount {
                role: Role::from_name(&a.role)?,
                password: vault::password(&user, &a.passphrase),
                user,
            })
        })
        .collect::<Result<Vec<_>, postvault_module::Error>>()?;
    vault::with_module(dir, |host| {
        // A new chain begins: keep any earlier log (of a reset module, or of an
        // initialisation that crashed) apart from it.
        if host.status()?.current == ModuleState::Uninitialized {
            vault::archive_audit_log(dir)?;
        }
        let serial = match host.call(Outer::StartInitialization(config))? {
            OuterReply::Initialized { serial, .. } => serial,
            _ => {
                return Err(CliError::Check(
                    "unexpected reply to Start Initialization".into(),
                ));
            }
        };
        let mut session = host.open_session()?;
        host.send(&mut session, &Request::InitializeAccessControl(new))?;
        host.send(&mut session, &Request::CloseSession)?;
        Ok(serial)
    })
}

/// Runs a request that answers `Done`.
///
/// # Errors
/// The module's refusal.
pub fn simple(dir: &Path, op: &Operator, request: &Request) -> Result<(), CliError> {
    match vault::run(dir, op, request)? {
        Response::Done | Response::Mks(_) => Ok(()),
        r => Err(unexpected(&r)),
    }
}

/// Generates a master key set; returns its id.
///
/// # Errors
/// The module's refusal.
pub fn generate_mks(dir: &Path, op: &Operator) -> Result<String, CliError> {
    match vault::run(dir, op, &Request::GenerateMks)? {
        Response::Mks(info) => Ok(hex::encode(info.id)),
        r => Err(unexpected(&r)),
    }
}

/// Generates (or, with `generate == false`, exports) the transport key and writes it to `out`.
///
/// # Errors
/// The module's refusal or a write failure.
pub fn transport_key(
    dir: &Path,
    op: &Operator,
    generate: bool,
    out: &Path,
) -> Result<(), CliError> {
    let req = if generate {
        Request::GenerateTransportKey
    } else {
        Request::ExportTransportKey
    };
    match vault::run(dir, op, &req)? {
        Response::TransportKey(k) => write(out, hex::encode(k).as_bytes()),
        r => Err(unexpected(&r)),
    }
}

/// Starts an export ceremony; returns the ceremony nonce.
///
/// # Errors
/// The module's refusal.
pub fn create_shares(
    dir: &Path,
    op: &Operator,
    shares: u8,
    threshold: u8,
    exportable: bool,
) -> Result<String, CliError> {
    match vault::run(
        dir,
        op,
        &Request::CreateMksShares {
            shares,
            threshold,
            exportable,
        },
    )? {
        Response::SharesCreated { ceremony } => Ok(hex::encode(ceremony)),
        r => Err(unexpected(&r)),
    }
}

/// Reads a transport public key file (64 hex characters).
///
/// # Errors
/// [`CliError::Input`] if malformed.
pub fn read_transport_key(path: &Path) -> Result<[u8; 32], CliError> {
    let text = read(path)?;
    let bytes = hex::decode(String::from_utf8_lossy(&text).trim())
        .map_err(|_| CliError::Input(format!("{}: not a hex transport key", path.display())))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| CliError::Input(format!("{}: a transport key is 32 bytes", path.display())))
}

/// Exports one share to a file; returns how many remain.
///
/// # Errors
/// The module's refusal or a file error.
pub fn export_share(dir: &Path, op: &Operator, to: &Path, out: &Path) -> Result<u8, CliError> {
    let destination = read_transport_key(to)?;
    match vault::run(dir, op, &Request::ExportShare { destination })? {
        Response::Share { share, remaining } => write(out, &share).map(|()| remaining),
        r => Err(unexpected(&r)),
    }
}

/// Imports one share file; returns (received, threshold).
///
/// # Errors
/// The module's refusal or a file error.
pub fn import_share(dir: &Path, op: &Operator, share: &Path) -> Result<(u8, u8), CliError> {
    match vault::run(dir, op, &Request::ImportShare(read(share)?))? {
        Response::ShareImported {
            received,
            threshold,
        } => Ok((received, threshold)),
        r => Err(unexpected(&r)),
    }
}

/// The module's audit-key fingerprint (hex), which operators compare to name a module.
#[must_use]
pub fn fingerprint_of(status: &Status) -> Option<String> {
    status
        .audit_key
        .as_ref()
        .map(|(alg, key)| hex::encode(postvault_module::mks::key_fingerprint(*alg, key)))
}

/// The audit-key fingerprint of the module in `dir`, as `module status` prints it.
///
/// # Errors
/// The module's refusal, or [`CliError::Check`] for an uninitialised module.
pub fn fingerprint(dir: &Path) -> Result<String, CliError> {
    let status = vault::with_module(dir, |h| Ok(h.status()?))?;
    fingerprint_of(&status)
        .ok_or_else(|| CliError::Check(format!("{}: the module is not initialized", dir.display())))
}

/// Combines the imported shares, which must come from the module with audit-key
/// fingerprint `source` (hex); returns the MKS id.
///
/// # Errors
/// [`CliError::Input`] for a malformed fingerprint; the module's refusal.
pub fn combine(dir: &Path, op: &Operator, source: &str) -> Result<String, CliError> {
    let source = hex::decode(source.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| {
            CliError::Input(
                "--source takes the 64-hex-character audit key fingerprint of the exporting module"
                    .into(),
            )
        })?;
    match vault::run(dir, op, &Request::CombineShares { source })? {
        Response::Mks(info) => Ok(hex::encode(info.id)),
        r => Err(unexpected(&r)),
    }
}

/// Makes a test token and writes it; returns its key check value.
///
/// # Errors
/// The module's refusal or a file error.
pub fn test_token(dir: &Path, op: &Operator, out: &Path) -> Result<String, CliError> {
    match vault::run(
        dir,
        op,
        &Request::GenerateTestToken {
            owner: "ceremony test".into(),
        },
    )? {
        Response::Token { token, kcv } => write(out, &token).map(|()| hex::encode(kcv)),
        r => Err(unexpected(&r)),
    }
}

/// Opens a token inside the module; returns its key check value and the slot that opened it.
///
/// # Errors
/// The module's refusal or a file error.
pub fn check_token(
    dir: &Path,
    op: &Operator,
    token: &Path,
) -> Result<(String, OpenedUnder), CliError> {
    match vault::run(dir, op, &Request::VerifyToken(read(token)?))? {
        Response::TokenChecked { kcv, under } => Ok((hex::encode(kcv), under)),
        r => Err(unexpected(&r)),
    }
}

/// Re-seals a token under the active MKS; returns the key check value.
///
/// # Errors
/// The module's refusal or a file error.
pub fn translate_token(
    dir: &Path,
    op: &Operator,
    token: &Path,
    out: &Path,
) -> Result<String, CliError> {
    match vault::run(dir, op, &Request::TranslateToken(read(token)?))? {
        Response::Token { token, kcv } => write(out, &token).map(|()| hex::encode(kcv)),
        r => Err(unexpected(&r)),
    }
}

/// Generated passphrases for the minimal account set (admin, so, kc1-kc3),
/// written to `creds` (owner-only): for demos and development vaults.
///
/// # Errors
/// [`CliError::Io`] if the file cannot be written.
pub fn generated_accounts(
    creds: &Path,
    say: &mut dyn FnMut(&str),
) -> Result<Vec<AccountSpec>, CliError> {
    let mut accounts = Vec::new();
    for (user, role) in [
        ("admin", "administrator"),
        ("so", "security-officer"),
        ("kc1", "key-custodian"),
        ("kc2", "key-custodian"),
        ("kc3", "key-custodian"),
    ] {
        accounts.push(AccountSpec {
            user: user.into(),
            role: role.into(),
            passphrase: generated_passphrase()?,
        });
    }
    write_private(
        creds,
        serde_json::to_string_pretty(&accounts)
            .map_err(|e| CliError::Input(e.to_string()))?
            .as_bytes(),
    )?;
    say(&format!(
        "generated passphrases for admin, so, kc1, kc2, kc3 in {} (development only: custodian secrets on disk)",
        creds.display()
    ));
    Ok(accounts)
}

fn custodians(accounts: &[AccountSpec]) -> Result<[Operator; 3], CliError> {
    Ok([
        op(accounts, "kc1")?,
        op(accounts, "kc2")?,
        op(accounts, "kc3")?,
    ])
}

/// The security officer of an account set.
///
/// # Errors
/// [`CliError::Input`] if there is no `so` account.
pub fn security_officer(accounts: &[AccountSpec]) -> Result<Operator, CliError> {
    op(accounts, "so")
}

/// The master module: Start Initialization with the account set, and a new
/// MKS. Returns the MKS id.
///
/// # Errors
/// The module's refusal.
pub fn found_master(
    master: &Path,
    accounts: &[AccountSpec],
    config: ModuleConfig,
    say: &mut dyn FnMut(&str),
) -> Result<String, CliError> {
    let serial = init(master, accounts, config)?;
    say(&format!(
        "master {serial}: Start Initialization, access control with 1 administrator, 1 security officer, 3 key custodians"
    ));
    let mks = generate_mks(master, &op(accounts, "so")?)?;
    say(&format!(
        "master: security officer generated MKS {mks} -> operational"
    ));
    Ok(mks)
}

/// A clone joins the master's pool: initialised with the same accounts, and
/// the master's active MKS `mks` cloned to it by 2-of-3 shares under its
/// transport key. Returns the clone's transport key file.
///
/// # Errors
/// The module's refusal, or a clone that ends up with another MKS.
pub fn join_clone(
    master: &Path,
    clone: &Path,
    accounts: &[AccountSpec],
    config: ModuleConfig,
    work: &Path,
    mks: &str,
    say: &mut dyn FnMut(&str),
) -> Result<PathBuf, CliError> {
    let so = op(accounts, "so")?;
    let name = clone
        .file_name()
        .map_or_else(|| "clone".into(), |n| n.to_string_lossy().into_owned());
    let clone_serial = init(clone, accounts, config)?;
    let tpk = work.join(format!("{name}-transport.pub"));
    transport_key(clone, &so, true, &tpk)?;
    say(&format!(
        "{name} {clone_serial}: initialised; security officer generated its transport key -> importing shares ({})",
        tpk.display()
    ));
    let got = share_mks(
        master,
        clone,
        &so,
        &custodians(accounts)?,
        &tpk,
        work,
        &format!("{name}-{mks}"),
        say,
    )?;
    if got != mks {
        return Err(CliError::Check(format!(
            "{name} holds MKS {got}, master {mks}"
        )));
    }
    Ok(tpk)
}

fn generated_passphrase() -> Result<String, CliError> {
    Ok(hex::encode(postvault_crypto::rand::bytes::<16>()?))
}

fn op(accounts: &[AccountSpec], user: &str) -> Result<Operator, CliError> {
    let spec = accounts
        .iter()
        .find(|a| a.user == user)
        .ok_or_else(|| CliError::Input(format!("no account {user}")))?;
    Ok(Operator {
        user: UserId::new(&spec.user)?,
        passphrase: spec.passphrase.clone(),
    })
}

/// Names of what [`demo`] creates inside its directory.
const DEMO_ENTRIES: [&str; 5] = [
    "master",
    "clone",
    "ceremony",
    "postal",
    "demo-credentials.json",
];

/// Removes an earlier demo's modules and files from `dir` (and nothing else).
///
/// # Errors
/// [`CliError::Io`].
pub fn remove_demo(dir: &Path) -> Result<(), CliError> {
    for name in DEMO_ENTRIES {
        let p = dir.join(name);
        let r = if p.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        match r {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(CliError::io(&p, &e)),
            _ => {}
        }
    }
    Ok(())
}

/// What the demo leaves behind.
pub struct DemoResult {
    /// The master module directory.
    pub master: PathBuf,
    /// The clone module directory.
    pub clone: PathBuf,
    /// Key check value of the final cross-check token.
    pub kcv: String,
    /// The verified indicium image the postal part printed.
    pub indicium: PathBuf,
}

/// The whole ceremony: master and clone initialised, MKS generated and cloned by
/// 2-of-3 shares, tokens cross-checked, a rollover to a new MKS with token
/// translation, and the dormant MKS deleted. `say` narrates.
///
/// # Errors
/// The first step that fails.
#[allow(clippy::too_many_lines)] // one narrated script reads best top to bottom
pub fn demo(
    dir: &Path,
    config: ModuleConfig,
    say: &mut dyn FnMut(&str),
) -> Result<DemoResult, CliError> {
    let master = dir.join("master");
    let clone = dir.join("clone");
    let work = dir.join("ceremony");
    for d in [&master, &clone] {
        if d.join("nvm").exists() {
            return Err(CliError::Input(format!(
                "{} already holds a module; choose an empty --dir or pass --replace",
                d.display()
            )));
        }
    }
    fs::create_dir_all(&work).map_err(|e| CliError::io(&work, &e))?;
    let creds = dir.join("demo-credentials.json");
    let mut accounts = generated_accounts(&creds, say)?;
    let so = op(&accounts, "so")?;
    let admin = op(&accounts, "admin")?;
    let kcs = custodians(&accounts)?;
    let mks1 = found_master(&master, &accounts, config, say)?;

    simple(&master, &so, &Request::BeginAdmin)?;
    let auditor = AccountSpec {
        user: "auditor".into(),
        role: "auditor".into(),
        passphrase: generated_passphrase()?,
    };
    let auditor_id = UserId::new(&auditor.user)?;
    simple(
        &master,
        &admin,
        &Request::CreateAccount(NewAccount {
            user: auditor_id.clone(),
            role: Role::Auditor,
            password: vault::password(&auditor_id, &auditor.passphrase),
        }),
    )?;
    simple(&master, &so, &Request::EndAdmin)?;
    accounts.push(auditor);
    write_private(
        &creds,
        serde_json::to_string_pretty(&accounts)
            .map_err(|e| CliError::Input(e.to_string()))?
            .as_bytes(),
    )?;
    say(
        "master: security officer opened administrative state, administrator created account 'auditor', security officer closed it",
    );

    let tpk = join_clone(&master, &clone, &accounts, config, &work, &mks1, say)?;

    let t_master = work.join("master-test.token");
    let t_clone = work.join("clone-test.token");
    let kcv_m = test_token(&master, &so, &t_master)?;
    let kcv_c = test_token(&clone, &so, &t_clone)?;
    cross_check(&clone, &so, &t_master, &kcv_m, OpenedUnder::Active)?;
    cross_check(&master, &so, &t_clone, &kcv_c, OpenedUnder::Active)?;
    say(&format!(
        "tokens: the clone opened the master's token (kcv {kcv_m}) and the master opened the clone's (kcv {kcv_c})"
    ));

    say("rollover: a new MKS replaces the old on both modules");
    let mks2 = generate_mks(&master, &so)?;
    simple(&master, &so, &Request::ActivateMks)?;
    say(&format!(
        "master: generated MKS {mks2} into the dormant slot and activated it; {mks1} is now dormant"
    ));
    simple(&clone, &so, &Request::StartImportingMks)?;
    let clone_mks2 = share_mks(&master, &clone, &so, &kcs, &tpk, &work, "mks2", say)?;
    if clone_mks2 != mks2 {
        return Err(CliError::Check(format!(
            "clone received MKS {clone_mks2}, expected {mks2}"
        )));
    }
    simple(&clone, &so, &Request::ActivateMks)?;
    say(&format!("clone: activated MKS {mks2}"));

    cross_check(&master, &so, &t_master, &kcv_m, OpenedUnder::Dormant)?;
    say("master: the old token still opens, under the dormant MKS (warning: translate it)");
    let t_master2 = work.join("master-test.mks2.token");
    let t_clone2 = work.join("clone-test.mks2.token");
    translate_token(&master, &so, &t_master, &t_master2)?;
    translate_token(&clone, &so, &t_clone, &t_clone2)?;
    say("both: tokens translated from the old MKS to the new");
    simple(&master, &so, &Request::DeleteDormantMks)?;
    simple(&clone, &so, &Request::DeleteDormantMks)?;
    say(&format!("both: dormant MKS {mks1} deleted"));
    if check_token(&master, &so, &t_master).is_ok() {
        return Err(CliError::Check(
            "an untranslated token still opens after the old MKS was deleted".into(),
        ));
    }
    say("master: the untranslated old token no longer opens, as it should not");
    cross_check(&clone, &so, &t_master2, &kcv_m, OpenedUnder::Active)?;
    cross_check(&master, &so, &t_clone2, &kcv_c, OpenedUnder::Active)?;
    say(&format!(
        "tokens: after rollover each module opens the other's translated token (kcv {kcv_m}, {kcv_c})"
    ));
    let indicium = crate::postal::demo(&master, &clone, &so, &dir.join("postal"), say)?;
    Ok(DemoResult {
        master,
        clone,
        kcv: kcv_m,
        indicium,
    })
}

fn cross_check(
    dir: &Path,
    so: &Operator,
    token: &Path,
    kcv: &str,
    under: OpenedUnder,
) -> Result<(), CliError> {
    let (got, got_under) = check_token(dir, so, token)?;
    if got != kcv || got_under != under {
        return Err(CliError::Check(format!(
            "{}: token opened with kcv {got} under {got_under:?}, expected {kcv} under {under:?}",
            dir.display()
        )));
    }
    Ok(())
}

/// Shares the master's active MKS to the clone, 2 of 3, retained; returns the MKS id the clone combined.
#[allow(clippy::too_many_arguments)]
fn share_mks(
    master: &Path,
    clone: &Path,
    so: &Operator,
    kcs: &[Operator; 3],
    tpk: &Path,
    work: &Path,
    label: &str,
    say: &mut dyn FnMut(&str),
) -> Result<String, CliError> {
    let ceremony = create_shares(master, so, 3, 2, false)?;
    say(&format!(
        "master: security officer created 3 shares, threshold 2, retained at the destination (ceremony {ceremony})"
    ));
    let mut files = Vec::new();
    for kc in kcs {
        let out = work.join(format!("{label}-share-{}.bin", kc.user));
        let remaining = export_share(master, kc, tpk, &out)?;
        say(&format!(
            "master: {} exported a share sealed to the clone's transport key ({remaining} left)",
            kc.user
        ));
        files.push(out);
    }
    for (kc, file) in kcs.iter().zip(&files).rev().take(2) {
        let (received, threshold) = import_share(clone, kc, file)?;
        say(&format!(
            "clone: {} imported a share ({received} of {threshold})",
            kc.user
        ));
    }
    let source = fingerprint(master)?;
    let id = combine(clone, so, &source)?;
    say(&format!(
        "clone: security officer checked the shares come from the master (audit key {}...) and combined them into MKS {id}",
        source.get(..16).unwrap_or_default()
    ));
    Ok(id)
}
