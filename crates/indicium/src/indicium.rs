//! The indicium's binary layout (version 1), signing and parsing.
//!
//! Every field is big-endian, in a fixed order, with no separators or
//! lengths; the signature covers every byte before it. The byte-by-byte table
//! is [`FIELDS`] (and `docs/indicium.md`).

use postvault_crypto::sig::{PublicKey, SigAlg, Signature, SigningKey};

use crate::date::Date;
use crate::fields::{DeviceId, ZipCode};
use crate::money::Money;
use crate::reader::Reader;
use crate::{Error, Result};

/// The layout version this crate writes and reads.
pub const VERSION: u8 = 1;
/// Length of the signed part (every field before the signature).
pub const SIGNED_LEN: usize = 51;
/// Length of the signature (P-256 raw `r || s`, or Ed25519).
pub const SIGNATURE_LEN: usize = 64;
/// Total length of a version-1 indicium.
pub const LEN: usize = SIGNED_LEN + SIGNATURE_LEN;

/// Largest postage value (24-bit field): $16777.215.
pub const MAX_POSTAGE: Money = Money(0x00FF_FFFF);
/// Largest register value (40-bit field): $1099511627.775.
pub const MAX_REGISTER: Money = Money(0x00FF_FFFF_FFFF);

/// One field of the layout: where it is and how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    /// What the field holds.
    pub name: &'static str,
    /// Byte offset from the start of the indicium.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
}

const fn field(name: &'static str, offset: usize, len: usize) -> FieldSpec {
    FieldSpec { name, offset, len }
}

/// Every field of layout version 1, in order.
pub const FIELDS: [FieldSpec; 16] = [
    field("version", 0, 1),
    field("algorithm id", 1, 1),
    field("certificate serial", 2, 4),
    field("device id", 6, 6),
    field("ascending register", 12, 5),
    field("postage value", 17, 3),
    field("date of mailing", 20, 2),
    field("originating ZIP", 22, 4),
    field("software id", 26, 2),
    field("descending register", 28, 5),
    field("rate category", 33, 2),
    field("mail-piece id", 35, 4),
    field("destination ZIP", 39, 4),
    field("vendor token", 43, 4),
    field("postal token", 47, 4),
    field("signature", 51, 64),
];

/// The signed fields of an indicium.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndiciumData {
    /// Signature algorithm (its id is stored in the indicium).
    pub alg: SigAlg,
    /// Serial number of the PSD certificate whose key signs this indicium.
    pub certificate_serial: u32,
    /// The meter.
    pub device_id: DeviceId,
    /// Ascending register after this mail piece (total postage ever printed), ≤ [`MAX_REGISTER`].
    pub ascending_register: Money,
    /// Postage value of this mail piece, ≤ [`MAX_POSTAGE`].
    pub postage: Money,
    /// Date of mailing.
    pub date: Date,
    /// Originating ZIP code (where the mail is entered).
    pub origin_zip: ZipCode,
    /// Meter software id.
    pub software_id: u16,
    /// Descending register after this mail piece (postage still available), ≤ [`MAX_REGISTER`].
    pub descending_register: Money,
    /// Rate category: the [`IndiciumKind`] in the top two bits, the mail class
    /// (class and shape code) in the other fourteen.
    pub rate_category: u16,
    /// Mail-piece id: a per-meter piece counter.
    pub mail_piece_id: u32,
    /// Destination ZIP code, when known.
    pub destination_zip: Option<ZipCode>,
    /// Vendor token (reserved for the key management system; zero until then).
    pub vendor_token: [u8; 4],
    /// Postal token (reserved for the key management system; zero until then).
    pub postal_token: [u8; 4],
}

/// What an indicium is for: the top two bits of the rate category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IndiciumKind {
    /// Ordinary postage.
    Postage,
    /// A correction indicium: extra postage for an underpaid piece.
    Correction,
    /// A refund indicium: the meter's remaining value, when it leaves service.
    Refund,
    /// A redated indicium: an earlier indicium reissued with a new date, no new value.
    Redate,
}

/// The rate category bits that carry the mail class (the rest carry the kind).
pub const MAIL_CLASS_MASK: u16 = 0x3FFF;

