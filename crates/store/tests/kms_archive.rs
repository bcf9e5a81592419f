//! The KMS archive on SQLite files in a temporary directory: domains, key id
//! allocation (also concurrent), appending to a key's history and what it
//! refuses, the latest-record lookups, and reopening.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use postvault_store::sqlite::SqliteStore;
use postvault_store::{KmsDomainRow, KmsRecordRow, Store, StoreError};

const D1: [u8; 6] = *b"PV\0\0\0\x01";
const D2: [u8; 6] = *b"PV\0\0\0\x02";
/// A meter no record is about.
const D3: [u8; 6] = *b"PV\0\0\0\x03";

async fn fresh() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    (dir, store)
}

fn domain(name: &str, created: u64) -> KmsDomainRow {
    KmsDomainRow {
        domain: name.into(),
        directory: format!("directory of {name}").into_bytes(),
        sealed_keys: format!("sealed keys of {name}").into_bytes(),
        created,
    }
}

/// A record with no sub-domain and no meter; `time` is `100 * (seq + 1)`.
fn record(domain: &str, key_id: u64, seq: u32, status: &str) -> KmsRecordRow {
    KmsRecordRow {
        domain: domain.into(),
        key_id,
        seq,
        sub_domain: None,
        device: None,
        status: status.into(),
        time: 100 * (u64::from(seq) + 1),
        signer: "officer-1".into(),
        record: format!("{domain}/{key_id}/{seq}").into_bytes(),
    }
}

fn with_device(row: KmsRecordRow, device: [u8; 6]) -> KmsRecordRow {
    KmsRecordRow {
        device: Some(device),
        ..row
    }
}

fn in_sub_domain(row: KmsRecordRow, sub_domain: &str) -> KmsRecordRow {
    KmsRecordRow {
        sub_domain: Some(sub_domain.into()),
        ..row
    }
}

/// Appends each row, which must all be accepted.
async fn append_all(s: &SqliteStore, rows: &[KmsRecordRow]) {
    for row in rows {
        s.kms_append(row).await.unwrap();
    }
}

#[tokio::test]
async fn domains_are_unique_and_listed_by_creation() {
    let (_dir, s) = fresh().await;
    assert_eq!(s.kms_domains().await.unwrap(), []);
    // Added out of order: listed by creation time, then by name.
    s.kms_add_domain(&domain("usps", 20)).await.unwrap();
    s.kms_add_domain(&domain("box", 30)).await.unwrap();
    s.kms_add_domain(&domain("canada", 20)).await.unwrap();
    assert_eq!(
        s.kms_domains().await.unwrap(),
        [domain("canada", 20), domain("usps", 20), domain("box", 30)]
    );

    // A second domain of the same name is refused, and neither replaces the
    // first nor resets its key ids.
    assert_eq!(s.kms_next_key_id("usps").await.unwrap(), 1);
    assert_eq!(s.kms_next_key_id("usps").await.unwrap(), 2);
    let again = KmsDomainRow {
        directory: b"another directory".to_vec(),
        ..domain("usps", 5)
    };
    let r = s.kms_add_domain(&again).await;
    assert!(matches!(r, Err(StoreError::Duplicate { .. })), "{r:?}");
    assert_eq!(
        s.kms_domains().await.unwrap(),
        [domain("canada", 20), domain("usps", 20), domain("box", 30)]
    );
    assert_eq!(s.kms_next_key_id("usps").await.unwrap(), 3);

    // A creation time the database cannot hold is refused, not wrapped.
    let r = s.kms_add_domain(&domain("future", u64::MAX)).await;
    assert!(matches!(r, Err(StoreError::Invalid { .. })), "{r:?}");
    assert_eq!(s.kms_domains().await.unwrap().len(), 3);
    let r = s.kms_next_key_id("future").await;
    assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
}

