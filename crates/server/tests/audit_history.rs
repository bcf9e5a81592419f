//! The AR history check over real module audit logs: a pool of in-memory
//! modules sharing one MKS (a master and a clone made by the share ceremony)
//! and one crypto-card, the postal CA, the provider, "the database" (each
//! meter's package and the module table's checkpoint record per module) and
//! each meter's customer. PSD commands go straight to each module's host
//! (`Outer::Postal`), and the logs reach the check through their stored form.
//!
//! An honest history over both modules passes with the right counts; a package
//! replayed from a restored database on the module that did not see its newer
//! state is named as a package sequence used twice; a transaction Auto-Recover
//! (or the security officer's recovery) discarded and then done again from the
//! same package is not; a missing log shows as a gap; doctored registers are named.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::collections::BTreeMap;

use postvault_crypto::Secret32;
use postvault_crypto::hpke;
use postvault_crypto::sig::{SigAlg, SigningKey};
use postvault_indicium::cert::{PostalCa, Validity};
use postvault_indicium::{Date, DeviceId, Money};
use postvault_module::account::NewAccount;
use postvault_module::audit::{AuditData, AuditEntry, parse_log, verify_log};
use postvault_module::checkpoint::{CheckpointBody, CheckpointRecord, Transaction};
use postvault_module::cryptocard::{CardPublic, CardSettings};
use postvault_module::host::Host;
use postvault_module::nvm::MemNvm;
use postvault_module::postal::{
    CustomerAction, CustomerRequest, CustomerRequestBody, IndiciumOrder, PostalCommand,
    PostalOutcome, PostalReply, PostalRequest, ProviderAction, ProviderOrder, SignedOrder,
    customer_secrets,
};
use postvault_module::psd::{PsdPackage, seal_customer_secrets};
use postvault_module::role::{Role, UserId};
use postvault_module::session::HostSession;
use postvault_module::wire::{ModuleConfig, Outer, OuterReply, Password, Request, Response};
use postvault_module::{Error as ModuleError, ManualClock, Module, PsdCheck};
use postvault_server::audit::{
    EntryRef, HistoryError, HistoryReport, MeterId, check_register_history,
};

/// Module time in every test (2023-11-14), inside the CA's validity.
const T0: u64 = 1_700_000_000;
const A: u32 = 4_711;
const B: u32 = 4_712;

fn device(serial: u32) -> [u8; 6] {
    DeviceId::new(*b"PV", serial).unwrap().to_bytes()
}

fn tenths(n: u64) -> Money {
    Money::from_tenths(n)
}

fn uid(u: &str) -> UserId {
    UserId::new(u).unwrap()
}

fn password(u: &str) -> Password {
    Password::new(format!("{u}: correct horse battery staple").into_bytes())
}

fn validity() -> Validity {
    Validity::new(
        Date::from_ymd(2023, 1, 1).unwrap(),
        Date::from_ymd(2027, 12, 31).unwrap(),
    )
    .unwrap()
}

/// A module in memory with its host, which collects the audit entries.
struct Hsm {
    host: Host<MemNvm, Vec<AuditEntry>>,
    session: Option<HostSession>,
}

impl Hsm {
    /// Start Initialization (fast Argon2) and the operator team.
    fn initialized() -> Self {
        let module = Module::new(MemNvm::new(), Box::new(ManualClock::at(T0)));
        let mut hsm = Self {
            host: Host::new(module, Vec::new()),
            session: None,
        };
        let reply = hsm
            .host
            .call(Outer::StartInitialization(ModuleConfig::for_tests()))
            .unwrap();
        assert!(matches!(reply, OuterReply::Initialized { .. }), "{reply:?}");
        let team = [
            ("admin", Role::Administrator),
            ("so", Role::SecurityOfficer),
            ("kc1", Role::KeyCustodian),
            ("kc2", Role::KeyCustodian),
            ("kc3", Role::KeyCustodian),
        ]
        .map(|(u, role)| NewAccount {
            user: uid(u),
            role,
            password: password(u),
        })
        .to_vec();
        let r = hsm.send(Request::InitializeAccessControl(team)).unwrap();
        assert!(matches!(r, Response::Done), "{r:?}");
        hsm
    }

