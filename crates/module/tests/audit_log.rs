//! The stored audit log: any single-byte change is caught and names its entry;
//! removed trailing entries are caught by the expected head; the signing cadence.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::{Hsm, stored_log, uid};
use postvault_module::Error;
use postvault_module::audit::{AuditEntry, REASON_BOOT, REASON_OK, VerifyError, verify_log};
use postvault_module::nvm::MemNvm;
use postvault_module::wire::{ModuleConfig, Password, Request};

const INTERVAL: u32 = 5;

/// A master whose log has a mix of signed and unsigned entries: module-level
/// commands, logons, queries, notes, failures, refusals and a reboot.
fn busy_master() -> Hsm<MemNvm> {
    let config = ModuleConfig {
        audit_sign_interval: INTERVAL,
        ..ModuleConfig::for_tests()
    };
    let mut hsm = Hsm::initialized_with(config);
    hsm.generate_mks();
    let (token, _) = hsm.test_token("audit");
    for i in 0..3 {
        hsm.logon("kc1").unwrap();
        hsm.send(Request::QueryCurrentUser).unwrap();
        hsm.send(Request::VerifyToken(token.clone())).unwrap();
        let note = format!("note {i}");
        hsm.send(Request::CreateAuditEntry {
            note,
            force_signature: false,
        })
        .unwrap();
        hsm.send(Request::GenerateMks).unwrap_err(); // refused: wrong role
        hsm.logoff();
    }
    let wrong = Request::Logon {
        user: uid("kc2"),
        password: Password::new(b"wrong password!!".to_vec()),
    };
    assert_eq!(hsm.send(wrong).unwrap_err(), Error::InvalidCredentials);
    let mut hsm = hsm.reboot();
    hsm.as_user("auditor", Request::ViewAccounts).unwrap();
    hsm.as_user(
        "auditor",
        Request::CreateAuditEntry {
            note: "forced".into(),
            force_signature: true,
        },
    )
    .unwrap();
    hsm.as_user("kc3", Request::QueryCurrentUser).unwrap();
    hsm
}

/// Byte ranges of each entry in the stored log.
fn spans(entries: &[AuditEntry]) -> Vec<core::ops::Range<usize>> {
    let mut start = 0;
    entries
        .iter()
        .map(|e| {
            let end = start + e.to_stored().unwrap().len();
            let r = start..end;
            start = end;
            r
        })
        .collect()
}

fn index_of(e: &VerifyError) -> usize {
    match e {
        VerifyError::Unreadable { index }
        | VerifyError::HashMismatch { index }
        | VerifyError::Sequence { index, .. }
        | VerifyError::BrokenChain { index }
        | VerifyError::BadSignature { index }
        | VerifyError::BadStart { index }
        | VerifyError::HeadMismatch { index, .. } => *index,
        other => panic!("no entry named: {other:?}"),
    }
}

#[test]
fn any_flipped_byte_fails_verification_naming_its_entry() {
    let mut hsm = busy_master();
    let head = hsm.status().audit_head;
    let entries = hsm.entries().to_vec();
    assert!(entries.len() >= 30, "{} entries", entries.len());
    let log = hsm.log();
    let summary = verify_log(&log, Some(&head)).unwrap();
    assert_eq!(summary.entries, entries.len());
    assert!(
        summary.signed > 1 && summary.signed < entries.len(),
        "both kinds of entry are covered"
    );

    let spans = spans(&entries);
    assert_eq!(spans.last().unwrap().end, log.len());
    let mut kinds = std::collections::HashSet::new();
    for (entry, span) in spans.iter().enumerate() {
        for pos in span.clone() {
            for mask in [0x01, 0xFF] {
                let mut bad = log.clone();
                bad[pos] ^= mask;
                let err = verify_log(&bad, None).expect_err("a flipped byte must be caught");
                assert_eq!(index_of(&err), entry, "byte {pos} ^ {mask:#x}: {err}");
                kinds.insert(core::mem::discriminant(&err));
            }
        }
    }
    assert!(
        kinds.len() >= 3,
        "framing, hash and signature errors were all exercised"
    );
}

