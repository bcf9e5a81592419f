//! PDF output: the file parses (exact cross-reference offsets, stream length,
//! startxref), the rectangles rebuild the Data Matrix module for module, the
//! text is escaped, the layout is the PNG's pixel for pixel, and (where
//! `pdftoppm` is installed) a 600-dpi raster of the PDF decodes to the bytes.
#![cfg(feature = "images")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use postvault_indicium::decode::decode_png;
use postvault_indicium::pdf::{render_pdf, render_pdf_raw};
use postvault_indicium::render::{
    MODULE_PX, QUIET_MODULES, Symbol, human_readable, render_png, render_png_raw,
};

// ---------------------------------------------------------------------------
// A small PDF reader, just enough for the files render_pdf writes.
// ---------------------------------------------------------------------------

/// What the structural check found.
struct Parsed {
    /// Page width and height, in hundredths of a point.
    media_box: (i64, i64),
    /// The decoded content stream.
    content: String,
    /// The font resource /F1's dictionary.
    font: String,
}

fn number_after(text: &str, key: &str) -> usize {
    let start = text
        .find(key)
        .unwrap_or_else(|| panic!("no {key:?} in {text:?}"))
        + key.len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

/// Checks the file's structure and returns the page's content.
fn parse(pdf: &[u8]) -> Parsed {
    assert!(pdf.is_ascii(), "the PDF should be plain ASCII");
    let text = std::str::from_utf8(pdf).unwrap();
    assert!(text.starts_with("%PDF-1.4\n"), "header: {:?}", &text[..10]);
    assert!(text.ends_with("%%EOF\n"));

    // startxref points at the cross-reference table.
    let sx = text.rfind("startxref\n").expect("startxref");
    let xref: usize = text[sx + 10..].lines().next().unwrap().parse().unwrap();
    assert!(
        text[xref..].starts_with("xref\n"),
        "startxref {xref} misses"
    );
    let mut pos = xref + 5;
    let subsection = text[pos..].lines().next().unwrap();
    assert_eq!(&subsection[..2], "0 ");
    let size: usize = subsection[2..].parse().unwrap();
    pos += subsection.len() + 1;

    // Entries of exactly 20 bytes; each in-use one points at `N 0 obj`.
    let mut bodies = vec![String::new(); size];
    for (n, body) in bodies.iter_mut().enumerate() {
        let entry = &text[pos..pos + 20];
        pos += 20;
        if n == 0 {
            assert_eq!(entry, "0000000000 65535 f \n");
            continue;
        }
        assert_eq!(&entry[10..], " 00000 n \n", "entry {n}: {entry:?}");
        assert!(entry[..10].bytes().all(|b| b.is_ascii_digit()));
        let offset: usize = entry[..10].parse().unwrap();
        let head = format!("{n} 0 obj\n");
        assert!(
            text[offset..].starts_with(&head),
            "entry {n} points at {:?}",
            &text[offset..offset + 12]
        );
        let start = offset + head.len();
        let end = start + text[start..].find("\nendobj\n").expect("endobj");
        *body = text[start..end].to_owned();
    }
    assert_eq!(
        &text[pos..],
        format!("trailer\n<< /Size {size} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"),
        "trailer right after the table"
    );

    // Catalog -> pages -> the one page -> its content and font.
    let object = |n: usize| bodies[n].as_str();
    let catalog = object(1);
    assert!(catalog.contains("/Type /Catalog"), "{catalog}");
    let pages = object(number_after(catalog, "/Pages "));
    assert!(pages.contains("/Type /Pages") && pages.contains("/Count 1"));
    let page = object(number_after(pages, "/Kids ["));
    assert!(page.contains("/Type /Page "), "{page}");
    let font = object(number_after(page, "/F1 ")).to_owned();
    let mb = &page[page.find("/MediaBox [").unwrap() + 11..];
    let mb: Vec<i64> = mb[..mb.find(']').unwrap()].split(' ').map(centi).collect();
    assert_eq!(&mb[..2], &[0, 0]);

    // The stream's /Length is exact: `endstream` follows it directly.
    let stream = object(number_after(page, "/Contents "));
    let length = number_after(stream, "<< /Length ");
    let head = format!("<< /Length {length} >>\nstream\n");
    assert!(stream.starts_with(&head), "{:?}", &stream[..30]);
    let data = &stream[head.len()..];
    assert_eq!(data.len(), length + "\nendstream".len(), "/Length is off");
    assert!(data[length..].starts_with("\nendstream"));
    Parsed {
        media_box: (mb[2], mb[3]),
        content: data[..length].to_owned(),
        font,
    }
}

/// A number written with no exponent, no sign and zero or exactly two
/// decimals, in hundredths.
fn centi(token: &str) -> i64 {
    let (int, frac) = token.split_once('.').unwrap_or((token, "00"));
    assert!(
        !int.is_empty()
            && int.bytes().all(|b| b.is_ascii_digit())
            && frac.len() == 2
            && frac.bytes().all(|b| b.is_ascii_digit()),
        "not a fixed two-decimal number: {token:?}"
    );
    int.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap()
}

/// Hundredths of a point to 600-dpi pixels (0.12 pt each); must be whole.
fn px(centipoints: i64) -> i64 {
    assert_eq!(centipoints % 12, 0, "{centipoints} cpt is not whole pixels");
    centipoints / 12
}

enum Token {
    Word(String),
    /// A literal string: its raw text between the parentheses and its bytes.
    Str(String, Vec<u8>),
}

fn tokenize(content: &str) -> Vec<Token> {
    let b = content.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\n' | b'\r' => i += 1,
            b'(' => {
                let (start, mut depth, mut bytes) = (i + 1, 1, Vec::new());
                i += 1;
                loop {
                    match b[i] {
                        b'\\' => {
                            if b[i + 1].is_ascii_digit() {
                                let oct = std::str::from_utf8(&b[i + 1..i + 4]).unwrap();
                                bytes.push(u8::from_str_radix(oct, 8).unwrap());
                                i += 4;
                            } else {
                                bytes.push(b[i + 1]);
                                i += 2;
                            }
                            continue;
                        }
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    bytes.push(b[i]);
                    i += 1;
                }
                out.push(Token::Str(content[start..i].to_owned(), bytes));
                i += 1;
            }
            _ => {
                let start = i;
                while i < b.len() && !b" \n\r(".contains(&b[i]) {
                    i += 1;
                }
                out.push(Token::Word(content[start..i].to_owned()));
            }
        }
    }
    out
}

