//! The verifier: from an image (or raw bytes) to a report of named checks.
//!
//! Checks run in a fixed order and each one's outcome is recorded: a failed
//! Decode or Parse skips everything after it (there is nothing to check);
//! later failures do not stop the remaining checks, so the report says
//! everything that is wrong.

use core::fmt;

use crate::Error;
use crate::cert::{Certificate, PsdCertificate, verify_chain};
use crate::date::Date;
#[cfg(feature = "images")]
use crate::decode::decode_png;
use crate::fields::DeviceId;
use crate::indicium::{Indicium, IndiciumData, MAX_POSTAGE};
use crate::money::Money;

/// What to verify.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// A PNG image holding the Data Matrix symbol.
    #[cfg(feature = "images")]
    Png(&'a [u8]),
    /// The indicium's bytes, already decoded (the Decode check is skipped).
    Bytes(&'a [u8]),
}

/// A meter's status as the caller's records have it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MeterStatus {
    /// The meter may print postage.
    Active,
    /// The meter is suspended (e.g. pending inspection).
    Suspended,
    /// The meter was withdrawn from service.
    Withdrawn,
    /// The caller has no record (the check is skipped, not failed).
    Unknown,
}

impl fmt::Display for MeterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Withdrawn => "withdrawn",
            Self::Unknown => "unknown",
        })
    }
}

/// Whether an indicium was seen before, as the caller's records have it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Seen {
    /// First time this indicium is seen (the callback should now remember it).
    FirstUse,
    /// Seen before: a copied indicium.
    Duplicate,
    /// The caller keeps no record (the check is skipped, not failed).
    Unknown,
}

/// Limits for the Value and Date checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Smallest acceptable postage value.
    pub min_postage: Money,
    /// Largest acceptable postage value.
    pub max_postage: Money,
    /// How many days before `today` the date of mailing may be.
    pub max_age_days: u16,
}

impl Default for Policy {
    /// $0.010 to $16777.215 (the field's maximum), mailed within the last 30 days.
    fn default() -> Self {
        Self {
            min_postage: Money(10),
            max_postage: MAX_POSTAGE,
            max_age_days: 30,
        }
    }
}

/// What the verifier needs besides the indicium.
pub struct VerifierInputs<'a> {
    /// The postal CA's certificate (the trust anchor).
    pub ca: &'a Certificate,
    /// The PSD's certificate; without it the Certificate check fails and the
    /// Signature check is skipped.
    pub psd_cert: Option<&'a Certificate>,
    /// The verifier's current date (UTC).
    pub today: Date,
    /// Value and date limits.
    pub policy: Policy,
    /// The meter's status.
    pub status: &'a dyn Fn(&DeviceId) -> MeterStatus,
    /// Duplicate detection on [`Indicium::mail_piece_key`] (device id and AR).
    pub seen: &'a mut dyn FnMut(&[u8; 32]) -> Seen,
}

/// The checks, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CheckName {
    /// A Data Matrix symbol was found in the image and decoded to bytes.
    Decode,
    /// The bytes are one well-formed version-1 indicium.
    Parse,
    /// The PSD certificate chains to the postal CA, is valid at the date of
    /// mailing, and matches the indicium's certificate serial and device id.
    Certificate,
    /// The signature verifies under the PSD certificate's key.
    Signature,
    /// The postage is within the policy's limits and not above the ascending register.
    Value,
    /// The date of mailing is at most one day ahead and not older than the policy allows.
    Date,
    /// The meter is active (caller's records).
    MeterStatus,
    /// The indicium was not used before (caller's records).
    Duplicate,
}

impl CheckName {
    /// Every check, in order.
    pub const ALL: [Self; 8] = [
        Self::Decode,
        Self::Parse,
        Self::Certificate,
        Self::Signature,
        Self::Value,
        Self::Date,
        Self::MeterStatus,
        Self::Duplicate,
    ];

