//! A software module on disk: its sealed NVM (`nvm/`, `storage.key`) and the
//! host's audit log beside it (`audit.log`), appended and synced before a
//! command's result is released. The ceremony CLI and the server open modules
//! the same way.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use postvault_module::audit::AuditEntry;
use postvault_module::host::{AuditSink, Host};
use postvault_module::nvm::file::FileNvm;
use postvault_module::{Module, SystemClock};

/// The host's audit log file inside a module directory.
pub const AUDIT_LOG: &str = "audit.log";

/// Appends audit entries to a file and syncs it before returning; keeps the
/// last batch so the server can also hand it to the audit service.
pub struct FileAuditSink {
    path: PathBuf,
    last: Vec<AuditEntry>,
}

impl FileAuditSink {
    /// The sink for the audit log in `dir`.
    #[must_use]
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join(AUDIT_LOG),
            last: Vec::new(),
        }
    }

    /// The entries of the last call (already on disk), leaving none.
    pub fn take_last(&mut self) -> Vec<AuditEntry> {
        core::mem::take(&mut self.last)
    }
}

impl AuditSink for FileAuditSink {
    fn store(&mut self, entries: &[AuditEntry]) -> postvault_module::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        for e in entries {
            bytes.extend_from_slice(&e.to_stored()?);
        }
        let fail = |e: std::io::Error| postvault_module::Error::Nvm {
            what: format!("cannot append to {}: {e}", self.path.display()),
        };
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(fail)?;
        f.write_all(&bytes).map_err(fail)?;
        f.sync_all().map_err(fail)?;
        self.last = entries.to_vec();
        Ok(())
    }
}

/// The length of the longest prefix of a log made of whole length-prefixed
/// records (a 4-byte big-endian length, then that many bytes).
fn whole_records(bytes: &[u8]) -> usize {
    let mut at = 0usize;
    while let Some(len) = bytes
        .get(at..at.saturating_add(4))
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .and_then(|n| usize::try_from(n).ok())
    {
        let end = at.saturating_add(4).saturating_add(len);
        if end > bytes.len() {
            break;
        }
        at = end;
    }
    at
}

/// A powered-on software module with its audit log.
pub type ModuleHost = Host<FileNvm, FileAuditSink>;

/// Powers on the module in `dir` (created if absent). Power it off with
/// [`Host::shutdown`] so the next power-on resumes instead of rebooting.
///
/// # Errors
/// [`postvault_module::Error::Nvm`] if the directory cannot be opened.
pub fn power_on(dir: &Path) -> postvault_module::Result<ModuleHost> {
    let mut host = open(dir)?;
    resync(&mut host, dir)?;
    Ok(host)
}

/// The module in `dir` with its power on but no request sent yet (a cold boot
/// must come before the first request); follow with [`resync`].
///
/// # Errors
/// [`postvault_module::Error::Nvm`] if the directory cannot be opened.
pub fn open(dir: &Path) -> postvault_module::Result<ModuleHost> {
    let nvm = FileNvm::open(dir)?;
    Ok(Host::new(
        Module::new(nvm, Box::new(SystemClock)),
        FileAuditSink::in_dir(dir),
    ))
}

/// The first request after power-on: tells the module where this log ends, so
/// entries a crash kept from it come back from the module's journal first.
///
/// # Errors
/// The module's failure to boot; [`postvault_module::Error::Nvm`] if a torn
/// log cannot be cut.
pub fn resync(host: &mut ModuleHost, dir: &Path) -> postvault_module::Result<()> {
    let log = dir.join(AUDIT_LOG);
    let host_next = match std::fs::read(&log) {
        Ok(bytes) => {
            let whole = whole_records(&bytes);
            if whole < bytes.len() {
                // The host died partway through appending a record: keep the
                // torn bytes aside as evidence and end the log at the last
                // whole record; the module's journal has the entry again.
                let torn = dir.join(format!("{AUDIT_LOG}.torn"));
                let _ = std::fs::write(&torn, bytes.get(whole..).unwrap_or_default());
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&log)
                    .and_then(|f| f.set_len(u64::try_from(whole).unwrap_or(u64::MAX)))
                    .map_err(|_| postvault_module::Error::Nvm {
                        what: "the audit log's torn last record could not be cut".into(),
                    })?;
            }
            postvault_module::audit::parse_log(bytes.get(..whole).unwrap_or_default())
                .ok()
                .map(|entries| u64::try_from(entries.len()).unwrap_or(u64::MAX))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(0),
        Err(_) => None,
    };
    if let Some(host_next) = host_next {
        host.call(postvault_module::wire::Outer::Resync { host_next })?;
    }
    Ok(())
}