/// A filled rectangle in pixels from the page's top-left corner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rect {
    x: i64,
    y: i64,
    w: i64,
    h: i64,
    black: bool,
}

/// A text-showing operation, positions in pixels from the top-left corner.
#[derive(Debug)]
struct Text {
    x: i64,
    baseline: i64,
    font: String,
    size: i64,
    /// Horizontal scaling in hundredths of a percent.
    tz: i64,
    raw: String,
    bytes: Vec<u8>,
}

struct Page {
    width: i64,
    height: i64,
    rects: Vec<Rect>,
    texts: Vec<Text>,
}

/// Runs the content stream's operators: `q Q g re f BT Tf Tm Tz Tj ET` and
/// nothing else.
fn interpret(pdf: &[u8]) -> Page {
    let parsed = parse(pdf);
    let (width, height) = (px(parsed.media_box.0), px(parsed.media_box.1));
    let mut page = Page {
        width,
        height,
        rects: Vec::new(),
        texts: Vec::new(),
    };
    assert!(parsed.font.contains("/Subtype /Type1"), "{}", parsed.font);
    assert!(
        parsed.font.contains("/BaseFont /Helvetica "),
        "{}",
        parsed.font
    );
    let (mut stack, mut path) = (Vec::<Token>::new(), Vec::<[i64; 4]>::new());
    let (mut gray, mut font, mut size, mut tz, mut tm, mut in_text) =
        (None, String::new(), 0, 10_000, (0, 0), false);
    let nums = |stack: &mut Vec<Token>, n: usize| -> Vec<i64> {
        let args = stack.split_off(stack.len() - n);
        args.iter()
            .map(|t| match t {
                Token::Word(w) => centi(w),
                Token::Str(..) => panic!("string operand"),
            })
            .collect()
    };
    for token in tokenize(&parsed.content) {
        let op = match &token {
            Token::Word(w) if !w.starts_with(|c: char| c.is_ascii_digit() || c == '/') => w,
            _ => {
                stack.push(token);
                continue;
            }
        };
        match op.as_str() {
            "q" | "Q" => {}
            "g" => gray = Some(nums(&mut stack, 1)[0]),
            "re" => {
                let a = nums(&mut stack, 4);
                path.push([a[0], a[1], a[2], a[3]]);
            }
            "f" => {
                let black = match gray {
                    Some(0) => true,
                    Some(100) => false,
                    other => panic!("fill colour {other:?}"),
                };
                for [x, y, w, h] in path.drain(..) {
                    let (x, y, w, h) = (px(x), px(y), px(w), px(h));
                    page.rects.push(Rect {
                        x,
                        y: height - y - h,
                        w,
                        h,
                        black,
                    });
                }
            }
            "BT" => in_text = true,
            "ET" => in_text = false,
            "Tf" => {
                size = nums(&mut stack, 1)[0];
                let Some(Token::Word(name)) = stack.pop() else {
                    panic!("Tf without a font name");
                };
                font = name;
            }
            "Tm" => {
                let m = nums(&mut stack, 6);
                assert_eq!(&m[..4], &[100, 0, 0, 100], "only translations");
                tm = (px(m[4]), height - px(m[5]));
            }
            "Tz" => tz = nums(&mut stack, 1)[0],
            "Tj" => {
                assert!(in_text, "Tj outside BT/ET");
                let Some(Token::Str(raw, bytes)) = stack.pop() else {
                    panic!("Tj without a string");
                };
                page.texts.push(Text {
                    x: tm.0,
                    baseline: tm.1,
                    font: font.clone(),
                    size,
                    tz,
                    raw,
                    bytes,
                });
            }
            other => panic!("unexpected operator {other:?}"),
        }
        assert!(stack.is_empty() || !matches!(op.as_str(), "f" | "Tj" | "ET"));
    }
    assert!(stack.is_empty() && path.is_empty() && !in_text);
    page
}

