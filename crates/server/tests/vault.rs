//! The vault over real parts: software modules in directories (sealed file
//! NVM), a SQLite store in files, the postal CA and the provider. A meter is
//! generated, configured, licensed and funded; indicia are printed, stored
//! before release, and retried idempotently; a restored (older) database is
//! refused by the module's checkpoint and charges nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::path::{Path, PathBuf};

use postvault_crypto::Secret32;
use postvault_crypto::hpke;
use postvault_crypto::sig::{SigAlg, SigningKey};
use postvault_indicium::cert::{PostalCa, Validity};
use postvault_indicium::{Date, DeviceId, Indicium, Money};
use postvault_module::account::NewAccount;
use postvault_module::cryptocard::{CardPublic, CardSettings};
use postvault_module::postal::{
    CustomerAction, CustomerReplyBody, CustomerRequest, CustomerRequestBody, IndiciumOrder,
    ProviderAction, ProviderOrder, SignedOrder, customer_secrets,
};
use postvault_module::psd::{PsdPackage, seal_customer_secrets};
use postvault_module::role::{Role, UserId};
use postvault_module::wire::{ModuleConfig, Outer, Password, Request, Response};
use postvault_module::{Error as ModuleError, PsdCheck};
use postvault_server::moduledir::power_on;
use postvault_server::{Vault, VaultError};
use postvault_store::Store;
use postvault_store::sqlite::{SqliteStore, VAULT_DB};

fn today() -> Date {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Date::from_unix_seconds(i64::try_from(now).unwrap()).unwrap()
}

struct Parties {
    ca: PostalCa,
    provider: SigningKey,
    validity: Validity,
}

/// A module initialised for tests (fast Argon2), with an MKS and the crypto-card.
fn new_module(dir: &Path, parties: &Parties) -> CardPublic {
    let mut host = power_on(dir).unwrap();
    let fast = postvault_crypto::password::Argon2Params::FAST_FOR_TESTS;
    host.call(Outer::StartInitialization(ModuleConfig {
        audit_sign_interval: 10,
        argon2_m_cost_kib: fast.m_cost_kib,
        argon2_t_cost: fast.t_cost,
    }))
    .unwrap();
    let pw = |u: &str| Password::new(format!("{u} passphrase").into_bytes());
    let accounts = [
        ("admin", Role::Administrator),
        ("so", Role::SecurityOfficer),
        ("kc1", Role::KeyCustodian),
        ("kc2", Role::KeyCustodian),
        ("kc3", Role::KeyCustodian),
    ]
    .map(|(u, role)| NewAccount {
        user: UserId::new(u).unwrap(),
        role,
        password: pw(u),
    })
    .to_vec();
    let mut s = host.open_session().unwrap();
    host.send(&mut s, &Request::InitializeAccessControl(accounts))
        .unwrap();
    host.send(
        &mut s,
        &Request::Logon {
            user: UserId::new("so").unwrap(),
            password: pw("so"),
        },
    )
    .unwrap();
    host.send(&mut s, &Request::GenerateMks).unwrap();
    let pk = parties.provider.public_key();
    let settings = CardSettings {
        provider_key: (pk.alg().id(), pk.as_bytes().to_vec()),
        ca_certificate: parties.ca.certificate().der().to_vec(),
        min_value: Money::from_tenths(10),
        max_value: Money::from_tenths(100_000),
        dr_ceiling: Money::from_tenths(5_000_000),
        ar_ceiling: postvault_indicium::indicium::MAX_REGISTER,
    };
    let Response::CryptoCard { public, .. } = host
        .send(
            &mut s,
            &Request::InitializeCryptoCard {
                settings,
                tokens: None,
            },
        )
        .unwrap()
    else {
        panic!()
    };
    host.send(&mut s, &Request::Logoff).unwrap();
    host.shutdown().unwrap();
    public
}

struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
    modules: Vec<PathBuf>,
    parties: Parties,
    card: CardPublic,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let t = today();
    let validity = Validity::new(
        t.checked_sub_days(1).unwrap(),
        t.checked_add_days(365).unwrap(),
    )
    .unwrap();
    let parties = Parties {
        ca: PostalCa::generate("Test Postal CA", validity).unwrap(),
        provider: SigningKey::generate(SigAlg::EcdsaP256Sha256).unwrap(),
        validity,
    };
    let module = dir.path().join("module-1");
    let card = new_module(&module, &parties);
    Fixture {
        data: dir.path().join("data"),
        modules: vec![module],
        _dir: dir,
        parties,
        card,
    }
}

