//! Customer sign-on and session messages (seed 000, `signon.rs`, `postal.rs`
//! Sign-on, `module.rs` Session Open / Session Seal), driven through the real
//! module the way the vault drives it: the client seals its passphrase hash, a
//! session key and a nonce to the crypto-card's vendor key; the module checks
//! the passphrase against the package, counts wrong ones in the package, and
//! answers under the session key with the PSD-signed audit response; later
//! messages are sealed per message under keys derived from the session key and
//! opened or sealed by the module from the session token alone.
//!
//! Every refusal is checked to leave the module as it was ([`refused`] or
//! [`session_refused`]) and, for sign-on, to leave the database's package and
//! checkpoint record usable: the right request sent afterwards succeeds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::postal::*;
use common::*;
use postvault_crypto::hpke;
use postvault_crypto::sig::{SigAlg, SigningKey};
use postvault_indicium::Money;
use postvault_module::audit::AuditData;
use postvault_module::checkpoint::Transaction;
use postvault_module::command::Command;
use postvault_module::nvm::Slot;
use postvault_module::postal::{
    CustomerAction, PostalCommand, PostalOutcome, PostalReply, PostalRequest, customer_secrets,
};
use postvault_module::psd::{self, MAX_SIGN_ON_FAILURES, PsdState, seal_customer_secrets};
use postvault_module::signon::{
    AuditResponse, Direction, MAX_SEALED_SIGN_ON, MAX_SESSION_MESSAGE, SESSION_SECONDS,
    SignOnAnswer, SignOnSecrets, open_answer, open_message, seal_message, seal_sign_on,
};
use postvault_module::wire::{Outer, OuterReply};
use postvault_module::{Error, PsdCheck, codec};
use zeroize::Zeroizing;

const D: u32 = 7_007;
const FUNDS: Money = Money::from_tenths(200_000);
const POSTAGE: Money = Money::from_tenths(730);
/// The HPKE `info` of a sign-on: part of the protocol, so a test may build a
/// sealed sign-on by hand (to give the module plaintext that is not a sign-on).
const SIGN_ON_INFO: &[u8] = b"postvault sign-on v1";

fn meter() -> [u8; 6] {
    device(D)
}

fn other_meter() -> [u8; 6] {
    device(D + 1)
}

fn check(c: PsdCheck) -> Error {
    Error::PsdCheck(c)
}

fn minus(a: Money, b: Money) -> Money {
    a.checked_sub(b).unwrap()
}

fn random<const N: usize>() -> [u8; N] {
    postvault_crypto::rand::bytes().unwrap()
}

// ----- vaults ------------------------------------------------------------------------

/// A vault whose meter is Leased and holds `funds` (AR 0, DR `funds`).
fn leased(funds: Money) -> Vault {
    let mut v = Vault::new();
    v.leased_meter(meter());
    v.download(meter(), funds).unwrap();
    v
}

// ----- the client's side of sign-on ------------------------------------------------------

/// The crypto-card's vendor (registration HPKE) key, as the client gets it.
fn vendor_key(v: &Vault) -> hpke::PublicKey {
    hpke::PublicKey::from_slice(&v.card.registration_hpke).unwrap()
}

fn secrets(passphrase: [u8; 32], session_key: [u8; 32], nonce: [u8; 16]) -> SignOnSecrets {
    SignOnSecrets {
        passphrase: Zeroizing::new(passphrase),
        session_key: Zeroizing::new(session_key),
        nonce,
    }
}

/// What the client keeps of one sign-on attempt, and what it sends.
struct Attempt {
    key: [u8; 32],
    nonce: [u8; 16],
    customer_id: String,
    sealed: Vec<u8>,
}

/// A sign-on to meter `d` as its customer with `passphrase`, a fresh session
/// key and a fresh nonce.
fn attempt(v: &Vault, d: [u8; 6], passphrase: [u8; 32]) -> Attempt {
    attempt_with_key(v, d, passphrase, random())
}

fn attempt_with_key(v: &Vault, d: [u8; 6], passphrase: [u8; 32], key: [u8; 32]) -> Attempt {
    let customer_id = v.clients[&d].customer_id.clone();
    let nonce = random();
    let sealed = seal_sign_on(
        &vendor_key(v),
        &d,
        &customer_id,
        &secrets(passphrase, key, nonce),
    )
    .unwrap();
    Attempt {
        key,
        nonce,
        customer_id,
        sealed,
    }
}

/// The Sign-on command for meter `d` with the database's package.
fn sign_on_command(v: &Vault, d: [u8; 6], customer_id: &str, sealed: Vec<u8>) -> PostalCommand {
    PostalCommand::SignOn {
        package: v.package(d),
        customer_id: customer_id.to_owned(),
        sealed,
    }
}

/// Sends a sign-on with the database's package and checkpoint; on success the
/// database stores the package (and, in [`Vault::send`], the checkpoint).
fn send_sign_on(v: &mut Vault, d: [u8; 6], a: &Attempt) -> postvault_module::Result<PostalReply> {
    let command = sign_on_command(v, d, &a.customer_id, a.sealed.clone());
    let reply = v.send(command)?;
    v.packages.insert(d, reply.package.clone());
    Ok(reply)
}

