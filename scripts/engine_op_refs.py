"""Generates tests/it/engine_ops_ref.rs: one Rust test per case, the expected values computed by
ONNX Runtime on a one-node ONNX model. Inputs are formula values ((i+start)*37 % 101)/50 - 1,
scaled and offset, so the Rust side rebuilds them without Python.

Run: .venv/bin/python scripts/engine_op_refs.py > tests/it/engine_ops_ref.rs && cargo fmt
"""
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

def formula(n, start=0, scale=1.0, offset=0.0):
    i = np.arange(n) + start
    return (((i * 37) % 101) / 50.0 - 1.0).astype(np.float32) * np.float32(scale) + np.float32(offset)

# (test name, opset, op, runtime inputs [(shape, start, scale, offset)], constants [(position, dtype, shape, values)], attrs)
CASES = [
    ("relu", 13, "Relu", [([2, 5], 0, 1, 0)], [], {}),
    ("sigmoid", 13, "Sigmoid", [([2, 5], 0, 4, 0)], [], {}),
    ("hardsigmoid", 13, "HardSigmoid", [([2, 5], 0, 4, 0)], [], {"alpha": 0.3, "beta": 0.4}),
    ("hardswish", 14, "HardSwish", [([2, 6], 0, 5, 0)], [], {}),
    ("clip_inputs_opset11", 11, "Clip", [([2, 5], 0, 1, 0)], [(1, "f", [], [-0.3]), (2, "f", [], [0.5])], {}),
    ("clip_max_only_opset13", 13, "Clip", [([2, 5], 0, 1, 0)], [(1, "", None, None), (2, "f", [], [0.25])], {}),
    ("clip_attrs_opset6", 6, "Clip", [([2, 5], 0, 1, 0)], [], {"min": -0.2, "max": 0.4}),
    ("tanh", 13, "Tanh", [([2, 5], 0, 3, 0)], [], {}),
    ("erf", 13, "Erf", [([2, 6], 0, 2.5, 0)], [], {}),
    ("gelu_exact", 20, "Gelu", [([2, 6], 0, 3, 0)], [], {}),
    ("gelu_tanh", 20, "Gelu", [([2, 6], 0, 3, 0)], [], {"approximate": "tanh"}),
    ("sqrt", 13, "Sqrt", [([2, 5], 0, 1, 1.01)], [], {}),
    ("add_broadcast_both", 13, "Add", [([2, 1, 3], 0, 1, 0)], [(1, "f", [4, 1], [1, 2, 3, 4])], {}),
    ("sub_const_left", 13, "Sub", [([2, 3], 0, 1, 0)], [(0, "f", [3], [10, 20, 30])], {}),
    ("mul_scalar", 13, "Mul", [([2, 3], 0, 1, 0)], [(1, "f", [], [3.0])], {}),
    ("div_column", 13, "Div", [([2, 3], 0, 1, 0), ([2, 1], 7, 1, 2)], [], {}),
    ("pow_square", 13, "Pow", [([2, 3], 0, 1, 0)], [(1, "f", [], [2.0])], {}),
    ("pow_vector", 13, "Pow", [([2, 3], 0, 1, 1.5)], [(1, "f", [3], [0.5, 3.0, -1.0])], {}),
    ("add_two_runtime_4d", 13, "Add", [([2, 3, 1, 2], 0, 1, 0), ([1, 3, 4, 1], 11, 1, 0)], [], {}),
    ("maxpool_pad_stride", 13, "MaxPool", [([1, 2, 5, 5], 0, 1, 0)], [], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("maxpool_ceil", 13, "MaxPool", [([1, 1, 5, 5], 0, 1, 0)], [], {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    ("maxpool_dilated", 13, "MaxPool", [([1, 1, 6, 6], 0, 1, 0)], [], {"kernel_shape": [2, 2], "dilations": [2, 2]}),
    ("avgpool_exclude_pad", 13, "AveragePool", [([1, 2, 5, 5], 0, 1, 0)], [], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("avgpool_include_pad", 13, "AveragePool", [([1, 2, 5, 5], 0, 1, 0)], [], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ("avgpool_same_upper", 13, "AveragePool", [([1, 1, 5, 5], 0, 1, 0)], [], {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ("global_avgpool", 13, "GlobalAveragePool", [([2, 3, 2, 3], 0, 1, 0)], [], {}),
    ("conv_same_upper_stride2", 13, "Conv", [([1, 2, 5, 5], 0, 1, 0)], [(1, "f", [3, 2, 3, 3], formula(54, 5).tolist())], {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ("conv_valid_bias", 13, "Conv", [([1, 2, 5, 4], 0, 1, 0)], [(1, "f", [2, 2, 2, 3], formula(24, 3).tolist()), (2, "f", [2], [0.5, -1])], {"auto_pad": "VALID"}),
    ("conv_dilated_asym_pads", 13, "Conv", [([1, 2, 6, 5], 0, 1, 0)], [(1, "f", [2, 2, 2, 2], formula(16, 9).tolist())], {"dilations": [2, 2], "pads": [1, 0, 2, 1], "strides": [2, 1]}),
    ("conv_depthwise_stride2_pad", 13, "Conv", [([1, 3, 5, 6], 0, 1, 0)], [(1, "f", [3, 1, 3, 3], formula(27, 4).tolist()), (2, "f", [3], [0.1, 0.2, 0.3])], {"group": 3, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("conv_depthwise_multiplier", 13, "Conv", [([1, 2, 4, 4], 0, 1, 0)], [(1, "f", [4, 1, 3, 3], formula(36, 6).tolist())], {"group": 2, "pads": [1, 1, 1, 1]}),
    ("gemm_trans_alpha_beta", 13, "Gemm", [([3, 2], 0, 1, 0)], [(1, "f", [4, 3], formula(12, 5).tolist()), (2, "f", [4], [1, 2, 3, 4])], {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0}),
    ("gemm_column_c", 13, "Gemm", [([2, 3], 0, 1, 0)], [(1, "f", [3, 4], formula(12, 5).tolist()), (2, "f", [2, 1], [1, -1])], {}),
    ("gemm_runtime_b", 13, "Gemm", [([2, 3], 0, 1, 0), ([4, 3], 20, 1, 0)], [], {"transB": 1, "alpha": 2.0}),
    ("matmul_batched_broadcast", 13, "MatMul", [([2, 1, 2, 3], 0, 1, 0), ([3, 3, 2], 30, 1, 0)], [], {}),
    ("matmul_const_b_3d_a", 13, "MatMul", [([2, 3, 4], 0, 1, 0)], [(1, "f", [4, 5], formula(20, 8).tolist())], {}),
    ("matmul_vector_a", 13, "MatMul", [([4], 0, 1, 0)], [(1, "f", [4, 3], formula(12, 8).tolist())], {}),
    ("softmax_opset11_axis1", 11, "Softmax", [([2, 3, 4], 0, 2, 0)], [], {"axis": 1}),
    ("softmax_opset13_axis1", 13, "Softmax", [([2, 3, 4], 0, 2, 0)], [], {"axis": 1}),
    ("softmax_opset13_default", 13, "Softmax", [([2, 3, 4], 0, 2, 0)], [], {}),
    ("layernorm_last_axis", 17, "LayerNormalization", [([2, 3, 4], 0, 1, 0)], [(1, "f", [4], [1, 2, 0.5, -1]), (2, "f", [4], [0, 0.1, 0.2, 0.3])], {}),
    ("layernorm_axis1", 17, "LayerNormalization", [([2, 3, 2], 0, 1, 0)], [(1, "f", [3, 2], formula(6, 3, 1, 1).tolist())], {"axis": 1, "epsilon": 0.01}),
    ("batchnorm_unfolded", 15, "BatchNormalization", [([2, 3, 2, 2], 0, 1, 0)], [(1, "f", [3], [1, 2, 0.5]), (2, "f", [3], [0, 1, -1]), (3, "f", [3], [0.1, 0.2, 0.3]), (4, "f", [3], [1, 0.5, 2])], {"epsilon": 0.001}),
    ("reducemean_axis1", 13, "ReduceMean", [([2, 3, 4], 0, 1, 0)], [], {"axes": [1], "keepdims": 0}),
    ("reducemean_opset18_axes_input", 18, "ReduceMean", [([2, 3, 4], 0, 1, 0)], [(1, "i", [2], [0, -1])], {}),
    ("reducemean_all", 13, "ReduceMean", [([2, 3, 4], 0, 1, 0)], [], {"keepdims": 0}),
    ("transpose_perm", 13, "Transpose", [([2, 3, 4], 0, 1, 0)], [], {"perm": [2, 0, 1]}),
    ("transpose_default", 13, "Transpose", [([2, 3, 4], 0, 1, 0)], [], {}),
    ("slice_negative_step", 13, "Slice", [([2, 3, 5], 0, 1, 0)], [(1, "i", [1], [-1]), (2, "i", [1], [-1000]), (3, "i", [1], [2]), (4, "i", [1], [-2])], {}),
    ("slice_clamped", 13, "Slice", [([2, 3, 5], 0, 1, 0)], [(1, "i", [2], [0, 1]), (2, "i", [2], [1, 100]), (3, "i", [2], [0, -1])], {}),
    ("slice_opset9_attrs", 9, "Slice", [([2, 3, 5], 0, 1, 0)], [], {"starts": [1, 1], "ends": [3, 4], "axes": [1, 2]}),
    ("gather_negative", 13, "Gather", [([2, 3, 4], 0, 1, 0)], [(1, "i", [2], [-1, 0])], {"axis": 1}),
    ("gather_2d_indices", 13, "Gather", [([3, 4], 0, 1, 0)], [(1, "i", [2, 2], [0, 2, 1, 1])], {}),
    ("gather_scalar_index", 13, "Gather", [([3, 4], 0, 1, 0)], [(1, "i", [], [2])], {"axis": 1}),
    ("concat_last_axis", 13, "Concat", [([2, 3], 0, 1, 0)], [(1, "f", [2, 2], [9, 8, 7, 6])], {"axis": -1}),
    ("reshape_zero_minus_one", 13, "Reshape", [([2, 3, 4], 0, 1, 0)], [(1, "i", [2], [0, -1])], {}),
    ("flatten_axis2", 13, "Flatten", [([2, 3, 2, 2], 0, 1, 0)], [], {"axis": 2}),
    ("squeeze_attr_opset11", 11, "Squeeze", [([2, 1, 3], 0, 1, 0)], [], {"axes": [1]}),
    ("squeeze_input_opset13", 13, "Squeeze", [([2, 1, 3, 1], 0, 1, 0)], [(1, "i", [1], [-1])], {}),
    ("unsqueeze_attr_opset11", 11, "Unsqueeze", [([2, 3], 0, 1, 0)], [], {"axes": [0, 3]}),
    ("unsqueeze_input_opset13", 13, "Unsqueeze", [([2, 3], 0, 1, 0)], [(1, "i", [1], [-1])], {}),
]

def rust_f32(v):
    s = str(np.float32(v))
    if s in ("inf", "-inf", "nan"):
        raise ValueError(s)
    return s if ("." in s or "e" in s) else s + ".0"

def attr_rust(k, v):
    if isinstance(v, bool) or isinstance(v, int):
        return f'("{k}", Attr::Int({v}))'
    if isinstance(v, float):
        return f'("{k}", Attr::Float({rust_f32(v)}))'
    if isinstance(v, str):
        return f'("{k}", Attr::String(b"{v}".to_vec()))'
    if isinstance(v, list):
        return f'("{k}", ints(&{v}))'
    raise TypeError(v)

print("//! Per-op references: ONNX Runtime outputs for one-node models, generated by")
print("//! scripts/engine_op_refs.py (do not edit by hand).")
print()
print("use crate::common::*;")
print("use quench::graph::Attr;")
for (name, opset, op, rts, consts, attrs) in CASES:
    n_inputs = len(rts) + len(consts)
    names = [None] * n_inputs
    const_pos = {c[0] for c in consts}
    rt_names = []
    it = iter(range(len(rts)))
    for pos in range(n_inputs):
        if pos not in const_pos:
            idx = next(it)
            names[pos] = f"x{idx}"
            rt_names.append(names[pos])
    graph_inputs, feeds, inits = [], {}, []
    for (shape, start, scale, offset), nm in zip(rts, rt_names):
        data = formula(int(np.prod(shape)), start, scale, offset).reshape(shape)
        feeds[nm] = data
        graph_inputs.append(helper.make_tensor_value_info(nm, TensorProto.FLOAT, shape))
    for (pos, dt, shape, vals) in consts:
        if dt == "":
            names[pos] = ""
            continue
        names[pos] = f"c{pos}"
        if dt == "f":
            inits.append(helper.make_tensor(names[pos], TensorProto.FLOAT, shape, np.array(vals, np.float32).ravel().tolist()))
        else:
            inits.append(helper.make_tensor(names[pos], TensorProto.INT64, shape, [int(v) for v in vals]))
    node = helper.make_node(op, names, ["y"], **attrs)
    g = helper.make_graph([node], name, graph_inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, feeds)[0]
    print()
    print("#[test]")
    print(f"fn {name}() {{")
    inits_rs = []
    for (pos, dt, shape, vals) in consts:
        if dt == "f":
            inits_rs.append(f'("c{pos}", t(&{list(shape)}, vec![{", ".join(rust_f32(v) for v in np.array(vals, np.float32).ravel())}]))')
        elif dt == "i":
            inits_rs.append(f'("c{pos}", ti(&{list(shape)}, vec!{[int(v) for v in vals]}))')
    attrs_rs = ", ".join(attr_rust(k, v) for k, v in attrs.items())
    ins_rs = ", ".join(f'"{x}"' for x in names)
    gi = ", ".join(f'("{nm}", {len(s[0])})' for s, nm in zip(rts, rt_names))
    print(f'    let g = graph({opset}, &[{gi}], &["y"], vec![node("{op}", "{name}", &[{ins_rs}], &["y"], vec![{attrs_rs}])], vec![{", ".join(inits_rs)}]);')
    for (shape, start, scale, offset), nm in zip(rts, rt_names):
        n = int(np.prod(shape))
        print(f'    let {nm} = t(&{list(shape)}, formula_from({n}, {start}, {rust_f32(scale)}, {rust_f32(offset)}));')
    print(f'    let want = vec![{", ".join(rust_f32(v) for v in y.ravel())}];')
    feeds_rs = ", ".join(f'("{nm}", &{nm})' for nm in rt_names)
    print(f'    expect_planned_and_interpreted(&g, &[{feeds_rs}], &{list(y.shape)}, &want);')
    print("}")
