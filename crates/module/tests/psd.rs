//! PSD packages through their whole life: Initialize PSD, Authorize PSD with a
//! certificate from the postal CA, Configure PSD, Authorize Customer, downloads,
//! indicia (ordinary, correction, redated), password reset and the refund that
//! withdraws the meter. Every indicium verifies with the meter's certificate.
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
use postvault_crypto::sig::{PublicKey, SigAlg};
use postvault_indicium::{Date, IndiciumKind, Money};
use postvault_module::Error;
use postvault_module::PsdCheck;
use postvault_module::audit::AuditData;
use postvault_module::checkpoint::Transaction;
use postvault_module::nvm::Slot;
use postvault_module::postal::{PostalCommand, PostalOutcome};
use postvault_module::psd::{PsdPackage, PsdState};

const D: u32 = 12_345;

fn verify_with_certificate(v: &Vault, d: [u8; 6], i: &postvault_indicium::Indicium) {
    i.verify_signature(&v.public_key(d)).unwrap();
    let ca = postvault_indicium::Certificate::from_der(v.ca.certificate().der()).unwrap();
    let cert = postvault_indicium::Certificate::from_der(&v.certificates[&d]).unwrap();
    postvault_indicium::cert::verify_chain(&ca, &cert, i.data().date).unwrap();
}

