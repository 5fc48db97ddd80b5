#!/usr/bin/env python3
"""Writes the ORT-quantized fixtures (assets/quantized/) with ONNX Runtime's own quantizer.

Run from the repository root with the project's venv:
    .venv/bin/python scripts/make_qoperator_fixtures.py

Both are `onnxruntime.quantization.quantize_static(..., quant_format=QuantFormat.QOperator)`
of a bundled model, calibrated with MinMax on the first 256 images of the *training* split
(never the test split), u8 activations, s8 per-channel weights (ORT 1.32's defaults otherwise;
the quantizer folds each Relu into its layer's output range):

  mnist-cnn.qop.onnx  QuantizeLinear -> QLinearConv -> MaxPool -> QLinearConv -> MaxPool ->
                      Flatten -> com.microsoft QGemm x2 -> DequantizeLinear
  mnist-mlp.qop.onnx  the MLP with each Gemm(transB=1) rewritten as MatMul(W^T) + Add first, so
                      that only MatMul is quantized: QuantizeLinear -> QLinearMatMul ->
                      DequantizeLinear -> Add -> Sigmoid (x2)

and `quantize_dynamic(weight_type=QInt8)` of mnist-cnn (its ConvInteger form, which quench's own
export does not write):

  mnist-cnn.dyn-ort.onnx  DynamicQuantizeLinear -> ConvInteger -> Cast -> Mul -> Add (x2), and
                          DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul -> Add (x2)
"""
import gzip
import os
import tempfile

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "assets", "quantized")
CALIB = 256


def train_images(n):
    with gzip.open(os.path.join(ROOT, "assets", "data", "mnist-train-images.idx.gz")) as f:
        d = f.read()
    count, rows, cols = (int.from_bytes(d[i:i + 4], "big") for i in (4, 8, 12))
    x = np.frombuffer(d, np.uint8, offset=16).reshape(count, rows, cols)[:n]
    return (x.astype(np.float32) / 255.0 - 0.1307) / 0.3081  # the manifests' preprocessing


class Reader(CalibrationDataReader):
    def __init__(self, name, shape):
        self.it = iter([{name: v.reshape(shape)} for v in train_images(CALIB)])

    def get_next(self):
        return next(self.it, None)


def gemm_to_matmul(src, dst):
    """Rewrites every Gemm(A, W, b, transB=1) as MatMul(A, W^T) + Add(b)."""
    m = onnx.load(src)
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    nodes = []
    for n in g.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type != "Gemm" or attrs.get("transB") != 1 or attrs.get("transA", 0) != 0:
            nodes.append(n)
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        inits[n.input[1]].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w.T), n.input[1]))
        mm = n.output[0] + "_matmul"
        nodes.append(helper.make_node("MatMul", [n.input[0], n.input[1]], [mm], n.name + "_MatMul"))
        nodes.append(helper.make_node("Add", [mm, n.input[2]], [n.output[0]], n.name + "_Add"))
    del g.node[:]
    g.node.extend(nodes)
    onnx.save(m, dst)


def make(model, out, shape, ops, prepare=None):
    src = os.path.join(ROOT, "assets", "models", model + ".onnx")
    with tempfile.TemporaryDirectory() as tmp:
        if prepare:
            prepared = os.path.join(tmp, "prepared.onnx")
            prepare(src, prepared)
            src = prepared
        name = onnx.load(src).graph.input[0].name
        quantize_static(src, os.path.join(OUT, out), Reader(name, shape),
                        quant_format=QuantFormat.QOperator, op_types_to_quantize=ops,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
    print(out, [n.op_type for n in onnx.load(os.path.join(OUT, out)).graph.node])


def main():
    os.makedirs(OUT, exist_ok=True)
    make("mnist-cnn", "mnist-cnn.qop.onnx", (1, 1, 28, 28), None)
    make("mnist-mlp", "mnist-mlp.qop.onnx", (1, 784), ["MatMul"], prepare=gemm_to_matmul)
    out = os.path.join(OUT, "mnist-cnn.dyn-ort.onnx")
    quantize_dynamic(os.path.join(ROOT, "assets", "models", "mnist-cnn.onnx"), out,
                     weight_type=QuantType.QInt8)
    print("mnist-cnn.dyn-ort.onnx", [n.op_type for n in onnx.load(out).graph.node])


if __name__ == "__main__":
    main()