/// A successful sign-on, as the client and the store see it.
struct SignedOn {
    key: [u8; 32],
    nonce: [u8; 16],
    /// The session token, for the store.
    token: Vec<u8>,
    /// The answer as the client opened it with its session key.
    answer: SignOnAnswer,
    /// The sealed answer, as it travels.
    sealed_answer: Vec<u8>,
    reply: PostalReply,
}

/// Signs on to meter `d` with the customer's passphrase and `key`: it must
/// succeed, and the client must be able to open the answer.
fn signed_on_with_key(v: &mut Vault, d: [u8; 6], key: [u8; 32]) -> SignedOn {
    let a = attempt_with_key(v, d, v.clients[&d].passphrase, key);
    let reply = send_sign_on(v, d, &a).unwrap();
    let PostalOutcome::SignedOn { session, answer } = &reply.outcome else {
        panic!("{:?}", reply.outcome)
    };
    let opened = open_answer(&a.key, &d, &a.customer_id, answer).unwrap();
    SignedOn {
        key: a.key,
        nonce: a.nonce,
        token: session.clone(),
        answer: opened,
        sealed_answer: answer.clone(),
        reply: reply.clone(),
    }
}

fn signed_on(v: &mut Vault, d: [u8; 6]) -> SignedOn {
    signed_on_with_key(v, d, random())
}

/// Signs on to meter `d` with a passphrase that is not the customer's: the
/// module must count it. Returns (failures, locked).
fn wrong_sign_on(v: &mut Vault, d: [u8; 6]) -> (u8, bool) {
    wrong_sign_on_with(v, d, random())
}

/// As [`wrong_sign_on`], with a given (wrong) passphrase.
fn wrong_sign_on_with(v: &mut Vault, d: [u8; 6], passphrase: [u8; 32]) -> (u8, bool) {
    let a = attempt(v, d, passphrase);
    let reply = send_sign_on(v, d, &a).unwrap();
    match reply.outcome {
        PostalOutcome::SignOnRefused { failures, locked } => (failures, locked),
        o => panic!("{o:?}"),
    }
}

// ----- refusals ----------------------------------------------------------------------

/// Sends `command` with the database's checkpoint straight to the module: it
/// must fail with nothing changed in the module (see [`refused`]), whose newest
/// checkpoint is still the database's.
fn refuse(v: &mut Vault, command: PostalCommand) -> Error {
    let checkpoint = v.checkpoint.clone();
    let err = refused(&mut v.hsm, |h| {
        h.host.call(Outer::Postal(Box::new(PostalRequest {
            checkpoint,
            command,
        })))
    });
    assert_eq!(
        v.hsm.status().checkpoint,
        v.checkpoint,
        "after {err:?} the module's newest checkpoint is no longer the database's"
    );
    err
}

/// A sign-on attempt on meter `d` with the database's package, which must be refused.
fn refuse_sign_on(v: &mut Vault, d: [u8; 6], customer_id: &str, sealed: Vec<u8>) -> Error {
    let command = sign_on_command(v, d, customer_id, sealed);
    refuse(v, command)
}

/// The transaction of the newest audit entry, which must be a PSD transaction.
fn last_transaction(v: &Vault) -> Transaction {
    let body = v.hsm.last_body();
    assert_eq!(body.reason, 0, "{body:?}");
    match body.data {
        AuditData::Psd(b) => b.transaction,
        d => panic!("{d:?}"),
    }
}

// ----- session messages ----------------------------------------------------------------

fn open_request(token: &[u8], counter: u64, sealed: &[u8]) -> Outer {
    Outer::SessionOpen {
        session: token.to_vec(),
        counter,
        sealed: sealed.to_vec(),
    }
}

fn seal_request(token: &[u8], counter: u64, plaintext: &[u8]) -> Outer {
    Outer::SessionSeal {
        session: token.to_vec(),
        counter,
        plaintext: plaintext.to_vec(),
    }
}

/// Sends a session command that must succeed without any audit entry (a
/// transport command changes nothing) and without changing the module.
fn session_ok(v: &mut Vault, request: Outer) -> OuterReply {
    let before = v.hsm.snapshot();
    let n = v.hsm.entries().len();
    let seq = v.hsm.status().audit_next_seq;
    let reply = v.hsm.host.call(request).unwrap();
    assert_eq!(
        v.hsm.entries().len(),
        n,
        "a successful session command was audited"
    );
    assert_eq!(v.hsm.status().audit_next_seq, seq, "the audit chain moved");
    assert_eq!(v.hsm.snapshot(), before);
    reply
}

/// Opens a client's message through the module: (device id, plaintext).
fn session_open(v: &mut Vault, token: &[u8], counter: u64, sealed: &[u8]) -> ([u8; 6], Vec<u8>) {
    match session_ok(v, open_request(token, counter, sealed)) {
        OuterReply::MessageOpened {
            device_id,
            plaintext,
        } => (device_id, plaintext),
        r => panic!("{r:?}"),
    }
}

/// Seals a reply through the module.
fn session_seal(v: &mut Vault, token: &[u8], counter: u64, plaintext: &[u8]) -> Vec<u8> {
    match session_ok(v, seal_request(token, counter, plaintext)) {
        OuterReply::MessageSealed(bytes) => bytes,
        r => panic!("{r:?}"),
    }
}

