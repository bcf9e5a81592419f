//! The store's behaviour, written against the traits: every backend runs all of it.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use postvault_store::{
    IndiciumRow, MeterTx, ModuleRow, PackageRow, PurchaseRow, PurchaseStatus, Store, StoreError,
};

pub const D1: [u8; 6] = *b"PV\0\0\0\x01";
pub const D2: [u8; 6] = *b"PV\0\0\0\x02";
/// A meter that has nothing stored.
pub const D3: [u8; 6] = *b"PV\0\0\0\x03";

/// Session ids (the SHA-256 of a session token, here just distinct values).
pub const S1: [u8; 32] = [0x51; 32];
pub const S2: [u8; 32] = [0x52; 32];
pub const S3: [u8; 32] = [0x53; 32];

pub fn package(device_id: [u8; 6], n: u8) -> PackageRow {
    PackageRow {
        device_id,
        package: vec![n; 40],
        mac: [n; 32],
        customer_id: Some(format!("customer-{n}")),
    }
}

pub fn indicium(device_id: [u8; 6], ar: u64, txn: Option<&str>) -> IndiciumRow {
    IndiciumRow {
        id: 0,
        device_id,
        customer_id: Some("alice".into()),
        client_txn: txn.map(str::to_owned),
        kind: "postage".into(),
        postage: 730,
        ascending_register: ar,
        mail_piece_key: [u8::try_from(ar % 251).unwrap(); 32],
        bytes: vec![1; 115],
        refund_requested: false,
    }
}

/// Packages are compare-and-swap on the MAC the caller read.
pub async fn packages_are_compare_and_swap<S: Store>(s: &S) {
    let mut tx = s.begin().await.unwrap();
    assert_eq!(tx.lock_meter(D1).await.unwrap(), None);
    tx.put_package(&package(D1, 1), None).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(s.package(D1).await.unwrap(), Some(package(D1, 1)));

    let mut tx = s.begin().await.unwrap();
    let current = tx.lock_meter(D1).await.unwrap().unwrap();
    for wrong in [None, Some([9; 32])] {
        assert!(matches!(
            tx.put_package(&package(D1, 2), wrong).await,
            Err(StoreError::Conflict { .. })
        ));
    }
    tx.put_package(&package(D1, 2), Some(current.mac))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(s.package(D1).await.unwrap(), Some(package(D1, 2)));
    assert_eq!(s.package(D2).await.unwrap(), None);
}

/// A transaction dropped without commit leaves nothing behind.
pub async fn an_uncommitted_transaction_changes_nothing<S: Store>(s: &S) {
    let mut tx = s.begin().await.unwrap();
    tx.put_package(&package(D2, 1), None).await.unwrap();
    tx.put_checkpoint("m1", b"record 1", None)
        .await
        .unwrap_err(); // no such module yet
    drop(tx);
    assert_eq!(s.package(D2).await.unwrap(), None);
    let mut tx = s.begin().await.unwrap();
    tx.add_module(&module("m1")).await.unwrap();
    tx.put_checkpoint("m1", b"record 1", None).await.unwrap();
    tx.put_package(&package(D2, 1), None).await.unwrap();
    drop(tx);
    assert_eq!(s.checkpoint("m1").await.unwrap(), None);
    assert_eq!(s.modules().await.unwrap(), []);
    assert_eq!(s.package(D2).await.unwrap(), None);
}

pub fn module(serial: &str) -> ModuleRow {
    ModuleRow {
        serial: serial.into(),
        location: format!("modules/{serial}"),
    }
}

/// The module table: one record per module, compare-and-swap.
pub async fn the_module_table_is_compare_and_swap<S: Store>(s: &S) {
    let mut tx = s.begin().await.unwrap();
    tx.add_module(&module("m1")).await.unwrap();
    tx.add_module(&module("m2")).await.unwrap();
    assert!(matches!(
        tx.add_module(&module("m1")).await,
        Err(StoreError::Duplicate { .. })
    ));
    tx.put_checkpoint("m1", b"one", None).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(s.modules().await.unwrap(), [module("m1"), module("m2")]);

    let mut tx = s.begin().await.unwrap();
    for wrong in [None, Some(&b"two"[..])] {
        assert!(matches!(
            tx.put_checkpoint("m1", b"two", wrong).await,
            Err(StoreError::Conflict { .. })
        ));
    }
    tx.put_checkpoint("m1", b"two", Some(b"one")).await.unwrap();
    tx.put_checkpoint("m2", b"first", None).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        s.checkpoint("m1").await.unwrap().as_deref(),
        Some(&b"two"[..])
    );
    assert_eq!(
        s.checkpoint("m2").await.unwrap().as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(s.checkpoint("m3").await.unwrap(), None);
}

