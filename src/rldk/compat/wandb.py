"""A ``wandb`` stand-in that writes to an rldk event store: change one import.

    import rldk.compat.wandb as wandb            # was: import wandb
    wandb.init(project="ppo", name="seed1", config={"lr": 1e-5})
    wandb.log({"actor/entropy": 1.2, "critic/score/mean": 0.4}, step=10)
    wandb.log({"samples": wandb.Table(columns=["prompt", "completion", "reward"], data=rows)})
    wandb.summary["best_reward"] = 0.9
    wandb.finish()

Where the run goes: the store directory is ``RLDK_DIR``, else ``dir=``, else
``rldk_runs``; the run id is ``RLDK_RUN_ID``, else ``name=``, else ``id=``, else
``<script>-<time>`` (characters a run id cannot hold become ``-``). ``config``
goes into the run's ``start`` event; later config changes are ``run`` events named
``config``; project, group, tags and notes are a ``run`` event named ``wandb``.

What is recorded (see :mod:`rldk.compat._wandb_run` for the step rules): numbers
as ``metric`` events with their names (nested dicts as ``outer/inner``); a
``Table`` as ``sample`` events; a ``Histogram``, list or array as
``<key>/min|max|mean|std|count`` metrics; an explicitly set ``summary`` value as a
step-less metric with ``attrs.summary = true`` at ``finish``. Media, ``watch``,
``save`` and ``login`` are accepted and do nothing; nothing is sent anywhere.

Code that does ``import wandb`` itself (transformers' and TRL's
``report_to="wandb"``, any library) uses the stand-in after :func:`install`,
which puts this module in ``sys.modules["wandb"]`` until :func:`uninstall`. Call
it before importing those libraries: a module that imported the real wandb
earlier keeps it. For processes you do not start yourself (Ray workers,
DeepSpeed ranks), put ``python -m rldk.compat shim-path`` on ``PYTHONPATH``
instead: ``import wandb`` then loads this module in every one of them.
"""
from __future__ import annotations

import sys
import time
import types
import warnings
from pathlib import Path
from types import SimpleNamespace

from rldk.compat._wandb_run import Config, Run, Summary, as_dict
from rldk.compat._wandb_types import (
    Artifact,
    Audio,
    ConfigError,
    Error,
    Histogram,
    Html,
    Image,
    Object3D,
    Plotly,
    Settings,
    Table,
    Video,
)
from rldk.converters.base import run_id_for
from rldk.writer import EventWriter, RldkWarning

__all__ = ["init", "log", "finish", "define_metric", "watch", "unwatch", "login", "save", "alert",
           "log_artifact", "termlog", "termwarn", "termerror", "install", "uninstall", "run", "config",
           "summary", "Table", "Histogram", "Image", "Audio", "Video", "Html", "Object3D", "Plotly",
           "Artifact", "Settings", "Error", "ConfigError"]

__version__ = "0.0.0+rldk"

#: the active run (None before ``init`` and after ``finish``), as ``wandb.run``
run: Run | None = None
#: the active run's config and summary (placeholders before ``init``)
config = Config()
summary = Summary()
#: OpenRLHF checks ``wandb.api.api_key`` before calling ``login``
api = SimpleNamespace(api_key="rldk-local")

_STATE: dict = {"saved": None}


def init(project=None, name=None, config=None, dir=None, id=None, group=None, tags=None, notes=None,
         job_type=None, entity=None, reinit=None, resume=None, settings=None, mode=None, **_options) -> Run:
    """Start a run (see the module docstring for where it goes). A second ``init`` while a
    run is active returns that run, its config updated; with ``reinit=True`` (or
    ``"finish_previous"``, ``"create_new"``) it finishes it and starts a new one."""
    global run
    if run is not None:
        if reinit in (None, False, "default", "return_previous"):
            run.config.update(as_dict(config))
            return run
        finish()
    writer = EventWriter(dir, _run_id(name, id), config=as_dict(config))
    active = Run(writer, name=name, project=project, group=group, tags=tags, notes=notes, job_type=job_type,
                 entity=entity, config=as_dict(config))
    _bind(active)
    return active


def _run_id(name, run_id) -> str:
    """``name``, else ``id``, else ``<script>-<time>``, made a valid run id."""
    script = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] not in ("", "-c") else "run"
    given = name or run_id or f"{script}-{time.strftime('%Y%m%d-%H%M%S')}"
    return run_id_for(str(given), None, True)


