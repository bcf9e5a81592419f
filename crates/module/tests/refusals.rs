//! Refused commands: each fails with its specific error, is audited with that
//! error's reason code, and changes nothing else (see `common::refused`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::{Hsm, logon_request, master_and_clone, new_master, password, read_slot, refused, uid};
use postvault_module::Error;
use postvault_module::account::{AccountChanges, AccountDb, NewAccount};
use postvault_module::codec;
use postvault_module::command::{Command, Refusal, authorize};
use postvault_module::mks::SharePackage;
use postvault_module::nvm::{MemNvm, Slot};
use postvault_module::role::Role;
use postvault_module::session::HostOpening;
use postvault_module::state::ModuleState;
use postvault_module::wire::{ModuleConfig, Outer, OuterReply, Password, Request, Response};

/// A master in Operational state and a clone in Importing Shares with `shares`
/// shares (threshold 2) exported to it, not yet imported.
fn master_and_waiting_clone(shares: u8) -> (Hsm<MemNvm>, Hsm<MemNvm>, Vec<Vec<u8>>) {
    let mut master = new_master();
    let mut clone = Hsm::initialized();
    let transport = clone.generate_transport_key();
    let files = master.export_shares(transport, shares, 2, false);
    (master, clone, files)
}

fn logged_on(hsm: &mut Hsm<MemNvm>, user: &str) {
    assert!(matches!(
        hsm.logon(user).unwrap(),
        Response::CurrentUser(..)
    ));
}

fn failures(hsm: &Hsm<MemNvm>, user: &str) -> u32 {
    let db: AccountDb = read_slot(&hsm.nvm(), Slot::Accounts).unwrap();
    db.get(&uid(user)).unwrap().failures
}

fn assert_refused(
    err: &Error,
    command: Command,
    state: ModuleState,
    role: Option<Role>,
    reason: Refusal,
) {
    assert_eq!(
        err,
        &Error::Refused {
            command,
            state,
            role,
            reason
        }
    );
}

#[test]
fn combining_below_the_threshold_is_refused_until_one_more_share_arrives() {
    let (mut master, mut clone, shares) = master_and_waiting_clone(3);
    let source = master.fingerprint();
    assert!(matches!(
        clone.import_share("kc1", &shares[0]).unwrap(),
        Response::ShareImported {
            received: 1,
            threshold: 2
        }
    ));
    logged_on(&mut clone, "so");
    let err = refused(&mut clone, |h| h.send(Request::CombineShares { source }));
    assert_eq!(
        err,
        Error::NotEnoughShares {
            have: 1,
            threshold: 2
        }
    );
    clone.logoff();
    let s = clone.status();
    assert_eq!(
        (s.current, s.import_progress, s.active_mks),
        (ModuleState::ImportingShares, Some((1, 2)), None)
    );

    assert!(matches!(
        clone.import_share("kc3", &shares[2]).unwrap(),
        Response::ShareImported {
            received: 2,
            threshold: 2
        }
    ));
    assert!(matches!(clone.combine(source).unwrap(), Response::Mks(_)));
    let s = clone.status();
    assert_eq!(
        (s.current, s.import_progress),
        (ModuleState::Operational, None)
    );
    assert!(s.active_mks.is_some());
}

#[test]
fn a_share_sealed_to_another_module_is_refused() {
    let mut master = new_master();
    let mut b = Hsm::initialized();
    b.generate_transport_key();
    let mut c = Hsm::initialized();
    let to_c = c.generate_transport_key();
    let shares = master.export_shares(to_c, 2, 2, false);

    logged_on(&mut b, "kc1");
    let err = refused(&mut b, |h| h.send(Request::ImportShare(shares[0].clone())));
    assert!(matches!(err, Error::ShareRefused { .. }), "{err:?}");
    // Rewriting the header's destination to B does not help: the seal is C's.
    let mut forged = SharePackage::decode(&shares[0]).unwrap();
    forged.header.destination = b.status().transport_key.unwrap();
    let forged = codec::encode(&forged).unwrap();
    let err = refused(&mut b, |h| h.send(Request::ImportShare(forged)));
    assert!(matches!(err, Error::ShareRefused { .. }), "{err:?}");
    b.logoff();

    // The shares themselves are good: C takes them.
    c.import_share("kc1", &shares[0]).unwrap();
    c.import_share("kc2", &shares[1]).unwrap();
    c.combine(master.fingerprint()).unwrap();
    assert_eq!(
        c.status().active_mks.unwrap().id,
        master.status().active_mks.unwrap().id
    );
}

