"""Step-time regressions: change points of log step time (binary segmentation of a
mean shift; a split is kept when a two-sided Mann-Whitney U test gives p < ``alpha``
and the medians differ by ``min_ratio`` either way). When the run logs its work per
step (tokens, or the response length), each change also carries how much the work
changed over the same steps: a step that got slower because it does more (longer
generations) is not a regression unless the time per unit of work rose ``min_ratio``."""
from __future__ import annotations

from dataclasses import dataclass

from rldk.analyzers.profile.params import Params


@dataclass(frozen=True)
class ChangePoint:
    """Step time changed at ``step``: medians before/after (seconds), their ratio, p-value."""

    step: int
    before: float
    after: float
    ratio: float
    p_value: float
    work: str | None = None            # the metric the work per step was read from
    work_ratio: float | None = None    # its median after / before over the same steps
    min_ratio: float = 1.25

    @property
    def per_work(self) -> float | None:
        """How many times the time per unit of work changed (None: work not logged)."""
        if not self.work_ratio or self.work_ratio <= 0:
            return None
        return self.ratio / self.work_ratio

    @property
    def explained(self) -> bool:
        """The work per step changed by enough to account for the step time: the time per
        unit of work did not move ``min_ratio`` the way the step time did. A step that
        takes 2.5x as long for 3.7x the tokens (a verl DAPO run whose answers grew) got
        slower by its work alone, and cheaper per token."""
        per_work = self.per_work
        if per_work is None:
            return False
        return per_work < self.min_ratio if self.ratio > 1 else 1 / per_work < self.min_ratio

    @property
    def regression(self) -> bool:
        return self.ratio > 1 and not self.explained

    def to_dict(self) -> dict:
        # the generic fields plus the derived ``regression`` flag, which readers of the JSON use
        return {**self.__dict__, "regression": self.regression, "explained": self.explained,
                "per_work": self.per_work}


def change_points(steps, seconds, params: Params = Params(), work=None) -> list[ChangePoint]:
    """Step-time change points by binary segmentation on log seconds.

    A split is kept when both sides have ``min_segment`` steps, a two-sided
    Mann-Whitney U test gives p < ``alpha`` and the medians differ by at least
    ``min_ratio`` either way. ``work``: ``(name, values)``, the work per step at the same
    steps (NaN where not logged), whose change over each split is kept with it. Returns
    them sorted by step.
    """
    import numpy as np

    y = np.log(np.asarray(seconds, dtype=float))
    found: list[ChangePoint] = []
    stack = [(0, len(y))]
    while stack and len(found) < params.max_change_points:
        lo, hi = stack.pop()
        k = best_split(y[lo:hi], params.min_segment)
        if k is None:
            continue
        cp = _test_split(np.asarray(steps), np.asarray(seconds, dtype=float), lo, lo + k, hi, params, work)
        if cp is not None:
            found.append(cp)
            stack += [(lo, lo + k), (lo + k, hi)]
    return sorted(found, key=lambda c: c.step)


def best_split(y, min_segment: int) -> int | None:
    """Index k that best splits ``y`` into two constant means (least squares), or None."""
    import numpy as np

    n = len(y)
    if n < 2 * min_segment:
        return None
    csum, csq = np.cumsum(y), np.cumsum(y * y)
    k = np.arange(min_segment, n - min_segment + 1)
    left = csq[k - 1] - csum[k - 1] ** 2 / k
    right = (csq[-1] - csq[k - 1]) - (csum[-1] - csum[k - 1]) ** 2 / (n - k)
    return int(k[np.argmin(left + right)])


def _test_split(steps, seconds, lo: int, k: int, hi: int, params: Params, work=None) -> ChangePoint | None:
    import numpy as np

    before, after = seconds[lo:k], seconds[k:hi]
    ratio = float(np.median(after) / np.median(before))
    if max(ratio, 1 / ratio) < params.min_ratio:
        return None         # too small a change to matter: no test (nor scipy) needed
    from scipy.stats import mannwhitneyu

    p = float(mannwhitneyu(before, after, alternative="two-sided").pvalue)
    if p >= params.alpha:
        return None
    name, work_ratio = (work[0], _median_ratio(work[1], lo, k, hi, params)) if work else (None, None)
    return ChangePoint(int(steps[k]), float(np.median(before)), float(np.median(after)), ratio, p,
                       name, work_ratio, params.min_ratio)


def _median_ratio(values, lo: int, k: int, hi: int, params: Params) -> float | None:
    """Median of ``values[k:hi]`` over that of ``values[lo:k]`` (NaN left out), or None
    when a side has fewer than half of ``min_segment`` values or a median that is not
    positive."""
    import numpy as np

    sides = [v[np.isfinite(v)] for v in (values[lo:k], values[k:hi])]
    if min(len(v) for v in sides) < max(1, params.min_segment // 2):
        return None
    before, after = (float(np.median(v)) for v in sides)
    return after / before if before > 0 and after > 0 else None
