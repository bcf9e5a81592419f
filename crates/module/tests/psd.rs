//! PSD packages: Initialize PSD makes a Raw package with zero registers that
//! only this vault's MKS opens; Authorize PSD takes a certificate from the
//! crypto-card's postal CA for this device and key. Every failed check is typed,
//! audited, and leaves the package as it was.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::*;
use postvault_crypto::sig::{PublicKey, SigAlg, Signature, SigningKey};
use postvault_indicium::cert::{PostalCa, Validity};
use postvault_indicium::{Date, DeviceId, Money};
use postvault_module::Error;
use postvault_module::cryptocard::CardSettings;
use postvault_module::nvm::MemNvm;
use postvault_module::psd::{NewPsd, PsdPackage, PsdState, possession_message};
use postvault_module::wire::{Outer, OuterReply, Request};

const DEVICE: [u8; 6] = [b'P', b'V', 0, 0, 0x30, 0x39];

fn validity() -> Validity {
    Validity::new(
        Date::from_ymd(2023, 1, 1).unwrap(),
        Date::from_ymd(2027, 12, 31).unwrap(),
    )
    .unwrap()
}

/// A master with its crypto-card loaded, trusting `ca`.
fn postal_master(ca: &PostalCa) -> Hsm<MemNvm> {
    let mut m = new_master();
    let provider = SigningKey::generate(SigAlg::EcdsaP256Sha256)
        .unwrap()
        .public_key();
    let settings = CardSettings {
        provider_key: (provider.alg().id(), provider.as_bytes().to_vec()),
        ca_certificate: ca.certificate().der().to_vec(),
        min_value: Money::from_tenths(10),
        max_value: Money::from_tenths(100_000),
        dr_ceiling: Money::from_tenths(5_000_000),
        ar_ceiling: Money::from_tenths(1 << 40),
    };
    m.as_user(
        "so",
        Request::InitializeCryptoCard {
            settings,
            tokens: None,
        },
    )
    .unwrap();
    m
}

fn init_psd(m: &mut Hsm<MemNvm>, device: [u8; 6]) -> postvault_module::Result<NewPsd> {
    match m.host.call(Outer::InitializePsd { device_id: device })? {
        OuterReply::PsdInitialized(n) => Ok(*n),
        r => panic!("{r:?}"),
    }
}

fn authorize(
    m: &mut Hsm<MemNvm>,
    package: &PsdPackage,
    certificate: &[u8],
) -> postvault_module::Result<PsdPackage> {
    match m.host.call(Outer::AuthorizePsd {
        package: package.clone(),
        certificate: certificate.to_vec(),
    })? {
        OuterReply::Psd(p) => Ok(p),
        r => panic!("{r:?}"),
    }
}

fn certify(ca: &PostalCa, new: &NewPsd, device: [u8; 6], serial: u32) -> Vec<u8> {
    let key = PublicKey::from_bytes(
        SigAlg::from_id(new.public_key.0).unwrap(),
        &new.public_key.1,
    )
    .unwrap();
    let device = DeviceId::from_bytes(device).unwrap();
    ca.issue_psd_certificate(&key, device, serial, validity())
        .unwrap()
        .certificate()
        .der()
        .to_vec()
}

#[test]
fn initialize_then_authorize_with_a_certificate_from_the_postal_ca() {
    let ca = PostalCa::generate("Postal CA", validity()).unwrap();
    let mut m = postal_master(&ca);
    let new = init_psd(&mut m, DEVICE).unwrap();
    // The proof of possession verifies with the returned key.
    let key = PublicKey::from_bytes(SigAlg::EcdsaP256Sha256, &new.public_key.1).unwrap();
    key.verify(
        &possession_message(&DEVICE, &new.public_key.1),
        &Signature::from_bytes(SigAlg::EcdsaP256Sha256, &new.possession).unwrap(),
    )
    .unwrap();
    let slots = read_slot(&m.nvm(), postvault_module::nvm::Slot::Mks).unwrap();
    let (body, _) = new.package.open(&slots).unwrap();
    assert_eq!(
        (body.state, body.ar, body.dr, body.device_id),
        (PsdState::Raw, Money::ZERO, Money::ZERO, DEVICE)
    );

    let cert = certify(&ca, &new, DEVICE, 7);
    let authorized = authorize(&mut m, &new.package, &cert).unwrap();
    let (body, _) = authorized.open(&slots).unwrap();
    assert_eq!(
        (body.state, body.certificate_serial, body.sequence),
        (PsdState::Unleased, Some(7), 1)
    );
    // The package survives the database: encode, decode, still opens.
    let again = PsdPackage::decode(&authorized.encode().unwrap()).unwrap();
    assert_eq!(again.open(&slots).unwrap().0, body);
    // Authorize PSD runs once.
    let err = refused(&mut m, |h| authorize_host(h, &authorized, &cert));
    assert_eq!(
        err,
        Error::Psd {
            what: "Authorize PSD needs a package in the Raw state"
        }
    );
    postvault_module::audit::verify_log(&m.log(), None).unwrap();
}

