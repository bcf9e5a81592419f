//! Independent implementations agree: RustCrypto's p256 verifies our indicium
//! and certificate signatures, x509-parser reads our certificates as the
//! profile says, and PEM round-trips.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use postvault_indicium::cert::{INDICIUM_SIGNING_OID, INDICIUM_SIGNING_OID_DER};
use postvault_indicium::indicium::SIGNED_LEN;
use postvault_indicium::{Certificate, Error, PostalCa, PsdCertificate};
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::OID_X509_SERIALNUMBER;

#[test]
fn rustcrypto_p256_verifies_our_indicium_signature() {
    let f = common::fixture();
    let bytes = f.indicium.to_bytes();
    let (signed, sig) = bytes.split_at(SIGNED_LEN);
    let vk = VerifyingKey::from_sec1_bytes(f.psd_key.public_key().as_bytes()).unwrap();
    let sig = Signature::from_slice(sig).unwrap();
    vk.verify(signed, &sig).unwrap();
    // And it notices a change.
    let mut changed = signed.to_vec();
    changed[17] ^= 1;
    assert!(vk.verify(&changed, &sig).is_err());
    // The key in the PSD certificate is the same key.
    let from_cert = f.psd_cert.certificate().public_key().unwrap();
    assert_eq!(from_cert, &f.psd_key.public_key());
}

#[test]
fn rustcrypto_p256_verifies_the_ca_signature_on_our_certificates() {
    let f = common::fixture();
    let ca_key = f.ca.certificate().public_key().unwrap();
    let vk = VerifyingKey::from_sec1_bytes(ca_key.as_bytes()).unwrap();
    for der in [f.ca.certificate().der(), f.psd_cert.certificate().der()] {
        let (_, x509) = x509_parser::parse_x509_certificate(der).unwrap();
        let sig = Signature::from_der(&x509.signature_value.data).unwrap();
        vk.verify(x509.tbs_certificate.as_ref(), &sig).unwrap();
    }
}

#[test]
fn x509_parser_reads_the_ca_certificate() {
    let f = common::fixture();
    let (rest, x509) = x509_parser::parse_x509_certificate(f.ca.certificate().der()).unwrap();
    assert!(rest.is_empty());
    assert_eq!(x509.version(), x509_parser::x509::X509Version::V3);
    assert_eq!(x509.subject().to_string(), "CN=Test Postal CA, O=postvault");
    assert_eq!(x509.subject(), x509.issuer());
    assert!(x509.is_ca());
    let bc = x509.basic_constraints().unwrap().unwrap().value;
    assert_eq!(bc.path_len_constraint, Some(0));
    let ku = x509.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
    assert_eq!(x509.tbs_certificate.raw_serial().len(), 16);
    assert_eq!(
        x509.validity().not_before.to_datetime().date().to_string(),
        "2025-01-01"
    );
    assert_eq!(
        x509.validity().not_after.to_datetime().date().to_string(),
        "2035-12-31"
    );
}

#[test]
fn x509_parser_reads_the_psd_certificate() {
    let f = common::fixture();
    let (rest, x509) = x509_parser::parse_x509_certificate(f.psd_cert.certificate().der()).unwrap();
    assert!(rest.is_empty());
    assert_eq!(
        x509.subject().to_string(),
        "CN=PSD PV00001234, serialNumber=PV00001234"
    );
    assert_eq!(x509.issuer().to_string(), "CN=Test Postal CA, O=postvault");
    assert_eq!(x509.tbs_certificate.raw_serial(), &[0x10, 0x92]);
    assert_eq!(x509.raw_serial_as_string(), "10:92");
    let sn = x509
        .subject()
        .iter_by_oid(&OID_X509_SERIALNUMBER)
        .next()
        .unwrap();
    assert_eq!(sn.as_str().unwrap(), "PV00001234");
    assert!(!x509.is_ca());
    assert!(x509.key_usage().unwrap().unwrap().value.digital_signature());
    let eku = x509.extended_key_usage().unwrap().unwrap();
    assert!(!eku.critical);
    assert_eq!(eku.value.other.len(), 1);
    assert_eq!(eku.value.other[0].as_bytes(), INDICIUM_SIGNING_OID_DER);
    assert!(!eku.value.server_auth && !eku.value.client_auth && !eku.value.any);
    let has = |f: fn(&ParsedExtension<'_>) -> bool| {
        x509.extensions().iter().any(|e| f(e.parsed_extension()))
    };
    assert!(has(|e| matches!(
        e,
        ParsedExtension::AuthorityKeyIdentifier(_)
    )));
    assert!(has(|e| matches!(
        e,
        ParsedExtension::SubjectKeyIdentifier(_)
    )));
    assert_eq!(
        x509.validity().not_before.to_datetime().to_string(),
        "2026-01-01 0:00:00.0 +00:00:00"
    );
    assert_eq!(
        x509.validity().not_after.to_datetime().to_string(),
        "2027-12-31 23:59:59.0 +00:00:00"
    );
    assert!(INDICIUM_SIGNING_OID.starts_with("2.25."));
}

