"""Converters: bring logs written by other tools into an rldk event store.

    from rldk.converters import ingest, convert_path
    store = ingest("trl_outputs/")                  # auto-detects; a Store of the converted runs
    summary = convert_path("tb_logs/", "tensorboard", "store/")   # explicit format and store

Each format is one module with ``detect(path) -> bool``, ``read(path, **options)
-> list[RunData]`` and ``convert(path, writer_or_store, run_id=None) ->
ConvertSummary``. ``FORMATS`` lists them in auto-detection order: the specific
formats first (a TRL output directory also holds TensorBoard files, an OpenRLHF
log is a TensorBoard log with OpenRLHF's tags), the generic JSONL/CSV last.

Where converted runs go (``ingest``): ``store_dir`` when given; otherwise a cache
directory ``$RLDK_CACHE_DIR`` (default ``$XDG_CACHE_HOME/rldk/imports`` or
``~/.cache/rldk/imports``) in a folder named by a hash of the format, the
source's absolute path, the converter version and the size and modification time
of every file under it. An unchanged source is converted once and reused; a
changed one gets a new folder.

Run ids come from the source's path relative to the input (``run_a/checkpoint-200``
-> ``run_a``), with characters a run id cannot hold replaced by ``-``; runs are
written and returned sorted by that id.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import shutil
from pathlib import Path

from rldk.converters.base import (
    CONVERTER_VERSION,
    ConvertError,
    ConvertSummary,
    write_runs,
)
from rldk.core.errors import RldkError

__all__ = ["FORMATS", "ConvertError", "ConvertSummary", "detect_format", "convert_path", "ingest", "module"]

#: format name -> module, in auto-detection order.
FORMATS = {
    "trl": "rldk.converters.trl",
    "trl_completions": "rldk.converters.trl_completions",
    "mlflow": "rldk.converters.mlflow",
    "trackio": "rldk.converters.trackio",
    "sb3": "rldk.converters.sb3",
    "verl": "rldk.converters.verl",
    "hf_console": "rldk.converters.hf_console",
    "wandb": "rldk.converters.wandb_offline",
    "openrlhf": "rldk.converters.openrlhf",
    "tensorboard": "rldk.converters.tensorboard",
    "scalars_json": "rldk.converters.scalars_json",
    "jsonl": "rldk.converters.jsonl",
    "csv": "rldk.converters.csvlog",
}
ALIASES = {"console": "hf_console", "tb": "tensorboard", "csvlog": "csv", "stable-baselines3": "sb3", "ndjson": "jsonl"}
_MARKER = ".rldk-import.json"
log = logging.getLogger("rldk.converters")


def module(fmt: str):
    """The converter module of format ``fmt`` (UsageError-style ConvertError if unknown)."""
    name = ALIASES.get(fmt, fmt)
    if name not in FORMATS:
        from rldk.core.errors import UsageError

        raise UsageError(f"unknown format {fmt!r}: one of auto, {', '.join(FORMATS)}")
    return importlib.import_module(FORMATS[name])


def detect_format(path) -> str:
    """The first format in ``FORMATS`` whose ``detect`` accepts ``path``."""
    path = Path(path)
    if not path.exists():
        raise ConvertError(f"{path}: no such file or directory")
    for name in FORMATS:
        if module(name).detect(path):
            return name
    what = "directory" if path.is_dir() else "file"
    raise ConvertError(f"{path}: no known logs in this {what} (looked for {', '.join(FORMATS)}); "
                       "name the format: rldk import FORMAT PATH")


def convert_path(path, fmt: str | None, target, run_id: str | None = None, *, strict: bool = False,
                 progress=None, **options) -> ConvertSummary:
    """Read ``path`` as ``fmt`` (None or "auto": detect) and write its runs into ``target``
    (a store directory or an open EventWriter). ``options``: ``field_map`` (jsonl, csv),
    ``verify_crc`` (tensorboard, openrlhf)."""
    path = Path(path)
    fmt = detect_format(path) if fmt in (None, "auto") else ALIASES.get(fmt, fmt)
    mod = module(fmt)
    if not path.exists():
        raise ConvertError(f"{path}: no such file or directory")
    try:
        runs = mod.read(path, **options)
        summary = write_runs(runs, target, run_id, fmt, source=str(path), strict=strict, progress=progress)
    except (RldkError, MemoryError):
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError, UnicodeError,
            ArithmeticError, AttributeError, LookupError) as exc:
        # input no reader check anticipated (a value beyond int64 deep in a framework's
        # log, nesting past the recursion limit): one line naming the file, not a traceback
        raise ConvertError(f"{path}: cannot convert as {fmt}: {_describe(exc)}; the input is malformed "
                           "or unusual (please report it if the file is valid)") from None
    except OSError as exc:
        raise ConvertError(f"{path}: {exc.strerror or exc} while converting as {fmt}") from None
    log.info("converted %s as %s: %d runs, %d events", path, fmt, len(summary.runs), summary.rows)
    return summary


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:160] if str(exc) else ""
    if isinstance(exc, RecursionError):
        return "values nested too deeply"
    if isinstance(exc, OverflowError) or "out of bounds" in text or "too large" in text.lower():
        return f"a number does not fit a 64-bit integer ({text})"
    return f"{type(exc).__name__}: {text}"


def ingest(path, adapter: str | None = None, *, store_dir=None, strict: bool = False, **options):
    """Convert ``path`` (format ``adapter``, or auto-detected) and open the result as a Store.

    Without ``store_dir`` the converted store is cached (see the module docstring)
    and reused while the source is unchanged. The returned Store carries the
    conversion summary (as a dict, format included) in ``store.conversion``.
    """
    from rldk.core.store import open_store

    path = Path(path)
    fmt = detect_format(path) if adapter in (None, "auto") else ALIASES.get(adapter, adapter)
    module(fmt)
    if store_dir is not None:
        summary = convert_path(path, fmt, store_dir, strict=strict, **options).to_dict()
        store = open_store(store_dir)
    else:
        cache = _cache_dir(path, fmt, {"strict": strict, **options})
        summary = _cached_conversion(path, fmt, cache, strict, options)
        store = open_store(cache)
    store.conversion = summary
    if adapter in (None, "auto"):
        log.info("ingest %s: detected format %r", path, fmt)
    return store


def _cached_conversion(path: Path, fmt: str, cache: Path, strict: bool, options: dict) -> dict:
    marker = cache / _MARKER
    if marker.is_file():
        return json.loads(marker.read_text(encoding="utf-8"))
    tmp = cache.with_name(f"{cache.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        summary = convert_path(path, fmt, tmp, strict=strict, **options).to_dict()
        (tmp / _MARKER).write_text(json.dumps(summary, sort_keys=True), encoding="utf-8")
        try:
            os.replace(tmp, cache)
        except OSError:          # another process finished the same conversion first
            shutil.rmtree(tmp, ignore_errors=True)
            return json.loads(marker.read_text(encoding="utf-8"))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def cache_root() -> Path:
    """``$RLDK_CACHE_DIR``, else ``$XDG_CACHE_HOME/rldk/imports``, else ``~/.cache/rldk/imports``."""
    if os.environ.get("RLDK_CACHE_DIR"):
        return Path(os.environ["RLDK_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rldk" / "imports"


def _cache_dir(path: Path, fmt: str, options: dict) -> Path:
    """A folder named by a hash of everything that decides the conversion's output."""
    source = path.resolve()
    h = hashlib.sha256(json.dumps([CONVERTER_VERSION, fmt, str(source), options], sort_keys=True,
                                  default=str).encode())
    for entry in _fingerprint(source):
        h.update(entry.encode())
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in source.name)[:40] or "source"
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{fmt}-{stem}-{h.hexdigest()[:16]}"


def _fingerprint(source: Path):
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for f in files:
        st = f.stat()
        yield f"{f.relative_to(source) if f != source else f.name}\0{st.st_size}\0{st.st_mtime_ns}\n"
