//! Where a secure box keeps its state between runs: one file, sealed under a
//! key derived from the box's operation combination (see [`crate::boxes`]).
//! The box does no other I/O.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Fault, KmsError, Result};

/// A box's persistent storage.
pub trait BoxStorage: Send {
    /// The stored bytes, if any.
    ///
    /// # Errors
    /// [`Fault::Storage`] if they cannot be read.
    fn load(&self) -> Result<Option<Vec<u8>>>;
    /// Replaces the stored bytes, atomically.
    ///
    /// # Errors
    /// [`Fault::Storage`] if they cannot be written.
    fn save(&mut self, bytes: &[u8]) -> Result<()>;
}

/// Storage in memory (tests).
#[derive(Clone, Debug, Default)]
pub struct MemStorage(pub Option<Vec<u8>>);

impl BoxStorage for MemStorage {
    fn load(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.0.clone())
    }
    fn save(&mut self, bytes: &[u8]) -> Result<()> {
        self.0 = Some(bytes.to_vec());
        Ok(())
    }
}

/// Storage in one file, replaced by write-and-rename with fsync.
#[derive(Clone, Debug)]
pub struct FileStorage(PathBuf);

impl FileStorage {
    /// Storage at `path` (the file need not exist yet).
    #[must_use]
    pub fn new(path: &Path) -> Self {
        Self(path.to_path_buf())
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.0
    }
}

fn storage_err(what: &str, path: &Path, e: &std::io::Error) -> KmsError {
    KmsError::refused(Fault::Storage, format!("{what} {}: {e}", path.display()))
}

impl BoxStorage for FileStorage {
    fn load(&self) -> Result<Option<Vec<u8>>> {
        match fs::read(&self.0) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(storage_err("cannot read", &self.0, &e)),
        }
    }

    fn save(&mut self, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.0, bytes)
    }
}

/// Writes `bytes` to `path` through a temporary file, fsynced and renamed,
/// readable by the owner only.
///
/// # Errors
/// [`Fault::Storage`] on any I/O failure.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| storage_err("cannot create", dir, &e))?;
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| storage_err("cannot create", &tmp, &e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| storage_err("cannot write", &tmp, &e))?;
    fs::rename(&tmp, path).map_err(|e| storage_err("cannot replace", path, &e))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