/// Certificates and customers keep their uniqueness rules.
pub async fn certificates_and_customers_are_unique<S: Store>(s: &S) {
    let mut tx = s.begin().await.unwrap();
    tx.put_certificate(D1, 7, b"cert one").await.unwrap();
    assert!(matches!(
        tx.put_certificate(D2, 7, b"cert two").await,
        Err(StoreError::Duplicate { .. })
    ));
    tx.commit().await.unwrap();
    let mut tx = s.begin().await.unwrap();
    assert!(matches!(
        tx.put_certificate(D1, 8, b"again").await,
        Err(StoreError::Duplicate { .. })
    ));
    drop(tx);
    assert_eq!(
        s.certificate(D1).await.unwrap().as_deref(),
        Some(&b"cert one"[..])
    );

    let mut tx = s.begin().await.unwrap();
    tx.put_customer("alice", None, b"v1").await.unwrap();
    tx.put_customer("alice", Some(D1), b"v2").await.unwrap();
    assert!(matches!(
        tx.put_customer("bob", Some(D1), b"b").await,
        Err(StoreError::Duplicate { .. })
    ));
    tx.commit().await.unwrap();
    let alice = s.customer("alice").await.unwrap().unwrap();
    assert_eq!(alice.record, b"v2");
    assert_eq!(alice.device_id, Some(D1));
    assert_eq!(s.customer("bob").await.unwrap(), None);
}

/// Indicia: one per client transaction id and meter; found by id, by
/// transaction and by customer; counted by mail-piece key.
pub async fn indicia_are_idempotent_per_client_transaction<S: Store>(s: &S) {
    let mut tx = s.begin().await.unwrap();
    let a = tx
        .insert_indicium(&indicium(D1, 730, Some("t1")))
        .await
        .unwrap();
    let b = tx
        .insert_indicium(&indicium(D1, 1460, Some("t2")))
        .await
        .unwrap();
    // The same transaction id on another meter is another transaction.
    tx.insert_indicium(&indicium(D2, 730, Some("t1")))
        .await
        .unwrap();
    // No transaction id: never deduplicated.
    tx.insert_indicium(&indicium(D1, 2190, None)).await.unwrap();
    tx.insert_indicium(&indicium(D1, 2190, None)).await.unwrap();
    tx.commit().await.unwrap();
    assert!(b > a);

    let mut tx = s.begin().await.unwrap();
    assert!(matches!(
        tx.insert_indicium(&indicium(D1, 9999, Some("t1"))).await,
        Err(StoreError::Duplicate { .. })
    ));
    let found = tx.indicium_by_txn(D1, "t1").await.unwrap().unwrap();
    assert_eq!((found.id, found.ascending_register), (a, 730));
    assert_eq!(tx.indicium_by_txn(D1, "t9").await.unwrap(), None);
    drop(tx);

    let got = s.indicium(b).await.unwrap().unwrap();
    assert_eq!(
        got,
        IndiciumRow {
            id: b,
            ..indicium(D1, 1460, Some("t2"))
        }
    );
    let mine = s.indicia_of("alice", 3).await.unwrap();
    assert_eq!(mine.len(), 3);
    assert!(mine.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(
        s.pieces(indicium(D1, 2190, None).mail_piece_key)
            .await
            .unwrap(),
        2
    );
    assert_eq!(s.pieces([250; 32]).await.unwrap(), 0);
    assert_eq!(s.indicium(b + 100).await.unwrap(), None);
}

/// Idempotency keys keep the first reply.
pub async fn idempotency_keys_keep_the_first_reply<S: Store>(s: &S) {
    let mut tx = s.begin().await.unwrap();
    assert_eq!(tx.idempotent("buy-1").await.unwrap(), None);
    tx.put_idempotent("buy-1", b"reply one").await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = s.begin().await.unwrap();
    assert_eq!(
        tx.idempotent("buy-1").await.unwrap().as_deref(),
        Some(&b"reply one"[..])
    );
    assert!(matches!(
        tx.put_idempotent("buy-1", b"reply two").await,
        Err(StoreError::Duplicate { .. })
    ));
}

/// The audit log appends in order per module and refuses gaps and rewrites.
pub async fn the_audit_log_appends_in_order<S: Store>(s: &S) {
    let entries: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10]).collect();
    assert_eq!(s.audit_next("m1").await.unwrap(), 0);
    s.append_audit("m1", 0, &entries[..3]).await.unwrap();
    s.append_audit("m2", 0, &entries[..1]).await.unwrap();
    for (first, expected) in [(0, 3), (2, 3), (4, 3)] {
        assert_eq!(
            s.append_audit("m1", first, &entries[3..]).await,
            Err(StoreError::AuditGap {
                module: "m1".into(),
                expected,
                got: first
            })
        );
    }
    s.append_audit("m1", 3, &entries[3..]).await.unwrap();
    assert_eq!(s.audit_next("m1").await.unwrap(), 5);
    assert_eq!(s.audit_next("m2").await.unwrap(), 1);
    assert_eq!(s.audit_entries("m1", 0, 100).await.unwrap(), entries);
    assert_eq!(s.audit_entries("m1", 2, 2).await.unwrap(), entries[2..4]);
    assert_eq!(
        s.audit_entries("m3", 0, 10).await.unwrap(),
        Vec::<Vec<u8>>::new()
    );
}

