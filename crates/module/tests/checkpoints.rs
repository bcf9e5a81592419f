//! Checkpoints: the module keeps records of its three most recent PSD
//! transactions and every PSD command must carry the newest. An older package
//! replayed from "the database" is refused; a database that lost one or two
//! transactions is recovered by Auto-Recover, which documents each discarded
//! transaction in the audit log; a database three transactions behind inhibits
//! the module until the security officer recovers its checkpoint. The records
//! survive a reboot, and their totals follow the transactions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use std::collections::BTreeMap;

use common::postal::*;
use common::*;
use postvault_indicium::{Date, Money};
use postvault_module::audit::{AuditData, EntryBody, REASON_OK, verify_log};
use postvault_module::checkpoint::{
    CheckpointBody, CheckpointRecord, CheckpointStore, KEPT, Totals, Transaction,
};
use postvault_module::command::Command;
use postvault_module::nvm::{MemNvm, Slot};
use postvault_module::postal::{
    CustomerAction, PostalCommand, PostalReply, PostalRequest, ProviderAction, ProviderOrder,
    SignedOrder,
};
use postvault_module::psd::PsdPackage;
use postvault_module::wire::{Outer, OuterReply, Request, Response};
use postvault_module::{Error, PsdCheck, Result};

const D1: u32 = 4_711;
const D2: u32 = 4_712;

fn tenths(n: u64) -> Money {
    Money::from_tenths(n)
}

fn check(c: PsdCheck) -> Error {
    Error::PsdCheck(c)
}

/// A vault with one Leased meter holding a DR of 100 000.
fn vault_with_meter() -> (Vault, [u8; 6]) {
    let mut v = Vault::new();
    let d = device(D1);
    v.leased_meter(d);
    v.download(d, tenths(100_000)).unwrap();
    (v, d)
}

/// What "the database" holds: each meter's package, the module table's record,
/// and (so that the customer's next request fits the package) the clients.
#[derive(Clone)]
struct Db {
    packages: BTreeMap<[u8; 6], PsdPackage>,
    checkpoint: Option<CheckpointRecord>,
    clients: BTreeMap<[u8; 6], Client>,
}

fn db(v: &Vault) -> Db {
    Db {
        packages: v.packages.clone(),
        checkpoint: v.checkpoint.clone(),
        clients: v.clients.clone(),
    }
}

/// The database switches to a replica holding `db`.
fn restore(v: &mut Vault, db: &Db) {
    v.packages = db.packages.clone();
    v.checkpoint = db.checkpoint.clone();
    v.clients = db.clients.clone();
}

fn record(v: &Vault) -> CheckpointRecord {
    v.checkpoint.clone().unwrap()
}

fn body_of(r: &CheckpointRecord) -> CheckpointBody {
    r.peek().unwrap()
}

/// The module's checkpoint slot as a reboot would find it.
fn stored(v: &Vault) -> CheckpointStore {
    read_slot::<CheckpointStore>(&v.hsm.nvm(), Slot::Checkpoints).unwrap()
}

/// A postal request straight to the host (for `common::refused`).
fn postal(
    h: &mut Hsm<MemNvm>,
    checkpoint: Option<CheckpointRecord>,
    command: PostalCommand,
) -> Result<PostalReply> {
    match h.host.call(Outer::Postal(Box::new(PostalRequest {
        checkpoint,
        command,
    })))? {
        OuterReply::Postal(r) => Ok(*r),
        r => panic!("{r:?}"),
    }
}

/// Auto-Recover straight to the host (for `common::refused`).
fn auto_recover(h: &mut Hsm<MemNvm>, record: CheckpointRecord) -> Result<usize> {
    match h
        .host
        .call(Outer::AutoRecoverCheckpoint { checkpoint: record })?
    {
        OuterReply::Recovered { discarded } => Ok(discarded),
        r => panic!("{r:?}"),
    }
}

