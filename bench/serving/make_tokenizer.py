"""A small local word-level tokenizer for AIPerf (bench/serving.sh).

AIPerf needs a Hugging Face tokenizer even with --use-server-token-count (it
counts the prompts' tokens); its `builtin` choice downloads tiktoken's
o200k_base, which this machine cannot reach. Output tokens in every
comparison come from the server's `usage`, as joulebench's do, so this
tokenizer only sizes the inputs. Usage: python make_tokenizer.py PROMPTS DIR
"""
import json
import re
import sys
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers

prompts, out = Path(sys.argv[1]), Path(sys.argv[2])
words = {"[UNK]": 0}
for line in prompts.read_text().splitlines():
    if line.strip():
        for w in re.findall(r"\w+|[^\w\s]", json.loads(line)["text"]):
            words.setdefault(w, len(words))
for w in ("tok", "the", "a"):
    words.setdefault(w, len(words))
tok = Tokenizer(models.WordLevel(vocab=words, unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
out.mkdir(parents=True, exist_ok=True)
tok.save(str(out / "tokenizer.json"))
(out / "tokenizer_config.json").write_text(
    json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]",
                "model_max_length": 1000000})
)
print(out)
