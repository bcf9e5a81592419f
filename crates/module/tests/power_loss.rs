//! Power lost at every single NVM write of a long ceremony script: after each,
//! a reboot lands where boot detection says for what reached NVM, the audit log
//! the host stored verifies and ends at the module's own chain head, and the
//! module works again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use common::*;
use postvault_module::audit::{AuditEntry, verify_log};
use postvault_module::host::Host;
use postvault_module::mks::MksSlots;
use postvault_module::module::stored_audit_head;
use postvault_module::nvm::{MemNvm, Nvm, Slot};
use postvault_module::state::{ModuleState, boot_detection};
use postvault_module::wire::{ModuleConfig, Outer, Request};
use postvault_module::{Error, ManualClock, Module, Result};
use zeroize::Zeroizing;

/// NVM that loses power after `budget` writes: every later write or removal fails.
#[derive(Clone)]
struct FlakyNvm {
    inner: MemNvm,
    budget: Arc<AtomicI64>,
}

impl FlakyNvm {
    fn spend(&self) -> Result<()> {
        if self.budget.fetch_sub(1, Ordering::SeqCst) > 0 {
            Ok(())
        } else {
            Err(Error::Nvm {
                what: "power lost".into(),
            })
        }
    }
}

impl Nvm for FlakyNvm {
    fn read(&self, slot: Slot) -> Result<Option<Zeroizing<Vec<u8>>>> {
        self.inner.read(slot)
    }
    fn write(&mut self, slot: Slot, data: &[u8]) -> Result<()> {
        self.spend()?;
        self.inner.write(slot, data)
    }
    fn remove(&mut self, slot: Slot) -> Result<()> {
        self.spend()?;
        self.inner.remove(slot)
    }
}

type FlakyHost = Host<FlakyNvm, Vec<AuditEntry>>;

fn as_user(host: &mut FlakyHost, user: &str, req: Request) -> Result<()> {
    let mut s = host.open_session()?;
    host.send(&mut s, &logon_request(user))?;
    let r = host.send(&mut s, &req);
    host.send(&mut s, &Request::Logoff)?;
    r.map(drop)
}

/// A master's life: initialisation, accounts, MKS, an export ceremony, tokens,
/// a rollover. Stops at the first failure.
fn script(host: &mut FlakyHost, destination: [u8; 32]) -> Result<()> {
    host.call(Outer::StartInitialization(ModuleConfig {
        audit_sign_interval: 4,
        ..ModuleConfig::for_tests()
    }))?;
    let mut s = host.open_session()?;
    host.send(&mut s, &Request::InitializeAccessControl(team_accounts()))?;
    host.send(&mut s, &Request::CloseSession)?;
    as_user(host, "so", Request::GenerateMks)?;
    as_user(host, "so", Request::BeginAdmin)?;
    as_user(host, "admin", Request::DeleteAccount(uid("kc3")))?;
    as_user(host, "so", Request::EndAdmin)?;
    as_user(
        host,
        "so",
        Request::CreateMksShares {
            shares: 2,
            threshold: 2,
            exportable: false,
        },
    )?;
    as_user(host, "kc1", Request::ExportShare { destination })?;
    as_user(host, "kc2", Request::ExportShare { destination })?;
    as_user(host, "so", Request::GenerateTestToken { owner: "t".into() })?;
    as_user(host, "so", Request::GenerateMks)?;
    as_user(host, "so", Request::ActivateMks)?;
    as_user(host, "so", Request::DeleteDormantMks)?;
    Ok(())
}

fn run(budget: i64, destination: [u8; 32]) -> (MemNvm, Vec<AuditEntry>, bool) {
    let nvm = FlakyNvm {
        inner: MemNvm::new(),
        budget: Arc::new(AtomicI64::new(budget)),
    };
    let mut host = Host::new(
        Module::new(nvm.clone(), Box::new(ManualClock::at(T0))),
        Vec::new(),
    );
    let finished = script(&mut host, destination).is_ok();
    (nvm.inner, host.sink, finished)
}

#[test]
fn power_lost_at_any_write_reboots_where_the_seed_says() {
    let mut clone = Hsm::initialized();
    let destination = clone.generate_transport_key();
    // Count the writes of a run without power loss.
    let (_, _, finished) = run(i64::MAX, destination);
    assert!(finished);
    let counter = FlakyNvm {
        inner: MemNvm::new(),
        budget: Arc::new(AtomicI64::new(i64::MAX)),
    };
    let mut host = Host::new(
        Module::new(counter.clone(), Box::new(ManualClock::at(T0))),
        Vec::new(),
    );
    script(&mut host, destination).unwrap();
    let writes = i64::MAX - counter.budget.load(Ordering::SeqCst);
    assert!(writes > 50, "{writes} writes");

    let mut landings = std::collections::BTreeSet::new();
    for budget in 0..writes {
        let (nvm, entries, finished) = run(budget, destination);
        assert!(!finished, "power was lost at write {budget}");
        let found: ModuleState = read_slot(&nvm, Slot::State).unwrap_or(ModuleState::Uninitialized);
        let has_active = read_slot::<MksSlots>(&nvm, Slot::Mks).is_some_and(|m| m.active.is_some());
        let expected = boot_detection(found, has_active);

        let mut host = Host::new(
            Module::new(nvm.clone(), Box::new(ManualClock::at(T0 + 1))),
            entries,
        );
        let status = host.status().unwrap();
        assert_eq!(
            (status.current, status.persistent),
            (expected.current, expected.persistent),
            "write {budget}"
        );
        landings.insert(format!("{:?}", (found, status.current)));

        if found != ModuleState::Uninitialized {
            let log = stored_log(&host.sink);
            let summary = verify_log(&log, None).unwrap_or_else(|e| panic!("write {budget}: {e}"));
            let (_, head) = stored_audit_head(&nvm).unwrap().unwrap();
            assert_eq!(
                summary.head, head,
                "write {budget}: the log ends at the module's chain head"
            );
        }
        // Whatever happened, the module is usable again: from Error through Reset.
        if status.current == ModuleState::Error {
            host.call(Outer::Reset).unwrap();
        }
        if host.status().unwrap().current == ModuleState::Uninitialized {
            host.call(Outer::StartInitialization(ModuleConfig::for_tests()))
                .unwrap();
        }
    }
    // The script crosses every kind of landing the seed describes.
    for l in [
        "(Uninitialized, Uninitialized)",
        "(Initializing, Error)",
        "(Operational, Operational)",
        "(Administrative, Operational)",
        "(ExportingShares, Error)",
    ] {
        assert!(landings.contains(l), "{l} not reached: {landings:?}");
    }
}
