//! The power-on self-test passes. (Its speed is a benchmark matter, not a test's.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[test]
fn run_all_passes() {
    postvault_crypto::selftest::run_all().unwrap();
}
