"""Out-of-scope rejection for single-label bundles: the manifest's `reject` rule.

A classifier always answers one of its labels; `reject` turns answers the model is not
sure of into a reject label such as `oos`. How sure it is can be measured two ways
(`reject.score`):

- `probability`: the top softmax probability, below `threshold` -> reject (Hendrycks and
  Gimpel, ICLR 2017: the usual baseline).
- `energy`: the log-sum-exp of the logits of every label except the reject label, below
  `threshold` -> reject (Liu et al., NeurIPS 2020, "Energy-based out-of-distribution
  detection"). Softmax divides away how strongly the model responds to a text at all; the
  energy keeps it, and a text the model has seen nothing like draws weak logits everywhere.
  On CLINC150 it catches more out-of-scope queries at the same in-scope accuracy
  (docs/models.md). Its threshold is in logit units, so it is specific to one model.

Either way a text whose top label is the reject label is rejected whatever its score.
Pure numpy: shared by the engine and by the recipes that choose the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from edge_agent.bundle.manifest import SCORE_KINDS

# float64 like the manifest's threshold (a JSON number), so the comparison adds no rounding
Scores = npt.NDArray[np.float64]


def in_scope_scores(
    logits: npt.NDArray[np.floating], labels: Sequence[str], reject_label: str, kind: str
) -> Scores:
    """One score per row of `logits` [texts, labels]: lower means less likely in scope."""
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max(axis=1, keepdims=True)
    if kind == "probability":
        scores = 1.0 / np.exp(logits - top).sum(axis=1)  # the top softmax probability
    elif kind == "energy":
        keep = [i for i, label in enumerate(labels) if label != reject_label]
        kept = logits[:, keep]
        kept_top = kept.max(axis=1, keepdims=True)
        scores = kept_top[:, 0] + np.log(np.exp(kept - kept_top).sum(axis=1))
    else:
        raise ValueError(f"reject score {kind!r}: expected one of {', '.join(SCORE_KINDS)}")
    if reject_label in labels:
        scores = np.where(logits.argmax(axis=1) == labels.index(reject_label), -np.inf, scores)
    result: Scores = scores
    return result


def out_of_scope_rows(
    logits: npt.NDArray[np.floating],
    labels: Sequence[str],
    reject_label: str,
    kind: str,
    threshold: float,
) -> npt.NDArray[np.bool_]:
    """Which rows the rule answers with the reject label."""
    return in_scope_scores(logits, labels, reject_label, kind) < threshold