/// Sends a session command that must fail: exactly one audit entry, a failure
/// of `command` under the error's reason code, and nothing else changed.
fn session_refused(v: &mut Vault, command: Command, request: Outer) -> Error {
    let before = v.hsm.snapshot();
    let n = v.hsm.entries().len();
    let err = v
        .hsm
        .host
        .call(request)
        .expect_err("the session command must fail");
    assert_eq!(
        v.hsm.entries().len(),
        n + 1,
        "a failed {command:?} must add exactly one audit entry ({err:?})"
    );
    let body = v.hsm.last_body();
    assert_eq!(body.command, Some(command));
    assert_eq!(body.reason, err.reason_code(), "audit reason of {err:?}");
    assert!(
        matches!(body.data, AuditData::Failure(_)),
        "{:?}",
        body.data
    );
    assert_eq!(
        v.hsm.snapshot(),
        before,
        "a failed {command:?} changed the module"
    );
    err
}

fn refuse_open(v: &mut Vault, token: &[u8], counter: u64, sealed: &[u8]) -> Error {
    session_refused(
        v,
        Command::SessionOpen,
        open_request(token, counter, sealed),
    )
}

fn refuse_seal(v: &mut Vault, token: &[u8], counter: u64, plaintext: &[u8]) -> Error {
    session_refused(
        v,
        Command::SessionSeal,
        seal_request(token, counter, plaintext),
    )
}

// ===== 1. the right passphrase ============================================================

/// The right passphrase signs on: the client opens the answer with its session
/// key, and the audit response carries the client's nonce and the registers,
/// state and transaction count of the package the module returned.
#[test]
fn right_passphrase_signs_on_with_the_package_audit_response() {
    let d = meter();
    let mut v = leased(FUNDS);
    let before = v.body(d);
    let checkpoint_before = v.checkpoint.clone();
    let time = v.hsm.status().time;

    let s = signed_on(&mut v, d);
    let r = &s.answer.response;
    let after = s.reply.package.peek().unwrap();

    assert_eq!(r.nonce, s.nonce, "the client's nonce is signed back");
    assert_eq!(r.device_id, d);
    assert_eq!(
        (r.ar, r.dr),
        (after.ar, after.dr),
        "the package's registers"
    );
    assert_eq!((r.ar, r.dr), (Money::ZERO, FUNDS), "sign-on moves no value");
    assert_eq!(r.state, after.state);
    assert_eq!(r.state, PsdState::Leased);
    assert_eq!(r.sequence, after.sequence);
    assert_eq!(
        after.sequence,
        before.sequence + 1,
        "a sign-on is a transaction"
    );
    assert_eq!(r.time, time);
    assert_eq!(after.failed_sign_ons, 0);
    assert_eq!(s.answer.expires, time + SESSION_SECONDS);
    // The new challenge is in the package; the old one is gone.
    assert_eq!(s.answer.challenge, after.last_challenge);
    assert_ne!(s.answer.challenge, before.last_challenge);

    // The package the module returned is genuine and the database's checkpoint moved on.
    assert_eq!(v.body(d), after);
    assert_ne!(v.checkpoint, checkpoint_before);
    assert_eq!(v.hsm.status().checkpoint, v.checkpoint);
    assert_eq!(last_transaction(&v), Transaction::SignOn);

    // The PSD's key, as the certificate names it and as the package holds it.
    let cert_key = v.public_key(d);
    r.verify(&cert_key, &s.answer.signature).unwrap();
    let slots = read_slot(&v.hsm.nvm(), Slot::Mks).unwrap();
    assert_eq!(psd::signing_public_key(&after, &slots).unwrap(), cert_key);
}

/// The answer opens only with the client's session key and for the meter and
/// customer it signed on to; the token carries the session key only sealed.
#[test]
fn the_answer_opens_only_for_this_client() {
    let d = meter();
    let mut v = leased(FUNDS);
    let s = signed_on(&mut v, d);
    let cid = v.clients[&d].customer_id.clone();
    assert_eq!(
        open_answer(&s.key, &d, &cid, &s.sealed_answer).unwrap(),
        s.answer
    );
    let session = Err(check(PsdCheck::Session));
    assert_eq!(open_answer(&random(), &d, &cid, &s.sealed_answer), session);
    assert_eq!(
        open_answer(&s.key, &other_meter(), &cid, &s.sealed_answer),
        session
    );
    assert_eq!(
        open_answer(&s.key, &d, "someone-else", &s.sealed_answer),
        session
    );
    let mut flipped = s.sealed_answer.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    assert_eq!(open_answer(&s.key, &d, &cid, &flipped), session);

    // Neither the token nor the answer holds the session key in clear.
    let holds = |bytes: &[u8]| bytes.windows(32).any(|w| w == s.key);
    assert!(!holds(&s.token), "the session token holds the key in clear");
    assert!(!holds(&s.sealed_answer));
}

/// Changes one field of an audit response.
type Change = fn(&mut AuditResponse);

