//! `postvault verify`: read an indicium from a PNG image and check it; and the
//! hidden `postvault indicium sample` that makes inputs for it.

use std::path::{Path, PathBuf};

use postvault_crypto::sig::{SigAlg, SigningKey};
use postvault_indicium::indicium::{IndiciumData, LEN};
use postvault_indicium::render::{human_readable, render_png_raw, render_svg_raw};
use postvault_indicium::{
    Certificate, CheckName, Date, DeviceId, Indicium, Input, MeterStatus, Money, Outcome, Policy,
    PostalCa, Report, Seen, SkipReason, Validity, VerifierInputs, ZipCode,
};

use crate::error::CliError;

/// What `verify` needs.
pub struct VerifyOptions<'a> {
    /// The PNG image.
    pub image: &'a Path,
    /// The postal CA certificate (PEM).
    pub ca: &'a Path,
    /// The PSD certificate (PEM).
    pub cert: Option<&'a Path>,
    /// Print JSON instead of lines.
    pub json: bool,
    /// Verify as of this date instead of the system's UTC date.
    pub today: Option<&'a str>,
    /// Oldest acceptable date of mailing, in days before today.
    pub max_age_days: u16,
    /// Check the tokens with the KMS's brass processes: a stopped vault's
    /// data directory or a server URL.
    pub kms: Option<&'a str>,
    /// Check the token with a tin box's temporal token keys.
    pub token_keys: Option<&'a Path>,
}

/// Largest input file read (an indicium image at 600 dpi is a few kilobytes).
const MAX_INPUT_BYTES: u64 = 64 * 1024 * 1024;

/// An input file that cannot be read is "cannot read the input" (exit 2), not an I/O fault.
fn read_input(path: &Path, what: &str) -> Result<Vec<u8>, CliError> {
    let fail = |e: std::io::Error| {
        CliError::Input(format!("cannot read the {what} {}: {e}", path.display()))
    };
    let len = std::fs::metadata(path).map_err(fail)?.len();
    if len > MAX_INPUT_BYTES {
        return Err(CliError::Input(format!(
            "{}: the {what} is {len} bytes; inputs are limited to 64 MiB",
            path.display()
        )));
    }
    std::fs::read(path).map_err(fail)
}

fn read_certificate(path: &Path, what: &str) -> Result<Certificate, CliError> {
    let bytes = read_input(path, what)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        CliError::Input(format!(
            "{}: the {what} must be a PEM file (-----BEGIN CERTIFICATE-----)",
            path.display()
        ))
    })?;
    Certificate::from_pem(&text)
        .map_err(|e| CliError::Input(format!("{}: the {what} is unusable: {e}", path.display())))
}

/// Today's UTC date from the system clock.
fn system_today() -> Result<Date, CliError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .ok_or_else(|| CliError::Check("the system clock is before 1970".into()))?;
    Ok(Date::from_unix_seconds(secs)?)
}

fn parse_date(text: Option<&str>) -> Result<Date, CliError> {
    match text {
        Some(t) => Ok(t.parse::<Date>()?),
        None => system_today(),
    }
}

fn skip_note(name: CheckName, reason: SkipReason) -> String {
    match (name, reason) {
        (CheckName::MeterStatus, SkipReason::StatusUnknown) => {
            "status unknown: this verifier has no meter-status database yet".to_owned()
        }
        (CheckName::Duplicate, SkipReason::NoUsageRecord) => {
            "not checked: this verifier has no database of indicia already seen yet".to_owned()
        }
        _ => reason.to_string(),
    }
}

fn outcome_text(name: CheckName, outcome: &Outcome) -> (&'static str, Option<String>) {
    match outcome {
        Outcome::Pass => ("pass", None),
        Outcome::Fail(e) => ("fail", Some(e.to_string())),
        Outcome::Skipped(r) => ("skipped", Some(skip_note(name, *r))),
    }
}

fn money(m: Money) -> serde_json::Value {
    serde_json::json!({"tenths_of_cent": m.tenths(), "dollars": m.to_string()})
}

