"""How the live state is shown and sent: a rich view, a Report, JSON lines, a webhook.

Nothing here computes findings; it renders :class:`rldk.live.monitor.Monitor`
state. Text from logs (run ids, metric names, titles) goes into rich ``Text``
objects, never into markup.
"""
from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request

from rldk.core.report import Finding, Report, ReportTable
from rldk.live.state import LiveFinding

BLOCKS = "▁▂▃▄▅▆▇█"
STATE_STYLES = {"running": "green", "stalled": "yellow", "complete": "cyan", "failed": "red",
                "terminated": "red"}
#: Findings listed under the table of runs, newest last.
RECENT_FINDINGS = 12


def sparkline(values) -> str:
    """One block character per value, scaled to the values' own range ("·" for NaN/inf)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "·" * len(values)
    low, high = min(finite), max(finite)
    span = high - low
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append("·")
        else:
            out.append(BLOCKS[int((v - low) / span * (len(BLOCKS) - 1)) if span > 0 else 3])
    return "".join(out)


def _number(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else str(v)


def run_rows(monitor, now: float | None = None) -> list[tuple]:
    """``(run, state, step, events, errors, warnings, metrics)`` per run, sorted by id;
    metrics: ``[(quantity, metric, value, sparkline)]``."""
    now = time.time() if now is None else now
    rows = []
    for run_id in sorted(monitor.runs):
        s = monitor.runs[run_id]
        found = list(s.findings.values())
        metrics = [(q, m, v, sparkline(recent)) for q, m, v, recent in s.shown()]
        rows.append((run_id, s.state(now, monitor.stall_after), s.step, s.rows,
                     sum(f.severity == "error" for f in found),
                     sum(f.severity == "warning" for f in found), metrics))
    return rows


def rich_view(monitor, recent: list[LiveFinding], now: float | None = None) -> "LiveView":
    """The live terminal view: one row per run, then the latest findings."""
    return LiveView(monitor, recent, now)


class LiveView:
    """A rich renderable laid out for the console's width when drawn: run ids are
    not broken while they fit beside a readable metrics column, one line per shown
    metric with a sparkline as long as the width allows, and each recent finding
    with its onset step."""

    def __init__(self, monitor, recent: list[LiveFinding], now: float | None = None):
        self.rows = run_rows(monitor, now)
        self.runs = len(monitor.runs)
        self.recent = recent[-RECENT_FINDINGS:]

    def __rich_console__(self, console, options):
        yield self.table(options.max_width)
        yield from self.finding_lines()

    def table(self, width: int):
        from rich.table import Table
        from rich.text import Text

        metrics = [m for row in self.rows for m in row[6]]
        label = max([len(q) for q, *_ in metrics] + [0])
        value = max([len(_number(v)) for _q, _m, v, _s in metrics] + [0])
        run_width = min(max([len(r[0]) for r in self.rows] + [3]), max(width - 45, 12))
        step_width = max([len(str(r[2])) for r in self.rows] + [4])
        spare = width - run_width - STATE_WIDTH - step_width - 13    # 4 columns: 5 borders, 8 padding
        spark = min(SPARK_WIDTH, spare - label - value - 2)
        table = Table(title=f"rldk watch: {self.runs} run(s)", expand=False)
        table.add_column("run", overflow="fold", min_width=run_width)
        table.add_column("state", no_wrap=True, min_width=STATE_WIDTH)
        table.add_column("step", justify="right", no_wrap=True, min_width=step_width)
        table.add_column("metrics", overflow="fold")
        for run_id, state, step, _rows, errors, warns, shown in self.rows:
            status = Text(state, style=STATE_STYLES.get(state, ""))
            table.add_row(Text(run_id), Text("\n").join([status, *_counts(errors, warns)]),
                          "" if step is None else str(step), _metric_lines(shown, label, value, spark))
        return table

    def finding_lines(self):
        from rich.text import Text

        for f in self.recent:
            yield Text.assemble((f"{f.severity:<7} ", "red" if f.severity == "error" else "yellow"),
                                (f"{f.run_id} ", "bold"), f"step {f.onset}: ", f.title,
                                (f"  [{f.code}]", "dim"))


#: Width of the state column ("terminated", "2 warnings").
STATE_WIDTH = 10
#: Longest sparkline drawn (values kept per metric: rldk.live.state.SPARK_POINTS).
SPARK_WIDTH = 40


def _metric_lines(metrics, label: int, value: int, spark: int):
    from rich.text import Text

    out = Text()
    for i, (q, _m, v, line) in enumerate(metrics):
        if i:
            out.append("\n")
        out.append(f"{q:<{label}} ", style="bold").append(f"{_number(v):>{value}}")
        if spark >= 5:
            out.append(" ").append(line[-spark:], style="blue")
    return out


def _counts(errors: int, warns: int) -> list:
    """The state column's finding counts, one line each."""
    from rich.text import Text

    out = [Text(f"{errors} error" + "s" * (errors > 1), style="red")] if errors else []
    return out + ([Text(f"{warns} warning" + "s" * (warns > 1), style="yellow")] if warns else [])


def as_finding(f: LiveFinding) -> Finding:
    """A LiveFinding as a report :class:`Finding` (steps: onset to the step it was found at)."""
    last = f.at_step if f.at_step is not None else f.onset
    steps = (f.onset, max(last, f.onset)) if f.onset is not None else None
    return Finding(f.code, f.severity, f.title, f.run_id, f.metric, steps,
                   {"analyzer": f.analyzer, "onset": f.onset}, f.fix)


def report(monitor, now: float | None = None) -> Report:
    """The current state as one Report (``rldk watch --once``): the runs, their state
    and shown metrics, and every current finding."""
    findings = tuple(as_finding(f) for f in monitor.findings())
    rows = tuple((run_id, state, step, events, errors, warns,
                  "  ".join(f"{q}={_number(v)}" for q, _m, v, _s in metrics))
                 for run_id, state, step, events, errors, warns, metrics in run_rows(monitor, now))
    stalled = [r[0] for r in rows if r[1] == "stalled"]
    summary = (f"{len(rows)} run(s), {len(findings)} finding(s)"
               + (f"; stalled: {', '.join(stalled)}" if stalled else ""))
    return Report("watch", "rldk watch", "problems" if findings else "ok", summary, findings,
                  (ReportTable("Runs", ("run", "state", "step", "events", "errors", "warnings",
                                        "metrics"), rows),),
                  {"runs": [{"run_id": r[0], "state": r[1], "step": r[2]} for r in rows]})


def json_line(f: LiveFinding) -> str:
    """One finding as a JSON line (sorted keys)."""
    return json.dumps(f.to_dict(), sort_keys=True)


def post(url: str, f: LiveFinding, timeout: float = 5.0) -> str | None:
    """POST one finding as JSON to ``url``; None on success, else why it failed (one line)."""
    request = urllib.request.Request(url, data=json_line(f).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"webhook {url}: {getattr(exc, 'reason', None) or exc}"
    return None
