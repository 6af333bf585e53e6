"""One self-contained HTML report: overview, findings, every card, interactive curves.

The page needs no network: styles and the small chart code are inline. Everything
taken from logs (run ids, metric names, sample text, finding titles) reaches the
page either escaped by :func:`html.escape` or as JSON read by the script with
``JSON.parse`` and put into the DOM with ``textContent`` only, never as markup.
Curves longer than ``max_points`` are downsampled to the min and max of each
step bucket, which keeps every spike, and the plot says so.
"""
from __future__ import annotations

import html
import json
import math
import time
from dataclasses import dataclass

from rldk import __version__, semantics
from rldk.core.render import RUN_COLUMNS, run_rows
from rldk.core.report import SEVERITIES, Report, merge_duplicates

#: quantities (``rldk.semantics``) whose curves are shown first, under each run's own names
PREFERRED = ("reward", "kl_to_ref", "loss", "grad_norm", "entropy", "response_length", "lr")

CURVE_SQL = """
WITH m AS (
    SELECT run_id, step, value FROM metrics
    WHERE name = ? AND step IS NOT NULL AND value IS NOT NULL AND isfinite(value)
), span AS (SELECT min(step) AS lo, greatest(max(step) - min(step), 1) AS width FROM m)
SELECT run_id,
       CAST(floor((step - span.lo) * ? / (span.width + 1)) AS BIGINT) AS bucket,
       arg_min(step, value) AS min_step, min(value) AS min_value,
       arg_max(step, value) AS max_step, max(value) AS max_value,
       count(*) AS n
FROM m, span
GROUP BY run_id, bucket
ORDER BY run_id, bucket
"""

STEP_COUNT_SQL = "SELECT run_id, count(*) AS n FROM metrics WHERE name = ? AND step IS NOT NULL GROUP BY 1"
RAW_SQL = """
SELECT run_id, step, value FROM metrics
WHERE name = ? AND step IS NOT NULL AND value IS NOT NULL AND isfinite(value)
ORDER BY run_id, step, seq
"""


@dataclass(frozen=True)
class Curve:
    """One metric across runs: ``series`` run_id -> [[step, value], ...] (ascending steps)."""

    metric: str
    series: dict
    downsampled: bool
    markers: tuple       # (step, label) pairs from findings on this metric

    def to_dict(self) -> dict:
        return {"metric": self.metric, "series": self.series, "downsampled": self.downsampled,
                "markers": [list(m) for m in self.markers]}


def curve(store, metric: str, max_points: int = 1000, markers=()) -> Curve:
    """Points of ``metric`` for every run, at most ``2 * max_points`` per run."""
    longest = max((n for _, n in store.rows(STEP_COUNT_SQL, [metric])), default=0)
    series: dict = {}
    if longest <= 2 * max_points:
        for run_id, step, value in store.rows(RAW_SQL, [metric]):
            series.setdefault(run_id, []).append([step, value])
        return Curve(metric, series, False, tuple(markers))
    for run_id, _, s1, v1, s2, v2, _n in store.rows(CURVE_SQL, [metric, max_points]):
        points = sorted({(s1, v1), (s2, v2)})
        series.setdefault(run_id, []).extend([list(p) for p in points])
    return Curve(metric, series, True, tuple(markers))


def choose_metrics(store, reports, limit: int = 24) -> list[str]:
    """Metrics named by findings first, then the usual RL signals, then the rest, alphabetically."""
    names = [r[0] for r in store.rows("SELECT DISTINCT name FROM metrics ORDER BY 1")]
    flagged = [f.metric for rep in reports for f in rep.findings if f.metric in names]
    usual = [n for q in PREFERRED if (n := semantics.resolve_name(q, names)) is not None]
    ordered = list(dict.fromkeys(flagged + usual + names))
    return ordered[:limit]


def markers_for(reports, metric: str) -> list[tuple[int, str]]:
    """Steps where findings on ``metric`` start, labelled with the finding's code."""
    out = []
    for rep in reports:
        for f in rep.findings:
            if f.steps is not None and f.metric in (metric, None) and f.is_problem:
                out.append((int(f.steps[0]), f.code))
    return sorted(set(out))[:8]