    /// Short lowercase name, as the CLI prints it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decode => "decode",
            Self::Parse => "parse",
            Self::Certificate => "certificate",
            Self::Signature => "signature",
            Self::Value => "value",
            Self::Date => "date",
            Self::MeterStatus => "meter-status",
            Self::Duplicate => "duplicate",
        }
    }
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a check did not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// An earlier check failed and left nothing to check.
    EarlierCheckFailed(CheckName),
    /// The input was bytes, not an image.
    NotAnImage,
    /// No PSD certificate with a usable public key was given.
    NoPublicKey,
    /// The status callback has no record of the meter.
    StatusUnknown,
    /// The duplicate callback keeps no record of indicia.
    NoUsageRecord,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EarlierCheckFailed(c) => write!(f, "the {c} check failed"),
            Self::NotAnImage => f.write_str("bytes were given, not an image"),
            Self::NoPublicKey => f.write_str("no PSD certificate with a usable key was given"),
            Self::StatusUnknown => f.write_str("the meter's status is unknown to this verifier"),
            Self::NoUsageRecord => {
                f.write_str("this verifier keeps no record of indicia already seen")
            }
        }
    }
}

/// A check's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The check passed.
    Pass,
    /// The check failed, and why.
    Fail(Error),
    /// The check did not run, and why.
    Skipped(SkipReason),
}

/// One named check and its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Which check.
    pub name: CheckName,
    /// What happened.
    pub outcome: Outcome,
}

/// The verifier's report: every check, and what was read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Every check in [`CheckName::ALL`] order.
    pub checks: Vec<Check>,
    /// The bytes read from the image (or given), if decoding succeeded.
    pub decoded_bytes: Option<Vec<u8>>,
    /// The parsed fields, if parsing succeeded.
    pub fields: Option<IndiciumData>,
    /// The signed part (every byte before the signature), hex.
    pub signed_bytes_hex: Option<String>,
    /// The signature (P-256: raw `r || s`), hex.
    pub signature_hex: Option<String>,
    /// SHA-256 of the indicium's bytes (the duplicate-detection key).
    pub digest: Option<[u8; 32]>,
}

impl Report {
    /// True when parsing succeeded and no check failed (skipped checks do not
    /// count against validity).
    #[must_use]
    pub fn valid(&self) -> bool {
        self.fields.is_some()
            && !self
                .checks
                .iter()
                .any(|c| matches!(c.outcome, Outcome::Fail(_)))
    }

    /// The outcome of check `name`.
    #[must_use]
    pub fn outcome(&self, name: CheckName) -> Option<&Outcome> {
        self.checks
            .iter()
            .find(|c| c.name == name)
            .map(|c| &c.outcome)
    }

    /// The names of the checks that failed, in order.
    #[must_use]
    pub fn failed(&self) -> Vec<CheckName> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Fail(_)))
            .map(|c| c.name)
            .collect()
    }

    /// The error of the first failed check.
    #[must_use]
    pub fn first_failure(&self) -> Option<&Error> {
        self.checks.iter().find_map(|c| match &c.outcome {
            Outcome::Fail(e) => Some(e),
            _ => None,
        })
    }
}

fn outcome(r: Result<(), Error>) -> Outcome {
    r.map_or_else(Outcome::Fail, |()| Outcome::Pass)
}

