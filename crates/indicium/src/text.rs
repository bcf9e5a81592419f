//! An indicium's fields as text (seed 002, "Verification Process"): what a
//! mail-processing data capture system reads off the mail piece and sends
//! for token verification. One `name: value` line per field of the signed
//! part, in layout order; money in integer tenths of a cent, dates
//! `YYYY-MM-DD`, ZIP codes `12345` or `12345-6789`, tokens in hex. The
//! signature is not part of it: tokens are checked without it.

use core::fmt::Write as _;

use postvault_crypto::sig::SigAlg;

use crate::date::Date;
use crate::fields::{DeviceId, ZipCode};
use crate::indicium::IndiciumData;
use crate::money::Money;
use crate::{Error, Result};

/// Longest text accepted.
pub const MAX_TEXT: usize = 2048;

const NAMES: [&str; 15] = [
    "version",
    "algorithm id",
    "certificate serial",
    "device id",
    "ascending register",
    "postage value",
    "date of mailing",
    "originating ZIP",
    "software id",
    "descending register",
    "rate category",
    "mail-piece id",
    "destination ZIP",
    "vendor token",
    "postal token",
];

/// The fields as text.
#[must_use]
pub fn to_text(d: &IndiciumData) -> String {
    let mut out = String::new();
    let dest = d
        .destination_zip
        .map_or_else(|| "none".to_owned(), |z| z.to_string());
    let values = [
        crate::indicium::VERSION.to_string(),
        d.alg.id().to_string(),
        d.certificate_serial.to_string(),
        d.device_id.to_string(),
        d.ascending_register.tenths().to_string(),
        d.postage.tenths().to_string(),
        d.date.to_string(),
        d.origin_zip.to_string(),
        d.software_id.to_string(),
        d.descending_register.tenths().to_string(),
        d.rate_category.to_string(),
        d.mail_piece_id.to_string(),
        dest,
        hex::encode(d.vendor_token),
        hex::encode(d.postal_token),
    ];
    for (name, value) in NAMES.iter().zip(values) {
        let _ = writeln!(out, "{name}: {value}");
    }
    out
}

fn bad(what: &'static str) -> Error {
    Error::InvalidArgument { what }
}

fn zip(s: &str) -> Result<ZipCode> {
    let (z5, p4) = s.split_once('-').unwrap_or((s, "0"));
    if z5.len() != 5 || !(p4.len() == 4 || p4 == "0") {
        return Err(bad("ZIP code: 12345 or 12345-6789"));
    }
    ZipCode::new(
        z5.parse().map_err(|_| bad("ZIP code: digits"))?,
        p4.parse().map_err(|_| bad("ZIP code: digits"))?,
    )
}

fn token(s: &str) -> Result<[u8; 4]> {
    hex::decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(bad("token: 8 hex digits"))
}

/// Parses [`to_text`]'s output (every field, in order, nothing else).
///
/// # Errors
/// [`Error::InvalidArgument`] naming the first field that is missing,
/// out of order or malformed.
pub fn from_text(text: &str) -> Result<IndiciumData> {
    if text.len() > MAX_TEXT {
        return Err(bad("indicium text: too long"));
    }
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut values: Vec<&str> = Vec::with_capacity(NAMES.len());
    for name in NAMES {
        let line = lines
            .next()
            .ok_or(bad("indicium text: a field is missing"))?;
        let (n, v) = line
            .split_once(':')
            .ok_or(bad("indicium text: each line is 'name: value'"))?;
        if n.trim() != name {
            return Err(bad("indicium text: a field is missing or out of order"));
        }
        values.push(v.trim());
    }
    if lines.next().is_some() {
        return Err(bad("indicium text: lines after the postal token"));
    }
    let v = |i: usize| values.get(i).copied().unwrap_or_default();
    let num = |i: usize, what: &'static str| v(i).parse::<u64>().map_err(|_| bad(what));
    if v(0) != crate::indicium::VERSION.to_string() {
        return Err(bad("indicium text: unsupported version"));
    }
    let alg = SigAlg::from_id(v(1).parse().map_err(|_| bad("algorithm id: a number"))?)
        .map_err(|_| bad("algorithm id: unknown"))?;
    Ok(IndiciumData {
        alg,
        certificate_serial: v(2)
            .parse()
            .map_err(|_| bad("certificate serial: a number"))?,
        device_id: v(3)
            .parse::<DeviceId>()
            .map_err(|_| bad("device id: e.g. PV00001234"))?,
        ascending_register: Money::from_tenths(num(4, "ascending register: tenths of a cent")?),
        postage: Money::from_tenths(num(5, "postage value: tenths of a cent")?),
        date: v(6)
            .parse::<Date>()
            .map_err(|_| bad("date of mailing: YYYY-MM-DD"))?,
        origin_zip: zip(v(7))?,
        software_id: v(8).parse().map_err(|_| bad("software id: a number"))?,
        descending_register: Money::from_tenths(num(9, "descending register: tenths of a cent")?),
        rate_category: v(10).parse().map_err(|_| bad("rate category: a number"))?,
        mail_piece_id: v(11).parse().map_err(|_| bad("mail-piece id: a number"))?,
        destination_zip: if v(12) == "none" {
            None
        } else {
            Some(zip(v(12))?)
        },
        vendor_token: token(v(13))?,
        postal_token: token(v(14))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Result<IndiciumData> {
        Ok(IndiciumData {
            alg: SigAlg::EcdsaP256Sha256,
            certificate_serial: 77,
            device_id: DeviceId::new(*b"PV", 1234)?,
            ascending_register: Money::from_tenths(12_340),
            postage: Money::from_tenths(730),
            date: Date::from_ymd(2026, 11, 22)?,
            origin_zip: ZipCode::new(12345, 6789)?,
            software_id: 3,
            descending_register: Money::from_tenths(99_000),
            rate_category: 5,
            mail_piece_id: 17,
            destination_zip: None,
            vendor_token: [1, 2, 3, 4],
            postal_token: [0xa, 0xb, 0xc, 0xd],
        })
    }

    #[test]
    fn text_round_trips_and_rejects_what_it_does_not_know() -> Result<()> {
        let d = sample()?;
        let text = to_text(&d);
        assert_eq!(from_text(&text)?, d);
        assert_eq!(
            from_text(&text)?.encode_signed_part()?,
            d.encode_signed_part()?
        );
        let mut with_dest = d.clone();
        with_dest.destination_zip = Some(ZipCode::new(10001, 0)?);
        assert_eq!(from_text(&to_text(&with_dest))?, with_dest);
        assert!(from_text(&text.replace("postage value", "postage")).is_err());
        assert!(from_text(&text.replace("0a0b0c0d", "0a0b0c")).is_err());
        assert!(from_text(&format!("{text}extra: 1\n")).is_err());
        assert!(from_text(&"x".repeat(MAX_TEXT + 1)).is_err());
        Ok(())
    }
}
