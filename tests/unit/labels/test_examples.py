"""Examples files: the YAML and CSV forms read into the same label set, and every mistake a
user can make in one is a LabelsError naming the file and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.labels.examples import LabelsError, parse_examples, read_examples

YAML = b"""
other: unknown
threshold: 0.4
labels:
  alarm:
    - smoke detected in the kitchen
    - water leak under the sink
  maintenance:
    examples: [filter needs replacing, battery low on sensor 4]
    negatives: [battery fully charged]
"""

CSV = b"""text,label,negative
smoke detected in the kitchen,alarm,
water leak under the sink,alarm,
filter needs replacing,maintenance,
battery low on sensor 4,maintenance,0
battery fully charged,maintenance,yes
"""


def test_yaml_and_csv_give_the_same_labels() -> None:
    from_yaml = parse_examples(YAML, Path("labels.yaml"))
    from_csv = parse_examples(CSV, Path("labels.csv"))
    assert from_yaml.labels == from_csv.labels
    assert from_yaml.names == ("alarm", "maintenance")
    assert from_yaml.labels[1].negatives == ("battery fully charged",)
    assert (from_yaml.other, from_yaml.threshold) == ("unknown", 0.4)
    assert (from_csv.other, from_csv.threshold) == ("other", None)  # the defaults
    assert from_yaml.digest != from_csv.digest and len(from_yaml.revision) == 8


@pytest.mark.parametrize(
    ("raw", "name", "problem"),
    [
        (b"labels: [a, b]", "x.yaml", "must map each label"),
        (b"labels:\n  alarm: [fire]\nother: alarm\n", "x.yaml", "also one of the labels"),
        (b"labels:\n  alarm: []\n", "x.yaml", "'alarm' has no examples"),
        (b"labels:\n  alarm: ['', fire]\n", "x.yaml", "non-empty text"),
        (b"labels:\n  alarm: [fire]\nthreshold: 2\n", "x.yaml", "threshold"),
        (b"labels:\n  alarm: [fire]\ncolour: red\n", "x.yaml", "unknown key 'colour'"),
        (b"labels:\n  alarm: {examples: [fire], extra: [x]}\n", "x.yaml", "unknown key 'extra'"),
        (b"labels:\n  alarm: [unclosed\n", "x.yaml", "x.yaml"),
        (b"text,category\nfire,alarm\n", "x.csv", "`text` and `label` columns"),
        (b"text,label\nfire,\n", "x.csv", "line 2: empty label"),
        (b"\xff\xfe", "x.yaml", "not UTF-8"),
        (b"labels: {}", "x.txt", "expected a .yaml, .yml or .csv file"),
    ],
)
def test_mistakes_are_named(raw: bytes, name: str, problem: str) -> None:
    with pytest.raises(LabelsError) as error:
        parse_examples(raw, Path(name))
    assert problem in str(error.value) and name in str(error.value)


def test_a_missing_or_huge_file_is_a_labels_error(tmp_path: Path) -> None:
    with pytest.raises(LabelsError, match="cannot read"):
        read_examples(tmp_path / "missing.yaml")
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"#" * (4 * 1024 * 1024 + 1))
    with pytest.raises(LabelsError, match="larger than"):
        read_examples(huge)