/// The module matrix the black rectangles draw, with the symbol's top-left
/// corner in pixels. Checks every rectangle is a whole run of modules and
/// that runs are merged (no two touch in a row) and never overlap.
fn modules(page: &Page, width: usize, height: usize) -> (Vec<Vec<bool>>, (i64, i64)) {
    let black: Vec<Rect> = page.rects.iter().copied().filter(|r| r.black).collect();
    assert!(!black.is_empty());
    let left = black.iter().map(|r| r.x).min().unwrap();
    let top = black.iter().map(|r| r.y).min().unwrap();
    let m = i64::try_from(MODULE_PX).unwrap();
    let mut grid = vec![vec![false; width]; height];
    for r in &black {
        let (dx, dy) = (r.x - left, r.y - top);
        assert!(
            dx % m == 0 && dy % m == 0 && r.w % m == 0,
            "{r:?} off the grid"
        );
        assert!(r.h == m && r.w > 0, "{r:?} is not one row of modules");
        let row = usize::try_from(dy / m).unwrap();
        let first = usize::try_from(dx / m).unwrap();
        let count = usize::try_from(r.w / m).unwrap();
        assert!(
            row < height && first + count <= width,
            "{r:?} outside the symbol"
        );
        for cell in &mut grid[row][first..first + count] {
            assert!(!*cell, "{r:?} overlaps another rectangle");
            *cell = true;
        }
        let touches = |x: i64| {
            black
                .iter()
                .any(|o| o.y == r.y && o.x <= x && x < o.x + o.w)
        };
        assert!(
            !touches(r.x - 1) && !touches(r.x + r.w),
            "{r:?} is not a merged run"
        );
    }
    (grid, (left, top))
}

fn assert_matrix_is_the_symbol(pdf: &[u8], bytes: &[u8]) {
    let symbol = Symbol::encode(bytes).unwrap();
    let page = interpret(pdf);
    let (grid, _) = modules(&page, symbol.width(), symbol.height());
    for (y, row) in grid.iter().enumerate() {
        for (x, dark) in row.iter().enumerate() {
            assert_eq!(*dark, symbol.is_dark(x, y), "module ({x}, {y})");
        }
    }
}

