//! The engine's integer operators on small graphs: the dynamic INT8 chain against a reference
//! written from the ONNX definitions (bit-exact), grouped dynamic Convs against the dequantized
//! convolution and ONNX Runtime, and untrusted parameters refused with an error naming the node.

use crate::common::{assert_close, graph, node, values};
use quench::engine::ops::integer::{dynamic_qparams, quantize_u8};
use quench::engine::Plan;
use quench::graph::{Attr, Graph};
use quench::runtime::ort::{OrtOptions, OrtRuntime};
use quench::runtime::Runtime;
use quench::tensor::{Tensor, TensorData};

const K: usize = 37;
const N: usize = 11;

/// `x [2, K] → DynamicQuantizeLinear → MatMulInteger(w [K, N] s8, per-column zero points) →
/// Cast → Mul(x_scale · w_scale) → Add(bias) → Relu`.
fn dynamic_chain(w_scale: Vec<f32>) -> Graph {
    let w: Vec<i8> = (0..K * N).map(|i| ((i * 37 + 11) % 255) as i8).collect();
    let wzp: Vec<i8> = (0..N).map(|j| (j as i8) - 5).collect();
    let nodes = vec![
        node(
            "DynamicQuantizeLinear",
            "dql",
            &["x"],
            &["xq", "xs", "xzp"],
            vec![],
        ),
        node(
            "MatMulInteger",
            "mmi",
            &["xq", "w", "xzp", "wzp"],
            &["acc"],
            vec![],
        ),
        node(
            "Cast",
            "cast",
            &["acc"],
            &["accf"],
            vec![("to", Attr::Int(1))],
        ),
        node("Mul", "scales", &["xs", "ws"], &["s"], vec![]),
        node("Mul", "mul", &["accf", "s"], &["m"], vec![]),
        node("Add", "add", &["m", "b"], &["a"], vec![]),
        node("Relu", "relu", &["a"], &["y"], vec![]),
    ];
    graph(
        13,
        &[("x", 2)],
        &["y"],
        nodes,
        vec![
            ("w", Tensor::new(vec![K, N], TensorData::I8(w)).unwrap()),
            ("wzp", Tensor::new(vec![N], TensorData::I8(wzp)).unwrap()),
            (
                "ws",
                Tensor::from_f32(vec![w_scale.len()], w_scale).unwrap(),
            ),
            ("b", Tensor::from_f32(vec![N], values(N, 3)).unwrap()),
        ],
    )
}

/// The chain computed from the ONNX definitions, node by node.
fn reference(g: &Graph, x: &[f32], rows: usize) -> Vec<f32> {
    let (s, zp) = dynamic_qparams(x);
    let mut q = vec![0u8; x.len()];
    quantize_u8(x, s, zp, &mut q);
    let i8s = |name: &str| match g.initializers[name].data() {
        TensorData::I8(v) => v.clone(),
        _ => unreachable!(),
    };
    let (w, wzp) = (i8s("w"), i8s("wzp"));
    let ws = g.initializers["ws"].as_f32().unwrap();
    let b = g.initializers["b"].as_f32().unwrap();
    let mut y = vec![0.0f32; rows * N];
    for r in 0..rows {
        for j in 0..N {
            let acc: i32 = (0..K)
                .map(|k| {
                    (i32::from(q[r * K + k]) - i32::from(zp))
                        * (i32::from(w[k * N + j]) - i32::from(wzp[j]))
                })
                .sum();
            let scale = s * ws[if ws.len() == 1 { 0 } else { j }];
            let v = acc as f32 * scale + b[j];
            y[r * N + j] = if v > 0.0 { v } else { 0.0 };
        }
    }
    y
}

fn plan_run(g: &Graph, x: &Tensor) -> Result<Vec<Tensor>, quench::engine::EngineError> {
    let mut plan = Plan::new(g, &[("x", x.shape().to_vec())], 1)?;
    plan.run(&[("x", x)])
}

