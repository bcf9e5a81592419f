//! `postvault quickstart --no-serve`: a development vault made on first run and
//! reused on the second, each run printing three indicia over real HTTP that
//! `postvault verify` accepts; a vault whose database was restored from an
//! older copy makes it exit non-zero with the vault's error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::path::{Path, PathBuf};

mod common;

use common::{postvault, text};

fn quickstart(dir: &Path) -> std::process::Output {
    postvault(&[
        "quickstart",
        "--no-serve",
        "--data-dir",
        dir.to_str().unwrap(),
    ])
}

fn pngs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("demo"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    v.sort();
    v
}

fn verifies(dir: &Path, png: &Path) -> bool {
    let o = postvault(&[
        "verify",
        "--image",
        png.to_str().unwrap(),
        "--ca",
        dir.join("postal/ca.pem").to_str().unwrap(),
        "--cert",
        dir.join("demo/psd.pem").to_str().unwrap(),
    ]);
    o.status.success()
}

#[test]
fn quickstart_prints_verified_indicia_and_reuses_its_vault() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let first = quickstart(&dir);
    assert!(first.status.success(), "{}", text(&first));
    let out = text(&first);
    assert!(out.contains("WARNING: development vault"), "{out}");
    assert!(out.contains("postvault verify --image"), "{out}");
    let after_first = pngs(&dir);
    assert_eq!(after_first.len(), 3, "{after_first:?}");
    for p in &after_first {
        assert!(verifies(&dir, p), "{} does not verify", p.display());
    }
    let config = std::fs::read(dir.join("vault.json")).unwrap();

    let second = quickstart(&dir);
    assert!(second.status.success(), "{}", text(&second));
    assert!(text(&second).contains("reusing the vault"));
    assert_eq!(std::fs::read(dir.join("vault.json")).unwrap(), config);
    let after_second = pngs(&dir);
    assert_eq!(after_second.len(), 6, "{after_second:?}");
    for p in after_second.iter().filter(|p| !after_first.contains(p)) {
        assert!(verifies(&dir, p), "{} does not verify", p.display());
    }
    // An altered PNG does not verify: the check above can fail.
    let mut bytes = std::fs::read(&after_first[0]).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    let bad = tmp.path().join("bad.png");
    std::fs::write(&bad, bytes).unwrap();
    assert!(!verifies(&dir, &bad));
}

#[test]
fn quickstart_on_a_restored_database_exits_with_the_vaults_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert!(quickstart(&dir).status.success());
    let backup = tmp.path().join("vault.db.bak");
    std::fs::copy(dir.join("vault.db"), &backup).unwrap();
    assert!(quickstart(&dir).status.success());
    std::fs::copy(&backup, dir.join("vault.db")).unwrap();
    for ext in ["vault.db-wal", "vault.db-shm"] {
        let _ = std::fs::remove_file(dir.join(ext));
    }
    let third = quickstart(&dir);
    assert!(!third.status.success(), "{}", text(&third));
    assert!(
        text(&third).contains("checkpoint"),
        "the error names the checkpoint mismatch: {}",
        text(&third)
    );
}

#[test]
fn restoring_the_vault_and_audit_databases_together_is_not_taken_for_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert!(quickstart(&dir).status.success());
    let backup = tmp.path().join("backup");
    std::fs::create_dir_all(&backup).unwrap();
    for f in ["vault.db", "audit.db"] {
        std::fs::copy(dir.join(f), backup.join(f)).unwrap();
    }
    assert!(quickstart(&dir).status.success());
    for f in ["vault.db", "audit.db"] {
        std::fs::copy(backup.join(f), dir.join(f)).unwrap();
        for ext in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.join(format!("{f}{ext}")));
        }
    }
    // The modules printed after the backup; with both databases rewound only
    // the modules' own logs remember it, and they show a clean power-off after
    // those transactions: the vault must refuse rather than hand their value back.
    let third = quickstart(&dir);
    assert!(!third.status.success(), "{}", text(&third));
    let out = text(&third);
    assert!(out.contains("restored together"), "{out}");
    assert!(!out.contains("Auto-Recover discarded"), "{out}");
}
