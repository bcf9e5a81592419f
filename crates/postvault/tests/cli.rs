//! The `postvault` binary driven as an operator would: the ceremony demo, audit
//! verification of what it leaves, tampering and truncation, refusals and exit codes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::path::Path;
use std::process::{Command, Output};

mod common;

use common::{postvault, text};

fn demo(dir: &Path) {
    let o = postvault(&["ceremony", "demo", "--dir", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
}

/// Splits a stored audit log into its length-prefixed records: (offset, length) each.
fn records(log: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < log.len() {
        let len = u32::from_be_bytes(log[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, 4 + len));
        at += 4 + len;
    }
    out
}

fn passphrase(dir: &Path, user: &str) -> String {
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("demo-credentials.json")).unwrap()).unwrap();
    creds
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["user"] == user)
        .unwrap()["passphrase"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn as_user(dir: &Path, user: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_postvault"))
        .args(args)
        .env("POSTVAULT_PASSPHRASE", passphrase(dir, user))
        .output()
        .unwrap()
}

#[test]
fn demo_leaves_two_modules_sharing_an_mks_with_verifying_logs() {
    let tmp = tempfile::tempdir().unwrap();
    demo(tmp.path());
    let master = tmp.path().join("master");
    let clone = tmp.path().join("clone");
    for m in [&master, &clone] {
        let o = postvault(&["audit", "verify", "--dir", m.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).starts_with("OK: "), "{}", text(&o));
    }
    let status = |m: &Path| -> serde_json::Value {
        let o = postvault(&["module", "status", "--dir", m.to_str().unwrap(), "--json"]);
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let (sm, sc) = (status(&master), status(&clone));
    assert_eq!(sm["state"], "operational");
    assert_eq!(sc["state"], "operational");
    assert_eq!(sm["active_mks"]["id"], sc["active_mks"]["id"]);
    assert_eq!(
        sc["active_mks"]["exportable"], false,
        "the clone's MKS is retained"
    );

    // Each module opens a token the other made, with the same key check value.
    let tok = tmp.path().join("fresh.token");
    let d = tmp.path();
    let o = as_user(
        d,
        "so",
        &[
            "ceremony",
            "test-token",
            "--dir",
            master.to_str().unwrap(),
            "--user",
            "so",
            "--out",
            tok.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let kcv = text(&o)
        .split("key check value ")
        .nth(1)
        .unwrap()
        .trim_end_matches([')', '\n'])
        .to_owned();
    let o = as_user(
        d,
        "so",
        &[
            "ceremony",
            "check-token",
            "--dir",
            clone.to_str().unwrap(),
            "--user",
            "so",
            "--token",
            tok.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("key check value {kcv}")),
        "{}",
        text(&o)
    );

    // The postal part printed an indicium that a clerk's verify accepts, and
    // each module reports its newest checkpoint for the module table.
    let postal = d.join("postal");
    let o = postvault(&[
        "verify",
        "--image",
        postal.join("indicium.png").to_str().unwrap(),
        "--ca",
        postal.join("ca.pem").to_str().unwrap(),
        "--cert",
        postal.join("psd.pem").to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["fields"]["kind"], "postage", "{report}");
    for s in [&sm, &sc] {
        assert!(s["checkpoint"]["mac"].is_string(), "{s}");
        assert_eq!(s["psd_inhibited"], false);
    }

    // A second demo into the same directory is refused unless --replace is given.
    let o = postvault(&["ceremony", "demo", "--dir", d.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = postvault(&[
        "ceremony",
        "demo",
        "--dir",
        d.to_str().unwrap(),
        "--replace",
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_flipped_byte_in_any_entry_fails_verification_naming_that_entry() {
    let tmp = tempfile::tempdir().unwrap();
    demo(tmp.path());
    let log = std::fs::read(tmp.path().join("master/audit.log")).unwrap();
    let recs = records(&log);
    assert!(recs.len() > 50, "the demo writes a long log");
    let bad = tmp.path().join("bad.log");
    for (index, (start, len)) in recs.iter().enumerate() {
        // One byte inside the record body, a different relative place for each entry.
        let at = start + 4 + (index * 7) % (len - 4);
        let mut copy = log.clone();
        copy[at] ^= 0x01;
        std::fs::write(&bad, &copy).unwrap();
        let o = postvault(&["audit", "verify", "--log", bad.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "entry {index}: {}", text(&o));
        assert!(
            text(&o).contains(&format!("entry {index}:")),
            "entry {index}: {}",
            text(&o)
        );
    }
}

#[test]
fn removed_trailing_entries_are_caught_by_the_expected_head_and_by_the_module() {
    let tmp = tempfile::tempdir().unwrap();
    demo(tmp.path());
    let dir = tmp.path().join("clone");
    let log_path = dir.join("audit.log");
    let log = std::fs::read(&log_path).unwrap();
    let o = postvault(&["audit", "verify", "--log", log_path.to_str().unwrap()]);
    let head = text(&o).rsplit("head ").next().unwrap().trim().to_owned();
    assert_eq!(head.len(), 64, "{}", text(&o));

    let recs = records(&log);
    let (cut, _) = recs[recs.len() - 3];
    let short = tmp.path().join("short.log");
    std::fs::write(&short, &log[..cut]).unwrap();
    // Without a head to compare, a truncated chain is internally consistent.
    let o = postvault(&["audit", "verify", "--log", short.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    // With the recorded head, it is caught.
    let o = postvault(&[
        "audit",
        "verify",
        "--log",
        short.to_str().unwrap(),
        "--expect-head",
        &head,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("entries were removed"), "{}", text(&o));
    // In place, the module's own chain head catches it without --expect-head.
    std::fs::write(&log_path, &log[..cut]).unwrap();
    let o = postvault(&["audit", "verify", "--dir", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("module's chain head"), "{}", text(&o));
}

#[test]
fn refusals_have_clear_messages_and_exit_codes_and_are_audited() {
    let tmp = tempfile::tempdir().unwrap();
    demo(tmp.path());
    let d = tmp.path();
    let master = d.join("master");
    let m = master.to_str().unwrap();
    let entries = |p: &Path| records(&std::fs::read(p.join("audit.log")).unwrap()).len();
    let before = entries(&master);

    // A key custodian may not open Administrative state.
    let o = as_user(
        d,
        "kc1",
        &["ceremony", "begin-admin", "--dir", m, "--user", "kc1"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("BeginAdmin refused in operational state for role key-custodian"),
        "{}",
        text(&o)
    );
    // A wrong passphrase.
    let o = Command::new(env!("CARGO_BIN_EXE_postvault"))
        .args(["ceremony", "begin-admin", "--dir", m, "--user", "so"])
        .env("POSTVAULT_PASSPHRASE", "not the passphrase at all")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("unknown user or wrong password"),
        "{}",
        text(&o)
    );
    // Both refusals were audited, and the log still verifies.
    assert!(entries(&master) > before);
    let o = postvault(&["audit", "verify", "--dir", m]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("refusals recorded"), "{}", text(&o));

    // Garbage files: a share sent to a module that is not importing is refused
    // (1), a garbage log fails verification (1), a missing log is an I/O error (3).
    let junk = d.join("junk.bin");
    std::fs::write(&junk, b"not a share").unwrap();
    let o = as_user(
        d,
        "kc1",
        &[
            "ceremony",
            "import-share",
            "--dir",
            d.join("clone").to_str().unwrap(),
            "--user",
            "kc1",
            "--share",
            junk.to_str().unwrap(),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "refused: the clone is not importing: {}",
        text(&o)
    );
    let o = postvault(&["audit", "verify", "--log", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = postvault(&[
        "audit",
        "verify",
        "--log",
        d.join("missing.log").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}

#[test]
fn reset_erases_the_module_and_archives_its_log() {
    let tmp = tempfile::tempdir().unwrap();
    demo(tmp.path());
    let clone = tmp.path().join("clone");
    let c = clone.to_str().unwrap();
    let o = postvault(&["module", "reset", "--dir", c]);
    assert_eq!(o.status.code(), Some(2), "reset needs --yes: {}", text(&o));
    let o = postvault(&["module", "reset", "--dir", c, "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = postvault(&["module", "status", "--dir", c, "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["state"], "uninitialized");
    assert!(s["active_mks"].is_null());
    let archived: Vec<_> = std::fs::read_dir(&clone)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name().to_string_lossy().starts_with("audit.") && e.file_name() != "audit.log"
        })
        .collect();
    assert_eq!(archived.len(), 1);
    // The archived chain still verifies, and ends with the signed Reset entry.
    let o = postvault(&[
        "audit",
        "verify",
        "--log",
        archived[0].path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_clean_power_off_resumes_and_a_reboot_runs_boot_detection() {
    let tmp = tempfile::tempdir().unwrap();
    demo(tmp.path());
    let d = tmp.path();
    let m = d.join("master");
    let m = m.to_str().unwrap();
    let state = || -> serde_json::Value {
        let o = postvault(&["module", "status", "--dir", m, "--json"]);
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["state"].clone()
    };
    let o = as_user(
        d,
        "so",
        &["ceremony", "begin-admin", "--dir", m, "--user", "so"],
    );
    assert!(o.status.success(), "{}", text(&o));
    // Separate invocations resume where the last one left off.
    assert_eq!(state(), "administrative");
    assert_eq!(state(), "administrative");
    // A reboot runs boot detection: Administrative lands in Operational.
    let o = postvault(&["module", "reboot", "--dir", m]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("state:          operational (persistent: operational)"),
        "{}",
        text(&o)
    );
    assert_eq!(state(), "operational");
    let o = postvault(&["audit", "verify", "--dir", m]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn bench_runs_every_operation() {
    let o = postvault(&["bench", "--iterations", "3"]);
    assert!(o.status.success(), "{}", text(&o));
    for op in [
        "open operator session",
        "logon + logoff",
        "sealed request",
        "generate key token",
        "open key token",
        "verify audit log",
    ] {
        assert!(text(&o).contains(op), "{op}: {}", text(&o));
    }
}

#[test]
fn operators_talk_only_to_the_module_their_audit_log_names() {
    let tmp = tempfile::tempdir().unwrap();
    demo(tmp.path());
    let d = tmp.path();
    let clone = d.join("clone");
    let tok = d.join("t.token");
    let args = [
        "ceremony",
        "test-token",
        "--dir",
        clone.to_str().unwrap(),
        "--user",
        "so",
        "--out",
        tok.to_str().unwrap(),
    ];
    let o = as_user(d, "so", &args);
    assert!(o.status.success(), "{}", text(&o));
    // The host pins the audit key from the log's first entry: with another
    // module's log in place, the session handshake does not verify.
    std::fs::copy(d.join("master/audit.log"), clone.join("audit.log")).unwrap();
    let o = as_user(d, "so", &args);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("authentication failed"), "{}", text(&o));
}

#[test]
fn bench_runs_postal_work_on_a_file_backed_module() {
    let o = postvault(&["bench", "--iterations", "3"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for row in ["postage value download", "create indicium"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no row {row:?} in\n{out}"));
        // The count column says each operation ran.
        assert!(line.split_whitespace().any(|w| w == "3"), "{line}");
    }
}
