//! The SQLite backend: two database files in one directory, `vault.db` (the
//! vault's records) and `audit.db` (the audit log), each in WAL mode with full
//! synchronous commits, foreign keys on, and its own versioned migrations.
//! A write transaction is `BEGIN IMMEDIATE`: SQLite's write lock, held from
//! the first read of a package to commit, is the meter lock (for the whole
//! database; a PostgreSQL backend locks the package row instead).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::error::ErrorKind;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use crate::{
    CustomerRow, IndiciumRow, KMS_KEY_STATUSES, KmsDomainRow, KmsRecordRow, MeterTx, ModuleRow,
    PackageRow, PurchaseRow, PurchaseStatus, Result, Store, StoreError,
};

static MAIN_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/main");
static AUDIT_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/audit");

/// The vault database's file name.
pub const VAULT_DB: &str = "vault.db";
/// The audit database's file name.
pub const AUDIT_DB: &str = "audit.db";

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// Maps a failed write: a uniqueness violation is [`StoreError::Duplicate`].
fn write_error(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match e.as_database_error().map(|d| d.kind()) {
        Some(ErrorKind::UniqueViolation) => StoreError::Duplicate { what },
        _ => db(e),
    }
}

fn to_i64(v: u64, what: &'static str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid { what })
}

fn to_u64(v: i64, what: &'static str) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Invalid { what })
}

fn to_u32(v: i64, what: &'static str) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Invalid { what })
}

fn fixed<const N: usize>(v: Vec<u8>, what: &'static str) -> Result<[u8; N]> {
    <[u8; N]>::try_from(v).map_err(|_| StoreError::Invalid { what })
}

/// The store over a directory.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    main: SqlitePool,
    audit: SqlitePool,
}

async fn pool(path: &Path, migrator: &Migrator) -> Result<SqlitePool> {
    let url = format!("sqlite://{}", path.display());
    let options = SqliteConnectOptions::from_str(&url)
        .map_err(db)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(30));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .map_err(db)?;
    migrator
        .run(&pool)
        .await
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    Ok(pool)
}

impl SqliteStore {
    /// Opens (creating if needed) the two databases in `dir` and brings them
    /// to the current schema.
    ///
    /// # Errors
    /// [`StoreError::Database`] if a file cannot be opened;
    /// [`StoreError::Migration`] if a schema cannot be brought up to date
    /// (including a database made by a newer program).
    pub async fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(e.to_string()))?;
        Ok(Self {
            main: pool(&dir.join(VAULT_DB), &MAIN_MIGRATIONS).await?,
            audit: pool(&dir.join(AUDIT_DB), &AUDIT_MIGRATIONS).await?,
        })
    }

    /// Closes both pools (waits for connections to be returned).
    pub async fn close(&self) {
        self.main.close().await;
        self.audit.close().await;
    }
}

fn package_row(r: &SqliteRow) -> Result<PackageRow> {
    Ok(PackageRow {
        device_id: fixed(r.try_get("device_id").map_err(db)?, "device id")?,
        package: r.try_get("package").map_err(db)?,
        mac: fixed(r.try_get("mac").map_err(db)?, "package MAC")?,
        customer_id: r.try_get("customer_id").map_err(db)?,
    })
}

fn indicium_row(r: &SqliteRow) -> Result<IndiciumRow> {
    Ok(IndiciumRow {
        id: r.try_get("id").map_err(db)?,
        device_id: fixed(r.try_get("device_id").map_err(db)?, "device id")?,
        customer_id: r.try_get("customer_id").map_err(db)?,
        client_txn: r.try_get("client_txn").map_err(db)?,
        kind: r.try_get("kind").map_err(db)?,
        postage: to_u64(r.try_get("postage").map_err(db)?, "postage")?,
        ascending_register: to_u64(
            r.try_get("ascending_register").map_err(db)?,
            "ascending register",
        )?,
        mail_piece_key: fixed(r.try_get("mail_piece_key").map_err(db)?, "mail-piece key")?,
        bytes: r.try_get("bytes").map_err(db)?,
        refund_requested: r
            .try_get::<Option<i64>, _>("refund_requested_at")
            .map_err(db)?
            .is_some(),
    })
}

