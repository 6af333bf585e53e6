"""The one analyzer interface. Every analysis is one subclass of :class:`Analyzer`.

An analyzer has a ``name`` (its cards' file stem and its key in the registry),
the event kinds it ``consumes``, a frozen ``Params`` dataclass whose fields are
documented with their defaults, ``applies(store)`` (whether the store holds what
it needs) and ``run(store, params) -> Result``, which only reads. The Result is a
frozen dataclass (``rldk.core.result.Result``) whose ``report()`` is a
:class:`rldk.core.report.Report`: findings, the checks that ran and those that
could not (with what to log), tables. Plots are separate: ``plots(result,
out_dir) -> {caption: png_path}``.

``defines_verdict`` says whether the analyzer's checks can make a whole
``rldk analyze`` conclusive: the run summary and the NaN scan describe what
is there, but a store where only they ran has not been checked for the
problems rldk exists to find, so its verdict is inconclusive (exit 4).

An analyzer that lacks the events it needs raises
:class:`rldk.core.errors.MissingEvents` naming what to log, or returns False from
``applies``; ``rldk analyze`` then lists it as skipped, with why.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from rldk.analyzers import _catalog


class Analyzer:
    """Base of every analysis (see the module docstring). Subclasses set the class
    attributes and implement ``run``; ``applies`` defaults to "the store has events
    of a kind in ``consumes``"."""

    name: ClassVar[str]
    title: ClassVar[str] = ""
    consumes: ClassVar[tuple[str, ...]] = ("metric",)
    Params: ClassVar[type]
    defines_verdict: ClassVar[bool] = True

    def applies(self, store) -> bool:
        return has_events(store, self.consumes)

    def run(self, store, params=None):
        raise NotImplementedError(f"{type(self).__name__}.run")

    def plots(self, result, out_dir) -> dict[str, str]:
        """PNG plots of ``result`` written into ``out_dir``: ``{caption: path}`` (none by default)."""
        return {}

    def params(self, **options):
        """Default ``Params`` with the ``options`` that name one of its fields (and are
        not None) set: how ``rldk analyze`` passes ``--baseline`` to the analyzers that
        take one."""
        fields = {f.name for f in dataclasses.fields(self.Params)}
        return self.Params(**{k: v for k, v in options.items() if k in fields and v is not None})

    def __repr__(self) -> str:
        return f"<analyzer {self.name}>"


def has_events(store, kinds) -> bool:
    """Whether ``store`` holds events of any of ``kinds``: from the store's catalog when
    ``rldk analyze`` has scanned it (``_catalog.warm``), else one ``LIMIT 1`` query."""
    catalog = _catalog.scanned(store)
    if catalog is not None:
        return bool(catalog.kinds & set(kinds))
    return not store.sql("SELECT 1 FROM events WHERE list_contains($kinds, kind) LIMIT 1",
                         {"kinds": list(kinds)}).is_empty()
