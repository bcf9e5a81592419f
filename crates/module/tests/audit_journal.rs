//! The audit journal: the two crash windows between a PSD transaction and the
//! host's copy of its audit entry.
//!
//! (a) Power lost after a PSD command wrote its checkpoint, before its entry and
//! head: the next boot records the missing `Psd` entry for the newest checkpoint
//! before its boot entry. (b) The host died after the module wrote its head but
//! before it appended the entry: the first request after power-on,
//! `Resync { host_next }`, makes the module output the journalled entries the
//! host lacks, then its boot entry. Also the upgrade of a version-1 chain head.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::postal::*;
use common::*;
use postvault_indicium::Money;
use postvault_module::audit::{
    AuditData, AuditEntry, REASON_BOOT, REASON_OK, VerifyError, verify_log,
};
use postvault_module::checkpoint::{CheckpointBody, CheckpointStore, Transaction};
use postvault_module::codec;
use postvault_module::command::Command;
use postvault_module::module::{AUDIT_JOURNAL, AuditHead, stored_audit_head};
use postvault_module::nvm::{Nvm, Slot};
use postvault_module::wire::{ModuleConfig, Outer, OuterReply};
use postvault_module::{Error, FailPoint};

const D1: u32 = 4_711;
/// The postage of every indicium printed here.
const POSTAGE: u64 = 250;

fn tenths(n: u64) -> Money {
    Money::from_tenths(n)
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap()
}

/// A vault with one Leased meter holding a DR of 100 000.
fn vault_with_meter() -> (Vault, [u8; 6]) {
    let mut v = Vault::new();
    let d = device(D1);
    v.leased_meter(d);
    v.download(d, tenths(100_000)).unwrap();
    (v, d)
}

/// The newest checkpoint in the module's NVM.
fn newest_checkpoint(v: &Vault) -> CheckpointBody {
    read_slot::<CheckpointStore>(&v.hsm.nvm(), Slot::Checkpoints)
        .unwrap()
        .newest()
        .unwrap()
        .peek()
        .unwrap()
}

/// The (version 2) chain head in the module's NVM.
fn stored_head(v: &Vault) -> AuditHead {
    read_slot(&v.hsm.nvm(), Slot::AuditHead).unwrap()
}

/// Prints `n` indicia; returns the audit entries they output (one each).
fn print_n(v: &mut Vault, d: [u8; 6], n: usize) -> Vec<AuditEntry> {
    let before = v.hsm.entries().len();
    for _ in 0..n {
        v.print(d, tenths(POSTAGE)).unwrap();
    }
    let out = v.hsm.entries()[before..].to_vec();
    assert_eq!(out.len(), n, "one audit entry per indicium");
    for e in &out {
        let b = e.decode_body().unwrap();
        assert_eq!(b.command, Some(Command::CreateIndicium));
        assert!(
            matches!(&b.data, AuditData::Psd(c) if c.transaction == Transaction::Indicium),
            "{:?}",
            b.data
        );
    }
    out
}

/// The host lost the newest `n` entries of its log (it died before appending
/// them); returns them.
fn lose_last(v: &mut Vault, n: usize) -> Vec<AuditEntry> {
    let sink = &mut v.hsm.host.sink;
    let kept = sink.len().checked_sub(n).unwrap();
    sink.split_off(kept)
}

/// Power cycle (no clean power-off) with `first` as the first request, which
/// must answer with a status; returns the audit entries it output.
fn power_cycle(mut v: Vault, first: Outer) -> (Vault, Vec<AuditEntry>) {
    v.hsm = v.hsm.reboot();
    let before = v.hsm.entries().len();
    let reply = v.hsm.host.call(first).unwrap();
    assert!(matches!(reply, OuterReply::Status(_)), "{reply:?}");
    let out = v.hsm.entries()[before..].to_vec();
    (v, out)
}

/// `entry` is the signed boot-detection entry with sequence number `seq`.
fn assert_boot(entry: &AuditEntry, seq: u64) {
    let b = entry.decode_body().unwrap();
    assert_eq!(
        (b.seq, b.reason, b.command, b.signed),
        (seq, REASON_BOOT, Some(Command::GetStatus), true)
    );
    assert!(entry.signature.is_some());
    assert!(matches!(b.data, AuditData::Boot(_)), "{:?}", b.data);
}