/// Runs `f` on the vault, which must fail, and checks that nothing changed: the
/// module (status and NVM but the audit head) and the database (packages and
/// checkpoint record); and that the failure was audited with its reason code.
fn refused_vault<T: core::fmt::Debug>(
    v: &mut Vault,
    f: impl FnOnce(&mut Vault) -> Result<T>,
) -> Error {
    let before = v.hsm.snapshot();
    let database = db(v);
    let n = v.hsm.entries().len();
    let err = f(v).expect_err("the command must fail");
    assert!(v.hsm.entries().len() > n, "no audit entry for {err:?}");
    let body = v.hsm.last_body();
    assert_eq!(body.reason, err.reason_code(), "audit reason of {err:?}");
    assert!(
        matches!(body.data, AuditData::Failure(_)),
        "{:?}",
        body.data
    );
    assert_eq!(
        v.hsm.snapshot(),
        before,
        "a refused command changed the module: {err:?}"
    );
    assert!(
        v.packages == database.packages,
        "a refused command changed a package"
    );
    assert_eq!(v.checkpoint, database.checkpoint);
    err
}

/// The audit entries after the first `n`, decoded.
fn entries_since(v: &Vault, n: usize) -> Vec<EntryBody> {
    v.hsm.entries()[n..]
        .iter()
        .map(|e| e.decode_body().unwrap())
        .collect()
}

/// The audit log verifies.
fn assert_log(v: &Vault) {
    verify_log(&v.hsm.log(), None).unwrap();
}

/// The registers of a meter's package in the database.
fn registers(v: &Vault, d: [u8; 6]) -> (u64, u64) {
    let b = v.body(d);
    (b.ar.tenths(), b.dr.tenths())
}

/// A record with its MAC broken.
fn broken_mac(r: &CheckpointRecord) -> CheckpointRecord {
    let mut bad = r.clone();
    bad.mac[0] ^= 1;
    bad
}

/// A provider order for a given package (the database's package may be older).
fn download_order(v: &Vault, d: [u8; 6], package: &PsdPackage, amount: u64) -> SignedOrder {
    let slots = read_slot(&v.hsm.nvm(), Slot::Mks).unwrap();
    let b = package.open(&slots).unwrap().0;
    SignedOrder::sign(
        ProviderOrder {
            device_id: d,
            package_mac: package.mac,
            action: ProviderAction::Download {
                amount: tenths(amount),
                control_total: b.ar.checked_add(b.dr).unwrap(),
            },
        },
        &v.provider,
    )
    .unwrap()
}

#[test]
fn an_older_package_from_the_database_is_refused() {
    let (mut v, d) = vault_with_meter();
    let old = db(&v);
    let old_package = v.package(d);
    // The customer's request as it would have been for the older package.
    let old_request = v.request(d, CustomerAction::Indicium(indicium_order(tenths(500))));
    let old_order = download_order(&v, d, &old_package, 1_000);
    v.print(d, tenths(1_000)).unwrap();
    let current = v.checkpoint.clone();

    // The older package with the current checkpoint: stale, for the customer's
    // command and for the provider's.
    let err = refused(&mut v.hsm, |h| {
        postal(
            h,
            current.clone(),
            PostalCommand::Customer {
                package: old_package.clone(),
                request: old_request.clone(),
            },
        )
    });
    assert_eq!(err, check(PsdCheck::PackageStale));
    let err = refused(&mut v.hsm, |h| {
        postal(
            h,
            current.clone(),
            PostalCommand::Provider {
                package: old_package.clone(),
                order: old_order.clone(),
            },
        )
    });
    assert_eq!(err, check(PsdCheck::PackageStale));

    // With the older checkpoint as well: the checkpoint is checked first.
    for command in [
        PostalCommand::Customer {
            package: old_package.clone(),
            request: old_request.clone(),
        },
        PostalCommand::Provider {
            package: old_package.clone(),
            order: old_order.clone(),
        },
    ] {
        let err = refused(&mut v.hsm, |h| postal(h, old.checkpoint.clone(), command));
        assert_eq!(err, check(PsdCheck::CheckpointMismatch));
    }
    // The whole older database: the same.
    let new = db(&v);
    restore(&mut v, &old);
    let err = refused_vault(&mut v, |v| v.print(d, tenths(500)));
    assert_eq!(err, check(PsdCheck::CheckpointMismatch));

    // The current database carries on where it was.
    restore(&mut v, &new);
    let i = v.print(d, tenths(500)).unwrap();
    assert_eq!(registers(&v, d), (1_500, 98_500));
    assert_eq!(i.data().ascending_register, tenths(1_500));
    assert_log(&v);
}