    fn send(&mut self, req: Request) -> postvault_module::Result<Response> {
        if self.session.is_none() {
            self.session = Some(self.host.open_session().unwrap());
        }
        let session = self.session.as_mut().unwrap();
        self.host.send(session, &req)
    }

    /// Logs `user` on, sends one request, logs off; the request must succeed.
    fn as_user(&mut self, user: &str, req: Request) -> Response {
        let r = self
            .send(Request::Logon {
                user: uid(user),
                password: password(user),
            })
            .unwrap();
        assert!(matches!(r, Response::CurrentUser(..)), "{r:?}");
        let out = self.send(req);
        self.send(Request::Logoff).unwrap();
        out.unwrap()
    }

    fn serial(&mut self) -> String {
        self.host.status().unwrap().serial.unwrap()
    }

    fn fingerprint(&mut self) -> [u8; 32] {
        let (alg, key) = self.host.status().unwrap().audit_key.unwrap();
        postvault_module::mks::key_fingerprint(alg, &key)
    }
}

/// A customer's side of one meter.
#[derive(Clone)]
struct Client {
    hmk: Secret32,
    challenge: [u8; 16],
    ar: Money,
    dr: Money,
}

/// What the database holds: packages, the module table, the customers' state.
#[derive(Clone)]
struct Db {
    packages: BTreeMap<[u8; 6], PsdPackage>,
    checkpoints: Vec<Option<CheckpointRecord>>,
    clients: BTreeMap<[u8; 6], Client>,
}

struct Pool {
    modules: Vec<Hsm>,
    serials: Vec<String>,
    ca: PostalCa,
    provider: SigningKey,
    card: CardPublic,
    db: Db,
}

impl Pool {
    /// `n` modules sharing the master's MKS (clones by the share ceremony) and
    /// one crypto-card.
    fn new(n: usize) -> Self {
        let mut master = Hsm::initialized();
        let Response::Mks(info) = master.as_user("so", Request::GenerateMks) else {
            panic!("no MKS")
        };
        let mut modules = vec![master];
        for _ in 1..n {
            let mut clone = Hsm::initialized();
            let Response::TransportKey(destination) =
                clone.as_user("so", Request::GenerateTransportKey)
            else {
                panic!("no transport key")
            };
            let master = &mut modules[0];
            let r = master.as_user(
                "so",
                Request::CreateMksShares {
                    shares: 3,
                    threshold: 2,
                    exportable: false,
                },
            );
            assert!(matches!(r, Response::SharesCreated { .. }), "{r:?}");
            let shares: Vec<Vec<u8>> = (1..=3)
                .map(|i| {
                    match master.as_user(&format!("kc{i}"), Request::ExportShare { destination }) {
                        Response::Share { share, .. } => share,
                        r => panic!("{r:?}"),
                    }
                })
                .collect();
            for (kc, share) in ["kc1", "kc2"].iter().zip(&shares) {
                let r = clone.as_user(kc, Request::ImportShare(share.clone()));
                assert!(matches!(r, Response::ShareImported { .. }), "{r:?}");
            }
            let source = master.fingerprint();
            let Response::Mks(combined) = clone.as_user("so", Request::CombineShares { source })
            else {
                panic!("shares not combined")
            };
            assert_eq!(combined.id, info.id, "the clone holds the master's MKS");
            modules.push(clone);
        }

        let ca = PostalCa::generate("Test Postal CA", validity()).unwrap();
        let provider = SigningKey::generate(SigAlg::EcdsaP256Sha256).unwrap();
        let pk = provider.public_key();
        let settings = CardSettings {
            provider_key: (pk.alg().id(), pk.as_bytes().to_vec()),
            ca_certificate: ca.certificate().der().to_vec(),
            min_value: tenths(10),
            max_value: tenths(100_000),
            dr_ceiling: tenths(5_000_000),
            ar_ceiling: postvault_indicium::indicium::MAX_REGISTER,
        };
        let mut card = None;
        let mut tokens = None;
        for m in &mut modules {
            let Response::CryptoCard { public, tokens: t } = m.as_user(
                "so",
                Request::InitializeCryptoCard {
                    settings: settings.clone(),
                    tokens: tokens.clone(),
                },
            ) else {
                panic!("no crypto-card")
            };
            card.get_or_insert(public);
            tokens.get_or_insert(t);
        }
        let serials = modules.iter_mut().map(Hsm::serial).collect();
        Self {
            db: Db {
                packages: BTreeMap::new(),
                checkpoints: vec![None; modules.len()],
                clients: BTreeMap::new(),
            },
            modules,
            serials,
            ca,
            provider,
            card: card.unwrap(),
        }
    }

