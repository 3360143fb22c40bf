"""plan_runs: every text in exactly one run, runs bounded, and the cheapest contiguous plan."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edge_agent.engine.run_plan import RUN_COST_IN_TOKENS, plan_cost, plan_runs


def _cheapest_by_enumeration(lengths: list[int], max_run: int) -> int:
    """Every way to cut the shortest-first order into runs, priced one by one."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    cheapest = None
    for cuts in itertools.product([False, True], repeat=len(lengths) - 1):
        runs, current = [], [order[0]]
        for index, cut in zip(order[1:], cuts, strict=True):
            if cut:
                runs.append(current)
                current = []
            current.append(index)
        runs.append(current)
        if max(len(run) for run in runs) > max_run:
            continue
        cost = plan_cost(lengths, runs)
        cheapest = cost if cheapest is None else min(cheapest, cost)
    assert cheapest is not None
    return cheapest


def test_no_texts_no_runs_and_one_text_one_run() -> None:
    assert plan_runs([], 32) == []
    assert plan_runs([17], 32) == [[0]]


@pytest.mark.parametrize("seed", range(20))
def test_the_plan_is_the_cheapest_cut_and_covers_every_text_once(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = [
        int(n) for n in rng.choice([2, 3, 5, 9, 14, 30, 64, 128], size=int(rng.integers(2, 11)))
    ]
    max_run = int(rng.integers(1, 6))
    runs = plan_runs(lengths, max_run)
    assert sorted(index for run in runs for index in run) == list(range(len(lengths)))
    assert all(1 <= len(run) <= max_run for run in runs)
    assert plan_cost(lengths, runs) == _cheapest_by_enumeration(lengths, max_run)


def test_equal_lengths_stay_in_one_run_and_far_apart_ones_are_split() -> None:
    assert plan_runs([12] * 16, 32) == [list(range(16))]
    short, long = 4, 4 + 10 * RUN_COST_IN_TOKENS
    runs = plan_runs([long, short, short, long, short], 32)
    assert runs == [[1, 2, 4], [0, 3]]


def test_runs_never_exceed_the_cap_and_are_as_few_as_it_allows() -> None:
    runs = plan_runs([10] * 70, 32)
    assert max(len(run) for run in runs) <= 32
    assert len(runs) == 3  # equal lengths: only the fixed cost differs between plans
    assert sorted(index for run in runs for index in run) == list(range(70))


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_run"):
        plan_runs([3, 4], 0)
