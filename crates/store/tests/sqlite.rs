//! The behavioural suite on the SQLite backend (real database files in a
//! temporary directory), and what is particular to SQLite: reopening, the
//! audit log in its own file, and a database from a newer program.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod suite;

use postvault_store::sqlite::{AUDIT_DB, SqliteStore, VAULT_DB};
use postvault_store::{MeterTx, Store, StoreError};

async fn fresh() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    (dir, store)
}

macro_rules! suite_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_dir, store) = fresh().await;
            suite::$name(&store).await;
        }
    )*};
}

suite_tests!(
    packages_are_compare_and_swap,
    an_uncommitted_transaction_changes_nothing,
    the_module_table_is_compare_and_swap,
    certificates_and_customers_are_unique,
    indicia_are_idempotent_per_client_transaction,
    idempotency_keys_keep_the_first_reply,
    the_audit_log_appends_in_order,
    meter_transactions_are_serialised,
    session_counters_are_taken_once,
    purchases_are_unique_per_meter_and_listed_by_status,
    an_uncommitted_purchase_is_not_kept,
    refunds_are_requested_once_by_the_meter,
);

/// Session counters and the sessions' meters are in the database, not in
/// the process: a reopened store still refuses a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_counters_survive_reopening() {
    let (dir, store) = fresh().await;
    suite::session_counters_are_taken_once(&store).await;
    store.close().await;
    let again = SqliteStore::open(dir.path()).await.unwrap();
    suite::session_counters_are_remembered(&again).await;
}

#[tokio::test]
async fn data_survives_reopening_and_migrations_run_once() {
    let (dir, store) = fresh().await;
    let mut tx = store.begin().await.unwrap();
    tx.put_package(&suite::package(suite::D1, 3), None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    store.append_audit("m1", 0, &[vec![1, 2, 3]]).await.unwrap();
    store.close().await;
    let again = SqliteStore::open(dir.path()).await.unwrap();
    assert_eq!(
        again.package(suite::D1).await.unwrap(),
        Some(suite::package(suite::D1, 3))
    );
    assert_eq!(again.audit_next("m1").await.unwrap(), 1);
}

/// Restoring the vault database from a backup does not rewind the audit log,
/// which lives in its own file.
#[tokio::test]
async fn the_audit_log_is_kept_apart_from_the_vault_database() {
    let (dir, store) = fresh().await;
    store.close().await;
    let backup = dir.path().join("vault.backup");
    std::fs::copy(dir.path().join(VAULT_DB), &backup).unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.put_package(&suite::package(suite::D1, 1), None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    store.append_audit("m1", 0, &[vec![7]]).await.unwrap();
    store.close().await;
    // Restore the vault database (its WAL files go with the old state).
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("{VAULT_DB}{suffix}")));
    }
    std::fs::copy(&backup, dir.path().join(VAULT_DB)).unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    assert_eq!(
        store.package(suite::D1).await.unwrap(),
        None,
        "the vault rewound"
    );
    assert_eq!(store.audit_entries("m1", 0, 10).await.unwrap(), [vec![7]]);
    assert!(dir.path().join(AUDIT_DB).exists());
}

/// A database migrated by a newer program (a migration this one does not
/// know) is refused rather than used.
#[tokio::test]
async fn a_database_from_a_newer_program_is_refused() {
    let (dir, store) = fresh().await;
    let mut tx = store.begin().await.unwrap();
    tx.put_package(&suite::package(suite::D1, 1), None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    store.close().await;
    {
        use sqlx::Connection;
        let url = format!("sqlite://{}", dir.path().join(VAULT_DB).display());
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) \
             VALUES (99990101000000, 'from the future', CURRENT_TIMESTAMP, 1, x'00', 0)",
        )
        .execute(&mut c)
        .await
        .unwrap();
        c.close().await.unwrap();
    }
    let err = SqliteStore::open(dir.path()).await.unwrap_err();
    assert!(matches!(err, StoreError::Migration(_)), "{err:?}");
}