/// The customer's side.
struct Client {
    hmk: Secret32,
    last: CustomerReplyBody,
}

impl Client {
    fn request(&self, device: DeviceId, postage: u64) -> CustomerRequest {
        CustomerRequest::sign(
            CustomerRequestBody {
                device_id: device.to_bytes(),
                challenge: self.last.challenge,
                local_ar: self.last.ar,
                local_dr: self.last.dr,
                action: CustomerAction::Indicium(IndiciumOrder {
                    postage: Money::from_tenths(postage),
                    mail_class: 1,
                    destination_zip: None,
                    software_id: 1,
                }),
            },
            &self.hmk,
        )
        .unwrap()
    }
}

async fn order(
    v: &Vault<SqliteStore>,
    f: &Fixture,
    device: DeviceId,
    action: ProviderAction,
) -> SignedOrder {
    let row = v.store().package(device.to_bytes()).await.unwrap().unwrap();
    SignedOrder::sign(
        ProviderOrder {
            device_id: device.to_bytes(),
            package_mac: row.mac,
            action,
        },
        &f.parties.provider,
    )
    .unwrap()
}

/// A Leased meter with `funds` tenths, and its client.
async fn funded_meter(v: &Vault<SqliteStore>, f: &Fixture, funds: u64) -> (DeviceId, Client) {
    let device = DeviceId::new(*b"PV", 42).unwrap();
    v.generate_meter(&f.parties.ca, device, 42, f.parties.validity, today())
        .await
        .unwrap();
    let hmk = Secret32::generate().unwrap();
    let sealed = seal_customer_secrets(
        &hpke::PublicKey::from_slice(&f.card.registration_hpke).unwrap(),
        &device.to_bytes(),
        "alice",
        &customer_secrets(&hmk, [5; 32]),
    )
    .unwrap();
    let reply = v.configure(device, "alice", sealed).await.unwrap();
    let mut last = reply.verify(&hmk).unwrap().clone();
    let authorize = order(
        v,
        f,
        device,
        ProviderAction::AuthorizeCustomer {
            licensing_zip: 12_345 * 10_000,
            dr_limit: Money::from_tenths(2_000_000),
        },
    )
    .await;
    v.provider(device, authorize).await.unwrap();
    let download = order(
        v,
        f,
        device,
        ProviderAction::Download {
            amount: Money::from_tenths(funds),
            control_total: Money::ZERO,
        },
    )
    .await;
    v.provider(device, download).await.unwrap();
    last.dr = Money::from_tenths(funds);
    (device, Client { hmk, last })
}

