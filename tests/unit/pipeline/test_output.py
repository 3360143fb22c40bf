"""Per-route output shaping through the real Processor: label payloads, field selection,
retain, on_change and the min_score floor (a fixed classify function stands in for the
model, which is not what is under test here)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from edge_agent.engine.prediction import ClassifyTiming, LabelScore, Prediction
from edge_agent.pipeline import messages, routing
from edge_agent.pipeline.attempts import AttemptLog
from edge_agent.pipeline.inbound import Inbound
from edge_agent.pipeline.output import LastLabels, OutputPolicy
from edge_agent.pipeline.processing import Outgoing, Processor, Settings

SETTINGS = Settings(
    "c1", "errs", "dead", max_attempts=3, top_k=2, echo_text=False, response_filters=("reply/#",)
)


def scripted(scores: dict[str, tuple[str, float]]):  # type: ignore[no-untyped-def]
    """A classify function: text -> (label, score), as a model would answer."""

    def classify(
        model: str,
        texts: Sequence[str],
        /,
        *,
        top_k: int,
        timing: ClassifyTiming | None = None,
    ) -> list[Prediction]:
        out = []
        for text in texts:
            label, score = scores[text]
            out.append(
                Prediction(
                    label, score, (LabelScore(label, score),), (label,), False, model, "1.0.0"
                )
            )
        return out

    return classify


def processor(
    tmp_path: Path, policy: OutputPolicy, scores: dict[str, tuple[str, float]]
) -> Processor:
    route = routing.Route(0, "in/+", "tiny", "{topic}/label", None, messages.InputSpec(), 1, policy)
    return Processor((route,), scripted(scores), AttemptLog(tmp_path / "state"), SETTINGS)


def run(proc: Processor, *items: tuple[str, str], response: str | None = None) -> list[Outgoing]:
    batch = [
        Inbound(topic, text.encode(), mid, 1, 1, time.monotonic(), False, response_topic=response)
        for mid, (topic, text) in enumerate(items, start=1)
    ]
    result = proc.process(batch)
    return [item for _, outgoing in result.by_delivery for item in outgoing]


def test_defaults_publish_the_full_document_unretained(tmp_path: Path) -> None:
    out = run(processor(tmp_path, OutputPolicy(), {"a": ("positive", 0.9)}), ("in/1", "a"))
    assert len(out) == 1 and not out[0].retain
    body = json.loads(out[0].payload)
    assert set(body) >= {"id", "topic", "label", "score", "top_k", "model", "latency_ms"}


def test_label_payload_is_the_bare_label_and_retained(tmp_path: Path) -> None:
    policy = OutputPolicy(payload="label", retain=True)
    out = run(processor(tmp_path, policy, {"a": ("positive", 0.9)}), ("in/1", "a"))
    assert [(o.topic, o.payload, o.retain) for o in out] == [("in/1/label", b"positive", True)]


def test_fields_keep_only_the_chosen_ones_and_always_label(tmp_path: Path) -> None:
    policy = OutputPolicy(fields=("score", "model"))
    out = run(processor(tmp_path, policy, {"a": ("positive", 0.9)}), ("in/1", "a"))
    assert json.loads(out[0].payload) == {
        "label": "positive",
        "score": 0.9,
        "model": {"name": "tiny", "version": "1.0.0"},
    }


def test_on_change_publishes_only_when_the_label_of_that_topic_changes(tmp_path: Path) -> None:
    scores = {"p": ("positive", 0.9), "n": ("negative", 0.8)}
    proc = processor(tmp_path, OutputPolicy(on_change=True, payload="label"), scores)
    sent = run(proc, ("in/1", "p"), ("in/1", "p"), ("in/2", "p"), ("in/1", "n"), ("in/1", "n"))
    assert [(o.topic, o.payload) for o in sent] == [
        ("in/1/label", b"positive"),
        ("in/2/label", b"positive"),
        ("in/1/label", b"negative"),
    ]
    # A request with a Response Topic is answered even when nothing changed.
    answered = run(proc, ("in/1", "n"), response="reply/here")
    assert [(o.topic, o.retain) for o in answered] == [("reply/here", False)]


def test_min_score_turns_low_confidence_into_the_uncertain_label(tmp_path: Path) -> None:
    policy = OutputPolicy(min_score=0.6, uncertain_label="unsure")
    scores = {"low": ("positive", 0.55), "high": ("positive", 0.61)}
    out = run(processor(tmp_path, policy, scores), ("in/1", "low"), ("in/2", "high"))
    low, high = (json.loads(o.payload) for o in out)
    assert (low["label"], low["labels"], low["score"]) == ("unsure", ["unsure"], 0.55)
    assert low["top_k"] == [{"label": "positive", "score": 0.55}]  # the model's view stays
    assert high["label"] == "positive"
    assert policy.possible_labels(("negative", "positive")) == ("negative", "positive", "unsure")


def test_last_labels_forget_the_least_recent_topic_beyond_capacity() -> None:
    last = LastLabels(capacity=2)
    assert last.changed("a", "x") and last.changed("b", "x") and not last.changed("a", "x")
    assert last.changed("c", "x")  # "b" is now the least recently used and forgotten
    assert last.changed("b", "x") and not last.changed("c", "x")