#[test]
fn a_share_from_another_ceremony_is_refused() {
    let mut master = new_master();
    let mut clone = Hsm::initialized();
    let transport = clone.generate_transport_key();
    let first = master.export_shares(transport, 2, 2, false);
    let second = master.export_shares(transport, 2, 2, false);
    assert_ne!(
        SharePackage::decode(&first[1]).unwrap().header.ceremony,
        SharePackage::decode(&second[1]).unwrap().header.ceremony
    );

    clone.import_share("kc1", &first[0]).unwrap();
    logged_on(&mut clone, "kc2");
    let err = refused(&mut clone, |h| {
        h.send(Request::ImportShare(second[1].clone()))
    });
    assert!(matches!(err, Error::ShareRefused { .. }), "{err:?}");
    // Nor can the same share (or the same custodian) count twice.
    let err = refused(&mut clone, |h| {
        h.send(Request::ImportShare(first[0].clone()))
    });
    assert!(matches!(err, Error::ShareRefused { .. }), "{err:?}");
    clone.logoff();
    logged_on(&mut clone, "kc1");
    let err = refused(&mut clone, |h| {
        h.send(Request::ImportShare(first[1].clone()))
    });
    assert!(matches!(err, Error::ShareRefused { .. }), "{err:?}");
    clone.logoff();

    clone.import_share("kc2", &first[1]).unwrap();
    clone.combine(master.fingerprint()).unwrap();
    assert_eq!(clone.status().current, ModuleState::Operational);
}

#[test]
fn a_tampered_share_is_refused() {
    let (mut master, mut clone, shares) = master_and_waiting_clone(2);
    let package = SharePackage::decode(&shares[0]).unwrap();
    let n = package.sealed.len();
    let mut tampered = Vec::new();
    for i in [0, 31, 32, n / 2, n - 17, n - 1] {
        let mut p = package.clone();
        p.sealed[i] ^= 0x01;
        tampered.push(p);
    }
    // The header is authenticated too: making the copy exportable, or renumbering it, breaks the seal.
    let mut p = package.clone();
    p.header.exportable = true;
    tampered.push(p);
    let mut p = package.clone();
    p.header.share_id ^= 0x80;
    tampered.push(p);

    logged_on(&mut clone, "kc1");
    for p in tampered {
        let bytes = codec::encode(&p).unwrap();
        let err = refused(&mut clone, |h| h.send(Request::ImportShare(bytes)));
        assert!(matches!(err, Error::ShareRefused { .. }), "{err:?}");
    }
    // Bytes that are not a share file at all.
    let mut truncated = shares[0].clone();
    truncated.pop();
    let err = refused(&mut clone, |h| h.send(Request::ImportShare(truncated)));
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    clone.logoff();

    clone.import_share("kc1", &shares[0]).unwrap();
    clone.import_share("kc2", &shares[1]).unwrap();
    clone.combine(master.fingerprint()).unwrap();
}

#[test]
fn a_retained_mks_cannot_be_exported() {
    let (_, mut clone) = master_and_clone();
    assert!(!clone.status().active_mks.unwrap().exportable);
    logged_on(&mut clone, "so");
    let err = refused(&mut clone, |h| {
        h.send(Request::CreateMksShares {
            shares: 2,
            threshold: 2,
            exportable: true,
        })
    });
    assert!(matches!(err, Error::Mks { .. }), "{err:?}");
    assert_eq!(clone.status().current, ModuleState::Operational);
}

