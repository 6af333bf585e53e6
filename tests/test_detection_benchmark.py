"""The detection benchmark on real public logs (benchmarks/detection.py): the corpus is
well-formed, and detection does not regress below what was measured when the
detectors were last changed (README "Detection on real public logs").

The issue's targets for the report half (>= 95% found, >= 85% at the exact onset,
<= 0.05 false alarms per healthy log, <= 1 in 20 healthy logs exiting 3) are not all
met yet; these floors are the measured levels, so a change that loses detections or
adds false alarms fails here."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODES = {"reward_collapse", "reward_plateau", "reward_degradation", "kl_blowup", "length_collapse",
         "length_explosion", "truncation_onset", "grad_norm_explosion", "nan_onset",
         "entropy_collapse", "zero_std_onset", "clip_ratio_blowup", "loss_spike"}


def load_benchmark(name: str = "detection"):
    """``benchmarks/<name>.py`` as the module ``name`` (the benchmarks import each other
    by that name; dataclasses look their module up there)."""
    if name != "detection":
        load_benchmark()
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results(real_imports):
    mp = pytest.MonkeyPatch()
    mp.setenv("RLDK_CACHE_DIR", str(real_imports))
    bench = load_benchmark()
    yield bench, bench.run(("tune", "report"))
    mp.undo()


def test_the_corpus_is_well_formed():
    bench = load_benchmark()
    logs = bench.load_truth()
    assert len(logs) >= 30
    for name, entry in logs.items():
        root = Path(entry.get("root", bench.DATA))
        assert (root / entry["path"]).exists(), name
        assert entry["split"] in ("tune", "report") and entry["format"] in bench.FORMATS, name
        assert entry["healthy"] == (not entry["events"]), name
        assert {e["code"] for e in entry["events"]} <= CODES, name
    healthy = sum(e["healthy"] for e in logs.values())
    assert healthy >= 12 and len(logs) - healthy >= 12
    sources = (bench.DATA / "SOURCES.md").read_text(encoding="utf-8")
    assert all(name in sources for name, e in logs.items() if "root" not in e)
    json.loads((bench.DATA / "truth.json").read_text(encoding="utf-8"))


def test_no_log_fails_to_import_or_analyze(results):
    _, res = results
    assert [r.name for r in res.values() if r.error] == []


def test_a_finding_that_ended_before_an_event_began_is_not_its_detection():
    """A dip the run came back from long before its collapse is reported as what it is;
    the collapse's onset is read from the finding that covers it (a PyMARL DCG return's
    recovered sag at 270730 and its collapse from 1124116, labelled 1164426..1295096). Nor
    is a finding that starts after the event was over (a run's second KL burst is no
    detection of its first)."""
    from types import SimpleNamespace as NS

    bench = load_benchmark()
    entry = {"split": "tune", "healthy": False, "benign": [], "events": [
        {"code": "reward_collapse", "quantity": "episode_return", "onset_step": 1164426,
         "last_step": 2040697, "onset_kind": "gradual", "onset_window": [1164426, 1295096]}]}

    def finding(first, last):
        return NS(code="reward_degradation", metric="test_return_mean", steps=(first, last),
                  title="", severity="warning", is_problem=True)

    def scored(*findings):
        return bench.score("x", entry, NS(reports=[NS(findings=list(findings))], status="problems"))

    both = scored(finding(270730, 441419), finding(1200000, 2040697))
    assert (both.found, both.in_window) == (1, 1)
    alone = scored(finding(270730, 441419))
    assert (alone.found, len(alone.missed), len(alone.false_alarms)) == (0, 1, 1)
    inside = scored(finding(1100000, 1200000))      # starts before the window, reaches into it
    assert (inside.found, inside.in_window) == (1, 0)
    later = scored(finding(2100000, 2300000))       # starts after the collapse was over
    assert (later.found, len(later.missed)) == (0, 1)


def test_a_nan_finding_reports_each_metric_it_names_at_that_metric_s_onset():
    """One NaN finding names every metric that went non-finite, in order, with each one's
    first step (``first_steps``): a NaN event of each of them is found, at its own onset
    (a real verl run: grad_norm NaN from step 1, the entropy, loss and KLs from step 2);
    a quantity the finding does not name is not."""
    from types import SimpleNamespace as NS

    bench = load_benchmark()
    events = [{"code": "nan_onset", "quantity": q, "onset_step": s, "last_step": 600, "onset_kind": "step"}
              for q, s in (("grad_norm", 1), ("entropy", 2), ("reward", 2))]
    entry = {"split": "tune", "healthy": False, "benign": [], "events": events}
    f = NS(code="nan_onset", metric="actor/grad_norm", steps=(1, 600), title="", severity="error",
           is_problem=True, evidence={"first_steps": {"actor/grad_norm": 1, "actor/entropy": 2}})
    scored = bench.score("x", entry, NS(reports=[NS(findings=[f])], status="problems"))
    assert (scored.found, scored.exact) == (2, 2)
    assert [e["quantity"] for e in scored.missed] == ["reward"]


def test_the_summary_says_which_findings_make_healthy_logs_exit():
    """The report half's per-log lines are not printed (they are not put in front of whoever
    tunes), so its summary counts the finding codes of the healthy logs that exit 3, a log
    once under each code it has: what a reader needs to know of where its exits come from."""
    bench = load_benchmark()
    logs = [bench.LogResult("a", "report", True, exit3=True, problem_codes=["nan_onset", "spike"]),
            bench.LogResult("b", "report", True, exit3=True, problem_codes=["spike"]),
            bench.LogResult("c", "report", True, exit3=False, problem_codes=[]),
            bench.LogResult("d", "report", False, events=1, exit3=True, problem_codes=["reward_collapse"]),
            bench.LogResult("e", "tune", True, exit3=True, problem_codes=["entropy_collapse"])]
    s = bench.summary({r.name: r for r in logs}, "report")
    assert s["healthy_exit3"] == 2
    assert s["healthy_exit3_by_code"] == {"spike": 2, "nan_onset": 1}


#: measured shares (found, exact onset on the original label, onset within the protocol
#: window) and healthy logs exiting 3, per half, when the detectors were last changed
#: (tune: 3 healthy logs exit 3: four single-row KL spikes of 66-197 nats in
#: trl_grpo_verified_reasoner, which its truth lists as ambiguous; an entropy decline
#: of 2.45 -> 0.41 nats while the return rose in sb3tb_ppo_plateau, and one of 1.10 ->
#: 0.03 while MountainCar was solved in sb2_ppo2_mountaincar_learning, both listed as
#: benign); the eighth to twelfth batches included (the eleventh and twelfth add two
#: healthy tune logs that exit 3: a solved one-decision ML-Agents task whose entropy falls
#: to ~0, listed as benign, and a ROLL GRPO run whose share of zero-advantage responses
#: sits at 0.71 from the first step, listed as benign, with a 3-step grad-norm spike);
#: the thirteenth and fourteenth batches add 6 tune events (4 found: a return that
#: crashed, relearned and crashed again is one found twice, at its second crash) and 3
#: report events, and no healthy log exiting 3 (a PPO clip fraction drifting 0.28 -> 0.33
#: over the 0.3 line was one until such a drift became info); the fifteenth to seventeenth
#: batches (session 11) add 11 healthy logs and 5 entropy collapses of one CleanRL sweep;
#: entropy that falls to a fifth but stays above ENTROPY_FLOOR nats became info (healthy
#: multi-discrete policies end at 0.4-1.3 nats), 9 -> 6 tune healthy logs exiting 3;
#: session 15 (wander from the smaller of two variance estimates, one blind to a steady
#: trend; short final states; the point test judged against noise and wander): tune
#: 42 -> 43 found, 34 -> 36 in window (a smoothly rising CartPole return's first collapse,
#: and a Reacher return's slide), report unchanged; the eighteenth batch (session 18) adds
#: 2 tune events, both missed (Tianshou validation returns of 31 and 17 evaluations: a
#: three-row peak that loses 43% of its gain and partly recovers; a fall over the last four
#: rows, two of them past half the gain), 1 report event (found, in its window) and a healthy
#: log to each half (both quiet); then a value loss is judged against the levels it held
#: since its lowest, not its untrained start: tune 43 -> 44 found, 17 -> 18 exact, 36 -> 37
#: in window (a Reacher critic's 0.005 -> ~1 jump while its return slid), report unchanged;
#: the nineteenth batch adds 2 tune events and 1 report event (all found), 2 tune and 1
#: report healthy logs (one of each exits 3), then a noisy group reward collapses where it
#: stays at its floor and a length rises from the lowest level held over a whole window:
#: tune 46 of 50 found, 20 exact, 39 in window, 7 of 45 exits; report 28 of 38, 15, 23, 6 of 34;
#: the twentieth batch (session 19, 21 logs) adds 5 tune events (3 found) and 6 report events
#: (4 found), 6 tune and 5 report healthy logs (2 of the report ones exit 3): tune 49 of 55
#: found, 22 exact, 41 in window, 7 of 51 exits; report 32 of 44, 16, 26, 8 of 39; then a
#: gain measured from the first row or two a run left at once for a level it held, when no
#: gain between held levels is in sight (an untrained first evaluation, then the ceiling):
#: tune 49 -> 50 found, 41 -> 42 in window (an EPyMARL QMIX return's late slide); report unchanged;
#: session 20: a recovered decline that held a level past half its gain measured under a
#: quarter of it, and zero-std groups at the top of a learned reward as info: tune 42 -> 43
#: in window, report 32 -> 36 found, 26 -> 29 in window (FA and exits unchanged); then the
#: twenty-first batch (18 logs, 3 of its report logs read before those changes) adds 6 tune
#: events (all found, 5 in window) and 3 report events (all found, 1 in window), 6 tune and
#: 5 report healthy logs (one report log exits 3, none raises a false alarm): tune 56 of 61,
#: 27, 48, 7 of 57; report 39 of 47, 17, 30, 0.045, 9 of 44. Then a metric never finite that
#: is no training quantity (ML-Agents' discrete entropy coefficient in a continuous-action
#: run) became info; the twenty-second batch (14 logs; one of its report healthy logs read
#: before the step-time change of session 20) adds 4 tune events (1 found) and 2 report
#: events (1 found), 5 tune and 4 report healthy logs (one of each exits 3): tune 57 of 65,
#: 28, 49, 8 of 62; report 40 of 49, 17, 30, 0.021, 10 of 48; then a second fall from the
#: level a declined run then held is its own event: tune 57 -> 58 found, 28 -> 29 exact,
#: 49 -> 50 in window (a MARLlib Ant return's collapse after its degradation). Sessions
#: 21-23: context that explains a change is info, batches 23 to 26 (56 logs, measured
#: fresh before they were split), a leading -inf placeholder is not yet defined, a length
#: that shortens gradually as the reward rises is info, and a loss of 30% of the gain kept
#: to the end is a degradation (report 51 -> 53 found, 36 -> 37 in window, exits 12 -> 13,
#: before batch 26). Session 24: batch 27, a mapped name matched whole, three onset fixes.
#: Session 25: batches 28 and 29 (16 logs measured fresh: 7 of 8 events found, 4 in
#: window, no false alarm and 1 exit on their 10 healthy logs; tune 86 of 95, 33, 67, 6 of
#: 84; report 62 of 80, 22, 43, 13 of 66), then a fall's onset read where the series
#: left the level it held just before when it slid from there (tune exact 33 -> 36, in
#: window 67 -> 69; report 22 -> 24, 43 -> 44); then CS285's Train_/Eval_ prefixes are read
#: (its evaluation return, now read, drops one iteration before the labelled training
#: return in one tune log: exact 36 -> 35, in window 69 -> 68); then the thirtieth batch
#: (7 logs; its 2 late degradations missed, its 5 healthy logs quiet). Session 26: moderate
#: and short declines, ties a run learns through, ratios that get worse, the thirty-first
#: batch (tune 92 of 98, 37, 76, 5 of 90; report 65 of 82, 24, 45, 13 of 71). Session 27:
#: undefined NaNs that ended before a failure are no part of it, a finding that ended
#: before an event began is not its detection, the thirty-second batch (6 logs measured
#: fresh: 3 of 3 events found, none in its window, its 4 healthy logs quiet), a reward at
#: its floor from the first step that never rises (tune 94 of 99 found, 38 exact, 77 in
#: window), the thirty-third batch (10 logs measured fresh: 2 of 2 events found, both in
#: their window, no false alarm on its 8 healthy logs, 2 of them exiting 3 on findings
#: their truth lists as benign), a grad-norm start-up transient as info (one of those
#: two exits, in the tune half), and the thirty-fourth batch (6 logs measured fresh: 3 of 3
#: events found, 2 in their window; 1 of its 3 healthy logs exits 3, on a PyMARL TD loss
#: that grows with the Q values, mapped as a plain loss). Session 28: a loss back at the
#: level it held after a dip to near zero has not risen, and a rise after such a dip starts
#: where it left that level (tune exact 39 -> 40, in window 79 -> 80: a Safety Gym value
#: loss's jump), and the thirty-fifth batch (7 logs measured fresh: 4 of 4 events found, 3
#: in their window, no false alarm; 1 of its 5 healthy logs exits 3, on a Spinning Up PPO
#: Gaussian policy's differential entropy falling 0.92 -> 0.09 nats, positive throughout,
#: which the entropy rule reads as a discrete policy's), and the thirty-sixth batch (8 logs
#: measured fresh: 3 of 4 events found, 2 in their window, its 4 healthy logs quiet), then a
#: short regime back up is a bounce inside a fall, not a level held again (tune exact 42 ->
#: 43, in window 83 -> 84: that batch's rl_games CartpoleCmd return; report exact 28 -> 29),
#: and the thirty-seventh batch (4 logs measured fresh: 1 of 2 events found, in its window,
#: its 2 healthy logs quiet). Session 29: the thirty-eighth batch (11 logs measured fresh: 2
#: of 3 events found, both in their window; 2 of its 8 healthy logs exited 3 on a DQN loss
#: that a hand-written logger writes as NaN before learning starts, which is now info: a
#: mean over no updates yet); a positive loss of a run that logs a return (a TD loss) must
#: climb past what the return's size explains (tune exits 7 -> 6: a PyMARL QMIX TD loss
#: growing with its Q values; report false alarms 3 -> 2, exits 14 -> 13), and the
#: thirty-ninth batch (12 logs measured fresh at 24c2733: 6 of 7 events found, 4 in their
#: window, no false alarm, its 6 healthy logs quiet). Session 32: the forty-seventh to
#: forty-ninth batches (33 logs, each measured fresh before its split: 5 of 9, 3 of 4 and 4
#: of 6 events found; 2 of 5, 2 of 6 and 1 of 7 healthy logs exiting 3) and that session's
#: rule changes (tune found 116 -> 117 of 125 before the batches and 120 -> 122 of 130
#: after the forty-seventh; healthy exits 11 -> 9 of 128 after the forty-eighth): the
#: floors below. Session 33: the fiftieth and fifty-first batches (30 logs, measured fresh
#: before their splits: 21 of 26 and 1 of 2 events found, 13 and 0 in their window, no
#: false alarm, 0 of 7 and 0 of 10 healthy logs exiting 3) and that session's rule changes
#: (a staged grad-norm rise, a length that halves as the reward falls, a settled start-up
#: norm two decades over its start, PPO approx-KL bursts: tune found 125 -> 127 of 135
#: before the batches, 139 -> 143 of 151 after them; report unchanged by the rules but for
#: the wander of a level measured up to its distance: 91 -> 90 found, exits 16 -> 15 of
#: 107); then a finding that starts after an event was over no longer counts as its
#: detection (tune 143 -> 139 found, report 100 -> 99). Session 34: the fifty-second batch
#: (10 logs: tune 139 -> 143 of 161 found, report 99 -> 101 of 129, its exits 15 -> 16 of
#: 118), then a fall into a state from a level held for a tenth of the run starts there
#: (tune 114 -> 115 in window); the fifty-third batch (14 logs: tune 143 -> 148 of 166
#: found, report 101 -> 105 of 134, exits 9 -> 10 and 16 -> 17). Session 35: the
#: fifty-fourth batch (17 logs measured fresh: 3 of 10 events found, 2 in their window; a
#: false alarm and an exit on 1 of its 10 healthy logs, a wandb run that ended with exit
#: code 255); the fifty-fifth (6 healthy logs measured fresh: no false alarm, 3 exiting 3
#: on warnings of dips and flat stretches) and fifty-sixth batches (a NeMo-RL scalar dump:
#: 2 of its 3 events found, both at their step). Session 36: an entropy collapse that stays
#: above 0.09 nats while the reward rose with it is info (a policy that learned): tune
#: exits 13 -> 8 of 156, false alarms 2 -> 1, found 151 -> 150 (a job-shop PPO whose labelled
#: collapse ends at 0.18 nats as its return rose); report exits 18 -> 15, false alarms 2 -> 1.
#: Then a quarter of the gain is judged on points only up to 1000 rows (seeded flat integer
#: scores of 7600 rows "declined" on 11 of 20): tune exits 8 -> 7; report 107 -> 106 found,
#: 77 -> 76 in window. Then a fall whose peak was a short burst over the plateau starts
#: where it left the plateau (tune 58 -> 59 exact, 120 -> 121 in window; report unchanged).
#: Then a recovered dip must lose a quarter of the largest gain the run held anywhere, however
#: long (tune exits 7 -> 5, report 15 -> 14).
#: The fifty-seventh batch (8 logs measured fresh: 2 of 3 events found, 1 in its window; no
#: false alarm or exit on its 5 healthy logs). Session 37: responses that run to the
#: generation cap are a length explosion (tune and report +1 found, exact and in window);
#: the fifty-eighth batch (10 logs measured fresh: 15 of 17 events found, 8 in their window;
#: no false alarm, 1 of its 4 healthy logs exiting 3); a fall found on points starts where
#: the series left the level it held before the move (tune +2 in window, report unchanged).
#: Session 38: an entropy under 0.09 nats whose reward kept improving is info, a run stopped
#: by a signal is info (the false alarms of two wandb runs that exited 255, Ctrl-C), the
#: wander of a quantised series, the fifty-ninth batch (5 logs measured fresh: 3 of 3 events
#: found, 1 in its window; no false alarm, 1 of its 3 healthy logs exiting 3) and a clip
#: fraction high from the first step while the run learns: tune exits 5 -> 4 of 163, false
#: alarms 1 -> 0; report +1 found, exact and in window (the batch's), exits 15 of 134:
#: the floors below (then). Session 39: the wander of a series with none at the shortest lag
#: grows up the lags no faster than noise can (tune found 160 -> 162, in window 129 -> 130;
#: report found 117 -> 118, exact 49 -> 50, in window 82 -> 83); the sixtieth batch (9 logs
#: measured fresh: 6 of 7 events found, 3 in their window; no false alarm or exit on its 4
#: healthy logs); a level held for a quarter of a short run is where its fall started (tune
#: exact and in window +1); the sixty-first batch (7 logs measured fresh: its one event found,
#: outside its window; no false alarm, 1 of its 6 healthy logs exiting 3, on an error; that
#: log went to the report half). Session 40: the sixty-second batch (2 healthy logs measured
#: fresh: no false alarm, neither exits 3; one to each half). Session 41: an explosion
#: reported from where the grad norm left its level for good (tune and report +1 in
#: window); a peak that was a burst of the series' outliers is none (tune exits 4 -> 3, the
#: Spinning Up Hopper run; report unchanged); a truncated share that rises from none to
#: one in ten and stays (tune and report +1 found and in window). Session 42: a jump past
#: the midpoint from a point still near the level held is the onset, not the drift before it
#: (tune exact 62 -> 63, in window 135 -> 136; report exact 50 -> 49, in window unchanged);
#: a level PELT cut at single outliers is one stage (tune in window 136 -> 137); a grad norm
#: that overflows rarely is a loss scaler's skipped steps (report exits 16 -> 15): the
#: floors below. Session 49: a loss divergence the run came back from (tune found 168 -> 169,
#: exact 65 -> 66, in window 138 -> 139; report found 123 -> 124). Session 54: a wander
#: that grows no faster than WANDER_GROWTH up the lags from what the shortest shows, also
#: where that is not zero (``trend.level_se``), and a decline with no start in sight sized
#: by its peak (``rules._sized``): report found 124 -> 126, exact 51 -> 53, in window
#: 89 -> 92, exits 15 -> 14; tune found 169 -> 170 and in window 140 -> 139 (a Procgen
#: collapse the run recovered from is found; an rl-zoo A2C Ant fall and an SB3 DQN
#: CartPole decline are placed before their windows, at levels the run held under an
#: earlier high), healthy exits 3 -> 4 (an SB3 DDPG return's drop over its last 4% of
#: steps, which its labeller left open). Session 55: the sixty-third to sixty-fifth batches
#: (16 logs measured fresh: 10 of their 11 events found, 9 in their windows, none of their 9
#: healthy logs exiting 3; tune +11 logs and 8 events, report +5 logs and 3 events, all 3
#: found and in their windows) and an episode-length collapse read with a collapsed return
#: (``rules.episode_length_collapse``: tune found +1, in window +1, the batch-63
#: InvertedDoublePendulum run): tune 178 of 196 found, 70 exact, 146 in window, 4 of 175
#: healthy logs exiting 3; report 129 of 159, 54, 95, 14 of 143 (its exact share 53/156 ->
#: 54/159 is 0.0001 lower).
#: Session 56: a plateau cut in two by the change points is one level (``moves._held_floor``:
#: tune in window 146 -> 147); the sixty-seventh to seventieth batches (17 logs measured fresh:
#: 9 of their 16 events found, 7 in their windows, 7 of their 8 healthy logs quiet; tune +11
#: logs and 12 events, report +6 logs and 4 events); the share of tied groups read off a
#: reward_std of exactly 0, solved ties on 90% of the groups a warning, a cap a mean length
#: is pinned at, grad-norm spikes that came back transient, a clip-fraction state judged
#: from its crossing when its later state only drifted (tune found +3, in window +2, exits
#: 5 -> 4; report exits 14 -> 13): tune 187 of 208 found, 75 exact, 154 in window, 4 of 180
#: healthy logs exiting 3; report 132 of 163, 54, 97, 13 of 146.
#: Session 57: a crash the run recovered from, shorter than a twentieth of it, past 75% of
#: its gain (``trend.CRASH_STRETCH``: tune found +1, exact +1, in window +1), and a return
#: read as one level over its whole run has none to lose on points (``rules.ONE_LEVEL_ROWS``,
#: a healthy log of the new batches quiet); the seventy-first to seventy-ninth batches (34
#: logs measured fresh: 11 of their 13 events found, 11 in their windows, 20 of their 25
#: healthy logs quiet; tune +21 logs and 9 events, report +13 logs and 4 events; the report
#: half's 3 new healthy exits make its count 16 of 157): tune 196 of 217 found, 77 exact,
#: 163 in window, 5 of 194 healthy logs exiting 3; report 136 of 167, 55, 101, 16 of 157
#: (its found share 132/163 -> 136/167 and in-window share 97/163 -> 101/167 are higher;
#: its exact share 54/163 -> 55/167 is 0.002 lower).
#: Session 58: the eightieth to eighty-fifth batches (13 logs measured fresh: 2 of their 3
#: events found, 2 in their windows, 10 of their 11 healthy logs quiet; tune +10 logs and
#: 3 events, report +3 healthy logs, all quiet) and a final stretch below every earlier
#: point as a settled decline (``trend._stretch_below``: tune found +1, exact +1, in window
#: +1): tune 199 of 220 found, 79 exact, 166 in window, 6 of 202 healthy logs exiting 3 (the
#: new one: a SAC drone return that dips under its untrained level before it learns,
#: labelled benign); report 136 of 167, 55, 101, 16 of 160.
FLOORS = [("tune", 199 / 220, 79 / 220, 166 / 220, 6, 0.0), ("report", 136 / 167, 55 / 167, 101 / 167, 16, 1 / 160)]


#: The same, run as a user who passes no metric map (``--no-metric-maps``): what the
#: semantics table alone reads. Session 35: names OmniSafe, CS285's DQN, DreamerV3,
#: OfflineRL-Kit, prime-rl, Ray Tune's ``ray/tune/`` prefix and RLlib's new API stack
#: write (tune found 127 -> 132 of 166, 99 -> 103 in window; report unchanged); then the
#: fifty-fourth to fifty-sixth batches. Session 36: the entropy of a policy that learned
#: (tune found 134 -> 133, in window 105 -> 104, exits 11 -> 8; report exits 14 -> 11); a
#: quarter of the gain on points up to 1000 rows (tune exits 8 -> 7; report 105 -> 104
#: found, 75 -> 74 in window); a fall after a burst over the plateau (tune 104 -> 105 in
#: window); a recovered dip small beside the run's gain (tune exits 7 -> 5); the fifty-seventh
#: batch. Session 37: the length at the generation cap, the fifty-eighth batch (its healthy
#: countdown GRPO log exits 3 on the report half, as with the maps) and the onset of a fall
#: on points. Session 38: the rule changes of that session (tune exits 5 -> 4 with or without
#: the maps) and the fifty-ninth batch. Session 39: the wander grown up the lags no faster
#: than noise can (tune +2 found and in window, report +1), the sixtieth batch and the level
#: held for a quarter of a short run; the sixty-first batch (report exits +1). Session 40: the
#: sixty-second batch (two healthy logs, neither exits 3). Session 41: the grad-norm onset
#: and the burst peak (tune in window 117 -> 118, exits 4 -> 3; report in window 81 -> 82):
#: and the truncated share that rises from none to one in ten (tune and report +1 found
#: and in window). Session 42: the jump out of a drifted level and the stage cut at outliers
#: (tune in window 119 -> 120), the loss scaler's skipped steps (report exits 13 -> 12).
#: Session 50: a gain and a fall both under a twentieth of the reward's size are no
#: degradation (``rules.SLIGHT``; report 121 -> 120 found, an event that was found off its
#: window; tune unchanged). Session 54: the wander grown up the lags no faster than noise
#: can from what the shortest lag shows, and a decline with no start sized by its peak
#: (report found 120 -> 122, in window 87 -> 90, exits 12 -> 11; tune found 151 -> 152, in
#: window 122 -> 121, exits 3 -> 4). Session 55: the sixty-third to sixty-fifth batches
#: and the episode-length collapse (tune 159 of 196 found, 127 in window, 4 exits; report
#: 124 of 159, 92, 11: its found share 122/156 -> 124/159 is 0.002 lower): the floors below.
#: Session 56: the sixty-seventh to seventieth batches and the session's rules: tune 167 (134)
#: of 208, 4 exits; report 127 (94) of 163, 10 exits.
#: Session 57: the session's rules and the seventy-first to seventy-ninth batches: tune 175
#: (142) of 217, 4 exits; report 131 (98) of 167, 13 exits.
#: Session 58: the eightieth to eighty-fifth batches: tune 177 (144) of 220, 6 exits: its
#: found share 175/217 -> 177/220 is 0.002 lower, as the new jaxrl degradation is found only
#: through its map (its evaluation return's name is in no framework's table); the new drone
#: dip exits as it does with maps, and a flat TRL PPO CSV whose ``kl_divergence`` column (the
#: KL to the reference, 12-18 nats) reads as PPO's per-update approx KL without its map.
NO_MAP_FLOORS = [("tune", 177 / 220, 144 / 220, 6), ("report", 131 / 167, 98 / 167, 13)]


@pytest.fixture(scope="module")
def results_without_maps(tmp_path_factory):
    # its own import cache: these imports run with no metric map active (a TensorBoard CSV
    # export names its value through the table alone)
    mp = pytest.MonkeyPatch()
    mp.setenv("RLDK_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    bench = load_benchmark()
    yield bench, bench.run(("tune", "report"), maps=False)
    mp.undo()


@pytest.mark.parametrize("half, found, in_window, exit3", NO_MAP_FLOORS)
def test_detection_without_metric_maps_does_not_regress(results_without_maps, half, found, in_window, exit3):
    bench, res = results_without_maps
    s = bench.summary(res, half)
    assert s["found_share"] >= found - 1e-9 and s["in_window_share"] >= in_window - 1e-9, s
    assert s["healthy_exit3"] <= exit3, s


@pytest.mark.parametrize("half, found, exact, in_window, exit3, false_alarms", FLOORS)
def test_detection_does_not_regress(results, half, found, exact, in_window, exit3, false_alarms):
    bench, res = results
    s = bench.summary(res, half)
    assert s["found_share"] >= found - 1e-9 and s["exact_share"] >= exact - 1e-9, s
    assert s["in_window_share"] >= in_window - 1e-9, s
    # false alarms per healthy log: the target is 0.05; the report half is at 2 of
    # 32 since the fifteenth to seventeenth batches (0.034 before them), so its floor is
    # what was measured, not the target
    assert s["false_alarms_per_healthy"] <= max(false_alarms, 0.05) + 1e-9, s
    assert s["healthy_exit3"] <= exit3, s