    /// A postal command on module `m` with the module table's record for it;
    /// on success the table takes the new record (the caller keeps the package).
    fn run(&mut self, m: usize, command: PostalCommand) -> postvault_module::Result<PostalReply> {
        let request = PostalRequest {
            checkpoint: self.db.checkpoints[m].clone(),
            command,
        };
        match self.modules[m]
            .host
            .call(Outer::Postal(Box::new(request)))?
        {
            OuterReply::Postal(r) => {
                self.db.checkpoints[m] = Some(r.checkpoint.clone());
                self.db
                    .packages
                    .insert(r.package.peek().unwrap().device_id, r.package.clone());
                Ok(*r)
            }
            r => panic!("{r:?}"),
        }
    }

    fn package(&self, d: [u8; 6]) -> PsdPackage {
        self.db.packages[&d].clone()
    }

    /// Initialize PSD and Authorize PSD with a certificate from the CA.
    fn generate(&mut self, m: usize, d: [u8; 6]) {
        let reply = self
            .run(m, PostalCommand::Initialize { device_id: d })
            .unwrap();
        let PostalOutcome::Initialized {
            certificate_request,
            ..
        } = &reply.outcome
        else {
            panic!("{:?}", reply.outcome)
        };
        let serial = DeviceId::from_bytes(d).unwrap().serial();
        let certificate = self
            .ca
            .issue_from_request(certificate_request, serial, validity())
            .unwrap()
            .certificate()
            .der()
            .to_vec();
        self.run(
            m,
            PostalCommand::Authorize {
                package: self.package(d),
                certificate,
            },
        )
        .unwrap();
    }

    /// Configure PSD for a new customer.
    fn configure(&mut self, m: usize, d: [u8; 6]) {
        let customer_id = format!("customer-{}", MeterId(d).hex());
        let hmk = Secret32::generate().unwrap();
        let sealed_secrets = seal_customer_secrets(
            &hpke::PublicKey::from_slice(&self.card.registration_hpke).unwrap(),
            &d,
            &customer_id,
            &customer_secrets(&hmk, postvault_crypto::rand::bytes().unwrap()),
        )
        .unwrap();
        let reply = self
            .run(
                m,
                PostalCommand::Configure {
                    package: self.package(d),
                    customer_id: customer_id.clone(),
                    sealed_secrets,
                },
            )
            .unwrap();
        let PostalOutcome::Customer(r) = &reply.outcome else {
            panic!("{:?}", reply.outcome)
        };
        let body = r.verify(&hmk).unwrap();
        let client = Client {
            challenge: body.challenge,
            ar: body.ar,
            dr: body.dr,
            hmk,
        };
        self.db.clients.insert(d, client);
    }

