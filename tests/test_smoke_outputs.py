"""A new smoke-test run reproduces the recorded cards in ``reference/expected_outputs/``.

The recorded cards are written on purpose by ``python smoke_tests/cpu_2min_test.py
--record`` and compared here field by field:

- every JSON card: all fields, recursively, exactly (floats to 1e-9 relative), except
  - volatile fields, excluded by name wherever they occur (:data:`VOLATILE`): timings,
    resident-set sizes and the host/package fingerprint;
  - renderings of other fields, excluded by name (:data:`RENDERED`): a card's
    ``tables``, ``summary`` and finding ``title`` / ``fix`` are rendered from its
    ``details`` and findings' ``evidence``, a check's ``detail`` line (:data:`RENDERED_TEXT`)
    from what it measured, a comparison's ``verdict`` sentence from its
    signals (whose values are compared, with their tolerances), and a summary row's
    ``found`` from the cards;
  - measurements that are noisy by nature, compared with the tolerances of
    :data:`TOLERANCES` (process memory; metric deltas of the run made nondeterministic
    on purpose by unseeded jitter), and the info findings of memory cards
    (:data:`NOISY_INFO`) and the noise a memory trend that is no leak measured
    (:data:`NO_LEAK_NOISE`);
- every CSV file exactly; the same set of JSON and CSV files on both sides.

Paths are written as ``<out>``, ``<repo>``, ``<work>`` and ``<python>`` by the smoke test, so they
are compared too. Training is bit-reproducible on one CPU with the pinned torch, which is
why everything else must match exactly; across CPUs whose vector kernels differ, the raw
metric values of a run move in their last digits (the divergence card's KL curve:
:data:`TOLERANCES`), never the steps, codes and verdicts read off them.
"""
from __future__ import annotations

import fnmatch
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "reference" / "expected_outputs"

VOLATILE = frozenset(("seconds", "wall_seconds", "cpu_seconds", "peak_child_rss_mib", "own_peak_rss_mib",
                      "jobs", "environment"))
RENDERED = frozenset(("tables", "summary", "title", "fix", "found", "verdict"))
#: fields that are renderings when they hold text (a check's ``detail`` line), and are
#: compared like any field when they hold data
RENDERED_TEXT = frozenset(("detail",))
MIB = 2.0 ** 20
# card glob -> field -> (absolute, relative) tolerance; measured spread between runs on one
# machine: RSS start/end 1-2 %, slopes up to 0.5 MiB/step, onset steps up to 4 apart on the
# clean run (no leak: the onset is the noisiest point), jitter-driven metric deltas < 0.01.
TOLERANCES = {
    # the KL curve of a real 16-step training run and the deltas read off it: bit-identical
    # between runs on one machine, but a CPU whose vector kernels differ (measured: AVX-512
    # on an AMD EPYC against the recording machine) moves these small KL values (0.002-0.04)
    # by up to 0.1%; the steps read off them (first and exact divergence) stay exact
    "divergence/*": {k: (0, 0.01) for k in ("a", "b", "value_a", "value_b", "max_abs_delta")},
    "memory_leak/*": {"start_bytes": (0, 0.15), "end_bytes": (0, 0.15), "slope": (3 * MIB, 0),
                      "slope_low": (3 * MIB, 0), "slope_high": (3 * MIB, 0), "growth": (0.05, 0),
                      "onset_step": (4, 0), "steps": (4, 0)},
    # unseeded jitter: absolute values move by a few hundredths; ratios of two such
    # differences (a coefficient of variation, a relative difference) move by more
    "determinism/nondeterminism/*": {**{k: (0.05, 0) for k in (
        "value_a", "value_b", "value_reference", "value_replica", "max_abs_delta", "max_abs_diff")},
        **{k: (0.25, 0) for k in ("max_cv", "max_rel_diff")},
        # a metric downstream of the jittered reward (entropy, kl) can still agree to the
        # logged precision one step after the jitter starts, or not: its own first
        # differing step moves by one. The run's first divergence (``first_divergent_step``,
        # the comparison's ``step``) is not named here and stays exact.
        **{k: (1, 0) for k in ("exact_step", "first_diff_step", "differing_steps")}},
}
EXACT = (0.0, 1e-9)
#: Cards whose info findings come from process measurements (the memory of a real
#: training process): an info "memory grew 1.01x" appears or not with the machine's
#: noise; their warnings and errors (a leak, or none) are compared like any field.
NOISY_INFO = ("memory_leak/*",)