/// Checks the entries Auto-Recover made: one `Discarded` per lost record, newest
/// first, then `CheckpointAccepted` with the database's record.
fn assert_recovery_audited(
    v: &Vault,
    since: usize,
    lost: &[CheckpointRecord],
    accepted: &CheckpointRecord,
) {
    let entries = entries_since(v, since);
    assert_eq!(entries.len(), lost.len() + 1, "{entries:#?}");
    for (e, r) in entries.iter().zip(lost) {
        assert_eq!(e.data, AuditData::Discarded(Box::new(body_of(r))));
        assert_eq!(e.command, Some(Command::AutoRecoverCheckpoint));
        assert_eq!(e.reason, REASON_OK);
    }
    let last = entries.last().unwrap();
    assert_eq!(
        last.data,
        AuditData::CheckpointAccepted(Box::new(body_of(accepted)))
    );
    assert_eq!(last.command, Some(Command::AutoRecoverCheckpoint));
    assert_eq!(last.reason, REASON_OK);
}

#[test]
fn a_database_that_lost_its_last_transaction_is_recovered() {
    let (mut v, d) = vault_with_meter();
    let old = db(&v);
    let rec0 = record(&v);
    v.print(d, tenths(1_000)).unwrap();
    let lost = record(&v);
    let lost_body = body_of(&lost);
    assert_eq!(
        (lost_body.transaction, lost_body.amount, lost_body.device_id),
        (Transaction::Indicium, tenths(1_000), d)
    );

    // The database switches to a replica one transaction behind.
    restore(&mut v, &old);
    let err = refused_vault(&mut v, |v| v.print(d, tenths(500)));
    assert_eq!(err, check(PsdCheck::CheckpointMismatch));
    let err = refused_vault(&mut v, |v| v.download(d, tenths(500)));
    assert_eq!(err, check(PsdCheck::CheckpointMismatch));

    let n = v.hsm.entries().len();
    assert_eq!(v.auto_recover(rec0.clone()).unwrap(), 1);
    assert_recovery_audited(&v, n, std::slice::from_ref(&lost), &rec0);
    let s = v.hsm.status();
    assert_eq!((s.checkpoint.as_ref(), s.inhibited), (Some(&rec0), false));
    assert_eq!(stored(&v).records[0], rec0);

    // Commands run again with the older package and record; registers continue
    // from the older package, totals from the older record.
    let i = v.print(d, tenths(500)).unwrap();
    assert_eq!(registers(&v, d), (500, 99_500));
    assert_eq!(
        (i.data().ascending_register, i.data().descending_register),
        (tenths(500), tenths(99_500))
    );
    i.verify_signature(&v.public_key(d)).unwrap();
    let now = body_of(&record(&v));
    let before = body_of(&rec0);
    assert_eq!(now.counter, before.counter + 1);
    assert_eq!(
        now.totals,
        Totals {
            printed: tenths(500),
            ..before.totals
        }
    );
    assert_log(&v);
}

#[test]
fn a_database_that_lost_two_transactions_is_recovered() {
    let (mut v, d) = vault_with_meter();
    let old = db(&v);
    let rec0 = record(&v);
    v.print(d, tenths(1_000)).unwrap();
    let lost1 = record(&v);
    v.correction(d, tenths(200)).unwrap();
    let lost2 = record(&v);

    restore(&mut v, &old);
    let err = refused_vault(&mut v, |v| v.print(d, tenths(500)));
    assert_eq!(err, check(PsdCheck::CheckpointMismatch));

    let n = v.hsm.entries().len();
    assert_eq!(v.auto_recover(rec0.clone()).unwrap(), 2);
    // Newest first: the correction, then the indicium.
    assert_recovery_audited(&v, n, &[lost2.clone(), lost1.clone()], &rec0);
    let discarded: Vec<_> = entries_since(&v, n)
        .into_iter()
        .filter_map(|e| match e.data {
            AuditData::Discarded(b) => Some((b.transaction, b.amount, b.device_id)),
            _ => None,
        })
        .collect();
    assert_eq!(
        discarded,
        [
            (Transaction::Correction, tenths(200), d),
            (Transaction::Indicium, tenths(1_000), d)
        ]
    );
    let s = v.hsm.status();
    assert_eq!((s.checkpoint.as_ref(), s.inhibited), (Some(&rec0), false));
    assert_eq!(stored(&v).records, std::slice::from_ref(&rec0));

    let i = v.print(d, tenths(500)).unwrap();
    i.verify_signature(&v.public_key(d)).unwrap();
    assert_eq!(registers(&v, d), (500, 99_500));
    let now = body_of(&record(&v));
    assert_eq!(now.counter, body_of(&rec0).counter + 1);
    assert_eq!(now.totals.printed, tenths(500));
    assert_log(&v);
}

