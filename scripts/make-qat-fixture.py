#!/usr/bin/env python3
"""Writes assets/quantized/mnist-cnn.qat-torch.onnx: the bundled MNIST CNN fine-tuned by
PyTorch quantization-aware training and exported by PyTorch as a QDQ ONNX model (opset 13), so
that quench's QDQ import is tested on a real training framework's export, not only on its own.

Needs PyTorch (a 5.5 GB install from PyPI, kept out of the repository), onnx and numpy:

    python3 -m venv /work/torchvenv
    /work/torchvenv/bin/pip install torch onnx numpy
    /work/torchvenv/bin/python scripts/make-qat-fixture.py    # from the repository root

What it does:
1. builds ccexam's MNISTNet in torch (Conv 1->32 3x3 pad 1, Relu, MaxPool 2, Conv 32->64, Relu,
   MaxPool 2, Flatten, Linear 3136->128, Relu, Linear 128->10) and loads the weights of
   assets/models/mnist-cnn.onnx (the same ccexam state dict) with the onnx package;
2. prepares it for QAT with torch.ao's FX graph mode (`prepare_qat_fx`) and one plain qconfig:
   per-tensor affine u8 activations (`FakeQuantize` over `MovingAverageMinMaxObserver`, 0..255)
   and per-channel symmetric s8 weights (`FakeQuantize` over
   `MovingAveragePerChannelMinMaxObserver`, -128..127, zero point 0: the ONNX export
   refuses -127..127). The default x86 QAT qconfig (fused observer-fake-quantize modules,
   reduce_range) does not export to ONNX;
3. fine-tunes briefly (TRAIN_EPOCHS epochs of Adam at TRAIN_LR, below) on the first
   TRAIN_SAMPLES images of the bundled MNIST *training* split (assets/data/mnist-train-*;
   never the test split), then freezes the observers;
4. exports the fake-quantized module with `torch.onnx.export(..., dynamo=False,
   opset_version=13)`: every FakeQuantize becomes a QuantizeLinear -> DequantizeLinear pair,
   weights stay f32 initializers quantized by a QuantizeLinear in the graph (PyTorch's export
   does not fold them), MaxPool/Flatten sit between DQ and Q sharing their input's parameters;
5. prints the accuracy of the export on the MNIST test split through ONNX Runtime when it is
   importable (it is not needed to make the file).

Deterministic up to PyTorch's CPU kernels (one thread, fixed seed); the committed file is the one
assets/README.md lists with its hash.
"""
import gzip
import os
import sys

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn
from torch.ao.quantization import FakeQuantize, QConfig, QConfigMapping
from torch.ao.quantization.observer import (MovingAverageMinMaxObserver,
                                            MovingAveragePerChannelMinMaxObserver)
from torch.ao.quantization.quantize_fx import prepare_qat_fx

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "assets", "models", "mnist-cnn.onnx")
OUT = os.path.join(ROOT, "assets", "quantized", "mnist-cnn.qat-torch.onnx")
TRAIN_SAMPLES = 8000
TRAIN_EPOCHS = 2
TRAIN_BATCH = 64
TRAIN_LR = 1e-5
SEED = 20261130
MEAN, STD = 0.1307, 0.3081


def idx(name):
    with gzip.open(os.path.join(ROOT, "assets", "data", name)) as f:
        d = f.read()
    dims = d[3]
    shape = [int.from_bytes(d[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(d, np.uint8, offset=4 + 4 * dims).reshape(shape)


def images(split, n=None):
    x = idx(f"mnist-{split}-images.idx.gz")[:n].astype(np.float32)
    y = idx(f"mnist-{split}-labels.idx.gz")[:n].astype(np.int64)
    x = (x / 255.0 - MEAN) / STD  # the manifest's preprocessing
    return torch.from_numpy(x[:, None]), torch.from_numpy(y)


class MNISTNet(nn.Module):
    """ccexam's MNISTNet (ccexam/model.py), the same layer names as its state dict."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def load_weights(net):
    inits = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy())
             for i in onnx.load(SRC).graph.initializer}
    state = net.state_dict()
    missing = set(state) - set(inits)
    if missing:
        sys.exit(f"{SRC}: no initializer for {sorted(missing)}")
    net.load_state_dict({k: inits[k] for k in state})


def qconfig():
    act = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=0,
                                 quant_max=255, dtype=torch.quint8,
                                 qscheme=torch.per_tensor_affine)
    weight = FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver,
                                    quant_min=-128, quant_max=127, dtype=torch.qint8,
                                    qscheme=torch.per_channel_symmetric, ch_axis=0)
    return QConfig(activation=act, weight=weight)


def accuracy(fn, x, y):
    with torch.no_grad():
        return float((fn(x).argmax(1) == y).float().mean())


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    net = MNISTNet()
    load_weights(net)
    net.eval()
    xt, yt = images("test")
    print(f"FP32 torch: test accuracy {accuracy(net, xt, yt):.4f}")
    x, y = images("train", TRAIN_SAMPLES)
    example = (x[:1],)
    qat = prepare_qat_fx(net.train(), QConfigMapping().set_global(qconfig()), example)
    opt = torch.optim.Adam(qat.parameters(), lr=TRAIN_LR)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(TRAIN_EPOCHS):
        perm = torch.randperm(len(x))
        total = 0.0
        for s in range(0, len(x), TRAIN_BATCH):
            b = perm[s:s + TRAIN_BATCH]
            opt.zero_grad()
            loss = loss_fn(qat(x[b]), y[b])
            loss.backward()
            opt.step()
            total += float(loss) * len(b)
        print(f"epoch {epoch + 1}: mean loss {total / len(x):.4f}")
    qat.apply(torch.ao.quantization.disable_observer)
    qat.eval()
    print(f"QAT torch (fake-quantized): test accuracy {accuracy(qat, xt, yt):.4f}")
    torch.onnx.export(qat, example, OUT, dynamo=False, opset_version=13,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    m = onnx.load(OUT)
    onnx.checker.check_model(m)
    ops = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    print(f"wrote {OUT}: {os.path.getsize(OUT)} bytes, ops {ops}")
    try:
        import onnxruntime as ort
    except ImportError:
        return
    sess = ort.InferenceSession(OUT, providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"input": xt.numpy()})[0]
    print(f"ONNX Runtime on the export: test accuracy {(logits.argmax(1) == yt.numpy()).mean():.4f}")


if __name__ == "__main__":
    main()
