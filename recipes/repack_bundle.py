"""Re-pack a shipped bundle in the current graph formulation, without its training checkpoint.

    git archive ef67550 models/sentiment/1.1.0 | tar -x -C /tmp   # 1.1.0 from history
    python recipes/repack_bundle.py sentiment --bundle /tmp/models/sentiment/1.1.0 \
        --work runs/sentiment-static --version 1.1.3 --threads 1

(intent likewise: `models/intent/1.1.0`, `--version 1.1.2`; that is how both shipped
bundles were made: per-group graph, int7 weights, static activation scales. Sentiment
1.1.2 and intent 1.1.1, the same without static scales, are in git history.)

An encoder bundle (per-group graph, static scales) reads back the same way with
`read_per_group_encoder`: `recipes/build_encoder.py --init-bundle DIR` continues
distilling from a shipped encoder's weights when the round's checkpoint is gone (encoder
1.2.0 was made so from 1.1.0, which is in git history).

Bundles up to sentiment/intent 1.1.0 were exported with the grouped layers as one batched
MatMul per layer (toolkit before commit 02693c1). Their Hugging Face checkpoints were not
kept, but the INT8 graph holds every weight: this script reads it back into a transformers
SqueezeBertForSequenceClassification (dequantized INT8 weights, the exact bias folds and
smoothing undone), saves that as the student checkpoint under --work, and runs the
recipe's bundle stage on it (export, quantize, measure fp32 and INT8 on the held-out rows,
pack as the task's current version). The weights are the shipped INT8 weights, so the
re-packed model is the shipped model, in the per-group graph.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import numpy as np

REPO: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _arrays(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in graph.initializer}


def _dequantized(node: Any, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """A DynamicQuantizeMatMul's weight as fp32 (x @ w), its smoothing Mul folded back in."""
    weight = arrays[node.input[1]].astype(np.float32) * arrays[node.input[2]].astype(np.float32)
    inverse = arrays.get(node.name.removesuffix("_q") + "_smooth_inv")
    if inverse is not None:  # (x / s) @ (s W): fold 1/s back into the weight's rows
        weight = weight * inverse.reshape(weight.shape[:-1])[..., None]
    return weight


def _conv_weight(grouped: np.ndarray) -> Any:
    """(groups, cin/g, cout/g) for x @ w -> Conv1d weight (cout, cin/g, 1)."""
    import torch

    groups, cin_g, cout_g = grouped.shape
    dense = grouped.transpose(0, 2, 1).reshape(groups * cout_g, cin_g)
    return torch.from_numpy(np.ascontiguousarray(dense[..., None], dtype=np.float32))


def _tensor(array: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.array(array, dtype=np.float32))  # a copy: torch writes to it