impl IndiciumKind {
    /// The kind's name, as the verifier prints it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            IndiciumKind::Postage => "postage",
            IndiciumKind::Correction => "correction",
            IndiciumKind::Refund => "refund",
            IndiciumKind::Redate => "redate",
        }
    }

    /// The rate category for this kind and a mail class.
    ///
    /// # Errors
    /// [`Error::FieldOutOfRange`] if the class needs more than 14 bits.
    pub fn rate_category(self, mail_class: u16) -> Result<u16> {
        if mail_class > MAIL_CLASS_MASK {
            return Err(Error::FieldOutOfRange {
                field: "mail class",
                value: u64::from(mail_class),
                max: u64::from(MAIL_CLASS_MASK),
            });
        }
        let bits: u16 = match self {
            IndiciumKind::Postage => 0,
            IndiciumKind::Correction => 1,
            IndiciumKind::Refund => 2,
            IndiciumKind::Redate => 3,
        };
        Ok(bits << 14 | mail_class)
    }
}

fn check_max(field: &'static str, value: Money, max: Money) -> Result<()> {
    if value > max {
        return Err(Error::FieldOutOfRange {
            field,
            value: value.tenths(),
            max: max.tenths(),
        });
    }
    Ok(())
}

impl IndiciumData {
    /// The kind, from the top two bits of the rate category.
    #[must_use]
    pub fn kind(&self) -> IndiciumKind {
        match self.rate_category >> 14 {
            0 => IndiciumKind::Postage,
            1 => IndiciumKind::Correction,
            2 => IndiciumKind::Refund,
            _ => IndiciumKind::Redate,
        }
    }

    /// The mail class: the rate category without the kind bits.
    #[must_use]
    pub fn mail_class(&self) -> u16 {
        self.rate_category & MAIL_CLASS_MASK
    }

    /// The signed part: the [`SIGNED_LEN`] bytes the signature covers.
    ///
    /// # Errors
    /// [`Error::FieldOutOfRange`] if the postage exceeds [`MAX_POSTAGE`] or a
    /// register exceeds [`MAX_REGISTER`].
    pub fn encode_signed_part(&self) -> Result<[u8; SIGNED_LEN]> {
        check_max("postage value", self.postage, MAX_POSTAGE)?;
        check_max("ascending register", self.ascending_register, MAX_REGISTER)?;
        check_max(
            "descending register",
            self.descending_register,
            MAX_REGISTER,
        )?;
        let mut out = Vec::with_capacity(SIGNED_LEN);
        out.push(VERSION);
        out.push(self.alg.id());
        out.extend_from_slice(&self.certificate_serial.to_be_bytes());
        out.extend_from_slice(&self.device_id.to_bytes());
        out.extend_from_slice(&u40(self.ascending_register));
        let [_, p1, p2, p3] = u32::try_from(self.postage.tenths())
            .map_err(|_| Error::MoneyOverflow)?
            .to_be_bytes();
        out.extend_from_slice(&[p1, p2, p3]);
        out.extend_from_slice(&self.date.days().to_be_bytes());
        out.extend_from_slice(&self.origin_zip.to_u32().to_be_bytes());
        out.extend_from_slice(&self.software_id.to_be_bytes());
        out.extend_from_slice(&u40(self.descending_register));
        out.extend_from_slice(&self.rate_category.to_be_bytes());
        out.extend_from_slice(&self.mail_piece_id.to_be_bytes());
        out.extend_from_slice(&self.destination_zip.map_or(0, |z| z.to_u32()).to_be_bytes());
        out.extend_from_slice(&self.vendor_token);
        out.extend_from_slice(&self.postal_token);
        out.try_into().map_err(|_| Error::Render {
            what: "unreachable: the signed part has a fixed length",
        })
    }

    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let version = r.u8()?;
        if version != VERSION {
            return Err(Error::UnsupportedVersion { version });
        }
        let alg_id = r.u8()?;
        let alg = SigAlg::from_id(alg_id).map_err(|_| Error::UnknownAlgorithm { id: alg_id })?;
        let certificate_serial = r.u32()?;
        let device_id = DeviceId::from_bytes(r.array()?)?;
        let ascending_register = Money(r.u40()?);
        let postage = Money(u64::from(r.u24()?));
        let date = Date::from_days(r.u16()?);
        let origin_zip = ZipCode::from_u32(r.u32()?)?;
        let software_id = r.u16()?;
        let descending_register = Money(r.u40()?);
        let rate_category = r.u16()?;
        let mail_piece_id = r.u32()?;
        let destination_zip = match r.u32()? {
            0 => None,
            v => Some(ZipCode::from_u32(v)?),
        };
        let vendor_token = r.array()?;
        let postal_token = r.array()?;
        Ok(Self {
            alg,
            certificate_serial,
            device_id,
            ascending_register,
            postage,
            date,
            origin_zip,
            software_id,
            descending_register,
            rate_category,
            mail_piece_id,
            destination_zip,
            vendor_token,
            postal_token,
        })
    }
}