/// The audit response verifies only with this PSD's key, and only as signed:
/// another meter's key, a key of the other algorithm, a changed field or a
/// changed signature all fail.
#[test]
fn the_audit_response_verifies_only_with_this_psd_key_and_unchanged() {
    let d = meter();
    let mut v = leased(FUNDS);
    v.leased_meter(other_meter());
    let s = signed_on(&mut v, d);
    let (response, signature) = (&s.answer.response, &s.answer.signature);
    let key = v.public_key(d);
    response.verify(&key, signature).unwrap();
    assert_eq!(signature.0, SigAlg::EcdsaP256Sha256.id());

    // Other keys.
    let other = v.public_key(other_meter());
    assert_ne!(other, key);
    assert!(matches!(
        response.verify(&other, signature),
        Err(Error::Crypto(_))
    ));
    for alg in [SigAlg::EcdsaP256Sha256, SigAlg::Ed25519] {
        let fresh = SigningKey::generate(alg).unwrap().public_key();
        assert!(response.verify(&fresh, signature).is_err(), "{alg:?}");
    }

    // Each field changed.
    let changes: [(&str, Change); 7] = [
        ("device_id", |r| r.device_id[5] ^= 0x01),
        ("nonce", |r| r.nonce[0] ^= 0x01),
        ("ar", |r| r.ar = Money::from_tenths(r.ar.tenths() + 1)),
        ("dr", |r| r.dr = Money::from_tenths(r.dr.tenths() - 1)),
        ("sequence", |r| r.sequence += 1),
        ("state", |r| r.state = PsdState::Withdrawn),
        ("time", |r| r.time += 1),
    ];
    for (field, change) in changes {
        let mut changed = response.clone();
        change(&mut changed);
        assert_ne!(&changed, response);
        assert!(
            matches!(changed.verify(&key, signature), Err(Error::Crypto(_))),
            "a response with {field} changed verifies"
        );
    }

    // The signature changed: a bit of it, or the algorithm it claims.
    let mut flipped = signature.clone();
    flipped.1[10] ^= 0x01;
    assert!(response.verify(&key, &flipped).is_err());
    let relabelled = (SigAlg::Ed25519.id(), signature.1.clone());
    assert!(response.verify(&key, &relabelled).is_err());
    let unknown = (0xEE, signature.1.clone());
    assert!(response.verify(&key, &unknown).is_err());
    // The unchanged response still verifies (the checks above changed copies).
    response.verify(&key, signature).unwrap();
}

/// The answer's challenge is the one the next customer request must carry:
/// the challenge from before the sign-on is refused, the new one prints.
#[test]
fn the_answer_challenge_is_the_next_requests_challenge() {
    let d = meter();
    let mut v = leased(FUNDS);
    let old = v.clients[&d].challenge;
    assert_eq!(old, v.body(d).last_challenge);
    let s = signed_on(&mut v, d);

    // The client still holding the pre-sign-on challenge.
    let stale = v.request(d, CustomerAction::Indicium(indicium_order(POSTAGE)));
    assert_eq!(stale.body.challenge, old);
    let command = PostalCommand::Customer {
        package: v.package(d),
        request: stale,
    };
    assert_eq!(refuse(&mut v, command), check(PsdCheck::Challenge));

    // With the answer's challenge, against the same package and checkpoint.
    v.clients.get_mut(&d).unwrap().challenge = s.answer.challenge;
    let indicium = v.print(d, POSTAGE).unwrap();
    assert_eq!(
        (
            indicium.data().ascending_register,
            indicium.data().descending_register
        ),
        (POSTAGE, minus(FUNDS, POSTAGE))
    );
    assert_eq!(v.body(d).sequence, s.answer.response.sequence + 1);
}

/// An Assigned meter (configured, not yet licensed) signs on too; its audit
/// response says so.
#[test]
fn an_assigned_meter_signs_on() {
    let d = meter();
    let mut v = Vault::new();
    v.unleased_meter(d);
    v.configure(d).unwrap();
    let s = signed_on(&mut v, d);
    assert_eq!(s.answer.response.state, PsdState::Assigned);
    assert_eq!(
        (s.answer.response.ar, s.answer.response.dr),
        (Money::ZERO, Money::ZERO)
    );
    s.answer
        .response
        .verify(&v.public_key(d), &s.answer.signature)
        .unwrap();
    assert_eq!(v.state(d), PsdState::Assigned);
}

// ===== 2. wrong passphrases ===============================================================

/// A wrong passphrase is a transaction: counted in the package (its sequence
/// advanced, nothing else changed) and in the checkpoint; the package from
/// before it is then stale, so it cannot be offered again to forget the count.
#[test]
fn a_wrong_passphrase_is_counted_in_the_package() {
    let d = meter();
    let mut v = leased(FUNDS);
    let before = v.body(d);
    let old_package = v.package(d);
    let old_checkpoint = v.checkpoint.clone();

    let a = attempt(&v, d, random());
    let reply = send_sign_on(&mut v, d, &a).unwrap();
    assert!(
        matches!(
            reply.outcome,
            PostalOutcome::SignOnRefused {
                failures: 1,
                locked: false
            }
        ),
        "{:?}",
        reply.outcome
    );
    let after = reply.package.peek().unwrap();
    assert_eq!(after.failed_sign_ons, 1);
    assert_eq!(after.sequence, before.sequence + 1);
    assert_eq!(
        (after.ar, after.dr, after.state),
        (before.ar, before.dr, before.state)
    );
    // A failed sign-on does not turn the challenge: the customer's pending request still works.
    assert_eq!(after.last_challenge, before.last_challenge);
    assert_eq!(v.body(d), after, "the returned package is genuine");
    assert_ne!(v.checkpoint, old_checkpoint);
    assert_eq!(last_transaction(&v), Transaction::SignOnRefused);

    // The package from before the failure.
    let right = attempt(&v, d, v.clients[&d].passphrase);
    let command = PostalCommand::SignOn {
        package: old_package,
        customer_id: right.customer_id.clone(),
        sealed: right.sealed.clone(),
    };
    assert_eq!(refuse(&mut v, command), check(PsdCheck::PackageStale));

    // The customer's request with its challenge from before the failed sign-on prints.
    v.print(d, POSTAGE).unwrap();
}

