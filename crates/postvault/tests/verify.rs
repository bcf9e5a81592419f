//! `postvault verify` driven as a person would, on inputs made by
//! `postvault indicium sample`: a valid sample, a tampered one, garbage, JSON.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::path::Path;
use std::process::Output;

mod common;

use common::{postvault, text};

fn sample(dir: &Path, extra: &[&str]) {
    let mut args = vec!["indicium", "sample", "--out-dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = postvault(&args);
    assert!(o.status.success(), "{}", text(&o));
    for f in [
        "ca.pem",
        "psd.pem",
        "indicium.png",
        "indicium.svg",
        "indicium.bin",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
}

fn verify(dir: &Path, extra: &[&str]) -> Output {
    let p = |f: &str| dir.join(f).to_str().unwrap().to_owned();
    let (image, ca, cert) = (p("indicium.png"), p("ca.pem"), p("psd.pem"));
    let mut args = vec!["verify", "--image", &image, "--ca", &ca, "--cert", &cert];
    args.extend_from_slice(extra);
    postvault(&args)
}

#[test]
fn a_sample_verifies_and_prints_each_check() {
    let tmp = tempfile::tempdir().unwrap();
    sample(tmp.path(), &[]);
    let o = verify(tmp.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    for line in [
        "PASS decode",
        "PASS parse",
        "PASS certificate",
        "PASS signature",
        "PASS value",
        "PASS date",
        "SKIP meter-status: status unknown",
        "SKIP duplicate: not checked",
        "indicium VALID",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(line)),
            "{line:?} missing:\n{out}"
        );
    }
    assert_eq!(
        std::fs::read(tmp.path().join("indicium.bin"))
            .unwrap()
            .len(),
        115
    );
    let svg = std::fs::read_to_string(tmp.path().join("indicium.svg")).unwrap();
    assert!(svg.contains("PV00001234") && svg.contains("$0.730"));
}

#[test]
fn a_tampered_image_exits_1_naming_the_signature_check() {
    let tmp = tempfile::tempdir().unwrap();
    // Bit 150 is in the postage value (bytes 17..20).
    sample(tmp.path(), &["--tamper-bit", "150"]);
    let o = verify(tmp.path(), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("FAIL signature: the signature does not verify"),
        "{out}"
    );
    assert!(out.contains("PASS certificate"), "{out}");
    assert!(out.contains("signature check failed"), "{out}");
    // A flip in the signature itself.
    let tmp = tempfile::tempdir().unwrap();
    sample(tmp.path(), &["--tamper-bit", "600"]);
    let o = verify(tmp.path(), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("FAIL signature"));
}

#[test]
fn another_meters_certificate_exits_1() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    sample(a.path(), &[]);
    sample(b.path(), &[]);
    let o = postvault(&[
        "verify",
        "--image",
        a.path().join("indicium.png").to_str().unwrap(),
        "--ca",
        a.path().join("ca.pem").to_str().unwrap(),
        "--cert",
        b.path().join("psd.pem").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("FAIL certificate: PSD certificate rejected"),
        "{}",
        text(&o)
    );
}

#[test]
fn without_cert_the_certificate_check_says_to_pass_it() {
    let tmp = tempfile::tempdir().unwrap();
    sample(tmp.path(), &[]);
    let o = postvault(&[
        "verify",
        "--image",
        tmp.path().join("indicium.png").to_str().unwrap(),
        "--ca",
        tmp.path().join("ca.pem").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(
        "FAIL certificate: no PSD certificate given: pass the meter's certificate (--cert PSD.pem)"
    ));
    assert!(text(&o).contains("SKIP signature"));
}

#[test]
fn unreadable_input_exits_2_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    sample(tmp.path(), &[]);
    let ca = tmp.path().join("ca.pem");
    let garbage = tmp.path().join("garbage.png");
    std::fs::write(&garbage, b"\x00\x01 definitely not an image").unwrap();
    let o = postvault(&[
        "verify",
        "--image",
        garbage.to_str().unwrap(),
        "--ca",
        ca.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("error: cannot read the image: it is not a PNG file"),
        "{}",
        text(&o)
    );

    // A truncated PNG.
    let png = std::fs::read(tmp.path().join("indicium.png")).unwrap();
    let cut = tmp.path().join("cut.png");
    std::fs::write(&cut, &png[..png.len() / 3]).unwrap();
    let o = postvault(&[
        "verify",
        "--image",
        cut.to_str().unwrap(),
        "--ca",
        ca.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("corrupt"), "{}", text(&o));

    let o = postvault(&[
        "verify",
        "--image",
        tmp.path().join("missing.png").to_str().unwrap(),
        "--ca",
        ca.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("cannot read the image"), "{}", text(&o));

    // A CA file that is not a certificate.
    let o = postvault(&[
        "verify",
        "--image",
        tmp.path().join("indicium.png").to_str().unwrap(),
        "--ca",
        tmp.path().join("indicium.bin").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--ca"), "{}", text(&o));
}

#[test]
fn a_png_without_a_symbol_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    sample(tmp.path(), &[]);
    // Blank out the symbol: rewrite the sample PNG with its left part white.
    let img = image::load_from_memory(&std::fs::read(tmp.path().join("indicium.png")).unwrap())
        .unwrap()
        .to_luma8();
    let (w, h) = img.dimensions();
    let mut pixels = img.into_raw();
    for y in 0..h as usize {
        for x in 0..500usize.min(w as usize) {
            pixels[y * w as usize + x] = 255;
        }
    }
    let blank = tmp.path().join("blank.png");
    image::save_buffer(&blank, &pixels, w, h, image::ExtendedColorType::L8).unwrap();
    let o = postvault(&[
        "verify",
        "--image",
        blank.to_str().unwrap(),
        "--ca",
        tmp.path().join("ca.pem").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("no readable Data Matrix symbol"),
        "{}",
        text(&o)
    );
}

#[test]
fn json_has_the_fields_signed_bytes_and_signature() {
    let tmp = tempfile::tempdir().unwrap();
    sample(tmp.path(), &["--date", "2026-05-14"]);
    let o = verify(tmp.path(), &["--json", "--today", "2026-05-15"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["checks"].as_array().unwrap().len(), 8);
    assert_eq!(v["checks"][3]["name"], "signature");
    assert_eq!(v["checks"][3]["outcome"], "pass");
    assert_eq!(v["checks"][6]["outcome"], "skipped");
    let f = &v["fields"];
    assert_eq!(f["device_id"], "PV00001234");
    assert_eq!(f["postage"]["dollars"], "$0.730");
    assert_eq!(f["postage"]["tenths_of_cent"], 730);
    assert_eq!(f["date_of_mailing"], "2026-05-14");
    assert_eq!(f["origin_zip"], "12345-6789");
    assert_eq!(f["algorithm"], "ECDSA-P256-SHA256");
    let bin = std::fs::read(tmp.path().join("indicium.bin")).unwrap();
    assert_eq!(v["signed_bytes_hex"], hex::encode(&bin[..51]));
    assert_eq!(v["signature_hex"], hex::encode(&bin[51..]));
    assert_eq!(v["public_key_hex"].as_str().unwrap().len(), 130);

    // The tampered sample's JSON says which check failed, with exit 1.
    let tmp = tempfile::tempdir().unwrap();
    sample(tmp.path(), &["--tamper-bit", "500"]);
    let o = verify(tmp.path(), &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["checks"][3]["outcome"], "fail");
    assert_eq!(v["checks"][3]["reason"], "the signature does not verify");

    // Verified weeks later, the same sample is too old.
    let tmp = tempfile::tempdir().unwrap();
    sample(tmp.path(), &["--date", "2026-05-14"]);
    let o = verify(tmp.path(), &["--today", "2026-07-01"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(
            "FAIL date: date of mailing 2026-05-14 is more than 30 days before 2026-07-01"
        ),
        "{}",
        text(&o)
    );
}

#[test]
fn tamper_bit_out_of_range_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let o = postvault(&[
        "indicium",
        "sample",
        "--out-dir",
        tmp.path().to_str().unwrap(),
        "--tamper-bit",
        "920",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("0 to 919"), "{}", text(&o));
    // The helper is hidden from the top-level help.
    let o = postvault(&["--help"]);
    let help = text(&o);
    assert!(
        !help.lines().any(|l| l.trim_start().starts_with("indicium")),
        "{help}"
    );
    assert!(
        help.lines().any(|l| l.trim_start().starts_with("verify")),
        "{help}"
    );
}
