"""`model train`'s progress lines, from the recipe's own log entries."""

from __future__ import annotations

from edge_agent.toolkit.train.progress import duration, progress_line, step_header


def test_durations_read_as_seconds_minutes_or_hours() -> None:
    assert duration(42.4) == "42 s"
    assert duration(185) == "3 min 05 s"
    assert duration(3720) == "1 h 02 min"


def test_each_step_says_where_it_stands_in_the_pipeline() -> None:
    assert step_header("dense_teacher").startswith("[1/4] dense teacher")
    assert step_header("grouped_init").startswith("[2/4]")
    assert step_header("distilled_student").startswith("[3/4]")
    # without distillation the student is still the third step
    assert step_header("grouped_finetuned").startswith("[3/4]")
    assert step_header("export").startswith("[4/4]")


def test_a_step_start_names_its_epochs() -> None:
    line = progress_line({"step_started": "distilled_student", "epochs": 3.0})
    assert line == "[3/4] grouped student: distilled from the teacher, 3 epochs"


def test_an_evaluation_gives_epoch_figure_and_time() -> None:
    entry = {"step": 211, "epoch": 0.5, "loss": 1.2, "val_metric": 0.83125, "seconds": 75.0}
    assert progress_line(entry) == "  epoch 0.50: validation 0.8313, 1 min 15 s into this step"


def test_a_finished_step_gives_its_figure_and_the_init_its_header() -> None:
    done = {"step_done": "dense_teacher", "validation": 0.9, "held_out": None, "seconds": 420.0}
    assert progress_line(done) == "  done: validation 0.9000, 7 min 00 s"
    init = progress_line({**done, "step_done": "grouped_init", "seconds": 30.0})
    assert init == f"{step_header('grouped_init')}\n  done: validation 0.9000, 30 s"


def test_entries_a_user_need_not_see_print_nothing() -> None:
    assert progress_line({"options": {"epochs": 3}}) is None