#[test]
fn a_key_custodian_cannot_run_administrator_commands() {
    let mut hsm = new_master();
    let new = || {
        Request::CreateAccount(NewAccount {
            user: uid("kc4"),
            role: Role::KeyCustodian,
            password: password("kc4"),
        })
    };
    hsm.as_user("so", Request::BeginAdmin).unwrap();
    logged_on(&mut hsm, "kc1");
    let err = refused(&mut hsm, |h| h.send(new()));
    assert_refused(
        &err,
        Command::CreateAccount,
        ModuleState::Administrative,
        Some(Role::KeyCustodian),
        Refusal::WrongRole,
    );
    hsm.logoff();
    hsm.as_user("so", Request::EndAdmin).unwrap();

    logged_on(&mut hsm, "kc1");
    let err = refused(&mut hsm, |h| h.send(new()));
    assert_refused(
        &err,
        Command::CreateAccount,
        ModuleState::Operational,
        Some(Role::KeyCustodian),
        Refusal::WrongState,
    );
    let err = refused(&mut hsm, |h| h.send(Request::SetClock(0)));
    assert_refused(
        &err,
        Command::SetClock,
        ModuleState::Operational,
        Some(Role::KeyCustodian),
        Refusal::WrongState,
    );
    hsm.logoff();
}

#[test]
fn a_security_officer_cannot_create_accounts() {
    let mut hsm = new_master();
    let new = || {
        Request::CreateAccount(NewAccount {
            user: uid("auditor2"),
            role: Role::Auditor,
            password: password("auditor2"),
        })
    };
    logged_on(&mut hsm, "so");
    hsm.send(Request::BeginAdmin).unwrap();
    let err = refused(&mut hsm, |h| h.send(new()));
    assert_refused(
        &err,
        Command::CreateAccount,
        ModuleState::Administrative,
        Some(Role::SecurityOfficer),
        Refusal::WrongRole,
    );
    hsm.logoff();
    // The same request from the administrator is accepted: the role was the reason.
    let before = hsm.status().accounts;
    hsm.as_user("admin", new()).unwrap();
    assert_eq!(hsm.status().accounts, before + 1);
}

#[test]
fn logon_needs_a_session() {
    for state in [
        ModuleState::Initializing,
        ModuleState::Operational,
        ModuleState::Administrative,
    ] {
        assert_eq!(
            authorize(Command::Logon, state, false, None),
            Err(Refusal::NoSession)
        );
        assert_eq!(
            authorize(Command::Logon, state, true, None).map(|a| a.command()),
            Ok(Command::Logon)
        );
    }

    let mut hsm = new_master();
    logged_on(&mut hsm, "kc1");
    hsm.logoff();
    let mut stale = hsm.session.take().unwrap();
    let mut hsm = hsm.reboot();
    assert!(!hsm.status().session_open);
    let err = refused(&mut hsm, |h| h.host.send(&mut stale, &logon_request("kc1")));
    assert!(matches!(err, Error::NoSession), "{err:?}");
    assert_eq!(
        hsm.last_body().command,
        None,
        "the module could not read the request"
    );
    // Other session commands fail the same way.
    let err = refused(&mut hsm, |h| {
        h.host.send(&mut stale, &Request::QueryCurrentUser)
    });
    assert!(matches!(err, Error::NoSession), "{err:?}");
}

#[test]
fn logon_locks_after_the_failure_limit_and_the_count_survives_a_reboot() {
    let mut hsm = new_master();
    let wrong = || Request::Logon {
        user: uid("kc1"),
        password: Password::new(b"not the password at all".to_vec()),
    };
    for i in 1..=5 {
        let before = hsm.entries().len();
        assert_eq!(hsm.send(wrong()).unwrap_err(), Error::InvalidCredentials);
        assert!(hsm.entries().len() > before);
        assert_eq!(
            hsm.last_body().reason,
            Error::InvalidCredentials.reason_code()
        );
        assert_eq!(failures(&hsm, "kc1"), i);
    }
    let err = refused(&mut hsm, |h| h.send(logon_request("kc1")));
    assert_eq!(err, Error::AccountLocked { user: "kc1".into() });

    let mut hsm = hsm.reboot();
    assert_eq!(failures(&hsm, "kc1"), 5);
    hsm.ensure_session();
    let err = refused(&mut hsm, |h| h.send(logon_request("kc1")));
    assert_eq!(err, Error::AccountLocked { user: "kc1".into() });
    // Other accounts are not affected; the administrator can unlock.
    hsm.as_user("so", Request::BeginAdmin).unwrap();
    let unlock = AccountChanges {
        unlock: true,
        ..AccountChanges::default()
    };
    hsm.as_user("admin", Request::ModifyAccount(uid("kc1"), unlock))
        .unwrap();
    hsm.as_user("so", Request::EndAdmin).unwrap();
    assert!(matches!(
        hsm.logon("kc1").unwrap(),
        Response::CurrentUser(_, Role::KeyCustodian)
    ));
    assert_eq!(failures(&hsm, "kc1"), 0);
}