#[test]
fn the_record_one_back_is_recovered_when_three_are_kept() {
    // Three transactions after the set-up: the module keeps [r3, r2, r1]; the
    // database holds r2 (one back).
    let (mut v, d) = vault_with_meter();
    v.print(d, tenths(100)).unwrap();
    let old = db(&v);
    let r2 = record(&v);
    v.print(d, tenths(200)).unwrap();
    let r3 = record(&v);
    assert_eq!(stored(&v).records.len(), KEPT);
    restore(&mut v, &old);
    let n = v.hsm.entries().len();
    assert_eq!(v.auto_recover(r2.clone()).unwrap(), 1);
    assert_recovery_audited(&v, n, &[r3], &r2);
    assert_eq!(stored(&v).records.len(), KEPT - 1);
    v.print(d, tenths(300)).unwrap();
    assert_eq!(registers(&v, d), (400, 99_600));
}

#[test]
fn a_database_three_transactions_behind_inhibits_the_module_until_recovery() {
    let (mut v, d) = vault_with_meter();
    let old = db(&v);
    let rec0 = record(&v);
    for p in [100, 200, 300] {
        v.print(d, tenths(p)).unwrap();
    }
    let new = db(&v);
    let kept = stored(&v);
    assert_eq!(kept.records.len(), KEPT);
    assert!(!kept.records.contains(&rec0));

    // Auto-Recover with a record the module no longer keeps: inhibited, with a
    // signed audit entry naming the database's record.
    restore(&mut v, &old);
    let n = v.hsm.entries().len();
    assert_eq!(
        v.auto_recover(rec0.clone()).unwrap_err(),
        check(PsdCheck::Inhibited)
    );
    let entries = &v.hsm.entries()[n..];
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    let body = entry.decode_body().unwrap();
    assert_eq!(body.data, AuditData::Inhibited(Box::new(body_of(&rec0))));
    assert_eq!(body.reason, check(PsdCheck::Inhibited).reason_code());
    assert_eq!(body.command, Some(Command::AutoRecoverCheckpoint));
    assert!(
        body.signed && entry.signature.is_some(),
        "the entry is signed"
    );
    assert!(v.hsm.status().inhibited);
    let inhibited = stored(&v);
    assert!(inhibited.inhibited);
    assert_eq!(
        inhibited.records, kept.records,
        "the records stay as they were"
    );

    // Every PSD command is refused, with the database's older record and with the right one.
    for database in [&old, &new] {
        restore(&mut v, database);
        let refusals = [
            refused_vault(&mut v, |v| v.print(d, tenths(100))),
            refused_vault(&mut v, |v| v.correction(d, tenths(100))),
            refused_vault(&mut v, |v| v.download(d, tenths(100))),
            refused_vault(&mut v, |v| v.begin_password_reset(d)),
            refused_vault(&mut v, |v| v.refund(d)),
            refused_vault(&mut v, |v| {
                v.send(PostalCommand::Initialize {
                    device_id: device(D2),
                })
            }),
        ];
        assert!(
            refusals.iter().all(|e| *e == check(PsdCheck::Inhibited)),
            "{refusals:?}"
        );
    }
    // So is Auto-Recover, even with the module's own newest record.
    for r in [record(&v), rec0.clone()] {
        let err = refused(&mut v.hsm, |h| auto_recover(h, r));
        assert_eq!(err, check(PsdCheck::Inhibited));
    }

    // The inhibition survives a power cycle.
    let hsm = std::mem::replace(&mut v.hsm, Hsm::fresh());
    v.hsm = hsm.reboot();
    assert!(v.hsm.status().inhibited);
    let err = refused_vault(&mut v, |v| v.print(d, tenths(100)));
    assert_eq!(err, check(PsdCheck::Inhibited));

    // The security officer's disaster recovery refuses a record with a broken MAC…
    restore(&mut v, &old);
    v.hsm.logon("so").unwrap();
    let bad = broken_mac(&rec0);
    let err = refused(&mut v.hsm, |h| h.send(Request::RecoverCheckpoint(bad)));
    assert_eq!(err, check(PsdCheck::CheckpointMac));
    assert!(v.hsm.status().inhibited);
    // …and accepts the database's genuine record, discarding the three kept
    // transactions newer than it, named in its audit entry.
    let kept: Vec<CheckpointBody> = stored(&v).records.iter().map(body_of).collect();
    assert_eq!(kept.len(), 3);
    let n = v.hsm.entries().len();
    assert!(matches!(
        v.hsm
            .send(Request::RecoverCheckpoint(rec0.clone()))
            .unwrap(),
        Response::Done
    ));
    let body = v.hsm.entries()[n].decode_body().unwrap();
    assert_eq!(
        body.data,
        AuditData::CheckpointRecovered {
            accepted: Box::new(body_of(&rec0)),
            discarded: kept,
        }
    );
    assert!(body.signed);
    assert_eq!(body.command, Some(Command::RecoverCheckpoint));
    assert_eq!(body.user.as_ref().map(|u| u.as_str()), Some("so"));
    v.hsm.logoff();
    let s = v.hsm.status();
    assert_eq!((s.inhibited, s.checkpoint.as_ref()), (false, Some(&rec0)));

    // PSD commands resume with that record and the database's packages.
    let i = v.print(d, tenths(500)).unwrap();
    i.verify_signature(&v.public_key(d)).unwrap();
    assert_eq!(registers(&v, d), (500, 99_500));
    assert_eq!(body_of(&record(&v)).counter, body_of(&rec0).counter + 1);
    assert_log(&v);
}

