//! A module directory on disk and the host around it: the module's sealed NVM
//! (`nvm/`, `storage.key`), the host's audit log (`audit.log`, stored apart from
//! the module's memory), and operator sessions opened through the real protocol.
//! Every CLI invocation powers the module on afresh, as a reboot would.

use std::fs;
use std::path::{Path, PathBuf};

use postvault_crypto::hash;
use postvault_crypto::sig::PublicKey;
use postvault_module::audit::read_log_start;
use postvault_module::role::UserId;
use postvault_module::session::HostSession;
use postvault_module::wire::{Password, Request, Response};

use crate::error::CliError;

pub use postvault_server::moduledir::AUDIT_LOG;

/// A powered-on module with its audit log.
pub type VaultHost = postvault_server::moduledir::ModuleHost;

/// Powers on the module in `dir` (created if absent). Prefer [`with_module`],
/// which also powers it off cleanly.
///
/// # Errors
/// [`CliError`] if the directory cannot be opened.
fn power_on(dir: &Path) -> Result<VaultHost, CliError> {
    Ok(postvault_server::moduledir::power_on(dir)?)
}

/// Moves the audit log aside (after a reset a new chain begins).
///
/// # Errors
/// [`CliError::Io`].
pub fn archive_audit_log(dir: &Path) -> Result<Option<PathBuf>, CliError> {
    let log = dir.join(AUDIT_LOG);
    if !log.exists() {
        return Ok(None);
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let to = (0..)
        .map(|n| {
            dir.join(if n == 0 {
                format!("audit.{stamp}.log")
            } else {
                format!("audit.{stamp}-{n}.log")
            })
        })
        .find(|p| !p.exists())
        .unwrap_or_else(|| dir.join("audit.old.log"));
    fs::rename(&log, &to).map_err(|e| CliError::io(&log, &e))?;
    Ok(Some(to))
}

/// The module's audit key as its audit log's first entry records it: the host
/// pins it, so a module (or anything in between) that cannot sign the session
/// handshake with it is refused.
///
/// # Errors
/// [`CliError`] if the log cannot be read or does not start with the key.
pub fn pinned_key(dir: &Path) -> Result<PublicKey, CliError> {
    let path = dir.join(AUDIT_LOG);
    let log = fs::read(&path).map_err(|e| CliError::io(&path, &e))?;
    Ok(read_log_start(&log)?.key)
}

/// The password an operator's passphrase becomes on the host: the module only
/// ever sees this hash (seed 001: "the module only has knowledge of the hash value").
#[must_use]
pub fn password(user: &UserId, passphrase: &str) -> Password {
    Password::new(
        hash::sha256(&[
            b"postvault operator passphrase v1\0",
            user.as_str().as_bytes(),
            b"\0",
            passphrase.as_bytes(),
        ])
        .to_vec(),
    )
}

/// An operator's credentials.
pub struct Operator {
    /// User id.
    pub user: UserId,
    /// Passphrase as typed.
    pub passphrase: String,
}

/// Opens a session, logs `op` on, runs `work`, logs off and closes the session
/// (also when `work` fails).
///
/// # Errors
/// Whatever failed first.
pub fn as_operator<T>(
    host: &mut VaultHost,
    module_key: &PublicKey,
    op: &Operator,
    work: impl FnOnce(&mut VaultHost, &mut HostSession) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let mut session = host.open_session_pinned(module_key)?;
    host.send(
        &mut session,
        &Request::Logon {
            user: op.user.clone(),
            password: password(&op.user, &op.passphrase),
        },
    )?;
    let result = work(host, &mut session);
    let logoff = host
        .send(&mut session, &Request::Logoff)
        .and_then(|_| host.send(&mut session, &Request::CloseSession));
    let value = result?;
    logoff?;
    Ok(value)
}

/// Powers the module in `dir` on, runs `work`, and powers it off cleanly
/// (unless the module crashed), so the next invocation resumes where this one left off.
///
/// # Errors
/// Whatever failed first.
pub fn with_module<T>(
    dir: &Path,
    work: impl FnOnce(&mut VaultHost) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let mut host = power_on(dir)?;
    let result = work(&mut host);
    let off = host.shutdown();
    let value = result?;
    off?;
    Ok(value)
}

/// Power-cycles the module in `dir` as a reboot (not a resume): boot detection
/// runs; returns the status after it.
///
/// # Errors
/// Whatever failed first.
pub fn reboot(dir: &Path) -> Result<postvault_module::wire::Status, CliError> {
    let mut host = postvault_server::moduledir::open(dir)?;
    host.module.cold_boot()?;
    postvault_server::moduledir::resync(&mut host, dir)?;
    let status = host.status();
    host.shutdown()?;
    Ok(status?)
}

/// Runs one request as an operator.
///
/// # Errors
/// Whatever failed first.
pub fn run(dir: &Path, op: &Operator, request: &Request) -> Result<Response, CliError> {
    with_module(dir, |host| {
        let key = pinned_key(dir)?;
        as_operator(host, &key, op, |h, s| Ok(h.send(s, request)?))
    })
}
