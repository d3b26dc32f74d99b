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


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, /proc/PID/stat field 22); None if there is no such process.

    A PID and its start time together name one process: a reused PID has a different start time.
    """
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])  # field 22 overall; the split starts at field 3
    except (OSError, IndexError, ValueError):
        return None


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
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
    if state == "Z" or (recorded is not None and start_ticks(pid) != recorded):
        return None
    return pid


def argv(pid: int) -> list[str]:
    try:
        raw = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]