#[test]
fn a_meter_from_initialization_to_withdrawal() {
    let mut v = Vault::new();
    let d = device(D);

    // Initialize PSD: Raw, zero registers, a key with a proof of possession.
    let reply = v.send(PostalCommand::Initialize { device_id: d }).unwrap();
    let PostalOutcome::Initialized {
        public_key,
        certificate_request,
    } = &reply.outcome
    else {
        panic!()
    };
    // The request is signed by the new key (rcgen checks it) and names the device;
    // the CA's certificate carries exactly the returned key.
    let cert =
        v.ca.issue_from_request(certificate_request, 9, validity())
            .unwrap();
    assert_eq!(cert.device_id().to_bytes(), d);
    let key = PublicKey::from_bytes(SigAlg::EcdsaP256Sha256, &public_key.1).unwrap();
    assert_eq!(cert.certificate().public_key(), Some(&key));
    // A request altered in transit is refused.
    let mut altered = certificate_request.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    assert!(v.ca.issue_from_request(&altered, 9, validity()).is_err());
    let slots = read_slot(&v.hsm.nvm(), Slot::Mks).unwrap();
    let (body, _) = reply.package.open(&slots).unwrap();
    assert_eq!(
        (body.state, body.ar, body.dr, body.device_id, body.sequence),
        (PsdState::Raw, Money::ZERO, Money::ZERO, d, 0)
    );

    // The rest of the way to Leased.
    let mut v = Vault::new();
    v.leased_meter(d);
    let body = v.body(d);
    assert_eq!(body.state, PsdState::Leased);
    assert_eq!(body.certificate_serial, Some(D));
    assert_eq!(body.licensing_zip, Some(ZIP));
    assert_eq!(body.dr_limit, DR_LIMIT);
    assert_eq!(body.sequence, 3);
    // The package survives the database: encode, decode, still opens.
    let slots = read_slot(&v.hsm.nvm(), Slot::Mks).unwrap();
    let again = PsdPackage::decode(&v.package(d).encode().unwrap()).unwrap();
    assert_eq!(again.open(&slots).unwrap().0, body);

    // Buy, print, correct, redate.
    v.download(d, Money::from_tenths(100_000)).unwrap();
    let first = v.print(d, Money::from_tenths(730)).unwrap();
    assert_eq!(first.data().kind(), IndiciumKind::Postage);
    assert_eq!(first.data().postage, Money::from_tenths(730));
    assert_eq!(first.data().ascending_register, Money::from_tenths(730));
    assert_eq!(first.data().descending_register, Money::from_tenths(99_270));
    assert_eq!(first.data().origin_zip.to_u32(), ZIP);
    assert_eq!(first.data().certificate_serial, D);
    verify_with_certificate(&v, d, &first);

    let correction = v.correction(d, Money::from_tenths(100)).unwrap();
    assert_eq!(correction.data().kind(), IndiciumKind::Correction);
    assert_eq!(
        correction.data().ascending_register,
        Money::from_tenths(830)
    );
    verify_with_certificate(&v, d, &correction);

    // The piece missed its day: two days later it is redated to the day it is mailed.
    v.hsm.clock.advance(2 * 86_400);
    let later = first.data().date.checked_add_days(2).unwrap();
    let too_late = later.checked_add_days(2).unwrap();
    let req = v.request(
        d,
        postvault_module::postal::CustomerAction::Redate {
            original: first.to_bytes(),
            date: too_late.days(),
        },
    );
    assert_eq!(
        v.customer(d, req).unwrap_err(),
        Error::PsdCheck(PsdCheck::Redate),
        "a redate is for today or tomorrow"
    );
    let redated = v.redate(d, &first, later).unwrap();
    assert_eq!(redated.data().kind(), IndiciumKind::Redate);
    assert_eq!(redated.data().date, later);
    assert_eq!(
        (
            redated.data().postage,
            redated.data().ascending_register,
            redated.data().mail_piece_id
        ),
        (
            first.data().postage,
            first.data().ascending_register,
            first.data().mail_piece_id
        )
    );
    verify_with_certificate(&v, d, &redated);
    // Redating moved no value.
    let b = v.body(d);
    assert_eq!(
        (b.ar, b.dr),
        (Money::from_tenths(830), Money::from_tenths(99_170))
    );

    // Password reset: Leased → PasswordReset → Leased with new secrets.
    v.begin_password_reset(d).unwrap();
    assert_eq!(v.state(d), PsdState::PasswordReset);
    let err = v.print(d, Money::from_tenths(100)).unwrap_err();
    assert_eq!(err, Error::PsdCheck(PsdCheck::State));
    v.complete_password_reset(d, [7; 32]).unwrap();
    assert_eq!(v.state(d), PsdState::Leased);
    let after_reset = v.print(d, Money::from_tenths(100)).unwrap();
    verify_with_certificate(&v, d, &after_reset);

    // Refund: an indicium for the whole DR, then Withdrawn.
    let refund = v.refund(d).unwrap();
    assert_eq!(refund.data().kind(), IndiciumKind::Refund);
    assert_eq!(refund.data().postage, Money::from_tenths(99_070));
    assert_eq!(refund.data().descending_register, Money::ZERO);
    assert_eq!(
        refund.data().ascending_register,
        Money::from_tenths(100_000)
    );
    verify_with_certificate(&v, d, &refund);
    assert_eq!(v.state(d), PsdState::Withdrawn);

    // Nothing runs on a Withdrawn package.
    let errors = [
        v.print(d, Money::from_tenths(100)).unwrap_err(),
        v.download(d, Money::from_tenths(100)).unwrap_err(),
        v.refund(d).unwrap_err(),
        v.begin_password_reset(d).unwrap_err(),
    ];
    assert!(
        errors
            .iter()
            .all(|e| *e == Error::PsdCheck(PsdCheck::State)),
        "{errors:?}"
    );

    // The audit log verifies and names each transaction with its registers.
    postvault_module::audit::verify_log(&v.hsm.log(), None).unwrap();
    let txs: Vec<Transaction> = v
        .hsm
        .entries()
        .iter()
        .filter_map(|e| match e.decode_body().unwrap().data {
            AuditData::Psd(b) => Some(b.transaction),
            _ => None,
        })
        .collect();
    assert_eq!(
        txs,
        [
            Transaction::Initialize,
            Transaction::Authorize,
            Transaction::Configure,
            Transaction::AuthorizeCustomer,
            Transaction::Download,
            Transaction::Indicium,
            Transaction::Correction,
            Transaction::Redate,
            Transaction::BeginPasswordReset,
            Transaction::CompletePasswordReset,
            Transaction::Indicium,
            Transaction::Refund,
        ]
    );
}

