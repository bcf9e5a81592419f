//! The verifier: every single-bit flip fails with a sensible check named,
//! certificates from another CA or for another key fail, and the value, date,
//! meter-status and duplicate checks do what they say.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use postvault_crypto::sig::{SigAlg, SigningKey};
use postvault_indicium::error::ChainFailure;
use postvault_indicium::indicium::{FIELDS, LEN, SIGNED_LEN};
use postvault_indicium::render::{human_readable, render_png_raw};
use postvault_indicium::{
    CheckName, DeviceId, Error, Indicium, Input, MeterStatus, Money, Outcome, Policy, PostalCa,
    Seen, SkipReason, Validity, VerifierInputs, verify,
};

use CheckName as C;

fn field_of(byte: usize) -> &'static str {
    FIELDS
        .iter()
        .find(|f| (f.offset..f.offset + f.len).contains(&byte))
        .unwrap()
        .name
}

#[test]
fn the_sample_verifies_from_bytes() {
    let f = common::fixture();
    let bytes = f.indicium.to_bytes();
    let r = common::check(
        Input::Bytes(&bytes),
        f.ca.certificate(),
        Some(f.psd_cert.certificate()),
    );
    assert!(r.valid(), "{r:#?}");
    assert_eq!(
        r.checks.iter().map(|c| c.name).collect::<Vec<_>>(),
        CheckName::ALL.to_vec()
    );
    assert_eq!(
        r.outcome(C::Decode),
        Some(&Outcome::Skipped(SkipReason::NotAnImage))
    );
    for name in &CheckName::ALL[1..] {
        assert_eq!(r.outcome(*name), Some(&Outcome::Pass), "{name}");
    }
    assert_eq!(
        r.signed_bytes_hex.as_deref(),
        Some(hex::encode(&bytes[..SIGNED_LEN]).as_str())
    );
    assert_eq!(
        r.signature_hex.as_deref(),
        Some(hex::encode(&bytes[SIGNED_LEN..]).as_str())
    );
    assert_eq!(r.digest, Some(postvault_crypto::hash::sha256(&[&bytes])));
}

#[test]
fn every_single_bit_flip_fails_with_a_sensible_check() {
    let f = common::fixture();
    let ca = f.ca.certificate();
    let psd = f.psd_cert.certificate();
    let original = f.indicium.to_bytes();
    for bit in 0..LEN * 8 {
        let mut bytes = original.clone();
        bytes[bit / 8] ^= 1 << (7 - bit % 8);
        let r = common::check(Input::Bytes(&bytes), ca, Some(psd));
        let byte = bit / 8;
        let field = field_of(byte);
        let failed = r.failed();
        assert!(!r.valid(), "bit {bit} ({field}) went unnoticed");
        if failed == [C::Parse] {
            assert!(
                matches!(
                    field,
                    "version"
                        | "algorithm id"
                        | "device id"
                        | "originating ZIP"
                        | "destination ZIP"
                ),
                "bit {bit} ({field}) failed parsing: {:?}",
                r.first_failure()
            );
            assert!(
                field != "device id" || byte < 8,
                "bit {bit}: a device serial bit cannot fail parsing"
            );
            continue;
        }
        assert_ne!(field, "version", "bit {bit}");
        // Anything that parses has a signature that no longer verifies.
        assert!(
            failed.contains(&C::Signature),
            "bit {bit} ({field}): {failed:?}"
        );
        let allowed: &[CheckName] = match field {
            "certificate serial" | "device id" => &[C::Certificate, C::Signature],
            "date of mailing" => &[C::Certificate, C::Signature, C::Date],
            "ascending register" | "postage value" => &[C::Signature, C::Value],
            _ => &[C::Signature],
        };
        assert!(
            failed.iter().all(|c| allowed.contains(c)),
            "bit {bit} ({field}): {failed:?}"
        );
        match field {
            "certificate serial" => assert!(matches!(
                r.outcome(C::Certificate),
                Some(Outcome::Fail(Error::CertificateSerialMismatch { certificate, .. })) if certificate == "4242"
            )),
            "device id" => assert!(matches!(
                r.outcome(C::Certificate),
                Some(Outcome::Fail(Error::DeviceIdMismatch { .. }))
            )),
            "signature" => assert_eq!(failed, [C::Signature]),
            _ => {}
        }
    }
}

