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