#[test]
fn pem_round_trips_and_rejects_other_blocks() {
    let f = common::fixture();
    let ca_pem = f.ca.certificate().to_pem();
    assert!(ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(&Certificate::from_pem(&ca_pem).unwrap(), f.ca.certificate());
    let psd_pem = f.psd_cert.to_pem();
    let psd = PsdCertificate::from_pem(&psd_pem).unwrap();
    assert_eq!(psd, f.psd_cert);
    assert_eq!(psd.serial(), common::SERIAL);
    assert_eq!(psd.device_id(), common::device());

    let key_pem = f.ca.key_to_pkcs8_pem().unwrap();
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(matches!(
        Certificate::from_pem(&key_pem),
        Err(Error::PemMalformed { .. })
    ));
    assert!(matches!(
        Certificate::from_pem("junk"),
        Err(Error::PemMalformed { .. })
    ));
    assert!(matches!(
        PostalCa::key_from_pkcs8_pem(&ca_pem),
        Err(Error::PemMalformed { .. })
    ));
    // The CA is a CA, not a PSD: its serialNumber is missing.
    assert!(matches!(
        PsdCertificate::from_pem(&ca_pem),
        Err(Error::CertificateMalformed { .. })
    ));
}

#[test]
fn a_ca_loaded_from_pem_issues_certificates_that_chain() {
    let f = common::fixture();
    let cert = Certificate::from_pem(&f.ca.certificate().to_pem()).unwrap();
    let key = PostalCa::key_from_pkcs8_pem(&f.ca.key_to_pkcs8_pem().unwrap()).unwrap();
    let loaded = PostalCa::from_parts(cert.clone(), key).unwrap();
    let psd = common::psd_certificate(&loaded, &f.psd_key.public_key());
    let bytes = f.indicium.to_bytes();
    let r = common::check(
        postvault_indicium::Input::Bytes(&bytes),
        &cert,
        Some(psd.certificate()),
    );
    assert!(r.valid(), "{:?}", r.first_failure());
    // A key that is not the CA's is refused.
    let other = PostalCa::key_from_pkcs8_pem(
        &PostalCa::generate("Other", common::ca_validity())
            .unwrap()
            .key_to_pkcs8_pem()
            .unwrap(),
    )
    .unwrap();
    assert!(matches!(
        PostalCa::from_parts(cert, other),
        Err(Error::InvalidArgument { .. })
    ));
    // A PSD certificate is not a CA.
    let key = PostalCa::key_from_pkcs8_pem(&f.ca.key_to_pkcs8_pem().unwrap()).unwrap();
    assert!(PostalCa::from_parts(f.psd_cert.certificate().clone(), key).is_err());
}

#[test]
fn certificate_parsing_rejects_garbage_and_trailing_bytes() {
    let f = common::fixture();
    assert!(matches!(
        Certificate::from_der(b"garbage"),
        Err(Error::CertificateMalformed { .. })
    ));
    let mut der = f.ca.certificate().der().to_vec();
    der.push(0);
    assert!(matches!(
        Certificate::from_der(&der),
        Err(Error::CertificateMalformed { .. })
    ));
    assert!(matches!(
        f.ca.issue_psd_certificate(
            &f.psd_key.public_key(),
            common::device(),
            0,
            common::validity()
        ),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn serials_with_the_top_bit_set_round_trip() {
    let f = common::fixture();
    for serial in [1, 0x7f, 0x80, 0x8000_0000, u32::MAX] {
        let psd =
            f.ca.issue_psd_certificate(
                &f.psd_key.public_key(),
                common::device(),
                serial,
                common::validity(),
            )
            .unwrap();
        assert_eq!(psd.serial(), serial);
        let (_, x509) = x509_parser::parse_x509_certificate(psd.certificate().der()).unwrap();
        assert_eq!(x509.serial, serial.into());
    }
}
