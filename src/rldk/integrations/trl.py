"""``RldkCallback``: record a transformers/TRL Trainer run into an rldk event store.

    from rldk.integrations.trl import RldkCallback
    trainer.add_callback(RldkCallback("runs/", run_id="grpo-seed1", rng_every=1))

What is written (all through :class:`rldk.writer.EventWriter`, so ``RLDK_DIR`` and
``RLDK_RUN_ID`` override ``dir`` and ``run_id``):

- ``run/start`` on ``on_train_begin``: config = ``TrainingArguments.to_dict()``,
  seed = ``args.seed``; plus a ``run`` event named ``trl`` with the trainer class
  state (max_steps, epochs, batch size, start step) and the model's config.
- ``metric`` events on ``on_log``: every numeric value of the Trainer's log dict
  at ``step = state.global_step``, names unchanged (``loss``, ``kl``, ``eval_loss``,
  ``rewards/<fn>/mean``...). A value already recorded for the same step and name
  with the same value (``epoch`` is repeated in the eval log) is not written twice.
  ``None`` values (TRL logs None for a metric with no valid value) are skipped and
  counted in a ``writer`` event ``trl/none_values`` at the end.
- The end-of-training summary row (``train_runtime``, ``train_loss``,
  ``total_flos``...) is not a training step: its values are ``metric`` events with
  a null step and ``attrs = {"summary": true, "global_step": N}``, so per-step
  analyses never mistake ``train_loss`` (an average) for a step's value.
- ``rng_every=N``: RNG digests at ``on_train_begin`` (fresh runs only: a resumed run has not
  restored its RNG state yet at that point) and after every N-th step.
- ``tensors_every=N``: parameter checksums at ``on_train_begin`` (the initial
  weights) and after every N-th optimizer step, and gradient checksums of that
  step taken just before the optimizer uses them (``on_pre_optimizer_step``;
  gradients are zeroed before ``on_step_end``). Both use the step number the
  Trainer will log for that update.
- ``memory_every=N``: host RSS / CUDA memory after every N-th step.
- ``checkpoint`` on ``on_save``: text = the checkpoint directory, attrs = the file
  sizes; with ``hash_checkpoints=True`` also a BLAKE2b digest of each file and one
  digest of them all (reads every byte of the checkpoint: off by default).
- ``guards="default"`` (or a ``rldk.live.Guards`` / dict): the live analyzers run on the
  run in a background thread (:mod:`rldk.live.guards`); each finding is a ``run``
  event named ``finding``, and one at the guards' ``stop_on`` severity sets
  ``control.should_training_stop`` (the Trainer then ends as it does at max_steps).
  The guard keeps within ``Guards.max_lag`` logged steps of training.
- GRPO completions (``GRPOConfig(log_completions=True)``): TRL dumps them to
  ``<output_dir>/completions/completions_<step>.parquet`` right after each log; the
  callback turns every dump into ``sample`` events once it is complete (at the
  next log and at the end of training).

Only the world's main process (``state.is_world_process_zero``) writes, so a
multi-GPU run is recorded once. The writer is closed on ``on_train_end``.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

from transformers import TrainerCallback

_SUMMARY_KEYS = frozenset(("train_runtime", "train_samples_per_second", "train_steps_per_second",
                           "total_flos", "train_loss"))
_NUMBER = (int, float)


class RldkCallback(TrainerCallback):
    """A ``transformers.TrainerCallback`` writing the run's events to ``dir``.

    Parameters
    ----------
    dir, run_id : the event store directory and run id (``RLDK_DIR`` / ``RLDK_RUN_ID``
        override them; see :class:`rldk.writer.EventWriter`).
    rng_every, tensors_every, memory_every : record RNG digests, parameter and
        gradient checksums, memory readings every N steps (0: never).
    samples : turn GRPO completion dumps into ``sample`` events.
    hash_checkpoints : digest every checkpoint file on save.
    writer_options : extra keyword arguments for the EventWriter (``flush_secs``,
        ``capture_env``, ``strict``...).
    guards : run the live analyzers and stop training on a finding (see above);
        ``self.guard`` is the running :class:`rldk.live.guards.Guard`.
    """

    def __init__(self, dir=None, run_id=None, *, rng_every: int = 0, tensors_every: int = 0,
                 memory_every: int = 0, samples: bool = True, hash_checkpoints: bool = False,
                 writer_options: dict | None = None, guards=None):
        self.dir, self.run_id = dir, run_id
        self.rng_every, self.tensors_every, self.memory_every = rng_every, tensors_every, memory_every
        self.samples, self.hash_checkpoints = samples, hash_checkpoints
        self.writer_options = dict(writer_options or {})
        self.writer = None
        self._seen_step, self._seen = None, {}
        self._none_values: dict[str, int] = {}
        self._completions_read: set[str] = set()
        self.guards, self.guard = guards, None

    # ------------------------------------------------------------------ events
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.writer is None or self.writer._closed:
            from rldk.writer import EventWriter

            self.writer = EventWriter(self.dir, self.run_id, config=_jsonable(args.to_dict()),
                                      seed=args.seed, **self.writer_options)
        if self.guards and self.guard is None:
            from rldk.live.guards import start

            self.guard = start(self.writer, self.guards)
        self.writer.log_event("run", "trl", attrs=_trainer_attrs(state, model))
        step = state.global_step
        # a resumed run calls this before the Trainer restores the checkpoint's RNG state:
        # a digest now would be of a state the run never trains with
        if self.rng_every and step == 0:
            self.writer.log_rng(step)
        if self.tensors_every and model is not None:
            self.writer.log_tensors(step, model, "param")

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        step = state.global_step + 1          # the step number this update will be logged under
        if self._active(state) and _due(self.tensors_every, step) and model is not None:
            self.writer.log_tensors(step, model, "grad")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if not self._active(state):
            return
        step = state.global_step
        if _due(self.tensors_every, step) and model is not None:
            self.writer.log_tensors(step, model, "param")
        if _due(self.rng_every, step):
            self.writer.log_rng(step)
        if _due(self.memory_every, step):
            self.writer.log_memory(step)
        if self.guard is not None and self.guard.stopped:
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not self._active(state) or not logs:
            return
        step = state.global_step
        if _SUMMARY_KEYS & logs.keys():
            self._log_summary(step, logs)
        else:
            values = self._new_values(step, logs)
            if values:
                self.writer.log(step, values)
                if self.guard is not None:
                    self.guard.logged(step)
                    if self.guard.stopped:
                        control.should_training_stop = True
        if self.samples and getattr(args, "log_completions", False):
            self._read_completions(args.output_dir, before_step=step)

    def on_save(self, args, state, control, **kwargs):
        if not self._active(state):
            return
        step = state.global_step
        path = Path(args.output_dir) / f"checkpoint-{step}"
        attrs, digest = _checkpoint_files(path, self.hash_checkpoints)
        self.writer.log_event("checkpoint", "checkpoint", step, text=str(path), digest=digest, attrs=attrs)

    def on_train_end(self, args, state, control, **kwargs):
        if not self._active(state):
            return
        if self.samples and getattr(args, "log_completions", False):
            self._read_completions(args.output_dir, before_step=None)
        if self.guard is not None:
            self.guard.close()
            self.guard = None
        if self._none_values:
            self.writer.log_event("writer", "trl/none_values", ivalue=sum(self._none_values.values()),
                                  attrs={"by_name": self._none_values})
        self.writer.close()

    # ----------------------------------------------------------------- helpers
    def _active(self, state) -> bool:
        return state.is_world_process_zero and self.writer is not None and not self.writer._closed

    def _new_values(self, step: int, logs: dict) -> dict:
        """The numeric values of ``logs`` not already recorded for ``step``."""
        if step != self._seen_step:
            self._seen_step, self._seen = step, {}
        out = {}
        for name, value in logs.items():
            if value is None:
                self._none_values[name] = self._none_values.get(name, 0) + 1
                continue
            if name in self._seen and _same(self._seen[name], value):
                continue
            self._seen[name] = value
            out[name] = value
        return out

    def _log_summary(self, step: int, logs: dict) -> None:
        from rldk.writer._encode import scalar_fields

        for name, raw in logs.items():
            value, ivalue, text, _ = scalar_fields(raw)
            self.writer.log_event("metric", name, None, value=value, ivalue=ivalue, text=text,
                                  attrs={"summary": True, "global_step": step})

    def _read_completions(self, output_dir, before_step: int | None) -> None:
        from rldk.converters.trl import completion_files, completions_table

        for step, path in completion_files(Path(output_dir) / "completions"):
            if path.name in self._completions_read or (before_step is not None and step >= before_step):
                continue
            self._completions_read.add(path.name)
            self.writer.append_table(completions_table(path))


def _due(every: int, step: int) -> bool:
    return bool(every) and step % every == 0


def _same(a, b) -> bool:
    try:
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    except Exception:     # tensors and arrays: compare nothing, record both
        return False


def _trainer_attrs(state, model) -> dict:
    attrs = {"framework": "transformers", "max_steps": state.max_steps,
             "num_train_epochs": state.num_train_epochs, "train_batch_size": state.train_batch_size,
             "start_step": state.global_step, "logging_steps": state.logging_steps}
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        attrs["model_class"] = type(model).__name__
        attrs["model_config"] = _jsonable(config.to_dict())
    return attrs


def _jsonable(value):
    """``value`` with everything JSON cannot hold turned into strings (enums, dtypes, paths)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, bool, *_NUMBER)):
        return value
    return str(value)


def _checkpoint_files(path: Path, hash_files: bool) -> tuple[dict, str | None]:
    """``(attrs, digest)`` of a checkpoint directory: sizes (and digests) of its files."""
    if not path.is_dir():
        return {"missing": True}, None
    files = sorted(p for p in path.rglob("*") if p.is_file())
    sizes = {str(p.relative_to(path)): p.stat().st_size for p in files}
    attrs = {"files": sizes, "bytes": sum(sizes.values())}
    if not hash_files:
        return attrs, None
    digests = {str(p.relative_to(path)): _file_digest(p) for p in files}
    combined = hashlib.blake2b(digest_size=16)
    for name, dig in digests.items():
        combined.update(f"{name}\0{dig}\n".encode())
    attrs["digests"] = digests
    return attrs, combined.hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


__all__ = ["RldkCallback"]