/// Five wrong passphrases in a row lock sign-on: the fifth says so, and the
/// next sign-on, even with the right passphrase, is refused and changes
/// nothing. The provider's password reset unlocks it; the new passphrase signs
/// on and the old one no longer does.
#[test]
fn five_wrong_passphrases_lock_sign_on_until_a_password_reset() {
    let d = meter();
    let mut v = leased(FUNDS);
    assert_eq!(MAX_SIGN_ON_FAILURES, 5);
    for i in 1..=MAX_SIGN_ON_FAILURES {
        let seq = v.body(d).sequence;
        assert_eq!(wrong_sign_on(&mut v, d), (i, i == MAX_SIGN_ON_FAILURES));
        let b = v.body(d);
        assert_eq!(b.failed_sign_ons, i);
        assert_eq!(b.sequence, seq + 1);
    }

    // Locked: the right passphrase, a wrong one and garbage are all refused the
    // same way, and none of them is counted.
    let old_passphrase = v.clients[&d].passphrase;
    let cid = v.clients[&d].customer_id.clone();
    for sealed in [
        attempt(&v, d, old_passphrase).sealed,
        attempt(&v, d, random()).sealed,
        vec![0; 100],
    ] {
        assert_eq!(
            refuse_sign_on(&mut v, d, &cid, sealed),
            check(PsdCheck::AccountLocked)
        );
    }
    assert_eq!(v.body(d).failed_sign_ons, MAX_SIGN_ON_FAILURES);

    // The database's package and checkpoint still work: the provider's reset.
    v.begin_password_reset(d).unwrap();
    assert_eq!(v.state(d), PsdState::PasswordReset);
    // No sign-on while the passphrase is being replaced.
    let a = attempt(&v, d, old_passphrase);
    assert_eq!(
        refuse_sign_on(&mut v, d, &cid, a.sealed),
        check(PsdCheck::State)
    );
    let new_passphrase = random();
    v.complete_password_reset(d, new_passphrase).unwrap();
    let b = v.body(d);
    assert_eq!((b.state, b.failed_sign_ons), (PsdState::Leased, 0));

    // The old passphrase is now a wrong one, counted from zero.
    assert_eq!(wrong_sign_on_with(&mut v, d, old_passphrase), (1, false));
    // The new one signs on and clears the count.
    assert_eq!(v.clients[&d].passphrase, new_passphrase);
    let s = signed_on(&mut v, d);
    assert_eq!(s.reply.package.peek().unwrap().failed_sign_ons, 0);
    assert_eq!(s.answer.response.state, PsdState::Leased);
}

/// The count is of wrong passphrases in a row: the right one after four
/// clears it, so it takes five more to lock.
#[test]
fn a_right_passphrase_before_the_limit_clears_the_count() {
    let d = meter();
    let mut v = leased(FUNDS);
    for i in 1..MAX_SIGN_ON_FAILURES {
        assert_eq!(wrong_sign_on(&mut v, d), (i, false));
    }
    assert_eq!(v.body(d).failed_sign_ons, MAX_SIGN_ON_FAILURES - 1);
    let s = signed_on(&mut v, d);
    assert_eq!(s.reply.package.peek().unwrap().failed_sign_ons, 0);
    for i in 1..=MAX_SIGN_ON_FAILURES {
        assert_eq!(wrong_sign_on(&mut v, d), (i, i == MAX_SIGN_ON_FAILURES));
    }
    let a = attempt(&v, d, v.clients[&d].passphrase);
    let cid = a.customer_id.clone();
    assert_eq!(
        refuse_sign_on(&mut v, d, &cid, a.sealed),
        check(PsdCheck::AccountLocked)
    );
}

// ===== 3. refused sign-ons ==================================================================

/// A customer id that is not the meter's is refused before anything is
/// opened, even with a sign-on properly sealed for that id.
#[test]
fn sign_on_with_another_customer_id() {
    let d = meter();
    let mut v = leased(FUNDS);
    v.leased_meter(other_meter());
    let passphrase = v.clients[&d].passphrase;
    for cid in [
        "someone-else".to_owned(),
        v.clients[&other_meter()].customer_id.clone(),
        format!("{} ", v.clients[&d].customer_id),
    ] {
        let sealed = seal_sign_on(
            &vendor_key(&v),
            &d,
            &cid,
            &secrets(passphrase, random(), random()),
        )
        .unwrap();
        assert_eq!(
            refuse_sign_on(&mut v, d, &cid, sealed),
            check(PsdCheck::CustomerId),
            "{cid:?}"
        );
    }
    assert_eq!(v.body(d).failed_sign_ons, 0);
    signed_on(&mut v, d);
}

