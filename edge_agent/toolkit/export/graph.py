"""SqueezeBERT classifier written directly as an ONNX graph, op by op, for speed.

Exporting a torch module traces every shape computation (Shape/Gather/Concat chains per
Reshape) and leaves bias additions where onnxruntime cannot fuse them. Writing the graph
by hand from the weights gives onnxruntime's CPU kernels exactly what they are fastest
at (measured with per-op profiles, see docs/benchmarks.md):

- grouped 1x1 convolutions as one 2D MatMul per group between a Split and a Concat of the
  channels: onnxruntime pre-packs only 2D weights for its integer GEMMs, and a 1D bias
  after a 2D MatMul becomes the GEMM's own bias input on quantization, so no bias costs a
  pass over the activations of its own;
- q, k and v as one MatMul per group, then one Transpose into (3, batch, heads, length,
  head size);
- feed-forward kept apart per group end to end (output group i reads exactly the channels
  intermediate group i wrote);
- biases folded away where the algebra allows it exactly: k's bias shifts every score of
  a row equally (softmax ignores it), v's bias passes through attention unchanged (rows
  of attention weights sum to 1) into the post-attention bias, 1/sqrt(head size) into q;
- the last layer for the first token only: the pooler reads nothing else, so its queries,
  post-attention, feed-forward and LayerNorms run on one position instead of all (keys
  and values still cover every token);
- an encoder with query pooling (train/query_pooling.py) likewise runs its last layer for
  one row, the masked mean of the layer's input, and that row is the embedding;
- Reshape with 0 (= keep this dimension), so no shape arithmetic in the graph;
- a relative position bias (train/relative_bias.py: MPNet's weights) added to the mask once,
  so every layer still adds one tensor to its scores.

Measured and rejected (slower here, onnxruntime 1.32, x86, 1 thread; see
docs/benchmarks.md): com.microsoft MultiHeadAttention and SkipLayerNormalization, one
batched MatMul over a (groups, cin/g, cout/g) weight (not pre-packed; its bias cannot be
the GEMM's), and INT8 attention matmuls.

Interface per the bundle contract: int64 `input_ids` and `attention_mask` [batch, seq],
float32 `logits` [batch, labels]. token_type_ids are always 0 here, so the type-0
embedding is folded into the position table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from edge_agent.toolkit.export.graph_ops import (
    GraphBuilder,
    concat_channels,
    first_token,
    float_array,
    from_heads,
    grouped_matmul,
    grouped_vecmat,
    grouped_weight,
    matmuls_per_group,
    relative_position_bias,
    split_channels,
)
from edge_agent.toolkit.train.relative_bias import has_relative_bias, relative_buckets

OPSET: Final = 17
MS_DOMAIN: Final = "com.microsoft"
# Node-name prefix of the classification head (pooler, classifier). It runs once per text,
# not per token, so it costs nothing in fp32, and quantizing it perturbs the logits
# directly; quantize.py leaves these nodes in fp32.
HEAD_PREFIX: Final = "head_"
# A checkpoint's config key saying how an encoder turns its last layer into the sentence
# embedding: "mean" over every token's output (the default, the teacher's way) or "query"
# (train/query_pooling.py).
POOLING_KEY: Final = "sentence_pooling"
MEAN_POOLING: Final = "mean"
QUERY_POOLING: Final = "query"


def sentence_pooling(config: Any) -> str:
    """The pooling a checkpoint's config names (mean when it names none)."""
    pooling = str(getattr(config, POOLING_KEY, MEAN_POOLING))
    if pooling not in (MEAN_POOLING, QUERY_POOLING):
        raise UnsupportedConfigError(f"{POOLING_KEY} {pooling!r} (only mean or query)")
    return pooling


@dataclass(frozen=True)
class _OneRow:
    """The one row a last layer computes: the first token's, or with `mean_rows` (from
    `_mean_rows`) the mean of the real tokens' rows."""

    mean_rows: str | None = None


class UnsupportedConfigError(ValueError):
    """This config has no hand-written graph; use the traced export instead."""


def _token_share(graph: GraphBuilder, token_weights: str) -> str:
    """[b, l]: each real token's share of a mean over the text (1 / count, 0 at padding)."""
    axes = graph.const("axes", np.array([1], dtype=np.int64))
    count = graph.op("ReduceSum", [token_weights, axes], keepdims=1)
    floor = graph.const("min_count", np.array(1e-9, dtype=np.float32))
    return graph.op("Div", [token_weights, graph.op("Max", [count, floor])])


