//! The crate's one error type.

use crate::date::Date;
use crate::fields::DeviceId;
use crate::money::Money;
use crate::verify::MeterStatus;

/// What kind of failure an [`Error`] is, for mapping to exit codes and statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input (an image, indicium bytes, a certificate) is unreadable or malformed.
    BadInput,
    /// The input was readable but a check rejected it (signature, certificate, value, date…).
    Rejected,
    /// The caller passed arguments that cannot work (serial 0, reversed validity…).
    Misuse,
    /// Something that should not fail did (key generation, encoding).
    Internal,
}

/// Why a certificate chain was refused (a summary of the path builder's reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainFailure {
    /// The certificate was not issued by the given postal CA.
    UnknownIssuer,
    /// The mailing date is after the certificate's (or the CA's) validity.
    Expired,
    /// The mailing date is before the certificate's (or the CA's) validity.
    NotYetValid,
    /// The issuer's signature on the certificate does not verify.
    BadSignature,
    /// The certificate lacks the indicium-signing extended key usage.
    MissingIndiciumUsage,
    /// The certificate is a CA certificate, not a PSD certificate.
    NotAnEndEntity,
    /// The certificate uses an algorithm the verifier does not accept.
    UnsupportedAlgorithm,
    /// Any other structural problem found while building the path.
    Invalid,
}

impl core::fmt::Display for ChainFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::UnknownIssuer => "not issued by the given postal CA",
            Self::Expired => "expired at the date of mailing",
            Self::NotYetValid => "not yet valid at the date of mailing",
            Self::BadSignature => "the CA's signature on it does not verify",
            Self::MissingIndiciumUsage => "it lacks the indicium-signing extended key usage",
            Self::NotAnEndEntity => "it is a CA certificate, not a PSD certificate",
            Self::UnsupportedAlgorithm => "it uses an unsupported algorithm",
            Self::Invalid => "it is structurally invalid",
        })
    }
}

/// Why an image could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageFailure {
    /// The bytes are not a PNG file.
    NotPng,
    /// The PNG is corrupt or uses a feature the decoder does not support.
    Corrupt,
    /// The image is larger than the decoder's limits.
    TooLarge,
}

impl core::fmt::Display for ImageFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NotPng => "not a PNG file",
            Self::Corrupt => "a corrupt or unsupported PNG file",
            Self::TooLarge => "an image larger than 12000 x 12000 pixels",
        })
    }
}