    fn provider(
        &mut self,
        m: usize,
        d: [u8; 6],
        action: ProviderAction,
    ) -> postvault_module::Result<PostalReply> {
        let package = self.package(d);
        let order = SignedOrder::sign(
            ProviderOrder {
                device_id: d,
                package_mac: package.mac,
                action,
            },
            &self.provider,
        )
        .unwrap();
        self.run(m, PostalCommand::Provider { package, order })
    }

    fn authorize_customer(&mut self, m: usize, d: [u8; 6]) {
        let action = ProviderAction::AuthorizeCustomer {
            licensing_zip: 12_345 * 10_000 + 6_789,
            dr_limit: tenths(2_000_000),
        };
        self.provider(m, d, action).unwrap();
    }

    fn download(&mut self, m: usize, d: [u8; 6], amount: u64) {
        let b = self.package(d).peek().unwrap();
        let action = ProviderAction::Download {
            amount: tenths(amount),
            control_total: b.ar.checked_add(b.dr).unwrap(),
        };
        let reply = self.provider(m, d, action).unwrap();
        // The client learns its new DR with its next reply; keep it in step here.
        let b = reply.package.peek().unwrap();
        let c = self.db.clients.get_mut(&d).unwrap();
        (c.ar, c.dr) = (b.ar, b.dr);
    }

    fn refund(&mut self, m: usize, d: [u8; 6]) {
        let reply = self.provider(m, d, ProviderAction::Refund).unwrap();
        assert!(matches!(reply.outcome, PostalOutcome::Refund { .. }));
    }

    /// A customer request on the database's package; returns the indicium.
    fn customer(
        &mut self,
        m: usize,
        d: [u8; 6],
        action: CustomerAction,
    ) -> postvault_module::Result<Vec<u8>> {
        let c = self.db.clients[&d].clone();
        let request = CustomerRequest::sign(
            CustomerRequestBody {
                device_id: d,
                challenge: c.challenge,
                local_ar: c.ar,
                local_dr: c.dr,
                action,
            },
            &c.hmk,
        )
        .unwrap();
        let reply = self.run(
            m,
            PostalCommand::Customer {
                package: self.package(d),
                request,
            },
        )?;
        let PostalOutcome::Customer(r) = &reply.outcome else {
            panic!("{:?}", reply.outcome)
        };
        let body = r.verify(&c.hmk).unwrap().clone();
        let client = self.db.clients.get_mut(&d).unwrap();
        (client.challenge, client.ar, client.dr) = (body.challenge, body.ar, body.dr);
        Ok(body.indicium.unwrap())
    }

    fn print(&mut self, m: usize, d: [u8; 6], postage: u64) -> postvault_module::Result<Vec<u8>> {
        self.customer(m, d, CustomerAction::Indicium(order(postage)))
    }

    /// Auto-Recover on module `m` with the module table's record.
    fn auto_recover(&mut self, m: usize) -> postvault_module::Result<usize> {
        let checkpoint = self.db.checkpoints[m].clone().unwrap();
        match self.modules[m]
            .host
            .call(Outer::AutoRecoverCheckpoint { checkpoint })?
        {
            OuterReply::Recovered { discarded } => Ok(discarded),
            r => panic!("{r:?}"),
        }
    }

    /// Where module `m`'s last entry is, checking it records a PSD transaction.
    fn last_psd(&self, m: usize) -> (EntryRef, CheckpointBody) {
        let body = self.modules[m]
            .host
            .sink
            .last()
            .unwrap()
            .decode_body()
            .unwrap();
        let AuditData::Psd(tx) = body.data else {
            panic!("not a PSD entry: {:?}", body.data)
        };
        let at = EntryRef {
            module: self.serials[m].clone(),
            seq: body.seq,
        };
        (at, *tx)
    }

    /// Every module's log as the store keeps it (each verifies), parsed back.
    fn logs(&self) -> Vec<(String, Vec<AuditEntry>)> {
        self.modules
            .iter()
            .zip(&self.serials)
            .map(|(hsm, serial)| {
                let bytes: Vec<u8> = hsm
                    .host
                    .sink
                    .iter()
                    .flat_map(|e| e.to_stored().unwrap())
                    .collect();
                let summary = verify_log(&bytes, None).unwrap();
                assert_eq!(&summary.serial, serial);
                (serial.clone(), parse_log(&bytes).unwrap())
            })
            .collect()
    }
}