/// A sign-on is bound to the meter and the customer it was sealed for, to the
/// vendor key, and to its purpose: sealed for another meter or customer, to
/// another key, or registration secrets offered as a sign-on, it does not open.
#[test]
fn sign_on_sealed_for_another_meter_customer_or_purpose() {
    let d = meter();
    let mut v = leased(FUNDS);
    let client = v.clients[&d].clone();
    let cid = client.customer_id.clone();
    let good = secrets(client.passphrase, random(), random());
    let vendor = vendor_key(&v);
    let (_, stranger) = hpke::PrivateKey::generate().unwrap();
    let sealed = [
        (
            "another meter",
            seal_sign_on(&vendor, &other_meter(), &cid, &good),
        ),
        (
            "another customer",
            seal_sign_on(&vendor, &d, "someone-else", &good),
        ),
        ("another key", seal_sign_on(&stranger, &d, &cid, &good)),
        (
            "registration secrets",
            seal_customer_secrets(
                &vendor,
                &d,
                &cid,
                &customer_secrets(&client.hmk(), client.passphrase),
            ),
        ),
    ];
    for (what, sealed) in sealed {
        assert_eq!(
            refuse_sign_on(&mut v, d, &cid, sealed.unwrap()),
            check(PsdCheck::CustomerSecrets),
            "{what}"
        );
    }
    // None was counted as a wrong passphrase; the right one still works.
    assert_eq!(v.body(d).failed_sign_ons, 0);
    let s = signed_on(&mut v, d);
    assert_eq!(s.answer.response.device_id, d);
}

/// Bytes that are not a sealed sign-on, or are too long to be one, are refused
/// as such, never counted as a wrong passphrase.
#[test]
fn garbage_and_oversized_sign_ons() {
    let d = meter();
    let mut v = leased(FUNDS);
    let client = v.clients[&d].clone();
    let cid = client.customer_id.clone();
    let valid = attempt(&v, d, client.passphrase).sealed;
    assert!(valid.len() < MAX_SEALED_SIGN_ON);
    let aad = [d.as_slice(), cid.as_bytes()].concat();
    let vendor = vendor_key(&v);
    // Sealed correctly, but the plaintext is not a sign-on: too short, one
    // byte too many, and far too long (which makes the sealed bytes oversized).
    let plain = codec::encode(&secrets(client.passphrase, random(), random())).unwrap();
    let short = hpke::seal(&vendor, SIGN_ON_INFO, &aad, &plain[..40]).unwrap();
    let trailing = hpke::seal(
        &vendor,
        SIGN_ON_INFO,
        &aad,
        &[plain.as_slice(), &[0]].concat(),
    )
    .unwrap();
    let oversized = hpke::seal(
        &vendor,
        SIGN_ON_INFO,
        &aad,
        &[plain.as_slice(), &[0; MAX_SEALED_SIGN_ON]].concat(),
    )
    .unwrap();
    assert!(oversized.len() > MAX_SEALED_SIGN_ON);
    let mut flipped = valid.clone();
    flipped[valid.len() / 2] ^= 0x01;
    let mut random_oversized = vec![0u8; MAX_SEALED_SIGN_ON + 1];
    postvault_crypto::rand::fill(&mut random_oversized).unwrap();
    for (what, sealed) in [
        ("empty", Vec::new()),
        ("one byte", vec![0x42]),
        ("zeros", vec![0; 200]),
        ("truncated", valid[..valid.len() - 1].to_vec()),
        ("extended", [valid.as_slice(), &[0]].concat()),
        ("flipped", flipped),
        ("short plaintext", short),
        ("trailing plaintext", trailing),
        ("oversized plaintext", oversized),
        ("oversized random", random_oversized),
        ("64 KiB", vec![0xA5; 64 * 1024]),
    ] {
        assert_eq!(
            refuse_sign_on(&mut v, d, &cid, sealed),
            check(PsdCheck::CustomerSecrets),
            "{what}"
        );
    }
    assert_eq!(v.body(d).failed_sign_ons, 0);
    // The valid one, against the same package and checkpoint.
    let reply = v.send(sign_on_command(&v, d, &cid, valid)).unwrap();
    assert!(matches!(reply.outcome, PostalOutcome::SignedOn { .. }));
}

/// Sign-on runs on Assigned and Leased meters only: a Raw, Unleased, or
/// Withdrawn meter refuses it with the state check (before the customer id).
#[test]
fn sign_on_outside_assigned_and_leased() {
    let mut v = leased(FUNDS);
    let withdrawn = meter();
    v.refund(withdrawn).unwrap();
    assert_eq!(v.state(withdrawn), PsdState::Withdrawn);

    let unleased = other_meter();
    v.unleased_meter(unleased);
    let raw = device(D + 2);
    let reply = v
        .send(PostalCommand::Initialize { device_id: raw })
        .unwrap();
    v.packages.insert(raw, reply.package);
    assert_eq!(v.state(raw), PsdState::Raw);

    let stranger = Vault::new_client(raw);
    for (d, client) in [
        (withdrawn, v.clients[&withdrawn].clone()),
        (unleased, Vault::new_client(unleased)),
        (raw, stranger),
    ] {
        let sealed = seal_sign_on(
            &vendor_key(&v),
            &d,
            &client.customer_id,
            &secrets(client.passphrase, random(), random()),
        )
        .unwrap();
        assert_eq!(
            refuse_sign_on(&mut v, d, &client.customer_id, sealed),
            check(PsdCheck::State),
            "{:?}",
            v.state(d)
        );
    }
    // The database's checkpoint still works for the unleased meter.
    v.configure(unleased).unwrap();
    signed_on(&mut v, unleased);
}

