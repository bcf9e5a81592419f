//! Shared fixtures: a postal CA, a PSD key and certificate, and a sample indicium.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use postvault_crypto::sig::{SigAlg, SigningKey};
use postvault_indicium::{
    Certificate, Date, DeviceId, Indicium, IndiciumData, MeterStatus, Money, Policy, PostalCa,
    PsdCertificate, Report, Seen, Validity, VerifierInputs, ZipCode, verify,
};

pub const SERIAL: u32 = 4242;

pub fn day(s: &str) -> Date {
    s.parse().unwrap()
}

pub fn today() -> Date {
    day("2026-05-14")
}

pub fn device() -> DeviceId {
    DeviceId::new(*b"PV", 1234).unwrap()
}

pub struct Fixture {
    pub ca: PostalCa,
    pub psd_key: SigningKey,
    pub psd_cert: PsdCertificate,
    pub data: IndiciumData,
    pub indicium: Indicium,
}

pub fn validity() -> Validity {
    Validity::new(day("2026-01-01"), day("2027-12-31")).unwrap()
}

pub fn ca_validity() -> Validity {
    Validity::new(day("2025-01-01"), day("2035-12-31")).unwrap()
}

pub fn sample_data() -> IndiciumData {
    IndiciumData {
        alg: SigAlg::EcdsaP256Sha256,
        certificate_serial: SERIAL,
        device_id: device(),
        ascending_register: Money(1_234_560),
        postage: Money(730),
        date: today(),
        origin_zip: ZipCode::new(12345, 6789).unwrap(),
        software_id: 0x0102,
        descending_register: Money(98_765_430),
        rate_category: 7,
        mail_piece_id: 1001,
        destination_zip: Some(ZipCode::new(20500, 0).unwrap()),
        vendor_token: [0; 4],
        postal_token: [0; 4],
    }
}

/// A PSD certificate from `ca` for `key`, with the test device, serial and validity.
pub fn psd_certificate(
    ca: &PostalCa,
    key: &postvault_crypto::sig::PublicKey,
) -> postvault_indicium::PsdCertificate {
    ca.issue_psd_certificate(key, device(), SERIAL, validity())
        .unwrap()
}

pub fn fixture() -> Fixture {
    let ca = PostalCa::generate("Test Postal CA", ca_validity()).unwrap();
    let psd_key = SigningKey::generate(SigAlg::EcdsaP256Sha256).unwrap();
    let psd_cert = psd_certificate(&ca, &psd_key.public_key());
    let data = sample_data();
    let indicium = Indicium::sign(data.clone(), &psd_key).unwrap();
    Fixture {
        ca,
        psd_key,
        psd_cert,
        data,
        indicium,
    }
}

/// Verifies with status Active and no earlier use.
pub fn check(
    input: postvault_indicium::Input<'_>,
    ca: &Certificate,
    psd: Option<&Certificate>,
) -> Report {
    let status = |_: &DeviceId| MeterStatus::Active;
    let mut seen = |_: &[u8; 32]| Seen::FirstUse;
    let mut inputs = VerifierInputs {
        ca,
        psd_cert: psd,
        today: today(),
        policy: Policy::default(),
        status: &status,
        seen: &mut seen,
    };
    verify(input, &mut inputs)
}