// ---------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------

#[test]
fn structure_has_exact_xref_offsets_length_and_startxref() {
    let f = common::fixture();
    let pdf = render_pdf(&f.indicium).unwrap();
    if let Some(dir) = std::env::var_os("INDICIUM_TEST_OUT") {
        std::fs::write(std::path::Path::new(&dir).join("indicium.pdf"), &pdf).unwrap();
    }
    let parsed = parse(&pdf);
    assert!(parsed.content.contains(" re\n"));
    // Deterministic: the same indicium gives the same file.
    assert_eq!(pdf, render_pdf(&f.indicium).unwrap());
}

#[test]
fn structure_check_catches_a_shifted_offset() {
    // The parser must be able to fail: one byte inserted before object 3
    // moves it away from its cross-reference entry.
    let f = common::fixture();
    let mut pdf = render_pdf(&f.indicium).unwrap();
    let at = pdf.windows(8).position(|w| w == b"3 0 obj\n").unwrap();
    pdf.insert(at, b'\n');
    assert!(std::panic::catch_unwind(|| parse(&pdf)).is_err());
}

#[test]
fn rectangles_rebuild_the_symbol_module_for_module() {
    let f = common::fixture();
    let bytes = f.indicium.to_bytes();
    let pdf = render_pdf(&f.indicium).unwrap();
    assert_matrix_is_the_symbol(&pdf, &bytes);

    // Black on white: one white rectangle covering the page, drawn first.
    let page = interpret(&pdf);
    let first = page.rects[0];
    assert_eq!(
        (first.x, first.y, first.w, first.h),
        (0, 0, page.width, page.height)
    );
    assert!(!first.black);
    assert_eq!(page.rects.iter().filter(|r| !r.black).count(), 1);

    // The symbol sits inside its quiet zone, at the PNG's true size.
    let symbol = Symbol::encode(&bytes).unwrap();
    let (_, (left, top)) = modules(&page, symbol.width(), symbol.height());
    let quiet = i64::try_from(QUIET_MODULES * MODULE_PX).unwrap();
    assert_eq!(
        (left, top),
        (quiet, quiet),
        "44 modules are taller than the text"
    );
    // 44 modules of 10 px at 600 dpi = 52.80 pt = 18.6 mm.
    let right = page
        .rects
        .iter()
        .filter(|r| r.black)
        .map(|r| r.x + r.w)
        .max()
        .unwrap();
    assert_eq!(right - left, 440);
}

#[test]
fn rectangles_rebuild_other_payloads_too() {
    for bytes in [&b"x"[..], b"hello, indicium", &[0u8; 40], &[0xFF; 200]] {
        let lines = ["A", "B", "C", "D"].map(String::from);
        let pdf = render_pdf_raw(bytes, &lines).unwrap();
        assert_matrix_is_the_symbol(&pdf, bytes);
    }
}

#[test]
fn matrix_check_catches_a_flipped_module() {
    // Drop one rectangle: the rebuilt matrix must differ from the symbol.
    let f = common::fixture();
    let bytes = f.indicium.to_bytes();
    let pdf = String::from_utf8(render_pdf(&f.indicium).unwrap()).unwrap();
    let parsed = parse(pdf.as_bytes());
    let line = parsed
        .content
        .lines()
        .filter(|l| l.ends_with(" re"))
        .nth(40)
        .unwrap();
    let content = parsed.content.replacen(&format!("{line}\n"), "", 1);
    // Rebuild a consistent file around the changed stream.
    let tampered = pdf.replacen(&parsed.content, &content, 1).replacen(
        &format!("/Length {}", parsed.content.len()),
        &format!("/Length {}", content.len()),
        1,
    );
    let fixed = rewrite_xref(tampered.as_bytes());
    parse(&fixed);
    assert!(std::panic::catch_unwind(|| assert_matrix_is_the_symbol(&fixed, &bytes)).is_err());
}

