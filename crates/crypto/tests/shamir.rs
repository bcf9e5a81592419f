//! Shamir secret sharing over GF(2^8).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use postvault_crypto::Error;
use postvault_crypto::shamir::{Share, combine, split};
use proptest::prelude::*;
use proptest::sample::{Index, subsequence};

/// A secret, a threshold t <= n, a share count n, and a choice of t of the n shares (in random order).
fn case() -> impl Strategy<Value = (Vec<u8>, u8, u8, Vec<usize>)> {
    (proptest::collection::vec(any::<u8>(), 1..48), 2u8..=12)
        .prop_flat_map(|(secret, n)| (Just(secret), 2..=n, Just(n)))
        .prop_flat_map(|(secret, t, n)| {
            (
                Just(secret),
                Just(t),
                Just(n),
                subsequence((0..usize::from(n)).collect::<Vec<_>>(), usize::from(t)),
            )
        })
        .prop_flat_map(|(secret, t, n, picked)| {
            (Just(secret), Just(t), Just(n), Just(picked).prop_shuffle())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_t_of_n_shares_recover_the_secret((secret, t, n, picked) in case()) {
        let shares = split(&secret, t, n).unwrap();
        prop_assert_eq!(shares.len(), usize::from(n));
        for (i, share) in shares.iter().enumerate() {
            prop_assert_eq!(usize::from(share.id), i + 1);
            prop_assert_eq!(share.value.len(), secret.len());
        }
        let chosen: Vec<Share> = picked.iter().map(|&i| shares[i].clone()).collect();
        let recovered = combine(&chosen, t).unwrap();
        prop_assert_eq!(recovered.expose(), secret.as_slice());
    }

    #[test]
    fn fewer_than_threshold_shares_fail((secret, t, n, picked) in case()) {
        let shares = split(&secret, t, n).unwrap();
        let chosen: Vec<Share> = picked.iter().skip(1).map(|&i| shares[i].clone()).collect();
        let shares_error = matches!(combine(&chosen, t), Err(Error::Shares { .. }));
        prop_assert!(shares_error);
    }

    #[test]
    fn duplicate_ids_fail(secret in proptest::collection::vec(any::<u8>(), 1..16), dup in any::<Index>()) {
        let shares = split(&secret, 3, 5).unwrap();
        let mut chosen = shares[..3].to_vec();
        let copy = chosen[dup.index(3)].clone();
        chosen.push(copy);
        chosen.swap(1, 3);
        let shares_error = matches!(combine(&chosen, 3), Err(Error::Shares { .. }));
        prop_assert!(shares_error);
    }
}

#[test]
fn extra_shares_beyond_threshold_are_fine() {
    let shares = split(b"master key", 3, 6).unwrap();
    assert_eq!(combine(&shares, 3).unwrap().expose(), b"master key");
    assert_eq!(combine(&shares[3..], 3).unwrap().expose(), b"master key");
}

#[test]
fn maximum_share_count() {
    let shares = split(&[0xa5; 32], 255, 255).unwrap();
    assert_eq!(shares.last().unwrap().id, 255);
    assert_eq!(combine(&shares, 255).unwrap().expose(), &[0xa5; 32]);
}

#[test]
fn bad_split_parameters() {
    for (secret, t, n) in [(&b"s"[..], 1, 3), (b"s", 0, 3), (b"s", 4, 3), (b"", 2, 3)] {
        assert!(
            matches!(split(secret, t, n), Err(Error::Shares { .. })),
            "t={t} n={n}"
        );
    }
}

#[test]
fn bad_shares_are_rejected() {
    let shares = split(b"secret", 2, 3).unwrap();
    let mut zero_id = shares.clone();
    zero_id[0].id = 0;
    let mut short = shares.clone();
    short[1].value = short[1].value.expose()[..5].to_vec().into();
    let mut empty = shares.clone();
    empty[0].value = Vec::new().into();
    empty[1].value = Vec::new().into();
    for bad in [zero_id, short, empty] {
        assert!(matches!(combine(&bad, 2), Err(Error::Shares { .. })));
    }
    assert!(matches!(combine(&shares, 1), Err(Error::Shares { .. })));
    assert!(matches!(combine(&[], 2), Err(Error::Shares { .. })));
}

#[test]
fn share_values_are_redacted() {
    let shares = split(b"secret", 2, 2).unwrap();
    assert_eq!(
        format!("{:?}", shares[0]),
        "Share { id: 1, value: [redacted] }"
    );
}
