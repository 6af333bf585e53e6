"""OpenRLHF logs: its TensorBoard event files (``--use_tensorboard DIR``).

OpenRLHF's trainers log ``train/<key>`` (``train/policy_loss``, ``train/kl``,
``train/reward``, ``train/response_length``, ``train/actor_lr``...) at the global
step and ``eval/<key>`` at evaluation steps, through ``SummaryWriter.add_scalar``.
They are read by :mod:`rldk.converters.tensorboard` and keep their names (the
canonical quantities ``kl_to_ref``, ``reward``, ``lr`` resolve to them through
:mod:`rldk.semantics`). Auto-detection chooses this converter over plain
TensorBoard when the first event file's tags are OpenRLHF's.

OpenRLHF's wandb logging, when run offline (``wandb/offline-run-*/run-*.wandb``),
is read by the ``wandb`` format (:mod:`rldk.converters.wandb_offline`).
"""
from __future__ import annotations

from pathlib import Path

from rldk.converters import tensorboard, tfrecord
from rldk.converters.base import ConvertError, write_runs

NAME = "openrlhf"
#: Tags OpenRLHF's PPO/GRPO/DPO trainers write and other tools rarely do (any one is enough;
#: train/kl or train/reward alone are too common to decide).
SIGNATURE = frozenset(("train/policy_loss", "train/actor_lr", "train/critic_loss", "train/critic_lr",
                       "train/return", "train/response_length", "train/total_length", "train/ptx_loss",
                       "train/policy_entropy", "train/chosen_reward", "train/reject_reward"))


#: Tags of Stable-Baselines3's logger: its SAC/TD3/TQC write ``train/critic_loss`` too.
SB3_TAGS = frozenset(("time/fps", "train/n_updates", "rollout/ep_rew_mean", "rollout/ep_len_mean"))


def detect(path) -> bool:
    """True when the first TensorBoard event file under ``path`` has OpenRLHF tags and
    none of Stable-Baselines3's."""
    files = tensorboard.event_files(path, limit=1)
    tags = first_tags(files[0]) if files else set()
    return bool(tags & SIGNATURE) and not tags & SB3_TAGS


def first_tags(file: Path, max_bytes: int = 1 << 20) -> set[str]:
    """Tags of the records in the first ``max_bytes`` of an event file."""
    try:
        with open(file, "rb") as f:
            buf = f.read(max_bytes)
    except OSError:
        return set()
    decoded = tfrecord.decode(tfrecord.read_records(buf, verify=False))
    tags = set()
    for names in decoded.names:
        tags.update(names.dictionary.to_pylist() if hasattr(names, "dictionary") else names.to_pylist())
    return tags


def read(path, **options):
    runs = tensorboard.read(path, **options)
    if not runs:
        raise ConvertError(f"{path}: no OpenRLHF TensorBoard logs found")
    return runs


def convert(path, target, run_id=None, strict: bool = False, **options):
    """Convert OpenRLHF TensorBoard logs at ``path`` into ``target``."""
    return write_runs(read(path, **options), target, run_id, NAME, source=str(path), strict=strict)
