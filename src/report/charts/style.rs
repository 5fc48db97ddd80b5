//! The look every chart shares: colours with a meaning, fonts, axis ranges and ticks, and the
//! legend panel drawn beside the plot (never over the data).

use std::ops::Range;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::runtime::RuntimeKind;
use crate::sweep::record::Precision;

/// The font family the embedded DejaVu Sans is registered as.
pub const FONT: &str = "sans-serif";
/// Marks that stand for a shape, not a colour, in legends.
pub const GREY: RGBColor = RGBColor(110, 110, 110);

/// What a drawing function returns.
pub type Drawn<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// The colour of a weight precision.
pub fn precision_colour(p: Precision) -> RGBColor {
    match p {
        Precision::Fp32 => RGBColor(80, 80, 80),
        Precision::Int8 => RGBColor(31, 119, 180),
        Precision::Int4 => RGBColor(230, 120, 0),
        Precision::Binary => RGBColor(200, 30, 40),
    }
}

/// The colour of a runtime.
pub fn runtime_colour(r: RuntimeKind) -> RGBColor {
    match r {
        RuntimeKind::Native => RGBColor(0, 128, 120),
        RuntimeKind::Ort => RGBColor(130, 80, 180),
    }
}

/// A runtime's name in legends.
pub fn runtime_title(r: RuntimeKind) -> &'static str {
    match r {
        RuntimeKind::Native => "native",
        RuntimeKind::Ort => "ONNX Runtime",
    }
}

/// Colours for series that have no meaning of their own (variants in the layer chart).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(230, 120, 0),
    RGBColor(44, 160, 44),
    RGBColor(200, 30, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// The key of a legend entry.
#[derive(Debug, Clone, Copy)]
pub enum Key {
    /// A filled square: a colour's meaning.
    Square(RGBColor),
    /// A circle, filled or hollow.
    Circle(RGBColor, bool),
    /// A triangle, filled or hollow.
    Triangle(RGBColor, bool),
    /// A line in this style.
    Line(ShapeStyle),
    /// A dashed line.
    Dashed(RGBColor),
    /// No mark: a note.
    Note,
}

/// One legend entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The mark.
    pub key: Key,
    /// Its meaning.
    pub text: String,
}

impl Entry {
    /// An entry.
    pub fn new(key: Key, text: impl Into<String>) -> Entry {
        Entry {
            key,
            text: text.into(),
        }
    }
}

/// Characters per legend line before wrapping.
const LEGEND_CHARS: usize = 34;

/// `text` broken into lines of at most `width` characters at spaces (a longer word stands
/// alone).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// Splits `root` into the plot (left) and a legend panel (right) wide enough for `entries`,
/// and draws the legend.
pub fn with_legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    entries: &[Entry],
) -> Result<DrawingArea<DB, Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    if entries.is_empty() {
        return Ok(root.clone());
    }
    let longest = entries
        .iter()
        .flat_map(|e| wrap(&e.text, LEGEND_CHARS))
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0);
    let width = (longest as i32 * 7 + 44).clamp(120, 290);
    let (w, _) = root.dim_in_pixel();
    let (plot, side) = root.split_horizontally(w as i32 - width);
    let text = (FONT, 13)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let mut y = 70;
    for e in entries {
        let (x, c) = (14, (14, y));
        match e.key {
            Key::Square(col) => side.draw(&Rectangle::new(
                [(x - 6, y - 6), (x + 6, y + 6)],
                col.filled(),
            ))?,
            Key::Circle(col, filled) => {
                side.draw(&Circle::new(c, 6, col.filled()))?;
                if !filled {
                    side.draw(&Circle::new(c, 3, WHITE.filled()))?;
                }
            }
            Key::Triangle(col, filled) => {
                side.draw(&TriangleMarker::new(c, 8, col.filled()))?;
                if !filled {
                    side.draw(&TriangleMarker::new(c, 2, WHITE.filled()))?;
                }
            }
            Key::Line(line) => side.draw(&PathElement::new(vec![(x - 9, y), (x + 9, y)], line))?,
            Key::Dashed(col) => {
                for dx in [-9, -1, 7] {
                    side.draw(&PathElement::new(
                        vec![(x + dx, y), (x + dx + 4, y)],
                        col.stroke_width(1),
                    ))?;
                }
            }
            Key::Note => {}
        }
        let indent = if matches!(e.key, Key::Note) { 4 } else { 30 };
        for line in wrap(&e.text, LEGEND_CHARS) {
            side.draw(&Text::new(line, (indent, y), text.clone()))?;
            y += 17;
        }
        y += 6;
    }
    Ok(plot)
}