/// The host's whole log verifies and ends at the module's head.
fn assert_log_whole(v: &mut Vault) {
    let s = v.hsm.status();
    let summary = verify_log(&v.hsm.log(), Some(&s.audit_head)).unwrap();
    assert_eq!(summary.entries, v.hsm.entries().len());
    assert_eq!(count(summary.entries), s.audit_next_seq);
    assert_eq!(summary.expected_head_at, Some(summary.entries - 1));
}

/// Arms the crash after the checkpoint write and prints: the transaction's
/// checkpoint is in NVM, its entry nowhere. Returns the crashed transaction.
fn crash_after_checkpoint(v: &mut Vault, d: [u8; 6]) -> CheckpointBody {
    let before = newest_checkpoint(v);
    let database = v.checkpoint.clone();
    let n = v.hsm.entries().len();
    v.hsm.host.module.crash_at(FailPoint::AfterCheckpoint);
    assert_eq!(
        v.print(d, tenths(POSTAGE)).err(),
        Some(Error::InjectedCrash(FailPoint::AfterCheckpoint))
    );
    assert_eq!(v.hsm.entries().len(), n, "the crash released no entry");
    assert_eq!(v.checkpoint, database, "the database got nothing");
    assert_eq!(
        stored_audit_head(&v.hsm.nvm()).unwrap().unwrap().0,
        count(n),
        "the chain head did not move"
    );
    let crashed = newest_checkpoint(v);
    assert_eq!(crashed.counter, before.counter + 1);
    assert_eq!(crashed.transaction, Transaction::Indicium);
    assert_eq!(crashed.amount, tenths(POSTAGE));
    assert_eq!(crashed.device_id, d);
    crashed
}

#[test]
fn a_checkpoint_whose_entry_was_lost_is_audited_before_the_boot_entry() {
    for resync in [false, true] {
        let (mut v, d) = vault_with_meter();
        let database = v.checkpoint.clone().unwrap();
        let crashed = crash_after_checkpoint(&mut v, d);
        let n = v.hsm.entries().len();
        let first = if resync {
            Outer::Resync {
                host_next: count(n),
            }
        } else {
            Outer::GetStatus
        };
        let (mut v, out) = power_cycle(v, first);

        assert_eq!(out.len(), 2, "resync {resync}: the repair, then the boot");
        let psd = out[0].decode_body().unwrap();
        assert_eq!(psd.seq, count(n));
        assert_eq!(psd.command, Some(Command::CreateIndicium));
        assert_eq!(psd.reason, REASON_OK);
        assert_eq!(psd.data, AuditData::Psd(Box::new(crashed.clone())));
        assert!(psd.signed && out[0].signature.is_some());
        assert_eq!(psd.prev_hash, v.hsm.entries()[n - 1].hash());
        assert_boot(&out[1], count(n) + 1);
        assert_log_whole(&mut v);
        assert_eq!(stored_head(&v).audited_checkpoint, crashed.counter);

        // The repair is made once: the next power-on finds the checkpoint audited.
        let (mut v, out) = power_cycle(v, Outer::GetStatus);
        assert_eq!(out.len(), 1, "resync {resync}: no second repair entry");
        assert_boot(&out[0], count(n) + 2);
        assert_log_whole(&mut v);

        // The database never got the crashed transaction's record: Auto-Recover
        // discards exactly the transaction the repair entry recorded.
        let m = v.hsm.entries().len();
        assert_eq!(v.auto_recover(database).unwrap(), 1);
        let recovered: Vec<_> = v.hsm.entries()[m..]
            .iter()
            .map(|e| e.decode_body().unwrap().data)
            .collect();
        assert_eq!(recovered[0], AuditData::Discarded(Box::new(crashed)));
        print_n(&mut v, d, 1);
        assert_log_whole(&mut v);
    }
}

