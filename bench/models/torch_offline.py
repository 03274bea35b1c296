#!/usr/bin/env python3
"""PyTorch eager peer for joulebench's GPU Offline benchmark.

Runs a model in eval mode on one GPU for a fixed time at a fixed batch size
and prints one JSON line: samples/s, and the GPU's energy from NVML's
total-energy counter over the same window (read through ctypes, so nothing
beyond PyTorch is needed), hence samples/J.

The input path matches joulebench's: preprocessed samples sit in host memory
as f32 and each batch is copied to the GPU, cast to the compute type, run,
and its top-1 class copied back (`--input-on-gpu` removes the copy, for
reference).

  torch_offline.py --model resnet50 --batch 64 --seconds 20 --dtype bf16
  torch_offline.py --model minilm --batch 256 --seq-len 128 --seconds 20

ResNet-50 is v1.5 (stride on the 3x3 convolution), written here so that no
torchvision is needed; MiniLM is the all-MiniLM-L6-v2 shape (6 layers, 384
hidden, 12 heads, 1536 intermediate) through transformers' BertModel with
random weights, mean-pooled like sentence-transformers.
"""
import argparse
import ctypes
import json
import time

import torch
import torch.nn as nn


class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.down is None else self.down(x)))


def resnet50(classes=1000):
    layers, cin = [], 64
    for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for i in range(blocks):
            layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
            cin = width * 4
    return nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
        *layers,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2048, classes),
    )


class Nvml:
    """The GPU's total-energy counter (mJ since driver load), via ctypes."""

    def __init__(self, index):
        self.lib = ctypes.CDLL("libnvidia-ml.so.1")
        assert self.lib.nvmlInit_v2() == 0
        self.handle = ctypes.c_void_p()
        assert self.lib.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(self.handle)) == 0

    def energy_j(self):
        mj = ctypes.c_ulonglong()
        rc = self.lib.nvmlDeviceGetTotalEnergyConsumption(self.handle, ctypes.byref(mj))
        assert rc == 0, f"nvmlDeviceGetTotalEnergyConsumption: {rc}"
        return mj.value / 1000.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["resnet50", "minilm"], default="resnet50")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--samples", type=int, default=1024, help="distinct host samples")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--input-on-gpu", action="store_true")
    ap.add_argument("--gpu", type=int, default=0)
    a = ap.parse_args()

    dev = torch.device(f"cuda:{a.gpu}")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[a.dtype]
    torch.manual_seed(0)
    if a.model == "resnet50":
        model = resnet50().eval().to(dev, dtype)
        host = torch.randn(a.samples, 3, 224, 224)
        if a.channels_last:
            model = model.to(memory_format=torch.channels_last)

        def step(x):
            x = x.to(dev, non_blocking=False).to(dtype)
            if a.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return model(x).float().argmax(1).cpu()

    else:
        from transformers import BertConfig, BertModel

        cfg = BertConfig(
            vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
            intermediate_size=1536, max_position_embeddings=512,
        )
        model = BertModel(cfg, add_pooling_layer=False).eval().to(dev, dtype)
        host = torch.randint(1000, 30000, (a.samples, a.seq_len))

        def step(ids):
            ids = ids.to(dev)
            mask = torch.ones_like(ids)
            h = model(input_ids=ids, attention_mask=mask).last_hidden_state
            return h.float().mean(1).cpu()

    if a.input_on_gpu:
        host = host.to(dev)
    nvml = Nvml(a.gpu)
    with torch.inference_mode():
        for i in range(5):  # warm-up: kernels chosen, memory pooled
            step(host[:a.batch])
        torch.cuda.synchronize(dev)
        e0, t0 = nvml.energy_j(), time.perf_counter()
        done, i = 0, 0
        while time.perf_counter() - t0 < a.seconds:
            lo = (i * a.batch) % (a.samples - a.batch + 1)
            step(host[lo:lo + a.batch])
            done += a.batch
            i += 1
        torch.cuda.synchronize(dev)
        t1, e1 = time.perf_counter(), nvml.energy_j()
    s = t1 - t0
    print(json.dumps({
        "peer": "pytorch-eager", "torch": torch.__version__, "model": a.model,
        "dtype": a.dtype, "batch": a.batch, "channels_last": a.channels_last,
        "input_on_gpu": a.input_on_gpu, "seconds": s, "samples": done,
        "samples_per_s": done / s, "energy_j": e1 - e0, "avg_w": (e1 - e0) / s,
        "samples_per_j": done / (e1 - e0),
    }))


if __name__ == "__main__":
    main()
