//! The KMS's combined randomness and the health tests on each source.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use postvault_crypto::rand::{HealthTest, REPETITION_CUTOFF, combined_fill, combined_secret32};

#[test]
fn combined_draws_differ_and_are_not_constant() {
    let a = combined_secret32().unwrap();
    let b = combined_secret32().unwrap();
    assert_ne!(a.expose(), b.expose());
    let mut big = vec![0u8; 4096];
    combined_fill(&mut big).unwrap();
    // A uniform 4 KiB draw holds (nearly) every byte value.
    let mut seen = [false; 256];
    for &x in &big {
        seen[usize::from(x)] = true;
    }
    assert!(seen.iter().filter(|s| **s).count() > 240);
}

#[test]
fn a_repeated_draw_fails_the_continuous_test() {
    let t = HealthTest::new();
    let draw: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    assert!(t.check(&draw).is_ok());
    assert!(t.check(&draw).is_err(), "the same 16 leading bytes twice");
    let mut other = draw.clone();
    other[0] ^= 1;
    assert!(t.check(&other).is_ok());
}

#[test]
fn a_run_of_equal_bytes_fails_the_repetition_count_test() {
    let t = HealthTest::new();
    let mut draw: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(53).wrapping_add(7))
        .collect();
    for x in draw.iter_mut().skip(10).take(REPETITION_CUTOFF - 1) {
        *x = 0xAA;
    }
    assert!(t.check(&draw).is_ok(), "one short of the cutoff passes");
    draw[10 + REPETITION_CUTOFF - 1] = 0xAA;
    assert!(t.check(&draw).is_err(), "a run at the cutoff fails");
}

#[test]
fn a_value_filling_more_than_half_a_long_draw_fails_the_proportion_test() {
    // 128 bytes, every other one 0x55 and the rest distinct values above
    // 0x80: no runs, and exactly half the draw one value.
    let half: Vec<u8> = (0u8..128)
        .map(|i| if i % 2 == 0 { 0x55 } else { 0x80 | i })
        .collect();
    assert!(
        HealthTest::new().check(&half).is_ok(),
        "half is not more than half"
    );
    let mut more = half.clone();
    more[1] = 0x55; // 65 of 128, and a run of only three
    assert!(HealthTest::new().check(&more).is_err(), "more than half");
    // Shorter draws are judged by the other tests only.
    assert!(HealthTest::new().check(&more[..60]).is_ok());
}