fn authorize_host(
    h: &mut Hsm<MemNvm>,
    package: &PsdPackage,
    certificate: &[u8],
) -> postvault_module::Result<PsdPackage> {
    authorize(h, package, certificate)
}

#[test]
fn certificates_for_another_ca_device_or_key_are_refused() {
    let ca = PostalCa::generate("Postal CA", validity()).unwrap();
    let other_ca = PostalCa::generate("Another CA", validity()).unwrap();
    let mut m = postal_master(&ca);
    let new = init_psd(&mut m, DEVICE).unwrap();
    let other = init_psd(&mut m, [b'P', b'V', 0, 0, 0, 1]).unwrap();
    let cases = [
        (
            certify(&other_ca, &new, DEVICE, 1),
            "the certificate does not chain to the postal CA or is not valid today",
        ),
        (
            certify(&ca, &new, [b'P', b'V', 0, 0, 0, 2], 1),
            "the certificate names another device id",
        ),
        (
            certify(&ca, &other, DEVICE, 1),
            "the certificate is for another key than this PSD's",
        ),
        (
            b"not a certificate".to_vec(),
            "the PSD certificate is unreadable",
        ),
    ];
    for (cert, what) in cases {
        let err = refused(&mut m, |h| authorize(h, &new.package, &cert));
        assert_eq!(err, Error::Psd { what });
    }
}

#[test]
fn altered_or_foreign_packages_are_refused() {
    let ca = PostalCa::generate("Postal CA", validity()).unwrap();
    let mut m = postal_master(&ca);
    let new = init_psd(&mut m, DEVICE).unwrap();
    let cert = certify(&ca, &new, DEVICE, 3);
    // Any flipped byte of the body or the MAC.
    let mut tried = 0;
    for i in (0..new.package.body.len()).step_by(7).chain([0]) {
        let mut p = new.package.clone();
        p.body[i] ^= 0x01;
        assert!(refused_any(&mut m, &p, &cert), "body byte {i}");
        tried += 1;
    }
    let mut p = new.package.clone();
    p.mac[31] ^= 0x80;
    assert_eq!(
        refused(&mut m, |h| authorize(h, &p, &cert)),
        Error::Psd {
            what: "the package MAC does not verify (altered or not this vault's)"
        }
    );
    assert!(tried > 10);
    // A package from another vault (another MKS) does not open here.
    let mut stranger = postal_master(&ca);
    let foreign = init_psd(&mut stranger, DEVICE).unwrap();
    let err = refused(&mut m, |h| authorize(h, &foreign.package, &cert));
    assert!(matches!(err, Error::Token { .. }), "{err:?}");
}

fn refused_any(m: &mut Hsm<MemNvm>, p: &PsdPackage, cert: &[u8]) -> bool {
    let before = m.snapshot();
    let failed = authorize(m, p, cert).is_err();
    failed && m.snapshot() == before
}

#[test]
fn psd_commands_need_the_crypto_card_and_operational_state() {
    let mut m = new_master();
    let err = refused(&mut m, |h| init_psd(h, DEVICE));
    assert_eq!(
        err,
        Error::Psd {
            what: "the crypto-card is not initialized; the security officer loads it first"
        }
    );
    let err = refused(&mut m, |h| init_psd(h, [b'p', b'v', 0, 0, 0, 1]));
    assert!(
        matches!(err, Error::Psd { .. } | Error::InvalidArgument { .. }),
        "{err:?}"
    );
    let mut fresh = Hsm::initialized();
    let err = refused(&mut fresh, |h| init_psd(h, DEVICE));
    assert!(matches!(err, Error::Refused { .. }), "{err:?}");
}