/// The inputs of the ONNX operator examples; expected values as ONNX Runtime 1.32 computes them.
#[test]
fn dynamic_quantize_linear_matches_the_onnx_examples() {
    let cases: [(&[f32], f32, u8, &[u8]); 3] = [
        (
            &[0.0, 2.0, -3.0, -2.5, 1.34, 0.5],
            0.019_607_844,
            153,
            &[153, 255, 0, 26, 221, 179],
        ),
        (
            &[-1.0, -2.1, -1.3, -2.5, -3.34, -4.0],
            0.015_686_275,
            255,
            &[191, 121, 172, 96, 42, 0],
        ),
        (
            &[
                1.0, 2.1, 1.3, 2.5, 3.34, 4.0, 1.5, 2.6, 3.9, 4.0, 3.0, 2.345,
            ],
            0.015_686_275,
            0,
            &[64, 134, 83, 159, 213, 255, 96, 166, 249, 255, 191, 149],
        ),
    ];
    for (x, scale, zp, want) in cases {
        let (s, z) = dynamic_qparams(x);
        assert_eq!((s, z), (scale, zp), "{x:?}");
        let mut q = vec![0u8; x.len()];
        quantize_u8(x, s, z, &mut q);
        assert_eq!(q, want, "{x:?}");
    }
    // An all-zero tensor gets scale 1 (as ORT), and halves round to even.
    assert_eq!(dynamic_qparams(&[0.0; 5]), (1.0, 0));
    let mut q = [0u8; 4];
    quantize_u8(&[0.5, 1.5, 2.5, 300.0], 1.0, 0, &mut q);
    assert_eq!(q, [0, 2, 2, 255]);
}

#[test]
fn dynamic_matmul_chain_is_bit_exact() {
    for ws in [vec![0.01], (0..N).map(|j| 0.002 * (j + 1) as f32).collect()] {
        let g = dynamic_chain(ws);
        let x = Tensor::from_f32(vec![2, K], values(2 * K, 9)).unwrap();
        let got = plan_run(&g, &x).unwrap();
        let want = reference(&g, x.as_f32().unwrap(), 2);
        assert_eq!(got[0].shape(), &[2, N]);
        assert_eq!(got[0].as_f32().unwrap(), want.as_slice());
    }
}

#[test]
fn bad_integer_parameters_name_the_node() {
    let x = Tensor::from_f32(vec![2, K], values(2 * K, 9)).unwrap();
    for bad in [0.0, f32::NAN, -1.0] {
        let err = plan_run(&dynamic_chain(vec![bad]), &x)
            .unwrap_err()
            .to_string();
        assert!(err.contains("mmi") && err.contains("scale"), "{err}");
    }
    let err = plan_run(&dynamic_chain(vec![0.1; N + 1]), &x)
        .unwrap_err()
        .to_string();
    assert!(err.contains("mmi"), "{err}");

    // A MatMulInteger whose accumulators are read by something else than a Cast.
    let mut g = dynamic_chain(vec![0.1]);
    g.nodes[2].op_type = "Neg".into();
    let err = plan_run(&g, &x).unwrap_err().to_string();
    assert!(err.contains("mmi") && err.contains("Cast"), "{err}");

    // A weight zero point of the wrong length.
    let mut g = dynamic_chain(vec![0.1]);
    g.initializers.insert(
        "wzp".into(),
        Tensor::new(vec![3], TensorData::I8(vec![0; 3])).unwrap(),
    );
    let err = plan_run(&g, &x).unwrap_err().to_string();
    assert!(err.contains("mmi") && err.contains("zero point"), "{err}");
}

#[test]
fn bad_matmulnbits_names_the_node() {
    let (k, n, block) = (64usize, 8usize, 32usize);
    let mk = |bits: i64, scales: usize| {
        let mut nb = node(
            "MatMulNBits",
            "q4",
            &["x", "b", "s"],
            &["y"],
            vec![
                ("K", Attr::Int(k as i64)),
                ("N", Attr::Int(n as i64)),
                ("bits", Attr::Int(bits)),
                ("block_size", Attr::Int(block as i64)),
            ],
        );
        nb.domain = "com.microsoft".into();
        let blocks = k / block;
        graph(
            13,
            &[("x", 2)],
            &["y"],
            vec![nb],
            vec![
                (
                    "b",
                    Tensor::new(
                        vec![n, blocks, block / 2],
                        TensorData::U8(vec![0x98; n * k / 2]),
                    )
                    .unwrap(),
                ),
                (
                    "s",
                    Tensor::from_f32(vec![scales], vec![0.5; scales]).unwrap(),
                ),
            ],
        )
    };
    let x = Tensor::from_f32(vec![1, k], values(k, 4)).unwrap();
    // Every weight is (8 - 8) or (9 - 8) times 0.5: the low nibble is 8, the high one 9.
    let y = plan_run(&mk(4, n * 2), &x).unwrap();
    let xs = x.as_f32().unwrap();
    let odd: f32 = xs.iter().skip(1).step_by(2).sum::<f32>() * 0.5;
    for v in y[0].as_f32().unwrap() {
        assert!((v - odd).abs() < 1e-4, "{v} vs {odd}");
    }
    let err = plan_run(&mk(3, n * 2), &x).unwrap_err().to_string();
    assert!(err.contains("q4") && err.contains("bits"), "{err}");
    let err = plan_run(&mk(4, n), &x).unwrap_err().to_string();
    assert!(err.contains("q4") && err.contains("scales"), "{err}");
}

