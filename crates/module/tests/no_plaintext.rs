//! No plaintext key in any file: the clone ceremony over `FileNvm` in two
//! directories, the host's share, token and audit files written beside the
//! records, then every file except the storage key scanned for every raw secret
//! the modules hold (read back through the storage key).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{Hsm, TEAM, clone_ceremony, password};
use postvault_module::codec;
use postvault_module::mks::{ExportCeremony, ImportCeremony, MksSlots};
use postvault_module::module::{Identity, TransportRecord};
use postvault_module::nvm::file::{FileNvm, KEY_FILE};
use postvault_module::nvm::{Nvm, Slot};
use postvault_module::wire::{ModuleConfig, Request, Response};

/// A named secret; `prefix` also searches for its first 16 bytes.
struct Secret {
    name: String,
    bytes: Vec<u8>,
    prefix: bool,
}

fn secret(name: impl Into<String>, bytes: &[u8]) -> Secret {
    assert!(
        bytes.len() >= 16 && bytes.iter().any(|b| *b != 0),
        "a real secret"
    );
    Secret {
        name: name.into(),
        bytes: bytes.to_vec(),
        prefix: true,
    }
}

fn record<T: serde::de::DeserializeOwned>(dir: &Path, slot: Slot) -> Option<T> {
    let nvm = FileNvm::open(dir).unwrap();
    nvm.read(slot)
        .unwrap()
        .map(|b| codec::decode(&b, "record").unwrap())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.file_name().is_some_and(|n| n != KEY_FILE) {
            out.push(path);
        }
    }
}

/// Every (file, secret) where the file holds the secret or its first 16 bytes.
fn leaks(dirs: &[&Path], secrets: &[Secret]) -> Vec<(PathBuf, String)> {
    let mut all = Vec::new();
    for d in dirs {
        files(d, &mut all);
    }
    let mut found = Vec::new();
    for path in all {
        let data = fs::read(&path).unwrap();
        for s in secrets {
            if contains(&data, &s.bytes) || (s.prefix && contains(&data, &s.bytes[..16])) {
                found.push((path.clone(), s.name.clone()));
            }
        }
    }
    found
}

/// The secrets of an audit signing key: the PKCS#8 document, the private scalar
/// inside it (the OCTET STRING after ECPrivateKey's version 1), and every 32-byte
/// window of the document that is not part of the public key.
fn audit_key_secrets(tag: &str, pkcs8: &[u8], public: &[u8]) -> Vec<Secret> {
    let mut out = vec![secret(format!("{tag} audit key PKCS#8"), pkcs8)];
    let marker = [0x02, 0x01, 0x01, 0x04, 0x20];
    let at = pkcs8
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("an EC private key")
        + marker.len();
    let scalar = &pkcs8[at..at + 32];
    assert!(!contains(public, scalar));
    out.push(secret(format!("{tag} audit private scalar"), scalar));
    for (i, w) in pkcs8.windows(32).enumerate() {
        if !contains(public, w) {
            out.push(Secret {
                name: format!("{tag} audit PKCS#8 window {i}"),
                bytes: w.to_vec(),
                prefix: false,
            });
        }
    }
    out
}

