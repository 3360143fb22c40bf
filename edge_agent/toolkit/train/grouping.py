"""Grouped weights fitted to what the dense layer computes on real text.

A grouped 1x1 convolution lets output group g see only input group g. Keeping just the diagonal
blocks of the dense weight throws away every other input channel's contribution, and the SST-2
teacher fell from 92.9% to 62% that way. Input channels are correlated, though, so much of what
the dropped channels carry can be predicted from the kept ones. For each output group the
least-squares answer on real activations x (with a trailing 1 for the bias) is

    B_g = W_g C[:, S] C[S, S]^-1,   C = E[x x^T],  S = input group g's channels + the constant

which needs only the second moments C of each layer's input: one pass of the dense model over a
few thousand training sentences. The constant column moves the mean of the dropped channels
into the bias.

torch is imported inside the functions that need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import torch

# Ridge on C[S, S] relative to its mean diagonal: near-collinear channels stay solvable.
RIDGE: Final = 1e-3


def moment_key(layer: int, name: str) -> str:
    """Key of one layer input's moments: name is "attention" (shared by q, k and v),
    "intermediate" or "output"."""
    return f"{layer}.{name}"


def input_moments(
    bert_classifier: Any, ids: Sequence[Sequence[int]], batch_size: int = 64
) -> dict[str, torch.Tensor]:
    """E[x x^T] of the input of every grouped layer of a BertForSequenceClassification,
    over the real (unpadded) tokens of `ids`; x carries a trailing 1."""
    import torch

    from edge_agent.toolkit.train.data import length_batches
    from edge_agent.toolkit.train.fit import pad_batch

    model = bert_classifier.eval()
    device = next(model.parameters()).device
    sums: dict[str, torch.Tensor] = {}
    tokens = 0
    keep: list[torch.Tensor] = []  # the current batch's token mask, flattened

    def record(key: str) -> Any:
        def hook(module: Any, inputs: tuple[torch.Tensor, ...]) -> None:
            del module
            x = inputs[0].reshape(-1, inputs[0].shape[-1])[keep[0]].double()
            x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
            moment = x.T @ x
            sums[key] = sums[key] + moment if key in sums else moment

        return hook

    handles = []
    for i, layer in enumerate(model.bert.encoder.layer):
        for name, module in (
            ("attention", layer.attention.self.query),
            ("intermediate", layer.intermediate.dense),
            ("output", layer.output.dense),
        ):
            handles.append(module.register_forward_pre_hook(record(moment_key(i, name))))
    try:
        with torch.inference_mode():
            for batch in length_batches([len(r) for r in ids], batch_size, seed=None):
                input_ids, mask = pad_batch([ids[i] for i in batch], device)
                keep[:] = [mask.reshape(-1).bool()]
                tokens += int(mask.sum())
                model(input_ids=input_ids, attention_mask=mask)
    finally:
        for handle in handles:
            handle.remove()
    return {key: (total / max(1, tokens)).cpu() for key, total in sums.items()}


def fit_grouped(
    weight: torch.Tensor, bias: torch.Tensor, moments: torch.Tensor, groups: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense [out, in] weight and bias -> grouped conv weight [out, in/groups, 1] and bias that
    best reproduce the dense outputs on inputs with second moments `moments` ([in+1, in+1])."""
    import torch

    out_features, in_features = weight.shape
    if out_features % groups or in_features % groups:
        raise ValueError(f"weight {tuple(weight.shape)} is not divisible into {groups} groups")
    if moments.shape != (in_features + 1, in_features + 1):
        raise ValueError(
            f"moments {tuple(moments.shape)} do not match weight {tuple(weight.shape)}"
        )
    out_per, in_per = out_features // groups, in_features // groups
    dense = torch.cat([weight, bias[:, None]], dim=1).double().cpu()
    c = moments.double().cpu()
    blocks, biases = [], []
    for g in range(groups):
        seen = torch.cat([torch.arange(g * in_per, (g + 1) * in_per), torch.tensor([in_features])])
        rows = dense[g * out_per : (g + 1) * out_per]
        gram = c[seen][:, seen]
        gram = gram + RIDGE * gram.diagonal().mean() * torch.eye(len(seen), dtype=gram.dtype)
        fitted = torch.linalg.solve(gram, c[seen] @ rows.T).T  # [out_per, in_per + 1]
        blocks.append(fitted[:, :-1])
        biases.append(fitted[:, -1])
    grouped = torch.cat(blocks).unsqueeze(-1).to(weight.dtype).contiguous()
    return grouped, torch.cat(biases).to(bias.dtype)