#[test]
fn removed_trailing_entries_are_caught_by_the_expected_head() {
    let mut hsm = busy_master();
    let head = hsm.status().audit_head;
    let entries = hsm.entries().to_vec();
    for keep in [entries.len() - 1, entries.len() - 2, entries.len() / 2, 1] {
        let log = stored_log(&entries[..keep]);
        let summary = verify_log(&log, None).unwrap();
        assert_eq!(summary.entries, keep);
        match verify_log(&log, Some(&head)) {
            Err(VerifyError::HeadMismatch { index, .. }) => assert_eq!(index, keep - 1),
            other => panic!("{other:?}"),
        }
    }
    // Removing or swapping entries inside the log breaks the chain.
    let mut removed = entries.clone();
    removed.remove(entries.len() / 2);
    assert_eq!(
        index_of(&verify_log(&stored_log(&removed), None).unwrap_err()),
        entries.len() / 2
    );
    let mut swapped = entries.clone();
    swapped.swap(3, 4);
    assert_eq!(
        index_of(&verify_log(&stored_log(&swapped), None).unwrap_err()),
        3
    );

    // An unsigned last entry can be rewritten consistently; only the head exposes it.
    let last = entries.iter().rposition(|e| e.signature.is_none()).unwrap();
    let mut body = entries[last].decode_body().unwrap();
    body.reason = REASON_OK.wrapping_add(7);
    let forged = AuditEntry {
        body: postvault_module::codec::encode(&body).unwrap(),
        signature: None,
    };
    let log = stored_log(&[&entries[..last], &[forged]].concat());
    verify_log(&log, None).unwrap();
    assert!(matches!(
        verify_log(&log, Some(&entries[last].hash())),
        Err(VerifyError::HeadMismatch { index, .. }) if index == last
    ));
    // The untouched prefix verifies against the true head.
    verify_log(&stored_log(&entries[..=last]), Some(&entries[last].hash())).unwrap();
}

#[test]
fn entries_are_signed_at_least_every_interval_and_always_for_module_commands() {
    let hsm = busy_master();
    let entries = hsm.entries();
    let mut run = 0;
    let mut longest = 0;
    let mut by_cadence = 0;
    for e in entries {
        let body = e.decode_body().unwrap();
        let module_level =
            body.command.is_some_and(|c| c.is_module_level()) && body.reason == REASON_OK;
        if module_level || body.reason == REASON_BOOT {
            assert!(
                e.signature.is_some(),
                "entry {} ({:?}) must be signed",
                body.seq,
                body.command
            );
        }
        if let postvault_module::audit::AuditData::Note(n) = &body.data {
            assert_eq!(
                e.signature.is_some(),
                n == "forced" || run + 1 >= INTERVAL as usize,
                "note {n}"
            );
        }
        if e.signature.is_some() {
            if !module_level && body.reason != REASON_BOOT {
                by_cadence += 1;
            }
            run = 0;
        } else {
            run += 1;
            longest = longest.max(run);
        }
    }
    assert!(
        longest < INTERVAL as usize,
        "{longest} unsigned entries in a row"
    );
    assert_eq!(
        longest,
        INTERVAL as usize - 1,
        "the log is long enough to reach the interval"
    );
    assert!(
        by_cadence > 0,
        "some entries are signed only because of the interval"
    );

    // With interval 1 every entry is signed.
    let mut every = Hsm::initialized_with(ModuleConfig {
        audit_sign_interval: 1,
        ..ModuleConfig::for_tests()
    });
    every.generate_mks();
    every.as_user("kc1", Request::QueryCurrentUser).unwrap();
    assert!(every.entries().iter().all(|e| e.signature.is_some()));
    let head = every.status().audit_head;
    assert_eq!(
        verify_log(&every.log(), Some(&head)).unwrap().unsigned_tail,
        0
    );
    // The interval must be at least 1.
    let mut zero = Hsm::fresh();
    let err = zero
        .host
        .call(postvault_module::wire::Outer::StartInitialization(
            ModuleConfig {
                audit_sign_interval: 0,
                ..ModuleConfig::for_tests()
            },
        ))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }));
}

