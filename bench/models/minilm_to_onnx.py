"""all-MiniLM-L6-v2's encoder shape (BERT: 6 layers, hidden 384, 12 heads,
feed-forward 1536, vocabulary 30522) with seeded random weights, exported
to ONNX by torch.onnx.export with a dynamic batch and sequence ("s"):
speed does not depend on the weights, so no download is needed.

  python minilm_to_onnx.py OUT.onnx
"""
import sys

import torch
from transformers import BertConfig, BertModel

torch.manual_seed(1)
config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                    intermediate_size=1536, max_position_embeddings=512)


class Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.bert = BertModel(config).eval()

    def forward(self, input_ids, attention_mask):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


ids = torch.randint(1000, 30000, (2, 128))
torch.onnx.export(Encoder().eval(), (ids, torch.ones_like(ids)), sys.argv[1],
                  input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                  opset_version=17, dynamo=False,
                  dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"},
                                "last_hidden_state": {0: "b", 1: "s"}})
