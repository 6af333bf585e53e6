"""The value types of the wandb stand-in: ``Table``, ``Histogram``, media placeholders,
``Artifact``, ``Settings`` and the errors code catches.

A ``Table`` logged with ``wandb.log({"samples": table})`` becomes ``sample`` events
(see :func:`rldk.converters.trl_completions.samples_table` for the columns it
recognises); a ``Histogram`` becomes ``<key>/min``, ``/max``, ``/mean``, ``/std``,
``/count`` metrics. Images, audio, video and HTML are accepted so code that builds
them keeps running, and counted, not stored.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

from rldk.compat._stats import stats_from_bins, value_stats


class Error(Exception):
    """Base of the errors ``wandb`` raises (code may catch ``wandb.Error``)."""


class ConfigError(Error):
    """``wandb.sdk.lib.config_util.ConfigError``: never raised here (config changes are allowed)."""


class Table:
    """``wandb.Table(columns=None, data=None, rows=None, dataframe=None)``.

    ``columns``: names; ``data`` (or ``rows``): a list of rows; ``dataframe``: a
    pandas DataFrame (its columns and rows). ``add_data(*row)`` appends a row.
    """

    def __init__(self, columns=None, data=None, rows=None, dataframe=None, dtype=None, optional=True,
                 allow_mixed_types=False, log_mode=None):
        if dataframe is not None:
            columns = [str(c) for c in dataframe.columns]
            data = [list(r) for r in dataframe.itertuples(index=False, name=None)]
        data = data if data is not None else rows
        self.data = [list(r) for r in (data or [])]
        width = len(self.data[0]) if self.data else 0
        self.columns = list(columns) if columns is not None else [f"Column_{i + 1}" for i in range(width)]

    def add_data(self, *values) -> None:
        if len(values) != len(self.columns):
            warnings.warn(f"wandb.Table.add_data: {len(values)} values for {len(self.columns)} columns; "
                          "the row is kept as given", RuntimeWarning, stacklevel=2)
        self.data.append(list(values))

    def add_column(self, name, data, optional=False) -> None:
        self.columns.append(name)
        for row, value in zip(self.data, data):
            row.append(value)

    def get_column(self, name, convert_to=None) -> list:
        i = self.columns.index(name)
        return [row[i] if i < len(row) else None for row in self.data]

    def get_dataframe(self):
        import pandas as pd

        return pd.DataFrame(self.data, columns=self.columns)

    @property
    def ncols(self) -> int:
        return len(self.columns)

    def __len__(self) -> int:
        return len(self.data)


class Histogram:
    """``wandb.Histogram(sequence=None, np_histogram=None, num_bins=64)``: logged as its
    summary statistics (``stats``); from ``np_histogram=(counts, edges)`` they are
    computed at the bin centres."""

    def __init__(self, sequence=None, np_histogram=None, num_bins=64):
        if sequence is not None:
            self.stats = value_stats(sequence)
        elif np_histogram is not None and len(np_histogram) == 2:
            self.stats = stats_from_bins(*np_histogram)
        else:
            self.stats = {}


class Media:
    """Placeholder of a wandb media object: accepted, counted, not stored."""

    def __init__(self, *args, **kwargs):
        pass


class Image(Media):
    pass


class Audio(Media):
    pass


class Video(Media):
    pass


class Html(Media):
    pass


class Object3D(Media):
    pass


class Plotly(Media):
    pass


class Settings:
    """``wandb.Settings(**options)``: kept, unused."""

    def __init__(self, **options):
        self.__dict__.update(options)


class Artifact:
    """``wandb.Artifact(name, type, description=None, metadata=None)``: ``run.log_artifact``
    records its name, type, metadata and file list as a ``run`` event named ``artifact``
    (the files themselves stay where they are)."""

    def __init__(self, name, type, description=None, metadata=None, **_options):
        self.name, self.type, self.description = name, type, description
        self.metadata = dict(metadata or {})
        self.files: list[str] = []

    def add_file(self, local_path, name=None, **_options):
        self.files.append(str(name or local_path))

    def add_dir(self, local_path, name=None, **_options):
        root = Path(local_path)
        prefix = f"{name}/" if name else ""
        self.files += [prefix + p.relative_to(root).as_posix() for p in sorted(root.rglob("*")) if p.is_file()]

    def add_reference(self, uri, name=None, **_options):
        self.files.append(str(name or uri))

    @contextlib.contextmanager
    def new_file(self, name, mode="x", encoding=None):
        self.files.append(str(name))
        yield io.BytesIO() if "b" in mode else io.StringIO()

    def to_attrs(self, aliases=None) -> dict:
        return {"name": self.name, "type": self.type, "description": self.description,
                "metadata": self.metadata, "files": self.files, "aliases": list(aliases or [])}
