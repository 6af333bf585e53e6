"""Names inside an event store: run ids and segment files.

A store is a directory of Parquet segments, flat, so that ``runs/*.parquet`` is
always a valid input. Each file is named

    <run_id>.r<rank>.<session>.<index>.parquet   one flush of one writer session
    <run_id>.r<rank>.<session>.parquet           that session compacted at close
    <run_id>.compact-<token>.parquet             a whole run merged by ``rldk compact``

Files are written under a hidden temporary name and renamed into place, so a
reader never sees a partial file. Names carry no information readers need (every
row holds run_id and rank); they only keep writers from colliding.
"""
from __future__ import annotations

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