#: What a memory trend that is no leak measured: where flat noise starts to "grow" (any
#: step), and the slope and growth of that noise. On one machine its slope bounds move by
#: up to 0.5 MiB/step; a CI machine under load measured an upper bound of 3.1 MiB/step on
#: the clean run recorded at 0.06. Its verdict (``leak``: false), span and points, and the
#: findings it raised (none above info) are still compared.
NO_LEAK_NOISE = frozenset(("onset_step", "slope", "slope_low", "slope_high", "growth"))


def comparable(card: str, data: dict) -> dict:
    """``data`` without the info findings of a card in NOISY_INFO, and without what a
    memory trend that is no leak measured of its noise (:data:`NO_LEAK_NOISE`)."""
    if not any(fnmatch.fnmatch(card, p) for p in NOISY_INFO) or "findings" not in data:
        return data
    data = {**data, "findings": [f for f in data["findings"] if f.get("severity") != "info"]}
    trends = (data.get("details") or {}).get("trends")
    if trends:
        data["details"] = {**data["details"], "trends": [
            t if t.get("leak") else {k: v for k, v in t.items() if k not in NO_LEAK_NOISE}
            for t in trends]}
    return data


def tolerances(card: str) -> dict:
    """Field -> (absolute, relative) tolerance for the card at relative path ``card``."""
    out = {}
    for pattern, table in TOLERANCES.items():
        if fnmatch.fnmatch(card, pattern):
            out.update(table)
    return out


def differences(recorded, new, path: str = "", tol: dict | None = None, field: str = "") -> list[str]:
    """Where ``new`` departs from ``recorded`` (JSON values), one line per field."""
    tol = tol or {}
    if isinstance(recorded, dict) and isinstance(new, dict):
        text = {k for k in RENDERED_TEXT if isinstance(recorded.get(k), str) and isinstance(new.get(k), str)}
        keys = (set(recorded) | set(new)) - VOLATILE - RENDERED - text
        return [d for k in sorted(keys) for d in (
            [f"{path}/{k}: only on one side"] if (k in recorded) != (k in new)
            else differences(recorded[k], new[k], f"{path}/{k}", tol, k))]
    if isinstance(recorded, list) and isinstance(new, list):
        if len(recorded) != len(new):
            return [f"{path}: {len(recorded)} items recorded, {len(new)} now"]
        return [d for i, (a, b) in enumerate(zip(recorded, new))
                for d in differences(a, b, f"{path}[{i}]", tol, field)]
    if _number(recorded) and _number(new):
        absolute, relative = tol.get(field, EXACT)
        if math.isclose(recorded, new, rel_tol=relative, abs_tol=absolute) or recorded == new:
            return []
        return [f"{path}: {recorded} recorded, {new} now (tolerance abs {absolute}, rel {relative})"]
    same = recorded == new and type(recorded) is type(new)
    return [] if same else [f"{path}: {recorded!r} recorded, {new!r} now"]


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def compared_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.suffix in (".json", ".csv")}


