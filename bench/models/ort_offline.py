#!/usr/bin/env python3
"""ONNX Runtime (CPU) as the Offline peer: the same network joulebench runs,
the same batch, timed for a while on the same machine. Prints one JSON line:
{"runtime", "model", "batch", "samples_per_s", "threads"}.

  ort_offline.py resnet50 WEIGHTS.safetensors BATCH SECONDS
      joulebench's seeded weights (crates/workloads/examples/export_weights.rs)
      built into an ONNX graph by resnet_to_onnx.py; inputs 3x224x224.
  ort_offline.py minilm MODEL_DIR BATCH SECONDS SEQ_LEN
      all-MiniLM-L6-v2 (bench/models/fetch_minilm.sh) exported by PyTorch's
      torch.onnx.export from transformers' BertModel; random token ids of
      SEQ_LEN, attention over all of them (as joulebench's synthetic tokens).

Needs onnxruntime, numpy, onnx and safetensors; torch and transformers for minilm.
"""
import json
import os
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort


def timed(session, feeds, batch, seconds):
    session.run(None, feeds)  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(None, feeds)
        done += batch
    return done / (time.perf_counter() - start)


def main():
    model, source, batch, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    rng = np.random.default_rng(1)
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, f"{model}.onnx")
    if model == "resnet50":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import onnx
        import resnet_to_onnx
        from safetensors.numpy import load_file

        onnx.save(resnet_to_onnx.build(load_file(source), "resnet50"), path)
        feeds = {"input": rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)}
    else:
        import torch
        from transformers import BertModel

        seq_len = int(sys.argv[5])
        class Encoder(torch.nn.Module):
            """BertModel called by keyword: its positional arguments differ
            between transformers versions (5.x put use_cache in the way)."""

            def __init__(self):
                super().__init__()
                self.bert = BertModel.from_pretrained(source).eval()

            def forward(self, input_ids, attention_mask):
                out = self.bert(input_ids=input_ids, attention_mask=attention_mask)
                return out.last_hidden_state

        net = Encoder().eval()
        ids = torch.randint(1000, 30000, (batch, seq_len))
        mask = torch.ones_like(ids)
        torch.onnx.export(net, (ids, mask), path, input_names=["input_ids", "attention_mask"],
                          output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                          dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}})
        feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rate = timed(session, feeds, batch, seconds)
    print(json.dumps({"runtime": f"onnxruntime {ort.__version__}", "model": model, "batch": batch,
                      "samples_per_s": rate, "threads": os.cpu_count()}))


if __name__ == "__main__":
    main()
