//! Secret containers: redacted Debug, constant-time equality, lengths.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use postvault_crypto::{Error, Secret32, SecretBytes, rand};

#[test]
fn secret32() {
    let s = Secret32::from_bytes([7; 32]);
    assert_eq!(format!("{s:?}"), "[redacted]");
    assert_eq!(s, Secret32::from_slice(&[7; 32]).unwrap());
    assert_ne!(s, Secret32::from_bytes([8; 32]));
    assert_eq!(s.expose(), &[7; 32]);
    assert!(matches!(
        Secret32::from_slice(&[7; 31]),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        Secret32::from_slice(&[7; 33]),
        Err(Error::Malformed { .. })
    ));
    assert_ne!(Secret32::generate().unwrap(), Secret32::generate().unwrap());
    assert_ne!(rand::secret32().unwrap(), rand::secret32().unwrap());
}

#[test]
fn secret_bytes() {
    let s = SecretBytes::new(b"hunter2".to_vec());
    assert_eq!(format!("{s:?}"), "[redacted]");
    assert_eq!(s.len(), 7);
    assert!(!s.is_empty());
    assert_eq!(s.expose(), b"hunter2");
    assert_eq!(s, SecretBytes::from(b"hunter2".to_vec()));
    assert_ne!(s, SecretBytes::from(b"hunter3".to_vec()));
    assert_ne!(s, SecretBytes::from(b"hunter".to_vec()));
    assert!(SecretBytes::new(Vec::new()).is_empty());
}

#[test]
fn random_bytes() {
    let mut buf = [0u8; 64];
    rand::fill(&mut buf).unwrap();
    assert_ne!(buf, [0; 64]);
    assert_ne!(rand::bytes::<16>().unwrap(), rand::bytes::<16>().unwrap());
    assert_eq!(rand::bytes::<0>().unwrap(), [0u8; 0]);
}