/// A log-axis range around positive `values`, with a margin on both sides.
pub fn log_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    let lo = if lo.is_finite() { lo } else { 1.0 };
    let hi = hi.max(lo);
    let start = lo / 1.3;
    start..(hi * 1.3).max(start * 2.0)
}

/// Tick values for a log axis: 1-2-5 steps of each power of ten inside the range, finer steps
/// when that gives fewer than four ticks, only powers of ten over more than five decades.
pub fn log_ticks(range: &Range<f64>) -> Vec<f64> {
    let decades = (range.end / range.start).log10();
    let steps: &[&[f64]] = if decades > 5.0 {
        &[&[1.0]]
    } else {
        &[&[1.0, 2.0, 5.0], &[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0]]
    };
    let mut ticks = Vec::new();
    for multiples in steps {
        ticks.clear();
        let mut e = range.start.log10().floor() as i32;
        while 10f64.powi(e) <= range.end {
            for m in multiples.iter() {
                let t = m * 10f64.powi(e);
                if t >= range.start && t <= range.end {
                    ticks.push(t);
                }
            }
            e += 1;
        }
        if ticks.len() >= 4 {
            break;
        }
    }
    ticks
}

/// A linear-axis range around `values` with a margin, kept within `floor..ceil`.
pub fn linear_range(values: impl Iterator<Item = f64>, floor: f64, ceil: f64) -> Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return floor.max(0.0)..ceil.min(1.0);
    }
    let pad = ((hi - lo) * 0.08).max(0.5);
    (lo - pad).max(floor)..(hi + pad).min(ceil)
}

/// A tick label with at most four significant digits and no trailing zeros.
pub fn short_number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}").replace("-0", "0");
    }
    let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 8) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_fall_on_round_numbers_inside_the_range() {
        let r = log_range([0.059, 0.98].into_iter());
        let t = log_ticks(&r);
        assert!(t.len() >= 4, "{t:?}");
        assert!(t.iter().all(|v| r.contains(v)));
        let labels: Vec<String> = t.iter().map(|v| short_number(*v)).collect();
        assert!(labels.contains(&"0.1".to_string()), "{labels:?}");
        // A single value still gets ticks on both sides.
        let single = log_range([0.25].into_iter());
        let labels: Vec<String> = log_ticks(&single)
            .iter()
            .map(|v| short_number(*v))
            .collect();
        assert_eq!(labels, ["0.2", "0.3"]);
        assert!(log_ticks(&(0.15..0.45)).len() >= 4);
    }

    #[test]
    fn tick_labels_are_short_and_distinct() {
        assert_eq!(short_number(0.2), "0.2");
        assert_eq!(short_number(0.30000000000000004), "0.3");
        assert_eq!(short_number(0.123456), "0.1235");
        assert_eq!(short_number(1500.0), "1500");
        assert_eq!(short_number(31.05), "31.05");
        assert_ne!(short_number(31.0), short_number(31.05));
    }

    #[test]
    fn legend_text_wraps_at_spaces() {
        assert_eq!(wrap("a bb ccc dddd", 6), ["a bb", "ccc", "dddd"]);
        assert!(wrap("", 5).is_empty());
    }
}