#[test]
fn replayed_reordered_and_forged_session_messages_are_rejected() {
    let mut hsm = new_master();
    logged_on(&mut hsm, "so");

    // Replay.
    let msg = hsm
        .session
        .as_mut()
        .unwrap()
        .request(&Request::QueryCurrentUser, true)
        .unwrap();
    assert!(matches!(
        hsm.host.call(Outer::Session(msg.clone())).unwrap(),
        OuterReply::Session(_)
    ));
    let err = refused(&mut hsm, |h| h.host.call(Outer::Session(msg.clone())));
    assert_eq!(
        err,
        Error::SessionOutOfOrder {
            expected: msg.counter + 1,
            got: msg.counter
        }
    );

    // Reorder: the second message before the first.
    let s = hsm.session.as_mut().unwrap();
    let first = s.request(&Request::ViewAccounts, true).unwrap();
    let second = s.request(&Request::BeginAdmin, true).unwrap();
    let err = refused(&mut hsm, |h| h.host.call(Outer::Session(second.clone())));
    assert_eq!(
        err,
        Error::SessionOutOfOrder {
            expected: first.counter,
            got: second.counter
        }
    );
    hsm.host.call(Outer::Session(first)).unwrap();

    // Forgeries of the (state-changing) second message.
    let mut forgeries = Vec::new();
    for i in [0, 31] {
        let mut m = second.clone();
        m.tag[i] ^= 0x01;
        forgeries.push(m);
    }
    for i in [0, second.body.len() / 2, second.body.len() - 1] {
        let mut m = second.clone();
        m.body[i] ^= 0x01;
        forgeries.push(m);
    }
    let mut m = second.clone();
    m.session[0] ^= 0x01;
    forgeries.push(m);
    let mut m = second.clone();
    m.sealed = false;
    forgeries.push(m);
    for m in forgeries {
        let err = refused(&mut hsm, |h| h.host.call(Outer::Session(m)));
        assert_eq!(err, Error::SessionMessageRejected);
    }
    // A valid message with a counter it was not made for is a forgery too.
    let mut m = second.clone();
    m.counter += 1;
    let err = refused(&mut hsm, |h| h.host.call(Outer::Session(m)));
    assert_eq!(err, Error::SessionMessageRejected);

    // The genuine message is still accepted, once.
    hsm.host.call(Outer::Session(second)).unwrap();
    assert_eq!(hsm.status().current, ModuleState::Administrative);
}

