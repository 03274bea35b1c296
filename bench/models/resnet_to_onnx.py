#!/usr/bin/env python3
"""Build an ONNX graph of a torchvision-layout ResNet (18 or 50, v1.5) from a
safetensors file of its weights, so ONNX Runtime runs exactly the network
joulebench runs: the CPU peer in bench/, and the reference its outputs are
checked against.

usage: resnet_to_onnx.py WEIGHTS.safetensors OUT.onnx {resnet18,resnet50}
Needs: numpy, onnx, safetensors (PyPI).
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

LAYERS = {"resnet18": ("basic", [2, 2, 2, 2]), "resnet50": ("bottleneck", [3, 4, 6, 3])}


class Graph:
    def __init__(self, weights):
        self.w, self.nodes, self.inits, self.n = weights, [], [], 0

    def name(self, prefix):
        self.n += 1
        return f"{prefix}_{self.n}"

    def init(self, key):
        self.inits.append(numpy_helper.from_array(self.w[key].astype(np.float32), key))
        return key

    def node(self, op, inputs, **attrs):
        out = self.name(op)
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv_bn(self, x, prefix, bn, stride, pad, relu):
        k = self.w[f"{prefix}.weight"].shape[2]
        y = self.node("Conv", [x, self.init(f"{prefix}.weight")], kernel_shape=[k, k],
                      strides=[stride, stride], pads=[pad] * 4)
        y = self.node("BatchNormalization", [y] + [self.init(f"{bn}.{p}") for p in
                      ("weight", "bias", "running_mean", "running_var")], epsilon=1e-5)
        return self.node("Relu", [y]) if relu else y


def build(weights, arch):
    kind, counts = LAYERS[arch]
    g = Graph(weights)
    x = g.conv_bn("input", "conv1", "bn1", 2, 3, True)
    x = g.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    for li, count in enumerate(counts, start=1):
        for bi in range(count):
            p = f"layer{li}.{bi}"
            stride = 2 if bi == 0 and li > 1 else 1
            if kind == "bottleneck":
                y = g.conv_bn(x, f"{p}.conv1", f"{p}.bn1", 1, 0, True)
                y = g.conv_bn(y, f"{p}.conv2", f"{p}.bn2", stride, 1, True)
                y = g.conv_bn(y, f"{p}.conv3", f"{p}.bn3", 1, 0, False)
            else:
                y = g.conv_bn(x, f"{p}.conv1", f"{p}.bn1", stride, 1, True)
                y = g.conv_bn(y, f"{p}.conv2", f"{p}.bn2", 1, 1, False)
            if f"{p}.downsample.0.weight" in weights:
                x = g.conv_bn(x, f"{p}.downsample.0", f"{p}.downsample.1", stride, 0, False)
            x = g.node("Relu", [g.node("Add", [y, x])])
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x])], axis=1)
    logits = g.node("Gemm", [x, g.init("fc.weight"), g.init("fc.bias")], transB=1)
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    graph = helper.make_graph(
        g.nodes, arch,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", weights["fc.bias"].shape[0]])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    weights_path, out, arch = sys.argv[1], sys.argv[2], sys.argv[3]
    onnx.save(build(load_file(weights_path), arch), out)
    print(f"wrote {out}")