# ------------------------------------------------------------------ the comparator itself
def test_comparator_applies_names_and_tolerances():
    tol = tolerances("memory_leak/leak/memory_leak.json")
    assert differences({"a": 1.0, "seconds": 3, "tables": [1]}, {"a": 1.0, "seconds": 9, "tables": [2]}) == []
    assert differences({"a": {"b": [1, 2]}}, {"a": {"b": [1, 3]}}) == ["/a/b[1]: 2 recorded, 3 now (tolerance abs 0.0, rel 1e-09)"]
    assert differences({"onset_step": 3}, {"onset_step": 6}, tol=tol) == []
    assert differences({"onset_step": 3}, {"onset_step": 8}, tol=tol) == [
        "/onset_step: 3 recorded, 8 now (tolerance abs 4, rel 0)"]
    assert differences({"onset_step": 3}, {"onset_step": 6}) != []          # other cards: exact
    jitter = tolerances("determinism/nondeterminism/determinism.json")
    assert differences({"first_diff_step": 5}, {"first_diff_step": 6}, tol=jitter) == []
    assert differences({"first_diff_step": 5}, {"first_diff_step": 7}, tol=jitter) != []
    assert differences({"first_divergent_step": 4, "step": 4}, {"first_divergent_step": 5, "step": 5}, tol=jitter) == [
        "/first_divergent_step: 4 recorded, 5 now (tolerance abs 0.0, rel 1e-09)",
        "/step: 4 recorded, 5 now (tolerance abs 0.0, rel 1e-09)"]
    assert differences({"passed": True}, {"passed": 1}) == ["/passed: True recorded, 1 now"]
    assert differences({"detail": "max kl 0.487"}, {"detail": "max kl 0.486"}) == []
    assert differences({"detail": {"n": 1}}, {"detail": {"n": 2}}) != []
    curve = tolerances("divergence/x/divergence.json")
    assert differences({"a": [0.011125]}, {"a": [0.011114]}, tol=curve) == []
    assert differences({"a": [0.0111]}, {"a": [0.0113]}, tol=curve) != []
    assert differences({"exact_step": 6}, {"exact_step": 7}, tol=curve) != []
    assert differences({"x": "<work>/a"}, {}) == ["/x: only on one side"]


# ------------------------------------------------------------------ the recorded cards
def test_recorded_cards_hold_no_machine_paths():
    for name in sorted(compared_files(RECORDED)) + ["summary.md"]:
        text = (RECORDED / name).read_text(encoding="utf-8")
        assert "/tmp/" not in text and str(ROOT) not in text, name


def test_new_run_reproduces_the_recorded_cards(smoke_run):
    assert smoke_run.returncode == 0, smoke_run.stdout[-3000:] + smoke_run.stderr[-3000:]
    assert compared_files(smoke_run.out) == compared_files(RECORDED)
    problems = []
    for name in sorted(compared_files(RECORDED)):
        old, new = (RECORDED / name).read_text(encoding="utf-8"), (smoke_run.out / name).read_text(encoding="utf-8")
        if name.endswith(".csv"):
            problems += [] if old == new else [f"{name}: differs"]
        else:
            problems += [f"{name}{d}" for d in differences(comparable(name, json.loads(old)),
                                                           comparable(name, json.loads(new)),
                                                           tol=tolerances(name))]
    assert not problems, "\n".join(problems[:40])


def test_noisy_info_findings_are_left_out_only_where_named():
    data = {"findings": [{"severity": "info", "code": "memory_growth"}, {"severity": "warning", "code": "memory_leak"}]}
    assert comparable("memory_leak/clean/memory_leak.json", data)["findings"] == [
        {"severity": "warning", "code": "memory_leak"}]
    trends = {"findings": [], "details": {"trends": [
        {"leak": False, "onset_step": 3, "slope": 1.0, "slope_high": 3e6, "points": 14},
        {"leak": True, "onset_step": 40, "slope": 2e6}]}}
    assert comparable("memory_leak/clean/memory_leak.json", trends)["details"]["trends"] == [
        {"leak": False, "points": 14}, {"leak": True, "onset_step": 40, "slope": 2e6}]
    # a trend that turns into a leak is still a difference
    leaked = {"findings": [], "details": {"trends": [{**trends["details"]["trends"][0], "leak": True}]}}
    noise = {"findings": [], "details": {"trends": [trends["details"]["trends"][0]]}}
    assert differences(comparable("memory_leak/clean/memory_leak.json", noise),
                       comparable("memory_leak/clean/memory_leak.json", leaked))
    assert comparable("safety/safety_clean/safety.json", data) == data