#[test]
fn commands_outside_their_state_are_refused() {
    // Uninitialized: no audit key yet, so the refusal cannot be audited.
    let mut fresh = Hsm::fresh();
    let opening = HostOpening::new().unwrap();
    let err = fresh
        .host
        .call(Outer::OpenSession {
            host_public: opening.public(),
        })
        .unwrap_err();
    assert_refused(
        &err,
        Command::OpenSession,
        ModuleState::Uninitialized,
        None,
        Refusal::WrongState,
    );
    assert!(fresh.entries().is_empty());
    assert_eq!(fresh.status().current, ModuleState::Uninitialized);

    // Initializing.
    let mut hsm = Hsm::initialized();
    logged_on(&mut hsm, "so");
    let err = refused(&mut hsm, |h| h.send(Request::BeginAdmin));
    assert_refused(
        &err,
        Command::BeginAdmin,
        ModuleState::Initializing,
        Some(Role::SecurityOfficer),
        Refusal::WrongState,
    );
    let err = refused(&mut hsm, |h| {
        h.send(Request::CreateMksShares {
            shares: 2,
            threshold: 2,
            exportable: true,
        })
    });
    assert_refused(
        &err,
        Command::CreateMksShares,
        ModuleState::Initializing,
        Some(Role::SecurityOfficer),
        Refusal::WrongState,
    );
    let err = refused(&mut hsm, |h| {
        h.host
            .call(Outer::StartInitialization(ModuleConfig::for_tests()))
    });
    assert_refused(
        &err,
        Command::StartInitialization,
        ModuleState::Initializing,
        Some(Role::SecurityOfficer),
        Refusal::WrongState,
    );

    // Administrative.
    hsm.send(Request::GenerateMks).unwrap();
    hsm.send(Request::BeginAdmin).unwrap();
    let err = refused(&mut hsm, |h| h.send(Request::GenerateMks));
    assert_refused(
        &err,
        Command::GenerateMks,
        ModuleState::Administrative,
        Some(Role::SecurityOfficer),
        Refusal::WrongState,
    );
    let err = refused(&mut hsm, |h| h.send(Request::BeginAdmin));
    assert_refused(
        &err,
        Command::BeginAdmin,
        ModuleState::Administrative,
        Some(Role::SecurityOfficer),
        Refusal::WrongState,
    );
    hsm.send(Request::EndAdmin).unwrap();
    hsm.logoff();

    // Operational.
    let err = refused(&mut hsm, |h| {
        h.host
            .call(Outer::StartInitialization(ModuleConfig::for_tests()))
    });
    assert_refused(
        &err,
        Command::StartInitialization,
        ModuleState::Operational,
        None,
        Refusal::WrongState,
    );
    let err = refused(&mut hsm, |h| {
        h.send(Request::InitializeAccessControl(common::team_accounts()))
    });
    assert_refused(
        &err,
        Command::InitializeAccessControl,
        ModuleState::Operational,
        None,
        Refusal::WrongState,
    );
    logged_on(&mut hsm, "kc1");
    let err = refused(&mut hsm, |h| h.send(Request::ImportShare(vec![0; 8])));
    assert_refused(
        &err,
        Command::ImportShare,
        ModuleState::Operational,
        Some(Role::KeyCustodian),
        Refusal::WrongState,
    );
    let err = refused(&mut hsm, |h| {
        h.send(Request::ExportShare {
            destination: [9; 32],
        })
    });
    assert_refused(
        &err,
        Command::ExportShare,
        ModuleState::Operational,
        Some(Role::KeyCustodian),
        Refusal::WrongState,
    );
    hsm.logoff();
}

#[test]
fn password_carrying_commands_must_be_sealed() {
    let mut hsm = new_master();
    let err = refused(&mut hsm, |h| h.send_with(logon_request("kc1"), false));
    assert_eq!(
        err,
        Error::MustBeSealed {
            command: Command::Logon
        }
    );
    assert_eq!(failures(&hsm, "kc1"), 0);

    logged_on(&mut hsm, "kc1");
    let change = || Request::ChangePassword {
        old: password("kc1"),
        new: password("kc1 new"),
    };
    let err = refused(&mut hsm, |h| h.send_with(change(), false));
    assert_eq!(
        err,
        Error::MustBeSealed {
            command: Command::ChangePassword
        }
    );
    // Commands without a password may travel MAC-only.
    assert!(matches!(
        hsm.send_with(Request::QueryCurrentUser, false).unwrap(),
        Response::CurrentUser(..)
    ));
    hsm.send(change()).unwrap();
    hsm.logoff();

    hsm.as_user("so", Request::BeginAdmin).unwrap();
    logged_on(&mut hsm, "admin");
    let new = NewAccount {
        user: uid("kc4"),
        role: Role::KeyCustodian,
        password: password("kc4"),
    };
    let err = refused(&mut hsm, |h| {
        h.send_with(Request::CreateAccount(new.clone()), false)
    });
    assert_eq!(
        err,
        Error::MustBeSealed {
            command: Command::CreateAccount
        }
    );
    let reset = AccountChanges {
        password: Some(password("kc2 new")),
        ..AccountChanges::default()
    };
    let err = refused(&mut hsm, |h| {
        h.send_with(Request::ModifyAccount(uid("kc2"), reset), false)
    });
    assert_eq!(
        err,
        Error::MustBeSealed {
            command: Command::ModifyAccount
        }
    );
    hsm.send(Request::CreateAccount(new)).unwrap();
}

