"""The process entry points' allocator setting and the relaunch under jemalloc (populace.memory)."""

import ctypes.util
import json
import os
import platform
import subprocess
import sys

import torch

from populace.memory import ALLOCATOR_VARIABLE, allocator, reuse_freed_memory


def test_glibc_takes_the_setting_and_tensors_still_allocate() -> None:
    assert reuse_freed_memory() == (platform.libc_ver()[0] == "glibc")
    big = torch.ones(9_000_000)  # 36 MB: above glibc's own 32 MiB cap, now from the heap
    assert int(big.sum()) == 9_000_000
    del big
    assert int(torch.zeros(9_000_000).sum()) == 0  # the freed block is reused, zeroed by torch


def _allocator_of_a_command(env: dict[str, str]) -> str:
    """The allocator ``populace sensitivity`` reports, run as a program (not from Python: no relaunch)."""
    command = [sys.executable, "-m", "populace.cli", "sensitivity", "nyc-covid", "--agents", "2000"]
    done = subprocess.run(
        [*command, "--days", "3", "--json"], capture_output=True, text=True, env=env, check=True
    )
    return str(json.loads(done.stdout)["allocator"])


def test_commands_that_simulate_day_after_day_relaunch_under_jemalloc_when_installed() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", ALLOCATOR_VARIABLE, "MALLOC_CONF")}
    env["OMP_NUM_THREADS"] = "1"
    installed = sys.platform.startswith("linux") and ctypes.util.find_library("jemalloc") is not None
    assert _allocator_of_a_command(env) == ("jemalloc" if installed else "system")
    assert _allocator_of_a_command({**env, ALLOCATOR_VARIABLE: "system"}) == "system"
    assert allocator() == "system"  # this process (pytest) was not relaunched by the calls from Python
