//! Small field types of the indicium: device ids and ZIP codes.

use core::fmt;
use core::str::FromStr;

use crate::{Error, Result};

/// A postal security device (meter) id: a two-letter vendor code (A-Z) and a
/// 32-bit serial. Displays as the code followed by at least eight digits,
/// e.g. `PV00001234`; that text is also the certificate's subject serialNumber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceId {
    vendor: [u8; 2],
    serial: u32,
}

impl DeviceId {
    /// A device id.
    ///
    /// # Errors
    /// [`Error::InvalidVendorCode`] unless `vendor` is two ASCII letters A-Z.
    pub fn new(vendor: [u8; 2], serial: u32) -> Result<Self> {
        if !vendor.iter().all(u8::is_ascii_uppercase) {
            return Err(Error::InvalidVendorCode { bytes: vendor });
        }
        Ok(Self { vendor, serial })
    }

    /// The vendor code (two ASCII capital letters).
    #[must_use]
    pub fn vendor(&self) -> [u8; 2] {
        self.vendor
    }

    /// The vendor code as text.
    #[must_use]
    pub fn vendor_str(&self) -> &str {
        // Always ASCII by construction.
        core::str::from_utf8(&self.vendor).unwrap_or("??")
    }

    /// The device serial.
    #[must_use]
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The six bytes of the indicium field.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 6] {
        let [a, b] = self.vendor;
        let [c, d, e, f] = self.serial.to_be_bytes();
        [a, b, c, d, e, f]
    }

    /// Reads the six bytes of the indicium field.
    ///
    /// # Errors
    /// [`Error::InvalidVendorCode`] unless the first two bytes are letters A-Z.
    pub fn from_bytes(bytes: [u8; 6]) -> Result<Self> {
        let [a, b, c, d, e, f] = bytes;
        Self::new([a, b], u32::from_be_bytes([c, d, e, f]))
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:08}", self.vendor_str(), self.serial)
    }
}

impl FromStr for DeviceId {
    type Err = Error;

    /// Parses the canonical text only (what [`Display`](fmt::Display) prints).
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidDeviceIdText { text: s.to_owned() };
        let (Some(vendor), Some(digits)) = (s.get(..2), s.get(2..)) else {
            return Err(bad());
        };
        let vendor: [u8; 2] = vendor.as_bytes().try_into().map_err(|_| bad())?;
        if !(8..=10).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let serial = digits.parse::<u32>().map_err(|_| bad())?;
        let id = Self::new(vendor, serial).map_err(|_| bad())?;
        if id.to_string() != s {
            return Err(bad());
        }
        Ok(id)
    }
}

/// A US ZIP code with optional +4: stored as `zip5 * 10000 + plus4` in a u32,
/// where a +4 of `0000` means "no +4". Displays as `12345` or `12345-6789`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ZipCode {
    zip5: u32,
    plus4: u16,
}

impl ZipCode {
    /// Largest ZIP5.
    pub const MAX_ZIP5: u32 = 99_999;
    /// Largest +4.
    pub const MAX_PLUS4: u16 = 9_999;

    /// A ZIP code; `plus4` 0 means none.
    ///
    /// # Errors
    /// [`Error::FieldOutOfRange`] if `zip5 > 99999` or `plus4 > 9999`.
    pub fn new(zip5: u32, plus4: u16) -> Result<Self> {
        if zip5 > Self::MAX_ZIP5 {
            return Err(Error::FieldOutOfRange {
                field: "ZIP5",
                value: u64::from(zip5),
                max: u64::from(Self::MAX_ZIP5),
            });
        }
        if plus4 > Self::MAX_PLUS4 {
            return Err(Error::FieldOutOfRange {
                field: "ZIP+4",
                value: u64::from(plus4),
                max: u64::from(Self::MAX_PLUS4),
            });
        }
        Ok(Self { zip5, plus4 })
    }

    /// The five-digit ZIP.
    #[must_use]
    pub fn zip5(&self) -> u32 {
        self.zip5
    }

    /// The +4 (0 for none).
    #[must_use]
    pub fn plus4(&self) -> u16 {
        self.plus4
    }

    /// The stored form, `zip5 * 10000 + plus4`.
    #[must_use]
    pub fn to_u32(&self) -> u32 {
        // zip5 <= 99999 and plus4 <= 9999 by construction: at most 999_999_999.
        self.zip5 * 10_000 + u32::from(self.plus4)
    }

    /// Reads the stored form.
    ///
    /// # Errors
    /// [`Error::FieldOutOfRange`] if the ZIP5 part exceeds 99999.
    pub fn from_u32(v: u32) -> Result<Self> {
        let plus4 = u16::try_from(v % 10_000).map_err(|_| Error::InvalidArgument {
            what: "unreachable: a remainder of 10000 fits u16",
        })?;
        Self::new(v / 10_000, plus4)
    }
}

impl fmt::Display for ZipCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.plus4 == 0 {
            write!(f, "{:05}", self.zip5)
        } else {
            write!(f, "{:05}-{:04}", self.zip5, self.plus4)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_text() {
        let id = DeviceId::new(*b"PV", 1234).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(id.to_string(), "PV00001234");
        assert_eq!("PV00001234".parse::<DeviceId>(), Ok(id));
        let big = DeviceId::new(*b"AB", u32::MAX).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(big.to_string(), "AB4294967295");
        assert_eq!("AB4294967295".parse::<DeviceId>(), Ok(big));
        for bad in [
            "pv00001234",
            "PV1234",
            "PV0000123X",
            "PV04294967295",
            "PV4294967296",
            "P",
            "",
        ] {
            assert!(bad.parse::<DeviceId>().is_err(), "{bad}");
        }
        assert_eq!(
            DeviceId::new(*b"P1", 1),
            Err(Error::InvalidVendorCode { bytes: *b"P1" })
        );
        assert_eq!(DeviceId::from_bytes(id.to_bytes()), Ok(id));
    }

    #[test]
    fn zip_codes() {
        let z = ZipCode::new(12345, 6789).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(z.to_string(), "12345-6789");
        assert_eq!(z.to_u32(), 123_456_789);
        assert_eq!(ZipCode::from_u32(123_456_789), Ok(z));
        assert_eq!(
            ZipCode::from_u32(20_001_000).map(|z| z.to_string()),
            Ok("02000-1000".into())
        );
        assert_eq!(
            ZipCode::new(501, 0).map(|z| z.to_string()),
            Ok("00501".into())
        );
        assert!(ZipCode::new(100_000, 0).is_err());
        assert!(ZipCode::new(1, 10_000).is_err());
        assert!(ZipCode::from_u32(999_999_999).is_ok());
        assert!(ZipCode::from_u32(1_000_000_000).is_err());
    }
}
