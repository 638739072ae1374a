"""The process entry points' allocator setting (populace.memory)."""

import platform

import torch

from populace.memory import reuse_freed_memory


def test_glibc_takes_the_setting_and_tensors_still_allocate() -> None:
    assert reuse_freed_memory() == (platform.libc_ver()[0] == "glibc")
    big = torch.ones(9_000_000)  # 36 MB: above glibc's own 32 MiB cap, now from the heap
    assert int(big.sum()) == 9_000_000
    del big
    assert int(torch.zeros(9_000_000).sum()) == 0  # the freed block is reused, zeroed by torch