fn registers(package: &[u8]) -> (u64, u64) {
    let b = PsdPackage::decode(package).unwrap().peek().unwrap();
    (b.ar.tenths(), b.dr.tenths())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indicia_are_stored_before_release_and_retries_charge_once() {
    let f = fixture();
    let store = SqliteStore::open(&f.data).await.unwrap();
    let v = Vault::open(store, &f.modules).await.unwrap();
    let (device, mut client) = funded_meter(&v, &f, 10_000).await;
    let cert = v
        .store()
        .certificate(device.to_bytes())
        .await
        .unwrap()
        .unwrap();
    let key = postvault_indicium::Certificate::from_der(&cert)
        .unwrap()
        .public_key()
        .unwrap()
        .clone();

    // Print with a client transaction id; the same request again is the same answer.
    let request = client.request(device, 730);
    let first = v
        .customer(device, "alice", request.clone(), Some("t-1"))
        .await
        .unwrap();
    let again = v
        .customer(device, "alice", request, Some("t-1"))
        .await
        .unwrap();
    assert_eq!(first, again, "a retry returns the same reply");
    client.last = first.verify(&client.hmk).unwrap().clone();
    let indicium = Indicium::parse(client.last.indicium.as_ref().unwrap()).unwrap();
    indicium.verify_signature(&key).unwrap();
    let row = v.store().package(device.to_bytes()).await.unwrap().unwrap();
    assert_eq!(registers(&row.package), (730, 9_270), "charged once");
    let stored = v.store().indicia_of("alice", 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].bytes, indicium.to_bytes());
    assert_eq!(stored[0].client_txn.as_deref(), Some("t-1"));

    // A second print goes on from the new challenge.
    let second = v
        .customer(device, "alice", client.request(device, 100), Some("t-2"))
        .await
        .unwrap();
    client.last = second.verify(&client.hmk).unwrap().clone();
    assert_eq!(
        (client.last.ar.tenths(), client.last.dr.tenths()),
        (830, 9_170)
    );
    // A replayed request under a new transaction id is refused by the module.
    let stale = CustomerRequest::sign(
        CustomerRequestBody {
            challenge: first.body.echoed,
            ..client.request(device, 100).body
        },
        &client.hmk,
    )
    .unwrap();
    let err = v
        .customer(device, "alice", stale, Some("t-3"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            VaultError::Module(ModuleError::PsdCheck(PsdCheck::Challenge))
        ),
        "{err:?}"
    );
    let row = v.store().package(device.to_bytes()).await.unwrap().unwrap();
    assert_eq!(registers(&row.package), (830, 9_170));

    // Every module audit entry reached the store, in order, and verifies.
    let serial = v.store().modules().await.unwrap()[0].serial.clone();
    let entries = v.store().audit_entries(&serial, 0, 10_000).await.unwrap();
    let log = std::fs::read(f.modules[0].join("audit.log")).unwrap();
    assert!(!entries.is_empty());
    assert!(
        log.ends_with(&entries.concat()),
        "the store holds the tail of the module's own log"
    );
    v.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_older_database_is_refused_and_charges_nothing() {
    let f = fixture();
    let store = SqliteStore::open(&f.data).await.unwrap();
    let v = Vault::open(store, &f.modules).await.unwrap();
    let (device, mut client) = funded_meter(&v, &f, 10_000).await;
    // Back up the database, then go on printing.
    v.store().close().await;
    drop(v);
    let backup = f.data.join("backup.db");
    std::fs::copy(f.data.join(VAULT_DB), &backup).unwrap();
    let store = SqliteStore::open(&f.data).await.unwrap();
    let v = Vault::open(store, &f.modules).await.unwrap();
    for (n, postage) in [500, 600, 700].into_iter().enumerate() {
        let reply = v
            .customer(
                device,
                "alice",
                client.request(device, postage),
                Some(&format!("p{n}")),
            )
            .await
            .unwrap();
        client.last = reply.verify(&client.hmk).unwrap().clone();
    }
    v.shutdown().unwrap();
    v.store().close().await;
    drop(v);

    // The database is restored from the backup: three transactions behind the module.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(f.data.join(format!("{VAULT_DB}{suffix}")));
    }
    std::fs::copy(&backup, f.data.join(VAULT_DB)).unwrap();
    let store = SqliteStore::open(&f.data).await.unwrap();
    let v = Vault::open(store, &f.modules).await.unwrap();
    let before = v.store().package(device.to_bytes()).await.unwrap().unwrap();
    let old_client = Client {
        hmk: client.hmk.clone(),
        last: {
            // What the restored package expects: its challenge and registers.
            let b = PsdPackage::decode(&before.package).unwrap().peek().unwrap();
            CustomerReplyBody {
                challenge: b.last_challenge,
                ar: b.ar,
                dr: b.dr,
                ..client.last.clone()
            }
        },
    };
    let err = v
        .customer(
            device,
            "alice",
            old_client.request(device, 100),
            Some("after"),
        )
        .await
        .unwrap_err();
    // The restore is found at open: PSD work stops at once, naming the
    // checkpoint mismatch.
    assert!(
        matches!(err, VaultError::Halted { mismatches: 1 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("checkpoint mismatches"), "{err}");
    assert_eq!(v.halted(), (true, 1));
    let after = v.store().package(device.to_bytes()).await.unwrap().unwrap();
    assert_eq!(after, before, "nothing charged");
    assert_eq!(registers(&after.package), (0, 10_000));
    v.shutdown().unwrap();
}

/// Runs one SQL statement on a database file beside the open store (as an
/// attacker with access to the database would).
async fn tamper(path: &Path, sql: &'static str, value: Vec<u8>, key: Vec<u8>) {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let done = sqlx::query(sql)
        .bind(value)
        .bind(key)
        .execute(&mut c)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_package_is_refused_and_a_tampered_audit_entry_is_named() {
    let f = fixture();
    let store = SqliteStore::open(&f.data).await.unwrap();
    let v = Vault::open(store, &f.modules).await.unwrap();
    let (device, mut client) = funded_meter(&v, &f, 10_000).await;
    let reply = v
        .customer(device, "alice", client.request(device, 500), Some("a"))
        .await
        .unwrap();
    client.last = reply.verify(&client.hmk).unwrap().clone();
    let summaries = v.verify_audit().await.unwrap();
    assert_eq!(summaries.len(), 1);
    assert_eq!(
        summaries[0].expected_head_at,
        Some(summaries[0].entries - 1)
    );

    // One byte of the stored package: the module refuses it; nothing is charged.
    let good = v.store().package(device.to_bytes()).await.unwrap().unwrap();
    let mut bad = good.package.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    let db = f.data.join(VAULT_DB);
    tamper(
        &db,
        "UPDATE packages SET package = ? WHERE device_id = ?",
        bad.clone(),
        device.to_bytes().to_vec(),
    )
    .await;
    let err = v
        .customer(device, "alice", client.request(device, 100), Some("b"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            VaultError::Module(ModuleError::PsdCheck(PsdCheck::PackageMac))
        ),
        "{err:?}"
    );
    let after = v.store().package(device.to_bytes()).await.unwrap().unwrap();
    assert_eq!(after.package, bad, "nothing was written");
    assert!(v.store().indicia_of("alice", 10).await.unwrap().len() == 1);
    // Put back, the package works again.
    tamper(
        &db,
        "UPDATE packages SET package = ? WHERE device_id = ?",
        good.package.clone(),
        device.to_bytes().to_vec(),
    )
    .await;
    let reply = v
        .customer(device, "alice", client.request(device, 100), Some("b"))
        .await
        .unwrap();
    assert_eq!(reply.verify(&client.hmk).unwrap().ar.tenths(), 600);

    // One byte of a stored audit entry: verification names that entry.
    let serial = v.store().modules().await.unwrap()[0].serial.clone();
    let entries = v.store().audit_entries(&serial, 3, 1).await.unwrap();
    let mut entry = entries[0].clone();
    let mid = entry.len() / 2;
    entry[mid] ^= 0x40;
    tamper(
        &f.data.join(postvault_store::sqlite::AUDIT_DB),
        "UPDATE audit_entries SET entry = ? WHERE seq = 3 AND module_serial = CAST(? AS TEXT)",
        entry,
        serial.clone().into_bytes(),
    )
    .await;
    let err = v.verify_audit().await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&serial) && text.contains("entry 3"), "{text}");
    v.shutdown().unwrap();
}

/// A failure after the module ran but before commit (here: the CA's serial is
/// already used by another meter) stores nothing, and the module is brought
/// back to the module table's record, so the vault keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_before_commit_stores_nothing_and_the_vault_keeps_serving() {
    let f = fixture();
    let store = SqliteStore::open(&f.data).await.unwrap();
    let v = Vault::open(store, &f.modules).await.unwrap();
    let (device, mut client) = funded_meter(&v, &f, 10_000).await;
    let other = DeviceId::new(*b"PV", 43).unwrap();
    let err = v
        .generate_meter(&f.parties.ca, other, 42, f.parties.validity, today())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            VaultError::Store(postvault_store::StoreError::Duplicate { .. })
        ),
        "{err:?}"
    );
    assert_eq!(v.store().package(other.to_bytes()).await.unwrap(), None);
    // The module was two transactions ahead of the module table; it is back,
    // and both the old meter and a properly numbered new one work.
    let reply = v
        .customer(device, "alice", client.request(device, 250), Some("after"))
        .await
        .unwrap();
    client.last = reply.verify(&client.hmk).unwrap().clone();
    assert_eq!(client.last.ar.tenths(), 250);
    v.generate_meter(&f.parties.ca, other, 43, f.parties.validity, today())
        .await
        .unwrap();
    v.verify_audit().await.unwrap();
    v.shutdown().unwrap();
}

