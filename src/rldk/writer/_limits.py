"""The writer's limits and clocks, shared by its modules."""
from __future__ import annotations

import time

_PLAIN = frozenset((float, int, bool))
_WAKE_VALUES = 1 << 16        # queued values that wake the encoder before its timer does
_MAX_BACKLOG = 1 << 18        # queued values before log() waits for the encoder (memory bound)
_MIN_WAKE_CALLS = 256         # the wake threshold in calls, however many values a call has
_MAX_RECORDED = 1 << 20       # values the compiled path holds before log() waits: ~10 bytes each,
                              # a burst of 100K steps x 10 is absorbed; peak RSS stays < 64 MB
_COMPACT_MIN = 8              # close() merges a session's segments when it wrote more
_TABLE_BACKLOG = 1 << 18      # rows of queued tables (converters) before append_table waits
_FINISH_TRIES = 3             # close() tries the last segment this often before giving up
_FLUSH_UPLOAD_SECS = 60.0     # flush() waits this long for an upload to object storage
_now = time.time
LAYOUTS = ("flat", "hive")


class RldkWarning(RuntimeWarning):
    """A problem the writer fixed up or worked around without stopping training."""