/// Everything that can go wrong in this crate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- indicium bytes (peer input) ---
    /// The input ended before the layout did.
    #[error("indicium truncated: {needed} bytes needed, {got} given")]
    Truncated {
        /// Bytes the layout needs.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// Bytes follow the signature.
    #[error("{count} unexpected bytes after the indicium's signature")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// The version byte names a layout this verifier does not know.
    #[error("unsupported indicium version {version} (this verifier reads version 1)")]
    UnsupportedVersion {
        /// The version byte.
        version: u8,
    },
    /// The algorithm byte names no known signature algorithm.
    #[error("unknown signature algorithm id {id}")]
    UnknownAlgorithm {
        /// The algorithm byte.
        id: u8,
    },
    /// A numeric field is out of its allowed range.
    #[error("{field} is {value}, above its maximum {max}")]
    FieldOutOfRange {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
        /// The largest allowed value.
        max: u64,
    },
    /// A device id's vendor code is not two ASCII capital letters.
    #[error("device vendor code {bytes:02x?} is not two letters A-Z")]
    InvalidVendorCode {
        /// The two bytes.
        bytes: [u8; 2],
    },
    /// Text that should be a device id ("PV00001234") is not one.
    #[error("not a device id (two letters A-Z followed by up to 10 digits): {text:?}")]
    InvalidDeviceIdText {
        /// The text.
        text: String,
    },
    /// A calendar date is invalid or outside 2000-01-01 ..= 2179-06-06.
    #[error(
        "invalid or unsupported date {year:04}-{month:02}-{day:02} (dates run from 2000-01-01 to 2179-06-06)"
    )]
    InvalidDate {
        /// Year.
        year: i64,
        /// Month.
        month: u8,
        /// Day.
        day: u8,
    },
    /// Text that should be a date (YYYY-MM-DD) is not one.
    #[error("not a date in YYYY-MM-DD form: {text:?}")]
    InvalidDateText {
        /// The text.
        text: String,
    },
    /// Money arithmetic overflowed.
    #[error("money arithmetic overflowed")]
    MoneyOverflow,

    // --- images ---
    /// The image could not be read.
    #[error("cannot read the image: it is {reason}")]
    ImageUnreadable {
        /// Why.
        reason: ImageFailure,
    },
    /// No Data Matrix symbol was found in the image (or none could be decoded).
    #[error("no readable Data Matrix symbol found in the image")]
    NoBarcodeFound,
    /// The symbol decoded to characters that are not bytes (above U+00FF).
    #[error("the Data Matrix symbol holds text, not indicium bytes (character U+{code:04X})")]
    BarcodeNotBinary {
        /// The first offending code point.
        code: u32,
    },
    /// Rendering failed (the symbol encoder or PNG writer refused).
    #[error("rendering failed: {what}")]
    Render {
        /// Which step.
        what: &'static str,
    },

    // --- certificates ---
    /// A PEM document is malformed or of the wrong type.
    #[error("malformed PEM: {what}")]
    PemMalformed {
        /// What was expected.
        what: &'static str,
    },
    /// A certificate's DER is malformed or lacks a field the profile needs.
    #[error("malformed certificate: {what}")]
    CertificateMalformed {
        /// What is wrong.
        what: &'static str,
    },
    /// The certificate does not chain to the postal CA at the mailing date.
    #[error("PSD certificate rejected: {reason}")]
    CertificateRejected {
        /// Why.
        reason: ChainFailure,
    },
    /// The indicium names a different certificate serial than the certificate carries.
    #[error(
        "the indicium names certificate serial {indicium}, the certificate's serial is {certificate}"
    )]
    CertificateSerialMismatch {
        /// Serial in the indicium.
        indicium: u32,
        /// Serial of the certificate (hex when it is not a u32).
        certificate: String,
    },
    /// The indicium's device id is not the certificate's.
    #[error("the indicium's device id is {indicium}, the certificate is for {certificate}")]
    DeviceIdMismatch {
        /// Device id in the indicium.
        indicium: DeviceId,
        /// The certificate's subject serialNumber.
        certificate: String,
    },
    /// No PSD certificate was supplied.
    #[error("no PSD certificate given: pass the meter's certificate (--cert PSD.pem)")]
    NoPsdCertificate,
    /// Certificate issuance failed inside the X.509 encoder.
    #[error("certificate encoding failed: {what}")]
    CertificateEncoding {
        /// Which step.
        what: &'static str,
    },

    // --- signature and semantic checks ---
    /// The signature does not verify. Deliberately opaque.
    #[error("the signature does not verify")]
    SignatureInvalid,
    /// The indicium's algorithm is not the key's.
    #[error("the indicium says {indicium}, the key is {key}")]
    AlgorithmMismatch {
        /// Algorithm named in the indicium.
        indicium: &'static str,
        /// Algorithm of the key.
        key: &'static str,
    },
    /// The postage value is below the verifier's minimum.
    #[error("postage {value} is below the minimum {min}")]
    ValueBelowMinimum {
        /// The value.
        value: Money,
        /// The minimum.
        min: Money,
    },
    /// The postage value is above the verifier's maximum.
    #[error("postage {value} is above the maximum {max}")]
    ValueAboveMaximum {
        /// The value.
        value: Money,
        /// The maximum.
        max: Money,
    },
    /// The ascending register is smaller than this indicium's own postage.
    #[error("postage {value} exceeds the ascending register {ascending}")]
    ValueExceedsAscendingRegister {
        /// The value.
        value: Money,
        /// The ascending register.
        ascending: Money,
    },
    /// The date of mailing is too far in the future.
    #[error("date of mailing {date} is after {today} by more than one day")]
    DateInFuture {
        /// Date of mailing.
        date: Date,
        /// The verifier's today.
        today: Date,
    },
    /// The date of mailing is too old.
    #[error("date of mailing {date} is more than {max_age_days} days before {today}")]
    DateTooOld {
        /// Date of mailing.
        date: Date,
        /// The verifier's today.
        today: Date,
        /// The configured limit.
        max_age_days: u16,
    },
    /// The meter is not active.
    #[error("meter {device} is {status}")]
    MeterNotActive {
        /// The meter.
        device: DeviceId,
        /// Its status.
        status: MeterStatus,
    },
    /// This exact indicium was seen before.
    #[error("this indicium was already used (duplicate of an earlier mail piece)")]
    DuplicateIndicium,

    // --- caller misuse and internal ---
    /// An argument cannot work.
    #[error("invalid argument: {what}")]
    InvalidArgument {
        /// What is wrong.
        what: &'static str,
    },
    /// A cryptographic operation failed (key generation, signing, a malformed key).
    #[error("cryptographic failure: {0}")]
    Crypto(#[from] postvault_crypto::Error),
}

impl Error {
    /// The class of this error.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Truncated { .. }
            | Self::TrailingBytes { .. }
            | Self::UnsupportedVersion { .. }
            | Self::UnknownAlgorithm { .. }
            | Self::FieldOutOfRange { .. }
            | Self::InvalidVendorCode { .. }
            | Self::InvalidDeviceIdText { .. }
            | Self::InvalidDate { .. }
            | Self::InvalidDateText { .. }
            | Self::ImageUnreadable { .. }
            | Self::NoBarcodeFound
            | Self::BarcodeNotBinary { .. }
            | Self::PemMalformed { .. }
            | Self::CertificateMalformed { .. } => ErrorKind::BadInput,
            Self::CertificateRejected { .. }
            | Self::CertificateSerialMismatch { .. }
            | Self::DeviceIdMismatch { .. }
            | Self::NoPsdCertificate
            | Self::SignatureInvalid
            | Self::AlgorithmMismatch { .. }
            | Self::ValueBelowMinimum { .. }
            | Self::ValueAboveMaximum { .. }
            | Self::ValueExceedsAscendingRegister { .. }
            | Self::DateInFuture { .. }
            | Self::DateTooOld { .. }
            | Self::MeterNotActive { .. }
            | Self::DuplicateIndicium => ErrorKind::Rejected,
            Self::InvalidArgument { .. } | Self::MoneyOverflow => ErrorKind::Misuse,
            Self::Render { .. } | Self::CertificateEncoding { .. } => ErrorKind::Internal,
            Self::Crypto(e) => match e {
                postvault_crypto::Error::VerificationFailed => ErrorKind::Rejected,
                postvault_crypto::Error::Malformed { .. } => ErrorKind::BadInput,
                _ => ErrorKind::Internal,
            },
        }
    }
}

/// The crate's result type.
pub type Result<T> = core::result::Result<T, Error>;
