"""What `model train` prints while it runs: which step, which epoch, the validation figure so
far and how long it took. Pure: turns the recipe's log entries (distil.py, fit.py) into lines.

tqdm's bar (fit.py) gives the step count and the time left within a step; these lines say
which of the pipeline's steps that bar belongs to and what the evaluations found, so a log
file read later tells the same story as the terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # metrics.py imports numpy; this module needs only the type
    from edge_agent.toolkit.train.metrics import Report

# The default path's steps, in order; export and packing is the last.
STEPS: Final = ("dense_teacher", "grouped_init", "distilled_student", "export")
TITLES: Final = {
    "dense_teacher": "dense teacher: all-MiniLM-L6-v2 fine-tuned on your rows",
    "grouped_init": "grouped student: initialised from the teacher",
    "distilled_student": "grouped student: distilled from the teacher",
    "grouped_finetuned": "grouped student: trained on your labels only",
    "export": "export, quantize to INT8, measure and pack",
}


def duration(seconds: float) -> str:
    """`42 s`, `3 min 05 s`, `1 h 02 min`."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def step_header(name: str) -> str:
    """`[2/4] grouped student: ...`; the no-distillation student counts as step 3."""
    position = STEPS.index("distilled_student" if name == "grouped_finetuned" else name) + 1
    return f"[{position}/{len(STEPS)}] {TITLES[name]}"


def progress_line(entry: Mapping[str, Any]) -> str | None:
    """The line to print for one log entry, or None for entries a user need not see."""
    if "step_started" in entry:
        return f"{step_header(entry['step_started'])}, {entry['epochs']:g} epochs"
    if "step_done" in entry:
        # the init has no epochs, so no start entry: its header comes with its result
        line = f"  done: validation {entry['validation']:.4f}, {duration(entry['seconds'])}"
        if entry["step_done"] == "grouped_init":
            return f"{step_header('grouped_init')}\n{line}"
        return line
    if "val_metric" in entry:
        return (
            f"  epoch {entry['epoch']:.2f}: validation {entry['val_metric']:.4f},"
            f" {duration(entry['seconds'])} into this step"
        )
    return None


def say(line: str) -> None:
    """Print above tqdm's bar when one is showing (a plain print would land inside it)."""
    try:
        from tqdm import tqdm
    except ImportError:
        print(line, flush=True)
        return
    tqdm.write(line)


def printer(enabled: bool) -> Callable[[dict[str, Any]], None]:
    """A recipe `log` callback that prints `progress_line`s (nothing when disabled)."""

    def log(entry: dict[str, Any]) -> None:
        line = progress_line(entry) if enabled else None
        if line is not None:
            say(line)

    return log


def final_summary(
    *,
    data: str,
    steps: Sequence[str],
    int8: Report,
    fp32: Report,
    agreement: float,
    multi_label: bool,
    teacher: float | None,
    note: str | None,
    checkpoint: Path,
    bundle: str,
    seconds: float,
) -> str:
    """The one screen printed last, what a user reads when the run ends; the headline figure
    is accuracy, or micro-F1 for multi-label."""
    name = "micro-F1" if multi_label else "accuracy"

    def headline(report: Report) -> float:
        return report.micro_f1 if multi_label else report.accuracy

    lines = [
        "",
        "summary",
        f"  data: {data}",
        *(f"  {line}" for line in steps),
        f"  INT8 bundle: {name} {headline(int8):.4f}, macro-F1 {int8.macro_f1:.4f};"
        f" fp32 graph {name} {headline(fp32):.4f}; INT8 vs fp32 agreement {agreement:.4f}",
    ]
    if teacher is not None:
        lines.append(f"  dense teacher on validation: {teacher:.4f}")
    if note is not None:
        lines.append(f"  note: {note}")
    lines += [f"  checkpoint: {checkpoint}", f"  bundle: {bundle}", f"  took {duration(seconds)}"]
    return "\n".join(lines)
