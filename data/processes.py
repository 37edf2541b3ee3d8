"""Whether a process still lives, by its pid (stale temp folders, control files)."""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """True while a process with this pid exists (another user's counts as alive). A zombie
    (ended, its exit status not collected yet: a container without an init reaps nothing)
    counts as ended."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS), or it ended meanwhile
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
