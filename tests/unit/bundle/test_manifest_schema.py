"""manifest.json schema: what is accepted, and that anything else is a BundleError."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.bundle.layout import BundleError
from edge_agent.bundle.manifest import Manifest, parse_manifest, version_key

HASH = "0" * 64


def _manifest(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "format": 1,
        "name": "sentiment",
        "version": "1.2.3",
        "task": "single-label",
        "labels": ["negative", "positive"],
        "max_seq_len": 128,
        "files": {
            "model.onnx": {"sha256": HASH, "size": 10},
            "tokenizer.json": {"sha256": HASH, "size": 5},
        },
        "metrics": {"accuracy": 0.9},
        "golden": [{"text": "good", "label": "positive", "score": 0.97}],
        "card": {"intended_use": "x", "training_data": "y", "limitations": "z", "created": "t"},
    }
    data.update(changes)
    return data


def _parse(data: Any) -> Any:
    return parse_manifest(json.dumps(data).encode())


def test_valid_manifest_round_trips() -> None:
    manifest = _parse(_manifest(reject={"label": "oos", "threshold": 0.4}))
    assert manifest.labels == ("negative", "positive")
    assert manifest.reject is not None and manifest.reject.threshold == 0.4
    assert manifest.reject.score == "probability"  # what manifests without `score` meant
    assert _parse(manifest.to_json()) == manifest
    energy = _parse(_manifest(reject={"label": "oos", "threshold": 8.25, "score": "energy"}))
    assert energy.reject is not None and energy.reject.score == "energy"
    assert _parse(energy.to_json()) == energy


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": 2}, "unsupported format 2"),
        ({"name": "Bad Name"}, "name 'Bad Name'"),
        ({"version": "1.2"}, "MAJOR.MINOR.PATCH"),
        ({"task": "regression"}, "task 'regression'"),
        ({"labels": []}, "labels must be a non-empty"),
        ({"labels": ["a", "a"]}, "unique"),
        ({"max_seq_len": True}, "wrong type"),
        ({"max_seq_len": 1}, "out of range"),
        ({"files": {"model.onnx": {"sha256": HASH, "size": 1}}}, "must list tokenizer.json"),
        ({"files": {"../x": {"sha256": HASH, "size": 1}}}, "not a plain bundle file name"),
        ({"thresholds": {"positive": 0.3}}, "only for multi-label"),
        ({"reject": {"label": "oos", "threshold": 2}}, r"reject\.threshold"),
        ({"reject": {"label": "oos", "threshold": 0.5, "score": "x"}}, r"reject\.score 'x'"),
        ({"golden": [{"text": "x"}]}, "missing field 'label'"),
        ({"metrics": {"acc": "high"}}, "metrics"),
    ],
)
def test_invalid_manifest_names_the_problem(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(BundleError, match=message):
        _parse(_manifest(**changes))


def test_multi_label_thresholds_must_name_known_labels() -> None:
    multi = _manifest(task="multi-label", thresholds={"positive": 0.3})
    assert _parse(multi).threshold("positive") == 0.3
    assert _parse(multi).threshold("negative") == 0.5
    with pytest.raises(BundleError, match="unknown label 'other'"):
        _parse(_manifest(task="multi-label", thresholds={"other": 0.3}))


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_arbitrary_json_is_either_a_manifest_or_a_bundle_error(data: Any) -> None:
    try:
        assert isinstance(_parse(data), Manifest)
    except BundleError as error:
        assert str(error).startswith("manifest.json: ")


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_another_error(raw: bytes) -> None:
    try:
        assert isinstance(parse_manifest(raw), Manifest)
    except BundleError as error:
        assert str(error).startswith("manifest.json: ")


def test_versions_sort_numerically() -> None:
    assert version_key("1.10.0") > version_key("1.9.9")
    with pytest.raises(ValueError):
        version_key("01.0.0")


def test_an_embedding_manifest_has_no_labels_and_golden_vectors() -> None:
    golden = [{"text": "door open", "embedding": [0.6, 0.8]}]
    manifest = _parse(_manifest(task="embedding", labels=[], golden=golden))
    assert manifest.golden[0].embedding == (0.6, 0.8)
    assert _parse(manifest.to_json()) == manifest
    for bad in (
        _manifest(task="embedding", golden=golden),  # labels
        _manifest(task="embedding", labels=[], golden=[{"text": "x", "label": "a", "score": 1}]),
        _manifest(task="embedding", labels=[], golden=[{"text": "x", "embedding": []}]),
        _manifest(task="embedding", labels=[], golden=[{"text": "x", "embedding": ["a"]}]),
    ):
        with pytest.raises(BundleError):
            _parse(bad)
