//! Clean power-off versus crash: a clean power-off resumes in the same state; a
//! power-on without one runs boot detection. Both make a signed first entry.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::*;
use postvault_module::audit::{AuditData, REASON_BOOT, REASON_RESUME, verify_log};
use postvault_module::state::ModuleState;
use postvault_module::wire::Request;

fn administrative_master() -> Hsm<postvault_module::nvm::MemNvm> {
    let mut m = new_master();
    m.as_user("so", Request::BeginAdmin).unwrap();
    assert_eq!(m.status().current, ModuleState::Administrative);
    m
}

#[test]
fn a_clean_power_off_resumes_in_the_same_state_with_a_signed_entry() {
    let mut m = administrative_master();
    m.host.shutdown().unwrap();
    let mut m = m.reboot();
    let s = m.status();
    assert_eq!(
        (s.current, s.persistent),
        (ModuleState::Administrative, ModuleState::Administrative)
    );
    let first = m.entries().last().unwrap();
    let body = first.decode_body().unwrap();
    assert_eq!(body.reason, REASON_RESUME);
    assert_eq!(body.data, AuditData::Resumed(ModuleState::Administrative));
    assert!(first.signature.is_some());
    // The administrator can carry on where the security officer left off.
    m.as_user("admin", Request::ViewAccounts).unwrap();
    verify_log(&m.log(), None).unwrap();
}

#[test]
fn a_power_on_without_a_clean_power_off_is_a_reboot() {
    let m = administrative_master();
    let mut m = m.reboot();
    let s = m.status();
    assert_eq!(
        (s.current, s.persistent),
        (ModuleState::Operational, ModuleState::Operational)
    );
    let body = m.entries().last().unwrap().decode_body().unwrap();
    assert_eq!(body.reason, REASON_BOOT);
    // The resume record is consumed: a crash after a resumed power-on is a reboot.
    let mut m = administrative_master();
    m.host.shutdown().unwrap();
    let mut m = m.reboot();
    m.status();
    let mut m = m.reboot();
    assert_eq!(m.status().current, ModuleState::Operational);
    verify_log(&m.log(), None).unwrap();
}

#[test]
fn a_power_record_that_contradicts_the_persistent_state_is_ignored() {
    use postvault_module::nvm::{Nvm, Slot};
    let m = new_master();
    let mut nvm = m.nvm();
    // A stale or forged record claims the module was powered off uninitialised.
    nvm.write(
        Slot::Power,
        &postvault_module::codec::encode(&ModuleState::Uninitialized).unwrap(),
    )
    .unwrap();
    let mut m = m.reboot();
    let s = m.status();
    assert_eq!(
        (s.current, s.persistent),
        (ModuleState::Operational, ModuleState::Operational)
    );
    assert_eq!(m.last_body().reason, REASON_BOOT);
    assert!(s.active_mks.is_some());
}

#[test]
fn a_power_on_that_cannot_read_its_memory_stops_and_records_no_clean_power_off() {
    use postvault_module::nvm::{Nvm, Slot};
    let m = new_master();
    let mut nvm = m.nvm();
    let good = nvm.read(Slot::State).unwrap().unwrap();
    nvm.write(Slot::State, b"\xff\xff not a state").unwrap();
    let mut m = m.reboot();
    assert!(
        m.host
            .call(postvault_module::wire::Outer::GetStatus)
            .is_err()
    );
    // Refuses everything after, and powers off without a resume record.
    assert!(
        m.host
            .call(postvault_module::wire::Outer::GetStatus)
            .is_err()
    );
    m.host.shutdown().unwrap();
    assert!(nvm.read(Slot::Power).unwrap().is_none());
    // With its memory back, the next power-on is a reboot and lands where it was.
    nvm.write(Slot::State, &good).unwrap();
    let mut m = m.reboot();
    assert_eq!(m.status().current, ModuleState::Operational);
}
