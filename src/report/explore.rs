//! Text views of the exploration results: the sensitivity ranking and the search's Pareto
//! front and choice. Pure functions of the reports the `explore` module returns.

use crate::explore::drift::DriftReport;
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
    let latency = |c: &Candidate| {
        c.timed.as_ref().map_or("-".into(), |t| {
            format!(
                "{:.3}x fp32 ({})",
                t.latency_ratio,
                duration_ms(t.latency_ms)
            )
        })
    };
    let energy = |c: &Candidate| match c.timed.as_ref().map(|t| (t.energy_ratio, t.joules)) {
        Some((Some(ratio), Some(j))) if r.objective == Objective::Energy => {
            format!(", energy {ratio:.3}x fp32 ({}/inference)", joules(j))
        }
        _ => String::new(),
    };
    let mut out = format!(
        "{}: search minimising {} within {} pts of FP32 ({}; ranges: {})\n",
        r.model,
        r.objective.name(),
        format_args!("{:.2}", r.budget * 100.0),
        r.split,
        r.ranges
    );
    out += &format!(
        "timed on {} (interleaved rounds against FP32){}\n",
        r.runtime,
        r.runtime_note
            .as_ref()
            .map_or(String::new(), |n| format!("; {n}"))
    );
    let with_energy = r.objective == Objective::Energy;
    let row = |t: &mut Table, c: &Candidate, mark: &str| {
        let mut cells = vec![
            format!("{}{mark}", c.index),
            c.step.to_string(),
            c.assignment.clone(),
            accuracy(&c.score),
            drop_points(c.score.drop),
            format!("{:.2e}", c.score.kl),
            bytes(c.bytes),
            latency(c),
        ];
        if with_energy {
            cells.push(
                c.timed
                    .as_ref()
                    .and_then(|t| t.joules)
                    .map_or("-".into(), joules),
            );
        }
        t.row(cells);
    };
    let mut header = vec![
        "#",
        "step",
        "assignment",
        "held-out acc",
        "Δ pts",
        "KL",
        "size",
        "latency",
    ];
    if with_energy {
        header.push("J/inference");
    }
    let mut t = Table::new(header);
    for &i in &r.front {
        let mark = if i == r.chosen { " *" } else { "" };
        row(&mut t, &r.candidates[i], mark);
    }
    if !r.front.contains(&r.chosen) {
        // Kept over a front point that beat it by less than the objective's noise margin.
        row(&mut t, &r.candidates[r.chosen], " *");
    }
    out += &format!(
        "Pareto front of the {} candidates tried (held-out drop vs {}; * chosen, listed even \
         when a front point beat it only within the {:.0}% noise margin):\n",
        r.candidates.len(),
        r.objective.name(),
        r.objective.margin() * 100.0
    );
    out += &t.render();
    let chosen = &r.candidates[r.chosen];
    out += &format!("chosen: #{} {}\n", chosen.index, chosen.assignment);
    if let Some(i) = r.all_int8 {
        let c = &r.candidates[i];
        out += &format!(
            "all-INT8 (#{}): {}, {}{}; chosen: {}, {}{}\n",
            c.index,
            bytes(c.bytes),
            latency(c),
            energy(c),
            bytes(chosen.bytes),
            latency(chosen),
            energy(chosen),
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

/// The drift report: every compared tensor with its SQNR and largest difference, the first
/// parting one marked.
pub fn drift(r: &DriftReport) -> String {
    let mut out = format!(
        "native vs ONNX Runtime on {} sample(s), comparing {} ({} other tensors not compared); a \
         tensor parts below {:.1} dB SQNR\n",
        r.samples, r.compared, r.skipped, r.threshold_db
    );
    if !r.native_kernels_unchanged {
        out += "note: exposing these tensors changed the native engine's kernels (it fused less), \
                so this compares another path than the model's own\n";
    }
    let mut t = Table::new(["tensor", "node", "op", "SQNR dB", "cosine", "max |Δ|", ""]);
    for (i, d) in r.tensors.iter().enumerate() {
        t.row([
            d.tensor.clone(),
            d.node.clone(),
            d.op_type.clone(),
            format!("{:.1}", d.sqnr_db),
            format!("{:.6}", d.cosine),
            format!("{:.3e}", d.max_abs),
            if Some(i) == r.first_parting {
                "<< first parting".to_string()
            } else {
                String::new()
            },
        ]);
    }
    out += &t.render();
    out += &match r.first_parting.map(|i| &r.tensors[i]) {
        Some(d) => format!(
            "the runtimes part at `{}` (node `{}`, {}): {:.1} dB\n",
            d.tensor, d.node, d.op_type, d.sqnr_db
        ),
        None => "no parting: every compared tensor agrees above the threshold\n".to_string(),
    };
    out
}