#[test]
fn tampered_images_fail_the_signature_check() {
    let f = common::fixture();
    let original = f.indicium.to_bytes();
    let lines = human_readable(&f.indicium);
    // One bit in the postage, the date, a token and the signature.
    for bit in [17 * 8 + 7, 20 * 8 + 7, 47 * 8, 100 * 8 + 3] {
        let mut bytes = original.clone();
        bytes[bit / 8] ^= 1 << (7 - bit % 8);
        let png = render_png_raw(&bytes, &lines).unwrap();
        let r = common::check(
            Input::Png(&png),
            f.ca.certificate(),
            Some(f.psd_cert.certificate()),
        );
        assert_eq!(r.outcome(C::Decode), Some(&Outcome::Pass), "bit {bit}");
        assert_eq!(r.decoded_bytes.as_deref(), Some(bytes.as_slice()));
        assert_eq!(
            r.outcome(C::Signature),
            Some(&Outcome::Fail(Error::SignatureInvalid)),
            "bit {bit}"
        );
    }
}

#[test]
fn a_symbol_that_is_not_an_indicium_fails_parse_and_skips_the_rest() {
    let f = common::fixture();
    let png = render_png_raw(b"hello, world", &human_readable(&f.indicium)).unwrap();
    let r = common::check(
        Input::Png(&png),
        f.ca.certificate(),
        Some(f.psd_cert.certificate()),
    );
    assert_eq!(r.outcome(C::Decode), Some(&Outcome::Pass));
    assert!(matches!(
        r.outcome(C::Parse),
        Some(Outcome::Fail(Error::UnsupportedVersion { version: b'h' }))
    ));
    for name in &CheckName::ALL[2..] {
        assert_eq!(
            r.outcome(*name),
            Some(&Outcome::Skipped(SkipReason::EarlierCheckFailed(C::Parse)))
        );
    }
    assert!(!r.valid());
    assert!(r.fields.is_none());
}

#[test]
fn garbage_image_fails_decode_and_skips_the_rest() {
    let f = common::fixture();
    let r = common::check(
        Input::Png(b"garbage"),
        f.ca.certificate(),
        Some(f.psd_cert.certificate()),
    );
    assert!(matches!(
        r.outcome(C::Decode),
        Some(Outcome::Fail(Error::ImageUnreadable { .. }))
    ));
    assert_eq!(
        r.outcome(C::Signature),
        Some(&Outcome::Skipped(SkipReason::EarlierCheckFailed(C::Decode)))
    );
    assert!(!r.valid());
}

#[test]
fn a_certificate_from_another_ca_fails_the_certificate_check() {
    let f = common::fixture();
    let other = PostalCa::generate("Impostor CA", common::ca_validity()).unwrap();
    // Same key, device and serial, but issued by a CA we do not trust.
    let forged = common::psd_certificate(&other, &f.psd_key.public_key());
    let bytes = f.indicium.to_bytes();
    let r = common::check(
        Input::Bytes(&bytes),
        f.ca.certificate(),
        Some(forged.certificate()),
    );
    assert_eq!(r.failed(), [C::Certificate]);
    assert_eq!(
        r.outcome(C::Certificate),
        Some(&Outcome::Fail(Error::CertificateRejected {
            reason: ChainFailure::UnknownIssuer
        }))
    );
    // And the genuine certificate does not chain to the impostor either.
    let r = common::check(
        Input::Bytes(&bytes),
        other.certificate(),
        Some(f.psd_cert.certificate()),
    );
    assert_eq!(r.failed(), [C::Certificate]);
}