def _masked_mean(graph: GraphBuilder, x: str, token_weights: str) -> str:
    """Mean of x [b, l, c] over the real tokens: [b, 1, c] (mean pooling)."""
    share = graph.op(
        "Unsqueeze",
        [_token_share(graph, token_weights), graph.const("axes", np.array([2], dtype=np.int64))],
    )
    axes = graph.const("axes", np.array([1], dtype=np.int64))
    return graph.op("ReduceSum", [graph.op("Mul", [x, share]), axes], keepdims=1)


def _mean_rows(graph: GraphBuilder, token_weights: str) -> str:
    """[b, 2, l]: the token shares twice. A MatMul by them takes the mean over the tokens
    in one op (query pooling reads it twice in the last layer). Two rows and not one for
    the reason `_attention` gives: the M = 1 kernel's sum depends on the padded length."""
    row = graph.op(
        "Unsqueeze",
        [_token_share(graph, token_weights), graph.const("axes", np.array([1], dtype=np.int64))],
    )
    return graph.op("Concat", [row, row], axis=1)


def _one_row(graph: GraphBuilder, x: str, row: _OneRow) -> str:
    """x [b, l, c]'s one row [b, 1, c]: the first token's or the mean of the real tokens'."""
    if row.mean_rows is None:
        return first_token(graph, x, 1)
    return first_token(graph, graph.op("MatMul", [row.mean_rows, x]), 1)


def _add_layer_norm(graph: GraphBuilder, y: str, residual: str, norm: Any) -> str:
    """LayerNorm(y + residual)."""
    return graph.op(
        "LayerNormalization",
        [
            graph.op("Add", [y, residual]),
            graph.const("gamma", float_array(norm.weight)),
            graph.const("beta", float_array(norm.bias)),
        ],
        axis=-1,
        epsilon=float(norm.eps),
    )


