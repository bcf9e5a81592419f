//! Module states (seed 001, FIG. 6) and the boot-detection rules.
//!
//! Two variables hold the state: the *current* state lives in volatile memory,
//! the *persistent* state in non-volatile memory. A transition first updates the
//! current state, then performs its actions, and only then updates the persistent
//! state, so a reboot in the middle leaves the old state in NVM and boot detection
//! decides where the module lands.

use serde::{Deserialize, Serialize};

/// The seven module states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModuleState {
    /// Just booted, nothing loaded; only Start Initialization is accepted.
    Uninitialized,
    /// Access control database and MKS (or transport key) being set up, once per lifetime.
    Initializing,
    /// Normal operation.
    Operational,
    /// Access-control maintenance by the administrator, opened by the security officer.
    Administrative,
    /// Key custodians export sealed shares of the MKS.
    ExportingShares,
    /// Key custodians import sealed shares of an MKS.
    ImportingShares,
    /// A fault stopped the module; only status queries and Reset are possible.
    Error,
}

impl ModuleState {
    /// All states, for tables and tests.
    pub const ALL: [ModuleState; 7] = [
        ModuleState::Uninitialized,
        ModuleState::Initializing,
        ModuleState::Operational,
        ModuleState::Administrative,
        ModuleState::ExportingShares,
        ModuleState::ImportingShares,
        ModuleState::Error,
    ];

    /// A short lower-case name for people.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ModuleState::Uninitialized => "uninitialized",
            ModuleState::Initializing => "initializing",
            ModuleState::Operational => "operational",
            ModuleState::Administrative => "administrative",
            ModuleState::ExportingShares => "exporting-shares",
            ModuleState::ImportingShares => "importing-shares",
            ModuleState::Error => "error",
        }
    }
}

impl core::fmt::Display for ModuleState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// What boot detection decided, from the persistent state found in NVM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootOutcome {
    /// The persistent state read from NVM.
    pub found: ModuleState,
    /// The current state after boot detection.
    pub current: ModuleState,
    /// The persistent state after boot detection.
    pub persistent: ModuleState,
}

/// The seed's boot-detection rules (seed 001, "Initialization includes the following
/// boot detection"), as a pure function of the persistent state and whether the
/// module holds a valid active master key set.
///
/// One choice the seed leaves open: for an interrupted share export it sets only
/// the current state to Error ("non-fatal: a subsequent reboot clears the error"),
/// which can only hold if the persistent state stops saying Exporting Shares. We
/// abandon the interrupted export (as Abort Export would) by writing Operational as
/// the persistent state, so the next reboot returns to Operational.
#[must_use]
pub fn boot_detection(persistent: ModuleState, has_active_mks: bool) -> BootOutcome {
    let (current, persistent_after) = match persistent {
        ModuleState::Error => (ModuleState::Error, ModuleState::Error),
        ModuleState::Initializing => (ModuleState::Error, ModuleState::Error),
        ModuleState::ImportingShares if !has_active_mks => (ModuleState::Error, ModuleState::Error),
        ModuleState::ExportingShares => (ModuleState::Error, ModuleState::Operational),
        ModuleState::Uninitialized => (ModuleState::Uninitialized, ModuleState::Uninitialized),
        ModuleState::ImportingShares | ModuleState::Operational | ModuleState::Administrative => {
            (ModuleState::Operational, ModuleState::Operational)
        }
    };
    BootOutcome {
        found: persistent,
        current,
        persistent: persistent_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_rules_follow_the_seed() {
        use ModuleState::*;
        let cases = [
            (Error, false, Error, Error),
            (Error, true, Error, Error),
            (Initializing, false, Error, Error),
            (Initializing, true, Error, Error),
            (ImportingShares, false, Error, Error),
            (ImportingShares, true, Operational, Operational),
            (ExportingShares, true, Error, Operational),
            (Uninitialized, false, Uninitialized, Uninitialized),
            (Operational, true, Operational, Operational),
            (Administrative, true, Operational, Operational),
        ];
        for (found, mks, current, persistent) in cases {
            let out = boot_detection(found, mks);
            assert_eq!(
                (out.current, out.persistent),
                (current, persistent),
                "{found}"
            );
        }
    }
}
