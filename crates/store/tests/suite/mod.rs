//! The store's behaviour, written against the traits: every backend runs all of it.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use postvault_store::{IndiciumRow, MeterTx, ModuleRow, PackageRow, Store, StoreError};

pub const D1: [u8; 6] = *b"PV\0\0\0\x01";
pub const D2: [u8; 6] = *b"PV\0\0\0\x02";

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