#[test]
fn entries_the_host_lost_come_back_first_at_resync() {
    let (mut v, d) = vault_with_meter();
    let printed = print_n(&mut v, d, 1);
    let whole_log = v.hsm.log();
    let lost = lose_last(&mut v, 1);
    assert_eq!(lost, printed);
    let kept = v.hsm.entries().len();
    let head = stored_audit_head(&v.hsm.nvm()).unwrap().unwrap();
    assert_eq!(head, (count(kept) + 1, lost[0].hash()));

    let (mut v, out) = power_cycle(
        v,
        Outer::Resync {
            host_next: count(kept),
        },
    );
    assert_eq!(out.len(), 2, "the lost entry, then the boot");
    assert_eq!(out[0], lost[0]);
    assert_eq!(out[0].to_stored().unwrap(), lost[0].to_stored().unwrap());
    assert_boot(&out[1], count(kept) + 1);
    assert!(
        v.hsm.log().starts_with(&whole_log),
        "the host's log is the one it would have had"
    );
    assert_log_whole(&mut v);

    // Resync after the first request is only a status: nothing comes back again.
    let n = v.hsm.entries().len();
    let reply = v.hsm.host.call(Outer::Resync { host_next: 0 }).unwrap();
    assert!(matches!(reply, OuterReply::Status(_)), "{reply:?}");
    assert_eq!(v.hsm.entries().len(), n);
}

#[test]
fn a_host_log_that_is_whole_gets_only_the_boot_entry() {
    let (mut v, d) = vault_with_meter();
    print_n(&mut v, d, 3);
    let n = v.hsm.entries().len();
    let (mut v, out) = power_cycle(
        v,
        Outer::Resync {
            host_next: count(n),
        },
    );
    assert_eq!(out.len(), 1);
    assert_boot(&out[0], count(n));
    assert_log_whole(&mut v);
}

#[test]
fn a_whole_journal_of_lost_entries_comes_back() {
    let (mut v, d) = vault_with_meter();
    let printed = print_n(&mut v, d, AUDIT_JOURNAL);
    let lost = lose_last(&mut v, AUDIT_JOURNAL);
    assert_eq!(lost, printed);
    assert_eq!(
        stored_head(&v).journal,
        lost,
        "the journal is the newest entries"
    );
    let kept = v.hsm.entries().len();

    let (mut v, out) = power_cycle(
        v,
        Outer::Resync {
            host_next: count(kept),
        },
    );
    assert_eq!(out.len(), AUDIT_JOURNAL + 1);
    assert_eq!(out[..AUDIT_JOURNAL], lost[..]);
    assert_boot(&out[AUDIT_JOURNAL], count(kept + AUDIT_JOURNAL));
    assert_log_whole(&mut v);
}

#[test]
fn a_gap_longer_than_the_journal_is_left_for_the_verifier_to_report() {
    const LOST: usize = 10;
    let (mut v, d) = vault_with_meter();
    let printed = print_n(&mut v, d, LOST);
    let lost = lose_last(&mut v, LOST);
    assert_eq!(lost, printed);
    let kept = v.hsm.entries().len();

    let (mut v, out) = power_cycle(
        v,
        Outer::Resync {
            host_next: count(kept),
        },
    );
    // Only the journal's newest entries still exist in the module.
    assert_eq!(out.len(), AUDIT_JOURNAL + 1);
    assert_eq!(out[..AUDIT_JOURNAL], lost[LOST - AUDIT_JOURNAL..]);
    assert_boot(&out[AUDIT_JOURNAL], count(kept + LOST));

    let head = v.hsm.status().audit_head;
    assert_eq!(
        verify_log(&v.hsm.log(), Some(&head)),
        Err(VerifyError::Sequence {
            index: kept,
            expected: count(kept),
            found: count(kept + LOST - AUDIT_JOURNAL),
        })
    );
}

#[test]
fn both_windows_at_once_come_back_in_chain_order() {
    let (mut v, d) = vault_with_meter();
    let printed = print_n(&mut v, d, 1);
    let crashed = crash_after_checkpoint(&mut v, d);
    let lost = lose_last(&mut v, 1);
    assert_eq!(lost, printed);
    let kept = v.hsm.entries().len();

    let (mut v, out) = power_cycle(
        v,
        Outer::Resync {
            host_next: count(kept),
        },
    );
    assert_eq!(out.len(), 3, "the lost entry, the repair, the boot");
    assert_eq!(out[0], lost[0]);
    let psd = out[1].decode_body().unwrap();
    assert_eq!(psd.seq, count(kept) + 1);
    assert_eq!(psd.data, AuditData::Psd(Box::new(crashed)));
    assert_boot(&out[2], count(kept) + 2);
    assert_log_whole(&mut v);
}