/// A host that died partway through appending an entry leaves a torn last
/// record: at power-on the log is cut back to its last whole record (the torn
/// bytes kept aside) and the module's journal gives the entry back, so the log
/// verifies again, whole.
#[tokio::test]
async fn a_torn_audit_log_is_mended_from_the_module_journal_at_power_on() {
    let f = fixture();
    let dir = f.modules[0].clone();
    let log = dir.join(postvault_server::moduledir::AUDIT_LOG);
    let whole = std::fs::read(&log).unwrap();
    let entries = postvault_module::audit::parse_log(&whole).unwrap();
    // Tear the last record: keep only part of it.
    let last = entries.last().unwrap().to_stored().unwrap();
    let torn_at = whole.len() - last.len() / 2;
    std::fs::write(&log, &whole[..torn_at]).unwrap();
    assert!(postvault_module::audit::parse_log(&whole[..torn_at]).is_err());

    let mut host = postvault_server::moduledir::power_on(&dir).unwrap();
    let mended = std::fs::read(&log).unwrap();
    assert!(
        mended.starts_with(&whole),
        "the lost record is back, byte for byte, before the new boot entry"
    );
    let summary = postvault_module::audit::verify_log(&mended, None).unwrap();
    assert_eq!(summary.entries, entries.len() + 1, "the boot entry follows");
    assert_eq!(
        std::fs::read(dir.join("audit.log.torn")).unwrap(),
        whole[whole.len() - last.len()..torn_at].to_vec()
    );
    host.shutdown().unwrap();
}

