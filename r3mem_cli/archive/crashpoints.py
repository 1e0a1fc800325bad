"""Fault injection for the crash-safety tests: `crashpoint(name)` kills this process with SIGKILL
when the environment variable R3MEM_CRASHPOINT names it.

R3MEM_CRASHPOINT=forget.deleted      kill at the first time `crashpoint("forget.deleted")` runs
R3MEM_CRASHPOINT=add.committed:3     kill at its third hit

SIGKILL, not an exception: no `finally`, no atexit, no buffered write gets to run, exactly as
with a power cut of the process (the kernel still has what was written). With the variable unset
a crash point costs one dictionary lookup. The list of points and what each one tests is in
docs/decisions/0011-crash-safety-and-concurrency.md.
"""

from __future__ import annotations

import os
import signal

ENV = "R3MEM_CRASHPOINT"
_hits: dict[str, int] = {}


def crashpoint(name: str) -> None:
    want = os.environ.get(ENV)
    if not want:
        return
    target, _, nth = want.partition(":")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= (int(nth) if nth.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)
