"""Reuse freed memory for big tensors instead of asking the kernel for fresh pages each time (glibc only).

glibc's ``malloc`` serves a request above its mmap threshold (adjusted at run time, at most 32 MiB on 64-bit
Linux) with fresh ``mmap`` pages and gives them back on ``free``. At 8.4M agents a ``float32`` tensor is
33.6 MB, just over that cap, so every temporary of that size (a hazard, a comparison's result widened to
float, an index) page-faults all its pages again: ``torch.index_select`` into a new 8.4M-float tensor took
21 ms against 5 ms into a reused buffer on the 2-core machine, and a simulated day of ``nyc-covid`` at 8.4M
fell from 161 to 121 ms (median of 17 days) once freed memory was kept (``benchmarks/README.md``).

``populace explore``, ``sensitivity``, ``calibrate`` and ``optimize`` call :func:`reuse_freed_memory` once
for their process, which simulates day after day (the same sizes over and over; the lean reverse mode
bounds what the heap keeps to one segment's work); ``run`` and a library import leave the allocator alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["reuse_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def reuse_freed_memory(mmap_threshold: int = 1 << 30, trim_threshold: int = (1 << 31) - 1) -> bool:
    """Serve requests below ``mmap_threshold`` bytes from the heap and keep up to ``trim_threshold`` bytes of
    freed heap memory for reuse. Returns whether the allocator took both settings (``False`` off glibc)."""
    if not sys.platform.startswith("linux"):
        return False
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