def _numbered(arrays: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    """Initializers `prefix_N` in graph order (N is the builder's running count)."""
    names = [name for name in arrays if name.startswith(prefix)]
    return [arrays[name] for name in sorted(names, key=lambda n: int(n.rsplit("_", 1)[1]))]


def _word_embeddings(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The graph's INT8 word embedding table as fp32."""
    words = arrays["word_embeddings_1_quantized"].astype(np.float32)
    return (words - arrays["word_embeddings_1_zero_point"]) * arrays["word_embeddings_1_scale"]


def _model_with_embeddings(
    words: np.ndarray,
    positions: np.ndarray,
    *,
    layers: int,
    heads: int,
    intermediate: int,
    groups: int,
    labels: int,
) -> tuple[Any, dict[str, Any]]:
    """A grouped SqueezeBertForSequenceClassification of this shape and its state dict, the
    embeddings set (token type 0's embedding is in the graph's position table, so the type
    table is 0); the caller fills the layers and loads the state."""
    from transformers import SqueezeBertForSequenceClassification

    from edge_agent.toolkit.train.minilm import squeezebert_config

    config = squeezebert_config(
        num_labels=labels,
        groups=groups,
        hidden=words.shape[1],
        layers=layers,
        heads=heads,
        intermediate=intermediate,
        vocab_size=words.shape[0],
        max_positions=positions.shape[0],
    )
    model: Any = SqueezeBertForSequenceClassification(config)
    state = model.state_dict()
    state["transformer.embeddings.word_embeddings.weight"] = _tensor(words)
    state["transformer.embeddings.position_embeddings.weight"] = _tensor(positions)
    state["transformer.embeddings.token_type_embeddings.weight"].zero_()
    return model, state


def _set_norm(state: dict[str, Any], prefix: str, node: Any, arrays: dict[str, np.ndarray]) -> None:
    """A LayerNormalization node's gamma and beta into `prefix`.weight / .bias."""
    state[prefix + ".weight"] = _tensor(arrays[node.input[1]])
    state[prefix + ".bias"] = _tensor(arrays[node.input[2]])


def read_batched_graph(model_onnx: Path, labels: int) -> Any:
    """transformers SqueezeBertForSequenceClassification computing what `model_onnx` (the
    batched formulation, INT8) computes, up to its activation quantization.

    The builder's exact folds are undone this way: q carried 1/sqrt(head size); k's bias was
    dropped (softmax ignores it) and v's moved into the post-attention bias, so both are 0
    here; the output bias lives in the first LayerNorm's beta with the intermediate bias
    compensated, which is the same function with an output bias of 0; token type 0's
    embedding is in the position table.
    """
    import onnx

    graph = onnx.load(str(model_onnx)).graph
    arrays = _arrays(graph)
    nodes = list(graph.node)
    matmuls = [n for n in nodes if n.op_type == "DynamicQuantizeMatMul"]
    layer_matmuls = [n for n in matmuls if not n.name.startswith("head_")]
    head = {n.name.split("_")[1]: n for n in matmuls if n.name.startswith("head_")}
    norms = [n for n in nodes if n.op_type == "LayerNormalization"]
    bias_after = {
        n.input[0]: arrays[n.input[1]] for n in nodes if n.op_type == "Add" and n.input[1] in arrays
    }
    words = _word_embeddings(arrays)
    positions = _numbered(arrays, "position_embeddings_")[0]
    q_biases = _numbered(arrays, "b_q_")
    first_qkv = arrays[layer_matmuls[0].input[1]]
    groups, hidden = first_qkv.shape[0], words.shape[1]
    heads = q_biases[0].shape[0]
    root = np.float32(np.sqrt(hidden // heads))
    model, state = _model_with_embeddings(
        words,
        positions,
        layers=len(layer_matmuls) // 4,
        heads=heads,
        intermediate=arrays[layer_matmuls[2].input[1]].shape[2] * groups,
        groups=groups,
        labels=labels,
    )

    _set_norm(state, "transformer.embeddings.LayerNorm", norms[0], arrays)
    width = hidden // groups
    for i in range(model.config.num_hidden_layers):
        layer = f"transformer.encoder.layers.{i}."
        qkv, post, intermediate, output = layer_matmuls[4 * i : 4 * i + 4]
        w = _dequantized(qkv, arrays)
        state[layer + "attention.query.weight"] = _conv_weight(w[:, :, :width] * root)
        state[layer + "attention.key.weight"] = _conv_weight(w[:, :, width : 2 * width])
        state[layer + "attention.value.weight"] = _conv_weight(w[:, :, 2 * width :])
        state[layer + "attention.query.bias"] = _tensor(q_biases[i].reshape(-1) * root)
        state[layer + "attention.key.bias"].zero_()
        state[layer + "attention.value.bias"].zero_()
        state[layer + "post_attention.conv1d.weight"] = _tensor(
            _dequantized(post, arrays).T[..., None]
        )
        state[layer + "post_attention.conv1d.bias"] = _tensor(bias_after[post.output[0]])
        _set_norm(state, layer + "post_attention.layernorm", norms[1 + 2 * i], arrays)
        state[layer + "intermediate.conv1d.weight"] = _conv_weight(
            _dequantized(intermediate, arrays)
        )
        state[layer + "intermediate.conv1d.bias"] = _tensor(
            bias_after[intermediate.output[0]].reshape(-1)
        )
        state[layer + "output.conv1d.weight"] = _conv_weight(_dequantized(output, arrays))
        state[layer + "output.conv1d.bias"].zero_()
        _set_norm(state, layer + "output.layernorm", norms[2 + 2 * i], arrays)
    for part, key in (("pool", "transformer.pooler.dense"), ("cls", "classifier")):
        weight = (
            _dequantized(head[part], arrays) if part in head else _numbered(arrays, f"w_{part}_")[0]
        )
        bias = _numbered(arrays, f"b_{part}_")[0]
        state[key + ".weight"] = _tensor(weight.T)
        state[key + ".bias"] = _tensor(bias)
    model.load_state_dict(state)
    model.eval()
    return model


def _number(name: str) -> int:
    """The builder's running count in a node name (`matmul_27_q` -> 27): creation order."""
    return int(name.removesuffix("_q").rsplit("_", 1)[1])


def _integer_matmul_weight(node: Any, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """A static-scale MatMulIntegerToFloat's weight as fp32 (x @ w), smoothing folded back."""
    weight = (arrays[node.input[1]].astype(np.float32) - arrays[node.input[5]]) * arrays[
        node.input[3]
    ].astype(np.float32)
    inverse = arrays.get(node.name.removesuffix("_q") + "_smooth_inv")
    if inverse is not None:  # (x * inv) @ W' = x @ (inv W')
        weight = weight * inverse[:, None]
    return weight


def read_per_group_encoder(
    model_onnx: Path, bundle_vocab: dict[str, int], vocab: dict[str, int]
) -> Any:
    """transformers SqueezeBertForSequenceClassification whose encoder computes what an
    embedding bundle's INT8 per-group graph (toolkit/export/graph.py, static activation
    scales) computes, up to its activation quantization; its word embeddings re-indexed
    from the bundle's pruned vocabulary (`bundle_vocab`, toolkit/train/vocab.py) to
    `vocab` (rows the bundle dropped, never produced by the tokenizer, are zero). The
    folds are undone as in read_batched_graph; the pooler and classifier are unused."""
    import onnx

    graph = onnx.load(str(model_onnx)).graph
    arrays = _arrays(graph)
    matmuls = sorted(
        (n for n in graph.node if n.op_type == "MatMulIntegerToFloat"),
        key=lambda n: _number(n.name),
    )
    norms = sorted(
        (n for n in graph.node if n.op_type == "LayerNormalization"), key=lambda n: _number(n.name)
    )
    pruned = _word_embeddings(arrays)
    words = np.zeros((len(vocab), pruned.shape[1]), dtype=np.float32)
    for token, row in bundle_vocab.items():
        words[vocab[token]] = pruned[row]
    positions = _numbered(arrays, "position_embeddings_")[0]
    # The q/k/v Reshape's target (0, 0, groups, 3, heads / groups, head size) gives the shape.
    split = next(a for name, a in arrays.items() if name.startswith("shape_") and a.shape == (6,))
    groups, heads, hidden = int(split[2]), int(split[2] * split[4]), words.shape[1]
    per_layer = 1 + 3 * groups  # q/k/v per group, post-attention, intermediate and output per group
    # a dense last feed-forward (train/dense_last_layer.py) has one intermediate and one output
    full_layers, rest = divmod(len(matmuls), per_layer)
    dense_last = rest == groups + 3
    if (rest and not dense_last) or hidden != heads * int(split[5]):
        raise ValueError(f"{model_onnx}: not a per-group encoder graph")
    root = np.float32(np.sqrt(hidden // heads))
    model, state = _model_with_embeddings(
        words,
        positions,
        layers=full_layers + dense_last,
        heads=heads,
        intermediate=arrays[matmuls[groups + 1].input[1]].shape[1] * groups,
        groups=groups,
        labels=2,  # the head is unused
    )
    if dense_last:
        from edge_agent.toolkit.train.dense_last_layer import make_last_feed_forward_dense

        make_last_feed_forward_dense(model)

    def stacked(nodes: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        weights = np.stack([_integer_matmul_weight(n, arrays) for n in nodes])
        return weights, np.concatenate([arrays[n.input[6]] for n in nodes])

    _set_norm(state, "transformer.embeddings.LayerNorm", norms[0], arrays)
    width = hidden // groups
    for i in range(model.config.num_hidden_layers):
        layer = f"transformer.encoder.layers.{i}."
        nodes = matmuls[per_layer * i : per_layer * (i + 1)]
        qkv, qkv_bias = stacked(nodes[:groups])  # (g, cin/g, [q | k | v]), bias [q*scale, 0, 0]
        state[layer + "attention.query.weight"] = _conv_weight(qkv[:, :, :width] * root)
        state[layer + "attention.key.weight"] = _conv_weight(qkv[:, :, width : 2 * width])
        state[layer + "attention.value.weight"] = _conv_weight(qkv[:, :, 2 * width :])
        q_bias = qkv_bias.reshape(groups, 3 * width)[:, :width].reshape(-1)
        state[layer + "attention.query.bias"] = _tensor(q_bias * root)
        state[layer + "attention.key.bias"].zero_()
        state[layer + "attention.value.bias"].zero_()  # folded into the post-attention bias
        post = _integer_matmul_weight(nodes[groups], arrays)
        state[layer + "post_attention.conv1d.weight"] = _tensor(post.T[..., None])
        state[layer + "post_attention.conv1d.bias"] = _tensor(arrays[nodes[groups].input[6]])
        _set_norm(state, layer + "post_attention.layernorm", norms[1 + 2 * i], arrays)
        ffn_groups = 1 if dense_last and i == model.config.num_hidden_layers - 1 else groups
        intermediate, intermediate_bias = stacked(nodes[groups + 1 : groups + ffn_groups + 1])
        state[layer + "intermediate.conv1d.weight"] = _conv_weight(intermediate)
        state[layer + "intermediate.conv1d.bias"] = _tensor(intermediate_bias)
        output, output_bias = stacked(nodes[groups + ffn_groups + 1 :])
        state[layer + "output.conv1d.weight"] = _conv_weight(output)
        state[layer + "output.conv1d.bias"] = _tensor(output_bias)
        _set_norm(state, layer + "output.layernorm", norms[2 + 2 * i], arrays)
    model.load_state_dict(state)
    model.eval()
    if _pools_one_row(graph):
        from edge_agent.toolkit.train.query_pooling import use_query_pooling

        use_query_pooling(model)
    return model


def read_encoder_bundle(bundle: Path, vocab: dict[str, int]) -> Any:
    """read_per_group_encoder on an encoder bundle folder: its graph, re-indexed from its
    tokenizer's vocabulary to `vocab`."""
    tokenizer = json.loads((bundle / "tokenizer.json").read_text(encoding="utf-8"))
    return read_per_group_encoder(bundle / "model.onnx", tokenizer["model"]["vocab"], vocab)


def _pools_one_row(graph: Any) -> bool:
    """Whether an encoder graph is query-pooled: its `embeddings` normalise the last layer's
    one row (a Gather) rather than a mean over every row (toolkit/export/graph.py)."""
    producers = {output: node for node in graph.node for output in node.output}
    pooled = producers[producers["embeddings"].input[0]]
    return bool(pooled.op_type == "Gather")


def main(argv: list[str] | None = None) -> int:
    from recipes import build_models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=("sentiment", "intent"))
    parser.add_argument(
        "--bundle", type=Path, required=True, help="a 1.1.0 bundle (batched-MatMul graph)"
    )
    parser.add_argument("--work", type=Path, help="default: runs/<model>-repack")
    parser.add_argument("--datasets", help="datasets folder (default ../shared/datasets)")
    parser.add_argument("--version", help="of the new bundle (default: the old one's patch + 1)")
    parser.add_argument("--threads", type=int, help="torch and onnxruntime threads (default 2)")
    parser.add_argument("--models-dir", type=Path, help="where to pack (default models/)")
    args = parser.parse_args(argv)
    bundle: Path = args.bundle
    work: Path = args.work or REPO / "runs" / f"{args.model}-repack"
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    major, minor, patch = (int(part) for part in manifest["version"].split("."))
    version = args.version or f"{major}.{minor}.{patch + 1}"
    task = build_models.TASKS[args.model]
    card = dict(task.card)
    # the recipe's description of the data and quantization as they are now
    card["training_data"] = (
        f"{task.card['training_data']} {version} holds {manifest['version']}'s weights,"
        " read back from its INT8 graph (recipes/repack_bundle.py) and exported in the"
        " per-group graph."
    )
    # the bundle stage packs TASKS[model]: same recipe and data, this version and card
    build_models.TASKS[args.model] = replace(task, version=version, card=card)
    model = read_batched_graph(bundle / "model.onnx", len(manifest["labels"]))
    model.config.id2label = dict(enumerate(manifest["labels"]))
    model.config.label2id = {name: i for i, name in enumerate(manifest["labels"])}
    student = work / "student"
    student.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(student))
    shutil.copyfile(bundle / "tokenizer.json", student / "tokenizer.json")
    print(f"{bundle}: read back into {student}", flush=True)
    forward = [args.model, "--stage", "bundle", "--work", str(work)]
    options = {
        "--datasets": args.datasets,
        "--threads": args.threads,
        "--models-dir": args.models_dir,
    }
    for option, value in options.items():
        forward += [option, str(value)] if value is not None else []
    return build_models.main(forward)


if __name__ == "__main__":
    sys.exit(main())
