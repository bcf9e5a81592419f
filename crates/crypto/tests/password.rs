//! Argon2id password verifiers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use postvault_crypto::Error;
use postvault_crypto::password::{Argon2Params, PasswordVerifier};

const FAST: Argon2Params = Argon2Params::FAST_FOR_TESTS;

#[test]
fn create_then_verify() {
    let v = PasswordVerifier::create(b"correct horse", FAST).unwrap();
    assert!(
        v.as_phc().starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
        "{}",
        v.as_phc()
    );
    assert_eq!(v.verify(b"correct horse"), Ok(()));
    assert_eq!(v.verify(b"correct horsE"), Err(Error::VerificationFailed));
    assert_eq!(v.verify(b""), Err(Error::VerificationFailed));
}

#[test]
fn salts_are_random() {
    let a = PasswordVerifier::create(b"pw", FAST).unwrap();
    let b = PasswordVerifier::create(b"pw", FAST).unwrap();
    assert_ne!(a, b);
}

#[test]
fn phc_round_trip() {
    let v = PasswordVerifier::create(b"pw", FAST).unwrap();
    let stored = PasswordVerifier::from_phc(v.as_phc()).unwrap();
    assert_eq!(stored, v);
    assert_eq!(stored.verify(b"pw"), Ok(()));
    assert_eq!(stored.verify(b"pW"), Err(Error::VerificationFailed));
}

#[test]
fn malformed_phc_strings_are_rejected() {
    let v = PasswordVerifier::create(b"pw", FAST).unwrap();
    let phc = v.as_phc();
    let (without_hash, _) = phc.rsplit_once('$').unwrap();
    let bad = [
        String::new(),
        "argon2id".to_owned(),
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW".to_owned(),
        phc.replacen("argon2id", "argon2i", 1),
        phc.replacen("argon2id", "argon2d", 1),
        phc.replacen("m=64", "m=1", 1),
        phc.replacen("t=1", "t=0", 1),
        without_hash.to_owned(),
        format!("{phc}$extra"),
    ];
    for s in bad {
        assert!(
            matches!(PasswordVerifier::from_phc(&s), Err(Error::Malformed { .. })),
            "{s:?}"
        );
    }
}

#[test]
fn unusable_parameters_are_malformed() {
    let zero_passes = Argon2Params { t_cost: 0, ..FAST };
    let too_little_memory = Argon2Params {
        m_cost_kib: 1,
        ..FAST
    };
    for params in [zero_passes, too_little_memory] {
        assert!(matches!(
            PasswordVerifier::create(b"pw", params),
            Err(Error::Malformed { .. })
        ));
    }
}

#[test]
fn parameter_presets() {
    assert_eq!(
        Argon2Params::RECOMMENDED,
        Argon2Params {
            m_cost_kib: 19_456,
            t_cost: 2,
            p_cost: 1
        }
    );
    assert_eq!(
        Argon2Params::FAST_FOR_TESTS,
        Argon2Params {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1
        }
    );
}