#[test]
fn records_that_are_not_genuine_are_refused_without_inhibiting() {
    let (mut v, d) = vault_with_meter();
    let old = db(&v);
    let rec0 = record(&v);
    v.print(d, tenths(1_000)).unwrap();
    restore(&mut v, &old);

    // A broken MAC, an altered body, another vault's genuine record.
    let mut altered = rec0.clone();
    let last = altered.body.len() - 1;
    altered.body[last] ^= 1;
    let other = {
        let (o, _) = vault_with_meter();
        record(&o)
    };
    for bad in [broken_mac(&rec0), altered, other] {
        let err = refused(&mut v.hsm, |h| auto_recover(h, bad.clone()));
        assert_eq!(err, check(PsdCheck::CheckpointMac));
        assert!(!v.hsm.status().inhibited);
        v.hsm.logon("so").unwrap();
        let err = refused(&mut v.hsm, |h| h.send(Request::RecoverCheckpoint(bad)));
        assert_eq!(err, check(PsdCheck::CheckpointMac));
        v.hsm.logoff();
        // Nor does a broken record get a PSD command through.
        let err = refused_vault(&mut v, |v| v.print(d, tenths(100)));
        assert_eq!(err, check(PsdCheck::CheckpointMismatch));
    }

    // The genuine record still recovers.
    assert_eq!(v.auto_recover(rec0).unwrap(), 1);
    v.print(d, tenths(100)).unwrap();
    assert_eq!(registers(&v, d), (100, 99_900));
}

#[test]
fn auto_recover_with_the_newest_record_changes_nothing() {
    let (mut v, d) = vault_with_meter();
    v.print(d, tenths(1_000)).unwrap();
    let newest = record(&v);
    let before = v.hsm.snapshot();
    let store = stored(&v);
    let n = v.hsm.entries().len();
    assert_eq!(v.auto_recover(newest.clone()).unwrap(), 0);
    assert_eq!(v.hsm.snapshot(), before);
    assert_eq!(stored(&v), store);
    let entries = entries_since(&v, n);
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].data,
        AuditData::CheckpointAccepted(Box::new(body_of(&newest)))
    );
    assert_eq!(v.checkpoint.as_ref(), Some(&newest));
    v.print(d, tenths(500)).unwrap();
    assert_eq!(registers(&v, d), (1_500, 98_500));
}