def report_data(store, reports: list[Report], max_points: int = 1000, title: str | None = None) -> dict:
    """Everything the page shows, as JSON-ready data: the runs (``RUN_COLUMNS``), the
    findings (a problem several analyzers found once: ``merge_duplicates``), every card,
    the curves."""
    sourced = merge_duplicates((r.analyzer, f) for r in reports for f in r.findings)
    findings = [dict(f.to_dict(), analyzer=" + ".join(a)) for a, f in sourced]
    findings.sort(key=lambda f: (-SEVERITIES.index(f["severity"]), f["analyzer"], f["code"]))
    metrics = choose_metrics(store, reports)
    return {
        "title": title or "rldk report",
        "generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "version": __version__,
        "runs": {"columns": list(RUN_COLUMNS), "rows": [[_plain(v) for v in row]
                                                         for row in run_rows(store.summary_rows())]},
        "findings": findings,
        "cards": [r.to_dict() for r in reports],
        "curves": [curve(store, m, max_points, markers_for(reports, m)).to_dict() for m in metrics],
        "max_points": max_points,
    }


def _plain(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "isoformat"):
        return v.isoformat(sep=" ", timespec="seconds")
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _json_for_script(data) -> str:
    """JSON safe inside <script type="application/json">: no '</script>' can close it."""
    text = json.dumps(data, default=str, allow_nan=False, separators=(",", ":"), sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(data: dict) -> str:
    """The page for :func:`report_data`'s output."""
    e = html.escape
    counts = {s: sum(f["severity"] == s for f in data["findings"]) for s in SEVERITIES}
    return _PAGE.format(
        title=e(data["title"]), generated=e(data["generated"]), version=e(data["version"]),
        n_runs=len(data["runs"]["rows"]), n_err=counts["error"], n_warn=counts["warning"], n_info=counts["info"],
        data=_json_for_script(data), style=_STYLE, script=_SCRIPT)


def write_html(store, reports, path, max_points: int = 1000, title: str | None = None) -> str:
    """Write the report for ``reports`` over ``store`` to ``path``; returns the path."""
    from pathlib import Path

    page = render_html(report_data(store, list(reports), max_points, title))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(page, encoding="utf-8")
    return str(path)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>{title}</title><style>{style}</style></head>
<body>
<header><h1>{title}</h1>
<p class="meta">rldk {version} &middot; generated {generated} &middot; {n_runs} run(s) &middot;
<span class="sev-error">{n_err} error(s)</span> &middot; <span class="sev-warning">{n_warn} warning(s)</span>
&middot; {n_info} note(s)</p></header>
<nav><a href="#overview">Runs</a><a href="#findings">Findings</a><a href="#curves">Curves</a><a href="#cards">Cards</a></nav>
<section id="overview"><h2>Runs</h2><div id="runs-table"></div></section>
<section id="findings"><h2>Findings</h2><div id="findings-list"></div></section>
<section id="curves"><h2>Curves</h2>
<p class="hint">Drag across a plot to zoom, double-click to reset; markers show where findings start.</p>
<div id="curve-grid"></div></section>
<section id="cards"><h2>Cards</h2><div id="card-list"></div></section>
<script type="application/json" id="rldk-data">{data}</script>
<script>{script}</script>
</body></html>
"""

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
.meta{margin:0;color:#c9d1e0}nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #dde1e8;padding:8px 28px;z-index:2}
nav a{margin-right:18px;color:#2f5fd0;text-decoration:none;font-weight:600}
section{padding:8px 28px 20px}h2{font-size:18px;border-bottom:2px solid #dde1e8;padding-bottom:4px}
table{border-collapse:collapse;background:#fff;font-size:13px;margin:6px 0 14px}
th,td{border:1px solid #dde1e8;padding:4px 8px;text-align:left;vertical-align:top;max-width:520px;overflow-wrap:break-word}
th{white-space:nowrap}td.id{white-space:nowrap}.scroll{overflow-x:auto;max-width:100%}
th{background:#eef1f6}.sev-error{color:#c62828;font-weight:700}.sev-warning{color:#b26a00;font-weight:700}.sev-info{color:#2f5fd0}
.finding{background:#fff;border-left:4px solid #999;padding:8px 12px;margin:8px 0;border-radius:3px}
.finding.error{border-color:#c62828}.finding.warning{border-color:#e09000}.finding.info{border-color:#2f5fd0}
.finding .title{font-weight:600}.finding .fix{color:#2e6b2e}.finding pre{background:#f3f4f7;padding:6px;overflow:auto;max-height:160px;margin:6px 0 0}
#curve-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:14px}
.plot{background:#fff;border:1px solid #dde1e8;border-radius:4px;padding:8px}
.plot h3{margin:0 0 4px;font-size:14px;overflow-wrap:break-word}.plot canvas{width:100%;height:240px;cursor:crosshair}
.plot .note{font-size:12px;color:#666}.legend span{margin-right:12px;font-size:12px}
.zoom{font-size:12px;margin:2px 6px 0 0}.tip{position:fixed;pointer-events:none;background:#1d2330;color:#fff;padding:3px 7px;border-radius:3px;font-size:12px;display:none;z-index:5}
.card{background:#fff;border:1px solid #dde1e8;border-radius:4px;padding:10px 14px;margin:12px 0}
.card h3{margin:0 0 4px}.status-ok{color:#2e7d32}.status-problems{color:#c62828}.status-skipped{color:#8a6d00}
.status-inconclusive{color:#8a6d00;font-weight:bold}.card.inconclusive{border-color:#e0b400;background:#fffbe6}
.skipped-checks{color:#6b5500}
.hint{color:#666;font-size:12px;margin:0 0 8px}
"""

_SCRIPT = r"""
"use strict";
const DATA = JSON.parse(document.getElementById("rldk-data").textContent);
const COLORS = ["#2f5fd0","#d0452f","#2e8b57","#8e44ad","#e09000","#16a0a0","#7f6a00","#c2185b"];
function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}
function fmt(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(5);
  if (Array.isArray(v)) return v.map(fmt).join(", ");
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}
const LIST_SHOWN = 3;
function cell(v, first) {
  // the first column is the row's id: never wrapped; a long list shows its count (all on hover)
  const long = Array.isArray(v) && v.length > LIST_SHOWN;
  const td = el("td", first ? {class: "id"} : {}, long ? v.length + " items" : fmt(v));
  if (long) td.setAttribute("title", fmt(v));
  return td;
}
function table(columns, rows) {
  const t = el("table"), head = el("tr");
  columns.forEach(c => head.appendChild(el("th", {}, String(c).replace(/_/g, " "))));
  t.appendChild(head);
  rows.forEach(r => { const tr = el("tr"); r.forEach((c, i) => tr.appendChild(cell(c, i === 0))); t.appendChild(tr); });
  const box = el("div", {class: "scroll"});
  box.appendChild(t);
  return box;
}
function renderRuns() {
  const box = document.getElementById("runs-table");
  if (!DATA.runs.rows.length) { box.appendChild(el("p", {}, "No runs.")); return; }
  box.appendChild(table(DATA.runs.columns, DATA.runs.rows));
}
function findingNode(f) {
  const d = el("div", {class: "finding " + f.severity});
  const head = el("div", {class: "title"});
  head.appendChild(el("span", {class: "sev-" + f.severity}, f.severity.toUpperCase() + " "));
  head.appendChild(el("span", {}, f.title));
  d.appendChild(head);
  const where = [f.analyzer, f.code, f.run_id && ("run " + f.run_id), f.metric && ("metric " + f.metric),
                 f.steps && ("steps " + f.steps[0] + "-" + f.steps[1])].filter(Boolean).join(" · ");
  d.appendChild(el("div", {class: "note"}, where));
  if (f.fix) d.appendChild(el("div", {class: "fix"}, "Fix: " + f.fix));
  if (f.evidence && Object.keys(f.evidence).length) d.appendChild(el("pre", {}, JSON.stringify(f.evidence, null, 1)));
  return d;
}
function renderFindings() {
  const box = document.getElementById("findings-list");
  if (!DATA.findings.length) box.appendChild(el("p", {}, "No findings: every analyzer that ran found nothing wrong."));
  DATA.findings.forEach(f => box.appendChild(findingNode(f)));
}
function renderCards() {
  const box = document.getElementById("card-list");
  DATA.cards.forEach(c => {
    const d = el("div", {class: "card" + (c.status === "inconclusive" ? " inconclusive" : ""),
                         id: "card-" + c.analyzer});
    const h = el("h3", {}, c.title + " ");
    h.appendChild(el("span", {class: "status-" + c.status}, "[" + c.status + "]"));
    d.appendChild(h);
    d.appendChild(el("p", {}, c.summary));
    const skipped = (c.checks || []).filter(k => k.status !== "ran");
    if (c.status === "inconclusive")
      d.appendChild(el("p", {class: "status-inconclusive"},
                       "Inconclusive: the checks that define this analysis could not run."));
    if (skipped.length) {
      d.appendChild(el("h4", {}, "Checks that could not run"));
      d.appendChild(table(["check", "run", "why / what to log"],
                          skipped.slice(0, 200).map(k => [k.name, k.run_id || "", k.detail])));
    }
    c.findings.forEach(f => d.appendChild(findingNode(Object.assign({analyzer: c.analyzer}, f))));
    c.tables.forEach(t => { d.appendChild(el("h4", {}, t.name)); d.appendChild(table(t.columns, t.rows.slice(0, 200))); });
    box.appendChild(d);
  });
}
const tip = el("div", {class: "tip"});
document.body.appendChild(tip);
function Plot(box, curve) {
  this.curve = curve; this.canvas = el("canvas"); box.appendChild(this.canvas);
  const all = Object.values(curve.series).flat();
  this.full = [Math.min(...all.map(p => p[0])), Math.max(...all.map(p => p[0]))];
  if (this.full[0] === this.full[1]) this.full[1] += 1;
  this.view = this.full.slice();
  const self = this; let dragFrom = null;
  this.canvas.addEventListener("mousedown", ev => { dragFrom = self.stepAt(ev); });
  this.canvas.addEventListener("mouseup", ev => {
    const to = self.stepAt(ev);
    if (dragFrom !== null && Math.abs(to - dragFrom) > (self.view[1] - self.view[0]) / 200) {
      self.view = [Math.min(dragFrom, to), Math.max(dragFrom, to)]; self.draw();
    }
    dragFrom = null;
  });
  this.canvas.addEventListener("dblclick", () => { self.view = self.full.slice(); self.draw(); });
  this.canvas.addEventListener("mousemove", ev => self.hover(ev));
  this.canvas.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  window.addEventListener("resize", () => self.draw());
}
Plot.prototype.geometry = function () {
  const r = this.canvas.getBoundingClientRect();
  return {w: r.width, h: r.height, left: 56, right: 10, top: 8, bottom: 24, rect: r};
};
Plot.prototype.stepAt = function (ev) {
  const g = this.geometry(), x = ev.clientX - g.rect.left;
  return this.view[0] + (x - g.left) / (g.w - g.left - g.right) * (this.view[1] - this.view[0]);
};
Plot.prototype.visible = function () {
  const [a, b] = this.view, out = {};
  for (const [run, pts] of Object.entries(this.curve.series)) out[run] = pts.filter(p => p[0] >= a && p[0] <= b);
  return out;
};
Plot.prototype.draw = function () {
  const g = this.geometry(), dpr = window.devicePixelRatio || 1, c = this.canvas;
  c.width = g.w * dpr; c.height = g.h * dpr;
  const ctx = c.getContext("2d"); ctx.scale(dpr, dpr); ctx.clearRect(0, 0, g.w, g.h);
  const vis = this.visible(), vals = Object.values(vis).flat().map(p => p[1]);
  let lo = vals.length ? Math.min(...vals) : 0, hi = vals.length ? Math.max(...vals) : 1;
  if (lo === hi) { lo -= 1; hi += 1; }
  const pad = (hi - lo) * 0.05; lo -= pad; hi += pad;
  const X = s => g.left + (s - this.view[0]) / (this.view[1] - this.view[0]) * (g.w - g.left - g.right);
  const Y = v => g.top + (1 - (v - lo) / (hi - lo)) * (g.h - g.top - g.bottom);
  this.X = X; this.Y = Y;
  ctx.strokeStyle = "#ccd"; ctx.fillStyle = "#555"; ctx.font = "11px sans-serif"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4, y = Y(v);
    ctx.beginPath(); ctx.moveTo(g.left, y); ctx.lineTo(g.w - g.right, y); ctx.stroke();
    ctx.fillText(fmt(v), 2, y + 4);
    const s = this.view[0] + (this.view[1] - this.view[0]) * i / 4;
    ctx.fillText(String(Math.round(s)), X(s) - 10, g.h - 6);
  }
  Object.entries(vis).forEach(([run, pts], i) => {
    ctx.strokeStyle = COLORS[i % COLORS.length]; ctx.lineWidth = 1.4; ctx.beginPath();
    pts.forEach((p, j) => j ? ctx.lineTo(X(p[0]), Y(p[1])) : ctx.moveTo(X(p[0]), Y(p[1])));
    ctx.stroke();
  });
  ctx.strokeStyle = "#c62828"; ctx.setLineDash([4, 3]); ctx.fillStyle = "#c62828";
  this.curve.markers.forEach(([step, label]) => {
    if (step < this.view[0] || step > this.view[1]) return;
    ctx.beginPath(); ctx.moveTo(X(step), g.top); ctx.lineTo(X(step), g.h - g.bottom); ctx.stroke();
    ctx.fillText(label + " @" + step, X(step) + 3, g.top + 10);
  });
  ctx.setLineDash([]);
};
Plot.prototype.hover = function (ev) {
  if (!this.X) return;
  const g = this.geometry(), x = ev.clientX - g.rect.left, y = ev.clientY - g.rect.top;
  let best = null;
  for (const [run, pts] of Object.entries(this.visible())) for (const p of pts) {
    const d = Math.hypot(this.X(p[0]) - x, this.Y(p[1]) - y);
    if (!best || d < best.d) best = {d, run, p};
  }
  if (!best || best.d > 30) { tip.style.display = "none"; return; }
  tip.textContent = best.run + " · step " + best.p[0] + " · " + fmt(best.p[1]);
  tip.style.left = (ev.clientX + 12) + "px"; tip.style.top = (ev.clientY + 12) + "px"; tip.style.display = "block";
};
function renderCurves() {
  const grid = document.getElementById("curve-grid");
  if (!DATA.curves.length) grid.appendChild(el("p", {}, "No metric events to plot."));
  DATA.curves.forEach(curve => {
    if (!Object.keys(curve.series).length) return;
    const box = el("div", {class: "plot"});
    box.appendChild(el("h3", {}, curve.metric));
    const legend = el("div", {class: "legend"});
    Object.keys(curve.series).forEach((run, i) => legend.appendChild(el("span", {style: "color:" + COLORS[i % COLORS.length]}, "■ " + run)));
    box.appendChild(legend);
    grid.appendChild(box);
    const plot = new Plot(box, curve);
    curve.markers.forEach(([step, label]) => {
      const b = el("button", {class: "zoom"}, "zoom to " + label + " @" + step);
      b.addEventListener("click", () => {
        const w = Math.max(10, (plot.full[1] - plot.full[0]) / 20);
        plot.view = [step - w, step + w]; plot.draw();
      });
      box.appendChild(b);
    });
    if (curve.downsampled) box.appendChild(el("div", {class: "note"}, "Downsampled: min and max of each of " + DATA.max_points + " step buckets (spikes kept)."));
    plot.draw();
  });
}
renderRuns(); renderFindings(); renderCurves(); renderCards();
document.body.setAttribute("data-rendered", "1");
"""
