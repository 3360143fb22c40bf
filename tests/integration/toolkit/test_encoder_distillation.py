"""The encoder recipe's toolkit on the real all-MiniLM-L6-v2 weights: the SqueezeBERT copy with
one group reproduces the teacher's sentence embeddings exactly, a few distillation steps move
the grouped student towards them, and an interrupted run resumes from its checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.toolkit.train.data import encode_texts
from edge_agent.toolkit.train.embedding import (
    EncoderOptions,
    distil_encoder,
    grouped_student,
    load_teacher,
    student_embeddings,
    teacher_embeddings,
)
from edge_agent.toolkit.train.minilm import minilm_dir
from edge_agent.toolkit.train.query_pooling import use_query_pooling
from tests.support.bundles import SAMPLE_TEXTS

TEXTS = [
    *SAMPLE_TEXTS,
    "smoke detected in the kitchen",
    "battery low on the hallway sensor",
    "what is the weather like in paris tomorrow",
    "set a timer for ten minutes",
    "disk usage above 90 percent on node 4",
    "i really did not enjoy that film",
]


def _ids() -> list[list[int]]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    return encode_texts(tokenizer, TEXTS, 32)


def _mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(axis=1).mean())


def test_one_group_is_the_teacher_and_distillation_moves_the_grouped_student(
    tmp_path: Path,
) -> None:
    teacher, ids = load_teacher(), _ids()
    target = teacher_embeddings(teacher, ids)
    assert np.allclose(np.linalg.norm(target, axis=1), 1.0, atol=1e-5)
    dense = student_embeddings(grouped_student(teacher, ids, groups=1), ids)
    assert np.abs(dense - target).max() < 1e-4

    student = grouped_student(teacher, ids, groups=4)
    before = _mean_cosine(student_embeddings(student, ids), target)
    events: list[dict[str, Any]] = []
    options = EncoderOptions(epochs=8, batch_size=8, learning_rate=3e-4, warmup_steps=2)
    distil_encoder(student, teacher, ids, options=options, work=tmp_path, log=events.append)
    after = _mean_cosine(student_embeddings(student, ids), target)
    assert after > before + 0.05, (before, after)

    # A second call finds the finished run's checkpoint and trains no further.
    again = grouped_student(teacher, ids, groups=4)
    distil_encoder(again, teacher, ids, options=options, work=tmp_path, log=events.append)
    assert events[-1]["resumed_at_step"] == events[-2]["of"]
    assert _mean_cosine(student_embeddings(again, ids), target) == after


def test_distillation_teaches_a_query_pooled_student_the_mean_pooled_embedding(
    tmp_path: Path,
) -> None:
    """The teacher's own weights with query pooling (toolkit/train/query_pooling.py) embed a
    little differently from the teacher; distillation, which then matches the hidden states of
    every layer but the last, closes part of the gap."""
    teacher, ids = load_teacher(), _ids()
    target = teacher_embeddings(teacher, ids)
    student = grouped_student(teacher, ids, groups=1)
    use_query_pooling(student)
    before = _mean_cosine(student_embeddings(student, ids), target)
    assert before < 0.99, before
    options = EncoderOptions(epochs=8, batch_size=8, learning_rate=3e-4, warmup_steps=2)
    distil_encoder(student, teacher, ids, options=options, work=tmp_path, log=lambda _: None)
    after = _mean_cosine(student_embeddings(student, ids), target)
    assert after > before + 0.3 * (1 - before), (before, after)


def test_a_dense_last_feed_forward_starts_as_the_grouped_one_and_learns_across_groups(
    tmp_path: Path,
) -> None:
    """densify_last_feed_forward (toolkit/train/dense_last_layer.py) changes nothing the student
    computes; trained with its own rate, the blocks between the groups, zero at the start,
    learn, and the student moves towards the teacher."""
    from edge_agent.toolkit.train.dense_last_layer import (
        densify_last_feed_forward,
        has_dense_last_feed_forward,
        last_feed_forward,
    )

    teacher, ids = load_teacher(), _ids()
    target = teacher_embeddings(teacher, ids)
    student = grouped_student(teacher, ids, groups=4)
    use_query_pooling(student)
    grouped = student_embeddings(student, ids)
    densify_last_feed_forward(student)
    assert has_dense_last_feed_forward(student.config)
    assert all(conv.groups == 1 for conv in last_feed_forward(student))
    assert np.abs(student_embeddings(student, ids) - grouped).max() < 1e-5

    intermediate = last_feed_forward(student)[0]
    # output group 0's rows, input groups 1-3's columns: zeros, as grouping had them
    rows, columns = (
        slice(0, intermediate.out_channels // 4),
        slice(intermediate.in_channels // 4, None),
    )
    assert not intermediate.weight.detach()[rows, columns].any()
    before = _mean_cosine(grouped, target)
    options = EncoderOptions(
        epochs=8,
        batch_size=8,
        learning_rate=3e-4,
        warmup_steps=2,
        hidden_weight=0.1,
        last_feed_forward_learning_rate=3e-3,
    )
    distil_encoder(student, teacher, ids, options=options, work=tmp_path, log=lambda _: None)
    after = _mean_cosine(student_embeddings(student, ids), target)
    assert last_feed_forward(student)[0].weight.detach()[rows, columns].any()
    assert after > before + 0.3 * (1 - before), (before, after)
