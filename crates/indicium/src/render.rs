//! Rendering: the indicium as a Data Matrix symbol, to PNG and SVG, with the
//! human-readable part (amount, date, origin ZIP, device id) to its right.
//!
//! Geometry (shared by both outputs, in 600-dpi pixels): modules of
//! [`MODULE_PX`] pixels (0.423 mm), a quiet zone of [`QUIET_MODULES`]
//! modules, then the text in a 5x7 font scaled [`TEXT_SCALE`] times.

use datamatrix::data::EncodationType;
use datamatrix::{DataMatrixBuilder, SymbolList};

use crate::font;
use crate::indicium::Indicium;
use crate::{Error, Result};

/// Print resolution of the PNG, dots per inch (also written to its pHYs chunk).
pub const DPI: u32 = 600;
/// Pixels per module: 10 px at 600 dpi is 0.423 mm.
pub const MODULE_PX: usize = 10;
/// Quiet zone around the symbol, in modules (ISO/IEC 16022 asks for at least 1).
pub const QUIET_MODULES: usize = 2;
/// Scale of the 5x7 font: each font pixel is this many image pixels (glyphs 2.4 mm tall).
pub const TEXT_SCALE: usize = 8;
/// Space between the symbol's quiet zone and the text, in pixels.
pub(crate) const TEXT_GAP_PX: usize = 40;
/// Glyph advance, in font pixels (5 wide + 1 space).
pub(crate) const ADVANCE: usize = font::WIDTH + 1;
/// Line pitch, in font pixels (7 high + 3 leading).
pub(crate) const LINE_PITCH: usize = font::HEIGHT + 3;
/// Pixels per metre at [`DPI`] (600 / 0.0254, rounded).
const PIXELS_PER_METRE: u32 = 23_622;

/// The module matrix of a Data Matrix symbol (no quiet zone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    width: usize,
    height: usize,
    dark: Vec<bool>,
}

impl Symbol {
    /// Encodes `bytes` in the smallest square ECC 200 symbol, in Base 256
    /// encodation (so decoders return the bytes as ISO-8859-1 text).
    ///
    /// # Errors
    /// [`Error::Render`] if the data does not fit any symbol.
    pub fn encode(bytes: &[u8]) -> Result<Self> {
        let code = DataMatrixBuilder::new()
            .with_encodation_types(EncodationType::Base256)
            .with_macros(false)
            .with_symbol_list(SymbolList::default().enforce_square())
            .encode(bytes)
            .map_err(|_| Error::Render {
                what: "the data does not fit a Data Matrix symbol",
            })?;
        let bitmap = code.bitmap();
        let (width, height) = (bitmap.width(), bitmap.height());
        let mut dark = vec![false; width.saturating_mul(height)];
        for (x, y) in bitmap.pixels() {
            if let Some(cell) = dark.get_mut(y * width + x) {
                *cell = true;
            }
        }
        Ok(Self {
            width,
            height,
            dark,
        })
    }

    /// Width in modules.
    #[must_use]
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in modules.
    #[must_use]
    pub fn height(&self) -> usize {
        self.height
    }

    /// Whether module (`x`, `y`) is dark; false outside the symbol.
    #[must_use]
    pub fn is_dark(&self, x: usize, y: usize) -> bool {
        x < self.width && self.dark.get(y * self.width + x).copied().unwrap_or(false)
    }
}

/// The human-readable lines printed beside the symbol.
#[must_use]
pub fn human_readable(indicium: &Indicium) -> [String; 4] {
    let d = indicium.data();
    [
        format!("POSTAGE {}", d.postage),
        format!("DATE {}", d.date),
        format!("ORIGIN ZIP {}", d.origin_zip),
        format!("METER {}", d.device_id),
    ]
}

/// Where everything goes, in 600-dpi pixels from the top-left corner (shared
/// by the PNG, SVG and PDF renderers).
pub(crate) struct Layout {
    pub(crate) symbol: Symbol,
    pub(crate) lines: [String; 4],
    pub(crate) width: usize,
    pub(crate) height: usize,
    /// Top-left of the symbol.
    pub(crate) sym_x: usize,
    pub(crate) sym_y: usize,
    /// Top-left of the first text line, and the text column's width.
    pub(crate) text_x: usize,
    pub(crate) text_y: usize,
    pub(crate) text_w: usize,
}

impl Layout {
    pub(crate) fn new(bytes: &[u8], lines: &[String; 4]) -> Result<Self> {
        let symbol = Symbol::encode(bytes)?;
        let lines = lines.clone();
        let quiet = QUIET_MODULES * MODULE_PX;
        let sym_w = symbol.width() * MODULE_PX;
        let sym_h = symbol.height() * MODULE_PX;
        let longest = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        let text_w = longest * ADVANCE * TEXT_SCALE;
        let text_h = (3 * LINE_PITCH + font::HEIGHT) * TEXT_SCALE;
        let inner_h = sym_h.max(text_h);
        let sym_x = quiet;
        let sym_y = quiet + (inner_h - sym_h) / 2;
        let text_x = quiet + sym_w + quiet + TEXT_GAP_PX;
        let text_y = quiet + (inner_h - text_h) / 2;
        Ok(Self {
            width: text_x + text_w + quiet,
            height: inner_h + 2 * quiet,
            symbol,
            lines,
            sym_x,
            sym_y,
            text_x,
            text_y,
            text_w,
        })
    }

