//! What every prescale chart shares: the image format a file name asks for, the backend that
//! writes it (SVG needs no font; PNG registers one found on the system, or named by
//! [`FONT_ENV`]), and compact axis numbers. Used by `simulate`'s charts and `forecast`'s.

use std::{path::Path, sync::OnceLock};

use plotters::{coord::Shift, prelude::*};

use super::PlotError;

/// What to tell a user whose plot path has neither extension.
pub const USE_SVG_OR_PNG: &str = "use a file name ending in .svg or .png";

/// Environment variable naming a TrueType/OpenType font file for PNG text.
pub const FONT_ENV: &str = "PRESCALE_PLOT_FONT";
/// Where fonts usually are (Debian/Ubuntu, Fedora/RHEL, Arch, Alpine, macOS, Windows).
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/usr/share/fonts/freefont/FreeSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];
/// The family name the PNG font is registered under. SVG text uses `sans-serif` instead,
/// which is never registered, so the SVG path provably never needs a font.
const BITMAP_FAMILY: &str = "prescale-plot-sans";
const SVG_FAMILY: &str = "sans-serif";

// The palette every chart draws in.
/// Secondary text (subtitles).
pub const SUBTLE: RGBColor = RGBColor(90, 90, 90);
/// The measured load.
pub const LOAD: RGBColor = RGBColor(40, 40, 40);
/// The point forecast.
pub const FORECAST: RGBColor = RGBColor(230, 120, 0);
/// The forecast band (drawn translucent).
pub const BAND: RGBColor = RGBColor(245, 160, 60);
/// Capacity ready to serve.
pub const READY: RGBColor = RGBColor(31, 119, 180);
/// Steps short of capacity.
pub const SHORT: RGBColor = RGBColor(214, 39, 40);
/// Prescale's replicas.
pub const PRESCALE: RGBColor = RGBColor(31, 119, 180);
/// The reactive baseline's replicas.
pub const REACTIVE: RGBColor = RGBColor(150, 150, 150);
/// The oracle's replicas.
pub const ORACLE: RGBColor = RGBColor(44, 160, 44);
/// Weekend shading.
pub const WEEKEND: RGBColor = RGBColor(243, 243, 246);

/// An image format a chart can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    /// The format `path`'s extension names (`.svg` or `.png`, any case): the one place
    /// that rule lives.
    pub fn of(path: &Path) -> Result<Format, PlotError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "svg" => Ok(Format::Svg),
            "png" => Ok(Format::Png),
            _ => Err(PlotError::UnknownFormat {
                path: path.display().to_string(),
                ext,
            }),
        }
    }
}

/// Draws on the backend `format` names (the PNG one with the font found by `bitmap_font`)
/// at `size` pixels and writes the file. The two closures are the same drawing, once per
/// backend type; each gets the drawing area and the font family to write text in.
pub fn render(
    path: &Path,
    size: (u32, u32),
    format: Format,
    svg: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>, &str) -> Result<(), String>,
    png: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>, &str) -> Result<(), String>,
) -> Result<(), PlotError> {
    let draw_err = |message: String| PlotError::Draw {
        path: path.display().to_string(),
        message,
    };
    match format {
        Format::Svg => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            svg(&root, SVG_FAMILY).map_err(draw_err)?;
            root.present().map_err(|e| draw_err(e.to_string()))
        }
        Format::Png => {
            bitmap_font()?;
            let root = BitMapBackend::new(path, size).into_drawing_area();
            png(&root, BITMAP_FAMILY).map_err(draw_err)?;
            root.present().map_err(|e| draw_err(e.to_string()))
        }
    }
}

/// Finds and registers the PNG font, once per process.
fn bitmap_font() -> Result<(), PlotError> {
    static FONT: OnceLock<Result<(), PlotError>> = OnceLock::new();
    FONT.get_or_init(|| {
        let named = std::env::var_os(FONT_ENV).filter(|p| !p.is_empty());
        let path = match &named {
            Some(p) => std::path::PathBuf::from(p),
            None => FONT_PATHS
                .iter()
                .map(std::path::PathBuf::from)
                .find(|p| p.is_file())
                .ok_or(PlotError::NoFont {
                    env: FONT_ENV,
                    count: FONT_PATHS.len(),
                    first: FONT_PATHS[0],
                })?,
        };
        let bad = |message: String| PlotError::BadFont {
            path: path.display().to_string(),
            message,
        };
        let bytes = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
        // plotters keeps fonts for the life of the process; this happens at most once.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(BITMAP_FAMILY, FontStyle::Normal, bytes)
            .map_err(|_| bad("not a TrueType/OpenType font".into()))
    })
    .clone()
}

/// A compact number for axis labels: `850`, `1.2k`, `12k`, `0.25`.
pub fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 10_000.0 {
        format!("{:.0}k", v / 1_000.0)
    } else if a >= 1_000.0 {
        let s = format!("{:.1}k", v / 1_000.0);
        s.replace(".0k", "k")
    } else if a >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number(0.0), "0");
        assert_eq!(number(850.0), "850");
        assert_eq!(number(1_000.0), "1k");
        assert_eq!(number(1_250.0), "1.2k");
        assert_eq!(number(12_500.0), "12k");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(2.5), "2.5");
    }

    #[test]
    fn formats_by_extension() {
        assert_eq!(Format::of(Path::new("a.svg")), Ok(Format::Svg));
        assert_eq!(Format::of(Path::new("a.PNG")), Ok(Format::Png));
        assert!(matches!(
            Format::of(Path::new("a.jpg")),
            Err(PlotError::UnknownFormat { ext, .. }) if ext == "jpg"
        ));
        assert!(Format::of(Path::new("plan")).is_err());
    }
}
