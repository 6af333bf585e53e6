"""Where a store lives: a local directory or a prefix on object storage.

A store path is local unless it is a URL (``s3://bucket/prefix``, ``gs://...``,
any ``protocol://`` that fsspec knows; ``file://`` is local). Remote stores go
through fsspec, imported only when such a path is used, so ``import rldk`` stays
light; credentials come the standard way (for S3: ``AWS_*`` environment
variables, ``~/.aws``, instance roles; ``AWS_ENDPOINT_URL`` for an S3-compatible
server). A missing fsspec backend is one line naming the extra to install.

:class:`ObjectDir` is a folder on object storage: ``dir / name`` gives an object
URL, and it carries the filesystem. There is no rename on object stores: a file
is committed by one PUT of the complete object under its final name (multipart
for big ones, which the store shows only once complete), see
:mod:`rldk.core.segments`.
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rldk.core.errors import StoreError

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: protocol -> the pip extra (or package) that provides it
_EXTRAS = {"s3": "rldk[s3]", "s3a": "rldk[s3]", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs",
           "abfs": "adlfs", "abfss": "adlfs"}


def protocol(path) -> str | None:
    """The URL protocol of ``path`` (``s3``), or None for a local path (``file://`` too)."""
    if not isinstance(path, (str, ObjectDir)):
        return None
    match = _URL.match(str(path))
    if match is None or match.group(1).lower() == "file":
        return None
    return match.group(1).lower()


def is_remote(path) -> bool:
    """Whether ``path`` names object storage (any ``protocol://`` but ``file://``)."""
    return isinstance(path, ObjectDir) or protocol(path) is not None


def filesystem(proto: str):
    """The fsspec filesystem for ``proto`` (cached per process: a forked child gets its
    own client; configured from the environment)."""
    return _filesystem(proto, os.getpid())


@lru_cache(maxsize=8)
def _filesystem(proto: str, _pid: int):
    try:
        import fsspec
    except ImportError:
        raise StoreError(f"{proto}:// stores need fsspec: pip install {_EXTRAS.get(proto, 'fsspec')}") from None
    try:
        return fsspec.filesystem(proto)
    except (ImportError, ValueError) as exc:
        extra = _EXTRAS.get(proto)
        hint = f"pip install {extra}" if extra else f"install the fsspec backend for {proto}://"
        raise StoreError(f"{proto}:// stores need a filesystem that is not installed ({exc}): {hint}") from None


@dataclass(frozen=True)
class ObjectDir:
    """A folder (prefix) on object storage, e.g. ``s3://bucket/runs``."""

    url: str

    def __post_init__(self):
        object.__setattr__(self, "url", self.url.rstrip("/"))

    @property
    def protocol(self) -> str:
        return protocol(self.url)

    @property
    def fs(self):
        return filesystem(self.protocol)

    @property
    def key(self) -> str:
        """The path without the protocol (``bucket/runs``), as fsspec calls take it."""
        return strip(self.url)

    def __truediv__(self, name: str) -> str:
        return f"{self.url}/{name}"

    def __str__(self) -> str:
        return self.url

    def sub(self, *parts: str) -> "ObjectDir":
        return ObjectDir("/".join((self.url, *parts)))


def strip(url: str) -> str:
    """``url`` without its ``protocol://`` (fsspec paths)."""
    return _URL.sub("", str(url), count=1)


def url_of(proto: str, key: str) -> str:
    """The URL of fsspec path ``key`` on ``proto``."""
    return f"{proto}://{key}"


def location(path) -> Path | ObjectDir:
    """A store path as a local :class:`~pathlib.Path` or an :class:`ObjectDir` (``file://``
    URLs become paths). Never ``Path('s3://b')``, which would be a local folder ``s3:``."""
    if isinstance(path, (Path, ObjectDir)):
        return path
    text = str(path)
    if is_remote(text):
        return ObjectDir(text)
    if text.startswith("file://"):
        text = text[len("file://"):]
    return Path(text)


def open_binary(path: str):
    """A binary file object for reading a local path or an object URL."""
    proto = protocol(path)
    if proto is None:
        return open(path, "rb")
    return filesystem(proto).open(strip(path), "rb")


def register_filesystems(con, files) -> None:
    """Let the DuckDB connection ``con`` read the object URLs among ``files``: their
    fsspec filesystems are registered with it (DuckDB's own httpfs extension is not
    used: it is downloaded on first use, which offline machines cannot do)."""
    registered = set(con.list_filesystems()) if hasattr(con, "list_filesystems") else set()
    for proto in sorted({protocol(f) for f in files if is_remote(f)}):
        fs = filesystem(proto)
        if fs.protocol and any(p in registered for p in ([fs.protocol] if isinstance(fs.protocol, str)
                                                          else fs.protocol)):
            continue
        con.register_filesystem(fs)


def scratch_budget() -> int:
    """Bytes of local copies a command may make: half the free space of the temporary
    folder (``TMPDIR``)."""
    import shutil
    import tempfile

    return shutil.disk_usage(tempfile.gettempdir()).free // 2


@contextmanager
def local_copies(files, max_bytes: int | None = None):
    """``{object URL: local path}`` for the object URLs among ``files``, each fetched
    once, all concurrently (one GET an object, by fsspec's batched ``get``), into a
    temporary folder removed on exit; ``{}`` when every file is local, or when the
    objects come to more than ``max_bytes`` (sizes from the listing: then they are
    read where they are).

    A fleet task reads its run's objects this way: the analyzers' many queries then
    read local bytes instead of each reopening the objects through fsspec (a HEAD and
    ranged GETs per query, served by Python callbacks under the GIL).
    """
    remote = sorted({f for f in files if is_remote(f)})
    if not remote or (max_bytes is not None and _total_size(remote) > max_bytes):
        yield {}
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="rldk-objects-") as scratch:
        copies = {url: os.path.join(scratch, f"{i}.parquet") for i, url in enumerate(remote)}
        by_protocol: dict[str, list[str]] = {}
        for url in remote:
            by_protocol.setdefault(protocol(url), []).append(url)
        for proto, urls in by_protocol.items():
            fs = filesystem(proto)
            try:
                fs.get([strip(u) for u in urls], [copies[u] for u in urls])
            except FileNotFoundError:
                gone = next((u for u in urls if not fs.exists(strip(u))), urls[0])
                raise StoreError(f"{gone}: the object is gone (deleted or merged since the store "
                                 "was listed); run the command again") from None
        yield copies


def _total_size(urls) -> int:
    """Bytes of the objects ``urls`` (from the listing fsspec keeps; a HEAD where it has none)."""
    return sum(filesystem(protocol(u)).size(strip(u)) or 0 for u in urls)