/// Recomputes the cross-reference table and startxref of a tampered file.
fn rewrite_xref(pdf: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(pdf).unwrap();
    let xref = text.rfind("xref\n0 ").unwrap();
    let mut out = text[..xref].to_owned();
    let mut entries = String::from("0000000000 65535 f \n");
    let mut n = 1;
    while let Some(at) = out.find(&format!("\n{n} 0 obj\n")) {
        entries.push_str(&format!("{:010} 00000 n \n", at + 1));
        n += 1;
    }
    let start = out.len();
    out.push_str(&format!(
        "xref\n0 {n}\n{entries}trailer\n<< /Size {n} /Root 1 0 R >>\nstartxref\n{start}\n%%EOF\n"
    ));
    out.into_bytes()
}

#[test]
fn human_readable_lines_are_helvetica_text() {
    let f = common::fixture();
    let lines = human_readable(&f.indicium);
    let page = interpret(&render_pdf(&f.indicium).unwrap());
    assert_eq!(page.texts.len(), 4);
    for (i, (text, line)) in page.texts.iter().zip(&lines).enumerate() {
        assert_eq!(text.bytes, line.as_bytes());
        assert_eq!(text.raw, *line, "nothing to escape in {line:?}");
        assert_eq!(text.font, "/F1");
        // 80 px, as in the SVG: 9.60 pt.
        assert_eq!(text.size, 960);
        // Helvetica is narrower than the 5x7 column for these lines.
        assert_eq!(text.tz, 10_000, "{line:?}");
        assert_eq!(text.x, page.texts[0].x);
        // Lines 10 font pixels of 8 px apart.
        assert_eq!(
            text.baseline,
            page.texts[0].baseline + 80 * i64::try_from(i).unwrap()
        );
    }
    assert_eq!(lines[0], "POSTAGE $0.730");
}

#[test]
fn parentheses_backslashes_and_other_bytes_are_escaped() {
    let lines = [
        "A(B)C".to_owned(),
        "back\\slash".to_owned(),
        "((nested) )".to_owned(),
        "caf\u{e9} \u{20ac}\n".to_owned(),
    ];
    let pdf = render_pdf_raw(b"escape test", &lines).unwrap();
    let page = interpret(&pdf);
    let raw: Vec<&str> = page.texts.iter().map(|t| t.raw.as_str()).collect();
    assert_eq!(
        raw,
        [
            "A\\(B\\)C",
            "back\\\\slash",
            "\\(\\(nested\\) \\)",
            "caf\\351 ??"
        ]
    );
    let decoded: Vec<&[u8]> = page.texts.iter().map(|t| t.bytes.as_slice()).collect();
    assert_eq!(
        decoded,
        [&b"A(B)C"[..], b"back\\slash", b"((nested) )", b"caf\xe9 ??"]
    );
    let content = parse(&pdf).content;
    assert!(content.contains("(A\\(B\\)C) Tj\n"), "{content}");
    assert!(content.contains("(back\\\\slash) Tj\n"));
}

#[test]
fn lines_wider_than_the_column_are_squeezed_to_fit() {
    // The column is as wide as the longest line in the 5x7 font, 48 px a
    // character. Helvetica's E is 667/1000 em, 53.36 px at 80 px: six of them
    // need 48 / 53.36 = 89.955 % (rounded down); the shorter lines fit.
    let lines = ["EEE", "EEEEEE", "E", "EEEE"].map(String::from);
    let page = interpret(&render_pdf_raw(b"squeeze", &lines).unwrap());
    let tz: Vec<i64> = page.texts.iter().map(|t| t.tz).collect();
    assert_eq!(tz, [10_000, 8_995, 10_000, 10_000]);
}

