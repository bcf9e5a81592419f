//! Every parser the module exposes answers arbitrary bytes with a typed error or a
//! value, never a panic; and garbage sent to a live module changes nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::*;
use postvault_module::audit::{parse_log, verify_log};
use postvault_module::codec;
use postvault_module::mks::SharePackage;
use postvault_module::session::SessionMessage;
use postvault_module::token::KeyToken;
use postvault_module::wire::{Outer, Request};
use proptest::prelude::*;

/// A real key token and a real audit log, made once.
fn samples() -> &'static [Vec<u8>; 2] {
    static SAMPLES: std::sync::OnceLock<[Vec<u8>; 2]> = std::sync::OnceLock::new();
    SAMPLES.get_or_init(|| {
        let (mut master, _clone) = master_and_clone();
        let (token, _) = master.test_token("fuzz");
        [token, master.log()]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = SharePackage::decode(&bytes);
        let _ = KeyToken::decode(&bytes);
        let _ = parse_log(&bytes);
        let _ = verify_log(&bytes, None);
        let _ = codec::decode::<Request>(&bytes, "request");
        let _ = codec::decode::<SessionMessage>(&bytes, "message");
    }

    #[test]
    fn mutated_real_inputs_never_panic(pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        // Start from well-formed encodings so mutations reach deep into the decoders.
        for original in samples() {
            let mut m = original.clone();
            let i = pos.index(m.len());
            m[i] = byte;
            let _ = KeyToken::decode(&m);
            let _ = verify_log(&m, None);
            let _ = KeyToken::decode(&original[..cut.index(original.len())]);
            let _ = verify_log(&original[..cut.index(original.len())], None);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn garbage_session_messages_change_nothing(body in proptest::collection::vec(any::<u8>(), 0..300), counter in any::<u64>(), sealed in any::<bool>(), tag in any::<[u8; 32]>()) {
        let mut hsm = new_master();
        hsm.ensure_session();
        let session = hsm.status();
        let before = hsm.snapshot();
        let msg = SessionMessage { session: [0; 16], counter, sealed, body: body.clone(), tag };
        prop_assert!(hsm.host.call(Outer::Session(msg)).is_err());
        prop_assert_eq!(hsm.snapshot(), before);
        prop_assert!(session.session_open);
        // Garbage given as a share or a token inside a proper session is refused too.
        for req in [Request::ImportShare(body.clone()), Request::VerifyToken(body.clone()), Request::TranslateToken(body)] {
            prop_assert!(hsm.as_user("so", req).is_err());
        }
        verify_log(&hsm.log(), None).unwrap();
    }
}
