"""A SqueezeBERT-shaped sentence encoder distilled from all-MiniLM-L6-v2.

The teacher's sentence embedding is its mean-pooled, L2-normalised last hidden state (what
sentence-transformers computes for all-MiniLM-L6-v2). The student starts as the grouped
SqueezeBERT fitted to the teacher's layers on real text (grouping.py) and learns, on unlabelled
texts, to reproduce (1) the teacher's sentence embedding (cosine loss) and (2) every layer's
hidden states (MSE). The per-layer term keeps each grouped layer close to its dense original, so
the pooled output needs far fewer steps than learning it from the final embedding alone.

Training checkpoints (model, optimiser, step, batch order) every few minutes, so a run longer
than a working session resumes where it stopped. torch and transformers are imported inside
the functions that need them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from edge_agent.toolkit.train.query_pooling import QUERY_POOLING, query_pooled, sentence_pooling

if TYPE_CHECKING:
    import torch

CHECKPOINT: Final = "distil-state.pt"


@dataclass(frozen=True)
class EncoderOptions:
    epochs: float = 2.0
    batch_size: int = 64
    learning_rate: float = 1e-4
    warmup_steps: int = 200
    hidden_weight: float = 1.0  # weight of the per-layer hidden-state MSE beside the cosine
    # the last feed-forward's own rate: a freshly dense one (dense_last_layer.py) starts with
    # zeros between its blocks, which the shared rate fills too slowly (None: the shared rate)
    last_feed_forward_learning_rate: float | None = None
    checkpoint_seconds: float = 300.0
    seed: int = 0


def mean_pooled(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real tokens of [batch, seq, channels], L2-normalised per row."""
    import torch

    weights = mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * weights).sum(dim=1)
    pooled = summed / weights.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def load_teacher() -> Any:
    """all-MiniLM-L6-v2 as a transformers BertModel, eval mode."""
    from transformers import BertModel

    from edge_agent.toolkit.train.minilm import minilm_dir

    model: Any = BertModel.from_pretrained(str(minilm_dir()))
    return model.eval()


def teacher_embeddings(
    teacher: Any, ids: Sequence[Sequence[int]], batch_size: int = 128
) -> np.ndarray:
    """[len(ids), hidden] normalised teacher sentence embeddings."""
    return _embed(
        lambda i, m: mean_pooled(teacher(input_ids=i, attention_mask=m).last_hidden_state, m),
        ids,
        batch_size,
    )


def student_embeddings(
    student: Any, ids: Sequence[Sequence[int]], batch_size: int = 128
) -> np.ndarray:
    """[len(ids), hidden] normalised embeddings of a SqueezeBertForSequenceClassification's
    encoder, pooled as its config says (its pooler and classifier are unused)."""
    return _embed(lambda i, m: _student_forward(student, i, m)[0], ids, batch_size)


def _embed(
    forward: Callable[[Any, Any], Any], ids: Sequence[Sequence[int]], batch_size: int
) -> np.ndarray:
    """`forward`'s normalised embeddings of `ids`, run by length-sorted batches."""
    import torch

    from edge_agent.toolkit.train.data import length_batches
    from edge_agent.toolkit.train.fit import pad_batch

    out: np.ndarray | None = None
    with torch.inference_mode():
        for batch in length_batches([len(r) for r in ids], batch_size, seed=None):
            input_ids, mask = pad_batch([ids[i] for i in batch], torch.device("cpu"))
            vectors = forward(input_ids, mask).numpy()
            if out is None:
                out = np.zeros((len(ids), vectors.shape[1]), dtype=np.float32)
            out[batch] = vectors
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def grouped_student(teacher: Any, calibration_ids: Sequence[Sequence[int]], groups: int) -> Any:
    """The grouped SqueezeBERT whose layers are fitted to the teacher's on `calibration_ids`."""
    from transformers import BertForSequenceClassification

    from edge_agent.toolkit.train.minilm import squeezebert_from_bert

    # squeezebert_from_bert maps a BertForSequenceClassification; the head is unused here.
    wrapper: Any = BertForSequenceClassification(teacher.config)
    wrapper.bert.load_state_dict(teacher.state_dict(), strict=False)
    wrapper.eval()
    student = squeezebert_from_bert(wrapper, groups=groups, calibration_ids=calibration_ids)
    return student.eval()


def _hidden_loss(student_hidden: Any, teacher_hidden: Any, mask: Any) -> Any:
    """Mean over layers of the masked MSE between hidden states, relative to the teacher's
    per-layer mean square (layers differ in scale by an order of magnitude)."""
    import torch

    keep = mask.unsqueeze(-1).to(student_hidden[0].dtype)
    tokens = keep.sum().clamp(min=1.0)
    total = torch.zeros((), dtype=student_hidden[0].dtype)
    for s, t in zip(student_hidden[1:], teacher_hidden[1:], strict=True):
        scale = ((t * keep) ** 2).sum() / tokens
        total = total + (((s - t) * keep) ** 2).sum() / tokens / scale.clamp(min=1e-6)
    return total / (len(student_hidden) - 1)


