"""Per-route output shaping, pure: confidence floor, payload form, fields, retain, on-change.

The defaults reproduce the result document every route published before these options
existed (full JSON, every field, not retained, every message). The options exist so a
result can be consumed as-is by Home Assistant, Node-RED or a shell script:

- `min_score` + `uncertain_label`: below the floor the label becomes e.g. "uncertain"
  (Frigate's `min_score`, Rhasspy's minimum confidence); `score` and `top_k` still say
  what the model thought, so nothing is hidden from whoever wants to look;
- `payload: label`: the bare label as UTF-8 text (Frigate publishes a bare class name);
- `fields`: which top-level fields the full document keeps (`label` always stays, since
  it is what a consumer keys on);
- `retain`: the broker keeps the last result per output topic, so a dashboard restarted
  later still shows it;
- `on_change`: publish only when the label for that output topic differs from the last one
  published there. The memory is per process: the first result after a start is always
  published (with `retain` it simply rewrites the same retained value).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, Literal

from edge_agent.engine.prediction import Prediction

PayloadForm = Literal["full", "label"]

# The top-level names of the result document (docs/design.md, "Result schema").
RESULT_FIELDS: Final = (
    "id",
    "topic",
    "label",
    "score",
    "top_k",
    "labels",
    "model",
    "latency_ms",
    "truncated",
    "text",
    "passthrough",
)
# on_change remembers one label per output topic; wildcard routes can see unboundedly many
# topics, so the least recently used are forgotten (their next result is published again).
MAX_REMEMBERED_TOPICS: Final = 10_000


@dataclass(frozen=True)
class OutputPolicy:
    retain: bool = False
    on_change: bool = False
    payload: PayloadForm = "full"
    fields: tuple[str, ...] | None = None  # None: every field
    min_score: float | None = None
    uncertain_label: str = "uncertain"

    def possible_labels(self, model_labels: tuple[str, ...]) -> tuple[str, ...]:
        """Every label this route can publish for a model with these labels."""
        if self.min_score is None or self.uncertain_label in model_labels:
            return model_labels
        return (*model_labels, self.uncertain_label)


def apply_min_score(prediction: Prediction, policy: OutputPolicy) -> Prediction:
    if policy.min_score is None or prediction.score >= policy.min_score:
        return prediction
    return dataclasses.replace(
        prediction, label=policy.uncertain_label, labels=(policy.uncertain_label,)
    )


def keep_fields(body: dict[str, object], policy: OutputPolicy) -> dict[str, object]:
    if policy.fields is None:
        return body
    wanted = {*policy.fields, "label"}
    return {name: value for name, value in body.items() if name in wanted}


class LastLabels:
    """The last label published per output topic (on_change). Worker thread only."""

    def __init__(self, capacity: int = MAX_REMEMBERED_TOPICS) -> None:
        self._capacity = capacity
        self._labels: OrderedDict[str, str] = OrderedDict()

    def changed(self, topic: str, label: str) -> bool:
        """True (and remembered) when `label` differs from the last one on `topic`."""
        previous = self._labels.get(topic)
        if previous is not None:
            self._labels.move_to_end(topic)
        if previous == label:
            return False
        self._labels[topic] = label
        if len(self._labels) > self._capacity:
            self._labels.popitem(last=False)
        return True
