"""Live use: follow a store while runs write it, and guard a run from inside.

* :mod:`.tail` reads each committed segment of a growing store once (polling,
  so it works on network filesystems), surviving compaction, deletions,
  truncated and foreign files;
* :mod:`.state` keeps bounded per-run state (last values, sparklines, status);
* :mod:`.monitor` evaluates changed runs, throttled, with the same registered
  analyzers ``rldk analyze`` runs: a live finding has the code and onset step
  the finished store's analysis reports;
* :mod:`.worker` runs those analyzers in the process or, for ``rldk watch``, in a
  child process that ends when runs go quiet, so the watcher stays small;
* :mod:`.guards` runs a monitor on its own run inside the training process and
  warns, calls a hook or asks the run to stop;
* :mod:`.render`, :mod:`.follow`, :mod:`.notify` serve ``rldk watch``.
"""
from __future__ import annotations

from rldk.live.guards import Guard, Guards, Stop
from rldk.live.monitor import LIVE_ANALYZERS, Monitor
from rldk.live.state import LiveFinding

__all__ = ["Guard", "Guards", "LIVE_ANALYZERS", "LiveFinding", "Monitor", "Stop"]
