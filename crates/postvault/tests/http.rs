//! The vault over real HTTP: `postvault serve` on 127.0.0.1 with its SQLite
//! files, driven as its users would drive it. A customer through the `meter`
//! CLI; the provider through `provider` on the stopped vault; the auditor
//! through `/v1/audit` and `audit verify`, before and after a byte of the
//! audit database is changed; and an attacker through the client library and
//! raw API calls (replayed, reordered and altered messages, a wrong
//! passphrase until sign-on locks).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::process::Output;

use postvault_client::api::{Call, CallReply, SealedCall, SealedReply, SignOnRequest};
use postvault_client::{ClientError, Connection, Customer, Registration, passphrase_hash};
use postvault_crypto::password::Argon2Params;
use postvault_crypto::{Secret32, hpke};
use postvault_indicium::Money;
use postvault_module::codec;
use postvault_module::postal::{
    CustomerAction, CustomerReply, CustomerReplyBody, CustomerRequest, CustomerRequestBody,
    IndiciumOrder,
};
use postvault_module::signon::{self, Direction, SignOnSecrets};
use serde_json::Value;
use zeroize::Zeroizing;

mod common;

use common::server::TestVault;
use common::text;

const PASSPHRASE: &str = "correct horse battery staple";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// `postvault meter SUB ARGS --wallet W --server URL --json` in the vault's directory.
fn meter(v: &TestVault, url: &str, wallet: &str, sub: &str, args: &[&str]) -> Output {
    let mut all = vec!["meter", sub];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--wallet", wallet, "--server", url, "--json"]);
    v.run(&all, Some(PASSPHRASE))
}