#[test]
fn a_certificate_for_another_key_fails_the_signature_check() {
    let f = common::fixture();
    let other_key = SigningKey::generate(SigAlg::EcdsaP256Sha256).unwrap();
    let cert = common::psd_certificate(&f.ca, &other_key.public_key());
    let bytes = f.indicium.to_bytes();
    let r = common::check(
        Input::Bytes(&bytes),
        f.ca.certificate(),
        Some(cert.certificate()),
    );
    assert_eq!(r.failed(), [C::Signature]);
    assert_eq!(
        r.outcome(C::Signature),
        Some(&Outcome::Fail(Error::SignatureInvalid))
    );
}

#[test]
fn a_certificate_for_another_meter_or_serial_fails_the_certificate_check() {
    let f = common::fixture();
    let bytes = f.indicium.to_bytes();
    let key = f.psd_key.public_key();
    let other_device = DeviceId::new(*b"PV", 1235).unwrap();
    let cert =
        f.ca.issue_psd_certificate(&key, other_device, common::SERIAL, common::validity())
            .unwrap();
    let r = common::check(
        Input::Bytes(&bytes),
        f.ca.certificate(),
        Some(cert.certificate()),
    );
    assert_eq!(r.failed(), [C::Certificate]);
    assert!(matches!(
        r.outcome(C::Certificate),
        Some(Outcome::Fail(Error::DeviceIdMismatch { .. }))
    ));
    let cert =
        f.ca.issue_psd_certificate(
            &key,
            common::device(),
            common::SERIAL + 1,
            common::validity(),
        )
        .unwrap();
    let r = common::check(
        Input::Bytes(&bytes),
        f.ca.certificate(),
        Some(cert.certificate()),
    );
    assert_eq!(r.failed(), [C::Certificate]);
    assert!(matches!(
        r.outcome(C::Certificate),
        Some(Outcome::Fail(Error::CertificateSerialMismatch {
            indicium: 4242,
            ..
        }))
    ));
}

#[test]
fn certificate_validity_is_checked_at_the_date_of_mailing() {
    let f = common::fixture();
    let key = f.psd_key.public_key();
    let bytes = f.indicium.to_bytes();
    let expired = Validity::new(common::day("2025-01-01"), common::day("2026-05-13")).unwrap();
    let cert =
        f.ca.issue_psd_certificate(&key, common::device(), common::SERIAL, expired)
            .unwrap();
    let r = common::check(
        Input::Bytes(&bytes),
        f.ca.certificate(),
        Some(cert.certificate()),
    );
    assert_eq!(
        r.outcome(C::Certificate),
        Some(&Outcome::Fail(Error::CertificateRejected {
            reason: ChainFailure::Expired
        }))
    );
    let future = Validity::new(common::day("2026-05-15"), common::day("2027-01-01")).unwrap();
    let cert =
        f.ca.issue_psd_certificate(&key, common::device(), common::SERIAL, future)
            .unwrap();
    let r = common::check(
        Input::Bytes(&bytes),
        f.ca.certificate(),
        Some(cert.certificate()),
    );
    assert_eq!(
        r.outcome(C::Certificate),
        Some(&Outcome::Fail(Error::CertificateRejected {
            reason: ChainFailure::NotYetValid
        }))
    );
    // Validity is inclusive of its first and last days.
    let exact = Validity::new(common::today(), common::today()).unwrap();
    let cert =
        f.ca.issue_psd_certificate(&key, common::device(), common::SERIAL, exact)
            .unwrap();
    let r = common::check(
        Input::Bytes(&bytes),
        f.ca.certificate(),
        Some(cert.certificate()),
    );
    assert!(r.valid(), "{:?}", r.first_failure());
}

#[test]
fn the_ca_certificate_is_not_a_psd_certificate() {
    let f = common::fixture();
    let bytes = f.indicium.to_bytes();
    let r = common::check(
        Input::Bytes(&bytes),
        f.ca.certificate(),
        Some(f.ca.certificate()),
    );
    assert!(r.failed().contains(&C::Certificate));
    assert!(r.failed().contains(&C::Signature));
}

