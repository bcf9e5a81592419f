//! `postvault kms …` as an operator uses it, on a real development vault:
//! the whole seed story (`kms demo`), and the narrated commands one by one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::server::TestVault;
use common::{postvault, text};

#[test]
fn kms_demo_runs_the_seed_story_to_the_end_and_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for run in 0..2 {
        let o = postvault(&["kms", "demo", "--dir", d]);
        let out = text(&o);
        assert!(o.status.success(), "run {run}: {out}");
        for line in [
            "brass processes on its indicium (vendor, postal): good, good",
            "the same with one bit of the date flipped: bad token, bad token",
            "assigned to GB: its keys registered in VE.GB and EARTH.GB",
            "assigning it again, to FR: refused",
            "then with its postal token altered: good, bad token",
            "a token dated after it left service: vendor, postal: key not active at the date of mailing, key not active at the date of mailing",
            "every check came out as the seed says",
        ] {
            assert!(
                out.contains(line),
                "run {run}: '{line}' missing from:\n{out}"
            );
        }
    }
}

#[test]
fn the_operator_initialises_boxes_requests_keys_and_a_box_without_shares_stops_the_vault() {
    let vault = TestVault::init(false);
    let dir = vault.path().to_str().unwrap().to_owned();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", &dir]);
        vault.run(&all, None)
    };
    let o = run(&["kms", "status"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("domains: USPS, USPS.US, VE, VE.US"), "{out}");
    assert_eq!(out.matches(", enabled)").count(), 5, "{out}");

    let o = run(&["kms", "box-init", "--kind", "brass"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("a new brass box: B00000002"), "{out}");
    assert_eq!(
        out.matches("B00000002 took its brass process").count(),
        4,
        "{out}"
    );
    assert!(
        !run(&["kms", "box-init", "--kind", "copper"])
            .status
            .success()
    );

    for expected in ["key id 1", "key id 2"] {
        let o = run(&["kms", "request-key", "--domain", "USPS"]);
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        assert!(out.contains(expected), "{expected}: {out}");
    }
    let o = run(&["kms", "request-key", "--domain", "UKRM"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("unknown_domain"), "{}", text(&o));
    let o = run(&["kms", "domain-create", "UKRM"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["kms", "request-key", "--domain", "UKRM"]);
    assert!(text(&o).contains("key id 1"), "{}", text(&o));
    let o = run(&["kms", "register", "--meter", "PV00000001"]);
    assert!(
        !o.status.success(),
        "an unknown meter registers: {}",
        text(&o)
    );

    // Without its operation shares a box cannot be opened, and the vault
    // refuses to start its KMS rather than run without it.
    let shares = vault.join("kms/shares/B00000002.share");
    let kept = std::fs::read(&shares).unwrap();
    std::fs::write(&shares, kept.split(|b| *b == b'\n').next().unwrap()).unwrap();
    let o = run(&["kms", "status"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("B00000002: not all operation shares are there"),
        "{}",
        text(&o)
    );
    std::fs::write(&shares, &kept).unwrap();
    assert!(run(&["kms", "status"]).status.success());

    // kms.json lost while the archive holds domains: the vault refuses to set
    // up a second KMS over the first one's archive.
    let file = vault.join("kms/kms.json");
    let kept = std::fs::read(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    let o = run(&["kms", "status"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("a set-up was interrupted"),
        "{}",
        text(&o)
    );
    std::fs::write(&file, &kept).unwrap();
    assert!(run(&["kms", "status"]).status.success());
}
