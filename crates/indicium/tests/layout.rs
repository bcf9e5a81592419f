//! The binary layout: a known-answer vector, encode → parse round trips over
//! random valid fields, and typed rejections of malformed input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use postvault_crypto::sig::{SigAlg, SigningKey};
use postvault_indicium::indicium::{FIELDS, LEN, MAX_POSTAGE, MAX_REGISTER, SIGNED_LEN};
use postvault_indicium::{Date, DeviceId, Error, Indicium, IndiciumData, Money, ZipCode};
use proptest::prelude::*;

#[test]
fn fields_are_contiguous_and_add_up() {
    let mut at = 0;
    for f in FIELDS {
        assert_eq!(f.offset, at, "{}", f.name);
        at += f.len;
    }
    assert_eq!(at, LEN);
    assert_eq!(LEN, 115);
    assert_eq!(SIGNED_LEN, 51);
    assert_eq!(FIELDS.last().unwrap().offset, SIGNED_LEN);
}

#[test]
fn signed_part_known_answer() {
    let data = common::sample_data();
    let expected = concat!(
        "01",           // version
        "01",           // algorithm id: ECDSA P-256
        "00001092",     // certificate serial 4242
        "5056000004d2", // device id PV00001234
        "000012d680",   // ascending register 1234560 tenths of a cent
        "0002da",       // postage 730 = $0.730
        "259e",         // 2026-05-14 = day 9630
        "075bcd15",     // origin ZIP 12345-6789 = 123456789
        "0102",         // software id
        "0005e30a76",   // descending register 98765430
        "0007",         // rate category
        "000003e9",     // mail-piece id 1001
        "0c380d40",     // destination ZIP 20500 = 205000000
        "00000000",     // vendor token
        "00000000",     // postal token
    );
    assert_eq!(hex::encode(data.encode_signed_part().unwrap()), expected);
}

#[test]
fn sign_then_parse_gives_the_same_indicium() {
    let f = common::fixture();
    let bytes = f.indicium.to_bytes();
    assert_eq!(bytes.len(), LEN);
    let parsed = Indicium::parse(&bytes).unwrap();
    assert_eq!(parsed, f.indicium);
    assert_eq!(parsed.data(), &f.data);
    assert_eq!(&bytes[..SIGNED_LEN], parsed.signed_bytes());
    parsed.verify_signature(&f.psd_key.public_key()).unwrap();
}

#[test]
fn parse_rejects_wrong_length_version_and_trailing_bytes() {
    let bytes = common::fixture().indicium.to_bytes();
    assert_eq!(
        Indicium::parse(&[]),
        Err(Error::Truncated {
            needed: LEN,
            got: 0
        })
    );
    assert_eq!(
        Indicium::parse(&bytes[..LEN - 1]),
        Err(Error::Truncated {
            needed: LEN,
            got: LEN - 1
        })
    );
    assert_eq!(
        Indicium::parse(&bytes[..10]),
        Err(Error::Truncated {
            needed: LEN,
            got: 10
        })
    );
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(
        Indicium::parse(&long),
        Err(Error::TrailingBytes { count: 1 })
    );
    let mut v2 = bytes.clone();
    v2[0] = 2;
    assert_eq!(
        Indicium::parse(&v2),
        Err(Error::UnsupportedVersion { version: 2 })
    );
    // A different version is reported as such even when its length differs.
    assert_eq!(
        Indicium::parse(&[0]),
        Err(Error::UnsupportedVersion { version: 0 })
    );
}

#[test]
fn parse_rejects_out_of_range_fields() {
    let bytes = common::fixture().indicium.to_bytes();
    let mut alg = bytes.clone();
    alg[1] = 9;
    assert_eq!(
        Indicium::parse(&alg),
        Err(Error::UnknownAlgorithm { id: 9 })
    );
    let mut vendor = bytes.clone();
    vendor[6] = b'p';
    assert_eq!(
        Indicium::parse(&vendor),
        Err(Error::InvalidVendorCode { bytes: *b"pV" })
    );
    let mut zip = bytes.clone();
    zip[22..26].copy_from_slice(&1_000_000_000u32.to_be_bytes());
    assert!(matches!(
        Indicium::parse(&zip),
        Err(Error::FieldOutOfRange {
            field: "ZIP5",
            value: 100_000,
            ..
        })
    ));
    let mut dest = bytes;
    dest[39..43].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        Indicium::parse(&dest),
        Err(Error::FieldOutOfRange { field: "ZIP5", .. })
    ));
}

