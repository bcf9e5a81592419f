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

/// A powered-on software module with its audit log.
pub type ModuleHost = Host<FileNvm, FileAuditSink>;

/// Powers on the module in `dir` (created if absent). Power it off with
/// [`Host::shutdown`] so the next power-on resumes instead of rebooting.
///
/// # Errors
/// [`postvault_module::Error::Nvm`] if the directory cannot be opened.
pub fn power_on(dir: &Path) -> postvault_module::Result<ModuleHost> {
    let nvm = FileNvm::open(dir)?;
    let mut host = Host::new(
        Module::new(nvm, Box::new(SystemClock)),
        FileAuditSink::in_dir(dir),
    );
    // The first request tells the module where this log ends, so entries a
    // crash kept from it come back from the module's journal first.
    let log = dir.join(AUDIT_LOG);
    let host_next = match std::fs::read(&log) {
        Ok(bytes) => postvault_module::audit::parse_log(&bytes)
            .ok()
            .map(|entries| u64::try_from(entries.len()).unwrap_or(u64::MAX)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(0),
        Err(_) => None,
    };
    if let Some(host_next) = host_next {
        host.call(postvault_module::wire::Outer::Resync { host_next })?;
    }
    Ok(host)
}
