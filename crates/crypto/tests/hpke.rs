//! HPKE: RFC 9180 test vectors (mode 0, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM)
//! and round trips through our API.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use postvault_crypto::{Error, Secret32, hpke};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vector {
    mode: u8,
    kem_id: u16,
    kdf_id: u16,
    aead_id: u16,
    info: String,
    #[serde(rename = "ikmR")]
    ikm_r: String,
    #[serde(rename = "skRm")]
    sk_rm: String,
    #[serde(rename = "pkRm")]
    pk_rm: String,
    enc: String,
    encryptions: Vec<Encryption>,
}

#[derive(Deserialize)]
struct Encryption {
    seq: u32,
    aad: String,
    ct: String,
    pt: String,
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn vector() -> Vector {
    let v: Vector = serde_json::from_str(include_str!(
        "vectors/rfc9180_hpke_x25519_sha256_aes256gcm.json"
    ))
    .unwrap();
    assert_eq!((v.mode, v.kem_id, v.kdf_id, v.aead_id), (0, 0x20, 1, 2));
    v
}

#[test]
fn rfc9180_recipient_key_derives_from_ikm_r() {
    let v = vector();
    let sk = hpke::PrivateKey::derive(&h(&v.ikm_r)).unwrap();
    assert_eq!(sk.public_key().unwrap().as_bytes().as_slice(), h(&v.pk_rm));
    // The published skRm gives the same public key (DeriveKeyPair output before clamping).
    let sk_rm = hpke::PrivateKey::from_secret(Secret32::from_slice(&h(&v.sk_rm)).unwrap()).unwrap();
    assert_eq!(sk_rm.public_key().unwrap(), sk.public_key().unwrap());
}

#[test]
fn rfc9180_first_encryption_opens_with_our_api() {
    let v = vector();
    let sk = hpke::PrivateKey::derive(&h(&v.ikm_r)).unwrap();
    let first = &v.encryptions[0];
    assert_eq!(first.seq, 0);
    let sealed = [h(&v.enc), h(&first.ct)].concat();
    let pt = hpke::open(&sk, &h(&v.info), &h(&first.aad), &sealed).unwrap();
    assert_eq!(pt.expose(), h(&first.pt));
    assert_eq!(pt.expose(), b"Beauty is truth, truth beauty");
}

#[test]
fn rfc9180_vector_fails_when_tampered() {
    let v = vector();
    let sk = hpke::PrivateKey::derive(&h(&v.ikm_r)).unwrap();
    let (info, aad) = (h(&v.info), h(&v.encryptions[0].aad));
    let sealed = [h(&v.enc), h(&v.encryptions[0].ct)].concat();
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x01;
        assert_eq!(
            hpke::open(&sk, &info, &aad, &bad),
            Err(Error::VerificationFailed),
            "byte {i}"
        );
    }
    assert_eq!(
        hpke::open(&sk, b"other info", &aad, &sealed),
        Err(Error::VerificationFailed)
    );
    assert_eq!(
        hpke::open(&sk, &info, b"Count-1", &sealed),
        Err(Error::VerificationFailed)
    );
    // A later message of the same context is not a single-shot ciphertext.
    let second = [h(&v.enc), h(&v.encryptions[1].ct)].concat();
    assert_eq!(
        hpke::open(&sk, &info, &h(&v.encryptions[1].aad), &second),
        Err(Error::VerificationFailed)
    );
}

#[test]
fn rfc9180_all_listed_encryptions_open_in_sequence() {
    // Our API is single-shot (sequence 0); the remaining messages of the vector check the
    // suite we configure in the `hpke` crate through its multi-message receiver context.
    use ::hpke::{
        Deserializable, OpModeR, aead::AesGcm256, kdf::HkdfSha256, kem::X25519HkdfSha256,
    };
    type Kem = X25519HkdfSha256;
    let v = vector();
    let sk = <Kem as ::hpke::Kem>::PrivateKey::from_bytes(&h(&v.sk_rm)).unwrap();
    let enc = <Kem as ::hpke::Kem>::EncappedKey::from_bytes(&h(&v.enc)).unwrap();
    let mut ctx = ::hpke::setup_receiver::<AesGcm256, HkdfSha256, Kem>(
        &OpModeR::Base,
        &sk,
        &enc,
        &h(&v.info),
    )
    .unwrap();
    for (i, e) in v.encryptions.iter().enumerate() {
        assert_eq!(usize::try_from(e.seq).unwrap(), i);
        assert_eq!(
            ctx.open(&h(&e.ct), &h(&e.aad)).unwrap(),
            h(&e.pt),
            "seq {i}"
        );
    }
    assert_eq!(v.encryptions.len(), 10);
}

#[test]
fn seal_open_round_trip() {
    let (sk, pk) = hpke::PrivateKey::generate().unwrap();
    assert_eq!(sk.public_key().unwrap(), pk);
    for len in [0, 1, 31, 32, 1000] {
        let msg = vec![0x5a; len];
        let sealed = hpke::seal(&pk, b"info", b"aad", &msg).unwrap();
        assert_eq!(sealed.len(), hpke::ENC_LEN + len + hpke::TAG_LEN);
        assert_eq!(
            hpke::open(&sk, b"info", b"aad", &sealed).unwrap().expose(),
            msg
        );
        assert_eq!(
            hpke::open(&sk, b"inf0", b"aad", &sealed),
            Err(Error::VerificationFailed)
        );
        assert_eq!(
            hpke::open(&sk, b"info", b"aaD", &sealed),
            Err(Error::VerificationFailed)
        );
    }
    let again = hpke::seal(&pk, b"info", b"aad", b"x").unwrap();
    assert_ne!(
        again,
        hpke::seal(&pk, b"info", b"aad", b"x").unwrap(),
        "fresh ephemeral key per seal"
    );
}

#[test]
fn wrong_key_and_short_input_fail() {
    let (_, pk) = hpke::PrivateKey::generate().unwrap();
    let (other, _) = hpke::PrivateKey::generate().unwrap();
    let sealed = hpke::seal(&pk, b"", b"", b"secret").unwrap();
    assert_eq!(
        hpke::open(&other, b"", b"", &sealed),
        Err(Error::VerificationFailed)
    );
    for len in [0, 31, 32, 47] {
        assert!(matches!(
            hpke::open(&other, b"", b"", &vec![0; len]),
            Err(Error::Malformed { .. })
        ));
    }
}

#[test]
fn keys_persist_through_their_secret() {
    let (sk, pk) = hpke::PrivateKey::generate().unwrap();
    let restored = hpke::PrivateKey::from_secret(sk.secret().clone()).unwrap();
    let sealed = hpke::seal(&pk, b"i", b"a", b"m").unwrap();
    assert_eq!(
        hpke::open(&restored, b"i", b"a", &sealed).unwrap().expose(),
        b"m"
    );
    assert_eq!(format!("{sk:?}"), "hpke::PrivateKey([redacted])");
}

#[test]
fn low_order_recipient_key_is_refused() {
    let zero = hpke::PublicKey([0; 32]);
    assert_eq!(
        hpke::seal(&zero, b"", b"", b"m"),
        Err(Error::WeakSharedSecret)
    );
}

#[test]
fn malformed_inputs() {
    assert!(matches!(
        hpke::PublicKey::from_slice(&[0; 31]),
        Err(Error::Malformed { .. })
    ));
    assert_eq!(
        hpke::PublicKey::from_slice(&[7; 32]).unwrap().as_bytes(),
        &[7; 32]
    );
    assert!(matches!(
        hpke::PrivateKey::derive(&[0; 31]),
        Err(Error::Malformed { .. })
    ));
}
