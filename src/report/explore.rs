//! Text views of the exploration results: the sensitivity ranking and the search's Pareto
//! front and choice. Pure functions of the reports the `explore` module returns.

use crate::explore::sensitivity::SensitivityReport;
use crate::explore::setup::Score;
use crate::report::table::{percent, Table};

/// Accuracy of a score, or `-` without labels.
fn accuracy(s: &Score) -> String {
    s.accuracy.map_or("-".into(), percent)
}

/// The change of a score against FP32, in percentage points (negative: worse).
pub fn drop_points(drop: f64) -> String {
    // `+ 0.0` turns a negative zero into zero, so no change prints as +0.00.
    format!("{:+.2}", -drop * 100.0 + 0.0)
}

/// The sensitivity ranking: a header saying what was measured on what, one row per layer
/// (most sensitive first), and the layers left out.
pub fn sensitivity(r: &SensitivityReport) -> String {
    let mut out = format!(
        "{}: sensitivity to {} ({}; ranges: {}; {} parallel job(s))\n",
        r.model, r.precision, r.split, r.ranges, r.jobs
    );
    out += &format!(
        "fp32 accuracy {}; all layers {}: accuracy {} ({} pts), agreement {}, KL {:.2e}\n",
        accuracy(&r.fp32),
        r.precision,
        accuracy(&r.all_quantized),
        drop_points(r.all_quantized.drop),
        percent(r.all_quantized.agreement),
        r.all_quantized.kl
    );
    let mut t = Table::new([
        "rank",
        "layer",
        "op",
        "params",
        "only: acc",
        "Δ pts",
        "agree",
        "KL",
        "all but: acc",
        "Δ pts",
        "SQNR dB",
    ]);
    for l in &r.layers {
        t.row([
            l.rank.to_string(),
            l.layer.clone(),
            l.op_type.clone(),
            l.params.to_string(),
            accuracy(&l.only),
            drop_points(l.only.drop),
            percent(l.only.agreement),
            format!("{:.2e}", l.only.kl),
            l.all_but.as_ref().map_or("-".into(), accuracy),
            l.all_but
                .as_ref()
                .map_or("-".into(), |s| drop_points(s.drop)),
            format!("{:.1}", l.sqnr_db),
        ]);
    }
    out += &t.render();
    for (layer, why) in &r.skipped {
        out += &format!("skipped {layer}: {why}\n");
    }
    out += "Δ pts: accuracy change against FP32 in percentage points (without labels: top-1 \
            disagreement); only: this layer alone quantized; all but: every other layer \
            quantized, this one FP32.\n";
    out
}
