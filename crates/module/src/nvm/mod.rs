//! The module's non-volatile memory: the one door through which the module does I/O.
//!
//! The module stores a handful of records ("slots"). An implementation must make
//! each single-slot write atomic (all or nothing); the module's state-transition
//! discipline (current state first, persistent state last) handles crashes between
//! writes. Slot contents are plaintext secrets on the module side of the trait, so
//! an implementation that leaves the process must encrypt them, as [`file::FileNvm`] does.

pub mod file;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The records kept in non-volatile memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    /// The persistent state.
    State,
    /// Module serial, audit signing key, clock offset, configuration.
    Identity,
    /// Audit chain head: next sequence number, last hash, entries since the last signature.
    AuditHead,
    /// The access-control database.
    Accounts,
    /// The master key set slots (active, dormant).
    Mks,
    /// The transport key pair (clone modules).
    Transport,
    /// An export ceremony in progress.
    Export,
    /// An import ceremony in progress.
    Import,
    /// The crypto-card: postal settings and shared keys.
    CryptoCard,
    /// The last checkpoint records and the inhibit flag.
    Checkpoints,
    /// Written by a clean shutdown (the current state to resume in), removed at
    /// the first command after power-on: its absence at power-on means a crash.
    Power,
}

impl Slot {
    /// Every slot.
    pub const ALL: [Slot; 11] = [
        Slot::State,
        Slot::Identity,
        Slot::AuditHead,
        Slot::Accounts,
        Slot::Mks,
        Slot::Transport,
        Slot::Export,
        Slot::Import,
        Slot::CryptoCard,
        Slot::Checkpoints,
        Slot::Power,
    ];

    /// A stable name (file name stem, AEAD associated data).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Slot::State => "state",
            Slot::Identity => "identity",
            Slot::AuditHead => "audit-head",
            Slot::Accounts => "accounts",
            Slot::Mks => "mks",
            Slot::Transport => "transport",
            Slot::Export => "export",
            Slot::Import => "import",
            Slot::CryptoCard => "crypto-card",
            Slot::Checkpoints => "checkpoints",
            Slot::Power => "power",
        }
    }
}

/// Non-volatile memory.
pub trait Nvm {
    /// Reads a slot; `None` if it was never written or was erased.
    ///
    /// # Errors
    /// [`Error::Nvm`] if the medium cannot be read or a record fails authentication.
    fn read(&self, slot: Slot) -> Result<Option<Zeroizing<Vec<u8>>>>;
    /// Replaces a slot atomically.
    ///
    /// # Errors
    /// [`Error::Nvm`] if the write did not happen.
    fn write(&mut self, slot: Slot, data: &[u8]) -> Result<()>;
    /// Removes a slot.
    ///
    /// # Errors
    /// [`Error::Nvm`] if the removal did not happen.
    fn remove(&mut self, slot: Slot) -> Result<()>;
    /// Erases every slot (Start Initialization, Reset).
    ///
    /// # Errors
    /// [`Error::Nvm`] if the erasure did not complete.
    fn erase_all(&mut self) -> Result<()> {
        Slot::ALL.into_iter().try_for_each(|s| self.remove(s))
    }
}

/// Battery-backed RAM for tests and benchmarks: survives a "reboot" (a new
/// [`crate::Module`] over a clone of the same `MemNvm`), not the process.
#[derive(Clone, Default)]
pub struct MemNvm(Arc<Mutex<BTreeMap<Slot, Zeroizing<Vec<u8>>>>>);

impl MemNvm {
    /// An empty memory.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<Slot, Zeroizing<Vec<u8>>>>> {
        self.0.lock().map_err(|_| Error::Nvm {
            what: "memory lock poisoned".into(),
        })
    }
}

impl Nvm for MemNvm {
    fn read(&self, slot: Slot) -> Result<Option<Zeroizing<Vec<u8>>>> {
        Ok(self.lock()?.get(&slot).cloned())
    }
    fn write(&mut self, slot: Slot, data: &[u8]) -> Result<()> {
        self.lock()?.insert(slot, Zeroizing::new(data.to_vec()));
        Ok(())
    }
    fn remove(&mut self, slot: Slot) -> Result<()> {
        self.lock()?.remove(&slot);
        Ok(())
    }
}