#[test]
fn the_records_survive_a_reboot_and_only_three_are_kept() {
    let mut v = Vault::new();
    let (d1, d2) = (device(D1), device(D2));
    v.leased_meter(d1);
    v.leased_meter(d2);
    v.download(d1, tenths(100_000)).unwrap();
    v.download(d2, tenths(50_000)).unwrap();
    v.print(d1, tenths(700)).unwrap();
    v.print(d2, tenths(300)).unwrap();
    let before = stored(&v);
    let newest = record(&v);

    let check_store = |v: &Vault, newest: &CheckpointRecord| {
        let store = stored(v);
        assert_eq!(store.records.len(), KEPT);
        assert_eq!(store.records[0], *newest);
        assert!(!store.inhibited);
        let counters: Vec<u64> = store.records.iter().map(|r| body_of(r).counter).collect();
        let c = body_of(newest).counter;
        assert_eq!(counters, [c, c - 1, c - 2], "newest first, consecutive");
        store
    };
    assert_eq!(body_of(&newest).counter, 12);
    check_store(&v, &newest);

    // A power-on without a clean power-off, then one with.
    for clean in [false, true] {
        if clean {
            v.hsm.host.shutdown().unwrap();
        }
        let hsm = std::mem::replace(&mut v.hsm, Hsm::fresh());
        v.hsm = hsm.reboot();
        let s = v.hsm.status();
        assert_eq!((s.checkpoint.as_ref(), s.inhibited), (Some(&newest), false));
        assert_eq!(check_store(&v, &newest), before);
    }

    // Work continues with the database's record…
    v.print(d1, tenths(100)).unwrap();
    let newest = record(&v);
    assert_eq!(body_of(&newest).counter, 13);
    let after = check_store(&v, &newest);
    assert_eq!(
        after.records[1..],
        before.records[..2],
        "the oldest dropped"
    );

    // …and so does recovery: lose the last transaction, reboot, recover.
    let old = db(&v);
    let rec = record(&v);
    v.print(d2, tenths(100)).unwrap();
    restore(&mut v, &old);
    let hsm = std::mem::replace(&mut v.hsm, Hsm::fresh());
    v.hsm = hsm.reboot();
    let err = refused_vault(&mut v, |v| v.print(d2, tenths(100)));
    assert_eq!(err, check(PsdCheck::CheckpointMismatch));
    assert_eq!(v.auto_recover(rec).unwrap(), 1);
    v.print(d2, tenths(100)).unwrap();
    assert_eq!(registers(&v, d2), (400, 49_600));
    assert_log(&v);
}

/// Expected running totals, and the last counter.
struct Expect {
    counter: u64,
    totals: Totals,
    bodies: Vec<CheckpointBody>,
}

impl Expect {
    /// The newest record is the next one, for this transaction.
    fn next(&mut self, v: &mut Vault, d: [u8; 6], tx: Transaction, amount: u64) {
        let add = |a: Money| a.checked_add(tenths(amount)).unwrap();
        match tx {
            Transaction::Download => self.totals.downloaded = add(self.totals.downloaded),
            Transaction::Indicium | Transaction::Correction => {
                self.totals.printed = add(self.totals.printed);
            }
            Transaction::Refund => self.totals.refunded = add(self.totals.refunded),
            _ => {}
        }
        self.counter += 1;
        let r = record(v);
        let body = body_of(&r);
        let package = v.body(d);
        let status = v.hsm.status();
        assert_eq!(status.checkpoint.as_ref(), Some(&r));
        assert_eq!(
            body,
            CheckpointBody {
                version: body.version,
                module_serial: status.serial.clone().unwrap(),
                counter: self.counter,
                device_id: d,
                package_sequence: package.sequence,
                package_mac: v.package(d).mac,
                transaction: tx,
                amount: tenths(amount),
                ar: package.ar,
                dr: package.dr,
                time: status.time,
                totals: self.totals,
            },
            "the record of {tx:?}"
        );
        self.bodies.push(body);
    }
}

