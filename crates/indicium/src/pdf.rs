//! Rendering to PDF: the indicium as a one-page PDF 1.4 document that prints
//! at true size, with the geometry of [`render_png`](crate::render::render_png)
//! and [`render_svg`](crate::render::render_svg).
//!
//! The page is the PNG's canvas: one 600-dpi pixel is 72/600 = 0.12 pt, so
//! every coordinate is an integer number of pixels times 0.12 and is written
//! exactly with two decimals (no floating point anywhere). The Data Matrix is
//! vector: one filled rectangle per horizontal run of dark modules, in black
//! on a white background rectangle. The four human-readable lines are text in
//! the standard Type 1 font Helvetica (not embedded; every PDF reader has
//! it), sized and placed as in the SVG (80 px font size, baseline at the
//! bottom of the PNG's 5x7 glyphs). Helvetica is proportional and the PNG's
//! text column is sized for the 5x7 font, so a line that would run past the
//! column is squeezed horizontally (`Tz`) to fit it.
//!
//! The file is plain ASCII: five objects, an uncompressed content
//! stream, a classic cross-reference table and trailer.

use crate::font;
use crate::indicium::Indicium;
use crate::render::{LINE_PITCH, Layout, MODULE_PX, TEXT_SCALE, human_readable};
use crate::{Error, Result};

/// Height of a 5x7 glyph in pixels: the baseline sits this far below a line's top.
const GLYPH_PX: usize = font::HEIGHT * TEXT_SCALE;
/// Font size in pixels, as in the SVG (cap height close to the 5x7 glyphs').
const FONT_PX: usize = GLYPH_PX * 10 / 7;
/// Hundredths of a point per 600-dpi pixel (72 / 600 pt = 0.12 pt).
const CENTIPOINTS_PER_PX: usize = 12;
/// Largest byte offset a cross-reference entry can hold (ten digits).
const MAX_XREF_OFFSET: u64 = 9_999_999_999;

/// Renders the indicium as a single-page PDF 1.4 document at true size: the
/// Data Matrix as black vector rectangles and the human-readable lines in
/// Helvetica, in the layout of [`render_png`](crate::render::render_png).
///
/// # Errors
/// [`Error::Render`] if encoding the symbol fails or the document would be
/// too large for a cross-reference table.
pub fn render_pdf(indicium: &Indicium) -> Result<Vec<u8>> {
    render_pdf_raw(&indicium.to_bytes(), &human_readable(indicium))
}

/// Renders arbitrary `bytes` as the symbol with arbitrary text beside it, in
/// the layout of [`render_pdf`]. For testing verifiers (tampered or garbage
/// symbols); meters use [`render_pdf`].
///
/// Text is written in WinAnsiEncoding: printable ASCII and U+00A0..=U+00FF
/// print as themselves, any other character as `?`.
///
/// # Errors
/// [`Error::Render`] if encoding the symbol fails or the document would be
/// too large for a cross-reference table.
pub fn render_pdf_raw(bytes: &[u8], lines: &[String; 4]) -> Result<Vec<u8>> {
    let geometry = Layout::new(bytes, lines)?;
    let content = content_stream(&geometry, lines)?;
    let page = format!(
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {} {}] \
         /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        pt(geometry.width),
        pt(geometry.height)
    );
    let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
    stream.extend_from_slice(&content);
    stream.extend_from_slice(b"\nendstream");
    let objects: [&[u8]; 5] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        page.as_bytes(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        &stream,
    ];
    assemble(&objects)
}