/// A grouped Conv: `x [2, C, 7, 6] → Conv(w [C_out, C / group, 3, 3], bias, group, strides,
/// pads 1)`.
#[derive(Clone, Copy, Debug)]
struct GroupedConv {
    c: usize,
    c_out: usize,
    group: usize,
    strides: [usize; 2],
}

impl GroupedConv {
    /// Output height and width.
    fn out_hw(&self) -> [usize; 2] {
        [
            (7 + 2 - 3) / self.strides[0] + 1,
            (6 + 2 - 3) / self.strides[1] + 1,
        ]
    }

    fn input(&self) -> Tensor {
        Tensor::from_f32(vec![2, self.c, 7, 6], values(2 * self.c * 42, 9)).unwrap()
    }

    fn bias(&self) -> Vec<f32> {
        values(self.c_out, 4)
    }

    /// The FP32 model.
    fn graph(&self) -> Graph {
        let cg = self.c / self.group;
        let w =
            Tensor::from_f32(vec![self.c_out, cg, 3, 3], values(self.c_out * cg * 9, 3)).unwrap();
        let b = Tensor::from_f32(vec![self.c_out], self.bias()).unwrap();
        let strides = self.strides.iter().map(|&s| s as i64).collect();
        let conv = node(
            "Conv",
            "gconv",
            &["x", "w", "b"],
            &["y"],
            vec![
                ("group", Attr::Int(self.group as i64)),
                ("kernel_shape", Attr::Ints(vec![3, 3])),
                ("strides", Attr::Ints(strides)),
                ("pads", Attr::Ints(vec![1, 1, 1, 1])),
            ],
        );
        graph(
            13,
            &[("x", 4)],
            &["y"],
            vec![conv],
            vec![("w", w), ("b", b)],
        )
    }

    /// The model exported as dynamic INT8 by quench (`DynamicQuantizeLinear → DequantizeLinear`
    /// into the Conv on an s8 `DequantizeLinear` weight).
    fn dynamic(&self) -> Graph {
        quench::quant::quantize(
            &self.graph(),
            &quench::quant::Scheme::int8_dynamic(),
            &Default::default(),
        )
        .unwrap()
    }

    /// The convolution of the input and weight of the dynamic model `q` through their
    /// quantize/dequantize, in f64: what the integer sums compute before the f32 scaling.
    fn dequantized_reference(&self, q: &Graph, x: &[f32]) -> Vec<f64> {
        let (s_x, zp) = dynamic_qparams(x);
        let mut xq = vec![0u8; x.len()];
        quantize_u8(x, s_x, zp, &mut xq);
        let xd: Vec<f64> = xq
            .iter()
            .map(|&q| (f64::from(q) - f64::from(zp)) * f64::from(s_x))
            .collect();
        let (wq, w_scale) = dequantized_weight(q);
        let wd: Vec<f64> = wq
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let s = w_scale[if w_scale.len() == 1 {
                    0
                } else {
                    i / (wq.len() / self.c_out)
                }];
                f64::from(v) * f64::from(s)
            })
            .collect();
        let (cg, og) = (self.c / self.group, self.c_out / self.group);
        let [oh, ow] = self.out_hw();
        let b = self.bias();
        let mut y = Vec::with_capacity(2 * self.c_out * oh * ow);
        for n in 0..2 {
            for o in 0..self.c_out {
                let g = o / og;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = f64::from(b[o]);
                        for ci in 0..cg {
                            let c = g * cg + ci;
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let iy = (oy * self.strides[0] + ky) as isize - 1;
                                    let ix = (ox * self.strides[1] + kx) as isize - 1;
                                    if !(0..7).contains(&iy) || !(0..6).contains(&ix) {
                                        continue;
                                    }
                                    let xv =
                                        xd[((n * self.c + c) * 7 + iy as usize) * 6 + ix as usize];
                                    acc += xv * wd[((o * cg + ci) * 3 + ky) * 3 + kx];
                                }
                            }
                        }
                        y.push(acc);
                    }
                }
            }
        }
        y
    }
}