/// A domain master key sealed by "steel" to the module's vendor key for one
/// meter, domain, key id and role (message MI5).
fn sealed_key(
    f: &Fixture,
    key: &Secret32,
    domain: &str,
    key_id: u64,
    device: DeviceId,
    role: u8,
) -> Vec<u8> {
    hpke::seal(
        &hpke::PublicKey(f.card.registration_hpke),
        postvault_indicium::token::INSTALL_INFO,
        &postvault_indicium::token::install_aad(domain, key_id, device.to_bytes(), role),
        key.expose(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_domain_master_key_is_installed_once_and_only_for_its_meter() {
    use postvault_indicium::token;
    use postvault_module::psd::DomainRole::{Postal, Vendor};
    let f = fixture();
    let store = SqliteStore::open(&f.data).await.unwrap();
    let v = Vault::open(store, &f.modules).await.unwrap();
    let device = DeviceId::new(*b"PV", 42).unwrap();
    v.generate_meter(&f.parties.ca, device, 42, f.parties.validity, today())
        .await
        .unwrap();
    fn refused<T: std::fmt::Debug>(r: Result<T, VaultError>, check: PsdCheck) {
        match r {
            Err(VaultError::Module(ModuleError::PsdCheck(c))) => assert_eq!(c, check),
            other => panic!("expected {check:?}, got {other:?}"),
        }
    }
    let (kv, kp) = (Secret32::generate().unwrap(), Secret32::generate().unwrap());
    // MI5 → MI6: the meter's test tokens are the key's.
    let tokens = v
        .install_domain_key(
            device,
            Vendor,
            "VE",
            1,
            sealed_key(&f, &kv, "VE", 1, device, 1),
        )
        .await
        .unwrap();
    assert_eq!(tokens, token::test_tokens(&kv, "VE").unwrap());
    // Once per role, and never the same key again.
    refused(
        v.install_domain_key(
            device,
            Vendor,
            "VE",
            2,
            sealed_key(&f, &kv, "VE", 2, device, 1),
        )
        .await,
        PsdCheck::DomainKeyInstalled,
    );
    // A key sealed for another meter, key id, domain or role does not open.
    let other = DeviceId::new(*b"PV", 43).unwrap();
    for sealed in [
        sealed_key(&f, &kp, "USPS", 1, other, 2),
        sealed_key(&f, &kp, "USPS", 2, device, 2),
        sealed_key(&f, &kp, "UKRM", 1, device, 2),
        sealed_key(&f, &kp, "USPS", 1, device, 1),
        vec![0; 80],
    ] {
        refused(
            v.install_domain_key(device, Postal, "USPS", 1, sealed)
                .await,
            PsdCheck::DomainKey,
        );
    }
    v.install_domain_key(
        device,
        Postal,
        "USPS",
        1,
        sealed_key(&f, &kp, "USPS", 1, device, 2),
    )
    .await
    .unwrap();
    // MR1: a registration token under each key; the same facts again give
    // the same reports; another country is refused.
    let (reports, date) = v.register_domain_keys(device, "N42", "US").await.unwrap();
    let facts = token::RegistrationFacts {
        device,
        indicia_number: "N42".into(),
        country: "US".into(),
        date: Date::from_days(date),
    };
    assert_eq!(reports.len(), 2);
    for (_, domain, _, t) in &reports {
        let k = if domain == "VE" { &kv } else { &kp };
        assert_eq!(*t, token::registration_token(k, domain, &facts).unwrap());
    }
    assert_eq!(
        v.register_domain_keys(device, "N42", "US").await.unwrap(),
        (reports, date)
    );
    refused(
        v.register_domain_keys(device, "N42", "GB").await,
        PsdCheck::KeysRegistered,
    );
    refused(
        v.install_domain_key(
            device,
            Postal,
            "USPS",
            3,
            sealed_key(&f, &kp, "USPS", 3, device, 2),
        )
        .await,
        PsdCheck::DomainKeyInstalled,
    );
}