fn purchase_row(r: &SqliteRow) -> Result<PurchaseRow> {
    Ok(PurchaseRow {
        device_id: fixed(r.try_get("device_id").map_err(db)?, "device id")?,
        id: r.try_get("id").map_err(db)?,
        amount: to_u64(r.try_get("amount").map_err(db)?, "amount")?,
        control_total: to_u64(r.try_get("control_total").map_err(db)?, "control total")?,
        status: PurchaseStatus::from_name(&r.try_get::<String, _>("status").map_err(db)?)?,
    })
}

fn kms_domain_row(r: &SqliteRow) -> Result<KmsDomainRow> {
    Ok(KmsDomainRow {
        domain: r.try_get("domain").map_err(db)?,
        directory: r.try_get("directory").map_err(db)?,
        sealed_keys: r.try_get("sealed_keys").map_err(db)?,
        created: to_u64(r.try_get("created").map_err(db)?, "domain creation time")?,
    })
}

fn kms_record_row(r: &SqliteRow) -> Result<KmsRecordRow> {
    Ok(KmsRecordRow {
        domain: r.try_get("domain").map_err(db)?,
        key_id: to_u64(r.try_get("key_id").map_err(db)?, "key id")?,
        seq: to_u32(r.try_get("seq").map_err(db)?, "key record number")?,
        sub_domain: r.try_get("sub_domain").map_err(db)?,
        device: r
            .try_get::<Option<Vec<u8>>, _>("device")
            .map_err(db)?
            .map(|d| fixed(d, "device id"))
            .transpose()?,
        status: r.try_get("status").map_err(db)?,
        time: to_u64(r.try_get("time").map_err(db)?, "key record time")?,
        signer: r.try_get("signer").map_err(db)?,
        record: r.try_get("record").map_err(db)?,
    })
}

/// Whether the archive has this domain (read in `conn`'s transaction, if any).
async fn kms_domain_exists(conn: &mut sqlx::SqliteConnection, domain: &str) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM kms_domains WHERE domain = ?")
        .bind(domain)
        .fetch_optional(conn)
        .await
        .map_err(db)?;
    Ok(found.is_some())
}

const INDICIUM_COLUMNS: &str = "id, device_id, customer_id, client_txn, kind, postage, \
     ascending_register, mail_piece_key, bytes, refund_requested_at";
const PURCHASE_COLUMNS: &str = "device_id, id, amount, control_total, status";
const KMS_RECORD_COLUMNS: &str =
    "r.domain, r.key_id, r.seq, r.sub_domain, r.device, r.status, r.time, r.signer, r.record";
/// Keeps only a key's latest record (`r` is the record).
const KMS_LATEST: &str = "r.seq = (SELECT max(l.seq) FROM kms_records l \
     WHERE l.domain = r.domain AND l.key_id = r.key_id)";

impl Store for SqliteStore {
    type Tx = SqliteTx;

    async fn begin(&self) -> Result<SqliteTx> {
        Ok(SqliteTx {
            tx: self.main.begin_with("BEGIN IMMEDIATE").await.map_err(db)?,
        })
    }