#[test]
fn a_session_cannot_close_while_someone_is_logged_on() {
    let mut hsm = new_master();
    logged_on(&mut hsm, "kc2");
    let err = refused(&mut hsm, |h| h.send(Request::CloseSession));
    assert!(matches!(err, Error::Busy { .. }), "{err:?}");
    assert!(hsm.status().session_open);
    hsm.logoff();
    hsm.send(Request::CloseSession).unwrap();
    let s = hsm.status();
    assert!(!s.session_open && s.logged_on.is_none());
}

#[test]
fn an_idle_logon_times_out() {
    let mut hsm = new_master();
    hsm.as_user("so", Request::BeginAdmin).unwrap();
    let short = AccountChanges {
        logon_timeout_secs: Some(60),
        ..AccountChanges::default()
    };
    hsm.as_user("admin", Request::ModifyAccount(uid("kc1"), short))
        .unwrap();
    hsm.as_user("so", Request::EndAdmin).unwrap();
    let db: AccountDb = read_slot(&hsm.nvm(), Slot::Accounts).unwrap();
    let timeout = db.get(&uid("kc1")).unwrap().logon_timeout_secs;
    assert_eq!(timeout, 60);

    logged_on(&mut hsm, "kc1");
    hsm.clock.advance(timeout);
    assert!(
        matches!(
            hsm.send(Request::QueryCurrentUser).unwrap(),
            Response::CurrentUser(..)
        ),
        "at the limit"
    );
    hsm.clock.advance(timeout + 1);
    let before = hsm.snapshot();
    let n = hsm.entries().len();
    let err = hsm.send(Request::QueryCurrentUser).unwrap_err();
    assert_eq!(err, Error::LogonTimedOut);
    assert!(hsm.entries().len() > n);
    assert_eq!(hsm.last_body().reason, err.reason_code());
    let after = hsm.snapshot();
    assert_eq!(after.logged_on, None, "the idle user is logged off");
    assert_eq!(after.nvm, before.nvm);
    assert_eq!(
        (after.current, after.persistent),
        (before.current, before.persistent)
    );

    let err = refused(&mut hsm, |h| h.send(Request::QueryCurrentUser));
    assert_refused(
        &err,
        Command::QueryCurrentUser,
        ModuleState::Operational,
        None,
        Refusal::NotLoggedOn,
    );
    logged_on(&mut hsm, "kc1");
}

#[test]
fn an_mks_the_module_already_holds_is_not_imported_twice() {
    let (mut master, mut clone) = master_and_clone();
    let transport = match clone.as_user("so", Request::ExportTransportKey).unwrap() {
        Response::TransportKey(k) => k,
        r => panic!("{r:?}"),
    };
    // The master re-shares the same active MKS; the clone imports it again.
    let files = master.export_shares(transport, 2, 2, false);
    clone.as_user("so", Request::StartImportingMks).unwrap();
    for (kc, f) in ["kc1", "kc2"].iter().zip(&files) {
        clone.import_share(kc, f).unwrap();
    }
    logged_on(&mut clone, "so");
    let source = master.fingerprint();
    let err = refused(&mut clone, |h| h.send(Request::CombineShares { source }));
    clone.logoff();
    assert_eq!(
        err,
        Error::Mks {
            what: "this module already holds that master key set"
        }
    );
    assert!(clone.status().dormant_mks.is_none());
}

#[test]
fn shares_from_a_module_the_security_officer_did_not_name_are_refused() {
    // An impostor module makes a complete, consistent share set of its own MKS,
    // sealed to the clone's public transport key.
    let mut master = new_master();
    let mut impostor = new_master();
    let mut clone = Hsm::initialized();
    let transport = clone.generate_transport_key();
    let forged = impostor.export_shares(transport, 2, 2, false);
    clone.import_share("kc1", &forged[0]).unwrap();
    clone.import_share("kc2", &forged[1]).unwrap();
    // The security officer names the real master: the combination is refused.
    let source = master.fingerprint();
    logged_on(&mut clone, "so");
    let err = refused(&mut clone, |h| h.send(Request::CombineShares { source }));
    clone.logoff();
    assert!(matches!(err, Error::ShareRefused { .. }), "{err:?}");
    assert!(clone.status().active_mks.is_none());
}

