"""Which MPNet schedule a recipe run uses: the task's own, the command line's overrides, or none."""

from __future__ import annotations

import argparse
from dataclasses import replace

from recipes.mpnet_steps import MPNET_DEFAULT, mpnet_schedule
from recipes.task_data import MpnetSchedule
from recipes.tasks import TASKS

TASK_SCHEDULE = MpnetSchedule(epochs=2.5, learning_rate=5e-5, teaches_minilm=False)


def flags(**given: object) -> argparse.Namespace:
    names = ("teacher", "mpnet_epochs", "mpnet_learning_rate", "mpnet_teaches_minilm")
    return argparse.Namespace(**{name: given.get(name) for name in names})


def test_a_task_without_mpnet_runs_without_it_unless_asked() -> None:
    task = replace(TASKS["sentiment"], mpnet=None)
    assert mpnet_schedule(flags(), task) is None
    assert mpnet_schedule(flags(teacher="mpnet"), task) == MPNET_DEFAULT


def test_a_task_with_mpnet_uses_its_schedule_and_the_flags_override_each_part() -> None:
    task = replace(TASKS["intent"], mpnet=TASK_SCHEDULE)
    assert mpnet_schedule(flags(), task) == TASK_SCHEDULE
    assert mpnet_schedule(flags(teacher="minilm"), task) is None
    assert mpnet_schedule(
        flags(mpnet_epochs=1.0, mpnet_teaches_minilm=True), task
    ) == MpnetSchedule(epochs=1.0, learning_rate=5e-5, teaches_minilm=True)
    assert mpnet_schedule(flags(mpnet_learning_rate=2e-5), task) == replace(
        TASK_SCHEDULE, learning_rate=2e-5
    )
