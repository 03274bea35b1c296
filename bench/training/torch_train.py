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

Data parallel, the peer of `joulebench train --devices 0,1`: start it with
torchrun, one process per GPU (DistributedDataParallel over NCCL, batch norm
per replica as joulebench's); --batch-size is then the global batch, split
evenly, and the line (from rank 0) adds the GPUs' energy over the timed window
from their NVML counters (nvidia-ml-py), as joulebench's nvml meter reads it:

  torchrun --standalone --nproc_per_node 2 bench/training/torch_train.py --batch-size 256
"""

import argparse
import json
import os
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

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    dist = None
    if world > 1:
        import torch.distributed as dist
        local = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        a.device = f"cuda:{local}"
        if a.batch_size % world:
            raise SystemExit(f"--batch-size {a.batch_size} must split evenly across {world} GPUs")
    batch = a.batch_size // world

    torch.manual_seed(a.seed)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[a.dtype]
    dev = torch.device(a.device)
    model = torchvision.models.resnet50(num_classes=1000).to(dev, dtype=dtype)
    model.train()
    if dist:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    torch.manual_seed(a.seed + rank)  # each replica its own samples
    x = torch.randn(batch, 3, a.image_size, a.image_size, device=dev, dtype=dtype)
    y = torch.randint(0, 1000, (batch,), device=dev)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x).float(), y)
        loss.backward()
        opt.step()
        return loss.item()  # waits for the device, like joulebench's step

    energy = gpu_energy_counter(dev)
    for _ in range(a.warmup_steps):
        step()
    if dist:
        dist.barrier()
    start, mj_before = time.perf_counter(), energy()
    for _ in range(a.steps):
        step()
    if dist:
        dist.barrier()
    seconds, mj = time.perf_counter() - start, energy()
    joules = None if mj is None else (mj - mj_before) / 1000
    if dist:
        t = torch.tensor([seconds, joules or 0.0], dtype=torch.float64, device=dev)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        seconds, joules = t[0].item() / world, (t[1].item() if joules is not None else None)
    if rank == 0:
        print(json.dumps({
            "framework": f"torch {torch.__version__}",
            "device": str(dev) if world == 1 else f"{world} GPUs (DDP)",
            "dtype": a.dtype,
            "batch_size": a.batch_size,
            "steps": a.steps,
            "seconds": seconds,
            "samples_per_s": a.batch_size * a.steps / seconds,
            "gpu_energy_j": joules,
            "gpu_w": None if joules is None else joules / seconds,
        }))
    if dist:
        dist.destroy_process_group()


def gpu_energy_counter(dev):
    """This GPU's total-energy counter (mJ) as a function, or one returning
    None where there is no NVML (CPU runs, nvidia-ml-py missing)."""
    if dev.type != "cuda":
        return lambda: None
    try:
        import pynvml
        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(dev.index or 0)
        return lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
    except Exception:  # noqa: BLE001 - energy is optional here
        return lambda: None


if __name__ == "__main__":
    main()