#[test]
fn without_a_psd_certificate_the_certificate_check_fails_and_signature_is_skipped() {
    let f = common::fixture();
    let bytes = f.indicium.to_bytes();
    let r = common::check(Input::Bytes(&bytes), f.ca.certificate(), None);
    assert_eq!(
        r.outcome(C::Certificate),
        Some(&Outcome::Fail(Error::NoPsdCertificate))
    );
    assert_eq!(
        r.outcome(C::Signature),
        Some(&Outcome::Skipped(SkipReason::NoPublicKey))
    );
    assert!(!r.valid());
}

fn with(
    f: &common::Fixture,
    indicium: &Indicium,
    policy: Policy,
    today: postvault_indicium::Date,
    status: MeterStatus,
    seen: Seen,
) -> postvault_indicium::Report {
    let status = move |_: &DeviceId| status;
    let mut seen = move |_: &[u8; 32]| seen;
    let bytes = indicium.to_bytes();
    verify(
        Input::Bytes(&bytes),
        &mut VerifierInputs {
            ca: f.ca.certificate(),
            psd_cert: Some(f.psd_cert.certificate()),
            today,
            policy,
            status: &status,
            seen: &mut seen,
        },
    )
}

#[test]
fn value_checks() {
    let f = common::fixture();
    let today = common::today();
    let ok = |i: &Indicium, p: Policy| with(&f, i, p, today, MeterStatus::Active, Seen::FirstUse);
    let strict = Policy {
        min_postage: Money(1000),
        ..Policy::default()
    };
    let r = ok(&f.indicium, strict);
    assert_eq!(r.failed(), [C::Value]);
    assert!(matches!(
        r.outcome(C::Value),
        Some(Outcome::Fail(Error::ValueBelowMinimum { .. }))
    ));
    let capped = Policy {
        max_postage: Money(500),
        ..Policy::default()
    };
    assert!(matches!(
        ok(&f.indicium, capped).outcome(C::Value),
        Some(Outcome::Fail(Error::ValueAboveMaximum { .. }))
    ));
    let mut data = f.data.clone();
    data.ascending_register = Money(729);
    let signed = Indicium::sign(data, &f.psd_key).unwrap();
    let r = ok(&signed, Policy::default());
    assert_eq!(r.failed(), [C::Value]);
    assert!(matches!(
        r.outcome(C::Value),
        Some(Outcome::Fail(Error::ValueExceedsAscendingRegister { .. }))
    ));
}

#[test]
fn date_checks() {
    let f = common::fixture();
    let run = |today: &str, max_age_days| {
        let policy = Policy {
            max_age_days,
            ..Policy::default()
        };
        with(
            &f,
            &f.indicium,
            policy,
            common::day(today),
            MeterStatus::Active,
            Seen::FirstUse,
        )
    };
    // Mailing dated tomorrow is allowed (time zones), the day after is not.
    assert!(run("2026-05-13", 30).valid());
    let r = run("2026-05-12", 30);
    assert_eq!(r.failed(), [C::Date]);
    assert!(matches!(
        r.outcome(C::Date),
        Some(Outcome::Fail(Error::DateInFuture { .. }))
    ));
    assert!(run("2026-06-13", 30).valid());
    let r = run("2026-06-14", 30);
    assert_eq!(r.failed(), [C::Date]);
    assert!(matches!(
        r.outcome(C::Date),
        Some(Outcome::Fail(Error::DateTooOld {
            max_age_days: 30,
            ..
        }))
    ));
    assert!(run("2026-06-14", 31).valid());
}

