"""SqueezeBERT with a relative position bias on its attention scores (MPNet's, T5's kind).

all-mpnet-base-v2 (12 layers, hidden 768) is a BERT-shaped encoder except for one part: every
layer adds a learned bias to its attention scores that depends only on the distance between
query and key, bucketed (32 buckets, exact up to 8 tokens, logarithmic up to 128), one value
per head, shared by all layers. With every group = 1 a SqueezeBERT layer is exactly a BERT
layer, so MPNet becomes a SqueezeBERT classifier without loss once that bias is added, and
the product's graph (export/graph.py) and quantizer then run it as they run the small models.

transformers' SqueezeBERT has no such bias, so this module subclasses it: the encoder adds the
bias to the additive attention mask it hands every layer (the layers add the mask to their
scores, so the sum is exactly MPNet's `scores + position_bias + mask`). A checkpoint says it
has one with `relative_attention_num_buckets` in its config; `load_classifier` picks the class
from that, so every tool that loads a SqueezeBERT checkpoint reads both kinds.

torch and transformers are imported inside the functions.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Final

import numpy as np

BUCKETS_KEY: Final = "relative_attention_num_buckets"
MAX_DISTANCE_KEY: Final = "relative_attention_max_distance"
# MPNet's values (transformers' MPNetEncoder.relative_position_bucket defaults)
MPNET_BUCKETS: Final = 32
MPNET_MAX_DISTANCE: Final = 128


def has_relative_bias(config: Any) -> bool:
    return int(getattr(config, BUCKETS_KEY, 0) or 0) > 0


def relative_buckets(length: int, config: Any) -> np.ndarray:
    """[length, length] int64: the bucket of key j seen from query i, as MPNet computes it."""
    import torch
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    positions = torch.arange(length, dtype=torch.long)
    relative = positions[None, :] - positions[:, None]
    bucket_of: Any = MPNetEncoder.relative_position_bucket  # untyped in transformers
    buckets = bucket_of(
        relative,
        num_buckets=int(getattr(config, BUCKETS_KEY)),
        max_distance=int(getattr(config, MAX_DISTANCE_KEY, MPNET_MAX_DISTANCE)),
    )
    result: np.ndarray = buckets.numpy().astype(np.int64)
    return result


@functools.cache
def _classes() -> tuple[type, type]:
    """(encoder, classifier) subclasses, made once: torch is imported only when needed."""
    import torch
    from transformers import SqueezeBertForSequenceClassification
    from transformers.models.squeezebert.modeling_squeezebert import SqueezeBertEncoder

    # transformers' classes are untyped: subclass them as Any
    encoder_base: Any = SqueezeBertEncoder
    classifier_base: Any = SqueezeBertForSequenceClassification

    class RelativeBiasEncoder(encoder_base):  # type: ignore[misc]
        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.relative_attention_bias = torch.nn.Embedding(
                int(getattr(config, BUCKETS_KEY)), config.num_attention_heads
            )
            self.bucket_config = config
            # bucket tables by length, computed once each: a plain dict, not a registered
            # buffer, because transformers builds models on the meta device first, where a
            # buffer filled at __init__ would be lost
            self.bucket_tables: dict[int, Any] = {}

        def buckets(self, length: int, device: Any) -> Any:
            table = self.bucket_tables.get(length)
            if table is None:
                table = torch.from_numpy(relative_buckets(length, self.bucket_config))
                self.bucket_tables[length] = table
            return table.to(device)

        def forward(
            self, hidden_states: Any, attention_mask: Any = None, *args: Any, **kwargs: Any
        ) -> Any:
            length = hidden_states.shape[1]  # (b, l, c) here; the layers permute it
            bias = self.relative_attention_bias(self.buckets(length, hidden_states.device))
            bias = bias.permute(2, 0, 1).unsqueeze(0).to(hidden_states.dtype)  # (1, h, l, l)
            mask = bias if attention_mask is None else attention_mask + bias
            return super().forward(hidden_states, mask, *args, **kwargs)

    class RelativeBiasClassifier(classifier_base):  # type: ignore[misc]
        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.transformer.encoder = RelativeBiasEncoder(config)
            self.post_init()

    return RelativeBiasEncoder, RelativeBiasClassifier


def classifier_class(config: Any) -> type:
    """The SqueezeBERT classifier class for `config`: with a relative bias or transformers' own,
    with a dense last feed-forward where the config says so (dense_last_layer.py)."""
    from edge_agent.toolkit.train.dense_last_layer import (
        has_dense_last_feed_forward,
        with_dense_last_feed_forward,
    )

    base: type
    if has_relative_bias(config):
        base = _classes()[1]
    else:
        from transformers import SqueezeBertForSequenceClassification

        base = SqueezeBertForSequenceClassification
    return with_dense_last_feed_forward(base) if has_dense_last_feed_forward(config) else base


def load_classifier(checkpoint: Path | str, **overrides: Any) -> Any:
    """A SqueezeBERT classifier checkpoint, with or without a relative position bias or a
    dense last feed-forward; `overrides` go to transformers' from_pretrained."""
    from transformers import SqueezeBertConfig

    config = SqueezeBertConfig.from_pretrained(str(checkpoint))
    model_class: Any = classifier_class(config)
    return model_class.from_pretrained(str(checkpoint), **overrides)
