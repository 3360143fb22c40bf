"""Persistent attempt counts: survive a 'crash' (a new AttemptLog on the same folder)."""

from __future__ import annotations

from pathlib import Path

from edge_agent.pipeline.attempts import JOURNAL_NAME, AttemptLog, message_key


def test_unfinished_attempts_survive_restarts(tmp_path: Path) -> None:
    key = message_key("a/b", b"poison")
    for expected_previous in range(3):
        log = AttemptLog(tmp_path)  # each "run" starts the message and crashes
        assert log.begin(key) == expected_previous
        log.close()
    log = AttemptLog(tmp_path)
    assert log.previous_attempts(key) == 3
    assert log.begin(key) == 3
    log.finish(key)
    log.close()
    assert AttemptLog(tmp_path).previous_attempts(key) == 0


def test_identical_messages_in_flight_share_one_count(tmp_path: Path) -> None:
    log = AttemptLog(tmp_path)
    key = message_key("s/1", b"OK")
    assert [log.begin(key) for _ in range(5)] == [0, 0, 0, 0, 0]
    for _ in range(5):
        log.finish(key)
    assert log.begin(key) == 0


def test_failed_counts_in_process_attempts(tmp_path: Path) -> None:
    log = AttemptLog(tmp_path)
    key = message_key("t", b"x")
    log.begin(key)
    assert log.failed(key) == 2
    assert log.failed(key) == 3


def test_torn_journal_lines_are_skipped(tmp_path: Path) -> None:
    key = message_key("t", b"x")
    (tmp_path / JOURNAL_NAME).write_text(f"{key} 2\n{key[:10]}")
    assert AttemptLog(tmp_path).previous_attempts(key) == 2


def test_topic_is_part_of_the_key() -> None:
    assert message_key("a", b"x") != message_key("b", b"x")
    assert message_key("a", b"bx") != message_key("ab", b"x")


def test_journal_is_compacted(tmp_path: Path) -> None:
    log = AttemptLog(tmp_path)
    for index in range(3000):
        key = message_key("t", str(index).encode())
        log.begin(key)
        log.finish(key)
    log.close()
    assert len((tmp_path / JOURNAL_NAME).read_text().splitlines()) < 2500


def test_a_batch_is_on_disk_before_processing_and_forgotten_once_finished(
    tmp_path: Path,
) -> None:
    log = AttemptLog(tmp_path)
    keys = [message_key("b", f"m{n}".encode()) for n in range(4)] + [message_key("b", b"m0")]
    assert log.begin_all(keys) == [0, 0, 0, 0, 0]
    # In the journal before any processing starts: a crash now leaves every one counted.
    written = (tmp_path / JOURNAL_NAME).read_text().splitlines()
    assert {f"{key} 1" for key in keys} <= set(written)
    log.finish_all(keys)
    log.close()
    assert [AttemptLog(tmp_path).previous_attempts(key) for key in keys] == [0] * 5
