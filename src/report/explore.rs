//! Text views of the exploration results: the sensitivity ranking and the search's Pareto
//! front and choice. Pure functions of the reports the `explore` module returns.

use crate::explore::objective::Objective;
use crate::explore::search::{Candidate, SearchReport};
use crate::explore::sensitivity::SensitivityReport;
use crate::explore::setup::Score;
use crate::report::table::{bytes, duration_ms, joules, percent, Table};

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

/// The search result: the runtime note, the Pareto front of what was tried, the chosen
/// assignment beside all-INT8, and the chosen model on the test split.
pub fn search(r: &SearchReport) -> String {
    let objective = |c: &Candidate| match (r.objective, &c.timed) {
        (Objective::Size, _) | (_, None) => bytes(c.bytes),
        (Objective::Latency, Some(t)) => format!(
            "{:.3}x fp32 ({})",
            t.latency_ratio,
            duration_ms(t.latency_ms)
        ),
        (Objective::Energy, Some(t)) => match (t.energy_ratio, t.joules) {
            (Some(ratio), Some(j)) => format!("{ratio:.3}x fp32 ({})", joules(j)),
            _ => "-".into(),
        },
    };
    let mut out = format!(
        "{}: search minimising {} within {} pts of FP32 ({}; ranges: {})\n",
        r.model,
        r.objective.name(),
        format_args!("{:.2}", r.budget * 100.0),
        r.split,
        r.ranges
    );
    if let Some(kind) = r.runtime {
        out += &format!(
            "timed on {kind}{}\n",
            r.runtime_note
                .as_ref()
                .map_or(String::new(), |n| format!(" ({n})"))
        );
    }
    let row = |t: &mut Table, c: &Candidate, mark: &str| {
        t.row([
            format!("{}{mark}", c.index),
            c.step.to_string(),
            c.assignment.clone(),
            accuracy(&c.score),
            drop_points(c.score.drop),
            format!("{:.2e}", c.score.kl),
            bytes(c.bytes),
            objective(c),
        ]);
    };
    let header = [
        "#",
        "step",
        "assignment",
        "held-out acc",
        "Δ pts",
        "KL",
        "size",
        r.objective.name(),
    ];
    let mut t = Table::new(header);
    for &i in &r.front {
        let mark = if i == r.chosen { " *" } else { "" };
        row(&mut t, &r.candidates[i], mark);
    }
    out += &format!(
        "Pareto front of the {} candidates tried (held-out drop vs {}; * chosen):\n",
        r.candidates.len(),
        r.objective.name()
    );
    out += &t.render();
    let chosen = &r.candidates[r.chosen];
    out += &format!("chosen: #{} {}\n", chosen.index, chosen.assignment);
    if let Some(i) = r.all_int8 {
        let c = &r.candidates[i];
        out += &format!(
            "all-INT8 (#{}): {}, {}; chosen: {}, {}\n",
            c.index,
            bytes(c.bytes),
            objective(c),
            bytes(chosen.bytes),
            objective(chosen)
        );
    }
    let t = &r.test;
    out += &format!(
        "test split ({} samples, ONNX Runtime): fp32 {}, chosen {} ({} pts, {} the budget){}; \
         agreement {}, KL {:.2e}\n",
        t.samples,
        t.fp32_accuracy.map_or("-".into(), percent),
        t.chosen_accuracy.map_or("-".into(), percent),
        drop_points(t.drop),
        if t.within_budget { "within" } else { "OVER" },
        t.int8_accuracy
            .map_or(String::new(), |a| format!(", all-INT8 {}", percent(a))),
        percent(t.agreement),
        t.kl
    );
    out += &format!(
        "written: {} ({:.1} s of search)\n",
        r.output.display(),
        r.seconds
    );
    if let Some(s) = &r.stopped {
        out += &format!("stopped early: {s}\n");
    }
    out
}
