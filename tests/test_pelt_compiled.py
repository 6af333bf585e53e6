"""The compiled PELT search (rldk.detectors._pelt) against its pure-Python twin: the
same cuts, cut for cut, on every kind of series the detectors see."""
from __future__ import annotations

import numpy as np
import pytest

from rldk.detectors import changepoint
from rldk.detectors.scale import noise_sigma

compiled = pytest.importorskip("rldk.detectors._pelt", reason="the compiled PELT search is not "
                               "built (pip install -e . needs a C compiler)")


def _series(rng, kind: str) -> np.ndarray:
    n = int(rng.integers(4, 3000))
    if kind == "levels":
        cuts = np.sort(rng.integers(0, n, int(rng.integers(0, 8))))
        return rng.normal(0, 1, n) + np.repeat(rng.normal(0, 4, len(cuts) + 1), np.diff(np.r_[0, cuts, n]))
    if kind == "ties":          # integers and long constant runs: equal totals everywhere
        return rng.integers(0, 3, n).astype(float).repeat(int(rng.integers(1, 6)))[:n]
    if kind == "trend":
        return np.linspace(0, rng.normal(0, 10), n) + rng.normal(0, 0.5, n)
    return rng.standard_cauchy(n)                       # "heavy": outliers of every size


@pytest.mark.parametrize("kind", ["levels", "ties", "trend", "heavy"])
def test_compiled_search_gives_the_python_cuts(kind):
    rng = np.random.default_rng(20261202)
    for _ in range(12):
        y = _series(rng, kind)
        penalty = float(rng.choice([0.0, 1e-9, 1.0]) + 4 * np.log(len(y)) * max(noise_sigma(y), 1e-3) ** 2)
        for min_size in (1, 2, 3):
            ours = compiled.pelt(*changepoint._prefix_sums(y), penalty, min_size)
            assert ours == changepoint._pelt_python(y, penalty, min_size), (kind, len(y), min_size)


def test_segment_uses_the_compiled_search():
    assert changepoint._pelt_compiled is compiled.pelt
    y = np.r_[np.zeros(40), np.full(40, 5.0)] + np.random.default_rng(0).normal(0, 0.3, 80)
    assert changepoint.segment(y, 10.0) == [0, 40]


def test_wrong_buffers_are_refused():
    with pytest.raises(TypeError, match="float64"):
        compiled.pelt(np.zeros(5, dtype=np.float32), np.zeros(5), 1.0, 2)
    with pytest.raises(ValueError, match="same"):
        compiled.pelt(np.zeros(5), np.zeros(6), 1.0, 2)
