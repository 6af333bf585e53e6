"""The step count and range an import reports: the same from the bitmap of steps as
from the sorted list it falls back to when the steps span too widely."""
from __future__ import annotations

import numpy as np
import pytest

from rldk.converters.base import _StepSet


def _fill(chunks, span=None):
    steps = _StepSet()
    if span is not None:
        steps._SPAN = span
    for chunk in chunks:
        steps.add(np.asarray(chunk, dtype=np.int64))
    return steps


@pytest.mark.parametrize("span", [None, 8])            # 8: the sorted list takes over
def test_count_and_bounds_of_unordered_repeated_steps(span):
    steps = _fill([[5, 7, 7, 9], [-3, 5], [12, 0]], span)
    assert steps.count() == 6
    assert steps.bounds() == (-3, 12)


def test_no_steps_have_no_bounds():
    assert _fill([]).bounds() == (None, None) and _fill([]).count() == 0
    assert _fill([[]]).bounds() == (None, None)


def test_a_single_step():
    assert _fill([[41]]).bounds() == (41, 41) and _fill([[41]]).count() == 1
