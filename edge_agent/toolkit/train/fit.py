"""The training loop: fine-tune a sequence classifier, optionally distilling from a teacher.

One loop serves every step of the recipe: the dense teacher (hard labels), and the grouped
student (hard labels + the teacher's softened logits + optionally its hidden states, which have
the same shape because the student is MiniLM-shaped). Validation runs a few times per epoch;
the best state is kept and training stops early when validation stops improving.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from edge_agent.toolkit.train.data import length_batches
from edge_agent.toolkit.train.metrics import primary_metric


@dataclass(frozen=True)
class FitOptions:
    epochs: float = 3.0
    learning_rate: float = 5e-5
    batch_size: int = 32
    warmup_fraction: float = 0.06
    weight_decay: float = 0.01
    evals_per_epoch: int = 4
    patience: int = 4  # evaluations without improvement before stopping
    seed: int = 0
    freeze_word_embeddings: bool = False
    kd_temperature: float = 2.0
    kd_alpha: float = 0.5  # share of the loss from the teacher's soft labels
    kd_hidden_weight: float = 0.0  # weight of the per-layer hidden-state MSE
    max_steps: int | None = None
    max_seconds: float | None = None  # time budget: evaluate once more and stop when spent
    progress: bool = True


# Target of a transfer row (single-label distillation only): unlabelled text the student learns
# from through the teacher's outputs alone; cross-entropy skips it.
UNLABELLED: Final = -100


@dataclass(frozen=True)
class Encoded:
    """Token ids (unpadded) and targets: class index (single-label) or multi-hot list."""

    ids: Sequence[Sequence[int]]
    targets: Sequence[Any]


@dataclass
class FitResult:
    best_metric: float
    best_step: int
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def pick_device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pad_batch(rows: Sequence[Sequence[int]], device: Any) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device)


def predict_logits(model: Any, ids: Sequence[Sequence[int]], batch_size: int = 128) -> np.ndarray:
    """Logits for every row, in input order (batched by length, no gradients)."""
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: np.ndarray | None = None
    with torch.inference_mode():
        for batch in length_batches([len(r) for r in ids], batch_size, seed=None):
            input_ids, mask = pad_batch([ids[i] for i in batch], device)
            logits = model(input_ids=input_ids, attention_mask=mask).logits.float().cpu().numpy()
            if out is None:
                out = np.zeros((len(ids), logits.shape[1]), dtype=np.float32)
            out[batch] = logits
    model.train(was_training)
    assert out is not None, "no rows to predict"
    return out


def _targets_tensor(targets: Sequence[Any], multi_label: bool, device: Any) -> Any:
    import torch

    if multi_label:
        return torch.tensor(np.asarray(targets, dtype=np.float32), device=device)
    return torch.tensor(list(targets), dtype=torch.long, device=device)


def _distil_loss(
    student_out: Any, teacher_out: Any, mask: Any, options: FitOptions, multi_label: bool
) -> Any:
    import torch
    from torch.nn import functional

    t = options.kd_temperature
    if multi_label:
        soft = torch.sigmoid(teacher_out.logits / t)
        loss = functional.binary_cross_entropy_with_logits(student_out.logits / t, soft) * t * t
    else:
        loss = (
            functional.kl_div(
                functional.log_softmax(student_out.logits / t, dim=-1),
                functional.softmax(teacher_out.logits / t, dim=-1),
                reduction="batchmean",
            )
            * t
            * t
        )
    if options.kd_hidden_weight > 0:
        weights = mask.unsqueeze(-1).float()
        tokens = weights.sum() * student_out.hidden_states[0].shape[-1]
        hidden = sum(
            (((s - th) ** 2) * weights).sum() / tokens
            for s, th in zip(
                student_out.hidden_states[1:], teacher_out.hidden_states[1:], strict=True
            )
        )
        loss = loss + options.kd_hidden_weight * hidden
    return loss


def fit(
    model: Any,
    train: Encoded,
    validation: Encoded,
    options: FitOptions,
    *,
    multi_label: bool,
    teacher: Any = None,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> FitResult:
    """Train `model` in place; on return it holds the best validation state."""
    import torch
    from torch.nn import functional

    torch.manual_seed(options.seed)
    device = pick_device()
    model.to(device).train()
    if teacher is not None:
        teacher.to(device).eval()
    word_embeddings = model.base_model.embeddings.word_embeddings.weight
    word_embeddings.requires_grad_(not options.freeze_word_embeddings)
    decay: list[Any] = []
    no_decay: list[Any] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            is_norm_or_bias = name.endswith("bias") or "LayerNorm" in name or "layernorm" in name
            (no_decay if is_norm_or_bias else decay).append(param)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": options.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=options.learning_rate,
    )
    lengths = [len(r) for r in train.ids]
    steps_per_epoch = math.ceil(len(lengths) / options.batch_size)
    total = max(1, math.ceil(steps_per_epoch * options.epochs))
    if options.max_steps is not None:
        total = min(total, options.max_steps)
    warmup = int(total * options.warmup_fraction)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    eval_every = max(1, steps_per_epoch // max(1, options.evals_per_epoch))
    bar = _progress(total, options.progress)
    result = FitResult(best_metric=-1.0, best_step=0, steps=0, seconds=0.0)
    best_state: dict[str, Any] | None = None
    stale = 0
    started = time.monotonic()
    step, epoch = 0, 0
    need_hidden = teacher is not None and options.kd_hidden_weight > 0
    while step < total and stale < options.patience:
        for batch in length_batches(lengths, options.batch_size, seed=options.seed + epoch):
            input_ids, mask = pad_batch([train.ids[i] for i in batch], device)
            target = _targets_tensor([train.targets[i] for i in batch], multi_label, device)
            out = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=need_hidden)
            if multi_label:
                loss = functional.binary_cross_entropy_with_logits(out.logits, target)
            elif bool((target != UNLABELLED).any()):
                loss = functional.cross_entropy(out.logits, target, ignore_index=UNLABELLED)
            else:  # only transfer rows: the teacher's losses below are all there is
                loss = out.logits.sum() * 0.0
            if teacher is not None:
                with torch.no_grad():
                    t_out = teacher(
                        input_ids=input_ids, attention_mask=mask, output_hidden_states=need_hidden
                    )
                soft = _distil_loss(out, t_out, mask, options, multi_label)
                loss = (1 - options.kd_alpha) * loss + options.kd_alpha * soft
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            out_of_time = (
                options.max_seconds is not None and time.monotonic() - started > options.max_seconds
            )
            if out_of_time:
                total = step  # ends both loops after this evaluation
            if step % eval_every == 0 or step == total:
                metric = primary_metric(
                    predict_logits(model, validation.ids), validation.targets, multi_label
                )
                entry = {
                    "step": step,
                    "epoch": round(step / steps_per_epoch, 3),
                    "loss": round(float(loss.item()), 4),
                    "val_metric": round(metric, 5),
                    "seconds": round(time.monotonic() - started, 1),
                }
                result.history.append(entry)
                if log is not None:
                    log(entry)
                bar.set_postfix(val=f"{metric:.4f}")
                if metric > result.best_metric:
                    result.best_metric, result.best_step, stale = metric, step, 0
                    best_state = {
                        k: v.detach().cpu().clone() for k, v in model.state_dict().items()
                    }
                else:
                    stale += 1
            if step >= total or stale >= options.patience:
                break
        epoch += 1
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.steps = step
    result.seconds = time.monotonic() - started
    return result


class _NoBar:
    def update(self, n: int) -> None:
        del n

    def set_postfix(self, **kwargs: str) -> None:
        del kwargs

    def close(self) -> None:
        return None


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, unit="step", mininterval=10.0, dynamic_ncols=True)


def options_dict(options: FitOptions) -> dict[str, Any]:
    return asdict(options)


def jsonl_logger(path: Path) -> Callable[[dict[str, Any]], None]:
    """Append each history entry to `path` as a JSON line, and echo it."""

    def write(entry: dict[str, Any]) -> None:
        line = json.dumps(entry)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        print(line, flush=True)

    return write
