//! A real `postvault serve` killed and restarted under a stream of create-indicium
//! requests, a vault database restored from an older copy, and a tampered
//! package: after each, a checker proves that nothing the client was given is
//! lost, nothing is charged twice, and what must be refused is refused.
//!
//! The crash test prints its seed; `POSTVAULT_CRASH_SEED=N` replays the same
//! kill delays and postage values (the interleaving with the server is still
//! the machine's).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::server::TestVault;
use common::text;
use postvault_client::{ClientError, Connection, Customer, Registration};
use postvault_crypto::password::Argon2Params;
use postvault_indicium::Money;
use postvault_module::postal::{CustomerAction, IndiciumOrder};

/// SIGKILLs in the crash test.
const KILLS: usize = 24;
/// Indicia one customer asks for at most (history answers at most 1000).
const MAX_PRINTS: usize = 900;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

/// xorshift64*: enough randomness for delays and postage, and replayable.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn seed() -> u64 {
    std::env::var("POSTVAULT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            t.as_secs() ^ u64::from(t.subsec_nanos()).rotate_left(32)
        })
}

fn addr_of(url: &str) -> SocketAddr {
    url.strip_prefix("http://").unwrap().parse().unwrap()
}

/// A TCP proxy on a fixed local port in front of whichever server runs now, so
/// the client keeps one address across restarts (as behind a load balancer).
/// It also tells whether a request is at the server and unanswered.
struct Proxy {
    url: String,
    backend: Arc<Mutex<Option<SocketAddr>>>,
    /// Connections whose last bytes went to the server (a request waiting for its reply).
    awaiting: Arc<AtomicUsize>,
    /// Connections the server closed while a request waited for its reply.
    cut: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(backend: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let backend = Arc::new(Mutex::new(Some(backend)));
        let awaiting = Arc::new(AtomicUsize::new(0));
        let cut = Arc::new(AtomicUsize::new(0));
        let (b, a, x) = (backend.clone(), awaiting.clone(), cut.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let target = *b.lock().unwrap();
                let Some(server) = target.and_then(|t| TcpStream::connect(t).ok()) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                Self::pipe(client, server, a.clone(), x.clone());
            }
        });
        Self {
            url,
            backend,
            awaiting,
            cut,
        }
    }

    fn pipe(
        client: TcpStream,
        server: TcpStream,
        awaiting: Arc<AtomicUsize>,
        cut: Arc<AtomicUsize>,
    ) {
        let waiting = Arc::new(AtomicBool::new(false));
        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let (w, a) = (waiting.clone(), awaiting.clone());
        // Client to server: a request is now at the server.
        std::thread::spawn(move || {
            let (mut from, mut to) = (c2, s2);
            let mut buf = [0_u8; 16 * 1024];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if !w.swap(true, Ordering::SeqCst) {
                    a.fetch_add(1, Ordering::SeqCst);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        });
        // Server to client: the reply came.
        std::thread::spawn(move || {
            let (mut from, mut to) = (server, client);
            let mut buf = [0_u8; 16 * 1024];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if waiting.swap(false, Ordering::SeqCst) {
                    awaiting.fetch_sub(1, Ordering::SeqCst);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            if waiting.swap(false, Ordering::SeqCst) {
                awaiting.fetch_sub(1, Ordering::SeqCst);
                cut.fetch_add(1, Ordering::SeqCst);
            }
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        });
    }

    fn set_backend(&self, to: Option<SocketAddr>) {
        *self.backend.lock().unwrap() = to;
    }
}

async fn register(url: &str, id: &str) -> Customer {
    let mut c = Customer::register(
        Connection::new(url).unwrap(),
        &Registration {
            customer_id: id,
            passphrase: "correct horse battery staple",
            licensing_zip: 12_345 * 10_000 + 6_789,
            expect_ca: None,
            expect_vault_key: None,
            kdf: Argon2Params::FAST_FOR_TESTS,
        },
    )
    .await
    .unwrap();
    c.sign_on().await.unwrap();
    c
}

/// Buys each amount (tenths of a cent); auto-approval downloads it at once.
async fn buy_all(c: &mut Customer, amounts: &[u64]) -> u64 {
    for &a in amounts {
        let (purchase, _, _) = c.buy(Money::from_tenths(a)).await.unwrap();
        assert_eq!(purchase.status, "done", "purchase {purchase:?}");
    }
    amounts.iter().sum()
}

fn order(postage: u64) -> CustomerAction {
    CustomerAction::Indicium(IndiciumOrder {
        postage: Money::from_tenths(postage),
        mail_class: 1,
        destination_zip: Some(90_210 * 10_000),
        software_id: 1,
    })
}

/// A customer with the same wallet on another server.
fn moved(c: Customer, url: &str) -> Customer {
    Customer::from_wallet(Connection::new(url).unwrap(), c.wallet)
}

async fn status(url: &str) -> serde_json::Value {
    reqwest::get(format!("{url}/v1/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn registers(c: &mut Customer) -> (u64, u64) {
    let (_, ar, dr, _) = c.balance().await.unwrap();
    (ar.tenths(), dr.tenths())
}

/// One indicium the client was given.
struct Received {
    txn: String,
    id: i64,
    bytes: Vec<u8>,
    postage: u64,
}

/// What one client stream did.
struct Stream {
    name: String,
    customer: Customer,
    received: Vec<Received>,
    /// Requests sent again (by the client inside `customer_action`, or by the
    /// loop here) after a transport error, over all transactions.
    resent: u64,
    /// Transport errors that outlasted the client's own retries (the loop
    /// here then retried the same transaction).
    transport_errors: u64,
    /// Transactions that needed more than one request.
    retried: u64,
    /// Transactions during which the client had to sign on again.
    signed_on_again: u64,
    /// Why the stream stopped early, if it did.
    failure: Option<String>,
}

/// Streams create-indicium requests until `stop`: each with a fresh client
/// transaction id, retried with the same id and request after a transport
/// error until it is answered. Any other error ends the stream as a failure
/// and stops the others.
async fn stream(
    name: String,
    mut customer: Customer,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
    mut rng: XorShift,
) -> Stream {
    let mut received = Vec::new();
    let (mut transport_errors, mut retried, mut resent, mut signed_on_again) = (0, 0, 0, 0);
    let mut failure = None;
    'txns: while !stop.load(Ordering::SeqCst) && received.len() < MAX_PRINTS {
        let txn = format!("{name}-{:05}", received.len() + 1);
        // 20 cents to $2.00, in tenths of a cent.
        let postage = 10 * rng.range(20, 200);
        let session = |c: &Customer| {
            c.wallet
                .contents
                .session
                .as_ref()
                .map(|s| (s.token.clone(), s.counter))
        };
        let first = session(&customer);
        let mut attempts = 0_u32;
        let printed = loop {
            attempts += 1;
            match customer.customer_action(order(postage), &txn).await {
                Ok(p) => break p,
                Err(ClientError::Http(_)) if attempts < 500 => {
                    transport_errors += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => {
                    failure = Some(format!(
                        "txn {txn} (attempt {attempts}): {e} (code {:?})",
                        e.code()
                    ));
                    stop.store(true, Ordering::SeqCst);
                    break 'txns;
                }
            }
        };
        // Each request of a session takes the next message counter.
        match (first, session(&customer)) {
            (Some((t0, a)), Some((t1, b))) if t0 == t1 => {
                if b > a + 1 {
                    retried += 1;
                    resent += b - a - 1;
                }
            }
            _ => {
                signed_on_again += 1;
                retried += 1;
            }
        }
        let (Some(id), true) = (
            printed.id,
            printed.indicium.data().postage.tenths() == postage,
        ) else {
            failure = Some(format!(
                "txn {txn}: indicium id {:?} for postage {}, asked {postage}",
                printed.id,
                printed.indicium.data().postage
            ));
            stop.store(true, Ordering::SeqCst);
            break;
        };
        received.push(Received {
            txn,
            id,
            bytes: printed.indicium.to_bytes(),
            postage,
        });
        progress.fetch_add(1, Ordering::SeqCst);
    }
    Stream {
        name,
        customer,
        received,
        resent,
        transport_errors,
        retried,
        signed_on_again,
        failure,
    }
}

/// Copies the data directory out of its temporary home, for a failure to be examined.
fn keep(vault: &TestVault, seed: u64) -> String {
    let to = std::env::temp_dir().join(format!("postvault-crash-{seed}"));
    let _ = std::fs::remove_dir_all(&to);
    let o = std::process::Command::new("cp")
        .arg("-r")
        .arg(vault.path())
        .arg(&to)
        .output()
        .unwrap();
    assert!(o.status.success(), "cp: {}", text(&o));
    to.display().to_string()
}

/// `audit verify --dir` on each module's own log, one line each.
fn module_logs(vault: &TestVault) -> String {
    let mut out = String::new();
    for m in ["m1", "m2"] {
        let dir = vault.join(&format!("modules/{m}"));
        let o = common::postvault(&["audit", "verify", "--dir", dir.to_str().unwrap()]);
        out.push_str(&format!("  {m}: {}\n", text(&o).trim()));
    }
    out
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// Renders an indicium to PNG and runs `postvault verify` on it with the vault's
/// CA and the meter's certificate.
fn verify_png(vault: &TestVault, c: &Customer, bytes: &[u8], tag: &str) {
    let indicium = postvault_indicium::Indicium::parse(bytes).unwrap();
    let png = postvault_indicium::render::render_png(&indicium).unwrap();
    let image = vault.join(&format!("{tag}.png"));
    let cert = vault.join(&format!("{tag}-psd.pem"));
    std::fs::write(&image, png).unwrap();
    std::fs::write(&cert, &c.wallet.contents.psd_certificate).unwrap();
    let ca = vault.join("postal/ca.pem");
    let o = common::postvault(&[
        "verify",
        "--image",
        image.to_str().unwrap(),
        "--ca",
        ca.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "postvault verify {tag}: {}", text(&o));
}

fn audit_verify(vault: &TestVault) -> String {
    let o = vault.run(
        &[
            "audit",
            "verify",
            "--data-dir",
            vault.path().to_str().unwrap(),
        ],
        None,
    );
    let out = text(&o);
    assert!(o.status.success(), "audit verify --data-dir: {out}");
    out
}

/// The issue's acceptance test: SIGKILL at random moments under a stream of
/// create-indicium requests from three customers, a restart after each; then
/// every meter's AR + DR is what was downloaded, every indicium the client was
/// given is stored (same bytes on reprint, verifying from a PNG), none is
/// stored twice or without the client knowing, the audit database verifies,
/// and the vault is not halted.
#[test]
fn sigkill_under_load_loses_nothing_and_charges_nothing_twice() {
    let seed = seed();
    println!("crash test seed {seed} (replay with POSTVAULT_CRASH_SEED={seed})");
    let mut rng = XorShift::new(seed);
    let mut vault = TestVault::init(true);
    let first = vault.start();
    let proxy = Proxy::start(addr_of(&first));
    let rt = runtime();

    // Three customers, each with a known total downloaded.
    let plans: [(&str, &[u64]); 3] = [
        ("crash-a", &[1_000_000, 500_000]),
        ("crash-b", &[2_000_000]),
        ("crash-c", &[750_000, 750_000, 250_000]),
    ];
    let mut downloaded = BTreeMap::new();
    let customers: Vec<(String, Customer)> = rt.block_on(async {
        let mut out = Vec::new();
        for (id, amounts) in plans {
            let mut c = register(&proxy.url, id).await;
            downloaded.insert(id.to_owned(), buy_all(&mut c, amounts).await);
            assert_eq!(registers(&mut c).await, (0, downloaded[id]));
            out.push((id.to_owned(), c));
        }
        out
    });

    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = customers
        .into_iter()
        .enumerate()
        .map(|(i, (name, c))| {
            let rng = XorShift::new(seed ^ 0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(i as u64 + 1));
            rt.spawn(stream(name, c, stop.clone(), progress.clone(), rng))
        })
        .collect();

    // Kill at random moments, each after the clients got going again.
    let (mut mid, mut idle) = (0, 0);
    let started = Instant::now();
    for k in 0..KILLS {
        let base = progress.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(20);
        let running = || !stop.load(Ordering::SeqCst) && !handles.iter().all(|h| h.is_finished());
        while progress.load(Ordering::SeqCst) == base && Instant::now() < deadline && running() {
            std::thread::sleep(Duration::from_millis(2));
        }
        if !running() {
            println!("the client streams stopped before kill {k}");
            break;
        }
        assert!(
            progress.load(Ordering::SeqCst) > base,
            "the clients made no progress for 20 s after restart {k} (seed {seed}); log:\n{}",
            vault.log()
        );
        std::thread::sleep(Duration::from_millis(rng.range(5, 300)));
        let at_server = proxy.awaiting.load(Ordering::SeqCst);
        proxy.set_backend(None);
        vault.kill9();
        if at_server > 0 {
            mid += 1;
        } else {
            idle += 1;
        }
        let url = vault.start();
        proxy.set_backend(Some(addr_of(&url)));
    }
    // Let every stream get a few more prints through the last server, then stop.
    let base = progress.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    while progress.load(Ordering::SeqCst) < base + 15
        && Instant::now() < deadline
        && !handles.iter().all(tokio::task::JoinHandle::is_finished)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    let streams: Vec<Stream> = rt.block_on(async {
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    });
    let elapsed = started.elapsed();
    let log = vault.log();
    if let Some(s) = streams.iter().find(|s| s.failure.is_some()) {
        vault.stop();
        let kept = keep(&vault, seed);
        panic!(
            "stream {} failed (seed {seed}): {}\ndata directory kept in {kept}\nmodule logs:\n{}\nserver log:\n{log}",
            s.name,
            s.failure.as_deref().unwrap_or_default(),
            module_logs(&vault)
        );
    }

    let total: usize = streams.iter().map(|s| s.received.len()).sum();
    let transport: u64 = streams.iter().map(|s| s.transport_errors).sum();
    let retried: u64 = streams.iter().map(|s| s.retried).sum();
    let resent: u64 = streams.iter().map(|s| s.resent).sum();
    let recovered = count(&log, "Auto-Recover discarded");
    let cut = proxy.cut.load(Ordering::SeqCst);
    println!(
        "{} kills in {elapsed:.1?}: {mid} with a request at the server, {idle} idle; {cut} requests cut off unanswered; {total} indicia received; {retried} transactions needed {resent} requests more ({transport} transport errors outlasted the client's own retries); {recovered} Auto-Recover(s) at start",
        mid + idle
    );
    assert!(
        mid + idle >= 20,
        "only {} kills landed before the clients were done (raise MAX_PRINTS?)",
        mid + idle
    );
    for s in &streams {
        println!(
            "  {}: {} indicia, {} retried ({} requests more, {} after signing on again)",
            s.name,
            s.received.len(),
            s.retried,
            s.resent,
            s.signed_on_again
        );
    }

    // No indicium id twice, across all meters.
    let mut ids = BTreeSet::new();
    for r in streams.iter().flat_map(|s| &s.received) {
        assert!(ids.insert(r.id), "indicium id {} given twice", r.id);
    }

    let url = proxy.url.clone();
    let mut streams = streams;
    rt.block_on(async {
        for s in &mut streams {
            let (ar, dr) = registers(&mut s.customer).await;
            let total = downloaded[&s.name];
            assert_eq!(ar + dr, total, "{}: AR {ar} + DR {dr}", s.name);
            let printed: u64 = s.received.iter().map(|r| r.postage).sum();
            assert_eq!(ar, printed, "{}: AR is not what the client printed", s.name);

            let history = s.customer.history(1000).await.unwrap();
            assert!(history.len() < 1000, "history truncated");
            let stored: BTreeMap<i64, _> = history.iter().map(|h| (h.id, h)).collect();
            assert_eq!(stored.len(), history.len(), "{}: an id twice", s.name);
            let given: BTreeSet<i64> = s.received.iter().map(|r| r.id).collect();
            let kept: BTreeSet<i64> = stored.keys().copied().collect();
            assert_eq!(
                kept, given,
                "{}: stored indicia are not the ones the client was given",
                s.name
            );
            assert_eq!(
                history.iter().map(|h| h.postage).sum::<u64>(),
                ar,
                "{}: the history's postage is not the AR",
                s.name
            );
            // Each indicium moved the AR by its postage, in order: nothing
            // charged twice, nothing skipped.
            let mut running = 0;
            for h in stored.values() {
                assert_eq!(h.kind, "postage");
                running += h.postage;
                assert_eq!(
                    h.ascending_register, running,
                    "{}: indicium {}",
                    s.name, h.id
                );
            }
            for r in &s.received {
                assert_eq!(stored[&r.id].postage, r.postage, "{}", r.txn);
                let again = s.customer.reprint(r.id).await.unwrap();
                assert_eq!(again.to_bytes(), r.bytes, "reprint of {} ({})", r.id, r.txn);
            }
        }
        let st = status(&url).await;
        assert_eq!(st["halted"], false, "{st}");
        assert_eq!(st["checkpoint_mismatches"], 0, "{st}");
    });
    for s in &streams {
        let last = s.received.last().unwrap();
        verify_png(&vault, &s.customer, &last.bytes, &s.name);
    }
    assert_eq!(count(&log, "checkpoint mismatch"), 0, "log:\n{log}");
    vault.stop();
    let modules = module_logs(&vault);
    assert_eq!(count(&modules, ": OK: "), 2, "module logs:\n{modules}");
    println!("{}", audit_verify(&vault).trim());
}

/// The vault database files of a stopped server.
const DB_FILES: [&str; 2] = ["vault.db", "vault.db-wal"];

/// Copies the vault database of a stopped server (and its WAL, if any) to `to`.
fn backup_db(vault: &TestVault, to: &Path) {
    for f in DB_FILES {
        if vault.join(f).exists() {
            std::fs::copy(vault.join(f), to.join(f)).unwrap();
        }
    }
}

/// Puts a copy made by [`backup_db`] back in place of the current database.
fn restore_db(vault: &TestVault, from: &Path) {
    for f in ["vault.db", "vault.db-wal", "vault.db-shm"] {
        let _ = std::fs::remove_file(vault.join(f));
    }
    for f in DB_FILES {
        if from.join(f).exists() {
            std::fs::copy(from.join(f), vault.join(f)).unwrap();
        }
    }
}

async fn print(c: &mut Customer, postage: u64) -> Result<i64, ClientError> {
    let p = c
        .print(Money::from_tenths(postage), 1, Some(90_210 * 10_000))
        .await?;
    Ok(p.id.unwrap())
}

fn refusal(r: Result<i64, ClientError>) -> (String, String) {
    match r {
        Err(e @ (ClientError::Refused { .. } | ClientError::Api { .. })) => {
            (e.code().unwrap().to_owned(), e.to_string())
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A vault database restored from an older copy (the modules moved on since):
/// at start the audit database shows committed work the module table lacks,
/// each such module counts a checkpoint mismatch, the next PSD command is
/// refused naming the mismatch without charging, and the third mismatch
/// halts PSD processing.
#[test]
fn restored_vault_database_is_a_checkpoint_mismatch_and_halts_at_once() {
    let mut vault = TestVault::init(true);
    let url = vault.start();
    let rt = runtime();
    let (a, b, before, old) = rt.block_on(async {
        let mut a = register(&url, "rollback-a").await;
        let mut b = register(&url, "rollback-b").await;
        buy_all(&mut a, &[100_000]).await;
        buy_all(&mut b, &[200_000]).await;
        let mut old = BTreeSet::new();
        for p in [1_000, 2_500] {
            old.insert(print(&mut a, p).await.unwrap());
            old.insert(print(&mut b, p).await.unwrap());
        }
        let before = (registers(&mut a).await, registers(&mut b).await);
        assert_eq!(before, ((3_500, 96_500), (3_500, 196_500)));
        (a, b, before, old)
    });
    vault.stop();
    let backup = tempfile::tempdir().unwrap();
    backup_db(&vault, backup.path());

    // Work the backup will not have: both modules take part (PSD commands
    // alternate between the two).
    let url = vault.start();
    let (a, b) = rt.block_on(async {
        let (mut a, mut b) = (moved(a, &url), moved(b, &url));
        for p in [700, 800, 900] {
            print(&mut a, p).await.unwrap();
            print(&mut b, p).await.unwrap();
        }
        assert_eq!(registers(&mut a).await, (5_900, 94_100));
        (a, b)
    });
    vault.stop();
    restore_db(&vault, backup.path());

    let url = vault.start();
    let log = vault.log();
    assert_eq!(
        count(
            &log,
            "checkpoint mismatch: the audit database records committed transaction"
        ),
        2,
        "each module's lost work is named at start; log:\n{log}"
    );
    rt.block_on(async {
        let (mut a, mut b) = (moved(a, &url), moved(b, &url));
        // Lost committed work found at start stops PSD work at once: a
        // restore rewinds every meter, whichever module would serve it.
        let st = status(&url).await;
        assert_eq!(st["checkpoint_mismatches"], 2, "{st}");
        assert_eq!(st["halted"], true, "{st}");
        // The restored packages: what was there at the backup.
        assert_eq!(registers(&mut a).await, before.0);
        let kept: BTreeSet<i64> = a.history(100).await.unwrap().iter().map(|h| h.id).collect();
        assert!(kept.is_subset(&old) && kept.len() == 2, "{kept:?}");

        let (code, message) = refusal(print(&mut a, 1_000).await);
        assert_eq!(code, "halted", "{code}: {message}");
        assert!(message.contains("checkpoint"), "{code}: {message}");
        assert_eq!(registers(&mut a).await, before.0, "charged by a refusal");

        // Halted: every PSD command is refused, and nothing is counted again.
        for c in [&mut a, &mut b] {
            let (code, message) = refusal(print(c, 1_000).await);
            assert_eq!(code, "halted", "{message}");
            assert!(message.contains("checkpoint mismatches"), "{message}");
        }
        assert_eq!(registers(&mut a).await, before.0);
        assert_eq!(registers(&mut b).await, before.1);
        let st = status(&url).await;
        assert_eq!(
            (st["checkpoint_mismatches"].as_u64(), st["halted"].as_bool()),
            (Some(2), Some(true)),
            "{st}"
        );
    });
    let log = vault.log();
    assert!(log.contains("STOPPING PSD processing"), "log:\n{log}");
    vault.stop();
}

/// Changes one byte of a meter's stored package (same length).
async fn tamper(vault: &TestVault, device: [u8; 6], at: impl Fn(usize) -> usize) -> Vec<u8> {
    let pool = db(vault).await;
    let mut package: Vec<u8> =
        sqlx::query_scalar("SELECT package FROM packages WHERE device_id = ?")
            .bind(device.to_vec())
            .fetch_one(&pool)
            .await
            .unwrap();
    let i = at(package.len());
    package[i] ^= 0x01;
    let done = sqlx::query("UPDATE packages SET package = ? WHERE device_id = ?")
        .bind(package.clone())
        .bind(device.to_vec())
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
    pool.close().await;
    package
}

async fn db(vault: &TestVault) -> sqlx::SqlitePool {
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(vault.join("vault.db")))
        .await
        .unwrap()
}

/// A package changed in the database (one byte, its length kept) is refused
/// by the module's MAC check, nothing is charged or written, and the other
/// customers' meters keep working.
#[test]
fn tampered_package_is_refused_and_other_meters_keep_working() {
    let mut vault = TestVault::init(true);
    let url = vault.start();
    let rt = runtime();
    let (a, b, c, before) = rt.block_on(async {
        let mut a = register(&url, "tamper-a").await;
        let mut b = register(&url, "tamper-b").await;
        let mut c = register(&url, "tamper-c").await;
        for x in [&mut a, &mut b, &mut c] {
            buy_all(x, &[50_000]).await;
            print(x, 1_230).await.unwrap();
        }
        let before = [
            registers(&mut a).await,
            registers(&mut b).await,
            registers(&mut c).await,
        ];
        assert_eq!(before, [(1_230, 48_770); 3]);
        (a, b, c, before)
    });
    vault.stop();
    let (da, dc) = (a.wallet.contents.device_id, c.wallet.contents.device_id);
    let (ta, tc) = rt.block_on(async {
        // The last byte is the package MAC's; a middle one is in the body.
        (
            tamper(&vault, da, |n| n - 1).await,
            tamper(&vault, dc, |n| n / 2).await,
        )
    });

    let url = vault.start();
    rt.block_on(async {
        let (mut a, mut b, mut c) = (moved(a, &url), moved(b, &url), moved(c, &url));
        let (code, message) = refusal(print(&mut a, 1_000).await);
        assert_eq!(code, "package_mac", "{message}");
        assert_eq!(registers(&mut a).await, before[0], "charged by a refusal");
        let (code, message) = refusal(print(&mut c, 1_000).await);
        assert_eq!(code, "package_mac", "{message}");

        print(&mut b, 1_000).await.unwrap();
        print(&mut b, 2_000).await.unwrap();
        assert_eq!(registers(&mut b).await, (4_230, 45_770));
        assert_eq!(b.history(10).await.unwrap().len(), 3);
        let st = status(&url).await;
        assert_eq!(st["halted"], false, "{st}");
        assert_eq!(st["checkpoint_mismatches"], 0, "{st}");
    });
    vault.stop();
    rt.block_on(async {
        let pool = db(&vault).await;
        for (device, tampered) in [(da, &ta), (dc, &tc)] {
            let now: Vec<u8> =
                sqlx::query_scalar("SELECT package FROM packages WHERE device_id = ?")
                    .bind(device.to_vec())
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            assert_eq!(&now, tampered, "a refused command wrote the package");
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM indicia WHERE device_id = ?")
                .bind(device.to_vec())
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(n, 1, "an indicium issued on a tampered package");
        }
        pool.close().await;
    });
}

/// A vault database restored from an older copy when only one module did the
/// work it lost: that module's mismatch is counted at start, but no PSD
/// command may run on the restored (stale) packages on the other module
/// either. A customer whose print fails on the old challenge signs on again
/// and retries, as the client would.
#[test]
fn restored_vault_database_serves_no_stale_package() {
    let mut vault = TestVault::init(true);
    let url = vault.start();
    let rt = runtime();
    let a = rt.block_on(async {
        let mut a = register(&url, "stale-a").await;
        buy_all(&mut a, &[100_000]).await;
        print(&mut a, 1_000).await.unwrap();
        a
    });
    vault.stop();
    let backup = tempfile::tempdir().unwrap();
    backup_db(&vault, backup.path());
    let url = vault.start();
    let (a, lost) = rt.block_on(async {
        let mut a = moved(a, &url);
        let lost = print(&mut a, 2_000).await.unwrap();
        assert_eq!(registers(&mut a).await, (3_000, 97_000));
        (a, lost)
    });
    vault.stop();
    restore_db(&vault, backup.path());
    let url = vault.start();
    rt.block_on(async {
        let mut a = moved(a, &url);
        let st = status(&url).await;
        assert_eq!(st["checkpoint_mismatches"], 1, "{st}");
        let mut codes = Vec::new();
        for _ in 0..10 {
            match print(&mut a, 2_000).await {
                Ok(id) => panic!(
                    "indicium {id} printed on a restored package (after refusals {codes:?}), with registers {:?}: the indicium given before the restore (id {lost}, AR 3000) had already spent that value",
                    registers(&mut a).await
                ),
                Err(e) => {
                    let code = e.code().unwrap_or("none").to_owned();
                    assert!(
                        ["challenge", "checkpoint_mismatch", "halted"].contains(&code.as_str()),
                        "{e}"
                    );
                    if code == "challenge" {
                        let _ = a.sign_on().await;
                    }
                    codes.push(code);
                }
            }
            if status(&url).await["halted"] == true {
                break;
            }
        }
        assert_eq!(registers(&mut a).await, (1_000, 99_000));
    });
    vault.stop();
    audit_verify(&vault);
}
