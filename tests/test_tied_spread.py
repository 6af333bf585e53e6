"""A GRPO run that logs only the reward's spread (issue #14): TRL before
``frac_reward_zero_std`` logs ``reward_std``, the mean of the groups' stds, and exactly 0
there is every group tied. Read as the share of tied groups (``ratios.tied``), it drives
``zero_std_onset``, and the loss and grad norm of such a run are judged on the steps with a
signal; a mean length pinned at a whole number is the generation cap
(``health.onset._pinned_cap``); gradient-norm spikes that all came back are transient.
Real Trainer consoles of the tuning half (``hf_console``), and synthetic twins."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rldk.analyzers._series import Series
from rldk.analyzers.health.onset import _pinned_cap
from rldk.detectors import ratios, rules

REAL = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "real"
SOLVED = "hfconsole_grpo_qwen25vl7b_food172_zero_std_length_explosion"
HEALTHY = "hfconsole_grpo_qwen25vl7b_foodx251_plateau_kl_glitches"


def _problems(name: str, file: str, tmp_path, monkeypatch):
    from rldk.analyzers.suite import analyze
    from rldk.converters import ingest

    monkeypatch.setenv("RLDK_CACHE_DIR", str(tmp_path / "cache"))
    store = ingest(str(REAL / name / file), adapter="hf_console")
    return [f for r in analyze(store.files, plots=False).reports for f in r.findings if f.is_problem]


def test_a_solved_run_with_every_group_tied_and_its_answers_at_the_cap(tmp_path, monkeypatch):
    """A TRL GRPO console of a VLM (Visual-RFT, 4129 steps, no config beside it): reward
    0.92, 0.91, 0.97, then 1.0 with reward_std exactly 0 on 4124 of the next 4126 steps, and
    completion_length 192, 201, 242, then exactly 256.0 on 91% of the steps. The ties are a
    warning though the reward is at its top (no group is left to carry a signal), read off
    reward_std from step 4; the length ran to the 256-token cap from step 3 (the truth's
    window is 2-3); the grad norm, ~1e-9 at the tied steps and 0.003-0.5 from the KL term
    at some of them, shows no spike."""
    found = {f.code: f for f in _problems(SOLVED, "ouuput.log", tmp_path, monkeypatch)}
    assert set(found) == {"zero_std_onset", "length_explosion"}, found
    ties = found["zero_std_onset"]
    assert ties.severity == "warning" and ties.steps[0] == 4 and ties.metric == "reward_std"
    assert "exactly 0" in ties.title and "no learning signal" in ties.title
    assert found["length_explosion"].steps[0] == 3 and found["length_explosion"].evidence["cap"] == 256


def test_a_healthy_run_with_single_row_kl_and_grad_norm_glitches_is_quiet(tmp_path, monkeypatch):
    """The same project's run on another dataset (2907 steps): reward up to a noisy plateau,
    KL 0.01 -> 0.04 with 22 single-row glitches up to 4.7e11, grad norm spikes to 1.6e14 for
    single rows, each back at once: no problem finding."""
    assert _problems(HEALTHY, "nohup.out", tmp_path, monkeypatch) == []


def test_tied_reads_exact_zeros_only():
    share = ratios.tied([0.0, 0.25, np.nan, 0.0, 1e-12])
    assert share[0] == 1.0 and share[1] == 0.0 and np.isnan(share[2]) and share[3] == 1.0
    assert share[4] == 0.0          # a tiny spread is some group that varied, not a tie


@pytest.mark.parametrize("values, cap", [
    (np.r_[np.linspace(150, 240, 10), np.full(40, 512.0)], 512.0),               # pinned at the cap
    (np.r_[np.linspace(150, 240, 10), np.tile([511.0, 512.0, 509.0], 14)], None),  # a plateau that varies
    (np.r_[np.linspace(150, 240, 10), np.full(40, 255.5)], None),                # no whole number of tokens
    (np.r_[np.full(20, 300.0), np.linspace(200, 100, 30)], None),                # its top, left for good
])
def test_a_cap_is_a_whole_number_the_mean_length_is_pinned_at(values, cap):
    steps = np.arange(len(values))
    assert _pinned_cap(Series("completion_length", steps, values)) == cap


def test_a_mean_length_at_the_cap_with_short_dips_is_at_the_cap():
    """At the cap on 90% of a long run's rows, with dips of a few rows under 95% of it
    scattered through (batches with some shorter answers): at the cap from its first row
    there (the onset protocol's 80% of the rows from there on); a length that only visits
    the cap is not."""
    rng = np.random.default_rng(3)
    v = np.r_[[190.0, 200.0, 240.0], np.full(997, 256.0)]
    dips = rng.choice(np.arange(10, 1000), 100, replace=False)
    v[dips] = 230.0
    v[[500, 501, 502, 503]] = 220.0
    event = rules.length_at_cap("completion_length", np.arange(1, 1001), v, 256.0)
    assert event is not None and event.onset == 3 and event.severity == "warning"
    visits = np.r_[[190.0, 200.0], np.tile([256.0, 200.0, 200.0], 50)]
    assert rules.length_at_cap("completion_length", np.arange(len(visits)), visits, 256.0) is None
