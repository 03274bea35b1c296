#!/usr/bin/env python3
"""PyTorch's side of joulebench's image_step_times example: where one
ResNet-50 batch spends its time (stack, copy in, cast, network, copy out),
medians over repeats, bf16 eager, NCHW unless --channels-last.

  torch_step_times.py [--batch 64] [--repeats 20] [--channels-last]
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from torch_offline import resnet50  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--channels-last", action="store_true")
    a = ap.parse_args()
    dev = torch.device("cuda:0")
    torch.manual_seed(0)
    model = resnet50().eval().to(dev, torch.bfloat16)
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
    samples = [torch.randn(3, 224, 224) for _ in range(4 * a.batch)]
    rows = {k: [] for k in ["stack", "copy in", "cast", "network", "copy out", "classify, pageable"]}

    def timed(f):
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = f()
        torch.cuda.synchronize()
        return out, time.perf_counter() - t

    with torch.inference_mode():
        for r in range(a.repeats + 3):
            idx = [(r * 7 + i * 3) % (4 * a.batch) for i in range(a.batch)]
            host, t_stack = timed(lambda: torch.stack([samples[i] for i in idx]))
            x32, t_in = timed(lambda: host.to(dev))
            fmt = torch.channels_last if a.channels_last else torch.contiguous_format
            x, t_cast = timed(lambda: x32.to(torch.bfloat16).contiguous(memory_format=fmt))
            logits, t_net = timed(lambda: model(x))
            _, t_out = timed(lambda: logits.float().cpu())
            _, t_all = timed(lambda: model(host.to(dev).to(torch.bfloat16).contiguous(memory_format=fmt)).float().argmax(1).cpu())
            if r >= 3:
                for k, t in zip(rows, [t_stack, t_in, t_cast, t_net, t_out, t_all]):
                    rows[k].append(t)
    print(f"pytorch {torch.__version__} resnet50 batch {a.batch} bf16"
          f"{' channels-last' if a.channels_last else ''}, median of {a.repeats}:")
    for k, ts in rows.items():
        ms = sorted(ts)[len(ts) // 2] * 1e3
        print(f"  {k:<19} {ms:>8.2f} ms  {a.batch / ms * 1e3:>9.0f} samples/s")


if __name__ == "__main__":
    main()
