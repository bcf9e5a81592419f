//! Non-volatile memory in a directory: one file per slot, each sealed with
//! AES-256-GCM under a 32-byte *storage key* kept in a separate key file, with the
//! slot name bound as associated data so records cannot be swapped between slots.
//!
//! The storage key plays the part of the 4758's PPD key. This file implementation
//! keeps it in `storage.key` beside the records, which protects against a copied
//! record directory but not against someone who can read both. A deployment keeps
//! the storage key in a TPM or HSM and passes it in through [`FileNvm::open_with_key`].

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use postvault_crypto::{Secret32, aead};
use zeroize::Zeroizing;

use super::{Nvm, Slot};
use crate::error::{Error, Result};

const FORMAT: &[u8] = b"postvault nvm v1";
/// File name of the storage key inside a module directory.
pub const KEY_FILE: &str = "storage.key";
/// Sub-directory holding the sealed slot records.
pub const RECORD_DIR: &str = "nvm";

/// Slots stored as sealed files under `<dir>/nvm/`.
pub struct FileNvm {
    dir: PathBuf,
    key: Secret32,
    /// Whether the storage key lives in this directory's key file (and is rotated at erasure).
    owns_key: bool,
}

fn io_err(what: &str, path: &Path, e: &std::io::Error) -> Error {
    Error::Nvm {
        what: format!("{what} {}: {e}", path.display()),
    }
}

impl FileNvm {
    /// Opens (or creates) a module directory, creating its storage key file on first use.
    ///
    /// # Errors
    /// [`Error::Nvm`] if the directory or key file cannot be created or read, or the key file is malformed.
    pub fn open(dir: &Path) -> Result<Self> {
        create_private_dir(&dir.join(RECORD_DIR))?;
        let key_path = dir.join(KEY_FILE);
        let key = match fs::read(&key_path) {
            Ok(bytes) => Secret32::from_slice(&Zeroizing::new(bytes)).map_err(|_| Error::Nvm {
                what: format!("{} is not a 32-byte storage key", key_path.display()),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Secret32::generate()?;
                write_atomic(&key_path, key.expose())?;
                key
            }
            Err(e) => return Err(io_err("cannot read", &key_path, &e)),
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            key,
            owns_key: true,
        })
    }

    /// Opens a module directory with a storage key held elsewhere (TPM, HSM).
    ///
    /// # Errors
    /// [`Error::Nvm`] if the directory cannot be created.
    pub fn open_with_key(dir: &Path, key: Secret32) -> Result<Self> {
        create_private_dir(&dir.join(RECORD_DIR))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            key,
            owns_key: false,
        })
    }

    fn path(&self, slot: Slot) -> PathBuf {
        self.dir
            .join(RECORD_DIR)
            .join(format!("{}.rec", slot.name()))
    }

    fn aad(slot: Slot) -> Vec<u8> {
        [FORMAT, b"/", slot.name().as_bytes()].concat()
    }
}

/// Creates a directory (and its parents) readable by the owner only.
fn create_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err("cannot create", dir, &e))
}

/// Writes a file readable by the owner only: a temporary sibling, synced, renamed
/// over the target, and the directory synced so the rename survives a crash.
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io_err("cannot create", &tmp, &e))?;
    f.write_all(data)
        .map_err(|e| io_err("cannot write", &tmp, &e))?;
    f.sync_all().map_err(|e| io_err("cannot sync", &tmp, &e))?;
    fs::rename(&tmp, path).map_err(|e| io_err("cannot rename", path, &e))?;
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("cannot sync", parent, &e))
}

impl Nvm for FileNvm {
    fn read(&self, slot: Slot) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let path = self.path(slot);
        let sealed = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("cannot read", &path, &e)),
        };
        let plain = aead::open(&self.key, &Self::aad(slot), &sealed).map_err(|_| Error::Nvm {
            what: format!(
                "{} failed authentication (tampered, or sealed under another storage key)",
                path.display()
            ),
        })?;
        Ok(Some(Zeroizing::new(plain.expose().to_vec())))
    }

    fn write(&mut self, slot: Slot, data: &[u8]) -> Result<()> {
        let sealed = aead::seal(&self.key, &Self::aad(slot), data)?;
        write_atomic(&self.path(slot), &sealed)
    }

    fn remove(&mut self, slot: Slot) -> Result<()> {
        let path = self.path(slot);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("cannot remove", &path, &e)),
        }
    }

    /// Removes every record and, when the storage key is this directory's,
    /// replaces it, so copies of the old records taken earlier stay sealed for good.
    fn erase_all(&mut self) -> Result<()> {
        Slot::ALL.into_iter().try_for_each(|s| self.remove(s))?;
        if self.owns_key {
            let key = Secret32::generate()?;
            write_atomic(&self.dir.join(KEY_FILE), key.expose())?;
            self.key = key;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records_are_sealed_bound_to_their_slot_and_lost_at_erasure() {
        let dir = tempfile::tempdir().unwrap();
        let mut nvm = FileNvm::open(dir.path()).unwrap();
        nvm.write(Slot::Mks, b"master keys").unwrap();
        assert_eq!(
            nvm.read(Slot::Mks).unwrap().unwrap().as_slice(),
            b"master keys"
        );
        let sealed = fs::read(nvm.path(Slot::Mks)).unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"master keys"));
        // A record moved to another slot's file does not open.
        fs::copy(nvm.path(Slot::Mks), nvm.path(Slot::Accounts)).unwrap();
        assert!(matches!(nvm.read(Slot::Accounts), Err(Error::Nvm { .. })));
        // Erasure removes the records and replaces the storage key, so a copy
        // taken before stays sealed.
        use std::os::unix::fs::PermissionsExt;
        for p in [dir.path().join(KEY_FILE), nvm.path(Slot::Mks)] {
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600,
                "{}",
                p.display()
            );
        }
        let records = fs::metadata(dir.path().join(RECORD_DIR)).unwrap();
        assert_eq!(records.permissions().mode() & 0o777, 0o700);
        let key_before = fs::read(dir.path().join(KEY_FILE)).unwrap();
        nvm.erase_all().unwrap();
        assert_eq!(nvm.read(Slot::Mks).unwrap(), None);
        assert_ne!(fs::read(dir.path().join(KEY_FILE)).unwrap(), key_before);
        fs::write(nvm.path(Slot::Mks), &sealed).unwrap();
        assert!(matches!(
            FileNvm::open(dir.path()).unwrap().read(Slot::Mks),
            Err(Error::Nvm { .. })
        ));
    }
}