/// The PDF's page, rectangles and text positions against the PNG's pixels.
fn assert_layout_matches_png(bytes: &[u8], lines: &[String; 4]) {
    let page = interpret(&render_pdf_raw(bytes, lines).unwrap());
    let png = image::load_from_memory(&render_png_raw(bytes, lines).unwrap())
        .unwrap()
        .to_luma8();
    let (w, h) = (i64::from(png.width()), i64::from(png.height()));
    assert_eq!((page.width, page.height), (w, h), "page size in pixels");

    let mut vector = vec![false; usize::try_from(w * h).unwrap()];
    for r in page.rects.iter().filter(|r| r.black) {
        for y in r.y..r.y + r.h {
            for x in r.x..r.x + r.w {
                vector[usize::try_from(y * w + x).unwrap()] = true;
            }
        }
    }
    // Every rectangle pixel is dark in the PNG; every other dark PNG pixel
    // is text, right of the text origin, in the four lines' bands.
    let text_x = page.texts[0].x;
    let mut text_rows = std::collections::BTreeSet::new();
    let mut text_left = i64::MAX;
    for (x, y, p) in png.enumerate_pixels() {
        let (x, y) = (i64::from(x), i64::from(y));
        let dark = p.0[0] < 128;
        let drawn = vector[usize::try_from(y * w + x).unwrap()];
        assert!(!drawn || dark, "({x}, {y}) is a module in the PDF only");
        if dark && !drawn {
            assert!(x >= text_x, "({x}, {y}) is a module in the PNG only");
            text_rows.insert(y);
            text_left = text_left.min(x);
        }
    }
    assert_eq!(text_left, text_x, "text starts where the PNG's does");
    for t in &page.texts {
        assert_eq!(t.x, text_x);
        // The 5x7 glyphs' rows are the 56 above the baseline.
        let band: Vec<i64> = text_rows
            .range(t.baseline - 56..t.baseline)
            .copied()
            .collect();
        assert_eq!(band, (t.baseline - 56..t.baseline).collect::<Vec<_>>());
    }
    assert_eq!(text_rows.len(), 4 * 56, "no text outside the four bands");
}

#[test]
fn layout_is_the_png_layout_pixel_for_pixel() {
    // E has a full top row, bottom row and left column in the 5x7 font, so
    // its ink marks each line's box exactly.
    let lines = ["EEE", "EEEEEE", "E", "EEEE"].map(String::from);
    let f = common::fixture();
    // A 44x44 symbol, taller than the text...
    assert_layout_matches_png(&f.indicium.to_bytes(), &lines);
    // ...and a 10x10 one, shorter than the text (centred vertically).
    assert_layout_matches_png(b"x", &lines);
}

#[test]
fn rasterised_at_600_dpi_the_pdf_decodes_to_the_indicium() {
    let have = std::process::Command::new("which")
        .arg("pdftoppm")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        eprintln!("note: pdftoppm not installed (poppler-utils); raster check skipped");
        return;
    }
    let f = common::fixture();
    let bytes = f.indicium.to_bytes();
    let pdf = render_pdf(&f.indicium).unwrap();
    let dir = std::env::temp_dir().join(format!("postvault-pdf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("indicium.pdf");
    std::fs::write(&input, &pdf).unwrap();
    let status = std::process::Command::new("pdftoppm")
        // Anti-aliasing stays on: edges on pixel boundaries then come out
        // exact, where poppler's aliased fill also inks the pixels just past
        // a rectangle's right and bottom edges.
        .args(["-r", "600", "-png", "-gray"])
        .arg("-singlefile")
        .arg(&input)
        .arg(dir.join("raster"))
        .status()
        .unwrap();
    assert!(status.success(), "pdftoppm failed: {status}");
    let raster = std::fs::read(dir.join("raster.png")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(decode_png(&raster).unwrap(), bytes);

    // At 600 dpi the page is the PNG's canvas and the symbol its pixels.
    let ours = image::load_from_memory(&render_png(&f.indicium).unwrap())
        .unwrap()
        .to_luma8();
    let theirs = image::load_from_memory(&raster).unwrap().to_luma8();
    assert_eq!(theirs.dimensions(), ours.dimensions());
    let symbol_right = QUIET_MODULES * MODULE_PX * 2 + 440;
    for (x, y, p) in ours.enumerate_pixels() {
        if usize::try_from(x).unwrap() < symbol_right {
            let theirs = theirs.get_pixel(x, y).0[0] < 128;
            assert_eq!(p.0[0] < 128, theirs, "pixel ({x}, {y})");
        }
    }
}