#[tokio::test]
async fn key_ids_increase_per_domain_independently() {
    let (_dir, s) = fresh().await;
    s.kms_add_domain(&domain("usps", 1)).await.unwrap();
    s.kms_add_domain(&domain("canada", 2)).await.unwrap();
    for expected in 1..=3 {
        assert_eq!(s.kms_next_key_id("usps").await.unwrap(), expected);
    }
    // Another domain starts at 1 and does not move the first one's counter.
    assert_eq!(s.kms_next_key_id("canada").await.unwrap(), 1);
    assert_eq!(s.kms_next_key_id("canada").await.unwrap(), 2);
    assert_eq!(s.kms_next_key_id("usps").await.unwrap(), 4);

    // An unknown domain has no ids, and asking does not create it.
    for unknown in ["nowhere", "USPS", ""] {
        let r = s.kms_next_key_id(unknown).await;
        assert!(
            matches!(r, Err(StoreError::NotFound { .. })),
            "{unknown}: {r:?}"
        );
    }
    assert_eq!(s.kms_domains().await.unwrap().len(), 2);
    assert_eq!(s.kms_next_key_id("canada").await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_get_distinct_key_ids() {
    let (_dir, s) = fresh().await;
    s.kms_add_domain(&domain("usps", 1)).await.unwrap();
    s.kms_add_domain(&domain("canada", 2)).await.unwrap();
    // 8 tasks take 25 ids each in one domain while 4 take 10 each in the other.
    let tasks: Vec<_> = (0..12usize)
        .map(|n| {
            let s = s.clone();
            let (name, count) = if n < 8 { ("usps", 25) } else { ("canada", 10) };
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..count {
                    ids.push(s.kms_next_key_id(name).await.unwrap());
                    tokio::task::yield_now().await;
                }
                (name, ids)
            })
        })
        .collect();
    let mut usps = Vec::new();
    let mut canada = Vec::new();
    for t in tasks {
        let (name, ids) = t.await.unwrap();
        // Each caller sees its own ids strictly increase.
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{name}: {ids:?}");
        if name == "usps" {
            usps.extend(ids);
        } else {
            canada.extend(ids);
        }
    }
    usps.sort_unstable();
    canada.sort_unstable();
    assert_eq!(usps, (1..=200).collect::<Vec<u64>>());
    assert_eq!(canada, (1..=40).collect::<Vec<u64>>());
    assert_eq!(s.kms_next_key_id("usps").await.unwrap(), 201);
    assert_eq!(s.kms_next_key_id("canada").await.unwrap(), 41);
}

#[tokio::test]
async fn a_history_is_appended_in_order() {
    let (_dir, s) = fresh().await;
    s.kms_add_domain(&domain("usps", 1)).await.unwrap();
    s.kms_add_domain(&domain("canada", 2)).await.unwrap();
    let k1 = s.kms_next_key_id("usps").await.unwrap();
    let k2 = s.kms_next_key_id("usps").await.unwrap();
    assert_eq!(s.kms_history("usps", k1).await.unwrap(), []);

    let history = [
        record("usps", k1, 0, "new"),
        in_sub_domain(
            with_device(record("usps", k1, 1, "installed"), D1),
            "canada",
        ),
        with_device(record("usps", k1, 2, "active"), D1),
        record("usps", k1, 3, "bad"),
        record("usps", k1, 4, "obsolete"),
    ];
    append_all(&s, &history).await;
    // The other key's history starts at 0, whatever the first key's times.
    let other = KmsRecordRow {
        time: 1,
        ..record("usps", k2, 0, "new")
    };
    s.kms_append(&other).await.unwrap();

    assert_eq!(s.kms_history("usps", k1).await.unwrap(), history);
    assert_eq!(s.kms_history("usps", k2).await.unwrap(), [other]);
    // The same key id in another domain, and ids never allocated, have nothing.
    assert_eq!(s.kms_history("canada", k1).await.unwrap(), []);
    assert_eq!(s.kms_history("usps", 3).await.unwrap(), []);
    assert_eq!(s.kms_history("usps", u64::MAX).await.unwrap(), []);
}