#[test]
fn meter_status_and_duplicate_callbacks() {
    let f = common::fixture();
    let today = common::today();
    let p = Policy::default();
    let r = with(
        &f,
        &f.indicium,
        p,
        today,
        MeterStatus::Withdrawn,
        Seen::FirstUse,
    );
    assert_eq!(r.failed(), [C::MeterStatus]);
    assert!(matches!(
        r.outcome(C::MeterStatus),
        Some(Outcome::Fail(Error::MeterNotActive {
            status: MeterStatus::Withdrawn,
            ..
        }))
    ));
    let r = with(
        &f,
        &f.indicium,
        p,
        today,
        MeterStatus::Suspended,
        Seen::FirstUse,
    );
    assert_eq!(r.failed(), [C::MeterStatus]);
    let r = with(
        &f,
        &f.indicium,
        p,
        today,
        MeterStatus::Unknown,
        Seen::Unknown,
    );
    assert!(r.valid());
    assert_eq!(
        r.outcome(C::MeterStatus),
        Some(&Outcome::Skipped(SkipReason::StatusUnknown))
    );
    assert_eq!(
        r.outcome(C::Duplicate),
        Some(&Outcome::Skipped(SkipReason::NoUsageRecord))
    );

    // A real duplicate store: the second presentation of the same indicium fails.
    let mut store = std::collections::HashSet::new();
    let mut seen = |d: &[u8; 32]| {
        if store.insert(*d) {
            Seen::FirstUse
        } else {
            Seen::Duplicate
        }
    };
    let status = |_: &DeviceId| MeterStatus::Active;
    let bytes = f.indicium.to_bytes();
    let mut inputs = VerifierInputs {
        ca: f.ca.certificate(),
        psd_cert: Some(f.psd_cert.certificate()),
        today,
        policy: p,
        status: &status,
        seen: &mut seen,
    };
    assert!(verify(Input::Bytes(&bytes), &mut inputs).valid());
    let second = verify(Input::Bytes(&bytes), &mut inputs);
    assert_eq!(second.failed(), [C::Duplicate]);
    assert_eq!(
        second.outcome(C::Duplicate),
        Some(&Outcome::Fail(Error::DuplicateIndicium))
    );
    // The same fields signed again (ECDSA signatures differ each time), or
    // reissued under another kind and date (a redate), are the same mail piece.
    let again = Indicium::sign(f.data.clone(), &f.psd_key)
        .unwrap()
        .to_bytes();
    assert_ne!(again, bytes);
    assert_eq!(
        verify(Input::Bytes(&again), &mut inputs).failed(),
        [C::Duplicate]
    );
    let mut redate = f.data.clone();
    redate.rate_category = postvault_indicium::IndiciumKind::Redate
        .rate_category(f.data.mail_class())
        .unwrap();
    let redate = Indicium::sign(redate, &f.psd_key).unwrap().to_bytes();
    assert_eq!(
        verify(Input::Bytes(&redate), &mut inputs).failed(),
        [C::Duplicate]
    );
    // The next mail piece (the AR moved on by its postage) is not a duplicate.
    let mut next = f.data.clone();
    next.mail_piece_id += 1;
    next.ascending_register = next.ascending_register.checked_add(next.postage).unwrap();
    next.descending_register = next.descending_register.checked_sub(next.postage).unwrap();
    let next = Indicium::sign(next, &f.psd_key).unwrap().to_bytes();
    assert!(verify(Input::Bytes(&next), &mut inputs).valid());
}

#[test]
fn ed25519_meters_work_too() {
    let f = common::fixture();
    let key = SigningKey::generate(SigAlg::Ed25519).unwrap();
    let cert = common::psd_certificate(&f.ca, &key.public_key());
    let mut data = f.data.clone();
    data.alg = SigAlg::Ed25519;
    let indicium = Indicium::sign(data, &key).unwrap();
    let bytes = indicium.to_bytes();
    assert_eq!(bytes[1], 2);
    let r = common::check(
        Input::Bytes(&bytes),
        f.ca.certificate(),
        Some(cert.certificate()),
    );
    assert!(r.valid(), "{:?}", r.first_failure());
    // The P-256 meter's certificate does not verify an Ed25519 indicium.
    let r = common::check(
        Input::Bytes(&bytes),
        f.ca.certificate(),
        Some(f.psd_cert.certificate()),
    );
    assert_eq!(r.failed(), [C::Signature]);
    assert!(matches!(
        r.outcome(C::Signature),
        Some(Outcome::Fail(Error::AlgorithmMismatch { .. }))
    ));
}