def _attention(
    graph: GraphBuilder,
    x: str,
    attention: Any,
    mask_bias: str,
    channels: int,
    *,
    one_row: _OneRow | None,
) -> str:
    """softmax(q k^T / sqrt(d) + mask) v in (b, heads, l, d); returns (b, l, c) without
    v's bias, which the caller folds into the post-attention bias. With `one_row`, one query
    (and so one output row): the first token's, which is all a classifier reads of the last
    layer, or the mean of the queries, which is the query of the mean row (q is linear in x
    and the weights sum to 1)."""
    heads = attention.num_attention_heads
    head_size = channels // heads
    scale = 1.0 / np.sqrt(head_size)
    convs = (attention.query, attention.key, attention.value)
    weights = [grouped_weight(c) for c in convs]
    weights[0] = weights[0] * np.float32(scale)
    q_bias = float_array(attention.query.bias) * np.float32(scale)
    g = attention.query.groups
    if all(c.groups == g for c in convs) and heads % g == 0:
        # One MatMul per group for q, k and v together; its columns [q | k | v] of the
        # group's h/g heads. k's bias is dropped (softmax ignores a per-row shift) and v's
        # moves into the post-attention bias, so only q's bias is left to add.
        weight = np.concatenate(weights, axis=2)
        zeros = np.zeros((g, 2 * channels // g), np.float32)
        bias = np.concatenate([q_bias.reshape(g, -1), zeros], axis=1)
        qkv = grouped_matmul(graph, x, weight, bias)  # (b, l, [g, 3, h/g, d])
        split = graph.const("shape", np.array([0, 0, g, 3, heads // g, head_size], np.int64))
        # (b, l, g, 3, h/g, d) -> (3, b, g, h/g, l, d) -> (3, b, h, l, d)
        qkv = graph.op("Transpose", [graph.op("Reshape", [qkv, split])], perm=[3, 0, 2, 4, 1, 5])
        merged = graph.const("shape", np.array([3, 0, heads, -1, head_size], dtype=np.int64))
        qkv = graph.op("Reshape", [qkv, merged])
        q, k, v = (
            graph.op("Gather", [qkv, graph.const("index", np.array(i, dtype=np.int64))], axis=0)
            for i in range(3)
        )
    else:
        to_heads = graph.const("shape", np.array([0, 0, heads, head_size], dtype=np.int64))
        q, k, v = (
            graph.op(
                "Transpose",
                [graph.op("Reshape", [grouped_matmul(graph, x, w, b), to_heads])],
                perm=[0, 2, 1, 3],
            )
            for w, b in zip(weights, (q_bias, None, None), strict=True)
        )
    if one_row is not None:
        # Two query rows, not one: with one query row onnxruntime's x86 SGEMM takes its
        # M = 1 kernel for p·v, whose sum over the keys is ordered by the padded length, so
        # the context moved by an ulp with the padding and flipped INT8 roundings downstream
        # (scores moved by 5e-5). With two rows the general kernel adds the keys in order,
        # padding adds exact zeros at the end, and the context is the same whatever the
        # batch's length. The second row is the next token's, or the mean row again.
        if one_row.mean_rows is None:
            q = first_token(graph, q, axis=2, count=2)
        else:  # (b, 1, 2, l) x (b, h, l, d): the mean query, twice
            rows = graph.const("axes", np.array([1], dtype=np.int64))
            q = graph.op("MatMul", [graph.op("Unsqueeze", [one_row.mean_rows, rows]), q])
    scores = graph.op("MatMul", [q, graph.op("Transpose", [k], perm=[0, 1, 3, 2])])
    probabilities = graph.op("Softmax", [graph.op("Add", [scores, mask_bias])], axis=-1)
    context = graph.op("MatMul", [probabilities, v])
    if one_row is not None:
        context = first_token(graph, context, axis=2)
    return from_heads(graph, context, channels)


def _feed_forward(graph: GraphBuilder, x: str, intermediate: Any, output: Any) -> str:
    """GELU(x W1 + b1) W2 + b2; with equal grouping the groups stay apart in between
    (output group i reads exactly the channels intermediate group i wrote)."""
    w1, w2 = grouped_weight(intermediate), grouped_weight(output)
    b1, b2 = float_array(intermediate.bias), float_array(output.bias)
    g = intermediate.groups
    if output.groups == g:
        parts = split_channels(graph, x, w1)
        hidden = [
            graph.op("Gelu", [h], domain=MS_DOMAIN) for h in matmuls_per_group(graph, parts, w1, b1)
        ]
        return concat_channels(graph, matmuls_per_group(graph, hidden, w2, b2))
    gelu = graph.op("Gelu", [grouped_matmul(graph, x, w1, b1)], domain=MS_DOMAIN)
    return grouped_matmul(graph, gelu, w2, b2)


def _layer(
    graph: GraphBuilder,
    x: str,
    layer: Any,
    mask_bias: str,
    channels: int,
    *,
    one_row: _OneRow | None,
) -> str:
    post, out = layer.post_attention, layer.output
    context = _attention(graph, x, layer.attention, mask_bias, channels, one_row=one_row)
    w_post = grouped_weight(post.conv1d)
    post_bias = float_array(post.conv1d.bias) + grouped_vecmat(
        float_array(layer.attention.value.bias), w_post
    )
    residual = x if one_row is None else _one_row(graph, x, one_row)
    y = grouped_matmul(graph, context, w_post, post_bias)
    x1 = _add_layer_norm(graph, y, residual, post.layernorm)
    y = _feed_forward(graph, x1, layer.intermediate.conv1d, out.conv1d)
    return _add_layer_norm(graph, y, x1, out.layernorm)


def build_graph(hf_model: Any, *, embedding: bool = False) -> Any:
    """onnx.ModelProto computing `hf_model(input_ids, attention_mask).logits`, or with
    `embedding`, the encoder's L2-normalised sentence embedding as `embeddings`, pooled as its
    config says (sentence_pooling; pooler and classifier unused)."""
    from onnx import TensorProto, helper

    config = hf_model.config
    if config.hidden_act != "gelu":
        raise UnsupportedConfigError(f"hidden_act {config.hidden_act!r} (only 'gelu')")
    if config.embedding_size != config.hidden_size:
        raise UnsupportedConfigError("embedding_size must equal hidden_size")
    base = hf_model.transformer
    emb = base.embeddings
    channels = config.hidden_size
    graph = GraphBuilder()
    words = graph.op(
        "Gather",
        [graph.const("word_embeddings", float_array(emb.word_embeddings.weight)), "input_ids"],
        axis=0,
    )
    positions_table = (
        float_array(emb.position_embeddings.weight)
        + float_array(emb.token_type_embeddings.weight)[0]
    )
    length = graph.op(
        "Slice",
        [
            graph.op("Shape", ["input_ids"]),
            graph.const("one", np.array([1], dtype=np.int64)),
            graph.const("two", np.array([2], dtype=np.int64)),
        ],
    )
    positions = graph.op(
        "Slice",
        [
            graph.const("position_embeddings", positions_table),
            graph.const("zero", np.array([0], dtype=np.int64)),
            length,
        ],
    )
    x = graph.op(
        "LayerNormalization",
        [
            graph.op("Add", [words, positions]),
            graph.const("gamma", float_array(emb.LayerNorm.weight)),
            graph.const("beta", float_array(emb.LayerNorm.bias)),
        ],
        axis=-1,
        epsilon=float(emb.LayerNorm.eps),
    )
    # (b, 1, 1, l): 0 for tokens, -10000 for padding (exp underflows to 0 in fp32).
    as_float = graph.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    inverted = graph.op("Sub", [graph.const("one", np.array(1.0, dtype=np.float32)), as_float])
    mask = graph.op("Mul", [inverted, graph.const("neg", np.array(-10000.0, dtype=np.float32))])
    mask = graph.op("Unsqueeze", [mask, graph.const("axes", np.array([1, 2], dtype=np.int64))])
    # The last layer runs for the one row that is read: the first token (a classifier's
    # pooler reads nothing else), the mean row (query pooling), or every row (mean pooling).
    mean_pooled = embedding and sentence_pooling(config) == MEAN_POOLING
    if mean_pooled:
        last_row = None
    elif embedding:
        last_row = _OneRow(mean_rows=_mean_rows(graph, as_float))
    else:
        last_row = _OneRow()
    layer_bias, last_bias = mask, mask
    if has_relative_bias(config):
        if last_row is not None and last_row.mean_rows is not None:
            raise UnsupportedConfigError("query pooling with a relative position bias")
        relative = relative_position_bias(
            graph,
            float_array(base.encoder.relative_attention_bias.weight),
            relative_buckets(config.max_position_embeddings, config),
            length,
        )
        layer_bias = graph.op("Add", [mask, relative])
        # the last layer's two query rows (see _attention) see the first two rows of it
        last_bias = layer_bias if last_row is None else first_token(graph, layer_bias, 2, 2)
    layers = list(base.encoder.layers)
    for index, layer in enumerate(layers):
        last = index == len(layers) - 1
        one_row = last_row if last else None
        x = _layer(graph, x, layer, last_bias if last else layer_bias, channels, one_row=one_row)
    if mean_pooled:
        mean = _masked_mean(graph, x, as_float)
        row = graph.op("Squeeze", [mean, graph.const("axes", np.array([1], dtype=np.int64))])
    else:  # the last layer's one row
        row = graph.op("Gather", [x, graph.const("index", np.array(0, dtype=np.int64))], axis=1)
    if embedding:
        return _finish(graph, [_normalised(row)], "embeddings", channels)
    pooler, classifier = base.pooler.dense, hf_model.classifier
    pooled = graph.op(
        "MatMul",
        [row, graph.const("w_pool", float_array(pooler.weight).T.copy())],
        HEAD_PREFIX + "pool",
    )
    pooled = graph.op(
        "Tanh", [graph.op("Add", [pooled, graph.const("b_pool", float_array(pooler.bias))])]
    )
    logits = graph.op(
        "MatMul",
        [pooled, graph.const("w_cls", float_array(classifier.weight).T.copy())],
        HEAD_PREFIX + "cls",
    )
    logits_out = helper.make_node(
        "Add",
        [logits, graph.const("b_cls", float_array(classifier.bias))],
        ["logits"],
        name="logits",
    )
    graph.nodes.append(logits_out)
    return _finish(graph, [], "logits", config.num_labels)


def _normalised(row: str) -> Any:
    """The node writing `embeddings`: the pooled row [b, c], L2-normalised."""
    from onnx import helper

    return helper.make_node(
        "LpNormalization", [row], ["embeddings"], name="embeddings", axis=-1, p=2
    )


def _finish(graph: GraphBuilder, last_nodes: list[Any], output: str, width: int) -> Any:
    from onnx import TensorProto, helper

    graph.nodes.extend(last_nodes)
    dims = ["batch", "seq"]
    onnx_graph = helper.make_graph(
        graph.nodes,
        "squeezebert_encoder" if output == "embeddings" else "squeezebert_classifier",
        [
            helper.make_tensor_value_info(n, TensorProto.INT64, dims)
            for n in ("input_ids", "attention_mask")
        ],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", width])],
        graph.initializers,
    )
    return helper.make_model(
        onnx_graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
        producer_name="edge-agent",
    )


def write_graph(hf_model: Any, out_path: Path, *, embedding: bool = False) -> Path:
    import onnx

    model = build_graph(hf_model, embedding=embedding)
    onnx.checker.check_model(model)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    return out_path