/// Runs every check on `input`.
#[must_use]
pub fn verify(input: Input<'_>, inputs: &mut VerifierInputs<'_>) -> Report {
    let mut report = Report {
        checks: Vec::with_capacity(CheckName::ALL.len()),
        decoded_bytes: None,
        fields: None,
        signed_bytes_hex: None,
        signature_hex: None,
        digest: None,
    };
    let skip_rest = |report: &mut Report, failed: CheckName| {
        for name in CheckName::ALL {
            if !report.checks.iter().any(|c| c.name == name) {
                report.checks.push(Check {
                    name,
                    outcome: Outcome::Skipped(SkipReason::EarlierCheckFailed(failed)),
                });
            }
        }
    };
    let push = |report: &mut Report, name, outcome| report.checks.push(Check { name, outcome });

    // Decode.
    let bytes = match input {
        Input::Bytes(b) => {
            push(
                &mut report,
                CheckName::Decode,
                Outcome::Skipped(SkipReason::NotAnImage),
            );
            b.to_vec()
        }
        #[cfg(feature = "images")]
        Input::Png(png) => match decode_png(png) {
            Ok(b) => {
                push(&mut report, CheckName::Decode, Outcome::Pass);
                b
            }
            Err(e) => {
                push(&mut report, CheckName::Decode, Outcome::Fail(e));
                skip_rest(&mut report, CheckName::Decode);
                return report;
            }
        },
    };
    report.decoded_bytes = Some(bytes.clone());

    // Parse.
    let indicium = match Indicium::parse(&bytes) {
        Ok(i) => {
            push(&mut report, CheckName::Parse, Outcome::Pass);
            i
        }
        Err(e) => {
            push(&mut report, CheckName::Parse, Outcome::Fail(e));
            skip_rest(&mut report, CheckName::Parse);
            return report;
        }
    };
    let data = indicium.data().clone();
    report.signed_bytes_hex = Some(hex::encode(indicium.signed_bytes()));
    report.signature_hex = Some(hex::encode(indicium.signature().as_bytes()));
    report.digest = Some(indicium.digest());

    // Certificate.
    let cert_check = match inputs.psd_cert {
        None => Err(Error::NoPsdCertificate),
        Some(cert) => check_certificate(inputs.ca, cert, &data),
    };
    push(&mut report, CheckName::Certificate, outcome(cert_check));

    // Signature.
    let key = inputs.psd_cert.and_then(Certificate::public_key);
    let sig = match key {
        None => Outcome::Skipped(SkipReason::NoPublicKey),
        Some(k) => outcome(indicium.verify_signature(k)),
    };
    push(&mut report, CheckName::Signature, sig);

    // Value.
    push(
        &mut report,
        CheckName::Value,
        outcome(check_value(&data, &inputs.policy)),
    );

    // Date.
    push(
        &mut report,
        CheckName::Date,
        outcome(check_date(
            data.date,
            inputs.today,
            inputs.policy.max_age_days,
        )),
    );

    // Meter status.
    let status = match (inputs.status)(&data.device_id) {
        MeterStatus::Active => Outcome::Pass,
        MeterStatus::Unknown => Outcome::Skipped(SkipReason::StatusUnknown),
        status => Outcome::Fail(Error::MeterNotActive {
            device: data.device_id,
            status,
        }),
    };
    push(&mut report, CheckName::MeterStatus, status);

    // Duplicate.
    let dup = match (inputs.seen)(&indicium.mail_piece_key()) {
        Seen::FirstUse => Outcome::Pass,
        Seen::Duplicate => Outcome::Fail(Error::DuplicateIndicium),
        Seen::Unknown => Outcome::Skipped(SkipReason::NoUsageRecord),
    };
    push(&mut report, CheckName::Duplicate, dup);

    report.fields = Some(data);
    report
}

fn check_certificate(
    ca: &Certificate,
    cert: &Certificate,
    data: &IndiciumData,
) -> Result<(), Error> {
    let psd = PsdCertificate::from_certificate(cert.clone())?;
    verify_chain(ca, cert, data.date)?;
    if psd.serial() != data.certificate_serial {
        return Err(Error::CertificateSerialMismatch {
            indicium: data.certificate_serial,
            certificate: cert.serial_text(),
        });
    }
    if psd.device_id() != data.device_id {
        return Err(Error::DeviceIdMismatch {
            indicium: data.device_id,
            certificate: psd.device_id().to_string(),
        });
    }
    Ok(())
}

fn check_value(data: &IndiciumData, policy: &Policy) -> Result<(), Error> {
    let value = data.postage;
    if value < policy.min_postage {
        return Err(Error::ValueBelowMinimum {
            value,
            min: policy.min_postage,
        });
    }
    if value > policy.max_postage {
        return Err(Error::ValueAboveMaximum {
            value,
            max: policy.max_postage,
        });
    }
    if value > data.ascending_register {
        return Err(Error::ValueExceedsAscendingRegister {
            value,
            ascending: data.ascending_register,
        });
    }
    Ok(())
}

fn check_date(date: Date, today: Date, max_age_days: u16) -> Result<(), Error> {
    if today.checked_add_days(1).is_some_and(|limit| date > limit) {
        return Err(Error::DateInFuture { date, today });
    }
    if today
        .checked_sub_days(max_age_days)
        .is_some_and(|oldest| date < oldest)
    {
        return Err(Error::DateTooOld {
            date,
            today,
            max_age_days,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> Date {
        s.parse().unwrap_or(Date::EPOCH)
    }

    #[test]
    fn date_window() {
        let today = day("2026-05-14");
        assert!(check_date(day("2026-05-14"), today, 30).is_ok());
        assert!(check_date(day("2026-05-15"), today, 30).is_ok());
        assert!(matches!(
            check_date(day("2026-05-16"), today, 30),
            Err(Error::DateInFuture { .. })
        ));
        assert!(check_date(day("2026-04-14"), today, 30).is_ok());
        assert!(matches!(
            check_date(day("2026-04-13"), today, 30),
            Err(Error::DateTooOld { .. })
        ));
        assert!(check_date(Date::EPOCH, Date::EPOCH, 30).is_ok());
    }
}
