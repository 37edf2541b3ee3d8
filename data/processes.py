"""Whether a process still lives, by its pid (stale temp folders, control files)."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True while a process with this pid exists (another user's counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