fn order(postage: u64) -> IndiciumOrder {
    IndiciumOrder {
        postage: tenths(postage),
        mail_class: 3,
        destination_zip: Some(54_321 * 10_000),
        software_id: 7,
    }
}

/// A one-module pool with meter A Leased and funded with 50 000 (five transactions).
fn funded() -> Pool {
    let mut p = Pool::new(1);
    let a = device(A);
    p.generate(0, a);
    p.configure(0, a);
    p.authorize_customer(0, a);
    p.download(0, a, 50_000);
    p
}

/// How many PSD transactions the logs record, all meters and modules.
fn psd_entries(logs: &[(String, Vec<AuditEntry>)]) -> usize {
    logs.iter()
        .flat_map(|(_, entries)| entries)
        .filter(|e| matches!(e.decode_body().unwrap().data, AuditData::Psd(_)))
        .count()
}

/// Rewrites one entry's PSD transaction (as someone with write access to the
/// audit store might; the chain and signature no longer verify, but the
/// history check reads the registers on their own).
fn doctor(
    logs: &mut [(String, Vec<AuditEntry>)],
    at: &EntryRef,
    change: impl FnOnce(&mut CheckpointBody),
) {
    let (_, entries) = logs.iter_mut().find(|(s, _)| *s == at.module).unwrap();
    let entry = entries
        .iter_mut()
        .find(|e| e.decode_body().unwrap().seq == at.seq)
        .unwrap();
    let mut body = entry.decode_body().unwrap();
    let AuditData::Psd(tx) = &mut body.data else {
        panic!("not a PSD entry")
    };
    change(tx);
    entry.body = postvault_module::codec::encode(&body).unwrap();
}

#[test]
fn an_honest_history_over_two_modules_passes_with_its_counts() {
    let mut p = Pool::new(2);
    let (a, b) = (device(A), device(B));
    // Meter A, its transactions alternating between the master and the clone:
    // 11 transactions, package sequences 0..=10.
    p.generate(0, a); // Initialize, Authorize
    p.configure(1, a);
    p.authorize_customer(0, a);
    p.download(1, a, 50_000);
    let first = p.print(0, a, 1_000).unwrap();
    p.print(1, a, 2_500).unwrap();
    p.download(0, a, 10_000);
    p.customer(1, a, CustomerAction::Correction(order(300)))
        .unwrap();
    let today = Date::from_unix_seconds(i64::try_from(T0).unwrap()).unwrap();
    p.customer(
        0,
        a,
        CustomerAction::Redate {
            original: first,
            date: today.days(),
        },
    )
    .unwrap();
    p.refund(1, a);
    let (_, last) = p.last_psd(1);
    assert_eq!(
        (last.transaction, last.package_sequence, last.amount),
        (Transaction::Refund, 10, tenths(56_200))
    );
    assert_eq!((last.ar, last.dr), (tenths(60_000), Money::ZERO));
    // Meter B, generated on the clone: 6 transactions.
    p.generate(1, b);
    p.configure(0, b);
    p.authorize_customer(1, b);
    p.download(0, b, 20_000);
    p.print(1, b, 700).unwrap();

    let logs = p.logs();
    assert_eq!(psd_entries(&logs), 17);
    let report = check_register_history(&logs).unwrap();
    assert_eq!(
        report,
        HistoryReport {
            meters: 2,
            transactions: 17,
            discarded: 0,
        }
    );
    // The order of the logs does not matter.
    let reversed: Vec<_> = logs.iter().rev().cloned().collect();
    assert_eq!(check_register_history(&reversed).unwrap(), report);
    // Each log alone misses the other module's transactions: a gap.
    let err = check_register_history(&logs[..1]).unwrap_err();
    assert!(
        matches!(
            err,
            HistoryError::SequenceGap { meter, previous: 1, next: 3, .. } if meter == MeterId(a)
        ),
        "{err:?}"
    );
    // The same log twice is a caller's mistake, not a replay.
    let twice = [logs[0].clone(), logs[0].clone()];
    assert!(matches!(
        check_register_history(&twice).unwrap_err(),
        HistoryError::DuplicateModule { .. }
    ));
}

