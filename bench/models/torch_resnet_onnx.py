#!/usr/bin/env python3
"""PyTorch's own ONNX export of a torchvision-layout ResNet, to check that
joulebench reads what real exporters write.

  torch_resnet_onnx.py export WEIGHTS.safetensors OUT.onnx {resnet18,resnet50}
      Loads the weights into PyTorch's ResNet (torchvision's when installed,
      else the same network defined below with torchvision's names), and
      writes OUT.onnx with torch.onnx.export in eval mode (TorchScript path,
      constant folding on: the exporter folds every batch norm into its
      convolution and names the results onnx::Conv_N). Prints what the graph
      holds.
  torch_resnet_onnx.py check WEIGHTS.safetensors REF.safetensors {resnet18,resnet50}
      Runs PyTorch on REF's `input` and compares with REF's `logits` (written
      by joulebench from the ONNX file: crates/workloads/examples/reference_logits.rs).

Needs torch, safetensors, numpy, and onnx for the export.
"""
import sys

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn


def conv_bn(c_in, c_out, k, stride):
    return nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out)


class Block(nn.Module):
    def __init__(self, kind, c_in, width, stride):
        super().__init__()
        out = width * (4 if kind == "bottleneck" else 1)
        if kind == "bottleneck":
            self.conv1, self.bn1 = conv_bn(c_in, width, 1, 1)
            self.conv2, self.bn2 = conv_bn(width, width, 3, stride)
            self.conv3, self.bn3 = conv_bn(width, out, 1, 1)
        else:
            self.conv1, self.bn1 = conv_bn(c_in, width, 3, stride)
            self.conv2, self.bn2 = conv_bn(width, width, 3, 1)
        self.downsample = nn.Sequential(*conv_bn(c_in, out, 1, stride)) if stride != 1 or c_in != out else None
        self.kind = kind

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.kind == "bottleneck":
            y = self.bn3(self.conv3(torch.relu(y)))
        skip = self.downsample(x) if self.downsample is not None else x
        return torch.relu(y + skip)


class ResNet(nn.Module):
    def __init__(self, arch):
        super().__init__()
        kind, counts = {"resnet18": ("basic", [2, 2, 2, 2]), "resnet50": ("bottleneck", [3, 4, 6, 3])}[arch]
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = 64
        for stage, count in enumerate(counts):
            width = 64 << stage
            blocks = []
            for i in range(count):
                blocks.append(Block(kind, c_in, width, 2 if i == 0 and stage > 0 else 1))
                c_in = width * (4 if kind == "bottleneck" else 1)
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(c_in, 1000)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        for stage in range(1, 5):
            x = getattr(self, f"layer{stage}")(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def model(weights, arch):
    try:
        import torchvision

        net = getattr(torchvision.models, arch)()
    except ImportError:
        net = ResNet(arch)
    state = load_file(weights)
    # joulebench's weights have no num_batches_tracked (unused in eval).
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        sys.exit(f"weights do not fit {arch}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return net.eval()


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("export", "check"):
        sys.exit(__doc__)
    verb, weights, path, arch = sys.argv[1:]
    net = model(weights, arch)
    if verb == "export":
        import onnx

        torch.onnx.export(net, torch.zeros(1, 3, 224, 224), path, input_names=["input"],
                          output_names=["logits"], opset_version=17, do_constant_folding=True,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
        g = onnx.load(path).graph
        ops = {}
        for n in g.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        names = [i.name for i in g.initializer]
        print(f"torch {torch.__version__} exported {path}: nodes {ops}; {len(names)} initializers, e.g. {names[:3]}")
    else:
        ref = load_file(path)
        with torch.no_grad():
            theirs = net(ref["input"].float()).numpy()
        ours = ref["logits"].float().numpy()
        rel = np.linalg.norm(ours - theirs) / np.linalg.norm(theirs)
        top1 = float(np.mean(ours.argmax(1) == theirs.argmax(1)))
        print(f"torch {torch.__version__} vs joulebench (from the ONNX file), batch {ours.shape[0]}: "
              f"relative error {rel:.2e}, top-1 agreement {top1:.3f}")


if __name__ == "__main__":
    main()