#[test]
fn encode_rejects_values_that_do_not_fit() {
    let mut data = common::sample_data();
    data.postage = Money(MAX_POSTAGE.tenths() + 1);
    assert!(matches!(
        data.encode_signed_part(),
        Err(Error::FieldOutOfRange {
            field: "postage value",
            ..
        })
    ));
    let mut data = common::sample_data();
    data.descending_register = Money(MAX_REGISTER.tenths() + 1);
    assert!(matches!(
        data.encode_signed_part(),
        Err(Error::FieldOutOfRange {
            field: "descending register",
            ..
        })
    ));
    let key = SigningKey::generate(SigAlg::Ed25519).unwrap();
    assert!(matches!(
        Indicium::sign(common::sample_data(), &key),
        Err(Error::AlgorithmMismatch { .. })
    ));
}

fn zip() -> impl Strategy<Value = ZipCode> {
    (0u32..=99_999, 0u16..=9_999).prop_map(|(z, p)| ZipCode::new(z, p).unwrap())
}

fn data() -> impl Strategy<Value = IndiciumData> {
    (
        (
            any::<u32>(),
            (b'A'..=b'Z', b'A'..=b'Z', any::<u32>()),
            0..=MAX_REGISTER.tenths(),
            0..=MAX_POSTAGE.tenths(),
            any::<u16>(),
            zip(),
            any::<u16>(),
        ),
        (
            0..=MAX_REGISTER.tenths(),
            any::<u16>(),
            any::<u32>(),
            proptest::option::of(zip().prop_filter("0 means unknown", |z| z.to_u32() != 0)),
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
        ),
    )
        .prop_map(
            |((serial, (a, b, dev), ar, pv, date, origin, sw), (dr, rate, piece, dest, vt, pt))| {
                IndiciumData {
                    alg: SigAlg::EcdsaP256Sha256,
                    certificate_serial: serial,
                    device_id: DeviceId::new([a, b], dev).unwrap(),
                    ascending_register: Money(ar),
                    postage: Money(pv),
                    date: Date::from_days(date),
                    origin_zip: origin,
                    software_id: sw,
                    descending_register: Money(dr),
                    rate_category: rate,
                    mail_piece_id: piece,
                    destination_zip: dest,
                    vendor_token: vt,
                    postal_token: pt,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn encode_parse_round_trip(data in data()) {
        // One key for all cases: key generation is not what is under test.
        thread_local!(static KEY: SigningKey = SigningKey::generate(SigAlg::EcdsaP256Sha256).unwrap());
        let indicium = KEY.with(|k| Indicium::sign(data.clone(), k)).unwrap();
        let bytes = indicium.to_bytes();
        prop_assert_eq!(bytes.len(), LEN);
        let parsed = Indicium::parse(&bytes).unwrap();
        prop_assert_eq!(parsed.data(), &data);
        prop_assert_eq!(parsed.to_bytes(), bytes);
        KEY.with(|k| parsed.verify_signature(&k.public_key())).unwrap();
    }

    #[test]
    fn parse_never_panics_and_reencodes_exactly(bytes in proptest::collection::vec(any::<u8>(), 0..=130)) {
        if let Ok(i) = Indicium::parse(&bytes) {
            prop_assert_eq!(i.to_bytes(), bytes);
        }
    }
}

#[test]
fn the_kind_is_the_top_two_bits_of_the_rate_category() {
    use postvault_indicium::IndiciumKind;
    for (kind, bits) in [
        (IndiciumKind::Postage, 0x0000),
        (IndiciumKind::Correction, 0x4000),
        (IndiciumKind::Refund, 0x8000),
        (IndiciumKind::Redate, 0xC000),
    ] {
        let category = kind.rate_category(0x1234).unwrap();
        assert_eq!(category, bits | 0x1234);
        let data = IndiciumData {
            rate_category: category,
            ..common::sample_data()
        };
        assert_eq!((data.kind(), data.mail_class()), (kind, 0x1234));
    }
    assert!(IndiciumKind::Postage.rate_category(0x4000).is_err());
}