/// The one JSON value a successful command printed.
fn json_of(o: &Output) -> Value {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

/// `postvault provider SUB --data-dir D`.
fn provider(v: &TestVault, sub: &str, extra: &[&str]) -> Output {
    let dir = v.path().to_str().unwrap().to_owned();
    let mut args = vec!["provider", sub, "--data-dir", &dir];
    args.extend_from_slice(extra);
    v.run(&args, None)
}

/// `postvault verify --json` of a PNG in the vault's directory; must be valid.
fn verify_png(v: &TestVault, png: &str, cert: &str) -> Value {
    let o = v.run(
        &[
            "verify",
            "--image",
            png,
            "--ca",
            "postal/ca.pem",
            "--cert",
            cert,
            "--json",
        ],
        None,
    );
    let r = json_of(&o);
    assert_eq!(r["valid"], true, "{r}");
    r
}

/// A GET, with the auditor's bearer token if given: status and JSON body.
async fn get(url: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = reqwest::Client::new().get(format!("{url}{path}"));
    if let Some(t) = token {
        r = r.header("Authorization", format!("Bearer {t}"));
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// A customer registered through the client library (cheap Argon2 for tests).
async fn register(url: &str, customer_id: &str) -> Customer {
    Customer::register(
        Connection::new(url).unwrap(),
        &Registration {
            customer_id,
            passphrase: PASSPHRASE,
            licensing_zip: 12_345 * 10_000,
            expect_ca: None,
            expect_vault_key: None,
            kdf: Argon2Params::FAST_FOR_TESTS,
        },
    )
    .await
    .unwrap()
}

/// The customer's session: token, key and last counter used.
fn session(c: &Customer) -> (Vec<u8>, [u8; 32], u64) {
    let s = c.wallet.contents.session.as_ref().expect("signed on");
    (s.token.clone(), s.key, s.counter)
}

/// Tells the client library which counter was used last (after raw calls).
fn set_counter(c: &mut Customer, counter: u64) {
    c.wallet.contents.session.as_mut().unwrap().counter = counter;
}

/// A call sealed under the customer's session for `counter`, as the client would send it.
fn seal(c: &Customer, counter: u64, call: &Call) -> SealedCall {
    let (token, key, _) = session(c);
    let plain = serde_json::to_vec(call).unwrap();
    let sealed = signon::seal_message(
        &key,
        &c.wallet.contents.device_id,
        Direction::Request,
        counter,
        &plain,
    )
    .unwrap();
    SealedCall {
        session: hex::encode(token),
        counter,
        sealed: hex::encode(sealed),
    }
}

/// Opens the vault's sealed reply to the call with `counter`.
fn open(c: &Customer, counter: u64, reply: &SealedReply) -> CallReply {
    let (_, key, _) = session(c);
    let plain = signon::open_message(
        &key,
        &c.wallet.contents.device_id,
        Direction::Reply,
        counter,
        &hex::decode(&reply.sealed).unwrap(),
    )
    .unwrap();
    serde_json::from_slice(&plain).unwrap()
}

/// Flips one bit in the middle of a hex string's bytes.
fn flip_hex(text: &str) -> String {
    let mut bytes = hex::decode(text).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    hex::encode(bytes)
}

/// The HTTP status and code of a refusal outside a session.
fn api_error<T>(r: Result<T, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Api { status, error }) => (status, error.code),
        Err(e) => panic!("expected an API error, got {e}"),
        Ok(_) => panic!("expected an API error, got success"),
    }
}

/// The code of a refused call inside a session.
fn refused<T>(r: Result<T, ClientError>) -> String {
    match r {
        Err(ClientError::Refused { code, .. }) => code,
        Err(e) => panic!("expected a refused call, got {e}"),
        Ok(_) => panic!("expected a refused call, got success"),
    }
}

/// A create-indicium request for `postage` tenths, signed under the wallet's
/// HMK with its current challenge and registers.
fn indicium_request(c: &Customer, postage: u64) -> CustomerRequest {
    let w = &c.wallet.contents;
    CustomerRequest::sign(
        CustomerRequestBody {
            device_id: w.device_id,
            challenge: w.challenge,
            local_ar: Money::from_tenths(w.ar),
            local_dr: Money::from_tenths(w.dr),
            action: CustomerAction::Indicium(IndiciumOrder {
                postage: Money::from_tenths(postage),
                mail_class: 1,
                destination_zip: None,
                software_id: 1,
            }),
        },
        &Secret32::from_bytes(w.hmk),
    )
    .unwrap()
}

fn customer_call(request: &CustomerRequest, client_txn: &str) -> Call {
    Call::Customer {
        request: hex::encode(codec::encode(request).unwrap()),
        client_txn: client_txn.into(),
    }
}

/// Checks the PSD's reply to `request` under the customer's HMK and takes
/// its challenge and registers into the wallet, as the client library does.
fn accept(c: &mut Customer, request: &CustomerRequest, reply: &str) -> CustomerReplyBody {
    let reply: CustomerReply = codec::decode(&hex::decode(reply).unwrap(), "reply").unwrap();
    let body = reply
        .verify(&Secret32::from_bytes(c.wallet.contents.hmk))
        .unwrap()
        .clone();
    assert_eq!(body.echoed, request.body.challenge);
    let w = &mut c.wallet.contents;
    w.challenge = body.challenge;
    w.ar = body.ar.tenths();
    w.dr = body.dr.tenths();
    body
}

/// The meter's (AR, DR) in tenths, asked through the session.
async fn registers(c: &mut Customer) -> (u64, u64) {
    let (_, ar, dr, _) = c.balance().await.unwrap();
    (ar.tenths(), dr.tenths())
}

#[test]
fn a_customer_registers_buys_prints_reprints_and_asks_a_refund_through_the_cli() {
    let mut v = TestVault::init(true);
    let url = v.start();
    let rt = runtime();

    // The published API document.
    let (status, doc) = rt.block_on(get(&url, "/openapi.json", None));
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'), "{doc}");
    for path in ["/v1/session", "/v1/audit", "/v1/sign-on", "/v1/register"] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }

    let w = "alice.json";
    let reg = json_of(&meter(
        &v,
        &url,
        w,
        "register",
        &["--customer", "alice", "--zip", "12345"],
    ));
    assert_eq!(reg["customer_id"], "alice");
    assert_eq!(reg["state"], "leased");
    let meter_number = reg["meter"].as_str().unwrap().to_owned();
    assert!(meter_number.starts_with("PV"), "{meter_number}");
    // A second registration into the same wallet is refused before anything is sent.
    let o = meter(
        &v,
        &url,
        w,
        "register",
        &["--customer", "alice2", "--zip", "12345"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("registered already"), "{}", text(&o));

    let login = json_of(&meter(&v, &url, w, "login", &[]));
    assert_eq!(login["signed_on"], true);
    assert_eq!(
        (login["ar"].as_u64(), login["dr"].as_u64()),
        (Some(0), Some(0))
    );

    let buy = json_of(&meter(&v, &url, w, "buy", &["20"]));
    assert_eq!(buy["status"], "done");
    assert_eq!(buy["amount"], 20_000);
    assert_eq!(
        (buy["ar"].as_u64(), buy["dr"].as_u64()),
        (Some(0), Some(20_000))
    );
    let bal = json_of(&meter(&v, &url, w, "balance", &[]));
    assert_eq!(bal["state"], "leased");
    assert_eq!(
        (bal["ar"].as_u64(), bal["dr"].as_u64()),
        (Some(0), Some(20_000))
    );
    assert_eq!(bal["pending"], serde_json::json!([]));

    // Three indicia, one per output format; registers move by exactly the postage.
    let mut ids = Vec::new();
    let (mut ar, mut dr) = (0, 20_000);
    for (amount, out, tenths) in [
        ("0.73", "a.png", 730),
        ("1.50", "b.svg", 1500),
        ("5.00", "c.pdf", 5000),
    ] {
        let p = json_of(&meter(
            &v,
            &url,
            w,
            "print",
            &["--amount", amount, "--out", out],
        ));
        ar += tenths;
        dr -= tenths;
        assert_eq!(p["postage"], tenths, "{p}");
        assert_eq!(
            (p["ar"].as_u64(), p["dr"].as_u64()),
            (Some(ar), Some(dr)),
            "{p}"
        );
        assert_eq!(p["out"], out);
        ids.push(p["id"].as_i64().unwrap());
    }
    assert_eq!((ar, dr), (7230, 12_770));
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{ids:?}");
    let svg = std::fs::read_to_string(v.join("b.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") || svg.starts_with("<?xml"),
        "{svg:.80}"
    );
    assert!(svg.contains("$1.500") && svg.contains(&meter_number));
    assert!(
        std::fs::read(v.join("c.pdf"))
            .unwrap()
            .starts_with(b"%PDF-")
    );

    // The PSD certificate, as the wallet holds it, for the post's verifier.
    let wallet = postvault_client::wallet::Wallet::open(&v.join(w), PASSPHRASE).unwrap();
    std::fs::write(v.join("psd.pem"), &wallet.contents.psd_certificate).unwrap();
    let first = verify_png(&v, "a.png", "psd.pem");
    assert_eq!(first["fields"]["postage"]["tenths_of_cent"], 730);
    assert_eq!(first["fields"]["ascending_register"]["tenths_of_cent"], 730);
    assert_eq!(
        first["fields"]["descending_register"]["tenths_of_cent"],
        19_270
    );
    assert_eq!(first["fields"]["device_id"], meter_number.as_str());

    // History: newest first, with the ids print gave.
    let history = json_of(&meter(&v, &url, w, "history", &[]));
    let items = history.as_array().unwrap();
    assert_eq!(items.len(), 3, "{history}");
    let listed: Vec<i64> = items.iter().map(|i| i["id"].as_i64().unwrap()).collect();
    assert_eq!(listed, [ids[2], ids[1], ids[0]]);
    let postage: Vec<u64> = items
        .iter()
        .map(|i| i["postage"].as_u64().unwrap())
        .collect();
    assert_eq!(postage, [5000, 1500, 730]);
    assert!(
        items
            .iter()
            .all(|i| i["kind"] == "postage" && i["refund_requested"] == false)
    );

    // Each indicium printed again as a PNG verifies; the first is the same indicium.
    for (id, tenths) in ids.iter().zip([730, 1500, 5000]) {
        let out = format!("again-{id}.png");
        let r = json_of(&meter(
            &v,
            &url,
            w,
            "reprint",
            &[&id.to_string(), "--out", &out],
        ));
        assert_eq!(
            (r["id"].as_i64(), r["out"].as_str()),
            (Some(*id), Some(out.as_str()))
        );
        let report = verify_png(&v, &out, "psd.pem");
        assert_eq!(report["fields"]["postage"]["tenths_of_cent"], tenths);
        if tenths == 730 {
            assert_eq!(report["decoded_bytes_hex"], first["decoded_bytes_hex"]);
            assert_eq!(report["signature_hex"], first["signature_hex"]);
        }
    }
    // Another meter's indicium, or none, is not found.
    let o = meter(&v, &url, w, "reprint", &["999999", "--out", "x.png"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("not_found"), "{}", text(&o));
    assert!(!v.join("x.png").exists());

    let refund = json_of(&meter(&v, &url, w, "refund", &[&ids[1].to_string()]));
    assert_eq!(refund["id"].as_i64(), Some(ids[1]));
    assert_eq!(refund["refund_requested"], true);
    let history = json_of(&meter(&v, &url, w, "history", &[]));
    for item in history.as_array().unwrap() {
        assert_eq!(
            item["refund_requested"].as_bool(),
            Some(item["id"].as_i64() == Some(ids[1])),
            "{item}"
        );
    }

    // Asking for a refund moves no value until the provider credits it.
    let bal = json_of(&meter(&v, &url, w, "balance", &[]));
    assert_eq!(
        (bal["ar"].as_u64(), bal["dr"].as_u64()),
        (Some(7230), Some(12_770))
    );
    let printed: u64 = history
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["postage"].as_u64().unwrap())
        .sum();
    assert_eq!(bal["ar"].as_u64(), Some(printed));
    assert_eq!(printed + bal["dr"].as_u64().unwrap(), 20_000);
    v.stop();
}

#[test]
fn without_auto_approval_the_provider_licenses_and_downloads_on_the_stopped_vault() {
    let mut v = TestVault::init(false);
    let url = v.start();
    let w = "bob.json";
    let reg = json_of(&meter(
        &v,
        &url,
        w,
        "register",
        &["--customer", "bob", "--zip", "12345-6789"],
    ));
    assert_eq!(reg["state"], "assigned");
    let meter_number = reg["meter"].as_str().unwrap().to_owned();

    let buy = json_of(&meter(&v, &url, w, "buy", &["20"]));
    assert_eq!(buy["status"], "pending");
    assert_eq!((buy["ar"].as_u64(), buy["dr"].as_u64()), (Some(0), Some(0)));
    let purchase = buy["purchase_id"].as_str().unwrap().to_owned();
    let bal = json_of(&meter(&v, &url, w, "balance", &[]));
    assert_eq!(bal["state"], "assigned");
    assert_eq!(bal["dr"], 0);
    assert_eq!(
        bal["pending"],
        serde_json::json!([{"purchase_id": purchase, "amount": 20_000}])
    );

    // An unlicensed meter prints nothing.
    let o = meter(
        &v,
        &url,
        w,
        "print",
        &["--amount", "0.50", "--out", "p.png"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("(state)"), "{}", text(&o));
    assert!(!v.join("p.png").exists());

    // The provider's tools need the vault to themselves.
    let o = provider(&v, "pending", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("in use by another process"),
        "{}",
        text(&o)
    );
    // ... and refusing them left the server serving.
    assert_eq!(
        json_of(&meter(&v, &url, w, "balance", &[]))["state"],
        "assigned"
    );

    v.stop();
    let o = provider(&v, "pending", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("{meter_number} {purchase} $20.000")
    );
    // The provider's key is held by the signing node, sealed: no key file;
    // each order is approved on the officer's device, and a wrong PIN
    // approves nothing.
    assert!(!v.join("postal/provider.key").exists());
    assert!(v.join("remotesign/records/provider.record").exists());
    std::fs::write(v.join("bad.pin"), "0000").unwrap();
    let device = v.join("postal/provider.device");
    let device = device.to_str().unwrap();
    let authorize_with = |pin: &str| {
        let pin = v.join(pin);
        provider(
            &v,
            "authorize",
            &[
                "--customer",
                "bob",
                "--device",
                device,
                "--pin-file",
                pin.to_str().unwrap(),
            ],
        )
    };
    let o = authorize_with("bad.pin");
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("wrong PIN"), "{}", text(&o));
    let o = authorize_with("postal/provider.pin");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("bob: meter {meter_number} licensed (Leased)")),
        "{}",
        text(&o)
    );
    let o = provider(&v, "approve", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("{meter_number} {purchase}: downloaded $20.000")
    );
    let o = provider(&v, "pending", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "nothing pending");
    let o = provider(&v, "authorize", &["--customer", "nobody"]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("no such customer"), "{}", text(&o));

    let url = v.start();
    let bal = json_of(&meter(&v, &url, w, "balance", &[]));
    assert_eq!(bal["state"], "leased");
    assert_eq!(
        (bal["ar"].as_u64(), bal["dr"].as_u64()),
        (Some(0), Some(20_000))
    );
    assert_eq!(bal["pending"], serde_json::json!([]));
    let p = json_of(&meter(
        &v,
        &url,
        w,
        "print",
        &["--amount", "0.50", "--out", "p.png"],
    ));
    assert_eq!(p["postage"], 500);
    assert_eq!(
        (p["ar"].as_u64(), p["dr"].as_u64()),
        (Some(500), Some(19_500))
    );
    let wallet = postvault_client::wallet::Wallet::open(&v.join(w), PASSPHRASE).unwrap();
    std::fs::write(v.join("psd.pem"), &wallet.contents.psd_certificate).unwrap();
    let r = verify_png(&v, "p.png", "psd.pem");
    assert_eq!(r["fields"]["origin_zip"], "12345-6789");
    assert_eq!(r["fields"]["device_id"], meter_number.as_str());
    v.stop();
}