/// The database is restored from a backup; the module that moved the meter on
/// refuses the old package (its checkpoint), but the clone, which never saw
/// the meter, accepts it: each module alone is satisfied, and only the history
/// across both shows the old package used twice.
#[test]
fn a_package_replayed_on_another_module_is_named_as_a_sequence_used_twice() {
    let mut p = Pool::new(2);
    let a = device(A);
    p.generate(0, a);
    p.configure(0, a);
    p.authorize_customer(0, a);
    p.download(0, a, 50_000);
    p.print(0, a, 1_000).unwrap();
    assert_eq!(
        check_register_history(&p.logs()).unwrap(),
        HistoryReport {
            meters: 1,
            transactions: 6,
            discarded: 0,
        }
    );
    let backup = p.db.clone();
    p.print(0, a, 2_000).unwrap();
    let (first, tx) = p.last_psd(0);
    assert_eq!(tx.package_sequence, 6);
    assert_eq!(check_register_history(&p.logs()).unwrap().transactions, 7);

    p.db = backup;
    let err = p.print(0, a, 500).unwrap_err();
    assert_eq!(err, ModuleError::PsdCheck(PsdCheck::CheckpointMismatch));
    p.print(1, a, 500).unwrap();
    let (second, tx) = p.last_psd(1);
    assert_eq!(tx.package_sequence, 6);

    let err = check_register_history(&p.logs()).unwrap_err();
    assert_eq!(
        err,
        HistoryError::SequenceReused {
            meter: MeterId(a),
            sequence: 6,
            first: first.clone(),
            second: second.clone(),
        }
    );
    let text = err.to_string();
    assert!(
        text.contains("package sequence 6 used twice")
            && text.contains(&MeterId(a).hex())
            && text.contains(&format!("module {} entry {}", first.module, first.seq))
            && text.contains(&format!("module {} entry {}", second.module, second.seq)),
        "{text}"
    );
}

/// Auto-Recover discards a transaction the database lost; the same package
/// then carries a new transaction at the same sequence (and, the module's
/// counter rolled back, the same checkpoint counter): not a replay.
#[test]
fn a_transaction_discarded_by_auto_recover_and_done_again_is_not_a_replay() {
    let mut p = funded();
    let a = device(A);
    p.print(0, a, 1_000).unwrap();
    let backup = p.db.clone();
    p.print(0, a, 2_000).unwrap();
    let (lost, lost_tx) = p.last_psd(0);

    p.db = backup;
    assert_eq!(
        p.print(0, a, 500).unwrap_err(),
        ModuleError::PsdCheck(PsdCheck::CheckpointMismatch)
    );
    assert_eq!(p.auto_recover(0).unwrap(), 1);
    p.print(0, a, 500).unwrap();
    let (redone, redone_tx) = p.last_psd(0);
    assert_eq!(redone_tx.package_sequence, lost_tx.package_sequence);
    assert_eq!(redone_tx.counter, lost_tx.counter);
    assert_ne!(redone_tx.package_mac, lost_tx.package_mac);

    let logs = p.logs();
    assert_eq!(psd_entries(&logs), 8);
    assert_eq!(
        check_register_history(&logs).unwrap(),
        HistoryReport {
            meters: 1,
            transactions: 7,
            discarded: 1,
        }
    );
    // Without the Discarded entry the same log is a replay.
    let mut hidden = logs.clone();
    hidden[0]
        .1
        .retain(|e| !matches!(e.decode_body().unwrap().data, AuditData::Discarded(_)));
    assert_eq!(
        check_register_history(&hidden).unwrap_err(),
        HistoryError::SequenceReused {
            meter: MeterId(a),
            sequence: lost_tx.package_sequence,
            first: lost,
            second: redone,
        }
    );
}