#[test]
fn the_totals_follow_the_transactions() {
    use Transaction as T;
    let mut v = Vault::new();
    let (d1, d2) = (device(D1), device(D2));
    let mut e = Expect {
        counter: 0,
        totals: Totals::default(),
        bodies: Vec::new(),
    };
    assert_eq!(v.hsm.status().checkpoint, None);

    v.unleased_meter(d1);
    // Initialize PSD and Authorize PSD ran inside: the module's first two records.
    let init = body_of(&stored(&v).records[1]);
    assert_eq!(
        (
            init.counter,
            init.transaction,
            init.amount,
            init.device_id,
            init.totals
        ),
        (1, T::Initialize, Money::ZERO, d1, Totals::default())
    );
    e.counter = 1;
    e.next(&mut v, d1, T::Authorize, 0);
    v.configure(d1).unwrap();
    e.next(&mut v, d1, T::Configure, 0);
    v.authorize_customer(d1).unwrap();
    e.next(&mut v, d1, T::AuthorizeCustomer, 0);
    assert_eq!(e.totals, Totals::default());

    v.download(d1, tenths(100_000)).unwrap();
    e.next(&mut v, d1, T::Download, 100_000);
    let first = v.print(d1, tenths(730)).unwrap();
    e.next(&mut v, d1, T::Indicium, 730);
    v.correction(d1, tenths(100)).unwrap();
    e.next(&mut v, d1, T::Correction, 100);
    let later: Date = first.data().date.checked_add_days(1).unwrap();
    v.redate(d1, &first, later).unwrap();
    e.next(&mut v, d1, T::Redate, 0);

    // Four set-up transactions on the second meter; the module keeps the last three.
    v.leased_meter(d2);
    e.counter += 4;
    let kept: Vec<_> = stored(&v).records.iter().map(body_of).collect();
    assert_eq!(
        kept.iter()
            .map(|b| (b.counter, b.transaction, b.device_id, b.totals))
            .collect::<Vec<_>>(),
        [
            (e.counter, T::AuthorizeCustomer, d2, e.totals),
            (e.counter - 1, T::Configure, d2, e.totals),
            (e.counter - 2, T::Authorize, d2, e.totals),
        ]
    );
    v.download(d2, tenths(50_000)).unwrap();
    e.next(&mut v, d2, T::Download, 50_000);
    v.print(d2, tenths(1_000)).unwrap();
    e.next(&mut v, d2, T::Indicium, 1_000);

    v.begin_password_reset(d1).unwrap();
    e.next(&mut v, d1, T::BeginPasswordReset, 0);
    v.download(d1, tenths(5_000)).unwrap();
    e.next(&mut v, d1, T::Download, 5_000);
    v.complete_password_reset(d1, [3; 32]).unwrap();
    e.next(&mut v, d1, T::CompletePasswordReset, 0);
    let refund = v.refund(d1).unwrap();
    let value = 100_000 + 5_000 - 730 - 100;
    assert_eq!(refund.data().postage, tenths(value));
    e.next(&mut v, d1, T::Refund, value);
    // A refused command makes no record.
    let err = refused_vault(&mut v, |v| v.print(d2, tenths(1_000_000)));
    assert_eq!(err, check(PsdCheck::ValueLimits));
    v.print(d2, tenths(2_000)).unwrap();
    e.next(&mut v, d2, T::Indicium, 2_000);

    assert_eq!(
        e.totals,
        Totals {
            downloaded: tenths(155_000),
            printed: tenths(730 + 100 + 1_000 + 2_000),
            refunded: tenths(value),
        }
    );
    // Each meter: AR + DR is what it was given.
    assert_eq!(registers(&v, d1), (105_000, 0));
    assert_eq!(registers(&v, d2), (3_000, 47_000));

    // The audit log has each transaction's record.
    let audited: BTreeMap<u64, CheckpointBody> = v
        .hsm
        .entries()
        .iter()
        .filter_map(|en| match en.decode_body().unwrap().data {
            AuditData::Psd(b) => Some((b.counter, *b)),
            _ => None,
        })
        .collect();
    assert_eq!(audited.len(), usize::try_from(e.counter).unwrap());
    for b in &e.bodies {
        assert_eq!(audited.get(&b.counter), Some(b));
    }
    assert_eq!(audited[&1], init);
    assert_log(&v);
}

/// Each discarded transaction's entry is signed, as every entry of a
/// module-level command must be, so a log with discarded transactions verifies.
#[test]
fn an_audit_log_with_discarded_transactions_verifies() {
    let (mut v, d) = vault_with_meter();
    let old = db(&v);
    let rec0 = record(&v);
    v.print(d, tenths(1_000)).unwrap();
    restore(&mut v, &old);
    assert_eq!(v.auto_recover(rec0).unwrap(), 1);
    verify_log(&v.hsm.log(), None).unwrap();
    let discarded: Vec<_> = v
        .hsm
        .entries()
        .iter()
        .filter(|e| matches!(e.decode_body().unwrap().data, AuditData::Discarded(_)))
        .collect();
    assert_eq!(discarded.len(), 1);
    assert!(discarded.iter().all(|e| e.signature.is_some()));
}