fn u40(m: Money) -> [u8; 5] {
    let [_, _, _, a, b, c, d, e] = m.tenths().to_be_bytes();
    [a, b, c, d, e]
}

/// A signed indicium: its fields and the signature over their encoding.
///
/// Built only by [`Indicium::sign`] or [`Indicium::parse`], so its fields
/// always encode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Indicium {
    data: IndiciumData,
    signed: [u8; SIGNED_LEN],
    signature: Signature,
}

impl Indicium {
    /// Signs `data` with the PSD's key.
    ///
    /// # Errors
    /// [`Error::AlgorithmMismatch`] if `data.alg` is not the key's algorithm;
    /// [`Error::FieldOutOfRange`] if a value does not fit its field;
    /// [`Error::Crypto`] if signing fails.
    pub fn sign(data: IndiciumData, key: &SigningKey) -> Result<Self> {
        if key.alg() != data.alg {
            return Err(Error::AlgorithmMismatch {
                indicium: data.alg.name(),
                key: key.alg().name(),
            });
        }
        let signed = data.encode_signed_part()?;
        let signature = key.sign(&signed)?;
        Ok(Self {
            data,
            signed,
            signature,
        })
    }

    /// Parses exactly one version-1 indicium. Does not check the signature.
    ///
    /// # Errors
    /// [`Error::Truncated`] on short input (including empty input);
    /// [`Error::UnsupportedVersion`] if the first byte is not 1;
    /// [`Error::TrailingBytes`] if bytes follow the signature;
    /// [`Error::UnknownAlgorithm`], [`Error::InvalidVendorCode`] or
    /// [`Error::FieldOutOfRange`] for a field outside its range.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, LEN);
        let data = IndiciumData::read(&mut r)?;
        let sig: [u8; SIGNATURE_LEN] = r.array()?;
        r.finish()?;
        let (signed, _) = bytes
            .split_first_chunk::<SIGNED_LEN>()
            .ok_or(Error::Truncated {
                needed: LEN,
                got: bytes.len(),
            })?;
        let signature = Signature::from_bytes(data.alg, &sig)?;
        Ok(Self {
            data,
            signed: *signed,
            signature,
        })
    }

    /// The fields.
    #[must_use]
    pub fn data(&self) -> &IndiciumData {
        &self.data
    }

    /// The signed part (the first [`SIGNED_LEN`] bytes).
    #[must_use]
    pub fn signed_bytes(&self) -> &[u8; SIGNED_LEN] {
        &self.signed
    }

    /// The signature.
    #[must_use]
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The [`LEN`] bytes of the indicium.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEN);
        out.extend_from_slice(&self.signed);
        out.extend_from_slice(self.signature.as_bytes());
        out
    }

    /// SHA-256 of [`Indicium::to_bytes`].
    #[must_use]
    pub fn digest(&self) -> [u8; 32] {
        postvault_crypto::hash::sha256(&[&self.signed, self.signature.as_bytes()])
    }

    /// The key for duplicate detection: SHA-256 over a label, the device id and
    /// the ascending register. A meter's AR grows with every indicium that
    /// carries value, so the pair names one paid mail piece; a redated indicium
    /// keeps its original's pair (only one of them may be mailed), and two
    /// signatures over the same fields (ECDSA is randomised) are the same piece.
    #[must_use]
    pub fn mail_piece_key(&self) -> [u8; 32] {
        postvault_crypto::hash::sha256(&[
            b"postvault mail piece v1",
            &self.data.device_id.to_bytes(),
            &self.data.ascending_register.tenths().to_be_bytes(),
        ])
    }

    /// Checks the signature with `key`.
    ///
    /// # Errors
    /// [`Error::AlgorithmMismatch`] if the key's algorithm is not the
    /// indicium's; [`Error::SignatureInvalid`] if the signature does not verify.
    pub fn verify_signature(&self, key: &PublicKey) -> Result<()> {
        if key.alg() != self.data.alg {
            return Err(Error::AlgorithmMismatch {
                indicium: self.data.alg.name(),
                key: key.alg().name(),
            });
        }
        key.verify(&self.signed, &self.signature)
            .map_err(|_| Error::SignatureInvalid)
    }
}
