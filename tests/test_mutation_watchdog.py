"""scripts/mutation.py's hang watchdog: a grandchild of the driver (a mutmut worker) that runs past the limit gets
SIGXCPU; a child (the forkserver) and younger grandchildren are left alone. Starts processes: listed under --ignore in
[tool.mutmut] so mutation runs never select it."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "scripts"))

import mutation  # noqa: E402

from node.procutil import children, start_ticks  # noqa: E402


def test_a_worker_past_the_limit_gets_sigxcpu_and_nothing_else_is_touched():
    # child: a shell (the "forkserver"); its children: an old "worker" and, started 3 s later, a young one
    server = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 3; sleep 60 & wait"])
    stop = threading.Event()
    try:
        time.sleep(3.5)
        old, young = sorted(children(server.pid), key=start_ticks)
        watchdog = threading.Thread(target=mutation.hang_watchdog, args=(2.5, stop, 0.2), daemon=True)
        watchdog.start()
        deadline = time.monotonic() + 10
        while old in children(server.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert old not in children(server.pid)  # killed (and reaped by the shell)
        assert young in children(server.pid)  # 0.5 s old: left alone
        assert server.poll() is None  # the "forkserver" itself is never signalled
    finally:
        stop.set()
        for pid in children(server.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        server.kill()
        server.wait()