/// After a recovery the module continues the meter from the older package, so
/// two packages exist at the same transaction count: the one it made after
/// recovering, and the discarded one (say an old database primary comes back).
/// The discarded one is refused as a fork while the module keeps a record of the meter.
#[test]
fn a_discarded_package_coming_back_after_recovery_is_refused_as_a_fork() {
    let (mut v, d) = vault_with_meter();
    let before = db(&v);
    let rec0 = record(&v);
    v.print(d, tenths(1_000)).unwrap();
    let discarded = db(&v);
    restore(&mut v, &before);
    assert_eq!(v.auto_recover(rec0).unwrap(), 1);
    v.print(d, tenths(500)).unwrap();
    let current = db(&v);
    assert_eq!(
        v.body(d).sequence,
        discarded.packages[&d]
            .open(&read_slot(&v.hsm.nvm(), Slot::Mks).unwrap())
            .unwrap()
            .0
            .sequence,
        "both packages are at the same transaction count"
    );
    // The discarded package, with the current checkpoint.
    v.packages = discarded.packages.clone();
    v.clients = discarded.clients.clone();
    let err = v.print(d, tenths(100)).unwrap_err();
    assert_eq!(err, check(PsdCheck::PackageStale));
    // The current one still works.
    restore(&mut v, &current);
    v.print(d, tenths(100)).unwrap();
    assert_eq!(registers(&v, d), (600, 99_400));
    assert_log(&v);
}

/// The limit the module leaves to the audit service (docs/decisions.md): once
/// three transactions on other meters push a meter's record out, an old package
/// of that meter is accepted again. The evidence the audit service needs is
/// there: the meter's AR goes backwards across its audit entries, and the
/// module's printed total exceeds the meters' ARs.
#[test]
fn a_replay_the_module_cannot_see_leaves_evidence_in_the_audit_log() {
    let (mut v, d) = vault_with_meter();
    let old = db(&v);
    v.print(d, tenths(1_000)).unwrap();
    let other = device(D2);
    v.leased_meter(other); // four transactions on another meter
    // The old package of `d` (with its client) comes back beside the current checkpoint.
    v.packages.insert(d, old.packages[&d].clone());
    v.clients.insert(d, old.clients[&d].clone());
    v.print(d, tenths(1_000)).unwrap();

    let ars: Vec<Money> = v
        .hsm
        .entries()
        .iter()
        .filter_map(|e| match e.decode_body().unwrap().data {
            AuditData::Psd(b) if b.device_id == d => Some(b.ar),
            _ => None,
        })
        .collect();
    assert!(
        ars.windows(2).any(|w| w[1] <= w[0] && w[1] != Money::ZERO),
        "the AR of {d:?} never repeats or goes back: {ars:?}"
    );
    let totals = body_of(&record(&v)).totals;
    assert_eq!(totals.printed, tenths(2_000));
    assert_eq!(v.body(d).ar, tenths(1_000));
}

/// Every clone shares the checkpoint key, so another module's record is
/// genuine; it still says nothing about this module's place in the database
/// (a misrouted module-table row) and is refused without inhibiting.
#[test]
fn another_modules_record_is_refused_without_inhibiting() {
    let (master, mut clone) = master_and_clone();
    let mut v = Vault::over(master);
    let d = device(D1);
    v.leased_meter(d);
    let settings = v.settings(DR_CEILING, AR_CEILING);
    clone
        .as_user(
            "so",
            Request::InitializeCryptoCard {
                settings,
                tokens: v.card_tokens.clone(),
            },
        )
        .unwrap();
    let reply = clone
        .host
        .call(Outer::Postal(Box::new(PostalRequest {
            checkpoint: None,
            command: PostalCommand::Initialize {
                device_id: device(D2),
            },
        })))
        .unwrap();
    let OuterReply::Postal(reply) = reply else {
        panic!()
    };
    let theirs = reply.checkpoint;
    let err = refused(&mut v.hsm, |h| auto_recover(h, theirs.clone()));
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert!(!v.hsm.status().inhibited);
    // Nor does the security officer's recovery take it, nor run on a module
    // that is not inhibited.
    v.hsm.logon("so").unwrap();
    let err = refused(&mut v.hsm, |h| h.send(Request::RecoverCheckpoint(theirs)));
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    let own = record(&v);
    let err = refused(&mut v.hsm, |h| h.send(Request::RecoverCheckpoint(own)));
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    v.hsm.logoff();
    // The module works on with its own record.
    v.download(d, tenths(1_000)).unwrap();
    v.print(d, tenths(100)).unwrap();
}
