//! One test per property seed 003 claims for remote signing.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use postvault_crypto::password::Argon2Params;
use postvault_crypto::{Secret32, hpke};
use postvault_remotesign::RemoteSignError;
use postvault_remotesign::device::{DeviceFile, PIN_LIMIT};
use postvault_remotesign::server::{Node, Records, verify};

const PIN: &[u8] = b"4711-2026";

fn node() -> Node {
    Node::new(
        Secret32::generate().unwrap(),
        hpke::PrivateKey::generate().unwrap().0,
    )
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Enrols "officer" on `n`: the record, the device file, and the clear
/// KEK1 and KCAR (for the tests' scans only).
fn enrol(
    n: &Node,
) -> (
    postvault_remotesign::server::Record,
    DeviceFile,
    [u8; 32],
    [u8; 32],
) {
    let (record, issued) = n.enrol("officer").unwrap();
    let device = DeviceFile::new(&issued, PIN, Argon2Params::FAST_FOR_TESTS).unwrap();
    (record, device, *issued.kek1.expose(), *issued.kcar.expose())
}

/// One signature through the whole protocol.
fn sign(
    n: &Node,
    record: &postvault_remotesign::server::Record,
    device: &mut DeviceFile,
    msg: &[u8],
) -> postvault_remotesign::Result<postvault_remotesign::server::Record> {
    let (record, challenge) = n.challenge(record, &[])?;
    let request = device.approve(PIN, msg, &challenge)?;
    let (next, sig, _) = n.sign(&record, &request, msg)?;
    verify(&next.public_key, msg, &sig)?;
    Ok(next)
}

#[test]
fn the_store_and_the_device_hold_no_plaintext_key() {
    let n = node();
    let (record, mut device, kek1, kcar) = enrol(&n);
    let record = sign(&n, &record, &mut device, b"download $500 to PV00000042").unwrap();
    let stored = postcard::to_allocvec(&record).unwrap();
    // A clear P-256 PKCS#8 key starts with this algorithm identifier.
    let pkcs8_oid = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    assert!(
        !contains(&stored, &pkcs8_oid),
        "a clear private key in the record"
    );
    for (what, secret) in [("KEK1", kek1), ("KCAR", kcar)] {
        assert!(!contains(&stored, &secret), "{what} in the record");
        assert!(
            !contains(&device.to_bytes().unwrap(), &secret),
            "{what} in the device file"
        );
    }
    assert!(
        !contains(&device.to_bytes().unwrap(), PIN),
        "the PIN in the device file"
    );
}

#[test]
fn a_captured_request_signs_no_other_message() {
    let n = node();
    let (record, mut device, _, _) = enrol(&n);
    let (record, challenge) = n.challenge(&record, &[]).unwrap();
    let request = device
        .approve(PIN, b"authorise customer alice", &challenge)
        .unwrap();
    let r = n.sign(&record, &request, b"authorise customer mallory");
    assert_eq!(r.err(), Some(RemoteSignError::NotAuthorised));
    // An altered request does not open either; the honest one still works.
    let mut altered = request.clone();
    altered.sealed[10] ^= 1;
    assert_eq!(
        n.sign(&record, &altered, b"authorise customer alice").err(),
        Some(RemoteSignError::NotAuthorised)
    );
    assert!(
        n.sign(&record, &request, b"authorise customer alice")
            .is_ok()
    );
}

#[test]
fn a_captured_request_replayed_after_use_fails() {
    let n = node();
    let (record, mut device, _, _) = enrol(&n);
    let msg = b"refund meter PV00000042";
    let (record, challenge) = n.challenge(&record, &[]).unwrap();
    let request = device.approve(PIN, msg, &challenge).unwrap();
    let (after, _, _) = n.sign(&record, &request, msg).unwrap();
    // Replayed as it was: the counter moved on.
    assert!(matches!(
        n.sign(&after, &request, msg),
        Err(RemoteSignError::Stale { .. })
    ));
    // Replayed into a new session, counter rewritten: RNx moved on, so it
    // does not open.
    let (after, _) = n.challenge(&after, &[]).unwrap();
    let mut replay = request.clone();
    replay.counter = after.counter;
    assert_eq!(
        n.sign(&after, &replay, msg).err(),
        Some(RemoteSignError::NotAuthorised)
    );
    // (Restoring the old record from a backup would make it work again: the
    // vault's checkpoints are what refuse a restored store.)
}

#[test]
fn a_wrong_pin_fails_on_the_device_and_locks_it() {
    let n = node();
    let (record, mut device, _, _) = enrol(&n);
    let (_, challenge) = n.challenge(&record, &[]).unwrap();
    for i in 1..PIN_LIMIT {
        assert_eq!(
            device.approve(b"0000", b"m", &challenge).err(),
            Some(RemoteSignError::WrongPin { failures: i })
        );
    }
    // A right PIN before the limit clears the count.
    device.approve(PIN, b"m", &challenge).unwrap();
    assert_eq!(device.failures, 0);
    for _ in 1..PIN_LIMIT {
        let _ = device.approve(b"0000", b"m", &challenge);
    }
    assert_eq!(
        device.approve(b"0000", b"m", &challenge).err(),
        Some(RemoteSignError::Locked)
    );
    // Locked: even the right PIN is refused, and the count survives the file.
    let reread = DeviceFile::from_bytes(&device.to_bytes().unwrap()).unwrap();
    let mut reread = reread;
    assert_eq!(
        reread.approve(PIN, b"m", &challenge).err(),
        Some(RemoteSignError::Locked)
    );
}

#[test]
fn a_stolen_device_file_without_the_pin_is_useless() {
    let n = node();
    let (record, device, kek1, kcar) = enrol(&n);
    let stolen = device.to_bytes().unwrap();
    assert!(!contains(&stolen, &kek1) && !contains(&stolen, &kcar));
    let mut thief = DeviceFile::from_bytes(&stolen).unwrap();
    let (_, challenge) = n.challenge(&record, &[]).unwrap();
    for guess in [b"1234".as_slice(), b"0000", b"4711"] {
        assert!(thief.approve(guess, b"download $9999", &challenge).is_err());
    }
    assert_eq!(
        thief.approve(PIN, b"m", &challenge).err(),
        Some(RemoteSignError::Locked),
        "locked after the guesses, even with the PIN"
    );
}

#[test]
fn the_pin_changes_on_the_device_alone() {
    let n = node();
    let (record, mut device, _, _) = enrol(&n);
    device.change_pin(PIN, b"new-pin-2027").unwrap();
    let (record, challenge) = n.challenge(&record, &[]).unwrap();
    assert!(matches!(
        device.approve(PIN, b"m", &challenge),
        Err(RemoteSignError::WrongPin { .. })
    ));
    let request = device.approve(b"new-pin-2027", b"m", &challenge).unwrap();
    let (_, sig, _) = n.sign(&record, &request, b"m").unwrap();
    verify(&record.public_key, b"m", &sig).unwrap();
    assert!(device.change_pin(b"wrong", b"x").is_err());
}

#[test]
fn after_revocation_nothing_signs() {
    let n = node();
    let (record, mut device, _, _) = enrol(&n);
    let mut records = Records::default();
    records.put(sign(&n, &record, &mut device, b"first").unwrap());
    assert!(records.revoke("officer"));
    assert_eq!(
        records.get("officer").err(),
        Some(RemoteSignError::Revoked("officer".into()))
    );
    assert!(!records.revoke("officer"));
}

#[test]
fn a_replica_signs_on_its_own_and_revocation_on_one_node_spares_the_other() {
    let (a, b) = (node(), node());
    let (record, mut device, _, _) = enrol(&a);
    // A signing session on A makes B's copy: its own random number and variant.
    let (record, challenge) = a.challenge(&record, &[b.replica_key().unwrap()]).unwrap();
    let request = device.approve(PIN, b"replicate", &challenge).unwrap();
    let (record_a, _, replicas) = a.sign(&record, &request, b"replicate").unwrap();
    assert_eq!(replicas.len(), 1);
    // A replica for B does not open on A.
    assert!(a.import(&replicas[0]).is_err());
    let record_b = b.import(&replicas[0]).unwrap();
    let (mut on_a, mut on_b) = (Records::default(), Records::default());
    on_a.put(record_a);
    on_b.put(record_b);
    // Both sign independently, interleaved.
    for msg in [b"one".as_slice(), b"two"] {
        for (n, rs) in [(&a, &mut on_a), (&b, &mut on_b)] {
            let next = sign(n, rs.get("officer").unwrap(), &mut device, msg).unwrap();
            rs.put(next);
        }
    }
    // A's request does not work on B.
    let (ra, ca) = a.challenge(on_a.get("officer").unwrap(), &[]).unwrap();
    let req_a = device.approve(PIN, b"x", &ca).unwrap();
    assert!(b.sign(on_b.get("officer").unwrap(), &req_a, b"x").is_err());
    on_a.put(ra);
    // Revoked on A: A stops, B goes on; and B's record does not revive A.
    on_a.revoke("officer");
    assert!(on_a.get("officer").is_err());
    let next = sign(&b, on_b.get("officer").unwrap(), &mut device, b"three").unwrap();
    on_b.put(next);
    assert!(on_a.get("officer").is_err());
    assert!(
        a.challenge(on_b.get("officer").unwrap(), &[]).is_err(),
        "B's record means nothing to A"
    );
}

#[test]
fn a_record_claiming_another_public_key_signs_nothing() {
    let n = node();
    let (record, mut device, _, _) = enrol(&n);
    let (other, _) = n.enrol("someone-else").unwrap();
    // The stored record's public key swapped for another person's: the
    // record no longer opens, so nothing is signed under a false name.
    let mut swapped = record.clone();
    swapped.public_key = other.public_key.clone();
    assert!(n.challenge(&swapped, &[]).is_err());
    // The honest record still signs, under its own key.
    sign(&n, &record, &mut device, b"m").unwrap();
}

#[test]
fn a_replica_goes_only_to_the_node_the_device_approved() {
    let (a, b, c) = (node(), node(), node());
    let (record, mut device, _, _) = enrol(&a);
    let (_, for_b) = a.challenge(&record, &[b.replica_key().unwrap()]).unwrap();
    let approved_for_b = device.approve(PIN, b"replicate", &for_b).unwrap();
    // The same session re-aimed at C: B's approval does not cover it.
    let (record, _) = a.challenge(&record, &[c.replica_key().unwrap()]).unwrap();
    assert_eq!(
        a.sign(&record, &approved_for_b, b"replicate").err(),
        Some(RemoteSignError::NotAuthorised)
    );
}
