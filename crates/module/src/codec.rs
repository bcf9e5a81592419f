//! Checked decoding of everything that crosses the module boundary: a length bound
//! before any work, and no trailing bytes.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Largest request, response, share, token or NVM record the module accepts.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Encodes a value (postcard).
///
/// # Errors
/// [`Error::Malformed`] if the value cannot be encoded (never for the module's own types).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|_| Error::Malformed {
        what: "value to encode",
    })
}

/// Decodes exactly one value from `bytes`, refusing oversized input and trailing bytes.
///
/// # Errors
/// [`Error::Malformed`] naming `what`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T> {
    if bytes.len() > MAX_MESSAGE {
        return Err(Error::Malformed { what });
    }
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        _ => Err(Error::Malformed { what }),
    }
}

/// Money on the wire and in NVM: its count of tenths of a cent.
pub mod tenths {
    use postvault_indicium::Money;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes Money as its tenths of a cent.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(m: &Money, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(m.tenths())
    }

    /// Deserializes Money from tenths of a cent.
    ///
    /// # Errors
    /// The deserializer's.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        u64::deserialize(d).map(Money::from_tenths)
    }
}
