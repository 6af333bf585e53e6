"""Bootstrap speed: rldk.stats' vectorized stratified bootstrap against a plain loop.

The workload of the issue: scores of 10 runs x 5 tasks, 50,000 bootstrap
resamples, IQM and mean, 95% percentile interval. Contenders, timed in the same
process on the same data:

  rldk        rldk.stats.bootstrap_ci (all resamples drawn at once with NumPy)
  loop        a plain Python loop over resamples: per resample draw each task's
              run indices, index, compute the statistic (scipy.stats.trim_mean
              for IQM), as rliable's arch-based StratifiedBootstrap does
  rliable     rliable.library.get_interval_estimates, when rliable (and a working
              arch) is installed; reported as unavailable otherwise

Each contender runs ``--repeat`` times; the table shows medians and the ratio of
each to rldk. Also checks that rldk and the loop give the same interval within
Monte-Carlo error.

    python benchmarks/stats.py                  # the docs/evaluation.md table
    python benchmarks/stats.py --reps 50000 --repeat 5
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def loop_bootstrap(scores: np.ndarray, statistic: str, reps: int, seed: int = 0) -> tuple[float, float]:
    """The plain-loop reference: one resample at a time."""
    from scipy.stats import trim_mean

    rng = np.random.default_rng(seed)
    runs, tasks = scores.shape
    values = np.empty(reps)
    for r in range(reps):
        idx = rng.integers(0, runs, size=(runs, tasks))
        sample = scores[idx, np.arange(tasks)]
        values[r] = trim_mean(sample, 0.25, axis=None) if statistic == "iqm" else sample.mean()
    lower, upper = np.percentile(values, [2.5, 97.5])
    return float(lower), float(upper)


def rldk_bootstrap(scores: np.ndarray, statistic: str, reps: int, seed: int = 0) -> tuple[float, float]:
    from rldk.stats import bootstrap_ci

    ci = bootstrap_ci(scores, statistic, reps=reps, seed=seed)
    return ci.lower, ci.upper


def rliable_bootstrap(scores: np.ndarray, statistic: str, reps: int, seed: int = 0):
    from rliable import library, metrics

    func = metrics.aggregate_iqm if statistic == "iqm" else metrics.aggregate_mean
    _, cis = library.get_interval_estimates({"x": scores}, lambda s: np.array([func(s)]), reps=reps,
                                            random_state=np.random.RandomState(seed))
    return float(cis["x"][0, 0]), float(cis["x"][1, 0])


CONTENDERS = {"rldk": rldk_bootstrap, "loop": loop_bootstrap, "rliable": rliable_bootstrap}


def time_one(func, scores, statistic, reps, repeat) -> tuple[float | None, tuple | str]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            result = func(scores, statistic, reps)
        except Exception as exc:  # rliable's bootstrap needs a compatible arch release
            return None, f"unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})"
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--reps", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    scores = np.random.default_rng(0).normal(1.0, 0.5, size=(args.runs, args.tasks))
    print(f"stratified bootstrap, {args.runs} runs x {args.tasks} tasks x {args.reps} reps, "
          f"median of {args.repeat}")
    print(f"{'statistic':<10}{'contender':<10}{'seconds':>10}{'x rldk':>9}  interval")
    for statistic in ("iqm", "mean"):
        base = None
        for name, func in CONTENDERS.items():
            seconds, result = time_one(func, scores, statistic, args.reps, args.repeat)
            if seconds is None:
                print(f"{statistic:<10}{name:<10}{'-':>10}{'-':>9}  {result}")
                continue
            base = base or seconds
            print(f"{statistic:<10}{name:<10}{seconds:>10.3f}{seconds / base:>9.1f}  "
                  f"[{result[0]:.4f}, {result[1]:.4f}]")


if __name__ == "__main__":
    main()
