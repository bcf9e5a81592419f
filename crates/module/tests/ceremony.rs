//! The clone ceremony and MKS rollover, end to end through operator sessions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::{Hsm, master_and_clone, new_master};
use postvault_module::Error;
use postvault_module::audit::verify_log;
use postvault_module::state::ModuleState;
use postvault_module::wire::{OpenedUnder, Request, Response};

fn checked(r: Result<Response, Error>) -> ([u8; 8], OpenedUnder) {
    match r.unwrap() {
        Response::TokenChecked { kcv, under } => (kcv, under),
        r => panic!("{r:?}"),
    }
}

#[test]
fn clone_ceremony_gives_both_modules_the_same_mks() {
    let (mut master, mut clone) = master_and_clone();
    let (m, c) = (master.status(), clone.status());
    assert_eq!(m.active_mks.unwrap().id, c.active_mks.unwrap().id);
    assert!(m.active_mks.unwrap().exportable && !c.active_mks.unwrap().exportable);
    assert_ne!(m.serial, c.serial);

    let (from_master, kcv_m) = master.test_token("ceremony check m");
    let (from_clone, kcv_c) = clone.test_token("ceremony check c");
    assert_ne!(kcv_m, kcv_c, "two fresh test keys");
    for hsm in [&mut master, &mut clone] {
        for (token, kcv) in [(&from_master, kcv_m), (&from_clone, kcv_c)] {
            assert_eq!(checked(hsm.verify_token(token)), (kcv, OpenedUnder::Active));
        }
    }
    // A key custodian and the auditor may check tokens too.
    assert_eq!(
        checked(clone.as_user("kc3", Request::VerifyToken(from_master.clone()))).0,
        kcv_m
    );
    assert_eq!(
        checked(clone.as_user("auditor", Request::VerifyToken(from_master))).0,
        kcv_m
    );

    // A module that did not take part cannot open the token.
    let mut other = new_master();
    assert!(matches!(
        other.verify_token(&from_clone),
        Err(Error::Token { .. })
    ));

    for hsm in [&mut master, &mut clone] {
        let head = hsm.status().audit_head;
        verify_log(&hsm.log(), Some(&head)).unwrap();
    }
}

#[test]
fn mks_rollover_translates_tokens_then_deletes_the_old_set() {
    let mut hsm = new_master();
    let old = hsm.status().active_mks.unwrap();
    let (token, kcv) = hsm.test_token("rollover");

    let new = match hsm.as_user("so", Request::GenerateMks).unwrap() {
        Response::Mks(i) => i,
        r => panic!("{r:?}"),
    };
    let s = hsm.status();
    assert_eq!(
        s.current,
        ModuleState::Operational,
        "a new MKS in Operational does not change state"
    );
    assert_eq!(
        (s.active_mks, s.dormant_mks),
        (Some(old), Some(new)),
        "the new MKS waits dormant"
    );
    // Only one dormant set at a time.
    assert!(matches!(
        hsm.as_user("so", Request::GenerateMks),
        Err(Error::Mks { .. })
    ));

    assert!(
        matches!(hsm.as_user("so", Request::ActivateMks).unwrap(), Response::Mks(i) if i == new)
    );
    let s = hsm.status();
    assert_eq!(
        (s.active_mks, s.dormant_mks),
        (Some(new), Some(old)),
        "the old MKS becomes dormant"
    );

    assert_eq!(
        checked(hsm.verify_token(&token)),
        (kcv, OpenedUnder::Dormant)
    );
    let translated = match hsm
        .as_user("so", Request::TranslateToken(token.clone()))
        .unwrap()
    {
        Response::Token { token: t, kcv: k } => {
            assert_eq!(k, kcv);
            t
        }
        r => panic!("{r:?}"),
    };
    assert_ne!(translated, token);
    assert_eq!(
        checked(hsm.verify_token(&translated)),
        (kcv, OpenedUnder::Active)
    );

    assert!(
        matches!(hsm.as_user("so", Request::DeleteDormantMks).unwrap(), Response::Mks(i) if i == old)
    );
    let s = hsm.status();
    assert_eq!((s.active_mks, s.dormant_mks), (Some(new), None));
    assert!(matches!(hsm.verify_token(&token), Err(Error::Token { .. })));
    assert!(matches!(
        hsm.as_user("so", Request::TranslateToken(token)),
        Err(Error::Token { .. })
    ));
    assert_eq!(
        checked(hsm.verify_token(&translated)),
        (kcv, OpenedUnder::Active)
    );
    // Nothing left to delete or activate.
    assert!(matches!(
        hsm.as_user("so", Request::DeleteDormantMks),
        Err(Error::Mks { .. })
    ));
    assert!(matches!(
        hsm.as_user("so", Request::ActivateMks),
        Err(Error::Mks { .. })
    ));

    // The rollover survives a reboot.
    let mut hsm: Hsm<_> = hsm.reboot();
    assert_eq!(
        checked(hsm.verify_token(&translated)),
        (kcv, OpenedUnder::Active)
    );
    let head = hsm.status().audit_head;
    verify_log(&hsm.log(), Some(&head)).unwrap();
}
