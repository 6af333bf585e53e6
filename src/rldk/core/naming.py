"""Names inside an event store: run ids and segment files.

A store is a directory of Parquet segments, flat by default, so that
``runs/*.parquet`` is always a valid input. Each file is named

    <run_id>.r<rank>.<session>.<index>.parquet   one flush of one writer session
    <run_id>.r<rank>.<session>.parquet           that session compacted at close
    <run_id>.compact-<token>.parquet             a whole run merged by ``rldk compact``

The hive layout (``init(..., layout="hive")``) puts them in
``project=<project>/run_id=<run_id>/`` folders, so one run is one prefix.

Files are written under a hidden temporary name and renamed into place, so a
reader never sees a partial file. Names carry no information readers need (every
row holds run_id and rank); they only keep writers from colliding.

Hidden names never end in ``.parquet``: plain DuckDB and Polars globs
(``runs/*.parquet``) match dot-files too, so a hidden ``.x.parquet`` would be
counted. Temporaries end in ``.tmp``, merges waiting to be published in
``.merging`` (see :mod:`rldk.core.segments`), the store's lock file is ``.rldk.lock``.

Run ids and any other text read from files are untrusted: :func:`safe_file_stem`
turns them into file names that cannot leave a directory, and :func:`csv_cell`
into spreadsheet cells that cannot run as formulas.
"""
from __future__ import annotations

import glob
import hashlib
import os
import re
import time

from rldk.core.errors import InvalidRunId

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=@-]{0,199}")


def check_run_id(run_id: object) -> str:
    """Return ``run_id`` if it is a safe file-name stem, else raise :class:`InvalidRunId`.

    Allowed: 1-200 characters of letters, digits and ``._+=@-``, starting with a
    letter or digit. So ``../x``, ``a/b``, ``.hidden`` and empty ids are refused:
    no run id can name a path outside the store directory.
    """
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise InvalidRunId(
            f"invalid run id {run_id!r}: use 1-200 letters, digits or ._+=@- "
            "starting with a letter or digit (no '/' or '..')")
    return run_id


def check_project(project: object) -> str:
    """Return ``project`` (a hive layout folder, ``project=<project>``) if it is a safe
    name (the rules of :func:`check_run_id`), else raise :class:`InvalidRunId`."""
    if not isinstance(project, str) or not _RUN_ID.fullmatch(project) or ".." in project:
        raise InvalidRunId(f"invalid project {project!r}: use 1-200 letters, digits or ._+=@- "
                           "starting with a letter or digit (no '/' or '..')")
    return project


def new_session() -> str:
    """A token that keeps two writer sessions of one run (a resume, a rerun) apart."""
    return f"{time.time_ns() // 1_000_000:x}{os.getpid() % 0x10000:04x}{os.urandom(2).hex()}"


def segment_name(run_id: str, rank: int, session: str, index: int | None = None) -> str:
    """File name of one flushed segment, or of the session's compacted file (``index=None``)."""
    stem = f"{run_id}.r{rank}.{session}"
    return f"{stem}.parquet" if index is None else f"{stem}.{index:06d}.parquet"


def temp_name(final_name: str) -> str:
    """Hidden name a file is written under before it is renamed to ``final_name``."""
    return f".{final_name}.{os.getpid()}.tmp"


def is_visible_segment(file_name: str) -> bool:
    """True for complete segment files (not temporaries or hidden files)."""
    return file_name.endswith(".parquet") and not file_name.startswith(".")


LOCK_NAME = ".rldk.lock"
PENDING_SUFFIX = ".merging"
TEMP_SUFFIX = ".tmp"


def pending_name(final_name: str) -> str:
    """Hidden name of a merged file whose inputs are being deleted (published as ``final_name``)."""
    return f".{final_name}{PENDING_SUFFIX}"


def final_of_pending(pending: str) -> str:
    """``final_name`` of a :func:`pending_name`."""
    return pending[1:-len(PENDING_SUFFIX)]


def is_pending(file_name: str) -> bool:
    return file_name.startswith(".") and file_name.endswith(".parquet" + PENDING_SUFFIX)


def temp_pid(file_name: str) -> int | None:
    """The writing process id in a :func:`temp_name`, None for other names."""
    if not (file_name.startswith(".") and file_name.endswith(TEMP_SUFFIX)):
        return None
    pid = file_name[:-len(TEMP_SUFFIX)].rpartition(".")[2]
    return int(pid) if pid.isdigit() else None


def literal_pattern(path: str) -> str:
    """``path`` escaped so that DuckDB and ``glob`` match exactly that file (``exp[1]`` is
    not a character class; ``*`` and ``?`` in a name are letters)."""
    return glob.escape(str(path))


_UNSAFE_STEM = re.compile(r"[^A-Za-z0-9._+=@-]+")


def safe_file_stem(name: object, limit: int = 120) -> str:
    """A file-name stem for text read from data (a run id, a metric or analyzer name).

    Keeps letters, digits and ``._+=@-``; every other run of characters (``/``,
    ``\\``, NUL, spaces) becomes ``-``, runs of dots collapse to one and leading
    dots and dashes go, so the stem can never name a parent directory, a hidden file
    or an absolute path. Stems that had to change, or are too long, get a short hash
    of the original so two different names never share a file.
    """
    text = str(name)
    stem = re.sub(r"\.{2,}", ".", _UNSAFE_STEM.sub("-", text)).strip(".-")
    if stem == text and 0 < len(stem) <= limit:
        return stem
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{stem[:limit - 9] or 'x'}-{digest}"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A value for a CSV cell that a spreadsheet will not run as a formula.

    Text starting with ``= + - @``, TAB or CR gets a leading ``'`` (the OWASP advice);
    numbers stay numbers (``-0.5`` is a value, not text).
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
