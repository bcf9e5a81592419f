//! Seed 002 end to end over real HTTP: indicia printed through `postvault
//! serve` carry vendor and postal tokens; the KMS's brass processes verify
//! them at `/v1/tokens/verify` from the text of the fields read back from the
//! Data Matrix image, and a tin box verifies them with the month's token
//! keys only (`kms token-keys`, `verify --token-keys`). Flipping any bit of
//! what the tokens cover fails them; once the meter is withdrawn its keys are
//! Obsolete and tokens dated after that fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use postvault_client::{Connection, Customer, Registration};
use postvault_crypto::password::Argon2Params;
use postvault_indicium::decode::decode_png;
use postvault_indicium::indicium::SIGNED_LEN;
use postvault_indicium::render::render_png;
use postvault_indicium::text::to_text;
use postvault_indicium::{Indicium, Money};

mod common;

use common::server::TestVault;
use common::text;

fn verdicts(
    rt: &tokio::runtime::Runtime,
    conn: &Connection,
    data: &postvault_indicium::IndiciumData,
) -> (String, String, bool) {
    let v = rt.block_on(conn.verify_tokens(&to_text(data))).unwrap();
    (v.vendor, v.postal, v.good)
}

#[test]
fn printed_tokens_verify_by_brass_and_tin_and_fail_when_altered_or_obsolete() {
    let mut vault = TestVault::init(true);
    let url = vault.start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (pngs, meter, redated) = rt.block_on(async {
        let mut c = Customer::register(
            Connection::new(&url).unwrap(),
            &Registration {
                customer_id: "tokens-1",
                passphrase: "correct horse battery staple",
                licensing_zip: 12_345 * 10_000,
                expect_ca: None,
                expect_vault_key: None,
                kdf: Argon2Params::FAST_FOR_TESTS,
            },
        )
        .await
        .unwrap();
        c.sign_on().await.unwrap();
        c.buy(Money::from_cents(1_000).unwrap()).await.unwrap();
        let mut pngs = Vec::new();
        let mut first = None;
        for cents in [73, 150] {
            let p = c
                .print(Money::from_cents(cents).unwrap(), 1, None)
                .await
                .unwrap();
            first.get_or_insert_with(|| p.indicium.clone());
            pngs.push(render_png(&p.indicium).unwrap());
        }
        // A redate of the first: a new date, so new tokens.
        let original = first.unwrap();
        let redated = c
            .customer_action(
                postvault_module::postal::CustomerAction::Redate {
                    original: original.to_bytes(),
                    date: original.data().date.checked_add_days(1).unwrap().days(),
                },
                "redate-1",
            )
            .await
            .unwrap()
            .indicium;
        (pngs, c.device().unwrap(), redated)
    });
    let conn = Connection::new(&url).unwrap();
    let mut read_back = Vec::new();
    for png in &pngs {
        // What the post scans: the Data Matrix decoded from the image.
        let ind = Indicium::parse(&decode_png(png).unwrap()).unwrap();
        let d = ind.data();
        assert_ne!(d.vendor_token, [0; 4], "a vendor token is printed");
        assert_ne!(d.postal_token, [0; 4], "a postal token is printed");
        assert_eq!(
            verdicts(&rt, &conn, d),
            ("good".into(), "good".into(), true)
        );
        // Every bit of the signed part: a flip either makes the fields
        // unreadable or fails a token (the vendor token's bits fail only
        // the vendor's check, the postal token's only the post's).
        let signed = *ind.signed_bytes();
        let signature = ind.to_bytes()[SIGNED_LEN..].to_vec();
        let mut checked = 0;
        for bit in 0..SIGNED_LEN * 8 {
            let mut b = signed;
            b[bit / 8] ^= 1 << (bit % 8);
            let Ok(flipped) = Indicium::parse(&[b.as_slice(), &signature].concat()) else {
                continue;
            };
            let (vendor, postal, good) = verdicts(&rt, &conn, flipped.data());
            assert!(!good, "bit {bit} flipped still verifies");
            match bit / 8 {
                43..=46 => assert_eq!(
                    (vendor.as_str(), postal.as_str()),
                    ("bad token", "good"),
                    "bit {bit}"
                ),
                47..=50 => assert_eq!(
                    (vendor.as_str(), postal.as_str()),
                    ("good", "bad token"),
                    "bit {bit}"
                ),
                _ => assert!(
                    vendor != "good" && postal != "good",
                    "bit {bit}: {vendor}, {postal}"
                ),
            }
            checked += 1;
        }
        assert!(checked > 300, "only {checked} flips parsed");
        read_back.push(ind);
    }
    // Text that is not an indicium's fields is a bad request, nothing more.
    for garbage in ["", "version: 1", &"x".repeat(5000)] {
        match rt.block_on(conn.verify_tokens(garbage)) {
            Err(postvault_client::ClientError::Api { status: 400, error }) => {
                assert_eq!(error.code, "bad_request");
            }
            other => panic!("{garbage:.20}: {other:?}"),
        }
    }
    // The redated indicium carries new tokens for its new date.
    assert_eq!(
        verdicts(&rt, &conn, redated.data()),
        ("good".into(), "good".into(), true)
    );
    assert_ne!(
        redated.data().postal_token,
        read_back[0].data().postal_token
    );
    // The same fields dated tomorrow: the tokens cover the date.
    let tomorrow = postvault_indicium::IndiciumData {
        date: read_back[0].data().date.checked_add_days(1).unwrap(),
        ..read_back[0].data().clone()
    };
    assert_eq!(verdicts(&rt, &conn, &tomorrow).1, "bad token");
    vault.stop();

    // A tin box verifies with the month's token keys only.
    let dir = vault.path().to_str().unwrap().to_owned();
    let kit = vault.join("tin.json");
    let o = vault.run(
        &[
            "kms",
            "token-keys",
            "--data-dir",
            &dir,
            "--out",
            kit.to_str().unwrap(),
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let png_path = vault.join("letter.png");
    std::fs::write(&png_path, &pngs[0]).unwrap();
    let psd = vault.join("psd.pem");
    let der = rt.block_on(async {
        let store = postvault_store::sqlite::SqliteStore::open(vault.path())
            .await
            .unwrap();
        let der = postvault_store::Store::certificate(&store, meter.to_bytes())
            .await
            .unwrap()
            .unwrap();
        store.close().await;
        der
    });
    std::fs::write(
        &psd,
        postvault_indicium::Certificate::from_der(&der)
            .unwrap()
            .to_pem(),
    )
    .unwrap();
    let verify = |image: &std::path::Path| {
        vault.run(
            &[
                "verify",
                "--image",
                image.to_str().unwrap(),
                "--ca",
                vault.join("postal/ca.pem").to_str().unwrap(),
                "--cert",
                psd.to_str().unwrap(),
                "--kms",
                &dir,
                "--token-keys",
                kit.to_str().unwrap(),
            ],
            None,
        )
    };
    let o = verify(&png_path);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for line in [
        "PASS vendor token (KMS brass)",
        "PASS postal token (KMS brass)",
        "PASS postal token (USPS.US tin box T00000001)",
    ] {
        assert!(out.contains(line), "{line} missing: {out}");
    }
    // A tampered image: the postal token altered and the symbol re-rendered.
    let mut bytes = read_back[0].to_bytes();
    bytes[48] ^= 0x10;
    let tampered = vault.join("tampered.png");
    let lines = postvault_indicium::render::human_readable(&read_back[0]);
    std::fs::write(
        &tampered,
        postvault_indicium::render::render_png_raw(&bytes, &lines).unwrap(),
    )
    .unwrap();
    let o = verify(&tampered);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("FAIL postal token (USPS.US tin box T00000001): bad token"),
        "{out}"
    );
    assert!(
        out.contains("FAIL postal token (KMS brass): bad token"),
        "{out}"
    );

    // Registering again to its own country re-issues the reports and
    // changes nothing (a registration that stopped half-way can finish);
    // to another country it is refused.
    let m = meter.to_string();
    let o = vault.run(
        &["kms", "register", "--meter", &m, "--data-dir", &dir],
        None,
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert_eq!(out.matches(": active meter").count(), 2, "{out}");
    let o = vault.run(
        &[
            "kms",
            "register",
            "--meter",
            &m,
            "--country",
            "GB",
            "--data-dir",
            &dir,
        ],
        None,
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("already registered"), "{}", text(&o));

    // The meter leaves service: its keys become Obsolete.
    let o = vault.run(
        &[
            "provider",
            "withdraw",
            "--data-dir",
            &dir,
            "--meter",
            &meter.to_string(),
        ],
        None,
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("obsolete meter"), "{out}");
    let o = vault.run(
        &["kms", "meter", &meter.to_string(), "--data-dir", &dir],
        None,
    );
    assert_eq!(text(&o).matches("obsolete").count(), 2, "{}", text(&o));
    // Nothing left to make obsolete: running it again changes nothing.
    let o = vault.run(
        &[
            "kms",
            "obsolete",
            "--meter",
            &meter.to_string(),
            "--data-dir",
            &dir,
        ],
        None,
    );
    assert!(text(&o).contains("0 key(s) made obsolete"), "{}", text(&o));
    let url = vault.start();
    let conn = Connection::new(&url).unwrap();
    // Mail printed before it left service still verifies; a token dated
    // after it, never.
    assert!(verdicts(&rt, &conn, read_back[0].data()).2);
    let (vendor, postal, good) = verdicts(&rt, &conn, &tomorrow);
    assert!(!good);
    assert_eq!(
        (vendor.as_str(), postal.as_str()),
        (
            "key not active at the date of mailing",
            "key not active at the date of mailing"
        )
    );
    vault.stop();
}

#[test]
fn meters_made_at_once_all_get_their_keys() {
    let mut vault = TestVault::init(true);
    let url = vault.start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let meters = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..6 {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("at-once-{i}");
                let c = Customer::register(
                    Connection::new(&url).unwrap(),
                    &Registration {
                        customer_id: &id,
                        passphrase: "correct horse battery staple",
                        licensing_zip: 12_345 * 10_000,
                        expect_ca: None,
                        expect_vault_key: None,
                        kdf: Argon2Params::FAST_FOR_TESTS,
                    },
                )
                .await
                .unwrap();
                c.device().unwrap()
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    vault.stop();
    let dir = vault.path().to_str().unwrap().to_owned();
    for m in meters {
        let o = vault.run(&["kms", "meter", &m.to_string(), "--data-dir", &dir], None);
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        assert_eq!(out.matches(": active meter").count(), 2, "{m}: {out}");
    }
}