/// Replaces the chain head in NVM by its version-1 form (next sequence number,
/// last hash, entries since the last signed one); returns the version-2 head
/// it replaced.
fn downgrade_head(v: &Vault) -> AuditHead {
    let head = stored_head(v);
    let v1 = postcard::to_allocvec(&(head.next_seq, head.last_hash, head.since_signed)).unwrap();
    assert!(
        codec::decode::<AuditHead>(&v1, "test").is_err(),
        "the version-1 record is not a version-2 one"
    );
    let mut nvm = v.hsm.nvm();
    nvm.write(Slot::AuditHead, &v1).unwrap();
    assert!(read_slot_is_v1(&nvm));
    assert_eq!(
        stored_audit_head(&nvm).unwrap(),
        Some((head.next_seq, head.last_hash))
    );
    head
}

fn read_slot_is_v1(nvm: &impl Nvm) -> bool {
    let bytes = nvm.read(Slot::AuditHead).unwrap().unwrap();
    codec::decode::<AuditHead>(&bytes, "test").is_err()
}

#[test]
fn a_version_1_head_is_upgraded_at_boot_without_a_repair_entry() {
    let (mut v, d) = vault_with_meter();
    print_n(&mut v, d, 2);
    let newest = newest_checkpoint(&v);
    assert_eq!(stored_head(&v).audited_checkpoint, newest.counter);
    let old = downgrade_head(&v);

    let (mut v, out) = power_cycle(v, Outer::GetStatus);
    assert_eq!(out.len(), 1, "no repair entry for an audited checkpoint");
    assert_boot(&out[0], old.next_seq);
    assert_eq!(out[0].decode_body().unwrap().prev_hash, old.last_hash);
    let upgraded = stored_head(&v);
    assert_eq!(upgraded.journal, out, "the journal starts empty");
    assert_eq!(upgraded.audited_checkpoint, newest.counter);
    assert_eq!(upgraded.next_seq, old.next_seq + 1);
    assert_log_whole(&mut v);

    let printed = print_n(&mut v, d, 1);
    assert_eq!(
        stored_head(&v).audited_checkpoint,
        newest.counter + 1,
        "the chain continues to account for checkpoints"
    );
    assert_eq!(stored_head(&v).journal, [out, printed].concat());
    assert_log_whole(&mut v);

    let (mut v, out) = power_cycle(v, Outer::GetStatus);
    assert_eq!(out.len(), 1);
    assert_log_whole(&mut v);
}

#[test]
fn a_version_1_head_is_upgraded_mid_run_keeping_the_signing_count() {
    let mut hsm = Hsm::initialized_with(ModuleConfig {
        audit_sign_interval: 3,
        ..ModuleConfig::for_tests()
    });
    hsm.generate_mks();
    let mut v = Vault::over(hsm);
    let d = device(D1);
    v.leased_meter(d);
    v.download(d, tenths(100_000)).unwrap();
    // Unsigned indicium entries until the next one must be signed.
    for _ in 0..3 {
        if stored_head(&v).since_signed == 2 {
            break;
        }
        print_n(&mut v, d, 1);
    }
    let old = downgrade_head(&v);
    assert_eq!(old.since_signed, 2);

    // No reboot: the next entry reads the version-1 head.
    let printed = print_n(&mut v, d, 1);
    let body = printed[0].decode_body().unwrap();
    assert_eq!((body.seq, body.prev_hash), (old.next_seq, old.last_hash));
    assert!(
        body.signed,
        "the third entry since the last signed one is signed"
    );
    let upgraded = stored_head(&v);
    assert_eq!(upgraded.journal, printed);
    assert_eq!(upgraded.since_signed, 0);
    assert_eq!(upgraded.audited_checkpoint, newest_checkpoint(&v).counter);
    assert_log_whole(&mut v);
}