/// Flips the last byte (inside the stored hash) of one module's audit entry
/// in the audit database, as someone with write access to the file would.
async fn tamper_audit_entry(v: &TestVault, module: &str, seq: i64) {
    use sqlx::Connection;
    let url = format!("sqlite://{}", v.join("audit.db").display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mut entry: Vec<u8> =
        sqlx::query_scalar("SELECT entry FROM audit_entries WHERE module_serial = ? AND seq = ?")
            .bind(module)
            .bind(seq)
            .fetch_one(&mut c)
            .await
            .unwrap();
    *entry.last_mut().unwrap() ^= 0x01;
    let done =
        sqlx::query("UPDATE audit_entries SET entry = ? WHERE module_serial = ? AND seq = ?")
            .bind(entry)
            .bind(module)
            .bind(seq)
            .execute(&mut c)
            .await
            .unwrap();
    assert_eq!(done.rows_affected(), 1);
    c.close().await.unwrap();
}

#[test]
fn the_auditor_reads_and_verifies_the_log_and_a_changed_byte_is_named() {
    let mut v = TestVault::init(true);
    let url = v.start();
    let rt = runtime();
    let token = std::fs::read_to_string(v.join("auditor.token")).unwrap();
    let token = token.trim();
    let modules = rt.block_on(async {
        let mut c = register(&url, "carol").await;
        let (p, _, dr) = c.buy(Money::from_tenths(10_000)).await.unwrap();
        assert_eq!((p.status.as_str(), dr.tenths()), ("done", 10_000));
        c.print(Money::from_tenths(730), 1, None).await.unwrap();

        let (status, e) = get(&url, "/v1/audit", None).await;
        assert_eq!(
            (status, e["code"].as_str()),
            (401, Some("auditor_only")),
            "{e}"
        );
        let (status, e) = get(&url, "/v1/audit", Some("0123456789abcdef")).await;
        assert_eq!(
            (status, e["code"].as_str()),
            (401, Some("auditor_only")),
            "{e}"
        );
        let (status, e) = get(&url, "/v1/audit/entries?module=x", None).await;
        assert_eq!(
            (status, e["code"].as_str()),
            (401, Some("auditor_only")),
            "{e}"
        );

        let (status, report) = get(&url, "/v1/audit", Some(token)).await;
        assert_eq!(status, 200, "{report}");
        // The same service under the path, for the auditor only.
        let (status, e) = get(&url, "/audit", None).await;
        assert_eq!((status, e["code"].as_str()), (401, Some("auditor_only")));
        let (status, again) = get(&url, "/audit", Some(token)).await;
        assert_eq!((status, &again["modules"]), (200, &report["modules"]));
        let modules = report["modules"].as_array().unwrap().clone();
        assert_eq!(modules.len(), 2, "{report}");
        assert_eq!(report["meters"], 1, "{report}");
        // Meter generation, configure, authorise, sign-on, download, indicium at least.
        assert!(report["transactions"].as_u64().unwrap() >= 5, "{report}");
        assert_eq!(report["discarded"], 0, "{report}");

        // The auditor checks the entries for itself: they chain to the head the service reported.
        for m in &modules {
            let serial = m["module"].as_str().unwrap();
            let (status, got) = get(
                &url,
                &format!("/v1/audit/entries?module={serial}"),
                Some(token),
            )
            .await;
            assert_eq!(status, 200, "{got}");
            assert_eq!(got["module"], serial);
            assert_eq!(got["from"], 0);
            let entries: Vec<Vec<u8>> = got["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| hex::decode(e.as_str().unwrap()).unwrap())
                .collect();
            assert_eq!(
                Some(entries.len()),
                m["entries"].as_u64().map(|n| usize::try_from(n).unwrap()),
                "{m}"
            );
            let summary = postvault_module::audit::verify_log(&entries.concat(), None).unwrap();
            assert_eq!(hex::encode(summary.head), m["head"].as_str().unwrap());
            assert_eq!(u64::try_from(summary.signed).ok(), m["signed"].as_u64());
        }
        modules
    });
    v.stop();

    let dir = v.path().to_str().unwrap().to_owned();
    let o = v.run(&["audit", "verify", "--data-dir", &dir], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("no package used twice"), "{out}");
    assert!(out.contains("OK registers: 1 meters"), "{out}");
    for m in &modules {
        assert!(
            out.contains(&format!("OK module {}:", m["module"].as_str().unwrap())),
            "{out}"
        );
    }

    let victim = modules[1]["module"].as_str().unwrap().to_owned();
    rt.block_on(tamper_audit_entry(&v, &victim, 5));
    let o = v.run(&["audit", "verify", "--data-dir", &dir], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("module {victim}: entry 5:")),
        "{}",
        text(&o)
    );

    let url = v.start();
    rt.block_on(async {
        let (status, e) = get(&url, "/v1/audit", Some(token)).await;
        assert_eq!(
            (status, e["code"].as_str()),
            (409, Some("audit_failed")),
            "{e}"
        );
        let message = e["message"].as_str().unwrap();
        assert!(
            message.contains(&victim) && message.contains("entry 5"),
            "{message}"
        );
        let (status, s) = get(&url, "/v1/status", None).await;
        assert_eq!(status, 200);
        assert_eq!(s["audit_alarm"].as_str(), Some(message), "{s}");
    });
    v.stop();
}

#[test]
fn replayed_reordered_and_altered_requests_are_refused_and_change_nothing() {
    let mut v = TestVault::init(true);
    let url = v.start();
    runtime().block_on(async {
        let conn = Connection::new(&url).unwrap();
        let mut a = register(&url, "dave").await;
        let mut b = register(&url, "erin").await;
        let (p, ar, dr) = a.buy(Money::from_tenths(20_000)).await.unwrap();
        assert_eq!(
            (p.status.as_str(), ar.tenths(), dr.tenths()),
            ("done", 0, 20_000)
        );
        b.sign_on().await.unwrap();

        // A captured call sent again with the same counter.
        let n = session(&a).2 + 1;
        let call = seal(&a, n, &Call::Balance);
        let reply = conn.session_raw(&call).await.unwrap();
        let CallReply::Balance { state, ar, dr, .. } = open(&a, n, &reply) else {
            panic!("not a balance")
        };
        assert_eq!((state.as_str(), ar, dr), ("leased", 0, 20_000));
        assert_eq!(
            api_error(conn.session_raw(&call).await),
            (409, "replayed".into())
        );

        // A message with a counter below one already used, never sent before.
        let high = n + 10;
        conn.session_raw(&seal(&a, high, &Call::Balance))
            .await
            .unwrap();
        let low = seal(&a, n + 5, &Call::Balance);
        assert_eq!(
            api_error(conn.session_raw(&low).await),
            (409, "replayed".into())
        );

        // One bit of the ciphertext flipped: it does not open, and burns no counter.
        let next = high + 1;
        let genuine = seal(&a, next, &Call::Balance);
        let altered = SealedCall {
            sealed: flip_hex(&genuine.sealed),
            ..genuine.clone()
        };
        assert_eq!(
            api_error(conn.session_raw(&altered).await),
            (401, "session".into())
        );
        conn.session_raw(&genuine).await.unwrap();
        set_counter(&mut a, next);

        // Dave's session token on Erin's message; a flipped bit in the token.
        let bn = session(&b).2 + 1;
        let erin = seal(&b, bn, &Call::Balance);
        let swapped = SealedCall {
            session: hex::encode(session(&a).0),
            ..erin.clone()
        };
        assert_eq!(
            api_error(conn.session_raw(&swapped).await),
            (401, "session".into())
        );
        let mine = seal(&a, next + 1, &Call::Balance);
        let forged = SealedCall {
            session: flip_hex(&mine.session),
            ..mine
        };
        assert_eq!(
            api_error(conn.session_raw(&forged).await),
            (401, "session".into())
        );
        // Erin's own message, with her token, still opens: her meter, not Dave's.
        let CallReply::Balance { dr, .. } = open(&b, bn, &conn.session_raw(&erin).await.unwrap())
        else {
            panic!("not a balance")
        };
        assert_eq!(dr, 0);
        set_counter(&mut b, bn);
        assert_eq!(registers(&mut a).await, (0, 20_000));

        // A customer request, and the same request retried under its transaction id:
        // the same indicium, charged once.
        let r0 = indicium_request(&a, 500);
        let CallReply::Customer { reply, indicium_id } =
            a.call(&customer_call(&r0, "txn-1")).await.unwrap()
        else {
            panic!("not a customer reply")
        };
        let id = indicium_id.expect("an indicium id");
        let body = accept(&mut a, &r0, &reply);
        assert_eq!((body.ar.tenths(), body.dr.tenths()), (500, 19_500));
        let issued = body.indicium.expect("an indicium");
        let CallReply::Customer {
            reply: again,
            indicium_id: again_id,
        } = a.call(&customer_call(&r0, "txn-1")).await.unwrap()
        else {
            panic!("not a customer reply")
        };
        assert_eq!((again.as_str(), again_id), (reply.as_str(), Some(id)));
        assert_eq!(registers(&mut a).await, (500, 19_500));
        let CallReply::Indicium { bytes, .. } = a.call(&Call::Reprint { id }).await.unwrap() else {
            panic!("not an indicium")
        };
        assert_eq!(hex::decode(bytes).unwrap(), issued);
        // Erin can neither fetch nor refund Dave's indicium, and her history is her own.
        assert_eq!(refused(b.reprint(id).await), "not_found");
        assert_eq!(refused(b.refund(id).await), "not_found");
        assert!(b.history(10).await.unwrap().is_empty());

        // The same request under a new transaction id carries a used challenge.
        assert_eq!(
            refused(a.call(&customer_call(&r0, "txn-2")).await),
            "challenge"
        );
        assert_eq!(registers(&mut a).await, (500, 19_500));

        // A request whose MAC was changed after signing.
        let mut r1 = indicium_request(&a, 500);
        r1.mac[7] ^= 0x01;
        assert_eq!(
            refused(a.call(&customer_call(&r1, "txn-3")).await),
            "customer_mac"
        );
        assert_eq!(registers(&mut a).await, (500, 19_500));
        assert_eq!(a.history(10).await.unwrap().len(), 1);

        // The refusals consumed nothing: the genuine request with that challenge is served.
        let r2 = indicium_request(&a, 500);
        let CallReply::Customer { reply, .. } = a.call(&customer_call(&r2, "txn-4")).await.unwrap()
        else {
            panic!("not a customer reply")
        };
        let body = accept(&mut a, &r2, &reply);
        assert_eq!((body.ar.tenths(), body.dr.tenths()), (1000, 19_000));
        assert_eq!(registers(&mut a).await, (1000, 19_000));
        assert_eq!(a.history(10).await.unwrap().len(), 2);
    });
    v.stop();
}

#[test]
fn five_wrong_passphrases_in_a_row_lock_sign_on() {
    let mut v = TestVault::init(true);
    let url = v.start();
    let customer = "frank";
    runtime().block_on(async {
        let conn = Connection::new(&url).unwrap();
        let mut c = register(&url, customer).await;
        c.wallet.save(&v.join("frank.json")).unwrap();
        let w = &c.wallet.contents;
        let vendor =
            hpke::PublicKey::from_slice(&hex::decode(&w.vault.vendor_key).unwrap()).unwrap();
        let device = w.device_id;
        let wrong =
            passphrase_hash(customer, "not the passphrase", Argon2Params::FAST_FOR_TESTS).unwrap();
        let attempt = |i: u8| {
            let sealed = signon::seal_sign_on(
                &vendor,
                &device,
                customer,
                &SignOnSecrets {
                    passphrase: Zeroizing::new(wrong),
                    session_key: Zeroizing::new([i; 32]),
                    nonce: [i; 16],
                },
            )
            .unwrap();
            SignOnRequest {
                customer_id: customer.into(),
                sealed: hex::encode(sealed),
            }
        };
        let refusal = |r: Result<_, ClientError>| match r {
            Err(ClientError::Api { status, error }) => {
                (status, error.code, error.failures, error.locked)
            }
            Err(e) => panic!("expected an API error, got {e}"),
            Ok(_) => panic!("a wrong passphrase signed on"),
        };

        // Four wrong, then the right one: the count is of failures in a row.
        for i in 1..=4 {
            assert_eq!(
                refusal(conn.sign_on_raw(&attempt(i)).await),
                (401, "wrong_passphrase".into(), Some(i), Some(false))
            );
        }
        c.sign_on().await.unwrap();
        for i in 1..=4 {
            assert_eq!(
                refusal(conn.sign_on_raw(&attempt(i)).await),
                (401, "wrong_passphrase".into(), Some(i), Some(false))
            );
        }
        assert_eq!(
            refusal(conn.sign_on_raw(&attempt(5)).await),
            (423, "locked".into(), Some(5), Some(true))
        );
        // Locked: the right passphrase is refused too, and so is another wrong one.
        assert_eq!(api_error(c.sign_on().await), (423, "locked".into()));
        assert_eq!(
            api_error(conn.sign_on_raw(&attempt(6)).await),
            (423, "locked".into())
        );
    });

    let o = v.run(
        &["meter", "login", "--wallet", "frank.json", "--server", &url],
        Some(PASSPHRASE),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("locked"), "{err}");
    v.stop();
}

/// DESIGN §7: the vendor key comes signed by the crypto-card's registration
/// signing key, and the reply to a registration carries that key's signature
/// over the meter, the customer, the new challenge and the vendor key. A
/// client that pins the registration key refuses another one before any
/// secret is sealed; a substituted vendor key fails the signature.
#[test]
fn the_vendor_key_and_the_registration_are_signed_by_the_registration_key() {
    let mut v = TestVault::init(true);
    let url = v.start();
    let rt = runtime();
    let (_, info) = rt.block_on(get(&url, "/v1/vault", None));
    let key = info["registration_signing_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let card = |vendor: &str| postvault_module::cryptocard::CardPublic {
        registration_signing: (
            u8::try_from(info["registration_signing_alg"].as_u64().unwrap()).unwrap(),
            hex::decode(&key).unwrap(),
        ),
        registration_hpke: hex::decode(vendor).unwrap().try_into().unwrap(),
    };
    let signature = (
        u8::try_from(info["vendor_key_signature_alg"].as_u64().unwrap()).unwrap(),
        hex::decode(info["vendor_key_signature"].as_str().unwrap()).unwrap(),
    );
    let vendor = info["vendor_key"].as_str().unwrap();
    assert!(card(vendor).verify_vendor_key(&signature).is_ok());
    assert!(
        card(&flip_hex(vendor))
            .verify_vendor_key(&signature)
            .is_err(),
        "a substituted vendor key does not verify"
    );

    // A pinned key that is not the server's stops registration at once.
    let other = hex::encode(
        postvault_crypto::sig::SigningKey::generate(postvault_crypto::sig::SigAlg::EcdsaP256Sha256)
            .unwrap()
            .public_key()
            .as_bytes(),
    );
    let register_pinned = |key: &str| {
        meter(
            &v,
            &url,
            "pinned.json",
            "register",
            &["--customer", "pinned", "--zip", "12345", "--vault-key", key],
        )
    };
    let o = register_pinned(&other);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("registration signing key is not the one expected"),
        "{}",
        text(&o)
    );
    assert!(!v.join("pinned.json").exists(), "no wallet, nothing sealed");
    // The right key registers, and the reply's signature was checked.
    let o = register_pinned(&key);
    assert!(o.status.success(), "{}", text(&o));
    v.stop();
}
