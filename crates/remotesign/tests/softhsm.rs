//! A real SoftHSM2 token as the device: the key-encrypting keys go into it
//! non-extractable, the derivations run in it, and the whole protocol works
//! with it as with a device file. Uses the system's SoftHSM2 configuration
//! with a token made for this test and deleted after; `.ci/run` installs
//! SoftHSM2. Without it (outside CI) the test says so and passes.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::process::Command;

use postvault_crypto::{Secret32, hpke};
use postvault_remotesign::RemoteSignError;
use postvault_remotesign::server::{Node, verify};
use postvault_remotesign::token::TokenDevice;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &[u8] = b"24681357";

/// A fresh token in the system's token directory, deleted on drop.
struct Token(String);

impl Drop for Token {
    fn drop(&mut self) {
        let _ = Command::new("softhsm2-util")
            .args(["--delete-token", "--token", &self.0])
            .output();
    }
}

fn token() -> Option<Token> {
    if !Path::new(MODULE).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "SoftHSM2 must be installed in CI"
        );
        eprintln!("SoftHSM2 is not installed here: the PKCS#11 test did not run");
        return None;
    }
    let label = format!(
        "pv-test-{}",
        hex::encode(postvault_crypto::rand::bytes::<4>().unwrap())
    );
    let o = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            &label,
            "--so-pin",
            "87654321",
            "--pin",
        ])
        .arg(std::str::from_utf8(PIN).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(Token(label))
}

#[test]
fn a_softhsm_token_approves_messages_and_keeps_its_keys() {
    let Some(t) = token() else { return };
    let node = Node::new(
        Secret32::generate().unwrap(),
        hpke::PrivateKey::generate().unwrap().0,
    );
    let (record, issued) = node.enrol("officer").unwrap();
    let device = TokenDevice::open(Path::new(MODULE), &t.0, "officer").unwrap();
    device.install(PIN, &issued).unwrap();
    drop(issued);
    // The token will not let the key-encrypting keys out.
    assert!(!device.keys_extractable(PIN).unwrap());
    // Installing again for the same person is refused.
    let (_, again) = node.enrol("officer").unwrap();
    assert!(device.install(PIN, &again).is_err());

    let msg = b"download $500.000 into PV00000042";
    let (record, challenge) = node.challenge(&record, &[]).unwrap();
    assert_eq!(
        device.approve(b"00000000", msg, &challenge).err(),
        Some(RemoteSignError::WrongPin { failures: 1 })
    );
    let request = device.approve(PIN, msg, &challenge).unwrap();
    // Bound to the message, and used once.
    assert_eq!(
        node.sign(&record, &request, b"another").err(),
        Some(RemoteSignError::NotAuthorised)
    );
    let (next, sig, _) = node.sign(&record, &request, msg).unwrap();
    verify(&next.public_key, msg, &sig).unwrap();
    assert!(node.sign(&next, &request, msg).is_err());
    // Again with the next random number.
    let (next, challenge) = node.challenge(&next, &[]).unwrap();
    let request = device.approve(PIN, b"second", &challenge).unwrap();
    let (_, sig, _) = node.sign(&next, &request, b"second").unwrap();
    verify(&next.public_key, b"second", &sig).unwrap();
}