#[test]
fn an_expired_certificate_stops_printing_but_not_the_refund() {
    let mut v = Vault::new();
    let d = device(D);
    v.leased_meter(d);
    v.download(d, Money::from_tenths(5_000)).unwrap();
    let first = v.print(d, Money::from_tenths(500)).unwrap();
    let expiry = v.body(d).key_expiry.unwrap();
    // On the certificate's last day, a redate may not move the date past its
    // end (tomorrow): the indicium would not verify.
    let last_day = Date::from_unix_seconds(expiry).unwrap();
    let noon = u64::try_from(last_day.unix_seconds_at_start()).unwrap() + 12 * 3600;
    v.hsm.clock.advance(noon - T0);
    let late = v.request(
        d,
        postvault_module::postal::CustomerAction::Redate {
            original: first.to_bytes(),
            date: last_day.checked_add_days(1).unwrap().days(),
        },
    );
    assert_eq!(
        v.customer(d, late).unwrap_err(),
        Error::PsdCheck(PsdCheck::Redate)
    );
    let redated = v.redate(d, &first, last_day).unwrap();
    verify_with_certificate(&v, d, &redated);
    // Past the certificate's end (2027-12-31).
    v.hsm
        .clock
        .advance(u64::try_from(expiry).unwrap() - noon + 1);
    let package = v.package(d);
    let request = v.request(
        d,
        postvault_module::postal::CustomerAction::Indicium(indicium_order(Money::from_tenths(500))),
    );
    let checkpoint = v.checkpoint.clone();
    let err = refused(&mut v.hsm, |h| {
        h.host.call(postvault_module::wire::Outer::Postal(Box::new(
            postvault_module::postal::PostalRequest {
                checkpoint,
                command: PostalCommand::Customer { package, request },
            },
        )))
    });
    assert_eq!(err, Error::PsdCheck(PsdCheck::KeyExpired));
    // No more value goes into it either: it could only be refunded.
    let err = v.download(d, Money::from_tenths(100)).unwrap_err();
    assert_eq!(err, Error::PsdCheck(PsdCheck::KeyExpired));
    // The provider can still take the meter out of service and refund the DR.
    let refund = v.refund(d).unwrap();
    assert_eq!(refund.data().postage, Money::from_tenths(4_500));
    assert_eq!(v.state(d), PsdState::Withdrawn);
}

/// A provider order names the exact package it is for, so signed orders of a
/// meter's earlier life do not apply when its device id is initialised again.
#[test]
fn old_orders_do_not_apply_to_a_meter_initialised_again() {
    use postvault_module::postal::ProviderAction;
    let mut v = Vault::new();
    let d = device(D);
    v.unleased_meter(d);
    v.configure(d).unwrap();
    let authorize = v.order(
        d,
        ProviderAction::AuthorizeCustomer {
            licensing_zip: ZIP,
            dr_limit: DR_LIMIT,
        },
    );
    v.provider(d, authorize.clone()).unwrap();
    let download = v.order(
        d,
        ProviderAction::Download {
            amount: Money::from_tenths(100_000),
            control_total: Money::ZERO,
        },
    );
    v.provider(d, download.clone()).unwrap();
    v.refund(d).unwrap();
    // Other work pushes the meter out of the module's kept checkpoints, and
    // the same device id is initialised, certified and configured again.
    v.leased_meter(device(D + 1));
    v.unleased_meter(d);
    v.configure(d).unwrap();
    let err = v.provider(d, authorize).unwrap_err();
    assert_eq!(err, Error::PsdCheck(PsdCheck::OrderPackage));
    v.authorize_customer(d).unwrap();
    let err = v.provider(d, download).unwrap_err();
    assert_eq!(err, Error::PsdCheck(PsdCheck::OrderPackage));
    assert_eq!(v.body(d).dr, Money::ZERO, "no value without a new order");
}

#[test]
fn oversized_inputs_are_refused_before_any_work() {
    use postvault_module::postal::{MAX_CERTIFICATE, PostalRequest};
    use postvault_module::psd::MAX_SEALED_SECRETS;
    use postvault_module::wire::Outer;
    let mut v = Vault::new();
    let d = device(D);
    v.unleased_meter(d);
    let raw = v
        .send(PostalCommand::Initialize {
            device_id: device(D + 1),
        })
        .unwrap()
        .package;
    let commands = [
        (
            PostalCommand::Authorize {
                package: raw,
                certificate: vec![0x30; MAX_CERTIFICATE + 1],
            },
            PsdCheck::Certificate,
        ),
        (
            PostalCommand::Configure {
                package: v.package(d),
                customer_id: "customer".into(),
                sealed_secrets: vec![0; MAX_SEALED_SECRETS + 1],
            },
            PsdCheck::CustomerSecrets,
        ),
    ];
    for (command, expected) in commands {
        let checkpoint = v.checkpoint.clone();
        let err = refused(&mut v.hsm, |h| {
            h.host.call(Outer::Postal(Box::new(PostalRequest {
                checkpoint,
                command,
            })))
        });
        assert_eq!(err, Error::PsdCheck(expected));
    }
    // The unbroken Configure PSD still goes through.
    v.configure(d).unwrap();
}
