"""Memory for the commands that simulate day after day: reuse freed memory for big tensors instead of asking
the kernel for fresh pages each time (glibc's settings), or run under jemalloc when it is installed.

glibc's ``malloc`` serves a request above its mmap threshold (adjusted at run time, at most 32 MiB on 64-bit
Linux) with fresh ``mmap`` pages and gives them back on ``free``. At 8.4M agents a ``float32`` tensor is
33.6 MB, just over that cap, so every temporary of that size (a hazard, a comparison's result widened to
float, an index) page-faults all its pages again: ``torch.index_select`` into a new 8.4M-float tensor took
21 ms against 5 ms into a reused buffer on the 2-core machine, and a simulated day of ``nyc-covid`` at 8.4M
fell from 161 to 121 ms (median of 17 days) once freed memory was kept (``benchmarks/README.md``).

``populace explore``, ``sensitivity``, ``calibrate`` and ``optimize`` call :func:`reuse_freed_memory` once
for their process, which simulates day after day (the same sizes over and over; the lean reverse mode
bounds what the heap keeps to one segment's work); ``run`` and a library import leave the allocator alone.

glibc keeps the memory a run frees, but not in a shape the next days can always use: a lean reverse pass at
1M agents × 120 days grew glibc's heap to 1.47 GB while at most 0.89 GB of it was in use (``mallinfo2``), as
long-lived snapshots and days' temporaries of changing sizes fragment it. jemalloc (Debian's
``libjemalloc2``; PyTorch's CPU launcher ``torch.backends.xeon.run_cpu`` offers it for the same reason)
sorts allocations by size class and peaked at 1.17–1.24 GB on the same run, in less CPU time
(``benchmarks/README.md``). A process cannot change its ``malloc`` once started, so those commands call
:func:`relaunch_under_jemalloc` first (the ``populace`` program before torch is imported,
:mod:`populace.program`): when jemalloc is installed and not in use, the command is executed again under it
(``LD_PRELOAD``; the same process, its arguments and environment), else it goes on with glibc.
``POPULACE_ALLOCATOR=system`` keeps the system's allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

__all__ = [
    "ALLOCATOR_VARIABLE",
    "JEMALLOC_CONF",
    "allocator",
    "relaunch_under_jemalloc",
    "reuse_freed_memory",
]

ALLOCATOR_VARIABLE = "POPULACE_ALLOCATOR"
"""Environment variable: ``system`` keeps the system's allocator (no relaunch under jemalloc)."""

JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1,oversize_threshold:0,narenas:1"
"""jemalloc's settings for a relaunched command (unless ``MALLOC_CONF`` is set): keep freed pages for reuse
instead of returning them to the system after a delay, as :func:`reuse_freed_memory` asks of glibc (with
decay after 5 s the same 1M run took 22% more CPU time for 0.06 GB less), and for every size: by default
requests above 8 MiB go to an arena that returns them at once, and at 8.4M agents (33.6 MB a tensor) the
first 20 days of a sensitivity run then took 66.5 s instead of 23.9 s (``benchmarks/README.md``). One arena
for every thread: the overlapped backward pass of the lean reverse mode (:class:`~populace.Checkpointed`)
replays on a second thread, whose own arena kept memory the other could not reuse (1M sensitivity with
overlap: 1.71 GB peak with an arena per thread, 1.54 GB with one, in the same time). Transparent huge pages
(``thp:always``) were tried and not kept: a calibration epoch at 1M agents took 10.1–10.6 s against
10.9–11.6 s, but a 70-epoch calibration at 1M then peaked at 19.4 GB, and a second one at 2.03 GB: not
explained yet (``benchmarks/README.md``)."""

_RELAUNCHED = "POPULACE_RELAUNCHED"

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def reuse_freed_memory(mmap_threshold: int = 1 << 30, trim_threshold: int = (1 << 31) - 1) -> bool:
    """Serve requests below ``mmap_threshold`` bytes from the heap and keep up to ``trim_threshold`` bytes of
    freed heap memory for reuse. Returns whether the allocator took both settings (``False`` off glibc, or
    under jemalloc)."""
    if not sys.platform.startswith("linux") or allocator() == "jemalloc":
        return False  # jemalloc keeps freed pages by its own settings (JEMALLOC_CONF)
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mmap = mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
    return bool(mmap) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))


def allocator() -> str:
    """``"jemalloc"`` when this process runs under jemalloc, else ``"system"``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return "jemalloc" if "libjemalloc" in maps else "system"


def relaunch_under_jemalloc() -> None:
    """Execute this process's command again under jemalloc (module docs), replacing the process; return
    without doing anything when jemalloc is not installed, already in use, turned off
    (``POPULACE_ALLOCATOR=system``), off Linux, or when this process is itself such a relaunch (the
    library was found but did not load: go on with the system's allocator)."""
    if not sys.platform.startswith("linux") or os.environ.get(ALLOCATOR_VARIABLE) == "system":
        return
    if os.environ.get(_RELAUNCHED) or allocator() == "jemalloc":
        return
    library = ctypes.util.find_library("jemalloc")
    if library is None:
        return
    preload = " ".join(p for p in (library, os.environ.get("LD_PRELOAD", "")) if p)
    env = {**os.environ, "LD_PRELOAD": preload, _RELAUNCHED: "1"}
    env.setdefault("MALLOC_CONF", JEMALLOC_CONF)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)
