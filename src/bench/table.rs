//! The benchmark as a text table, with the peaks it used.

use super::{BenchReport, Peak};

fn opt(v: Option<f64>, digits: usize, suffix: &str) -> String {
    v.map_or("-".to_string(), |x| format!("{x:.digits$}{suffix}"))
}

fn peak_line(name: &str, p: Option<&Peak>, unit: &str) -> String {
    match p {
        Some(p) => format!("  {name:<12} {:>8.1} {unit}  ({})\n", p.rate, p.probe),
        None => format!("  {name:<12} not measured on this CPU\n"),
    }
}

/// The report as a table: one line per row, then the peaks the percentages used.
pub fn render(r: &BenchReport) -> String {
    let mut s = format!(
        "quench kernels: isa {}, {} thread(s), {} rounds, ONNX Runtime {}\n\
         ratios are medians of per-round ratios; GOP/s counts 2 ops per multiply-add\n\n",
        r.isa, r.threads, r.rounds, r.ort_version
    );
    s += &format!(
        "{:<30} {:<16} {:<9} {:<7} {:<34} {:>9} {:>7} {:>8} {:>7} {:>7}  note\n",
        "op",
        "shape M×N×K",
        "precision",
        "runtime",
        "kernel",
        "GOP/s",
        "vs ORT",
        "vs FP32",
        "%peak",
        "%DRAM"
    );
    for row in &r.rows {
        s += &format!(
            "{:<30} {:<16} {:<9} {:<7} {:<34} {:>9} {:>7} {:>8} {:>7} {:>7}  {}\n",
            row.op,
            row.shape.text(),
            format!("{:?}", row.precision).to_lowercase(),
            row.runtime,
            row.kernel,
            opt(row.gops, 1, ""),
            opt(row.vs_ort, 2, "×"),
            opt(row.vs_fp32, 2, "×"),
            opt(row.pct_peak, 0, "%"),
            opt(row.pct_dram, 0, "%"),
            row.note.as_deref().unwrap_or("")
        );
    }
    s += "\npeaks (measured in this run):\n";
    s += &peak_line("fp32", r.peaks.fp32.as_ref(), "GFLOP/s");
    s += &peak_line("int8 quench", r.peaks.int8_quench.as_ref(), "GOP/s");
    s += &peak_line("int8 best", r.peaks.int8_best.as_ref(), "GOP/s");
    s += &peak_line("binary", r.peaks.binary.as_ref(), "GOP/s");
    s += &peak_line("dram", Some(&r.peaks.dram), "GB/s");
    s
}
