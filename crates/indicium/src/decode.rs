//! Reading an indicium back from a PNG image.
//!
//! The PNG is decoded with `image` (size-limited), converted to 8-bit luminance
//! and handed to rxing's Data Matrix reader (hybrid binarizer, try-harder,
//! Data Matrix only). rxing returns the Base 256 payload as ISO-8859-1 text;
//! each character maps back to the byte of the same value.

use std::collections::HashSet;
use std::io::Cursor;

use rxing::common::HybridBinarizer;
use rxing::datamatrix::DataMatrixReader;
use rxing::{BarcodeFormat, BinaryBitmap, DecodeHints, Luma8LuminanceSource, Reader};

use crate::error::ImageFailure;
use crate::{Error, Result};

/// Largest width or height accepted, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 12_000;
/// Largest decoder allocation, in bytes.
const MAX_ALLOC: u64 = 256 * 1024 * 1024;
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Decodes the first Data Matrix symbol in a PNG image and returns its bytes.
///
/// # Errors
/// [`Error::ImageUnreadable`] if `png` is not a readable PNG within the size
/// limits; [`Error::NoBarcodeFound`] if no symbol decodes;
/// [`Error::BarcodeNotBinary`] if the symbol holds characters above U+00FF.
pub fn decode_png(png: &[u8]) -> Result<Vec<u8>> {
    let unreadable = |reason| Error::ImageUnreadable { reason };
    if !png.starts_with(PNG_SIGNATURE) {
        return Err(unreadable(ImageFailure::NotPng));
    }
    let mut reader = image::ImageReader::with_format(Cursor::new(png), image::ImageFormat::Png);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => unreadable(ImageFailure::TooLarge),
        _ => unreadable(ImageFailure::Corrupt),
    })?;
    let luma = img.to_luma8();
    let (w, h) = luma.dimensions();
    decode_luma(luma.into_raw(), w, h)
}

/// Decodes the first Data Matrix symbol in an 8-bit greyscale raster
/// (`width * height` bytes, row by row).
///
/// # Errors
/// [`Error::ImageUnreadable`] if the raster's size is inconsistent;
/// otherwise as [`decode_png`].
pub fn decode_luma(luma: Vec<u8>, width: u32, height: u32) -> Result<Vec<u8>> {
    let source =
        Luma8LuminanceSource::new(luma, width, height).map_err(|_| Error::ImageUnreadable {
            reason: ImageFailure::Corrupt,
        })?;
    let mut bitmap = BinaryBitmap::new(HybridBinarizer::new(source));
    let hints = DecodeHints {
        TryHarder: Some(true),
        PossibleFormats: Some(HashSet::from([BarcodeFormat::DATA_MATRIX])),
        ..DecodeHints::default()
    };
    let result = DataMatrixReader
        .decode_with_hints(&mut bitmap, &hints)
        .map_err(|_| Error::NoBarcodeFound)?;
    latin1_to_bytes(result.getText())
}

/// Maps ISO-8859-1 text back to bytes.
fn latin1_to_bytes(text: &str) -> Result<Vec<u8>> {
    text.chars()
        .map(|c| {
            u8::try_from(u32::from(c)).map_err(|_| Error::BarcodeNotBinary { code: u32::from(c) })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_maps_each_char_to_its_byte() {
        let all: String = (0u8..=255).map(char::from).collect();
        let bytes = latin1_to_bytes(&all).unwrap_or_default();
        assert_eq!(bytes, (0u8..=255).collect::<Vec<_>>());
        assert_eq!(
            latin1_to_bytes("a\u{100}"),
            Err(Error::BarcodeNotBinary { code: 0x100 })
        );
    }

    #[test]
    fn rejects_non_png_input() {
        assert_eq!(
            decode_png(b"GIF89a...."),
            Err(Error::ImageUnreadable {
                reason: ImageFailure::NotPng
            })
        );
        let mut truncated = PNG_SIGNATURE.to_vec();
        truncated.extend_from_slice(&[0, 0, 0, 13, b'I', b'H']);
        assert_eq!(
            decode_png(&truncated),
            Err(Error::ImageUnreadable {
                reason: ImageFailure::Corrupt
            })
        );
    }

    #[test]
    fn a_blank_image_has_no_barcode() {
        assert_eq!(
            decode_luma(vec![255; 200 * 100], 200, 100),
            Err(Error::NoBarcodeFound)
        );
    }
}