/// Rewrites entries from `from` on so the chain is consistent again: renumbered,
/// re-linked, signatures dropped (a forger cannot make new ones).
fn rechain(entries: &mut [AuditEntry], from: usize) {
    for i in from..entries.len() {
        let prev = if i == 0 {
            [0; 32]
        } else {
            entries[i - 1].hash()
        };
        let mut body = entries[i].decode_body().unwrap();
        body.seq = i as u64;
        body.prev_hash = prev;
        body.signed = false;
        entries[i].body = postvault_module::codec::encode(&body).unwrap();
        entries[i].signature = None;
    }
}

#[test]
fn signatures_cannot_be_stripped_and_history_cannot_be_rewritten_without_them() {
    let hsm = busy_master();
    let entries = hsm.entries().to_vec();
    verify_log(&stored_log(&entries), None).unwrap();

    // Dropping one signature: the body still says it is signed.
    let k = (1..entries.len())
        .find(|&i| entries[i].signature.is_some())
        .unwrap();
    let mut stripped = entries.clone();
    stripped[k].signature = None;
    assert_eq!(
        verify_log(&stored_log(&stripped), None).unwrap_err(),
        VerifyError::MissingSignature { index: k }
    );

    // Deleting a refusal from the middle and rewriting everything after it:
    // the first entry the policy wants signed gives the forgery away.
    let refusal = entries
        .iter()
        .position(|e| e.decode_body().unwrap().reason != REASON_OK && e.signature.is_none())
        .unwrap();
    let mut forged = entries.clone();
    forged.remove(refusal);
    rechain(&mut forged, refusal);
    match verify_log(&stored_log(&forged), None).unwrap_err() {
        VerifyError::MissingSignature { index } => assert!(index >= refusal),
        e => panic!("{e:?}"),
    }
}

#[test]
fn an_expected_head_recorded_earlier_is_found_anywhere_in_the_chain() {
    let hsm = busy_master();
    let log = hsm.log();
    let entries = hsm.entries();
    let earlier = entries[7].hash();
    let s = verify_log(&log, Some(&earlier)).unwrap();
    assert_eq!(s.expected_head_at, Some(7));
    assert_eq!(s.entries, entries.len());
    // A hash that is no entry's is refused.
    let mut bogus = earlier;
    bogus[0] ^= 1;
    assert!(matches!(
        verify_log(&log, Some(&bogus)).unwrap_err(),
        VerifyError::HeadMismatch { .. }
    ));
}

#[test]
fn the_log_start_pins_the_modules_audit_key_from_the_first_entry_alone() {
    let mut hsm = busy_master();
    let log = hsm.log();
    let start = postvault_module::audit::read_log_start(&log).unwrap();
    let (alg, key) = hsm.status().audit_key.unwrap();
    assert_eq!(
        (start.key.alg().id(), start.key.as_bytes()),
        (alg, key.as_slice())
    );
    assert_eq!(start.sign_interval, INTERVAL);
    // Only the first record is read: a damaged later entry does not matter here.
    let mut tail_damaged = log.clone();
    let last = tail_damaged.len() - 1;
    tail_damaged[last] ^= 1;
    assert_eq!(
        postvault_module::audit::read_log_start(&tail_damaged).unwrap(),
        start
    );
    // A log that does not begin with a signed Start Initialization is refused.
    let entries = hsm.entries();
    assert_eq!(
        postvault_module::audit::read_log_start(&stored_log(&entries[1..])).unwrap_err(),
        VerifyError::BadStart { index: 0 }
    );
    let mut unsigned = entries[0].clone();
    unsigned.signature = None;
    assert_eq!(
        postvault_module::audit::read_log_start(&stored_log(&[unsigned])).unwrap_err(),
        VerifyError::BadSignature { index: 0 }
    );
    assert_eq!(
        postvault_module::audit::read_log_start(&[]).unwrap_err(),
        VerifyError::Empty
    );
}