def _bind(active: Run | None) -> None:
    """Point the module attributes ``run``, ``config``, ``summary`` at ``active``."""
    module = sys.modules[__name__]
    module.run = active
    module.config = active.config if active is not None else Config()
    module.summary = active.summary if active is not None else Summary()


def _active() -> Run:
    """The active run; a call before ``init`` starts one, as ``rldk.writer.log`` does."""
    if run is None:
        started = init()
        warnings.warn(f"rldk.compat.wandb: wandb.init() was not called: writing run {started.id!r} "
                      f"to {started.dir}", RldkWarning, stacklevel=3)
    return run


def log(data=None, step=None, commit=None, sync=None) -> None:
    """``wandb.log(data, step=None, commit=None)``: see :meth:`Run.log`."""
    _active().log(data, step=step, commit=commit)


def define_metric(name, step_metric=None, step_sync=None, hidden=None, summary=None, goal=None,
                  overwrite=None, **options):
    """``wandb.define_metric``: a ``step_metric`` becomes the rldk step of the matching keys."""
    return _active().define_metric(name, step_metric, step_sync, hidden, summary, goal, overwrite, **options)


def finish(exit_code=None, quiet=None) -> None:
    """Write the summary, close the run's writer and clear ``wandb.run``."""
    if run is not None:
        active = run
        _bind(None)
        active.finish(exit_code)


def watch(models=None, *args, **kwargs) -> None:
    """Does nothing but warn once (``rldk.writer.log_tensors`` records parameter checksums)."""
    if run is not None:
        run.watch()
    else:
        warnings.warn("rldk.compat.wandb: wandb.watch does nothing under rldk", RldkWarning, stacklevel=2)


def unwatch(models=None) -> None:
    return None


def login(*args, **kwargs) -> bool:
    """Nothing to log in to: rldk writes locally."""
    return True


def save(*args, **kwargs) -> bool:
    return True


def alert(title, text, level=None, wait_duration=None) -> None:
    """Recorded as a ``run`` event named ``alert``."""
    _active().alert(title, text, level, wait_duration)


def log_artifact(artifact, name=None, type=None, aliases=None, **options):
    """Recorded as a ``run`` event named ``artifact`` (name, type, metadata, file list)."""
    return _active().log_artifact(artifact, name, type, aliases, **options)


def termlog(string="", newline=True, repeat=True, prefix=True) -> None:
    print(f"rldk.compat.wandb: {string}" if prefix else string, file=sys.stderr, end="\n" if newline else "")


def termwarn(string, repeat=True, **kwargs) -> None:
    termlog(f"WARNING {string}")


def termerror(string, repeat=True, **kwargs) -> None:
    termlog(f"ERROR {string}")


# ------------------------------------------------------------------ import wandb
_SUBMODULES = ("wandb.sdk", "wandb.sdk.lib", "wandb.sdk.lib.config_util")


def install() -> None:
    """Make ``import wandb`` load this stand-in in this process, until :func:`uninstall`.

    Also provides ``wandb.sdk.lib.config_util.ConfigError`` (transformers imports it).
    Modules that imported the real wandb before this call keep it: install first.
    """
    this = sys.modules[__name__]
    if sys.modules.get("wandb") is this:
        return
    _STATE["saved"] = {n: sys.modules.get(n) for n in ("wandb", *_SUBMODULES)}
    previous = _STATE["saved"]["wandb"]
    if previous is not None and not getattr(previous, "__rldk_shim__", False):
        warnings.warn("rldk.compat.wandb.install(): the real wandb was imported already; modules that "
                      "imported it keep it (install before importing transformers or trl)", RldkWarning,
                      stacklevel=2)
    sdk, lib, config_util = (types.ModuleType(n) for n in _SUBMODULES)
    config_util.ConfigError = ConfigError
    lib.config_util, sdk.lib, this.sdk = config_util, lib, sdk
    sys.modules.update({"wandb": this, "wandb.sdk": sdk, "wandb.sdk.lib": lib,
                        "wandb.sdk.lib.config_util": config_util})


def uninstall() -> None:
    """Undo :func:`install`: ``import wandb`` finds what it found before."""
    saved = _STATE["saved"]
    if saved is None:
        return
    for name, module in saved.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module
    _STATE["saved"] = None