/// Writes the header, the objects (numbered from 1), the cross-reference
/// table and the trailer.
fn assemble(objects: &[&[u8]]) -> Result<Vec<u8>> {
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (number, body) in (1..).zip(objects) {
        offsets.push(out.len());
        out.extend_from_slice(format!("{number} 0 obj\n").as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    // Every object's offset is below the table's, so one check covers all.
    if u64::try_from(xref).map_or(true, |x| x > MAX_XREF_OFFSET) {
        return Err(Error::Render {
            what: "the PDF is too large for a cross-reference table",
        });
    }
    let size = objects.len() + 1;
    out.extend_from_slice(format!("xref\n0 {size}\n0000000000 65535 f \n").as_bytes());
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {size} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").as_bytes(),
    );
    Ok(out)
}

/// The page's drawing operators: white background, symbol runs, text.
fn content_stream(g: &Layout, lines: &[String; 4]) -> Result<Vec<u8>> {
    // PDF's y axis points up: a box whose top is `y` pixels from the top of
    // the page and `h` pixels tall has its lower edge at `height - y - h`.
    let up = |y: usize, h: usize| pt(g.height - y - h);
    let mut s = String::new();
    s.push_str("q\n1 g\n");
    s.push_str(&format!(
        "{} {} {} {} re\nf\n",
        pt(0),
        pt(0),
        pt(g.width),
        pt(g.height)
    ));
    s.push_str("0 g\n");
    for y in 0..g.symbol.height() {
        let mut x = 0;
        while x < g.symbol.width() {
            if !g.symbol.is_dark(x, y) {
                x += 1;
                continue;
            }
            let start = x;
            while g.symbol.is_dark(x, y) {
                x += 1;
            }
            s.push_str(&format!(
                "{} {} {} {} re\n",
                pt(g.sym_x + start * MODULE_PX),
                up(g.sym_y + y * MODULE_PX, MODULE_PX),
                pt((x - start) * MODULE_PX),
                pt(MODULE_PX)
            ));
        }
    }
    s.push_str("f\n");
    s.push_str(&format!("BT\n/F1 {} Tf\n", pt(FONT_PX)));
    for (i, line) in lines.iter().enumerate() {
        let encoded: Vec<u8> = line.chars().map(win_ansi).collect();
        let baseline = g.text_y + i * LINE_PITCH * TEXT_SCALE + GLYPH_PX;
        s.push_str(&format!(
            "1 0 0 1 {} {} Tm\n{} Tz\n({}) Tj\n",
            pt(g.text_x),
            up(baseline, 0),
            hundredths(squeeze(&encoded, g.text_w)?),
            escape(&encoded)
        ));
    }
    s.push_str("ET\nQ\n");
    Ok(s.into_bytes())
}

/// A length in 600-dpi pixels as points with exactly two decimals.
fn pt(px: usize) -> String {
    hundredths(px * CENTIPOINTS_PER_PX)
}

/// `n` hundredths as a decimal with exactly two places (`1234` → `12.34`).
fn hundredths(n: usize) -> String {
    format!("{}.{:02}", n / 100, n % 100)
}

/// Horizontal scaling, in hundredths of a percent, that makes `text` (in
/// Helvetica at [`FONT_PX`]) fit `column_px`: 100 % unless it would overflow,
/// then the largest value that fits (rounded down).
fn squeeze(text: &[u8], column_px: usize) -> Result<usize> {
    const FULL: usize = 10_000; // 100.00 %
    let too_long = || Error::Render {
        what: "a human-readable line is too long for the PDF",
    };
    // Widths are in thousandths of the font size.
    let units = text
        .iter()
        .try_fold(0usize, |sum, b| sum.checked_add(helvetica_width(*b)))
        .ok_or_else(too_long)?;
    let natural = units.checked_mul(FONT_PX).ok_or_else(too_long)?;
    let room = column_px.checked_mul(1000).ok_or_else(too_long)?;
    if natural <= room {
        return Ok(FULL);
    }
    let scaled = room.checked_mul(FULL).ok_or_else(too_long)?;
    Ok(scaled / natural)
}

/// The WinAnsiEncoding byte for `c`: printable ASCII and U+00A0..=U+00FF
/// map to themselves (WinAnsi agrees with Latin-1 there), anything else to `?`.
fn win_ansi(c: char) -> u8 {
    match u8::try_from(u32::from(c)) {
        Ok(b) if matches!(b, 0x20..=0x7E | 0xA0..=0xFF) => b,
        _ => b'?',
    }
}

/// `bytes` as the inside of a PDF literal string: `(`, `)` and `\` take a
/// backslash, bytes above 0x7E become three-digit octal escapes.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'(' | b')' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7E => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out
}

/// Advance width of a WinAnsi byte in Helvetica, in thousandths of the font
/// size (Adobe's AFM for the standard 14 fonts). Bytes above 0x7E get 1000,
/// wider than any Latin-1 glyph, so squeezing never lets text overflow.
fn helvetica_width(b: u8) -> usize {
    /// Widths of 0x20..=0x7E.
    const ASCII: [u16; 95] = [
        278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278,
        278, // 0x20
        556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584,
        556, // 0x30
        1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722,
        778, // 0x40
        667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469,
        556, // 0x50
        333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556,
        556, // 0x60
        556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, // 0x70
    ];
    usize::from(b)
        .checked_sub(0x20)
        .and_then(|i| ASCII.get(i))
        .map_or(1000, |w| usize::from(*w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_exact_with_two_decimals() {
        assert_eq!(pt(0), "0.00");
        assert_eq!(pt(1), "0.12");
        assert_eq!(pt(10), "1.20");
        assert_eq!(pt(600), "72.00");
        assert_eq!(pt(1548), "185.76");
        assert_eq!(hundredths(5), "0.05");
    }

    #[test]
    fn escape_handles_delimiters_backslash_and_high_bytes() {
        assert_eq!(escape(b"a(b)c\\d"), "a\\(b\\)c\\\\d");
        assert_eq!(escape(&[0xE9, b'x']), "\\351x");
        assert_eq!(escape(b""), "");
    }

    #[test]
    fn win_ansi_keeps_latin1_and_replaces_the_rest() {
        assert_eq!(win_ansi('A'), b'A');
        assert_eq!(win_ansi('\u{e9}'), 0xE9);
        assert_eq!(win_ansi('\n'), b'?');
        assert_eq!(win_ansi('\u{85}'), b'?');
        assert_eq!(win_ansi('\u{20ac}'), b'?');
    }

    #[test]
    fn helvetica_widths_match_the_afm() {
        assert_eq!(helvetica_width(b' '), 278);
        assert_eq!(helvetica_width(b'0'), 556);
        assert_eq!(helvetica_width(b'@'), 1015);
        assert_eq!(helvetica_width(b'W'), 944);
        assert_eq!(helvetica_width(b'i'), 222);
        assert_eq!(helvetica_width(b'~'), 584);
        assert_eq!(helvetica_width(0x1F), 1000);
        assert_eq!(helvetica_width(0xC9), 1000);
    }

    #[test]
    fn squeeze_only_when_the_line_overflows() {
        // Five digits: 5 * 556 / 1000 * 80 px = 222.4 px, inside 240 px.
        assert_eq!(squeeze(b"11111", 240).ok(), Some(10_000));
        // Five Ws: 377.6 px into 240 px is 63.559...%.
        assert_eq!(squeeze(b"WWWWW", 240).ok(), Some(6_355));
        assert_eq!(squeeze(b"", 0).ok(), Some(10_000));
    }
}
