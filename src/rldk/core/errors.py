"""Typed library errors. Each message says what went wrong and what to do next.

The CLI maps them once (see ``rldk.cli``): usage errors exit 2, failures exit 1,
analyses that ran and found problems exit 3 so CI can gate on them, and analyses
whose defining checks could not run (nothing was verified) exit 4.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PROBLEMS = 3
EXIT_INCONCLUSIVE = 4


class RldkError(Exception):
    """Base class: a failure the user can act on; the message is one line."""

    exit_code = EXIT_FAILURE


class UsageError(RldkError):
    """The call was wrong: bad argument, unknown run id, invalid name."""

    exit_code = EXIT_USAGE


class StoreError(RldkError):
    """The event store cannot be read or written (missing, unwritable, corrupt file)."""


class InvalidRunId(UsageError, ValueError):
    """A run id that could escape the store directory or is otherwise unusable."""


class MissingEvents(RldkError):
    """An analysis lacks the events it needs; the message names what to log."""
