"""Refusals and loads in flight survive a restart; a changed bundle is a new one."""

from __future__ import annotations

from pathlib import Path

from edge_agent.bundle.versions import BundleRef
from edge_agent.models.refusals import DIED_LOADING, FILE_NAME, RefusalLog

REF = BundleRef("tiny", "2.0.0", Path("/models/tiny/2.0.0"), (1, 2, 3, 4))


def test_a_refusal_is_remembered_by_the_next_run(tmp_path: Path) -> None:
    RefusalLog(tmp_path).refuse(REF, "golden example gave negative")
    assert RefusalLog(tmp_path).refused() == {(REF.path, REF.stamp): "golden example gave negative"}


def test_in_flight_becomes_died_loading_and_a_finished_load_is_forgotten(tmp_path: Path) -> None:
    first = RefusalLog(tmp_path)
    first.loading(REF)
    other = BundleRef("tiny", "1.0.0", Path("/models/tiny/1.0.0"), (5, 6, 7, 8))
    first.loading(other)
    first.loaded(other)  # loaded fine: nothing to remember
    assert RefusalLog(tmp_path).refused() == {(REF.path, REF.stamp): DIED_LOADING}
    changed = BundleRef("tiny", "2.0.0", REF.path, (1, 2, 3, 5))  # edited in place
    assert (changed.path, changed.stamp) not in RefusalLog(tmp_path).refused()


def test_a_damaged_file_is_reported_and_replaced(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text("{not json")
    log = RefusalLog(tmp_path)
    assert log.refused() == {}
    log.refuse(REF, "x")
    assert RefusalLog(tmp_path).refused() == {(REF.path, REF.stamp): "x"}
