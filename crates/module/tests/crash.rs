//! Crash tests: every state transition, crashed at both failure points, then
//! rebooted. Where the module lands must be what boot detection says for the
//! persistent state left in NVM, and the audit log must stay verifiable, with a
//! signed boot entry first after the reboot.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::{Hsm, new_master, stored_state};
use postvault_module::audit::{AuditData, REASON_BOOT, verify_log};
use postvault_module::command::{Command, Refusal};
use postvault_module::nvm::MemNvm;
use postvault_module::session::HostOpening;
use postvault_module::state::{ModuleState, boot_detection};
use postvault_module::wire::{ModuleConfig, Outer, OuterReply, Request, Response};
use postvault_module::{Error, FailPoint, Result};

use ModuleState::{
    Administrative as Adm, Error as Er, ExportingShares as Exp, ImportingShares as Imp,
    Initializing as Ini, Operational as Op, Uninitialized as Un,
};

const POINTS: [FailPoint; 2] = [
    FailPoint::AfterCurrentState,
    FailPoint::BeforePersistentState,
];

/// Where a crashed module landed after the reboot.
struct Landed {
    hsm: Hsm<MemNvm>,
    /// The persistent state found in NVM at the reboot.
    found: ModuleState,
    current: ModuleState,
    persistent: ModuleState,
}

/// Arms `point`, runs `command` (which must crash there), checks the crashed module
/// refuses everything, reboots, and checks the landing against boot detection and
/// the audit log (one signed boot entry, whole log verifies up to the module's head).
fn crash(
    mut hsm: Hsm<MemNvm>,
    point: FailPoint,
    command: impl FnOnce(&mut Hsm<MemNvm>) -> Result<()>,
) -> Landed {
    hsm.host.module.crash_at(point);
    assert_eq!(command(&mut hsm), Err(Error::InjectedCrash(point)));
    assert!(
        matches!(hsm.host.call(Outer::GetStatus), Err(Error::Fatal { .. })),
        "a crashed module answers nothing"
    );

    let (found, has_active) = stored_state(&hsm.nvm());
    let expected = boot_detection(found, has_active);
    let before = hsm.entries().len();
    let mut hsm = hsm.reboot();
    let s = hsm.status();
    assert_eq!(
        (s.current, s.persistent),
        (expected.current, expected.persistent),
        "{point:?}, found {found}"
    );

    if found == Un {
        assert_eq!(
            hsm.entries().len(),
            before,
            "no audit chain before initialisation"
        );
    } else {
        assert_eq!(hsm.entries().len(), before + 1, "exactly the boot entry");
        let boot = &hsm.entries()[before];
        assert!(
            boot.signature.is_some(),
            "the first entry after a reboot is signed"
        );
        let body = boot.decode_body().unwrap();
        assert_eq!(body.reason, REASON_BOOT);
        assert_eq!(body.command, Some(Command::GetStatus));
        assert_eq!(body.data, AuditData::Boot(expected));
        assert_eq!(
            (body.current, body.persistent),
            (expected.current, expected.persistent)
        );
        let summary = verify_log(&hsm.log(), Some(&s.audit_head)).unwrap();
        assert_eq!(summary.unsigned_tail, 0);
    }
    Landed {
        hsm,
        found,
        current: s.current,
        persistent: s.persistent,
    }
}

fn assert_landed(l: &Landed, found: ModuleState, current: ModuleState, persistent: ModuleState) {
    assert_eq!(
        (l.found, l.current, l.persistent),
        (found, current, persistent)
    );
}

fn so(hsm: &mut Hsm<MemNvm>) {
    assert!(matches!(
        hsm.logon("so").unwrap(),
        Response::CurrentUser(..)
    ));
}

fn send(req: Request) -> impl FnOnce(&mut Hsm<MemNvm>) -> Result<()> {
    move |h| h.send(req).map(drop)
}

/// A fatal landing: only status, session closing and Reset are left; Reset returns
/// to Uninitialized and a new initialisation starts a new, verifiable chain.
fn assert_fatal_then_reset(mut hsm: Hsm<MemNvm>) {
    let err = hsm
        .host
        .call(Outer::OpenSession {
            host_public: HostOpening::new().unwrap().public(),
        })
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Refused {
            command: Command::OpenSession,
            state: Er,
            reason: Refusal::WrongState,
            ..
        }
    ));
    assert_eq!(
        hsm.last_body().reason,
        err.reason_code(),
        "refusals in Error state are audited"
    );
    assert!(matches!(
        hsm.host.call(Outer::Reset).unwrap(),
        OuterReply::ResetDone
    ));
    assert_eq!(hsm.status().current, Un);
    let chain = hsm.entries().len();
    hsm.initialize(ModuleConfig::for_tests());
    let head = hsm.status().audit_head;
    verify_log(&common::stored_log(&hsm.entries()[chain..]), Some(&head)).unwrap();
}

