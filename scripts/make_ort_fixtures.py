#!/usr/bin/env python3
"""Writes the tiny ONNX models the ONNX Runtime tests load (tests/fixtures/*.onnx).

Run from the repository root with the project's venv:  .venv/bin/python scripts/make_ort_fixtures.py
Every model has a symbolic batch dimension "N", opset 13, IR version 8.

  add.onnx     C = A + B                     A, B, C: f32 [N, 3]
  linear.onnx  logits = input @ W + b        input f32 [N, 4] -> logits f32 [N, 3]
               W = [[1,0,0],[0,1,0],[0,0,1],[1,1,1]], b = [0, 0.5, 0]
  types.onnx   one Neg (or Identity for u8) per element type, outputs in this order:
               f = -fi (f32), l = -li (i64), i = -ii (i32), u = ui (u8), s = -si (i8), all [N, 2]
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


def save(graph, name):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="quench-fixtures")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(OUT, name))


def vi(name, ty, width):
    return helper.make_tensor_value_info(name, ty, ["N", width])


def main():
    os.makedirs(OUT, exist_ok=True)
    f = TensorProto.FLOAT
    save(helper.make_graph([helper.make_node("Add", ["A", "B"], ["C"])], "add",
                           [vi("A", f, 3), vi("B", f, 3)], [vi("C", f, 3)]), "add.onnx")

    w = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=np.float32)
    b = np.array([0, 0.5, 0], dtype=np.float32)
    save(helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["xw"]),
         helper.make_node("Add", ["xw", "b"], ["logits"])],
        "linear", [vi("input", f, 4)], [vi("logits", f, 3)],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")]),
        "linear.onnx")

    types = [("f", TensorProto.FLOAT, "Neg"), ("l", TensorProto.INT64, "Neg"),
             ("i", TensorProto.INT32, "Neg"), ("u", TensorProto.UINT8, "Identity"),
             ("s", TensorProto.INT8, "Neg")]
    save(helper.make_graph(
        [helper.make_node(op, [n + "i"], [n]) for n, _, op in types], "types",
        [vi(n + "i", t, 2) for n, t, _ in types], [vi(n, t, 2) for n, t, _ in types]),
        "types.onnx")


if __name__ == "__main__":
    main()