/// The grouped Convs the dynamic tests run: depthwise, and groups of 2 and 4 with odd channel
/// counts per group, stride 2 on one or both axes, padding 1.
const GROUPED: [GroupedConv; 3] = [
    GroupedConv {
        c: 5,
        c_out: 5,
        group: 5,
        strides: [2, 1],
    },
    GroupedConv {
        c: 6,
        c_out: 10,
        group: 2,
        strides: [2, 2],
    },
    GroupedConv {
        c: 12,
        c_out: 12,
        group: 4,
        strides: [2, 1],
    },
];

/// A grouped Conv in a dynamic INT8 model (depthwise on the depthwise INT8 kernel, any other
/// group count on the GEMM per group) computes the convolution of the dequantized input and
/// weight (the integer sums are exact; only the f32 scaling rounds), stays within quantization
/// error of the FP32 model, and agrees with ONNX Runtime on the same exported model.
#[test]
fn dynamic_grouped_conv_matches_the_dequantized_convolution_and_ort() {
    for case in GROUPED {
        let (f32_model, q) = (case.graph(), case.dynamic());
        let x = case.input();
        let mut plan = Plan::new(&q, &[("x", x.shape().to_vec())], 1).unwrap();
        let names = plan.kernel_names().join(", ");
        let want_kernel = if case.group == case.c {
            "depthwise".to_string()
        } else {
            format!("{} groups", case.group)
        };
        assert!(names.contains(&want_kernel), "{case:?}: {names}");
        let y = plan.run(&[("x", &x)]).unwrap();
        let [oh, ow] = case.out_hw();
        assert_eq!(y[0].shape(), &[2, case.c_out, oh, ow], "{case:?}");
        let got = y[0].as_f32().unwrap();
        let want = case.dequantized_reference(&q, x.as_f32().unwrap());
        for (i, (&v, &w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (f64::from(v) - w).abs() < 1e-5 * (1.0 + w.abs()),
                "{case:?} element {i}: {v} {w}"
            );
        }

        // Within quantization error of the FP32 model: 8-bit input and weight grids over
        // [-1, 1) keep every output within a few percent of the output range.
        let fp = plan_run(&f32_model, &x).unwrap();
        let fp = fp[0].as_f32().unwrap();
        let range = fp.iter().fold(0.0f32, |a, &b| a.max(b.abs()));
        let worst = got
            .iter()
            .zip(fp)
            .fold(0.0f32, |a, (g, f)| a.max((g - f).abs()));
        assert!(worst <= 0.03 * range, "{case:?}: {worst} of {range}");
        assert!(worst > 0.0, "{case:?}: the INT8 model computed FP32 values");

        // ONNX Runtime on the exported model: the same dequantized values through its FP32 Conv.
        let options = OrtOptions {
            spin: false,
            ..OrtOptions::new(1)
        };
        let bytes = quench::onnx::to_bytes(&q).unwrap();
        let mut ort = OrtRuntime::from_bytes(&bytes, &options).unwrap();
        let o = ort.run(&[("x", &x)]).unwrap();
        assert_close(got, o[0].as_f32().unwrap(), 1e-5);
    }
}

/// The s8 weight and its scale(s) of the only weight `DequantizeLinear` of `g`.
fn dequantized_weight(g: &Graph) -> (Vec<i8>, Vec<f32>) {
    let dq = g
        .nodes
        .iter()
        .find(|n| {
            n.op_type == "DequantizeLinear"
                && g.initializers
                    .get(&n.inputs[0])
                    .is_some_and(|t| matches!(t.data(), TensorData::I8(_)))
        })
        .unwrap();
    let TensorData::I8(w) = g.initializers[&dq.inputs[0]].data().clone() else {
        unreachable!()
    };
    let s = g.initializers[&dq.inputs[1]].as_f32().unwrap().to_vec();
    (w, s)
}