#[test]
fn no_file_the_modules_or_host_write_holds_a_plaintext_secret() {
    let master_dir = tempfile::tempdir().unwrap();
    let clone_dir = tempfile::tempdir().unwrap();
    let (md, cd) = (master_dir.path(), clone_dir.path());
    let mut master = Hsm::over(FileNvm::open(md).unwrap());
    let mut clone = Hsm::over(FileNvm::open(cd).unwrap());
    master.initialize(ModuleConfig::for_tests());
    clone.initialize(ModuleConfig::for_tests());
    let mut shares = clone_ceremony(&mut master, &mut clone);
    let tokens = [
        master.test_token("file test m").0,
        clone.test_token("file test c").0,
    ];

    // The crypto-card's shared keys: generated on the master, loaded on the clone.
    let provider =
        postvault_crypto::sig::SigningKey::generate(postvault_crypto::sig::SigAlg::EcdsaP256Sha256)
            .unwrap()
            .public_key();
    let settings = postvault_module::cryptocard::CardSettings {
        provider_key: (provider.alg().id(), provider.as_bytes().to_vec()),
        ca_certificate: b"certificate".to_vec(),
        min_value: postvault_indicium::Money::from_tenths(10),
        max_value: postvault_indicium::Money::from_tenths(100_000),
        dr_ceiling: postvault_indicium::Money::from_tenths(5_000_000),
        ar_ceiling: postvault_indicium::Money::from_tenths((1 << 40) - 1),
    };
    let card_tokens = match master
        .as_user(
            "so",
            Request::InitializeCryptoCard {
                settings: settings.clone(),
                tokens: None,
            },
        )
        .unwrap()
    {
        Response::CryptoCard { tokens, .. } => tokens,
        r => panic!("{r:?}"),
    };
    clone
        .as_user(
            "so",
            Request::InitializeCryptoCard {
                settings,
                tokens: Some(card_tokens.clone()),
            },
        )
        .unwrap();
    let tokens = [
        tokens[0].clone(),
        tokens[1].clone(),
        card_tokens.registration_signing,
        card_tokens.registration_hpke,
        card_tokens.checkpoint_mac,
    ];

    // Leave a second ceremony half-way, so both modules hold raw shares in NVM.
    let transport = clone.status().transport_key.unwrap();
    clone.as_user("so", Request::StartImportingMks).unwrap();
    master
        .as_user(
            "so",
            Request::CreateMksShares {
                shares: 3,
                threshold: 2,
                exportable: false,
            },
        )
        .unwrap();
    match master
        .as_user(
            "kc1",
            Request::ExportShare {
                destination: transport,
            },
        )
        .unwrap()
    {
        Response::Share { share, .. } => shares.push(share),
        r => panic!("{r:?}"),
    }
    clone.import_share("kc1", shares.last().unwrap()).unwrap();

    // What a host writes: share files, token files, audit logs.
    for (dir, hsm_log, name) in [(md, master.log(), "master"), (cd, clone.log(), "clone")] {
        fs::write(dir.join(format!("{name}-audit.log")), hsm_log).unwrap();
        fs::create_dir_all(dir.join("shares")).unwrap();
        fs::create_dir_all(dir.join("tokens")).unwrap();
        for (i, s) in shares.iter().enumerate() {
            fs::write(dir.join("shares").join(format!("share-{i}.bin")), s).unwrap();
        }
        for (i, t) in tokens.iter().enumerate() {
            fs::write(dir.join("tokens").join(format!("token-{i}.bin")), t).unwrap();
        }
    }

    // Every raw secret, read back through the storage keys.
    let mut secrets = Vec::new();
    for (tag, dir) in [("master", md), ("clone", cd)] {
        let card: postvault_module::cryptocard::CryptoCard = record(dir, Slot::CryptoCard).unwrap();
        let public = card.public().unwrap();
        secrets.extend(audit_key_secrets(
            &format!("{tag} registration"),
            &card.registration_signing,
            &public.registration_signing.1,
        ));
        secrets.push(secret(
            format!("{tag} registration HPKE key"),
            &card.registration_hpke[..],
        ));
        secrets.push(secret(
            format!("{tag} checkpoint MAC key"),
            &card.checkpoint_mac[..],
        ));
        let slots: MksSlots = record(dir, Slot::Mks).unwrap();
        let active = slots.active.unwrap();
        secrets.push(secret(format!("{tag} MEK"), &active.mek[..]));
        secrets.push(secret(format!("{tag} MAK"), &active.mak[..]));
        let id: Identity = record(dir, Slot::Identity).unwrap();
        let status = if tag == "master" {
            master.status()
        } else {
            clone.status()
        };
        secrets.extend(audit_key_secrets(
            tag,
            &id.audit_key_pkcs8,
            &status.audit_key.unwrap().1,
        ));
        secrets.push(secret(
            format!("{tag} storage key"),
            &fs::read(dir.join(KEY_FILE)).unwrap(),
        ));
    }
    let transport: TransportRecord = record(cd, Slot::Transport).unwrap();
    secrets.push(secret(
        "clone transport private key",
        &transport.private[..],
    ));
    let export: ExportCeremony = record(md, Slot::Export).unwrap();
    assert_eq!(export.remaining.len(), 2);
    for (id, value) in &export.remaining {
        secrets.push(secret(format!("unexported share {id}"), value));
    }
    let import: ImportCeremony = record(cd, Slot::Import).unwrap();
    assert_eq!(import.received.len(), 1);
    for (id, value, _) in &import.received {
        secrets.push(secret(format!("imported share {id}"), value));
    }
    for (user, _) in TEAM {
        secrets.push(secret(
            format!("password of {user}"),
            password(user).expose(),
        ));
    }
    let mks_m: MksSlots = record(md, Slot::Mks).unwrap();
    let mks_c: MksSlots = record(cd, Slot::Mks).unwrap();
    assert_eq!(
        mks_m.active.unwrap().mek,
        mks_c.active.unwrap().mek,
        "the records were read correctly"
    );

    let dirs = [md, cd];
    let mut scanned = Vec::new();
    for d in dirs {
        files(d, &mut scanned);
    }
    assert!(
        scanned
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "rec")),
        "NVM records are scanned"
    );
    assert!(
        scanned.len() >= 2 * (1 + shares.len() + tokens.len()) + 12,
        "{scanned:?}"
    );
    assert_eq!(leaks(&dirs, &secrets), Vec::new());

    // The scanner does find a secret that is there, whole or as a 16-byte prefix.
    let scratch = md.join("scratch.bin");
    for (i, content) in [
        [
            b"junk before ".as_slice(),
            &secrets[0].bytes,
            b" junk after",
        ]
        .concat(),
        [b"junk ".as_slice(), &secrets[1].bytes[..16]].concat(),
    ]
    .into_iter()
    .enumerate()
    {
        fs::write(&scratch, content).unwrap();
        let found = leaks(&dirs, &secrets);
        assert!(
            found.contains(&(scratch.clone(), secrets[i].name.clone())),
            "{found:?}"
        );
        assert!(found.iter().all(|(p, _)| p == &scratch), "{found:?}");
    }
    fs::remove_file(&scratch).unwrap();
    assert_eq!(leaks(&dirs, &secrets), Vec::new());
}