    async fn modules(&self) -> Result<Vec<ModuleRow>> {
        let rows = sqlx::query("SELECT serial, location FROM modules ORDER BY added_at, serial")
            .fetch_all(&self.main)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(ModuleRow {
                    serial: r.try_get("serial").map_err(db)?,
                    location: r.try_get("location").map_err(db)?,
                })
            })
            .collect()
    }

    async fn checkpoint(&self, serial: &str) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT checkpoint FROM module_table WHERE serial = ?")
            .bind(serial)
            .fetch_optional(&self.main)
            .await
            .map_err(db)
    }

    async fn package(&self, device_id: [u8; 6]) -> Result<Option<PackageRow>> {
        let row = sqlx::query(
            "SELECT device_id, package, mac, customer_id FROM packages WHERE device_id = ?",
        )
        .bind(device_id.to_vec())
        .fetch_optional(&self.main)
        .await
        .map_err(db)?;
        row.as_ref().map(package_row).transpose()
    }

    async fn certificate(&self, device_id: [u8; 6]) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT der FROM certificates WHERE device_id = ?")
            .bind(device_id.to_vec())
            .fetch_optional(&self.main)
            .await
            .map_err(db)
    }

    async fn customer(&self, id: &str) -> Result<Option<CustomerRow>> {
        let row = sqlx::query("SELECT id, device_id, record FROM customers WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.main)
            .await
            .map_err(db)?;
        row.map(|r| {
            Ok(CustomerRow {
                id: r.try_get("id").map_err(db)?,
                device_id: r
                    .try_get::<Option<Vec<u8>>, _>("device_id")
                    .map_err(db)?
                    .map(|d| fixed(d, "device id"))
                    .transpose()?,
                record: r.try_get("record").map_err(db)?,
            })
        })
        .transpose()
    }

    async fn take_session_counter(
        &self,
        id: [u8; 32],
        device_id: [u8; 6],
        counter: u64,
    ) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO sessions (id, device_id, last_counter, created_at) \
             VALUES (?, ?, ?, unixepoch()) \
             ON CONFLICT (id) DO UPDATE SET last_counter = excluded.last_counter \
             WHERE sessions.last_counter < excluded.last_counter \
             AND sessions.device_id = excluded.device_id",
        )
        .bind(id.to_vec())
        .bind(device_id.to_vec())
        .bind(to_i64(counter, "message counter")?)
        .execute(&self.main)
        .await
        .map_err(db)?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Replayed {
                what: "session message counter (a replayed or reordered message)",
            })
        }
    }

    async fn purchase(&self, device_id: [u8; 6], id: &str) -> Result<Option<PurchaseRow>> {
        let sql =
            format!("SELECT {PURCHASE_COLUMNS} FROM purchases WHERE device_id = ? AND id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(device_id.to_vec())
            .bind(id)
            .fetch_optional(&self.main)
            .await
            .map_err(db)?;
        row.as_ref().map(purchase_row).transpose()
    }

    async fn purchases(&self, status: PurchaseStatus, limit: u32) -> Result<Vec<PurchaseRow>> {
        let sql = format!(
            "SELECT {PURCHASE_COLUMNS} FROM purchases WHERE status = ? \
             ORDER BY created_at, rowid LIMIT ?"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(status.name())
            .bind(i64::from(limit))
            .fetch_all(&self.main)
            .await
            .map_err(db)?;
        rows.iter().map(purchase_row).collect()
    }

    async fn request_refund(&self, device_id: [u8; 6], indicium_id: i64) -> Result<()> {
        let done = sqlx::query(
            "UPDATE indicia SET refund_requested_at = unixepoch() \
             WHERE id = ? AND device_id = ? AND refund_requested_at IS NULL \
             AND kind IN ('postage', 'correction')",
        )
        .bind(indicium_id)
        .bind(device_id.to_vec())
        .execute(&self.main)
        .await
        .map_err(db)?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT id FROM indicia WHERE id = ? AND device_id = ?")
                .bind(indicium_id)
                .bind(device_id.to_vec())
                .fetch_optional(&self.main)
                .await
                .map_err(db)?;
        match exists {
            None => Err(StoreError::NotFound {
                what: "this meter has no indicium with that id",
            }),
            Some(_) => Err(StoreError::Conflict {
                what: "the refund was asked for already, or the indicium is not postage or a correction",
            }),
        }
    }

    async fn refunds_requested(&self, limit: u32) -> Result<Vec<IndiciumRow>> {
        let sql = format!(
            "SELECT {INDICIUM_COLUMNS} FROM indicia WHERE refund_requested_at IS NOT NULL \
             ORDER BY refund_requested_at, id LIMIT ?"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(limit))
            .fetch_all(&self.main)
            .await
            .map_err(db)?;
        rows.iter().map(indicium_row).collect()
    }

    async fn indicium(&self, id: i64) -> Result<Option<IndiciumRow>> {
        let sql = format!("SELECT {INDICIUM_COLUMNS} FROM indicia WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.main)
            .await
            .map_err(db)?;
        row.as_ref().map(indicium_row).transpose()
    }

    async fn indicia_of(&self, customer_id: &str, limit: u32) -> Result<Vec<IndiciumRow>> {
        let sql = format!(
            "SELECT {INDICIUM_COLUMNS} FROM indicia WHERE customer_id = ? ORDER BY id DESC LIMIT ?"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(customer_id)
            .bind(i64::from(limit))
            .fetch_all(&self.main)
            .await
            .map_err(db)?;
        rows.iter().map(indicium_row).collect()
    }

    async fn pieces(&self, mail_piece_key: [u8; 32]) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM indicia WHERE mail_piece_key = ?")
            .bind(mail_piece_key.to_vec())
            .fetch_one(&self.main)
            .await
            .map_err(db)?;
        to_u64(n, "count")
    }

    async fn append_audit(
        &self,
        module_serial: &str,
        first_seq: u64,
        entries: &[Vec<u8>],
    ) -> Result<()> {
        let mut tx = self.audit.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let next: Option<i64> =
            sqlx::query_scalar("SELECT max(seq) + 1 FROM audit_entries WHERE module_serial = ?")
                .bind(module_serial)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        let expected = to_u64(next.unwrap_or(0), "sequence number")?;
        if first_seq != expected {
            return Err(StoreError::AuditGap {
                module: module_serial.to_owned(),
                expected,
                got: first_seq,
            });
        }
        let mut seq = to_i64(first_seq, "sequence number")?;
        for entry in entries {
            sqlx::query(
                "INSERT INTO audit_entries (module_serial, seq, entry, stored_at) \
                 VALUES (?, ?, ?, unixepoch())",
            )
            .bind(module_serial)
            .bind(seq)
            .bind(entry)
            .execute(&mut *tx)
            .await
            .map_err(write_error("audit entry"))?;
            seq = seq.checked_add(1).ok_or(StoreError::Invalid {
                what: "sequence number",
            })?;
        }
        tx.commit().await.map_err(db)
    }

    async fn audit_entries(
        &self,
        module_serial: &str,
        from_seq: u64,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>> {
        sqlx::query_scalar(
            "SELECT entry FROM audit_entries WHERE module_serial = ? AND seq >= ? \
             ORDER BY seq LIMIT ?",
        )
        .bind(module_serial)
        .bind(to_i64(from_seq, "sequence number")?)
        .bind(i64::from(limit))
        .fetch_all(&self.audit)
        .await
        .map_err(db)
    }

    async fn audit_next(&self, module_serial: &str) -> Result<u64> {
        let next: Option<i64> =
            sqlx::query_scalar("SELECT max(seq) + 1 FROM audit_entries WHERE module_serial = ?")
                .bind(module_serial)
                .fetch_one(&self.audit)
                .await
                .map_err(db)?;
        to_u64(next.unwrap_or(0), "sequence number")
    }

    async fn kms_add_domain(&self, row: &KmsDomainRow) -> Result<()> {
        let created = to_i64(row.created, "domain creation time")?;
        let mut tx = self.main.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        sqlx::query(
            "INSERT INTO kms_domains (domain, directory, sealed_keys, created) VALUES (?, ?, ?, ?)",
        )
        .bind(&row.domain)
        .bind(&row.directory)
        .bind(&row.sealed_keys)
        .bind(created)
        .execute(&mut *tx)
        .await
        .map_err(write_error("KMS domain (the archive has it already)"))?;
        sqlx::query("INSERT INTO kms_key_ids (domain, last_key_id) VALUES (?, 0)")
            .bind(&row.domain)
            .execute(&mut *tx)
            .await
            .map_err(write_error("KMS domain key id counter"))?;
        tx.commit().await.map_err(db)
    }

    async fn kms_domains(&self) -> Result<Vec<KmsDomainRow>> {
        let rows = sqlx::query(
            "SELECT domain, directory, sealed_keys, created FROM kms_domains \
             ORDER BY created, domain",
        )
        .fetch_all(&self.main)
        .await
        .map_err(db)?;
        rows.iter().map(kms_domain_row).collect()
    }

    async fn kms_next_key_id(&self, domain: &str) -> Result<u64> {
        // One statement: SQLite's write lock makes the increment and the read
        // of its result atomic, so concurrent callers get distinct ids.
        let next: Option<i64> = sqlx::query_scalar(
            "UPDATE kms_key_ids SET last_key_id = last_key_id + 1 \
             WHERE domain = ? AND last_key_id < 9223372036854775807 RETURNING last_key_id",
        )
        .bind(domain)
        .fetch_optional(&self.main)
        .await
        .map_err(db)?;
        if let Some(id) = next {
            return to_u64(id, "key id");
        }
        let mut conn = self.main.acquire().await.map_err(db)?;
        if kms_domain_exists(&mut conn, domain).await? {
            Err(StoreError::Invalid {
                what: "the domain's key ids are exhausted",
            })
        } else {
            Err(StoreError::NotFound {
                what: "no such KMS domain (add it first)",
            })
        }
    }

    async fn kms_history(&self, domain: &str, key_id: u64) -> Result<Vec<KmsRecordRow>> {
        // A key id above i64::MAX was never allocated: it has no records.
        let Ok(key_id) = i64::try_from(key_id) else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT {KMS_RECORD_COLUMNS} FROM kms_records r \
             WHERE r.domain = ? AND r.key_id = ? ORDER BY r.seq"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(domain)
            .bind(key_id)
            .fetch_all(&self.main)
            .await
            .map_err(db)?;
        rows.iter().map(kms_record_row).collect()
    }

    async fn kms_append(&self, row: &KmsRecordRow) -> Result<()> {
        // BEGIN IMMEDIATE takes the write lock before the checks, so two
        // appends to one key cannot both see the same history.
        let mut tx = self.main.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        if !kms_domain_exists(&mut tx, &row.domain).await? {
            return Err(StoreError::NotFound {
                what: "no such KMS domain (add it first)",
            });
        }
        if let Some(sub) = &row.sub_domain
            && !kms_domain_exists(&mut tx, sub).await?
        {
            return Err(StoreError::NotFound {
                what: "no such KMS sub-domain (add it first)",
            });
        }
        let last: i64 = sqlx::query_scalar("SELECT last_key_id FROM kms_key_ids WHERE domain = ?")
            .bind(&row.domain)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or(StoreError::NotFound {
                what: "the KMS domain has no key id counter",
            })?;
        let key_id = match i64::try_from(row.key_id) {
            Ok(id) if id > 0 && id <= last => id,
            _ => {
                return Err(StoreError::Invalid {
                    what: "key id never allocated in this domain",
                });
            }
        };
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM kms_records WHERE domain = ? AND key_id = ?")
                .bind(&row.domain)
                .bind(key_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        if i64::from(row.seq) != stored {
            return Err(StoreError::Conflict {
                what: "the key's history changed since it was read (record number)",
            });
        }
        let time = to_i64(row.time, "key record time")?;
        let latest: Option<i64> = sqlx::query_scalar(
            "SELECT time FROM kms_records WHERE domain = ? AND key_id = ? \
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(&row.domain)
        .bind(key_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if latest.is_some_and(|t| time <= t) {
            return Err(StoreError::Invalid {
                what: "time events must increase",
            });
        }
        if !KMS_KEY_STATUSES.contains(&row.status.as_str()) {
            return Err(StoreError::Invalid {
                what: "key status (new, installed, bad, active or obsolete)",
            });
        }
        sqlx::query(
            "INSERT INTO kms_records \
             (domain, key_id, seq, sub_domain, device, status, time, signer, record) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&row.domain)
        .bind(key_id)
        .bind(i64::from(row.seq))
        .bind(&row.sub_domain)
        .bind(row.device.map(|d| d.to_vec()))
        .bind(&row.status)
        .bind(time)
        .bind(&row.signer)
        .bind(&row.record)
        .execute(&mut *tx)
        .await
        .map_err(write_error("key record"))?;
        tx.commit().await.map_err(db)
    }

    async fn kms_latest_by_device(
        &self,
        domain: &str,
        device: [u8; 6],
    ) -> Result<Vec<KmsRecordRow>> {
        let sql = format!(
            "SELECT {KMS_RECORD_COLUMNS} FROM kms_records r WHERE r.domain = ? \
             AND r.key_id IN (SELECT d.key_id FROM kms_records d \
             WHERE d.domain = ? AND d.device = ?) \
             AND {KMS_LATEST} ORDER BY r.key_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(domain)
            .bind(domain)
            .bind(device.to_vec())
            .fetch_all(&self.main)
            .await
            .map_err(db)?;
        rows.iter().map(kms_record_row).collect()
    }

    async fn kms_latest_in_sub_domain(&self, sub_domain: &str) -> Result<Vec<KmsRecordRow>> {
        let sql = format!(
            "SELECT {KMS_RECORD_COLUMNS} FROM kms_records r WHERE r.sub_domain = ? \
             AND {KMS_LATEST} ORDER BY r.domain, r.key_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(sub_domain)
            .fetch_all(&self.main)
            .await
            .map_err(db)?;
        rows.iter().map(kms_record_row).collect()
    }
}

/// A write transaction on the vault database.
pub struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
}

impl MeterTx for SqliteTx {
    async fn lock_meter(&mut self, device_id: [u8; 6]) -> Result<Option<PackageRow>> {
        let row = sqlx::query(
            "SELECT device_id, package, mac, customer_id FROM packages WHERE device_id = ?",
        )
        .bind(device_id.to_vec())
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(db)?;
        row.as_ref().map(package_row).transpose()
    }

    async fn put_package(&mut self, row: &PackageRow, expected: Option<[u8; 32]>) -> Result<()> {
        let stored: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT mac FROM packages WHERE device_id = ?")
                .bind(row.device_id.to_vec())
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(db)?;
        if stored.as_deref() != expected.as_ref().map(<[u8; 32]>::as_slice) {
            return Err(StoreError::Conflict {
                what: "the meter's package changed since it was read",
            });
        }
        sqlx::query(
            "INSERT INTO packages (device_id, package, mac, customer_id, updated_at) \
             VALUES (?, ?, ?, ?, unixepoch()) \
             ON CONFLICT (device_id) DO UPDATE SET package = excluded.package, \
             mac = excluded.mac, customer_id = excluded.customer_id, updated_at = excluded.updated_at",
        )
        .bind(row.device_id.to_vec())
        .bind(&row.package)
        .bind(row.mac.to_vec())
        .bind(&row.customer_id)
        .execute(&mut *self.tx)
        .await
        .map_err(write_error("package"))?;
        Ok(())
    }

    async fn put_checkpoint(
        &mut self,
        serial: &str,
        record: &[u8],
        expected: Option<&[u8]>,
    ) -> Result<()> {
        let stored: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT checkpoint FROM module_table WHERE serial = ?")
                .bind(serial)
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(db)?;
        if stored.as_deref() != expected {
            return Err(StoreError::Conflict {
                what: "the module table's record changed since it was read",
            });
        }
        sqlx::query(
            "INSERT INTO module_table (serial, checkpoint, updated_at) VALUES (?, ?, unixepoch()) \
             ON CONFLICT (serial) DO UPDATE SET checkpoint = excluded.checkpoint, \
             updated_at = excluded.updated_at",
        )
        .bind(serial)
        .bind(record)
        .execute(&mut *self.tx)
        .await
        .map_err(write_error("checkpoint"))?;
        Ok(())
    }

    async fn add_module(&mut self, row: &ModuleRow) -> Result<()> {
        sqlx::query("INSERT INTO modules (serial, location, added_at) VALUES (?, ?, unixepoch())")
            .bind(&row.serial)
            .bind(&row.location)
            .execute(&mut *self.tx)
            .await
            .map_err(write_error("module serial"))?;
        Ok(())
    }

    async fn put_certificate(&mut self, device_id: [u8; 6], serial: u32, der: &[u8]) -> Result<()> {
        sqlx::query("INSERT INTO certificates (device_id, serial, der) VALUES (?, ?, ?)")
            .bind(device_id.to_vec())
            .bind(i64::from(serial))
            .bind(der)
            .execute(&mut *self.tx)
            .await
            .map_err(write_error("certificate (device id or serial)"))?;
        Ok(())
    }

    async fn put_customer(
        &mut self,
        id: &str,
        device_id: Option<[u8; 6]>,
        record: &[u8],
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO customers (id, device_id, record, created_at) \
             VALUES (?, ?, ?, unixepoch()) \
             ON CONFLICT (id) DO UPDATE SET device_id = excluded.device_id, \
             record = excluded.record",
        )
        .bind(id)
        .bind(device_id.map(|d| d.to_vec()))
        .bind(record)
        .execute(&mut *self.tx)
        .await
        .map_err(write_error("customer (a meter has one customer)"))?;
        Ok(())
    }

    async fn checkpoint(&mut self, serial: &str) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT checkpoint FROM module_table WHERE serial = ?")
            .bind(serial)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db)
    }

    async fn put_purchase(&mut self, row: &PurchaseRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO purchases (device_id, id, amount, control_total, status, created_at) \
             VALUES (?, ?, ?, ?, ?, unixepoch())",
        )
        .bind(row.device_id.to_vec())
        .bind(&row.id)
        .bind(to_i64(row.amount, "amount")?)
        .bind(to_i64(row.control_total, "control total")?)
        .bind(row.status.name())
        .execute(&mut *self.tx)
        .await
        .map_err(write_error("purchase id for this meter"))?;
        Ok(())
    }

    async fn set_purchase_status(
        &mut self,
        device_id: [u8; 6],
        id: &str,
        status: PurchaseStatus,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE purchases SET status = ? WHERE device_id = ? AND id = ? AND status = 'pending'",
        )
        .bind(status.name())
        .bind(device_id.to_vec())
        .bind(id)
        .execute(&mut *self.tx)
        .await
        .map_err(db)?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound {
                what: "no such pending purchase",
            })
        }
    }

    async fn insert_indicium(&mut self, row: &IndiciumRow) -> Result<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO indicia (device_id, customer_id, client_txn, kind, postage, \
             ascending_register, mail_piece_key, bytes, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, unixepoch()) RETURNING id",
        )
        .bind(row.device_id.to_vec())
        .bind(&row.customer_id)
        .bind(&row.client_txn)
        .bind(&row.kind)
        .bind(to_i64(row.postage, "postage")?)
        .bind(to_i64(row.ascending_register, "ascending register")?)
        .bind(row.mail_piece_key.to_vec())
        .bind(&row.bytes)
        .fetch_one(&mut *self.tx)
        .await
        .map_err(write_error("indicium for this client transaction id"))?;
        Ok(id)
    }

    async fn indicium_by_txn(
        &mut self,
        device_id: [u8; 6],
        client_txn: &str,
    ) -> Result<Option<IndiciumRow>> {
        let sql = format!(
            "SELECT {INDICIUM_COLUMNS} FROM indicia WHERE device_id = ? AND client_txn = ?"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(device_id.to_vec())
            .bind(client_txn)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db)?;
        row.as_ref().map(indicium_row).transpose()
    }

    async fn idempotent(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT response FROM idempotency WHERE key = ?")
            .bind(key)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db)
    }

    async fn put_idempotent(&mut self, key: &str, response: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO idempotency (key, response, created_at) VALUES (?, ?, unixepoch())",
        )
        .bind(key)
        .bind(response)
        .execute(&mut *self.tx)
        .await
        .map_err(write_error("idempotency key"))?;
        Ok(())
    }

    async fn commit(self) -> Result<()> {
        self.tx.commit().await.map_err(db)
    }
}