    fn dark_at(&self, x: usize, y: usize) -> bool {
        if let (Some(dx), Some(dy)) = (x.checked_sub(self.sym_x), y.checked_sub(self.sym_y))
            && self.symbol.is_dark(dx / MODULE_PX, dy / MODULE_PX)
        {
            return true;
        }
        let (Some(tx), Some(ty)) = (x.checked_sub(self.text_x), y.checked_sub(self.text_y)) else {
            return false;
        };
        let (fx, fy) = (tx / TEXT_SCALE, ty / TEXT_SCALE);
        let (line, row) = (fy / LINE_PITCH, fy % LINE_PITCH);
        let (col, px) = (fx / ADVANCE, fx % ADVANCE);
        self.lines
            .get(line)
            .and_then(|l| l.chars().nth(col))
            .is_some_and(|c| font::ink(c, px, row))
    }
}

/// Renders the indicium as an 8-bit greyscale PNG at 600 dpi (black on white,
/// with a pHYs chunk so it prints at size).
///
/// # Errors
/// [`Error::Render`] if encoding the symbol or the PNG fails.
pub fn render_png(indicium: &Indicium) -> Result<Vec<u8>> {
    render_png_raw(&indicium.to_bytes(), &human_readable(indicium))
}

/// Renders arbitrary `bytes` as the symbol with arbitrary text beside it, in
/// the layout of [`render_png`]. For testing verifiers (tampered or garbage
/// symbols); meters use [`render_png`].
///
/// # Errors
/// [`Error::Render`] if encoding the symbol or the PNG fails.
pub fn render_png_raw(bytes: &[u8], lines: &[String; 4]) -> Result<Vec<u8>> {
    let layout = Layout::new(bytes, lines)?;
    let mut pixels = Vec::with_capacity(layout.width.saturating_mul(layout.height));
    for y in 0..layout.height {
        for x in 0..layout.width {
            pixels.push(if layout.dark_at(x, y) { 0u8 } else { 255u8 });
        }
    }
    let png_error = |_| Error::Render {
        what: "PNG encoding failed",
    };
    let w = u32::try_from(layout.width).map_err(|_| Error::Render {
        what: "image too wide",
    })?;
    let h = u32::try_from(layout.height).map_err(|_| Error::Render {
        what: "image too tall",
    })?;
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_pixel_dims(Some(png::PixelDimensions {
            xppu: PIXELS_PER_METRE,
            yppu: PIXELS_PER_METRE,
            unit: png::Unit::Meter,
        }));
        let mut writer = enc.write_header().map_err(png_error)?;
        writer.write_image_data(&pixels).map_err(png_error)?;
        writer.finish().map_err(png_error)?;
    }
    Ok(out)
}

fn xml_escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// Renders the indicium as SVG with the same geometry as [`render_png`]: one
/// `<path>` of module runs and one `<text>` element per human-readable line.
/// Sized in millimetres for print (600 user units per inch).
///
/// # Errors
/// [`Error::Render`] if encoding the symbol fails.
pub fn render_svg(indicium: &Indicium) -> Result<String> {
    render_svg_raw(&indicium.to_bytes(), &human_readable(indicium))
}

/// [`render_svg`] for arbitrary bytes and text (see [`render_png_raw`]).
///
/// # Errors
/// [`Error::Render`] if encoding the symbol fails.
pub fn render_svg_raw(bytes: &[u8], lines: &[String; 4]) -> Result<String> {
    let layout = Layout::new(bytes, lines)?;
    let mm = |px: usize| format!("{:.3}", px_to_mm(px));
    let mut path = String::new();
    for y in 0..layout.symbol.height() {
        let mut x = 0;
        while x < layout.symbol.width() {
            if layout.symbol.is_dark(x, y) {
                let start = x;
                while layout.symbol.is_dark(x, y) {
                    x += 1;
                }
                path.push_str(&format!("M{start} {y}h{}v1h-{}z", x - start, x - start));
            } else {
                x += 1;
            }
        }
    }
    let mut svg = String::new();
    svg.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}mm\" height=\"{}mm\" viewBox=\"0 0 {} {}\">\n",
        mm(layout.width),
        mm(layout.height),
        layout.width,
        layout.height
    ));
    svg.push_str(&format!(
        "<rect width=\"{}\" height=\"{}\" fill=\"#fff\"/>\n",
        layout.width, layout.height
    ));
    svg.push_str(&format!(
        "<path transform=\"translate({} {}) scale({})\" fill=\"#000\" shape-rendering=\"crispEdges\" d=\"{path}\"/>\n",
        layout.sym_x, layout.sym_y, MODULE_PX
    ));
    let font_px = font::HEIGHT * TEXT_SCALE;
    for (i, line) in layout.lines.iter().enumerate() {
        let baseline = layout.text_y + i * LINE_PITCH * TEXT_SCALE + font_px;
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{baseline}\" font-family=\"DejaVu Sans Mono, monospace\" font-size=\"{}\" fill=\"#000\">{}</text>\n",
            layout.text_x,
            font_px * 10 / 7,
            xml_escape(line)
        ));
    }
    svg.push_str("</svg>\n");
    Ok(svg)
}

/// Millimetres for a length in 600-dpi pixels.
fn px_to_mm(px: usize) -> f64 {
    // Display only; never near money.
    let px = u32::try_from(px).map_or(f64::from(u32::MAX), f64::from);
    px * 25.4 / f64::from(DPI)
}
