//! Level 1 of error handling (seed 002, fig. 21): message framing. A frame
//! is `STX, class code, length (u32, big-endian), body, check code, ETX`,
//! where the check code is the first four bytes of SHA-256 over the class,
//! length and body: an error-detection code for transit, not a MAC (the
//! records inside are signed).

use postvault_crypto::hash::sha256;

use crate::error::FramingError;

/// Start of text.
pub const STX: u8 = 0x02;
/// End of text.
pub const ETX: u8 = 0x03;
/// Largest body a frame carries: room for a month's token keys of about
/// 20 000 meters, or as many indicia in one verification request.
pub const MAX_BODY: usize = 8 * 1024 * 1024;
const HEADER: usize = 1 + 1 + 4;
const TRAILER: usize = 4 + 1;

fn check_code(class: u8, len: [u8; 4], body: &[u8]) -> [u8; 4] {
    let [a, b, c, d, ..] = sha256(&[&[class], &len, body]);
    [a, b, c, d]
}

/// Frames a body.
///
/// # Errors
/// [`FramingError::TooLarge`] if the body exceeds [`MAX_BODY`].
pub fn encode(class: u8, body: &[u8]) -> Result<Vec<u8>, FramingError> {
    if body.len() > MAX_BODY {
        return Err(FramingError::TooLarge);
    }
    let len = u32::try_from(body.len())
        .map_err(|_| FramingError::TooLarge)?
        .to_be_bytes();
    let mut out = Vec::with_capacity(HEADER + body.len() + TRAILER);
    out.push(STX);
    out.push(class);
    out.extend_from_slice(&len);
    out.extend_from_slice(body);
    out.extend_from_slice(&check_code(class, len, body));
    out.push(ETX);
    Ok(out)
}

/// Unframes: the class code and the body.
///
/// # Errors
/// The [`FramingError`] of the first rule the frame breaks.
pub fn decode(frame: &[u8]) -> Result<(u8, &[u8]), FramingError> {
    if frame.len() > HEADER + MAX_BODY + TRAILER {
        return Err(FramingError::TooLarge);
    }
    let (&stx, rest) = frame.split_first().ok_or(FramingError::NoStx)?;
    if stx != STX {
        return Err(FramingError::NoStx);
    }
    let (&class, rest) = rest.split_first().ok_or(FramingError::Length)?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or(FramingError::Length)?;
    let n = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| FramingError::TooLarge)?;
    if n > MAX_BODY {
        return Err(FramingError::TooLarge);
    }
    if rest.len() < n + TRAILER {
        return Err(FramingError::Length);
    }
    let (body, rest) = rest.split_at(n);
    let (check, rest) = rest.split_first_chunk::<4>().ok_or(FramingError::Length)?;
    match rest {
        [ETX] => {}
        [_] => return Err(FramingError::NoEtx),
        _ => return Err(FramingError::Length),
    }
    if *check != check_code(class, *len, body) {
        return Err(FramingError::Check);
    }
    Ok((class, body))
}