// ===== 4. session messages ===================================================================

/// A client's message opens through the module with its token and counter,
/// naming the session's meter; the module's reply opens for the client only
/// as the reply to that counter. Neither is audited.
#[test]
fn session_messages_open_and_seal_with_the_token() {
    let d = meter();
    let mut v = leased(FUNDS);
    let s = signed_on(&mut v, d);

    let sealed = seal_message(&s.key, &d, Direction::Request, 7, b"hello").unwrap();
    assert_eq!(
        session_open(&mut v, &s.token, 7, &sealed),
        (d, b"hello".to_vec())
    );

    let reply = session_seal(&mut v, &s.token, 7, b"world");
    assert_eq!(
        open_message(&s.key, &d, Direction::Reply, 7, &reply)
            .unwrap()
            .as_slice(),
        b"world"
    );
    let session = Err(check(PsdCheck::Session));
    assert_eq!(
        open_message(&s.key, &d, Direction::Request, 7, &reply).map(|p| p.to_vec()),
        session
    );
    for counter in [6, 8] {
        assert_eq!(
            open_message(&s.key, &d, Direction::Reply, counter, &reply).map(|p| p.to_vec()),
            session,
            "counter {counter}"
        );
    }
    assert_eq!(
        open_message(&s.key, &other_meter(), Direction::Reply, 7, &reply).map(|p| p.to_vec()),
        session
    );
    assert_eq!(
        open_message(&random(), &d, Direction::Reply, 7, &reply).map(|p| p.to_vec()),
        session
    );

    // Empty and largest messages both ways.
    let empty = seal_message(&s.key, &d, Direction::Request, 0, b"").unwrap();
    assert_eq!(session_open(&mut v, &s.token, 0, &empty), (d, Vec::new()));
    let big = vec![0x5A; MAX_SESSION_MESSAGE];
    let sealed = seal_message(&s.key, &d, Direction::Request, u64::MAX, &big).unwrap();
    assert_eq!(
        session_open(&mut v, &s.token, u64::MAX, &sealed),
        (d, big.clone())
    );
    let reply = session_seal(&mut v, &s.token, u64::MAX, &big);
    assert_eq!(
        open_message(&s.key, &d, Direction::Reply, u64::MAX, &reply)
            .unwrap()
            .as_slice(),
        big.as_slice()
    );
}

/// A message under another counter, changed in any byte, sealed the other way,
/// or cut short is refused with one opaque error and exactly one audit entry.
#[test]
fn changed_or_replayed_session_messages_are_refused() {
    let d = meter();
    let mut v = leased(FUNDS);
    let s = signed_on(&mut v, d);
    let sealed = seal_message(&s.key, &d, Direction::Request, 7, b"hello").unwrap();
    let session = check(PsdCheck::Session);

    for counter in [8, 6, 0, 7 + (1 << 32)] {
        assert_eq!(
            refuse_open(&mut v, &s.token, counter, &sealed),
            session,
            "{counter}"
        );
    }
    for i in 0..sealed.len() {
        let mut flipped = sealed.clone();
        flipped[i] ^= 0x01;
        assert_eq!(
            refuse_open(&mut v, &s.token, 7, &flipped),
            session,
            "byte {i}"
        );
    }
    let reply_way = seal_message(&s.key, &d, Direction::Reply, 7, b"hello").unwrap();
    let other_meter_aad =
        seal_message(&s.key, &other_meter(), Direction::Request, 7, b"hello").unwrap();
    for (what, bad) in [
        ("sealed as a reply", reply_way),
        ("sealed for another meter", other_meter_aad),
        ("truncated", sealed[..sealed.len() - 1].to_vec()),
        ("extended", [sealed.as_slice(), &[0]].concat()),
        ("empty", Vec::new()),
        ("oversized", vec![0; MAX_SESSION_MESSAGE + 65]),
    ] {
        assert_eq!(refuse_open(&mut v, &s.token, 7, &bad), session, "{what}");
    }
    // The original still opens.
    assert_eq!(session_open(&mut v, &s.token, 7, &sealed).1, b"hello");
}

