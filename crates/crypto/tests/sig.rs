//! Signatures: Wycheproof ECDSA P-256/SHA-256 (P1363) vectors, RFC 8032 Ed25519 vectors,
//! and the key-handling API.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use postvault_crypto::Error;
use postvault_crypto::sig::{PublicKey, SigAlg, Signature, SigningKey};
use serde::Deserialize;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EcdsaFile {
    test_groups: Vec<EcdsaGroup>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EcdsaGroup {
    public_key: String,
    tests: Vec<EcdsaTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EcdsaTest {
    tc_id: u32,
    msg: String,
    sig: String,
    result: String,
}

#[test]
fn wycheproof_ecdsa_p256_sha256_p1363() {
    let file: EcdsaFile = serde_json::from_str(include_str!(
        "vectors/wycheproof_ecdsa_p256_sha256_p1363.json"
    ))
    .unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for group in &file.test_groups {
        let pk = PublicKey::from_bytes(SigAlg::EcdsaP256Sha256, &h(&group.public_key)).unwrap();
        for t in &group.tests {
            let outcome = Signature::from_bytes(SigAlg::EcdsaP256Sha256, &h(&t.sig))
                .and_then(|sig| pk.verify(&h(&t.msg), &sig));
            match t.result.as_str() {
                "valid" => {
                    assert_eq!(outcome, Ok(()), "tcId {} should verify", t.tc_id);
                    valid += 1;
                }
                "invalid" => {
                    assert!(outcome.is_err(), "tcId {} should be rejected", t.tc_id);
                    invalid += 1;
                }
                other => panic!("tcId {}: unexpected result {other}", t.tc_id),
            }
        }
    }
    assert_eq!((valid, invalid), (37, 42));
}

/// RFC 8410 PKCS#8 v1 wrapping of an Ed25519 seed.
fn ed25519_pkcs8(seed: &[u8]) -> Vec<u8> {
    [h("302e020100300506032b657004220420"), seed.to_vec()].concat()
}

/// RFC 8032 §7.1 tests 1-3: (secret key, public key, message, signature).
const RFC8032: [[&str; 4]; 3] = [
    [
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ],
    [
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ],
    [
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ],
];

#[test]
fn rfc8032_ed25519_sign_and_verify() {
    for [sk, pk, msg, sig] in RFC8032 {
        let key = SigningKey::from_pkcs8(SigAlg::Ed25519, &ed25519_pkcs8(&h(sk))).unwrap();
        assert_eq!(key.public_key().as_bytes(), h(pk));
        let ours = key.sign(&h(msg)).unwrap();
        assert_eq!(
            ours.as_bytes(),
            h(sig),
            "deterministic signature of {msg:?}"
        );

        let public = PublicKey::from_bytes(SigAlg::Ed25519, &h(pk)).unwrap();
        let published = Signature::from_bytes(SigAlg::Ed25519, &h(sig)).unwrap();
        assert_eq!(public.verify(&h(msg), &published), Ok(()));
        let mut modified = h(msg);
        modified.push(0);
        assert_eq!(
            public.verify(&modified, &published),
            Err(Error::VerificationFailed)
        );
        let mut bad_sig = h(sig);
        bad_sig[0] ^= 1;
        let bad_sig = Signature::from_bytes(SigAlg::Ed25519, &bad_sig).unwrap();
        assert_eq!(
            public.verify(&h(msg), &bad_sig),
            Err(Error::VerificationFailed)
        );
    }
}

#[test]
fn generate_sign_verify_both_algorithms() {
    for alg in [SigAlg::EcdsaP256Sha256, SigAlg::Ed25519] {
        let key = SigningKey::generate(alg).unwrap();
        assert_eq!(key.alg(), alg);
        let pk = key.public_key();
        assert_eq!(pk.alg(), alg);
        assert_eq!(
            pk.as_bytes().len(),
            if alg == SigAlg::Ed25519 { 32 } else { 65 }
        );
        let sig = key.sign(b"postage").unwrap();
        assert_eq!(sig.alg(), alg);
        assert_eq!(sig.as_bytes().len(), alg.signature_len());
        assert_eq!(pk.verify(b"postage", &sig), Ok(()));
        assert_eq!(pk.verify(b"postagf", &sig), Err(Error::VerificationFailed));
        let reparsed = PublicKey::from_bytes(alg, pk.as_bytes()).unwrap();
        assert_eq!(reparsed, pk);
        assert_eq!(
            format!("{key:?}"),
            format!("SigningKey {{ alg: {alg:?}, key: [redacted] }}")
        );
    }
}

#[test]
fn pkcs8_round_trip() {
    for alg in [SigAlg::EcdsaP256Sha256, SigAlg::Ed25519] {
        let key = SigningKey::generate(alg).unwrap();
        let der = key.to_pkcs8().unwrap();
        let restored = SigningKey::from_pkcs8(alg, der.expose()).unwrap();
        assert_eq!(restored.public_key(), key.public_key());
        let sig = restored.sign(b"m").unwrap();
        assert_eq!(key.public_key().verify(b"m", &sig), Ok(()));
        let other = if alg == SigAlg::Ed25519 {
            SigAlg::EcdsaP256Sha256
        } else {
            SigAlg::Ed25519
        };
        assert!(matches!(
            SigningKey::from_pkcs8(other, der.expose()),
            Err(Error::Malformed { .. })
        ));
    }
    assert!(matches!(
        SigningKey::from_pkcs8(SigAlg::Ed25519, b"not der"),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn algorithm_mismatch_fails() {
    let ed = SigningKey::generate(SigAlg::Ed25519).unwrap();
    let p256 = SigningKey::generate(SigAlg::EcdsaP256Sha256).unwrap();
    let sig = ed.sign(b"m").unwrap();
    let relabeled = Signature::from_bytes(SigAlg::EcdsaP256Sha256, sig.as_bytes()).unwrap();
    assert_eq!(
        p256.public_key().verify(b"m", &sig),
        Err(Error::VerificationFailed)
    );
    assert_eq!(
        ed.public_key().verify(b"m", &relabeled),
        Err(Error::VerificationFailed)
    );
}

#[test]
fn malformed_keys_and_signatures() {
    let p256 = SigningKey::generate(SigAlg::EcdsaP256Sha256)
        .unwrap()
        .public_key();
    let mut off_curve = p256.as_bytes().to_vec();
    off_curve[64] ^= 1;
    let mut compressed = p256.as_bytes()[..33].to_vec();
    compressed[0] = 0x02;
    let bad = [
        (SigAlg::EcdsaP256Sha256, off_curve),
        (SigAlg::EcdsaP256Sha256, compressed),
        (SigAlg::EcdsaP256Sha256, p256.as_bytes()[..64].to_vec()),
        (SigAlg::EcdsaP256Sha256, vec![0; 65]),
        (SigAlg::Ed25519, vec![0; 31]),
        (SigAlg::Ed25519, p256.as_bytes().to_vec()),
    ];
    for (alg, bytes) in bad {
        assert!(
            matches!(
                PublicKey::from_bytes(alg, &bytes),
                Err(Error::Malformed { .. })
            ),
            "{alg:?} {bytes:02x?}"
        );
    }
    for len in [0, 63, 65] {
        assert!(matches!(
            Signature::from_bytes(SigAlg::Ed25519, &vec![0; len]),
            Err(Error::Malformed { .. })
        ));
    }
}

#[test]
fn algorithm_ids() {
    for alg in [SigAlg::EcdsaP256Sha256, SigAlg::Ed25519] {
        assert_eq!(SigAlg::from_id(alg.id()), Ok(alg));
        assert_eq!(alg.signature_len(), 64);
        assert!(!alg.name().is_empty());
    }
    assert_eq!(SigAlg::EcdsaP256Sha256.id(), 1);
    assert_eq!(SigAlg::Ed25519.id(), 2);
    for id in [0, 3, 255] {
        assert!(matches!(SigAlg::from_id(id), Err(Error::Malformed { .. })));
    }
}