def _student_forward(student: Any, input_ids: Any, mask: Any) -> tuple[Any, tuple[Any, ...]]:
    """(normalised embeddings, hidden states) of the student, pooled as its config says. With
    query pooling the last layer has no per-token states: the states stop a layer short."""
    if sentence_pooling(student.config) == QUERY_POOLING:
        return query_pooled(student.transformer, input_ids, mask)
    out = student.transformer(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
    return mean_pooled(out.last_hidden_state, mask), out.hidden_states


def distil_encoder(
    student: Any,
    teacher: Any,
    ids: Sequence[Sequence[int]],
    *,
    options: EncoderOptions,
    work: Path,
    log: Callable[[dict[str, Any]], None],
) -> Any:
    """Train `student` to reproduce `teacher`'s embeddings and hidden states on `ids`.

    Resumes from `work/distil-state.pt` when it is there (same ids, same options).
    """
    import torch

    from edge_agent.toolkit.train.data import length_batches
    from edge_agent.toolkit.train.fit import pad_batch

    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(options.seed)
    epochs = math.ceil(options.epochs)
    order: list[list[int]] = []
    for _ in range(epochs):
        batches = length_batches([len(r) for r in ids], options.batch_size, seed=None)
        rng.shuffle(batches)
        order.extend(batches)
    total_steps = int(len(order) * options.epochs / epochs)
    optimiser = torch.optim.AdamW(
        _parameter_groups(student, options), lr=options.learning_rate, weight_decay=0.01
    )

    def rate(step: int) -> float:
        if step < options.warmup_steps:
            return (step + 1) / options.warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - options.warmup_steps))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, rate)
    step = 0
    state_path = work / CHECKPOINT
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        if state["options"] != asdict(options) or state["rows"] != len(ids):
            raise ValueError(f"{state_path} is from a different run; remove it to start over")
        student.load_state_dict(state["student"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        step = int(state["step"])
        log({"resumed_at_step": step, "of": total_steps})

    def save() -> None:
        partial = state_path.with_suffix(".partial")
        torch.save(
            {
                "student": student.state_dict(),
                "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict(),
                "step": step,
                "options": asdict(options),
                "rows": len(ids),
            },
            partial,
        )
        partial.replace(state_path)

    teacher.eval()
    # Dropout stays off: the student regresses onto exact teacher outputs, and dropout noise on
    # a 6-layer regression target costs more than it regularises (measured at init: 0.95 cosine
    # with dropout on against 1.0 off, for the dense copy).
    student.eval()
    last_save = time.monotonic()
    running: list[float] = []
    while step < total_steps:
        input_ids, mask = pad_batch([ids[i] for i in order[step]], torch.device("cpu"))
        with torch.no_grad():
            t_out = teacher(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
            target = mean_pooled(t_out.last_hidden_state, mask)
        pooled, student_hidden = _student_forward(student, input_ids, mask)
        cosine_loss = (1.0 - (pooled * target).sum(dim=-1)).mean()
        # Matched layer by layer as far as the student has per-token states (query pooling's
        # last layer is matched through the embedding alone).
        teacher_hidden = t_out.hidden_states[: len(student_hidden)]
        loss = cosine_loss + options.hidden_weight * _hidden_loss(
            student_hidden, teacher_hidden, mask
        )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        step += 1
        running.append(float(cosine_loss.detach()))
        if step % 100 == 0 or step == total_steps:
            log(
                {
                    "step": step,
                    "of": total_steps,
                    "cosine": round(1 - float(np.mean(running)), 4),
                    "loss": round(float(loss.detach()), 4),
                }
            )
            running.clear()
        if time.monotonic() - last_save > options.checkpoint_seconds:
            save()
            last_save = time.monotonic()
    save()
    student.eval()
    return student


def _parameter_groups(student: Any, options: EncoderOptions) -> list[dict[str, Any]]:
    """AdamW's parameter groups: the last feed-forward apart when it has its own rate."""
    if options.last_feed_forward_learning_rate is None:
        return [{"params": list(student.parameters())}]
    from edge_agent.toolkit.train.dense_last_layer import last_feed_forward

    own = [p for conv in last_feed_forward(student) for p in conv.parameters()]
    ids = {id(p) for p in own}
    return [
        {"params": [p for p in student.parameters() if id(p) not in ids]},
        {"params": own, "lr": options.last_feed_forward_learning_rate},
    ]


def cosine_report(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Median, 5th percentile and mean cosine between matching rows of two normalised arrays."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosines = (a * b).sum(axis=1) / np.maximum(norms, 1e-12)
    return {
        "median": round(float(np.median(cosines)), 4),
        "p5": round(float(np.percentile(cosines, 5)), 4),
        "mean": round(float(cosines.mean()), 4),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
