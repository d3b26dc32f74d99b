"""Helpers for the child processes a node supervises (cometbft, the price daemon)."""

from __future__ import annotations

import ctypes
import os
import pathlib
import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL("libc.so.6", use_errno=True)  # loaded in the parent: no dlopen between fork and exec


def die_with_parent() -> Callable[[], None]:
    """A preexec_fn: the child gets SIGKILL when the process that started it dies (Linux prctl).

    If the parent already died between fork and the prctl call, the death signal would never come: the child
    exits at once instead.
    """
    parent = os.getpid()

    def preexec() -> None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: index 0 is field 3 (state); None if there is no such process."""
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, /proc/PID/stat field 22); None if there is no such process.

    A PID and its start time together name one process: a reused PID has a different start time.
    """
    fields = stat_fields(pid)
    return int(fields[19]) if fields is not None and len(fields) > 19 else None


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc/PID/task/PID/children)."""
    try:
        return [int(c) for c in pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def write_pid_file(path: pathlib.Path, pid: int) -> None:
    """``PID START_TICKS``: readers check both before they signal anything."""
    path.write_text(f"{pid} {start_ticks(pid)}\n")


def read_pid_file(path: pathlib.Path) -> int | None:
    """The PID in ``path`` if that very process (same start time) is still alive and not a zombie."""
    try:
        parts = path.read_text().split()
        pid = int(parts[0])
        recorded = int(parts[1]) if len(parts) > 1 and parts[1] != "None" else None
    except (OSError, ValueError, IndexError):
        return None
    fields = stat_fields(pid)
    if fields is None or len(fields) <= 19 or fields[0] == "Z":
        return None
    if recorded is not None and int(fields[19]) != recorded:
        return None
    return pid


def argv(pid: int) -> list[str]:
    try:
        raw = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]
