"""Pass a cluster process's standard error through, and say which process was lost when
JAX's coordination service ends it (``cluster.watch_stderr`` starts this script).

JAX ends a process itself (SIGABRT, after a ``Terminating process because the JAX
distributed service detected fatal errors`` line) when the coordinator, process 0, is gone,
or when the heartbeat timeout finds another process gone while this one was not waiting on
it; no Python code runs then. This script, reading the pipe that replaced the process's
stderr, sees that last message after the process ended and adds one clear line. It imports
nothing of flaxmnist or JAX: it must start in milliseconds and outlive the process.

Usage: ``python _watch_stderr.py PROG PROCESS_ID NUM_PROCESSES HOSTS_JSON``
"""

import json
import os
import re
import signal
import sys

FATAL = "distributed service detected fatal errors"
UNHEALTHY = re.compile(r"tasks are unhealthy \(stopped sending heartbeats\):\s*([\d\s,]+)")


def main() -> None:
    prog, me, count, hosts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    hosts = json.loads(hosts)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the process, not for us
    tail = b""
    while chunk := os.read(0, 65536):
        os.write(2, chunk)
        tail = (tail + chunk)[-20000:]
    text = tail.decode(errors="replace")
    if FATAL not in text:
        return
    found = UNHEALTHY.search(text)
    lost = [int(n) for n in re.findall(r"\d+", found.group(1))] if found else []
    lost = [n for n in lost if n != me] or ([0] if me != 0 else [])
    if not lost:
        return
    named = ", ".join(
        f"process {n} (on {hosts[n] if n < len(hosts) else '?'}"
        + (", the coordinator)" if n == 0 else ")")
        for n in lost
    )
    line = (
        f"{prog}: error: lost {named} of {count}: JAX's coordination service stopped this "
        "process too; what was written before is intact: run the same command on every "
        "host again to resume\n"
    )
    os.write(2, line.encode())


if __name__ == "__main__":
    main()
