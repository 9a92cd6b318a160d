//! QR codes for enrolment: in the terminal, as SVG or as PNG.

use qrcode::render::{svg, unicode};
use qrcode::{EcLevel, QrCode};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("cannot make a QR code: {0}")]
    Encode(String),
    #[error("--qr {0}: the file name must end in .svg or .png")]
    Format(String),
    #[error("--qr {path}: {msg}")]
    Write { path: String, msg: String },
}

fn code(data: &str) -> Result<QrCode, QrError> {
    QrCode::with_error_correction_level(data, EcLevel::M)
        .map_err(|e| QrError::Encode(e.to_string()))
}

/// Half-height blocks, so a QR code fits an 80x24 terminal.
pub fn terminal(data: &str) -> Result<String, QrError> {
    Ok(code(data)?
        .render::<unicode::Dense1x2>()
        .dark_color(unicode::Dense1x2::Light)
        .light_color(unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

/// An SVG image of the QR code (for a web page).
pub fn svg(data: &str) -> Result<String, QrError> {
    Ok(code(data)?
        .render::<svg::Color>()
        .min_dimensions(256, 256)
        .build())
}

/// A PNG of the QR code as a `data:` URI, ready for an `<img src>`.
pub fn png_data_uri(data: &str) -> Result<String, QrError> {
    let png = png_bytes(&code(data)?).map_err(QrError::Encode)?;
    Ok(format!(
        "data:image/png;base64,{}",
        data_encoding::BASE64.encode(&png)
    ))
}

pub fn write_file(data: &str, path: &Path) -> Result<(), QrError> {
    let name = path.display().to_string();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let bytes = match ext.as_deref() {
        Some("svg") => code(data)?
            .render::<svg::Color>()
            .min_dimensions(256, 256)
            .build()
            .into_bytes(),
        Some("png") => png_bytes(&code(data)?).map_err(|msg| QrError::Write {
            path: name.clone(),
            msg,
        })?,
        _ => return Err(QrError::Format(name)),
    };
    std::fs::write(path, bytes).map_err(|e| QrError::Write {
        path: name,
        msg: e.to_string(),
    })
}

fn png_bytes(qr: &QrCode) -> Result<Vec<u8>, String> {
    const SCALE: usize = 8;
    const QUIET: usize = 4;
    let w = qr.width();
    let colors = qr.to_colors();
    let side = (w + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for y in 0..w {
        for x in 0..w {
            if colors[y * w + x] == qrcode::Color::Dark {
                for dy in 0..SCALE {
                    let row = (y + QUIET) * SCALE + dy;
                    let start = row * side + (x + QUIET) * SCALE;
                    pixels[start..start + SCALE].fill(0);
                }
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, side as u32, side as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(|e| e.to_string())?;
        wr.write_image_data(&pixels).map_err(|e| e.to_string())?;
    }
    Ok(out)
}
