//! X25519: RFC 7748 §5.2 and §6.1 vectors, and low-order peer points.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use postvault_crypto::x25519::EphemeralSecret;
use postvault_crypto::{Error, Secret32};

fn h32(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn x25519(scalar: [u8; 32], u: &[u8]) -> Result<[u8; 32], Error> {
    EphemeralSecret::from_secret(&Secret32::from_bytes(scalar))?
        .agree(u)
        .map(|s| *s.expose())
}

#[test]
fn rfc7748_section_5_2_vectors() {
    let vectors = [
        [
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        ],
        [
            // The u-coordinate has its top bit set, which X25519 must ignore.
            "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        ],
    ];
    for [k, u, out] in vectors {
        assert_eq!(x25519(h32(k), &h32(u)).unwrap(), h32(out));
    }
}

#[test]
fn rfc7748_section_5_2_iterated_1_and_1000() {
    let mut k = [0; 32];
    k[0] = 9;
    let mut u = k;
    for i in 1..=1000 {
        let next = x25519(k, &u).unwrap();
        u = k;
        k = next;
        if i == 1 {
            assert_eq!(
                k,
                h32("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079")
            );
        }
    }
    assert_eq!(
        k,
        h32("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51")
    );
}

#[test]
fn rfc7748_section_6_1_diffie_hellman() {
    let alice_sk = h32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    let alice_pk = h32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    let bob_sk = h32("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    let bob_pk = h32("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    let shared = h32("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");

    let alice = EphemeralSecret::from_secret(&Secret32::from_bytes(alice_sk)).unwrap();
    let bob = EphemeralSecret::from_secret(&Secret32::from_bytes(bob_sk)).unwrap();
    assert_eq!(alice.public_key().unwrap(), alice_pk);
    assert_eq!(bob.public_key().unwrap(), bob_pk);
    assert_eq!(alice.agree(&bob_pk).unwrap().expose(), &shared);
    assert_eq!(bob.agree(&alice_pk).unwrap().expose(), &shared);
}

/// Points of small order (and their non-canonical encodings), which force an all-zero result.
const LOW_ORDER: [&str; 10] = [
    "0000000000000000000000000000000000000000000000000000000000000000", // u = 0
    "0100000000000000000000000000000000000000000000000000000000000000", // u = 1
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", // order 8
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157", // order 8
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // u = p - 1
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // u = p (= 0)
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // u = p + 1 (= 1)
    "0000000000000000000000000000000000000000000000000000000000000080", // u = 0, top bit set
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880", // order 8, top bit set
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7", // order 8, top bit set
];

#[test]
fn low_order_points_are_rejected() {
    for point in LOW_ORDER {
        let secret = EphemeralSecret::generate().unwrap();
        assert_eq!(
            secret.agree(&h32(point)).map(|_| ()),
            Err(Error::WeakSharedSecret),
            "{point}"
        );
        let fixed = h32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        assert_eq!(
            x25519(fixed, &h32(point)),
            Err(Error::WeakSharedSecret),
            "{point}"
        );
    }
}

#[test]
fn wrong_length_peer_key_is_malformed() {
    for len in [0, 31, 33, 65] {
        let secret = EphemeralSecret::generate().unwrap();
        assert!(matches!(
            secret.agree(&vec![9; len]),
            Err(Error::Malformed { .. })
        ));
    }
}

#[test]
fn generated_keys_agree() {
    let a = EphemeralSecret::generate().unwrap();
    let b = EphemeralSecret::generate().unwrap();
    let (pa, pb) = (a.public_key().unwrap(), b.public_key().unwrap());
    assert_ne!(pa, pb);
    assert_eq!(format!("{a:?}"), "EphemeralSecret([redacted])");
    assert_eq!(a.agree(&pb).unwrap(), b.agree(&pa).unwrap());
}
