"""Which texts of a batch share a session run.

A run pads every text to the longest one in it, and the graph computes padded positions like
real ones. Messages in a stream differ in length (SST-2 sentences: 4 to 57 tokens, median 10),
so one run of 16 arrivals spends about 60 % of its work on padding. Cutting the batch into
runs of texts of similar length removes most of that at the price of one run's fixed cost
per extra run. With static activation scales a text's answer does not depend on its
run-mates or its padding (tests/unit/engine/test_batch_invariance.py), so this changes the
time a batch takes, never its answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

# What one session run costs beyond its tokens, in token-rows. Measured with sentiment 1.1.3,
# INT8, one thread, on a 2-core AMD EPYC (AVX2): a run costs about 1.05 ms + 0.25 ms per
# token-row, i.e. ~4 token-rows of fixed cost; 2, 4, 8 and 16 gave the same throughput
# within noise (220-248 msg/s against 105 for one padded run of 16), so the plan is not
# sensitive to it. 8 leans towards fewer runs, where the fixed cost is larger (more threads,
# slower per-run set-up).
RUN_COST_IN_TOKENS: Final = 8


def plan_runs(lengths: Sequence[int], max_run: int) -> list[list[int]]:
    """Indices of `lengths` grouped into runs of at most `max_run` texts, minimising the
    estimated cost sum(RUN_COST_IN_TOKENS + len(run) * longest(run)).

    Texts are taken shortest first and the runs are contiguous in that order (the best plan
    always is: swapping a shorter text into a run of longer ones never costs more). Dynamic
    programming over the cut points, O(len(lengths) * max_run) integer steps.
    """
    if max_run < 1:
        raise ValueError(f"max_run must be at least 1, not {max_run}")
    count = len(lengths)
    if count <= 1:
        return [[0]] if count else []
    order = sorted(range(count), key=lengths.__getitem__)
    ordered = [lengths[index] for index in order]
    # best[j]: the cheapest plan for the j shortest texts; cut[j]: where its last run starts.
    best = [0] * (count + 1)
    cut = [0] * (count + 1)
    for end in range(1, count + 1):
        longest = ordered[end - 1]
        cheapest, cheapest_start = -1, 0
        for start in range(max(0, end - max_run), end):
            cost = best[start] + RUN_COST_IN_TOKENS + (end - start) * longest
            if cheapest < 0 or cost < cheapest:
                cheapest, cheapest_start = cost, start
        best[end], cut[end] = cheapest, cheapest_start
    runs: list[list[int]] = []
    end = count
    while end > 0:
        runs.append(order[cut[end] : end])
        end = cut[end]
    runs.reverse()
    return runs


def plan_cost(lengths: Sequence[int], runs: Sequence[Sequence[int]]) -> int:
    """The cost `plan_runs` minimises, of any grouping of `lengths`' indices."""
    return sum(RUN_COST_IN_TOKENS + len(run) * max(lengths[index] for index in run) for run in runs)