/// The meter lock serialises transactions: concurrent read-modify-write
/// transactions on one meter each see the previous one's result.
pub async fn meter_transactions_are_serialised<S: Store>(s: &S) {
    let mut tx = s.begin().await.unwrap();
    let start = PackageRow {
        package: 0u64.to_be_bytes().to_vec(),
        ..package(D1, 0)
    };
    tx.put_package(&start, None).await.unwrap();
    tx.commit().await.unwrap();
    let tasks: Vec<_> = (0..8u8)
        .map(|n| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut tx = s.begin().await.unwrap();
                let row = tx.lock_meter(D1).await.unwrap().unwrap();
                let count = u64::from_be_bytes(row.package.clone().try_into().unwrap());
                tokio::task::yield_now().await;
                let next = PackageRow {
                    package: (count + 1).to_be_bytes().to_vec(),
                    mac: [n.wrapping_add(100); 32],
                    ..row.clone()
                };
                tx.put_package(&next, Some(row.mac)).await.unwrap();
                tx.commit().await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let end = s.package(D1).await.unwrap().unwrap();
    assert_eq!(u64::from_be_bytes(end.package.try_into().unwrap()), 8);
}

/// Session message counters: each is taken once, only upwards, and only by
/// the meter the session was first taken for. Leaves `S1` at 101 and `S2` at
/// 1 (both taken for their meter), for [`session_counters_are_remembered`].
pub async fn session_counters_are_taken_once<S: Store>(s: &S) {
    s.take_session_counter(S1, D1, 5).await.unwrap();
    // The same counter again, and anything below it, is a replay.
    for stale in [5, 4, 0] {
        let r = s.take_session_counter(S1, D1, stale).await;
        assert!(
            matches!(r, Err(StoreError::Replayed { .. })),
            "{stale}: {r:?}"
        );
    }
    s.take_session_counter(S1, D1, 6).await.unwrap();
    // Counters may skip ahead; what was skipped is then below the highest.
    s.take_session_counter(S1, D1, 100).await.unwrap();
    let r = s.take_session_counter(S1, D1, 50).await;
    assert!(matches!(r, Err(StoreError::Replayed { .. })), "{r:?}");
    // The session is D1's: another meter cannot take a counter in it, even a
    // higher one, and its attempt does not move the counter.
    let r = s.take_session_counter(S1, D2, 1000).await;
    assert!(matches!(r, Err(StoreError::Replayed { .. })), "{r:?}");
    s.take_session_counter(S1, D1, 101).await.unwrap();

    // Another session has counters of its own, even on the same meter.
    s.take_session_counter(S2, D2, 1).await.unwrap();
    for (device, counter) in [(D2, 1), (D1, 2)] {
        let r = s.take_session_counter(S2, device, counter).await;
        assert!(matches!(r, Err(StoreError::Replayed { .. })), "{r:?}");
    }
    s.take_session_counter(S3, D1, 0).await.unwrap();
    let r = s.take_session_counter(S3, D1, 0).await;
    assert!(matches!(r, Err(StoreError::Replayed { .. })), "{r:?}");

    // The highest counter a database integer holds is taken once too.
    let top = u64::try_from(i64::MAX).unwrap();
    s.take_session_counter(S3, D1, top).await.unwrap();
    let r = s.take_session_counter(S3, D1, top).await;
    assert!(matches!(r, Err(StoreError::Replayed { .. })), "{r:?}");
}

/// On a store that [`session_counters_are_taken_once`] ran on (reopened, or
/// reconnected): the counters and the sessions' meters were kept.
pub async fn session_counters_are_remembered<S: Store>(s: &S) {
    for (id, device, counter) in [(S1, D1, 101), (S1, D2, 102), (S2, D2, 1), (S2, D1, 2)] {
        let r = s.take_session_counter(id, device, counter).await;
        assert!(
            matches!(r, Err(StoreError::Replayed { .. })),
            "{:?}/{device:?}/{counter}: {r:?}",
            id[0]
        );
    }
    s.take_session_counter(S1, D1, 102).await.unwrap();
    s.take_session_counter(S2, D2, 2).await.unwrap();
}

pub fn purchase(device_id: [u8; 6], id: &str, amount: u64) -> PurchaseRow {
    PurchaseRow {
        device_id,
        id: id.into(),
        amount,
        control_total: amount + 7,
        status: PurchaseStatus::Pending,
    }
}

/// Purchases: one per id and meter, read back as stored, listed by status in
/// the order they were made; a status change needs the purchase.
pub async fn purchases_are_unique_per_meter_and_listed_by_status<S: Store>(s: &S) {
    let p1 = purchase(D1, "p1", 10_000);
    let p2 = purchase(D1, "p2", 20_000);
    // The same id on another meter is another purchase.
    let p3 = purchase(D2, "p1", 30_000);
    let mut tx = s.begin().await.unwrap();
    tx.put_purchase(&p1).await.unwrap();
    tx.put_purchase(&p2).await.unwrap();
    let r = tx
        .put_purchase(&PurchaseRow {
            amount: 99_000,
            ..p1.clone()
        })
        .await;
    assert!(matches!(r, Err(StoreError::Duplicate { .. })), "{r:?}");
    tx.put_purchase(&p3).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(s.purchase(D1, "p1").await.unwrap(), Some(p1.clone()));
    assert_eq!(s.purchase(D1, "p2").await.unwrap(), Some(p2.clone()));
    assert_eq!(s.purchase(D2, "p1").await.unwrap(), Some(p3.clone()));
    assert_eq!(s.purchase(D2, "p2").await.unwrap(), None);
    assert_eq!(s.purchase(D3, "p1").await.unwrap(), None);

    // A committed purchase is a duplicate for later transactions too.
    let mut tx = s.begin().await.unwrap();
    let r = tx.put_purchase(&p2).await;
    assert!(matches!(r, Err(StoreError::Duplicate { .. })), "{r:?}");
    drop(tx);

    assert_eq!(
        s.purchases(PurchaseStatus::Pending, 10).await.unwrap(),
        [p1.clone(), p2.clone(), p3.clone()]
    );
    assert_eq!(
        s.purchases(PurchaseStatus::Pending, 2).await.unwrap(),
        [p1.clone(), p2.clone()]
    );
    assert_eq!(s.purchases(PurchaseStatus::Done, 10).await.unwrap(), []);

    // Finished in the other order than made: listed in the order made.
    let mut tx = s.begin().await.unwrap();
    tx.set_purchase_status(D2, "p1", PurchaseStatus::Done)
        .await
        .unwrap();
    tx.set_purchase_status(D1, "p1", PurchaseStatus::Done)
        .await
        .unwrap();
    for (device, id) in [(D1, "p9"), (D3, "p2")] {
        let r = tx
            .set_purchase_status(device, id, PurchaseStatus::Refused)
            .await;
        assert!(matches!(r, Err(StoreError::NotFound { .. })), "{id}: {r:?}");
    }
    tx.commit().await.unwrap();

    let done = |p: &PurchaseRow| PurchaseRow {
        status: PurchaseStatus::Done,
        ..p.clone()
    };
    assert_eq!(s.purchase(D1, "p1").await.unwrap(), Some(done(&p1)));
    assert_eq!(
        s.purchases(PurchaseStatus::Pending, 10).await.unwrap(),
        vec![p2.clone()]
    );
    assert_eq!(
        s.purchases(PurchaseStatus::Done, 10).await.unwrap(),
        [done(&p1), done(&p3)]
    );
    assert_eq!(s.purchases(PurchaseStatus::Refused, 10).await.unwrap(), []);

    let mut tx = s.begin().await.unwrap();
    tx.set_purchase_status(D1, "p2", PurchaseStatus::Refused)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(s.purchases(PurchaseStatus::Pending, 10).await.unwrap(), []);
    assert_eq!(
        s.purchases(PurchaseStatus::Refused, 10).await.unwrap(),
        [PurchaseRow {
            status: PurchaseStatus::Refused,
            ..p2
        }]
    );
}

/// A purchase made, or a status set, in a transaction that is dropped
/// without commit is not kept.
pub async fn an_uncommitted_purchase_is_not_kept<S: Store>(s: &S) {
    let p1 = purchase(D1, "p1", 10_000);
    let mut tx = s.begin().await.unwrap();
    tx.put_purchase(&p1).await.unwrap();
    tx.set_purchase_status(D1, "p1", PurchaseStatus::Done)
        .await
        .unwrap();
    drop(tx);
    assert_eq!(s.purchase(D1, "p1").await.unwrap(), None);
    for status in [PurchaseStatus::Pending, PurchaseStatus::Done] {
        assert_eq!(s.purchases(status, 10).await.unwrap(), []);
    }

    // Nothing was left behind to collide with.
    let mut tx = s.begin().await.unwrap();
    tx.put_purchase(&p1).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = s.begin().await.unwrap();
    tx.set_purchase_status(D1, "p1", PurchaseStatus::Done)
        .await
        .unwrap();
    drop(tx);
    assert_eq!(s.purchase(D1, "p1").await.unwrap(), Some(p1.clone()));
    assert_eq!(
        s.purchases(PurchaseStatus::Pending, 10).await.unwrap(),
        [p1]
    );
}

/// Refund requests: once per postage or correction indicium, only by the
/// meter that printed it.
pub async fn refunds_are_requested_once_by_the_meter<S: Store>(s: &S) {
    let refund = IndiciumRow {
        kind: "refund".into(),
        customer_id: None,
        ..indicium(D1, 2920, None)
    };
    let redate = IndiciumRow {
        kind: "redate".into(),
        postage: 0,
        ..indicium(D1, 2920, None)
    };
    let correction = IndiciumRow {
        kind: "correction".into(),
        postage: 20,
        ..indicium(D1, 2940, Some("t4"))
    };
    let mut tx = s.begin().await.unwrap();
    let a = tx
        .insert_indicium(&indicium(D1, 730, Some("t1")))
        .await
        .unwrap();
    let b = tx
        .insert_indicium(&indicium(D1, 1460, Some("t2")))
        .await
        .unwrap();
    let c = tx
        .insert_indicium(&indicium(D2, 730, Some("t1")))
        .await
        .unwrap();
    let r = tx.insert_indicium(&refund).await.unwrap();
    let d = tx.insert_indicium(&redate).await.unwrap();
    let k = tx.insert_indicium(&correction).await.unwrap();
    tx.commit().await.unwrap();
    assert!(!s.indicium(a).await.unwrap().unwrap().refund_requested);
    assert_eq!(s.refunds_requested(10).await.unwrap(), []);

    s.request_refund(D1, a).await.unwrap();
    let asked = IndiciumRow {
        id: a,
        refund_requested: true,
        ..indicium(D1, 730, Some("t1"))
    };
    assert_eq!(s.indicium(a).await.unwrap(), Some(asked.clone()));
    assert!(!s.indicium(b).await.unwrap().unwrap().refund_requested);
    assert_eq!(s.refunds_requested(10).await.unwrap(), vec![asked.clone()]);

    // Once.
    let again = s.request_refund(D1, a).await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );
    // Another meter's indicium, whether asked for or not, is not there for
    // this meter; neither is an id that was never issued.
    let unknown = a.max(b).max(c).max(r).max(d).max(k) + 1000;
    for (device, id) in [(D2, a), (D2, b), (D1, c), (D1, unknown), (D3, b)] {
        let e = s.request_refund(device, id).await;
        assert!(matches!(e, Err(StoreError::NotFound { .. })), "{id}: {e:?}");
    }
    assert!(!s.indicium(b).await.unwrap().unwrap().refund_requested);
    assert!(!s.indicium(c).await.unwrap().unwrap().refund_requested);
    // Only postage and corrections are refunded.
    for id in [r, d] {
        let e = s.request_refund(D1, id).await;
        assert!(matches!(e, Err(StoreError::Conflict { .. })), "{id}: {e:?}");
        assert!(!s.indicium(id).await.unwrap().unwrap().refund_requested);
    }
    assert_eq!(s.refunds_requested(10).await.unwrap(), vec![asked.clone()]);

    s.request_refund(D1, k).await.unwrap();
    let asked_k = IndiciumRow {
        id: k,
        refund_requested: true,
        ..correction
    };
    assert_eq!(
        s.refunds_requested(10).await.unwrap(),
        [asked.clone(), asked_k]
    );
    assert_eq!(s.refunds_requested(1).await.unwrap(), [asked]);
}