fn fields_json(d: &IndiciumData) -> serde_json::Value {
    serde_json::json!({
        "version": postvault_indicium::indicium::VERSION,
        "algorithm_id": d.alg.id(),
        "algorithm": d.alg.name(),
        "certificate_serial": d.certificate_serial,
        "device_id": d.device_id.to_string(),
        "ascending_register": money(d.ascending_register),
        "postage": money(d.postage),
        "date_of_mailing": d.date.to_string(),
        "origin_zip": d.origin_zip.to_string(),
        "software_id": d.software_id,
        "descending_register": money(d.descending_register),
        "rate_category": d.rate_category,
        "kind": d.kind().name(),
        "mail_class": d.mail_class(),
        "mail_piece_id": d.mail_piece_id,
        "destination_zip": d.destination_zip.map(|z| z.to_string()),
        "vendor_token_hex": hex::encode(d.vendor_token),
        "postal_token_hex": hex::encode(d.postal_token),
    })
}

fn report_json(report: &Report, psd: Option<&Certificate>) -> serde_json::Value {
    let checks: Vec<_> = report
        .checks
        .iter()
        .map(|c| {
            let (outcome, reason) = outcome_text(c.name, &c.outcome);
            serde_json::json!({"name": c.name.as_str(), "outcome": outcome, "reason": reason})
        })
        .collect();
    serde_json::json!({
        "valid": report.valid(),
        "checks": checks,
        "fields": report.fields.as_ref().map(fields_json),
        "signed_bytes_hex": report.signed_bytes_hex,
        "signature_hex": report.signature_hex,
        "signature_format": "P-256: raw r || s, 32 bytes each, over SHA-256 of the signed bytes; Ed25519: R || S",
        "public_key_hex": psd.and_then(Certificate::public_key).map(|k| hex::encode(k.as_bytes())),
        "public_key_format": "P-256: uncompressed SEC1 point (04 || x || y); Ed25519: 32 bytes",
        "sha256_hex": report.digest.map(hex::encode),
        "decoded_bytes_hex": report.decoded_bytes.as_ref().map(hex::encode),
    })
}

/// Runs `postvault verify`: prints each check (or JSON), and returns an error
/// carrying the exit code when the indicium is unreadable (2) or invalid (1).
///
/// # Errors
/// [`CliError::Input`] for unreadable files; [`CliError::Indicium`] when the
/// image holds no readable symbol; [`CliError::Check`] when a check failed.
pub fn verify(opts: &VerifyOptions<'_>) -> Result<(), CliError> {
    let image = read_input(opts.image, "image")?;
    let ca = read_certificate(opts.ca, "CA certificate (--ca)")?;
    let psd = opts
        .cert
        .map(|p| read_certificate(p, "PSD certificate (--cert)"))
        .transpose()?;
    let today = parse_date(opts.today)?;
    let policy = Policy {
        max_age_days: opts.max_age_days,
        ..Policy::default()
    };
    let report = check_png(&image, &ca, psd.as_ref(), today, policy);

    if opts.json {
        println!("{}", report_json(&report, psd.as_ref()));
    } else {
        for c in &report.checks {
            let (outcome, reason) = outcome_text(c.name, &c.outcome);
            let tag = match outcome {
                "pass" => "PASS",
                "fail" => "FAIL",
                _ => "SKIP",
            };
            match reason {
                Some(r) => println!("{tag} {}: {r}", c.name),
                None => println!("{tag} {}", c.name),
            }
        }
    }

    if let Some(Outcome::Fail(e)) = report.outcome(CheckName::Decode) {
        return Err(CliError::Indicium(e.clone()));
    }
    let mut token_failures = Vec::new();
    if let Some(fields) = &report.fields
        && (opts.kms.is_some() || opts.token_keys.is_some())
    {
        for (what, verdict) in crate::kms::token_checks(fields, opts.kms, opts.token_keys)? {
            let good = verdict == postvault_kms::Verdict::Good;
            if !opts.json {
                if good {
                    println!("PASS {what}");
                } else {
                    println!("FAIL {what}: {}", verdict.name());
                }
            }
            if !good {
                token_failures.push(what);
            }
        }
    }
    if !token_failures.is_empty() {
        return Err(CliError::Check(format!(
            "the indicium is NOT valid: {} failed",
            token_failures.join(", ")
        )));
    }
    if report.valid() {
        if !opts.json {
            println!("indicium VALID");
        }
        return Ok(());
    }
    let failed: Vec<_> = report.failed().iter().map(|c| c.as_str()).collect();
    Err(CliError::Check(format!(
        "the indicium is NOT valid: {} check{} failed",
        failed.join(", "),
        if failed.len() == 1 { "" } else { "s" }
    )))
}

