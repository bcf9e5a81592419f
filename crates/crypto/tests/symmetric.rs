//! SHA-256, HMAC-SHA-256 (RFC 4231), HKDF-SHA-256 (RFC 5869) and AES-256-GCM (Wycheproof).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use postvault_crypto::{Error, Secret32, aead, hash, kdf, mac};
use serde::Deserialize;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

#[test]
fn sha256_fips_180_vectors() {
    let cases: [(&[u8], &str); 3] = [
        (
            b"",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        (
            b"abc",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
        ),
    ];
    for (msg, digest) in cases {
        assert_eq!(hash::sha256(&[msg]).to_vec(), h(digest));
    }
    assert_eq!(hash::sha256(&[b"ab", b"", b"c"]), hash::sha256(&[b"abc"]));
    assert_eq!(hash::sha256(&[]), hash::sha256(&[b""]));
}

/// RFC 4231 §4.2-4.8: (key, data, HMAC-SHA-256). Case 5's tag is truncated to 128 bits.
fn rfc4231() -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    vec![
        (vec![0x0b; 20], b"Hi There".to_vec(), h("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")),
        (
            b"Jefe".to_vec(),
            b"what do ya want for nothing?".to_vec(),
            h("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        ),
        (vec![0xaa; 20], vec![0xdd; 50], h("773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe")),
        ((1..=25).collect(), vec![0xcd; 50], h("82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b")),
        (vec![0x0c; 20], b"Test With Truncation".to_vec(), h("a3b6167473100ee06e0c796c2955552b")),
        (
            vec![0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
            h("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
        ),
        (
            vec![0xaa; 131],
            b"This is a test using a larger than block-size key and a larger than block-size data. \
              The key needs to be hashed before being used by the HMAC algorithm."
                .to_vec(),
            h("9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
        ),
    ]
}

#[test]
fn rfc4231_hmac_sha256_cases_1_to_7() {
    let cases = rfc4231();
    assert_eq!(cases.len(), 7);
    for (i, (key, data, tag)) in cases.iter().enumerate() {
        let ours = mac::hmac_sha256_raw(key, data);
        assert_eq!(&ours[..tag.len()], tag.as_slice(), "case {}", i + 1);
    }
}

#[test]
fn hmac_with_secret_key_and_verification() {
    let key = Secret32::from_bytes([0x42; 32]);
    let tag = mac::hmac_sha256(&key, &[b"post", b"age"]);
    assert_eq!(tag, mac::hmac_sha256_raw(&[0x42; 32], b"postage"));
    assert_eq!(mac::verify_hmac_sha256(&key, &[b"postage"], &tag), Ok(()));
    assert_eq!(
        mac::verify_hmac_sha256(&key, &[b"postagE"], &tag),
        Err(Error::VerificationFailed)
    );
    assert_eq!(
        mac::verify_hmac_sha256(&key, &[b"postage"], &tag[..16]),
        Err(Error::VerificationFailed)
    );
    let mut longer = tag.to_vec();
    longer.push(0);
    assert_eq!(
        mac::verify_hmac_sha256(&key, &[b"postage"], &longer),
        Err(Error::VerificationFailed)
    );
    let mut flipped = tag;
    flipped[31] ^= 0x80;
    assert_eq!(
        mac::verify_hmac_sha256(&key, &[b"postage"], &flipped),
        Err(Error::VerificationFailed)
    );
    let other = Secret32::from_bytes([0x43; 32]);
    assert_eq!(
        mac::verify_hmac_sha256(&other, &[b"postage"], &tag),
        Err(Error::VerificationFailed)
    );
    assert_eq!(mac::TAG_LEN, tag.len());
}

#[test]
fn rfc5869_hkdf_sha256_cases_1_to_3() {
    let ikm2: Vec<u8> = (0x00..=0x4f).collect();
    let salt2: Vec<u8> = (0x60..=0xaf).collect();
    let info2: Vec<u8> = (0xb0..=0xff).collect();
    let cases = [
        (
            vec![0x0b; 22],
            h("000102030405060708090a0b0c"),
            h("f0f1f2f3f4f5f6f7f8f9"),
            h(
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
            ),
        ),
        (
            ikm2,
            salt2,
            info2,
            h(
                "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c\
               59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71\
               cc30c58179ec3e87c14c01d5c1f3434f1d87",
            ),
        ),
        (
            vec![0x0b; 22],
            vec![],
            vec![],
            h(
                "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
            ),
        ),
    ];
    for (i, (ikm, salt, info, okm)) in cases.iter().enumerate() {
        let mut out = vec![0; okm.len()];
        kdf::hkdf_sha256(salt, ikm, &[info], &mut out).unwrap();
        assert_eq!(&out, okm, "case {}", i + 1);
        // Info given in pieces is concatenated.
        let (a, b) = info.split_at(info.len() / 2);
        let mut split = vec![0; okm.len()];
        kdf::hkdf_sha256(salt, ikm, &[a, b], &mut split).unwrap();
        assert_eq!(&split, okm, "case {} with split info", i + 1);
    }
}

#[test]
fn hkdf_limits_and_secret32() {
    let mut max = vec![0; kdf::MAX_OUTPUT_LEN];
    kdf::hkdf_sha256(b"s", b"k", &[b"i"], &mut max).unwrap();
    let mut too_long = vec![0; kdf::MAX_OUTPUT_LEN + 1];
    assert!(matches!(
        kdf::hkdf_sha256(b"s", b"k", &[], &mut too_long),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        kdf::hkdf_sha256(b"s", b"k", &[], &mut []),
        Err(Error::Malformed { .. })
    ));
    let key = kdf::derive_secret32(b"s", b"k", &[b"i"]).unwrap();
    assert_eq!(key.expose().as_slice(), &max[..32]);
}

#[derive(Deserialize)]
struct GcmFile {
    tests: Vec<GcmTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GcmTest {
    tc_id: u32,
    key: String,
    iv: String,
    aad: String,
    msg: String,
    ct: String,
    tag: String,
    result: String,
}

#[test]
fn wycheproof_aes256_gcm() {
    let file: GcmFile =
        serde_json::from_str(include_str!("vectors/wycheproof_aes256_gcm.json")).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for t in &file.tests {
        let key = Secret32::from_slice(&h(&t.key)).unwrap();
        let nonce: [u8; 12] = h(&t.iv).try_into().unwrap();
        let ct_and_tag = [h(&t.ct), h(&t.tag)].concat();
        let opened = aead::open_with_nonce(&key, &nonce, &h(&t.aad), &ct_and_tag);
        match t.result.as_str() {
            "valid" => {
                assert_eq!(
                    aead::seal_with_nonce(&key, &nonce, &h(&t.aad), &h(&t.msg)).unwrap(),
                    ct_and_tag
                );
                assert_eq!(opened.unwrap().expose(), h(&t.msg), "tcId {}", t.tc_id);
                valid += 1;
            }
            "invalid" => {
                assert_eq!(opened, Err(Error::VerificationFailed), "tcId {}", t.tc_id);
                invalid += 1;
            }
            other => panic!("tcId {}: unexpected result {other}", t.tc_id),
        }
    }
    assert_eq!((valid, invalid), (16, 23));
}

#[test]
fn seal_open_round_trip_and_tampering() {
    let key = Secret32::generate().unwrap();
    let sealed = aead::seal(&key, b"header", b"secret payload").unwrap();
    assert_eq!(sealed.len(), aead::NONCE_LEN + 14 + aead::TAG_LEN);
    assert_eq!(
        aead::open(&key, b"header", &sealed).unwrap().expose(),
        b"secret payload"
    );
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x04;
        assert_eq!(
            aead::open(&key, b"header", &bad),
            Err(Error::VerificationFailed),
            "byte {i}"
        );
    }
    assert_eq!(
        aead::open(&key, b"Header", &sealed),
        Err(Error::VerificationFailed)
    );
    let other = Secret32::generate().unwrap();
    assert_eq!(
        aead::open(&other, b"header", &sealed),
        Err(Error::VerificationFailed)
    );
    assert_ne!(
        sealed,
        aead::seal(&key, b"header", b"secret payload").unwrap(),
        "fresh nonce"
    );
    let empty = aead::seal(&key, b"", b"").unwrap();
    assert!(aead::open(&key, b"", &empty).unwrap().is_empty());
}

#[test]
fn short_ciphertexts_are_malformed() {
    let key = Secret32::from_bytes([1; 32]);
    for len in [0, 11, 12, 27] {
        assert!(
            matches!(
                aead::open(&key, b"", &vec![0; len]),
                Err(Error::Malformed { .. })
            ),
            "{len}"
        );
    }
    assert!(matches!(
        aead::open_with_nonce(&key, &[0; 12], b"", &[0; 15]),
        Err(Error::Malformed { .. })
    ));
}
