"""The environment audit: the training process's determinism settings, per replica.

Read from each run's ``run/start`` event, updated by later ``run/seed`` events
(``rldk.seed_everything`` records what it set), so it is the training process's
own state, not the harness's.
"""
from __future__ import annotations

import json

RUN_META_SQL = """
SELECT run_id, name, attrs
FROM run_events
WHERE name IN ('start', 'seed', 'seed_dataloader')
ORDER BY run_id, wall_time, seq
"""

#: (setting, how to read it from a run's merged metadata); ``t`` is the torch audit.
_AUDIT = (
    ("torch", lambda m, t: t.get("version")),
    ("CUDA", lambda m, t: t.get("cuda_version") if t.get("cuda_available") else "not used"),
    ("cuDNN", lambda m, t: (t.get("cudnn") or {}).get("version")),
    ("devices", lambda m, t: ", ".join(t.get("devices") or []) or "cpu"),
    ("deterministic_algorithms", lambda m, t: _det(t)),
    ("cudnn.deterministic", lambda m, t: (t.get("cudnn") or {}).get("deterministic")),
    ("cudnn.benchmark", lambda m, t: (t.get("cudnn") or {}).get("benchmark")),
    ("cudnn.allow_tf32", lambda m, t: (t.get("cudnn") or {}).get("allow_tf32")),
    ("cuda.matmul.allow_tf32", lambda m, t: t.get("cuda_matmul_allow_tf32")),
    ("float32_matmul_precision", lambda m, t: t.get("float32_matmul_precision")),
    ("CUBLAS_WORKSPACE_CONFIG", lambda m, t: _env(m, "CUBLAS_WORKSPACE_CONFIG")),
    ("PYTHONHASHSEED", lambda m, t: _hashseed(m)),
    ("TOKENIZERS_PARALLELISM", lambda m, t: _env(m, "TOKENIZERS_PARALLELISM")),
    ("seed", lambda m, t: m.get("seed")),
    ("seed_everything", lambda m, t: _seeding(m)),
    ("dataloader seeding", lambda m, t: _dataloader(m)),
    ("torch threads", lambda m, t: t.get("num_threads")),
    ("OMP_NUM_THREADS", lambda m, t: _env(m, "OMP_NUM_THREADS")),
    ("MKL_NUM_THREADS", lambda m, t: _env(m, "MKL_NUM_THREADS")),
    ("host", lambda m, t: (m.get("host") or {}).get("hostname")),
    ("packages", lambda m, t: ", ".join(f"{k} {v}" for k, v in sorted((m.get("packages") or {}).items()))),
)
UNSET = "unset"


def _det(t):
    if "deterministic_algorithms" not in t:
        return None
    on = t["deterministic_algorithms"]
    return ("on (warn only)" if t.get("deterministic_warn_only") else "on") if on else "off"


def _env(meta, key):
    return (meta.get("env") or {}).get(key, UNSET)


def _hashseed(meta):
    seeding = meta.get("seeding") or {}
    record = seeding.get("pythonhashseed")
    if record and record.get("this_process_randomized"):
        return "unset (random per process; seed_everything sets it for child processes only)"
    return _env(meta, "PYTHONHASHSEED")


def _seeding(meta):
    s = meta.get("seeding")
    if not s:
        return "not called"
    return f"seed {s.get('seed')}" + (", deterministic=True" if s.get("deterministic_requested") else "")


def _dataloader(meta):
    d = (meta.get("seeding") or {}).get("dataloader")
    if not d:
        return "not recorded"
    return f"generator seed {d.get('generator_seed')}, worker_init_fn {d.get('worker_init_fn')}"


def start_meta(store) -> dict[str, dict]:
    """run id -> its start attrs, updated by later ``seed`` events (flags set after init)."""
    out: dict[str, dict] = {}
    for row in store.sql(RUN_META_SQL).iter_rows(named=True):
        attrs = json.loads(row["attrs"]) if row["attrs"] else {}
        meta = out.setdefault(row["run_id"], {})
        if row["name"] == "start":
            if not meta:
                meta.update(attrs)
            continue
        seeding = {**(meta.get("seeding") or {}), **{k: v for k, v in attrs.items() if k != "torch"}}
        meta["seeding"] = seeding
        if attrs.get("torch"):
            meta["torch"] = attrs["torch"]
    return out


def environment_audit(store, run_ids: list[str]) -> list[dict]:
    """One row per setting: ``{"setting", "value", "values", "same", "note"}``.

    ``value`` is the common value (None when replicas differ; ``values`` then maps
    each replica to its own). Read from each run's ``run/start`` event, so it is the
    training process's own state.
    """
    metas = start_meta(store)
    rows = []
    for setting, read in _AUDIT:
        values = {}
        for rid in run_ids:
            meta = metas.get(rid, {})
            values[rid] = read(meta, meta.get("torch") or {}) if meta else None
        same = len({json.dumps(v, default=str) for v in values.values()}) == 1
        row = {"setting": setting, "value": next(iter(values.values())) if same else None,
               "values": values, "same": same}
        row["note"] = _audit_note(row, metas, run_ids)
        rows.append(row)
    return rows


def cuda_used(audit: list[dict]) -> bool:
    row = _row(audit, "CUDA")
    return row is not None and any(v not in (None, "not used") for v in row["values"].values())


def _row(audit, setting):
    return next((r for r in audit if r["setting"] == setting), None)


def _audit_note(row, metas, run_ids) -> str:
    if not row["same"]:
        return "differs between replicas"
    if all(not metas.get(r) for r in run_ids):
        return "no run/start event"
    return ""