#[test]
fn start_initialization_uninitialized_to_initializing() {
    for point in POINTS {
        let l = crash(Hsm::fresh(), point, |h| {
            h.host
                .call(Outer::StartInitialization(ModuleConfig::for_tests()))
                .map(drop)
        });
        assert_landed(&l, Un, Un, Un);
        let mut hsm = l.hsm;
        assert!(hsm.status().serial.is_none());
        // Crashing after the actions leaves the first entry of a chain that never
        // became a module's (its Start Initialization is made inside the transition).
        let orphans = hsm.entries().len();
        assert_eq!(
            orphans,
            usize::from(point == FailPoint::BeforePersistentState)
        );
        hsm.initialize(ModuleConfig::for_tests());
        let head = hsm.status().audit_head;
        verify_log(&common::stored_log(&hsm.entries()[orphans..]), Some(&head)).unwrap();
    }
}

#[test]
fn generate_mks_initializing_to_operational() {
    for point in POINTS {
        let mut hsm = Hsm::initialized();
        so(&mut hsm);
        let l = crash(hsm, point, send(Request::GenerateMks));
        assert_landed(&l, Ini, Er, Er);
        assert_fatal_then_reset(l.hsm);
    }
}

#[test]
fn generate_transport_key_initializing_to_importing_shares() {
    for point in POINTS {
        let mut hsm = Hsm::initialized();
        so(&mut hsm);
        let l = crash(hsm, point, send(Request::GenerateTransportKey));
        assert_landed(&l, Ini, Er, Er);
        assert_fatal_then_reset(l.hsm);
    }
}

#[test]
fn begin_admin_operational_to_administrative() {
    for point in POINTS {
        let mut hsm = new_master();
        so(&mut hsm);
        let l = crash(hsm, point, send(Request::BeginAdmin));
        assert_landed(&l, Op, Op, Op);
        let mut hsm = l.hsm;
        hsm.as_user("so", Request::BeginAdmin).unwrap();
        assert_eq!(hsm.status().current, Adm);
    }
}

#[test]
fn end_admin_administrative_to_operational() {
    for point in POINTS {
        let mut hsm = new_master();
        so(&mut hsm);
        hsm.send(Request::BeginAdmin).unwrap();
        let l = crash(hsm, point, send(Request::EndAdmin));
        assert_landed(&l, Adm, Op, Op);
    }
}

#[test]
fn create_mks_shares_operational_to_exporting_shares() {
    for point in POINTS {
        let mut hsm = new_master();
        so(&mut hsm);
        let l = crash(
            hsm,
            point,
            send(Request::CreateMksShares {
                shares: 3,
                threshold: 2,
                exportable: false,
            }),
        );
        assert_landed(&l, Op, Op, Op);
        let mut hsm = l.hsm;
        assert_eq!(
            hsm.status().export_progress,
            None,
            "no export survives the crash"
        );
        // The ceremony can simply be started again.
        let dest = *postvault_crypto::hpke::PrivateKey::generate()
            .unwrap()
            .1
            .as_bytes();
        assert_eq!(hsm.export_shares(dest, 2, 2, false).len(), 2);
    }
}

/// A master in Exporting Shares (2 shares, 1 exported), with `user` logged on, and
/// the ceremony's destination.
fn exporting(user: &str) -> (Hsm<MemNvm>, [u8; 32]) {
    let mut hsm = new_master();
    let dest = *postvault_crypto::hpke::PrivateKey::generate()
        .unwrap()
        .1
        .as_bytes();
    hsm.as_user(
        "so",
        Request::CreateMksShares {
            shares: 2,
            threshold: 2,
            exportable: false,
        },
    )
    .unwrap();
    hsm.as_user("kc1", Request::ExportShare { destination: dest })
        .unwrap();
    assert_eq!(hsm.status().export_progress, Some((1, 2)));
    hsm.logon(user).unwrap();
    (hsm, dest)
}

