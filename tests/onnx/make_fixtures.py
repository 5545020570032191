#!/usr/bin/env python3
"""Makes the PyTorch fixture of tests/onnx/encoder_test.cpp, once, with PyTorch and ONNX:

    python3 tests/onnx/make_fixtures.py        # writes tests/onnx/data/encoder_layer/

A torch.nn.TransformerEncoderLayer (d_model 16, 2 heads, feed-forward 32, no dropout, batch
first, seeded) exported by torch.onnx.export at opset 17 with its parameters as initializers
(no constant folding, so each initializer is one PyTorch parameter under its own name), and
what PyTorch computes for a fixed input x (also as x.npy, with r.npy, for examples/onnx): the output y, and for loss = sum(y * r) with a
fixed r the gradient of every parameter. Tensors are ONNX TensorProtos (.pb), which the test
reads with fovea::onnx::read_tensor.
"""
import os

import numpy as np
import onnx
import onnx.numpy_helper
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data", "encoder_layer")


def save(name, array, npy=False):
    tensor = onnx.numpy_helper.from_array(np.ascontiguousarray(array), name)
    with open(os.path.join(OUT, name + ".pb"), "wb") as f:
        f.write(tensor.SerializeToString())
    if npy:  # for examples/onnx's test in CTest, which reads NumPy files
        np.save(os.path.join(OUT, name + ".npy"), array)


class Encoder(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, dropout=0.0,
                                             batch_first=True)
    # Every parameter moved off its initial value, so that no two are equal (the exporter
    # would share one initializer between equal ones, LayerNorm's ones and zeros).
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    layer.eval()
    x = torch.randn(2, 5, 16)
    r = torch.randn(2, 5, 16)
    # A wrapper whose forward takes x alone: the tracer would turn the layer's optional
    # arguments (is_causal) into tensors.
    wrapper = Encoder(layer)
    torch.onnx.export(wrapper, (x,), os.path.join(OUT, "model.onnx"), opset_version=17,
                      input_names=["x"], output_names=["y"], do_constant_folding=False,
                      dynamo=False)
    y = layer(x)
    (y * r).sum().backward()
    save("x", x.numpy(), npy=True)
    save("r", r.numpy(), npy=True)
    save("y", y.detach().numpy())
    model = onnx.load(os.path.join(OUT, "model.onnx"))
    parameters = dict(wrapper.named_parameters())
    for initializer in model.graph.initializer:
        if initializer.name in parameters:
            save("grad." + initializer.name, parameters[initializer.name].grad.numpy())
    print("wrote", OUT, [i.name for i in model.graph.initializer])


if __name__ == "__main__":
    main()
