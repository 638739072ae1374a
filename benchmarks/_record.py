"""Shared helpers of the benchmark scripts: machine description and atomic appends to a results file."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from populace.files import atomic_path


def machine() -> dict[str, Any]:
    """Where and when a figure was measured."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory_gb = None
    try:
        with open("/proc/meminfo") as handle:
            memory_gb = round(int(handle.readline().split()[1]) / 1024**2, 1)
    except (OSError, IndexError, ValueError):
        pass
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "commit": _commit(),
    }


def _commit() -> str | None:
    """The checkout's commit, ``+changes`` when the package's files differ from it (``None`` outside git)."""
    root = Path(__file__).resolve().parent.parent
    code = ["core", "layers", "sample_scenarios", "explorer"]
    try:
        rev = ["git", "rev-parse", "--short", "HEAD"]
        head = subprocess.run(rev, cwd=root, capture_output=True, text=True)
        changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", *code], cwd=root)
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+changes" if changed.returncode != 0 else "")


def append(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` to the JSON list in ``path``, atomically."""
    records = json.loads(path.read_text()) if path.exists() else []
    records.append(record)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(records, indent=1) + "\n")
