//! Initialize Crypto-Card: the master generates the shared postal keys, clones
//! load them from its tokens and end up with the same public keys; bad settings,
//! foreign or misused tokens and the wrong role are refused and change nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::*;
use postvault_crypto::sig::{SigAlg, SigningKey};
use postvault_indicium::Money;
use postvault_module::Error;
use postvault_module::command::{Command, Refusal};
use postvault_module::cryptocard::{CardSettings, CardTokens};
use postvault_module::role::Role;
use postvault_module::state::ModuleState;
use postvault_module::wire::{Request, Response};

fn settings() -> CardSettings {
    let provider = SigningKey::generate(SigAlg::EcdsaP256Sha256)
        .unwrap()
        .public_key();
    CardSettings {
        provider_key: (provider.alg().id(), provider.as_bytes().to_vec()),
        ca_certificate: b"a DER certificate goes here".to_vec(),
        min_value: Money::from_tenths(10),
        max_value: Money::from_tenths(250_000),
        dr_ceiling: Money::from_tenths(5_000_000),
        ar_ceiling: Money::from_tenths(u64::from(u32::MAX)),
    }
}

fn init(
    hsm: &mut Hsm<postvault_module::nvm::MemNvm>,
    settings: CardSettings,
    tokens: Option<CardTokens>,
) -> postvault_module::Result<Response> {
    hsm.as_user("so", Request::InitializeCryptoCard { settings, tokens })
}

#[test]
fn clones_load_the_masters_postal_keys_from_tokens() {
    let (mut master, mut clone) = master_and_clone();
    let s = settings();
    let Response::CryptoCard { tokens, public } = init(&mut master, s.clone(), None).unwrap()
    else {
        panic!()
    };
    let Response::CryptoCard {
        public: clone_public,
        ..
    } = init(&mut clone, s.clone(), Some(tokens.clone())).unwrap()
    else {
        panic!()
    };
    assert_eq!(public, clone_public);
    // A module with another MKS cannot open the tokens.
    let mut stranger = new_master();
    logged_on_so(&mut stranger);
    let err = refused(&mut stranger, |h| {
        h.send(Request::InitializeCryptoCard {
            settings: s.clone(),
            tokens: Some(tokens.clone()),
        })
    });
    assert!(matches!(err, Error::Token { .. }), "{err:?}");
    stranger.logoff();
    // A token of another usage (a ceremony test token) is refused in its place.
    let (test_token, _) = master.test_token("not a card key");
    let swapped = CardTokens {
        checkpoint_mac: test_token,
        ..tokens
    };
    logged_on_so(&mut clone);
    let err = refused(&mut clone, |h| {
        h.send(Request::InitializeCryptoCard {
            settings: s,
            tokens: Some(swapped),
        })
    });
    assert!(matches!(err, Error::Token { .. }), "{err:?}");
    clone.logoff();
}

fn logged_on_so(hsm: &mut Hsm<postvault_module::nvm::MemNvm>) {
    assert!(matches!(
        hsm.logon("so").unwrap(),
        Response::CurrentUser(..)
    ));
}

#[test]
fn bad_settings_and_wrong_roles_are_refused() {
    let mut master = new_master();
    let bad = [
        CardSettings {
            min_value: Money::from_tenths(0),
            ..settings()
        },
        CardSettings {
            min_value: Money::from_tenths(500),
            max_value: Money::from_tenths(100),
            ..settings()
        },
        CardSettings {
            max_value: Money::from_tenths(9_000_000),
            ..settings()
        },
        CardSettings {
            ca_certificate: Vec::new(),
            ..settings()
        },
        CardSettings {
            provider_key: (1, vec![4; 65]),
            ..settings()
        },
    ];
    logged_on_so(&mut master);
    for s in bad {
        let err = refused(&mut master, |h| {
            h.send(Request::InitializeCryptoCard {
                settings: s,
                tokens: None,
            })
        });
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    }
    master.logoff();
    assert!(matches!(
        master.logon("kc1").unwrap(),
        Response::CurrentUser(..)
    ));
    let err = refused(&mut master, |h| {
        h.send(Request::InitializeCryptoCard {
            settings: settings(),
            tokens: None,
        })
    });
    master.logoff();
    assert_eq!(
        err,
        Error::Refused {
            command: Command::InitializeCryptoCard,
            state: ModuleState::Operational,
            role: Some(Role::KeyCustodian),
            reason: Refusal::WrongRole
        }
    );
}

#[test]
fn a_loaded_card_changes_settings_but_never_its_keys() {
    let (mut master, mut clone) = master_and_clone();
    let s = settings();
    let Response::CryptoCard { tokens, public } = init(&mut master, s.clone(), None).unwrap()
    else {
        panic!()
    };
    // New keys over a loaded card: refused, nothing changed.
    logged_on_so(&mut master);
    let err = refused(&mut master, |h| {
        h.send(Request::InitializeCryptoCard {
            settings: s.clone(),
            tokens: None,
        })
    });
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    master.logoff();
    // Another module's card keys over a loaded card: refused too.
    init(&mut clone, s.clone(), None).unwrap();
    logged_on_so(&mut clone);
    let err = refused(&mut clone, |h| {
        h.send(Request::InitializeCryptoCard {
            settings: s.clone(),
            tokens: Some(tokens.clone()),
        })
    });
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    clone.logoff();
    // The card's own tokens with new limits: accepted, same public keys.
    let changed = CardSettings {
        max_value: Money::from_tenths(200_000),
        ..s
    };
    let Response::CryptoCard { public: again, .. } =
        init(&mut master, changed, Some(tokens)).unwrap()
    else {
        panic!()
    };
    assert_eq!(again, public);
    // The audit log records the settings loaded (public data only).
    let logged = master
        .entries()
        .iter()
        .rev()
        .map(|e| e.decode_body().unwrap())
        .find(|b| b.command == Some(Command::InitializeCryptoCard))
        .unwrap();
    assert!(logged.signed);
    assert!(
        matches!(&logged.data, postvault_module::audit::AuditData::CryptoCard(s) if s.max_value == Money::from_tenths(200_000)),
        "{:?}",
        logged.data
    );
}