#[tokio::test]
async fn an_append_that_does_not_continue_the_history_writes_nothing() {
    let (_dir, s) = fresh().await;
    s.kms_add_domain(&domain("usps", 1)).await.unwrap();
    s.kms_add_domain(&domain("canada", 2)).await.unwrap();
    let k1 = s.kms_next_key_id("usps").await.unwrap();
    let k2 = s.kms_next_key_id("usps").await.unwrap();
    let kept = [
        record("usps", k1, 0, "new"),
        with_device(record("usps", k1, 1, "installed"), D1),
    ];
    append_all(&s, &kept).await;
    let next = record("usps", k1, 2, "active");

    let refused = [
        // Unknown install domain, unknown sub-domain.
        (
            "domain",
            KmsRecordRow {
                domain: "nowhere".into(),
                ..next.clone()
            },
        ),
        ("sub-domain", in_sub_domain(next.clone(), "nowhere")),
        // Key ids never allocated in this domain (nor in any: usps has 2).
        (
            "key 0",
            KmsRecordRow {
                key_id: 0,
                ..next.clone()
            },
        ),
        (
            "key 3",
            KmsRecordRow {
                key_id: 3,
                seq: 0,
                ..next.clone()
            },
        ),
        (
            "key max",
            KmsRecordRow {
                key_id: u64::MAX,
                seq: 0,
                ..next.clone()
            },
        ),
        // Not the next record number: taken, skipping one, far ahead.
        (
            "seq 1",
            KmsRecordRow {
                seq: 1,
                ..next.clone()
            },
        ),
        (
            "seq 0",
            KmsRecordRow {
                seq: 0,
                ..next.clone()
            },
        ),
        (
            "seq 3",
            KmsRecordRow {
                seq: 3,
                ..next.clone()
            },
        ),
        (
            "seq max",
            KmsRecordRow {
                seq: u32::MAX,
                ..next.clone()
            },
        ),
        // Times that do not increase: equal to the latest, before it, and
        // before the first; a time the database cannot hold.
        (
            "time equal",
            KmsRecordRow {
                time: kept[1].time,
                ..next.clone()
            },
        ),
        (
            "time earlier",
            KmsRecordRow {
                time: kept[1].time - 1,
                ..next.clone()
            },
        ),
        (
            "time 0",
            KmsRecordRow {
                time: 0,
                ..next.clone()
            },
        ),
        (
            "time max",
            KmsRecordRow {
                time: u64::MAX,
                ..next.clone()
            },
        ),
        // Not a key status.
        (
            "status",
            KmsRecordRow {
                status: "revoked".into(),
                ..next.clone()
            },
        ),
        (
            "status case",
            KmsRecordRow {
                status: "Active".into(),
                ..next.clone()
            },
        ),
    ];
    for (what, row) in &refused {
        let r = s.kms_append(row).await;
        let expected = match *what {
            "domain" | "sub-domain" => matches!(r, Err(StoreError::NotFound { .. })),
            "seq 1" | "seq 0" | "seq 3" | "seq max" => {
                matches!(r, Err(StoreError::Conflict { .. }))
            }
            "time equal" | "time earlier" | "time 0" => matches!(
                r,
                Err(StoreError::Invalid {
                    what: "time events must increase"
                })
            ),
            _ => matches!(r, Err(StoreError::Invalid { .. })),
        };
        assert!(expected, "{what}: {r:?}");
        assert_eq!(s.kms_history("usps", k1).await.unwrap(), kept, "{what}");
        assert_eq!(s.kms_history("usps", k2).await.unwrap(), [], "{what}");
        assert_eq!(s.kms_history("usps", 3).await.unwrap(), [], "{what}");
        assert_eq!(s.kms_history("nowhere", k1).await.unwrap(), [], "{what}");
    }
    // Nothing refused took a record number or a key id.
    s.kms_append(&next).await.unwrap();
    assert_eq!(s.kms_next_key_id("usps").await.unwrap(), 3);
    let mut all = kept.to_vec();
    all.push(next);
    assert_eq!(s.kms_history("usps", k1).await.unwrap(), all);
    // A key id is checked against its own domain's counter.
    let r = s.kms_append(&record("canada", 1, 0, "new")).await;
    assert!(matches!(r, Err(StoreError::Invalid { .. })), "{r:?}");
    assert_eq!(s.kms_history("canada", 1).await.unwrap(), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_to_one_key_cannot_both_pass() {
    let (_dir, s) = fresh().await;
    s.kms_add_domain(&domain("usps", 1)).await.unwrap();
    let k = s.kms_next_key_id("usps").await.unwrap();
    s.kms_append(&record("usps", k, 0, "new")).await.unwrap();
    // Eight writers read the same history and all offer record 1.
    let tasks: Vec<_> = (0..8u8)
        .map(|n| {
            let s = s.clone();
            tokio::spawn(async move {
                let row = KmsRecordRow {
                    signer: format!("officer-{n}"),
                    ..record("usps", k, 1, "installed")
                };
                (s.kms_append(&row).await, row)
            })
        })
        .collect();
    let mut won = Vec::new();
    for t in tasks {
        let (r, row) = t.await.unwrap();
        match r {
            Ok(()) => won.push(row),
            Err(e) => assert!(matches!(e, StoreError::Conflict { .. }), "{e:?}"),
        }
    }
    assert_eq!(won.len(), 1, "{won:?}");
    assert_eq!(
        s.kms_history("usps", k).await.unwrap(),
        [record("usps", k, 0, "new"), won[0].clone()]
    );
}

#[tokio::test]
async fn the_latest_record_of_each_key_by_device() {
    let (_dir, s) = fresh().await;
    s.kms_add_domain(&domain("usps", 1)).await.unwrap();
    s.kms_add_domain(&domain("canada", 2)).await.unwrap();
    for _ in 0..4 {
        s.kms_next_key_id("usps").await.unwrap();
    }
    s.kms_next_key_id("canada").await.unwrap();
    // Appended in another order than key ids, so the order is the query's.
    // Key 3: installed in D1, then made obsolete (the latest names no meter).
    let k3 = [
        with_device(record("usps", 3, 0, "installed"), D1),
        record("usps", 3, 1, "obsolete"),
    ];
    // Key 1: new, installed in D1, active in D1.
    let k1 = [
        record("usps", 1, 0, "new"),
        with_device(record("usps", 1, 1, "installed"), D1),
        with_device(record("usps", 1, 2, "active"), D1),
    ];
    // Key 2: new, then installed in D2.
    let k2 = [
        record("usps", 2, 0, "new"),
        with_device(record("usps", 2, 1, "installed"), D2),
    ];
    // Key 4: never about a meter.
    let k4 = [record("usps", 4, 0, "new")];
    // Canada's key 1 is in D1 too, but in another install domain.
    let c1 = [with_device(record("canada", 1, 0, "installed"), D1)];
    for rows in [&k3[..], &k1[..], &k2[..], &k4[..], &c1[..]] {
        append_all(&s, rows).await;
    }

    assert_eq!(
        s.kms_latest_by_device("usps", D1).await.unwrap(),
        [k1[2].clone(), k3[1].clone()]
    );
    assert_eq!(
        s.kms_latest_by_device("usps", D2).await.unwrap(),
        [k2[1].clone()]
    );
    assert_eq!(s.kms_latest_by_device("usps", D3).await.unwrap(), []);
    assert_eq!(
        s.kms_latest_by_device("canada", D1).await.unwrap(),
        [c1[0].clone()]
    );
    assert_eq!(s.kms_latest_by_device("canada", D2).await.unwrap(), []);
    assert_eq!(s.kms_latest_by_device("nowhere", D1).await.unwrap(), []);

    // A newer record moves with the latest: key 2 goes bad.
    let bad = record("usps", 2, 2, "bad");
    s.kms_append(&bad).await.unwrap();
    assert_eq!(s.kms_latest_by_device("usps", D2).await.unwrap(), [bad]);
}

#[tokio::test]
async fn the_latest_record_of_each_key_in_a_sub_domain() {
    let (_dir, s) = fresh().await;
    for (i, name) in ["usps", "canada", "west", "east"].into_iter().enumerate() {
        s.kms_add_domain(&domain(name, u64::try_from(i).unwrap()))
            .await
            .unwrap();
    }
    for _ in 0..3 {
        s.kms_next_key_id("usps").await.unwrap();
    }
    for _ in 0..4 {
        s.kms_next_key_id("canada").await.unwrap();
    }
    // Appended so that neither insertion order nor key ids alone give the
    // expected order (domain, then key id).
    // usps key 3: serves west.
    let u3 = [in_sub_domain(record("usps", 3, 0, "new"), "west")];
    // canada key 4: serves west (a higher id than usps key 3, but canada
    // comes first).
    let c4 = [in_sub_domain(record("canada", 4, 0, "active"), "west")];
    // usps key 1: served west, now serves east.
    let u1 = [
        in_sub_domain(record("usps", 1, 0, "new"), "west"),
        in_sub_domain(record("usps", 1, 1, "active"), "west"),
        in_sub_domain(record("usps", 1, 2, "active"), "east"),
    ];
    // usps key 2: served west, now serves none.
    let u2 = [
        in_sub_domain(record("usps", 2, 0, "new"), "west"),
        record("usps", 2, 1, "obsolete"),
    ];
    for rows in [&u3[..], &c4[..], &u1[..], &u2[..]] {
        append_all(&s, rows).await;
    }

    assert_eq!(
        s.kms_latest_in_sub_domain("west").await.unwrap(),
        [c4[0].clone(), u3[0].clone()]
    );
    assert_eq!(
        s.kms_latest_in_sub_domain("east").await.unwrap(),
        [u1[2].clone()]
    );
    assert_eq!(s.kms_latest_in_sub_domain("usps").await.unwrap(), []);
    assert_eq!(s.kms_latest_in_sub_domain("nowhere").await.unwrap(), []);

    // usps key 3 moves to east: it leaves west.
    let moved = in_sub_domain(record("usps", 3, 1, "active"), "east");
    s.kms_append(&moved).await.unwrap();
    assert_eq!(
        s.kms_latest_in_sub_domain("west").await.unwrap(),
        [c4[0].clone()]
    );
    assert_eq!(
        s.kms_latest_in_sub_domain("east").await.unwrap(),
        [u1[2].clone(), moved]
    );
}

#[tokio::test]
async fn the_archive_survives_reopening() {
    let (dir, s) = fresh().await;
    s.kms_add_domain(&domain("usps", 1)).await.unwrap();
    s.kms_add_domain(&domain("west", 2)).await.unwrap();
    let k1 = s.kms_next_key_id("usps").await.unwrap();
    let k2 = s.kms_next_key_id("usps").await.unwrap();
    let history = [
        record("usps", k1, 0, "new"),
        in_sub_domain(with_device(record("usps", k1, 1, "installed"), D1), "west"),
    ];
    append_all(&s, &history).await;
    s.close().await;

    let s = SqliteStore::open(dir.path()).await.unwrap();
    assert_eq!(
        s.kms_domains().await.unwrap(),
        [domain("usps", 1), domain("west", 2)]
    );
    assert_eq!(s.kms_history("usps", k1).await.unwrap(), history);
    assert_eq!(
        s.kms_latest_by_device("usps", D1).await.unwrap(),
        [history[1].clone()]
    );
    assert_eq!(
        s.kms_latest_in_sub_domain("west").await.unwrap(),
        [history[1].clone()]
    );
    // Key ids go on from where they were, never reused; each domain's own.
    assert_eq!(s.kms_next_key_id("usps").await.unwrap(), k2 + 1);
    assert_eq!(s.kms_next_key_id("west").await.unwrap(), 1);
    // The history goes on too, checked against what was stored before.
    let r = s.kms_append(&record("usps", k1, 1, "active")).await;
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    let late = KmsRecordRow {
        time: history[1].time,
        ..record("usps", k1, 2, "active")
    };
    let r = s.kms_append(&late).await;
    assert!(matches!(r, Err(StoreError::Invalid { .. })), "{r:?}");
    s.kms_append(&record("usps", k1, 2, "active"))
        .await
        .unwrap();
    let r = s.kms_add_domain(&domain("usps", 9)).await;
    assert!(matches!(r, Err(StoreError::Duplicate { .. })), "{r:?}");
}
