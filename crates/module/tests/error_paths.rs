//! The remaining refusals of the access-control, MKS and audit commands: each
//! is typed, audited, and changes nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::*;
use postvault_module::Error;
use postvault_module::account::NewAccount;
use postvault_module::nvm::MemNvm;
use postvault_module::role::Role;
use postvault_module::wire::{Request, Response};

/// `user` logs on, `req` must be refused (checked by `refused`), then logs off.
fn refused_as(hsm: &mut Hsm<MemNvm>, user: &str, req: Request) -> Error {
    assert!(matches!(
        hsm.logon(user).unwrap(),
        Response::CurrentUser(..)
    ));
    let err = refused(hsm, |h| h.send(req));
    hsm.logoff();
    err
}

#[test]
fn access_control_keeps_its_minimal_set_and_its_owners() {
    // Initialisation runs once, and only with the minimal set.
    let mut hsm = Hsm::initialized();
    let err = refused(&mut hsm, |h| {
        h.send(Request::InitializeAccessControl(team_accounts()))
    });
    assert_eq!(
        err,
        Error::InvalidArgument {
            what: "access control is already initialized"
        }
    );
    let mut fresh = Hsm::fresh();
    fresh
        .host
        .call(postvault_module::wire::Outer::StartInitialization(
            postvault_module::wire::ModuleConfig::for_tests(),
        ))
        .unwrap();
    let short: Vec<NewAccount> = team_accounts()
        .into_iter()
        .filter(|a| a.user.as_str() != "kc2" && a.user.as_str() != "kc3")
        .collect();
    fresh.ensure_session();
    let err = refused(&mut fresh, |h| {
        h.send(Request::InitializeAccessControl(short))
    });
    assert_eq!(err, Error::MinimalAccountSet);

    let mut hsm = new_master();
    hsm.as_user("so", Request::BeginAdmin).unwrap();
    // Two key custodians must remain; an administrator cannot delete themself.
    hsm.as_user("admin", Request::DeleteAccount(uid("kc3")))
        .unwrap();
    assert_eq!(
        refused_as(&mut hsm, "admin", Request::DeleteAccount(uid("kc2"))),
        Error::MinimalAccountSet
    );
    assert!(matches!(
        refused_as(&mut hsm, "admin", Request::DeleteAccount(uid("admin"))),
        Error::InvalidArgument { .. }
    ));
    // Provider and user roles hold no module account.
    let customer = NewAccount {
        user: uid("shop"),
        role: Role::User,
        password: password("shop"),
    };
    assert!(matches!(
        refused_as(&mut hsm, "admin", Request::CreateAccount(customer)),
        Error::Account { .. }
    ));
    hsm.as_user("so", Request::EndAdmin).unwrap();

    // A password change needs the old password and a new one.
    let same = Request::ChangePassword {
        old: password("kc1"),
        new: password("kc1"),
    };
    assert!(matches!(
        refused_as(&mut hsm, "kc1", same),
        Error::InvalidArgument { .. }
    ));
    let wrong = Request::ChangePassword {
        old: password("kc2"),
        new: password("kc9"),
    };
    assert_eq!(
        refused_as(&mut hsm, "kc1", wrong),
        Error::InvalidCredentials
    );
}

#[test]
fn mks_slots_and_transport_keys_refuse_what_would_overwrite_or_is_missing() {
    let mut hsm = new_master();
    for req in [Request::ActivateMks, Request::DeleteDormantMks] {
        assert!(matches!(refused_as(&mut hsm, "so", req), Error::Mks { .. }));
    }
    hsm.as_user("so", Request::GenerateMks).unwrap();
    assert!(matches!(
        refused_as(&mut hsm, "so", Request::GenerateMks),
        Error::Mks { .. }
    ));
    hsm.as_user("so", Request::GenerateTransportKey).unwrap();
    assert!(matches!(
        refused_as(&mut hsm, "so", Request::GenerateTransportKey),
        Error::Mks { .. }
    ));
}

#[test]
fn each_custodian_exports_one_share_to_one_destination() {
    let mut master = new_master();
    let mut a = Hsm::initialized();
    let mut b = Hsm::initialized();
    let (to_a, to_b) = (a.generate_transport_key(), b.generate_transport_key());
    let req = Request::CreateMksShares {
        shares: 3,
        threshold: 2,
        exportable: false,
    };
    master.as_user("so", req).unwrap();
    master
        .as_user("kc1", Request::ExportShare { destination: to_a })
        .unwrap();
    let err = refused_as(
        &mut master,
        "kc1",
        Request::ExportShare { destination: to_a },
    );
    assert!(matches!(err, Error::ShareRefused { .. }), "{err:?}");
    let err = refused_as(
        &mut master,
        "kc2",
        Request::ExportShare { destination: to_b },
    );
    assert!(matches!(err, Error::ShareRefused { .. }), "{err:?}");
    assert_eq!(master.status().export_progress, Some((1, 3)));
}

#[test]
fn an_oversized_note_is_refused_and_cold_boot_only_before_the_first_command() {
    let mut hsm = new_master();
    let note = Request::CreateAuditEntry {
        note: "x".repeat(1025),
        force_signature: false,
    };
    assert!(matches!(
        refused_as(&mut hsm, "kc1", note),
        Error::InvalidArgument { .. }
    ));
    assert!(matches!(
        hsm.host.module.cold_boot(),
        Err(Error::Busy { .. })
    ));
    let mut rebooted = hsm.reboot();
    rebooted.host.module.cold_boot().unwrap();
    assert_eq!(
        rebooted.status().current,
        postvault_module::state::ModuleState::Operational
    );
}
