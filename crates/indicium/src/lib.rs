//! The postvault indicium: the signed record a postage meter prints on a mail
//! piece as a Data Matrix symbol, and everything needed to check one.
//!
//! - [`indicium`]: the fixed binary layout (version 1, 115 bytes), signing and parsing.
//! - [`cert`]: X.509 certificates for the postal CA and each PSD.
//! - [`render`] and [`decode`]: Data Matrix to PNG and SVG, and back from PNG.
//! - [`pdf`]: the same layout as a one-page PDF at true size.
//! - [`verify`](mod@verify): the verifier and its structured [`Report`].
//!
//! The layout and every decision behind it are in `docs/indicium.md`.
#![forbid(unsafe_code)]

pub mod cert;
pub mod date;
#[cfg(feature = "images")]
pub mod decode;
pub mod error;
pub mod fields;
#[cfg(feature = "images")]
mod font;
pub mod indicium;
pub mod money;
#[cfg(feature = "images")]
pub mod pdf;
mod reader;
#[cfg(feature = "images")]
pub mod render;
pub mod text;
pub mod token;
pub mod verify;

pub use cert::{Certificate, PostalCa, PsdCertificate, Validity};
pub use date::Date;
pub use error::{Error, ErrorKind, Result};
pub use fields::{DeviceId, ZipCode};
pub use indicium::{Indicium, IndiciumData, IndiciumKind};
pub use money::Money;
pub use verify::{
    Check, CheckName, Input, MeterStatus, Outcome, Policy, Report, Seen, SkipReason,
    VerifierInputs, verify,
};