/// An interrupted export: a non-fatal Error, cleared by the next reboot.
fn assert_export_abandoned(l: Landed) {
    assert_landed(&l, Exp, Er, Op);
    let mut hsm = l.hsm;
    assert_eq!(
        hsm.status().export_progress,
        None,
        "the interrupted export is abandoned"
    );
    let mut hsm = hsm.reboot();
    let s = hsm.status();
    assert_eq!((s.current, s.persistent, s.export_progress), (Op, Op, None));
    let body = hsm.last_body();
    assert_eq!(
        (body.reason, body.current, body.persistent),
        (REASON_BOOT, Op, Op)
    );
    verify_log(&hsm.log(), Some(&s.audit_head)).unwrap();
}

#[test]
fn last_export_share_exporting_shares_to_operational() {
    for point in POINTS {
        let (hsm, dest) = exporting("kc2");
        let l = crash(hsm, point, send(Request::ExportShare { destination: dest }));
        assert_export_abandoned(l);
    }
}

#[test]
fn abort_export_exporting_shares_to_operational() {
    for point in POINTS {
        let l = crash(exporting("so").0, point, send(Request::AbortExport));
        assert_export_abandoned(l);
    }
}

#[test]
fn start_importing_mks_operational_to_importing_shares() {
    for point in POINTS {
        let mut hsm = new_master();
        hsm.generate_transport_key();
        so(&mut hsm);
        let l = crash(hsm, point, send(Request::StartImportingMks));
        assert_landed(&l, Op, Op, Op);
    }
}

#[test]
fn combine_shares_first_import_importing_shares_to_operational() {
    for point in POINTS {
        let mut master = new_master();
        let mut clone = Hsm::initialized();
        let transport = clone.generate_transport_key();
        let shares = master.export_shares(transport, 2, 2, false);
        clone.import_share("kc1", &shares[0]).unwrap();
        clone.import_share("kc2", &shares[1]).unwrap();
        let source = master.fingerprint();
        so(&mut clone);
        let l = crash(clone, point, send(Request::CombineShares { source }));
        match point {
            // Nothing written: no MKS, a fatal error.
            FailPoint::AfterCurrentState => {
                assert_landed(&l, Imp, Er, Er);
                assert_fatal_then_reset(l.hsm);
            }
            // The MKS was stored before the crash: the import completed.
            FailPoint::BeforePersistentState => {
                assert_landed(&l, Imp, Op, Op);
                let mut clone = l.hsm;
                let s = clone.status();
                assert_eq!(
                    s.active_mks.unwrap().id,
                    master.status().active_mks.unwrap().id
                );
                assert_eq!(s.import_progress, None);
                let (token, kcv) = master.test_token("after crash");
                assert!(
                    matches!(clone.verify_token(&token).unwrap(), Response::TokenChecked { kcv: k, .. } if k == kcv)
                );
            }
            FailPoint::AfterCheckpoint => unreachable!("only state transitions are crashed here"),
        }
    }
}

#[test]
fn combine_shares_second_import_importing_shares_to_operational() {
    for point in POINTS {
        let (mut master, mut clone) = common::master_and_clone();
        let old = clone.status().active_mks.unwrap();
        // The master rolls over to a new MKS and sends it to the clone.
        master.as_user("so", Request::GenerateMks).unwrap();
        master.as_user("so", Request::ActivateMks).unwrap();
        let new = master.status().active_mks.unwrap();
        clone.as_user("so", Request::StartImportingMks).unwrap();
        let transport = clone.status().transport_key.unwrap();
        let shares = master.export_shares(transport, 2, 2, false);
        clone.import_share("kc1", &shares[0]).unwrap();
        clone.import_share("kc2", &shares[1]).unwrap();
        let source = master.fingerprint();
        so(&mut clone);
        let l = crash(clone, point, send(Request::CombineShares { source }));
        assert_landed(&l, Imp, Op, Op);
        let mut clone = l.hsm;
        let s = clone.status();
        assert_eq!(s.active_mks, Some(old), "the active MKS is untouched");
        assert_eq!(s.import_progress, None, "no import survives the crash");
        match point {
            FailPoint::AfterCurrentState => assert_eq!(s.dormant_mks, None),
            FailPoint::BeforePersistentState => {
                assert_eq!(s.dormant_mks.map(|m| m.id), Some(new.id))
            }
            FailPoint::AfterCheckpoint => unreachable!("only state transitions are crashed here"),
        }
    }
}
