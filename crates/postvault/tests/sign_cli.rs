//! `postvault sign …` through the binary: a device file and two signing
//! nodes in directories, as an officer would use them.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use postvault_crypto::sig::{PublicKey, SigAlg, Signature};

mod common;

use common::{postvault, text};

#[test]
fn an_officer_signs_changes_pin_replicates_and_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(p("pin"), "2468-1357\n").unwrap();
    std::fs::write(p("bad-pin"), "0000\n").unwrap();
    std::fs::write(p("new-pin"), "9753-8642\n").unwrap();
    std::fs::write(p("order"), b"download $500.000 into PV00000042").unwrap();
    let run = |args: &[&str]| postvault(args);

    let o = run(&[
        "sign",
        "init",
        "--node",
        &p("a"),
        "--id",
        "officer",
        "--device",
        &p("officer.dev"),
        "--pin-file",
        &p("pin"),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let public = hex::decode(
        out.split("public key ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap(),
    )
    .unwrap();
    let pk = PublicKey::from_bytes(SigAlg::EcdsaP256Sha256, &public).unwrap();
    let sign = |node: &str, pin: &str, out: &str| {
        run(&[
            "sign",
            "sign",
            "--node",
            &p(node),
            "--device",
            &p("officer.dev"),
            "--message",
            &p("order"),
            "--out",
            &p(out),
            "--pin-file",
            &p(pin),
        ])
    };
    let check = |sig_file: &str| {
        let sig = hex::decode(std::fs::read_to_string(p(sig_file)).unwrap()).unwrap();
        pk.verify(
            b"download $500.000 into PV00000042",
            &Signature::from_bytes(SigAlg::EcdsaP256Sha256, &sig).unwrap(),
        )
    };
    let o = sign("a", "pin", "sig1");
    assert!(o.status.success(), "{}", text(&o));
    check("sig1").unwrap();

    // A wrong PIN fails on the device; the right one still works before the limit.
    let o = sign("a", "bad-pin", "sig2");
    assert!(!o.status.success());
    assert!(text(&o).contains("wrong PIN (1 in a row)"), "{}", text(&o));
    // The PIN changes on the device alone; the old one stops working.
    let o = run(&[
        "sign",
        "change-pin",
        "--device",
        &p("officer.dev"),
        "--pin-file",
        &p("pin"),
        "--new-pin-file",
        &p("new-pin"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!sign("a", "pin", "sig3").status.success());
    let o = sign("a", "new-pin", "sig3");
    assert!(o.status.success(), "{}", text(&o));
    check("sig3").unwrap();

    // A copy for node B, which signs on its own; revoking on A spares B.
    let o = run(&[
        "sign",
        "replicate",
        "--node",
        &p("a"),
        "--to",
        &p("b"),
        "--device",
        &p("officer.dev"),
        "--pin-file",
        &p("new-pin"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(sign("b", "new-pin", "sig4").status.success());
    check("sig4").unwrap();
    let o = run(&["sign", "revoke", "--node", &p("a"), "--id", "officer"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = sign("a", "new-pin", "sig5");
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no signing key for officer"),
        "{}",
        text(&o)
    );
    assert!(sign("b", "new-pin", "sig6").status.success());
    check("sig6").unwrap();
    assert!(
        !run(&["sign", "revoke", "--node", &p("a"), "--id", "officer"])
            .status
            .success()
    );

    // Three wrong PINs lock the device, and then even the right one fails.
    for _ in 0..3 {
        assert!(!sign("b", "bad-pin", "x").status.success());
    }
    let o = sign("b", "new-pin", "sig7");
    assert!(!o.status.success());
    assert!(text(&o).contains("locked"), "{}", text(&o));
}

#[test]
fn a_pkcs11_token_is_the_device_through_the_binary() {
    const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
    if !std::path::Path::new(MODULE).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "SoftHSM2 must be installed in CI"
        );
        eprintln!("SoftHSM2 is not installed here: the PKCS#11 test did not run");
        return;
    }
    let label = format!("pv-cli-{}", std::process::id());
    let init = std::process::Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            &label,
            "--so-pin",
            "87654321",
            "--pin",
            "13572468",
        ])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    struct Delete(String);
    impl Drop for Delete {
        fn drop(&mut self) {
            let _ = std::process::Command::new("softhsm2-util")
                .args(["--delete-token", "--token", &self.0])
                .output();
        }
    }
    let _delete = Delete(label.clone());
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(p("pin"), "13572468").unwrap();
    std::fs::write(p("bad"), "00000000").unwrap();
    std::fs::write(p("msg"), b"authorise customer alice").unwrap();
    let o = postvault(&[
        "sign",
        "init",
        "--node",
        &p("n"),
        "--id",
        "officer",
        "--pkcs11-module",
        MODULE,
        "--token",
        &label,
        "--pin-file",
        &p("pin"),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("live in the token only"), "{out}");
    let public = hex::decode(out.split("public key ").nth(1).unwrap().trim()).unwrap();
    let sign = |pin: &str| {
        postvault(&[
            "sign",
            "sign",
            "--node",
            &p("n"),
            "--pkcs11-module",
            MODULE,
            "--token",
            &label,
            "--id",
            "officer",
            "--message",
            &p("msg"),
            "--out",
            &p("sig"),
            "--pin-file",
            &p(pin),
        ])
    };
    let o = sign("bad");
    assert!(!o.status.success());
    assert!(text(&o).contains("wrong PIN"), "{}", text(&o));
    let o = sign("pin");
    assert!(o.status.success(), "{}", text(&o));
    let sig = hex::decode(std::fs::read_to_string(p("sig")).unwrap()).unwrap();
    PublicKey::from_bytes(SigAlg::EcdsaP256Sha256, &public)
        .unwrap()
        .verify(
            b"authorise customer alice",
            &Signature::from_bytes(SigAlg::EcdsaP256Sha256, &sig).unwrap(),
        )
        .unwrap();
}