#[test]
fn a_share_with_a_broken_or_foreign_signature_is_refused() {
    let (mut master, mut clone, shares) = master_and_waiting_clone(2);
    let mut other = new_master();
    let mut flipped = SharePackage::decode(&shares[0]).unwrap();
    flipped.signature.1[5] ^= 0x01;
    // Claiming another module's key as the source does not verify either.
    let mut claimed = SharePackage::decode(&shares[0]).unwrap();
    claimed.header.source_key = other.status().audit_key.unwrap();
    for bad in [flipped, claimed] {
        logged_on(&mut clone, "kc1");
        let bytes = codec::encode(&bad).unwrap();
        let err = refused(&mut clone, |h| h.send(Request::ImportShare(bytes)));
        clone.logoff();
        assert!(matches!(err, Error::ShareRefused { .. }), "{err:?}");
    }
    clone.import_share("kc1", &shares[0]).unwrap();
    clone.import_share("kc2", &shares[1]).unwrap();
    clone.combine(master.fingerprint()).unwrap();
}

#[test]
fn a_locked_or_unknown_account_tells_a_guesser_nothing_and_the_security_officer_can_unlock() {
    let mut hsm = new_master();
    let wrong = |user: &str| Request::Logon {
        user: uid(user),
        password: Password::new(b"not the password at all".to_vec()),
    };
    for _ in 0..5 {
        assert_eq!(
            hsm.send(wrong("admin")).unwrap_err(),
            Error::InvalidCredentials
        );
    }
    // Locked: a wrong password still looks like any wrong password, and counts no further.
    assert_eq!(
        hsm.send(wrong("admin")).unwrap_err(),
        Error::InvalidCredentials
    );
    assert_eq!(failures(&hsm, "admin"), 5);
    assert_eq!(
        hsm.send(wrong("nobody")).unwrap_err(),
        Error::InvalidCredentials
    );
    assert_eq!(
        hsm.send(logon_request("admin")).unwrap_err(),
        Error::AccountLocked {
            user: "admin".into()
        }
    );
    // The only administrator is locked out: the security officer unlocks the account.
    hsm.as_user("so", Request::UnlockAccount(uid("admin")))
        .unwrap();
    assert_eq!(failures(&hsm, "admin"), 0);
    // ... but only in Operational state, and nobody else may.
    logged_on(&mut hsm, "kc1");
    let err = refused(&mut hsm, |h| h.send(Request::UnlockAccount(uid("admin"))));
    hsm.logoff();
    assert_refused(
        &err,
        Command::UnlockAccount,
        ModuleState::Operational,
        Some(Role::KeyCustodian),
        Refusal::WrongRole,
    );
    hsm.as_user("so", Request::BeginAdmin).unwrap();
    assert!(matches!(
        hsm.logon("admin").unwrap(),
        Response::CurrentUser(_, Role::Administrator)
    ));
}

#[test]
fn an_expired_password_allows_only_changing_it() {
    let hsm = new_master();
    hsm.clock.advance(91 * 24 * 3600);
    let mut hsm = hsm.reboot();
    logged_on(&mut hsm, "so");
    let err = refused(&mut hsm, |h| {
        h.send(Request::GenerateTestToken { owner: "x".into() })
    });
    assert!(matches!(err, Error::Expired { .. }), "{err:?}");
    assert!(matches!(
        hsm.send(Request::QueryCurrentUser).unwrap(),
        Response::CurrentUser(..)
    ));
    let new = Password::new(b"so: a brand new passphrase".to_vec());
    hsm.send(Request::ChangePassword {
        old: password("so"),
        new: new.clone(),
    })
    .unwrap();
    assert!(matches!(
        hsm.send(Request::GenerateTestToken { owner: "x".into() })
            .unwrap(),
        Response::Token { .. }
    ));
    hsm.logoff();
    // The new password works, and has a fresh expiry.
    hsm.send(Request::Logon {
        user: uid("so"),
        password: new,
    })
    .unwrap();
    hsm.send(Request::GenerateTestToken { owner: "y".into() })
        .unwrap();
}
