//! The layers screen: per-layer SQNR and cosine of the selected variant against FP32, worst
//! first, with each layer's output shape and MACs, from the record's `layers` (measured when the variant was made, so any runtime's
//! record of the variant will do).

use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table};
use ratatui::Frame;

use super::app::App;
use super::grid::{cell_key, RowKey, Verdict};
use crate::report::table::count;
use crate::sweep::record::LayerRecord;

/// The variant's layers, worst SQNR first (identical outputs, `None`, last).
pub fn worst_first(layers: &[LayerRecord]) -> Vec<&LayerRecord> {
    let mut v: Vec<&LayerRecord> = layers.iter().collect();
    v.sort_by(|a, b| match (a.sqnr_db, b.sqnr_db) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    v
}

/// Draws the layers of the selected variant into `area`.
pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let t = app.theme;
    let Some(key) = app.selected() else {
        f.render_widget(Paragraph::new("No cell selected.").style(t.muted()), area);
        return;
    };
    let row = RowKey::of(&key);
    let layers = app
        .grid()
        .get(&key)
        .filter(|r| !r.layers.is_empty())
        .or_else(|| {
            app.grid()
                .cols()
                .iter()
                .filter_map(|c| app.grid().get(&cell_key(&row, c)))
                .find(|r| !r.layers.is_empty())
        })
        .map(|r| r.layers.as_slice())
        .unwrap_or_default();
    let title = Line::from(vec![
        Span::styled(row.label(), t.accent()),
        Span::styled(" · per-layer error vs FP32, worst first", t.muted()),
    ]);
    if layers.is_empty() {
        let why = if key.precision == crate::sweep::record::Precision::Fp32 {
            "FP32 is the reference: select a quantized row (↑↓)."
        } else {
            "No per-layer figures recorded for this variant."
        };
        f.render_widget(
            Paragraph::new(vec![title, Line::from(Span::styled(why, t.muted()))]),
            area,
        );
        return;
    }
    let [head, body] =
        ratatui::layout::Layout::vertical([Constraint::Length(1), Constraint::Min(2)]).areas(area);
    f.render_widget(Paragraph::new(title), head);
    let name_w = layers
        .iter()
        .map(|l| l.layer.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 40) as u16;
    let rows: Vec<Row> = worst_first(layers)
        .into_iter()
        .map(|l| {
            let (text, style) = match l.sqnr_db {
                Some(db) => (
                    format!("{db:7.1}"),
                    t.verdict(Some(if db < 20.0 {
                        Verdict::Poor
                    } else if db < 30.0 {
                        Verdict::Fair
                    } else {
                        Verdict::Good
                    })),
                ),
                None => ("  exact".to_string(), t.verdict(Some(Verdict::Good))),
            };
            let shape = match l.output_shape.as_slice() {
                [] => "–".to_string(),
                dims => dims
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join("×"),
            };
            let macs = match l.macs {
                0 => "–".to_string(),
                m => count(m),
            };
            Row::new(vec![
                Line::from(l.layer.clone()),
                Line::from(l.op_type.clone()),
                Line::from(l.precision.clone()),
                Line::from(shape),
                Line::from(format!("{macs:>6}")),
                Line::from(Span::styled(text, style)),
                Line::from(format!("{:.5}", l.cosine)),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(name_w),
            Constraint::Length(7),
            Constraint::Length(13),
            Constraint::Length(11),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(8),
        ],
    )
    .header(
        Row::new([
            "layer",
            "op",
            "as",
            "out shape",
            "MACs",
            "SQNR dB",
            "cosine",
        ])
        .style(t.header()),
    )
    .column_spacing(1);
    f.render_widget(table, body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(name: &str, db: Option<f64>) -> LayerRecord {
        LayerRecord {
            layer: name.into(),
            op_type: "Conv".into(),
            precision: "int8".into(),
            sqnr_db: db,
            cosine: 1.0,
            output_shape: vec![1, 8, 4, 4],
            macs: 1152,
        }
    }

    #[test]
    fn worst_sqnr_comes_first_and_exact_layers_last() {
        let ls = [
            layer("a", Some(30.0)),
            layer("b", None),
            layer("c", Some(12.5)),
        ];
        let order: Vec<&str> = worst_first(&ls).iter().map(|l| l.layer.as_str()).collect();
        assert_eq!(order, ["c", "a", "b"]);
    }
}
