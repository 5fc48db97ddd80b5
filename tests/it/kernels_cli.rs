//! `quench kernels --quick --json`: every row parses and names the kernel this process dispatches.

use crate::common::quench;
use quench::kernels::{b1, f32 as kf32, i8 as ki8, isa, q4};

#[test]
fn quick_json_rows_parse_and_name_the_dispatched_kernels() {
    let out = quench(&["kernels", "--quick", "--json", "--rounds", "2"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["isa"], isa().name());
    assert_eq!(report["rounds"], 2);
    assert!(report["peaks"]["dram"]["rate"].as_f64().unwrap() > 0.0);
    let rows = report["rows"].as_array().unwrap();
    // Two quick shapes × (2 FP32 + 2 INT8 + 4 4-bit + 1 binary) cases.
    assert_eq!(rows.len(), 2 * 9);
    for row in rows {
        let m = row["shape"]["m"].as_u64().unwrap() as usize;
        assert!(row["shape"]["n"].as_u64().unwrap() > 0 && row["shape"]["k"].as_u64().unwrap() > 0);
        let gops = row["gops"].as_f64().unwrap();
        assert!(gops.is_finite() && gops > 0.0, "{row}");
        let kernel = row["kernel"].as_str().unwrap();
        let precision = row["precision"].as_str().unwrap();
        match row["runtime"].as_str().unwrap() {
            "ort" => {
                assert!(kernel.starts_with("ort "), "{row}");
                assert!(row["vs_ort"].is_null(), "{row}");
            }
            "quench" => {
                let expected: Vec<String> = match precision {
                    "fp32" => vec![kf32::gemm_kernel_name()],
                    "int8" if m == 1 => vec![ki8::gemv_kernel_name()],
                    "int8" => vec![ki8::gemm_kernel_name()],
                    "q4" => vec![
                        q4::kernel_name(m, q4::Q4Mode::F32),
                        q4::kernel_name(m, q4::Q4Mode::Int8),
                    ],
                    "binary" => vec![b1::binary_kernel_name()],
                    other => panic!("unknown precision {other}"),
                };
                assert!(
                    expected.iter().any(|e| e == kernel),
                    "{kernel} not in {expected:?}"
                );
                if precision == "binary" {
                    assert_eq!(row["note"], "ORT has no 1-bit kernel");
                    assert!(row["vs_ort"].is_null());
                } else {
                    assert!(row["vs_ort"].as_f64().unwrap() > 0.0, "{row}");
                }
                if precision != "fp32" {
                    assert!(row["vs_fp32"].as_f64().unwrap() > 0.0, "{row}");
                }
            }
            other => panic!("unknown runtime {other}"),
        }
    }
}
