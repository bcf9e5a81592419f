//! Rendering and decoding: PNG → rxing → the exact bytes; SVG content; print geometry.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use postvault_indicium::decode::{decode_luma, decode_png};
use postvault_indicium::error::ImageFailure;
use postvault_indicium::render::{
    DPI, MODULE_PX, Symbol, human_readable, render_png, render_png_raw, render_svg,
};
use postvault_indicium::{CheckName, Error, Input, Outcome};

#[test]
fn png_round_trip_gives_the_exact_bytes_and_verifies() {
    let f = common::fixture();
    let png = render_png(&f.indicium).unwrap();
    if let Some(dir) = std::env::var_os("INDICIUM_TEST_OUT") {
        std::fs::write(std::path::Path::new(&dir).join("indicium.png"), &png).unwrap();
        std::fs::write(
            std::path::Path::new(&dir).join("indicium.svg"),
            render_svg(&f.indicium).unwrap(),
        )
        .unwrap();
    }
    assert_eq!(decode_png(&png).unwrap(), f.indicium.to_bytes());
    let report = common::check(
        Input::Png(&png),
        f.ca.certificate(),
        Some(f.psd_cert.certificate()),
    );
    assert!(report.valid(), "{report:#?}");
    assert_eq!(report.outcome(CheckName::Decode), Some(&Outcome::Pass));
    assert_eq!(report.fields.as_ref(), Some(&f.data));
}

#[test]
fn png_is_600_dpi_greyscale_with_the_symbol_at_print_size() {
    let f = common::fixture();
    let png = render_png(&f.indicium).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(&png));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    let dims = info.pixel_dims.unwrap();
    assert_eq!(dims.unit, png::Unit::Meter);
    // 600 dpi = 23622 px/m.
    assert_eq!((dims.xppu, dims.yppu), (23_622, 23_622));
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    assert_eq!(DPI, 600);
    // 115 bytes in Base 256 need 117 codewords: the 44x44 square symbol.
    let symbol = Symbol::encode(&f.indicium.to_bytes()).unwrap();
    assert_eq!((symbol.width(), symbol.height()), (44, 44));
    // 44 modules of 10 px at 600 dpi: 18.6 mm.
    assert!(info.width as usize > 44 * MODULE_PX && info.height as usize >= 44 * MODULE_PX);
}

#[test]
fn svg_has_the_human_readable_part() {
    let f = common::fixture();
    let svg = render_svg(&f.indicium).unwrap();
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    for s in ["$0.730", "2026-05-14", "12345-6789", "PV00001234"] {
        assert!(svg.contains(s), "{s} missing from\n{svg}");
    }
    assert_eq!(svg.matches("<text ").count(), 4);
    assert_eq!(
        human_readable(&f.indicium),
        [
            "POSTAGE $0.730",
            "DATE 2026-05-14",
            "ORIGIN ZIP 12345-6789",
            "METER PV00001234"
        ]
    );
}

#[test]
fn the_text_beside_the_symbol_does_not_change_what_decodes() {
    let f = common::fixture();
    let long = "W".repeat(40);
    let lines = [long.clone(), long.clone(), long.clone(), long];
    let png = render_png_raw(&f.indicium.to_bytes(), &lines).unwrap();
    assert_eq!(decode_png(&png).unwrap(), f.indicium.to_bytes());
}

#[test]
fn decoding_survives_a_rotated_scan() {
    // A scan is rarely square to the page: rotate the rendered image by 90 degrees.
    let f = common::fixture();
    let png = render_png(&f.indicium).unwrap();
    let img = image::load_from_memory(&png).unwrap().to_luma8();
    let (w, h) = img.dimensions();
    let mut rotated = vec![255u8; (w * h) as usize];
    for y in 0..h {
        for x in 0..w {
            // (x, y) -> (h - 1 - y, x) in an h-wide image.
            rotated[(x * h + (h - 1 - y)) as usize] = img.get_pixel(x, y).0[0];
        }
    }
    assert_eq!(decode_luma(rotated, h, w).unwrap(), f.indicium.to_bytes());
}

#[test]
fn unreadable_images_are_told_apart() {
    assert_eq!(
        decode_png(b"this is not an image"),
        Err(Error::ImageUnreadable {
            reason: ImageFailure::NotPng
        })
    );
    let f = common::fixture();
    let png = render_png(&f.indicium).unwrap();
    assert_eq!(
        decode_png(&png[..png.len() / 2]),
        Err(Error::ImageUnreadable {
            reason: ImageFailure::Corrupt
        })
    );
    // A valid PNG with no symbol in it.
    let mut blank = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut blank, 300, 200);
        enc.set_color(png::ColorType::Grayscale);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&vec![255u8; 300 * 200]).unwrap();
    }
    assert_eq!(decode_png(&blank), Err(Error::NoBarcodeFound));
}

#[test]
fn svg_path_draws_exactly_the_symbol() {
    let f = common::fixture();
    let svg = render_svg(&f.indicium).unwrap();
    let symbol = Symbol::encode(&f.indicium.to_bytes()).unwrap();
    let d = svg
        .split(" d=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let mut grid = vec![false; symbol.width() * symbol.height()];
    for run in d.split('z').filter(|s| !s.is_empty()) {
        // M{x} {y}h{n}v1h-{n}
        let rest = run.strip_prefix('M').unwrap();
        let (xy, tail) = rest.split_once('h').unwrap();
        let (x, y) = xy.split_once(' ').unwrap();
        let (n, back) = tail.split_once("v1h-").unwrap();
        assert_eq!(n, back);
        let (x, y, n): (usize, usize, usize) =
            (x.parse().unwrap(), y.parse().unwrap(), n.parse().unwrap());
        for i in x..x + n {
            assert!(!grid[y * symbol.width() + i], "module drawn twice");
            grid[y * symbol.width() + i] = true;
        }
    }
    for y in 0..symbol.height() {
        for x in 0..symbol.width() {
            assert_eq!(
                grid[y * symbol.width() + x],
                symbol.is_dark(x, y),
                "({x}, {y})"
            );
        }
    }
}