/// A token opens only its own session: a message under one sign-on's key does
/// not open with another sign-on's token (the same meter), and a session key
/// reused on two meters still keeps their messages apart.
#[test]
fn a_token_opens_only_its_own_session() {
    let d = meter();
    let mut v = leased(FUNDS);
    v.leased_meter(other_meter());
    let first = signed_on(&mut v, d);
    let second = signed_on(&mut v, d);
    assert_ne!(first.token, second.token);
    let session = check(PsdCheck::Session);

    let to_first = seal_message(&first.key, &d, Direction::Request, 7, b"hello").unwrap();
    assert_eq!(refuse_open(&mut v, &second.token, 7, &to_first), session);
    let to_second = seal_message(&second.key, &d, Direction::Request, 7, b"hello").unwrap();
    assert_eq!(
        session_open(&mut v, &second.token, 7, &to_second),
        (d, b"hello".to_vec())
    );
    let reply = session_seal(&mut v, &second.token, 7, b"world");
    assert!(open_message(&first.key, &d, Direction::Reply, 7, &reply).is_err());

    // The client reuses its session key for the other meter.
    let other = signed_on_with_key(&mut v, other_meter(), first.key);
    assert_eq!(other.key, first.key);
    assert_eq!(refuse_open(&mut v, &other.token, 7, &to_first), session);
    let to_other = seal_message(&first.key, &other_meter(), Direction::Request, 7, b"hi").unwrap();
    assert_eq!(
        session_open(&mut v, &other.token, 7, &to_other),
        (other_meter(), b"hi".to_vec())
    );
    let reply = session_seal(&mut v, &other.token, 7, b"world");
    assert!(open_message(&first.key, &d, Direction::Reply, 7, &reply).is_err());
    assert!(open_message(&first.key, &other_meter(), Direction::Reply, 7, &reply).is_ok());
}

/// A token changed in any byte, cut short, extended, or replaced by a key
/// token of another usage (even one whose owner label reads like a session's)
/// is refused for opening and for sealing.
#[test]
fn a_changed_or_foreign_token_is_refused() {
    let d = meter();
    let mut v = leased(FUNDS);
    let s = signed_on(&mut v, d);
    let sealed = seal_message(&s.key, &d, Direction::Request, 7, b"hello").unwrap();
    let session = check(PsdCheck::Session);

    for i in 0..s.token.len() {
        let mut flipped = s.token.clone();
        flipped[i] ^= 0x01;
        assert_eq!(
            refuse_open(&mut v, &flipped, 7, &sealed),
            session,
            "byte {i}"
        );
    }
    let mut flipped = s.token.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x80;
    assert_eq!(refuse_seal(&mut v, &flipped, 7, b"world"), session);
    for (what, bad) in [
        ("truncated", s.token[..s.token.len() - 1].to_vec()),
        ("extended", [s.token.as_slice(), &[0]].concat()),
        ("empty", Vec::new()),
    ] {
        assert_eq!(refuse_open(&mut v, &bad, 7, &sealed), session, "{what}");
        assert_eq!(refuse_seal(&mut v, &bad, 7, b"world"), session, "{what}");
    }

    // A test token under the same MKS whose owner label names this meter and a
    // far expiry: only its usage tells it from a session token.
    let owner = format!("session:{}:{}", hex::encode(d), u64::MAX);
    let (test_token, _) = v.hsm.test_token(&owner);
    assert_eq!(refuse_seal(&mut v, &test_token, 7, b"world"), session);
    assert_eq!(refuse_open(&mut v, &test_token, 7, &sealed), session);

    // The real token still works.
    assert_eq!(session_open(&mut v, &s.token, 7, &sealed).1, b"hello");
}

/// A session lasts SESSION_SECONDS of module time: up to its last second it
/// works, a second later both opening and sealing are refused.
#[test]
fn an_expired_session_is_refused() {
    let d = meter();
    let mut v = leased(FUNDS);
    let s = signed_on(&mut v, d);
    let start = v.hsm.status().time;
    assert_eq!(s.answer.expires, start + SESSION_SECONDS);
    let sealed = seal_message(&s.key, &d, Direction::Request, 7, b"hello").unwrap();

    v.hsm.clock.advance(SESSION_SECONDS);
    assert_eq!(v.hsm.status().time, s.answer.expires);
    assert_eq!(session_open(&mut v, &s.token, 7, &sealed).1, b"hello");
    session_seal(&mut v, &s.token, 7, b"world");

    v.hsm.clock.advance(1);
    let session = check(PsdCheck::Session);
    assert_eq!(refuse_open(&mut v, &s.token, 7, &sealed), session);
    assert_eq!(refuse_seal(&mut v, &s.token, 7, b"world"), session);

    // A new sign-on gives a new session.
    let fresh = signed_on(&mut v, d);
    let sealed = seal_message(&fresh.key, &d, Direction::Request, 7, b"hello").unwrap();
    assert_eq!(session_open(&mut v, &fresh.token, 7, &sealed).1, b"hello");
}

/// The module refuses to seal a reply longer than a session message may be,
/// and audits the refusal.
#[test]
fn an_oversized_reply_is_refused() {
    let d = meter();
    let mut v = leased(FUNDS);
    let s = signed_on(&mut v, d);
    let err = refuse_seal(&mut v, &s.token, 7, &vec![0; MAX_SESSION_MESSAGE + 1]);
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
}

/// Session commands run only while the module is operational, like every
/// postal command.
#[test]
fn session_commands_need_an_operational_module() {
    let mut hsm = Hsm::initialized();
    for request in [
        open_request(&[0; 40], 7, &[0; 40]),
        seal_request(&[0; 40], 7, b"x"),
    ] {
        let err = hsm
            .host
            .call(request)
            .expect_err("refused before an MKS exists");
        assert!(matches!(err, Error::Refused { .. }), "{err:?}");
    }
}
