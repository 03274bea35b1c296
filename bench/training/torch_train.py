#!/usr/bin/env python3
"""PyTorch's ResNet-50 training throughput, the peer of
`joulebench train --task resnet50-synthetic`: same model (torchvision's
resnet50, batch norm in training mode), same optimiser (AdamW, lr 0.001),
same batch size and input (one synthetic 3x224x224 batch of seeded normal
pixels with random labels, reused: data loading not measured), same
warm-up-then-timed steps, each step ending with the loss read back to the
host (which waits for the GPU), as joulebench does.

Prints one JSON line: {"samples_per_s": ..., "steps": ..., "seconds": ...}.

  python3 bench/training/torch_train.py --device cuda --batch-size 64 --steps 50
"""

import argparse
import json
import time

import torch
import torchvision


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup-steps", type=int, default=2)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--dtype", choices=["f32", "bf16", "f16"], default="f32",
                   help="f32: like joulebench's default; bf16/f16: the whole model in that type, "
                        "as joulebench's --dtype does (not autocast)")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()

    torch.manual_seed(a.seed)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[a.dtype]
    dev = torch.device(a.device)
    model = torchvision.models.resnet50(num_classes=1000).to(dev, dtype=dtype)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(a.batch_size, 3, a.image_size, a.image_size, device=dev, dtype=dtype)
    y = torch.randint(0, 1000, (a.batch_size,), device=dev)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x).float(), y)
        loss.backward()
        opt.step()
        return loss.item()  # waits for the device, like joulebench's step

    for _ in range(a.warmup_steps):
        step()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    seconds = time.perf_counter() - start
    print(json.dumps({
        "framework": f"torch {torch.__version__}",
        "device": str(dev),
        "dtype": a.dtype,
        "batch_size": a.batch_size,
        "steps": a.steps,
        "seconds": seconds,
        "samples_per_s": a.batch_size * a.steps / seconds,
    }))


if __name__ == "__main__":
    main()