/// Three transactions behind inhibits the module; the security officer's
/// recovery discards all three (one `CheckpointRecovered` entry), and the
/// package they started from is used again.
#[test]
fn transactions_discarded_by_the_security_officers_recovery_are_not_replays() {
    let mut p = funded();
    let a = device(A);
    let backup = p.db.clone();
    for postage in [100, 200, 300] {
        p.print(0, a, postage).unwrap();
    }
    p.db = backup;
    assert_eq!(
        p.auto_recover(0).unwrap_err(),
        ModuleError::PsdCheck(PsdCheck::Inhibited)
    );
    let record = p.db.checkpoints[0].clone().unwrap();
    let r = p.modules[0].as_user("so", Request::RecoverCheckpoint(record));
    assert!(matches!(r, Response::Done), "{r:?}");
    p.print(0, a, 400).unwrap();
    p.print(0, a, 100).unwrap();

    let logs = p.logs();
    assert_eq!(psd_entries(&logs), 10);
    assert_eq!(
        check_register_history(&logs).unwrap(),
        HistoryReport {
            meters: 1,
            transactions: 7,
            discarded: 3,
        }
    );
    // Without the recovery entry, the first print after it reuses sequence 5.
    let mut hidden = logs.clone();
    hidden[0].1.retain(|e| {
        !matches!(
            e.decode_body().unwrap().data,
            AuditData::CheckpointRecovered { .. }
        )
    });
    assert!(
        matches!(
            check_register_history(&hidden).unwrap_err(),
            HistoryError::SequenceReused { sequence: 5, .. }
        ),
        "{:?}",
        check_register_history(&hidden)
    );
}

/// Registers that do not follow from the amounts are named with the entry.
#[test]
fn doctored_registers_are_named() {
    let mut p = funded();
    let a = device(A);
    let (download, _) = p.last_psd(0);
    p.print(0, a, 1_000).unwrap();
    let (print, _) = p.last_psd(0);
    p.print(0, a, 2_000).unwrap();
    let (second, _) = p.last_psd(0);
    let logs = p.logs();
    check_register_history(&logs).unwrap();

    // A download that recorded more than it moved.
    let mut bad = logs.clone();
    doctor(&mut bad, &download, |tx| tx.amount = tenths(40_000));
    let err = check_register_history(&bad).unwrap_err();
    let HistoryError::Registers {
        meter,
        sequence,
        transaction,
        expected,
        after,
        entry,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (*meter, *sequence, *transaction, entry),
        (MeterId(a), 4, Transaction::Download, &download)
    );
    assert_eq!(expected.unwrap().dr, tenths(40_000));
    assert_eq!(after.dr, tenths(50_000));
    assert!(err.to_string().contains("do not add up"), "{err}");

    // An indicium whose AR did not move.
    let mut bad = logs.clone();
    doctor(&mut bad, &print, |tx| tx.ar = Money::ZERO);
    let err = check_register_history(&bad).unwrap_err();
    assert!(
        matches!(
            &err,
            HistoryError::Registers { sequence: 5, expected: Some(e), entry, .. }
                if *entry == print && e.ar == tenths(1_000)
        ),
        "{err:?}"
    );

    // An indicium whose AR went back.
    let mut bad = logs;
    doctor(&mut bad, &second, |tx| tx.ar = tenths(500));
    let err = check_register_history(&bad).unwrap_err();
    assert_eq!(
        err,
        HistoryError::ArDecreased {
            meter: MeterId(a),
            sequence: 6,
            before: tenths(1_000),
            after: tenths(500),
            entry: second,
        }
    );
}
