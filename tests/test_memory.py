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


def test_the_program_relaunches_before_importing_torch() -> None:
    """``populace`` (:mod:`populace.program`) relaunches a built-in command that simulates day after day
    before torch is imported: the relaunched process imports torch, the first one did not (~1 s saved)."""
    from populace.cli import BUILT_IN
    from populace.program import DAY_AFTER_DAY

    assert {n for n, c in BUILT_IN.items() if c.simulates_day_after_day} == DAY_AFTER_DAY
    if not (sys.platform.startswith("linux") and ctypes.util.find_library("jemalloc")):
        return  # nothing to relaunch under
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", ALLOCATOR_VARIABLE, "MALLOC_CONF")}
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-X", "importtime", "-m", "populace", "sensitivity", "nyc-covid"]
    done = subprocess.run(
        [*command, "--agents", "2000", "--days", "3", "--json"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["allocator"] == "jemalloc"
    # -X importtime writes one line per module imported, in each process (the relaunch keeps the flag)
    torch_imports = [line for line in done.stderr.splitlines() if line.split("|")[-1].strip() == "torch"]
    assert len(torch_imports) == 1


def test_importing_populace_does_not_import_torch_until_a_name_is_used() -> None:
    code = (
        "import sys, populace; assert 'torch' not in sys.modules; "
        "names = {n: getattr(populace, n) for n in populace.__all__}; assert 'torch' in sys.modules; "
        "print(len(names))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(done.stdout) == len(__import__("populace").__all__) > 30


def test_the_public_names_type_checkers_see_are_those_imported_on_first_use() -> None:
    """``populace/__init__`` lists its names twice: for the imports on first use (``_PUBLIC``) and as
    imports type checkers see (``if TYPE_CHECKING:``); the two stay the same."""
    import ast
    from pathlib import Path

    import populace

    tree = ast.parse(Path(populace.__file__).read_text())
    guarded = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    seen = {
        (node.module, alias.name)
        for node in guarded.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    listed = {(module, name) for module, names in populace._PUBLIC.items() for name in names}
    assert seen == listed
