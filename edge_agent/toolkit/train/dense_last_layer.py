"""A dense feed-forward in the last layer of a query-pooled encoder.

Grouped 1x1 convolutions are what make SqueezeBERT fast: a layer's feed-forward with 4 groups
costs a quarter of a dense one for every token. Under query pooling (query_pooling.py) the last
layer runs for one row, the mean row, not for every token, so there its feed-forward costs
a few microseconds grouped or dense, while grouping still cuts it into four feed-forwards that
never see each other's channels. A dense one there is capacity nearly for free: the 0.9 M
weights grouping dropped (0.9 MB in an INT8 bundle), used once per message. Measured
(docs/models.md, encoder 1.4.3): the classifier's time at 32 tokens and more, 1.01-1.05x at
16, where 1.4.2 measured 0.98-1.00x in the same runs.

`densify_last_feed_forward` turns a grouped student's last feed-forward into a dense one that
computes exactly the same thing (the grouped weights as the diagonal blocks, zeros between
them), so training goes on from where it was. A checkpoint says it has one with
`dense_last_feed_forward` in its config; relative_bias.load_classifier builds such a model
before loading its weights. The exporter (export/graph.py) reads each convolution's own groups,
so it writes the dense layer as it is.

torch is imported inside the functions.
"""

from __future__ import annotations

import functools
from typing import Any, Final

DENSE_LAST_KEY: Final = "dense_last_feed_forward"


def has_dense_last_feed_forward(config: Any) -> bool:
    return bool(getattr(config, DENSE_LAST_KEY, False))


def last_feed_forward(model: Any) -> tuple[Any, Any]:
    """(intermediate, output) 1x1 convolutions of a SqueezeBERT model's last layer."""
    last = model.transformer.encoder.layers[-1]
    return last.intermediate.conv1d, last.output.conv1d


def make_last_feed_forward_dense(model: Any) -> None:
    """Replace the last layer's feed-forward convolutions by dense ones of the same size,
    freshly initialised, and say so in the config: the shape a checkpoint with
    `dense_last_feed_forward` loads into."""
    last = model.transformer.encoder.layers[-1]
    for holder in (last.intermediate, last.output):
        holder.conv1d = _dense_like(holder.conv1d)
    setattr(model.config, DENSE_LAST_KEY, True)


def densify_last_feed_forward(model: Any) -> None:
    """Make the last layer's feed-forward dense without changing what it computes, and say so
    in the config (saved with the checkpoint)."""
    import torch

    if has_dense_last_feed_forward(model.config):
        return
    block_diag: Any = torch.block_diag  # untyped in torch
    grouped = last_feed_forward(model)
    make_last_feed_forward_dense(model)
    with torch.no_grad():
        for old, new in zip(grouped, last_feed_forward(model), strict=True):
            # output group g reads input group g: the groups' [out/g, in/g] blocks on the diagonal
            blocks = old.weight[..., 0].split(old.out_channels // old.groups)
            new.weight.copy_(block_diag(*blocks).unsqueeze(-1))
            new.bias.copy_(old.bias)


@functools.cache
def with_dense_last_feed_forward(base: type) -> type:
    """`base` (a SqueezeBERT classifier class) whose last feed-forward is dense."""
    parent: Any = base  # transformers' classes are untyped

    class DenseLastClassifier(parent):  # type: ignore[misc]
        def __init__(self, config: Any) -> None:
            super().__init__(config)
            make_last_feed_forward_dense(self)
            self.post_init()

    return DenseLastClassifier


def _dense_like(conv: Any) -> Any:
    import torch

    return torch.nn.Conv1d(
        conv.in_channels, conv.out_channels, kernel_size=1, groups=1, dtype=conv.weight.dtype
    )