/// Verifies an indicium image as this CLI's verifier does: no meter-status or
/// duplicate database yet, so those two checks report as skipped.
#[must_use]
pub fn check_png(
    image: &[u8],
    ca: &Certificate,
    psd: Option<&Certificate>,
    today: Date,
    policy: Policy,
) -> Report {
    let status = |_: &DeviceId| MeterStatus::Unknown;
    let mut seen = |_: &[u8; 32]| Seen::Unknown;
    let mut inputs = VerifierInputs {
        ca,
        psd_cert: psd,
        today,
        policy,
        status: &status,
        seen: &mut seen,
    };
    postvault_indicium::verify(Input::Png(image), &mut inputs)
}

/// What `indicium sample` writes, relative to its directory.
pub const SAMPLE_FILES: [&str; 5] = [
    "ca.pem",
    "psd.pem",
    "indicium.png",
    "indicium.svg",
    "indicium.bin",
];

fn days_from(d: Date, back: u16, forward: u16) -> Result<Validity, CliError> {
    let start = d.checked_sub_days(back).unwrap_or(Date::EPOCH);
    let end = d
        .checked_add_days(forward)
        .unwrap_or(Date::from_days(u16::MAX));
    Ok(Validity::new(start, end)?)
}

/// Runs `postvault indicium sample`: a CA, a PSD key and certificate, and a
/// signed sample indicium, optionally with one bit flipped in the symbol.
///
/// # Errors
/// [`CliError::Input`] for a bad bit or date; [`CliError::Io`] if a file
/// cannot be written; [`CliError::Indicium`] if generation fails.
pub fn sample(
    out_dir: &Path,
    tamper_bit: Option<usize>,
    date: Option<&str>,
) -> Result<Vec<PathBuf>, CliError> {
    let date = parse_date(date)?;
    let ca = PostalCa::generate("postvault sample postal CA", days_from(date, 365, 3650)?)?;
    let psd_key = SigningKey::generate(SigAlg::EcdsaP256Sha256)?;
    let device = DeviceId::new(*b"PV", 1234)?;
    let serial = 4242;
    let psd = ca.issue_psd_certificate(
        &psd_key.public_key(),
        device,
        serial,
        days_from(date, 30, 730)?,
    )?;
    let data = IndiciumData {
        alg: SigAlg::EcdsaP256Sha256,
        certificate_serial: serial,
        device_id: device,
        ascending_register: Money(1_234_560),
        postage: Money(730),
        date,
        origin_zip: ZipCode::new(12345, 6789)?,
        software_id: 1,
        descending_register: Money(98_765_430),
        rate_category: 1,
        mail_piece_id: 1001,
        destination_zip: None,
        vendor_token: [0; 4],
        postal_token: [0; 4],
    };
    let indicium = Indicium::sign(data, &psd_key)?;
    let mut bytes = indicium.to_bytes();
    if let Some(bit) = tamper_bit {
        let byte = bytes.get_mut(bit / 8).ok_or_else(|| {
            CliError::Input(format!(
                "--tamper-bit {bit}: the indicium has {} bits (0 to {})",
                LEN * 8,
                LEN * 8 - 1
            ))
        })?;
        *byte ^= 0x80 >> (bit % 8);
    }
    // The human-readable part always shows the genuine fields: a tampered
    // sample models a forger who altered only the symbol.
    let lines = human_readable(&indicium);
    std::fs::create_dir_all(out_dir).map_err(|e| CliError::io(out_dir, &e))?;
    let contents: [Vec<u8>; 5] = [
        ca.certificate().to_pem().into_bytes(),
        psd.to_pem().into_bytes(),
        render_png_raw(&bytes, &lines)?,
        render_svg_raw(&bytes, &lines)?.into_bytes(),
        bytes,
    ];
    let mut written = Vec::new();
    for (name, body) in SAMPLE_FILES.iter().zip(contents) {
        let path = out_dir.join(name);
        std::fs::write(&path, body).map_err(|e| CliError::io(&path, &e))?;
        written.push(path);
    }
    Ok(written)
}
