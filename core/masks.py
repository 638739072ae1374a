"""``bool`` masks in float arithmetic, at the speed of bytes.

On CPU, torch's kernels that read a ``bool`` tensor into float arithmetic take a slow path: at 1M agents
(2-core Intel Xeon VM, torch 2.13.0, one thread) ``mask.to(torch.float32)`` took 0.61 ms and
``values * mask`` 1.04 ms, against 0.23 ms and 0.67 ms for the same bytes viewed as ``uint8``
(``benchmarks/bench_masks.py``; a float copy took 0.32 ms). A differentiable day of ``nyc-covid``
converts or multiplies by such masks a dozen times per agent (samples, attendance, who is present, who
still waits), so the layers and samplers pass masks through :func:`numeric` (a view: no copy, the tape
keeps one byte per agent as before).

:func:`true_indices` finds the few ``True`` entries of a long mask (agents due today, today's infections)
by its 8-byte words first: ``torch.nonzero`` took 0.72 ms over 1M agents with 0.1% of them ``True`` (0.19 ms
with none), the words 0.26 ms.

A ``uint8`` view is only for arithmetic with a floating operand (the result is then floating): with an
integer operand it would wrap where a ``bool`` promotes (``1 - mask`` must stay ``~mask`` or ``1.0 - …``).
"""

from __future__ import annotations

import torch

__all__ = ["copy_as", "numeric", "true_indices"]


def numeric(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` ready to multiply or add to floats: a ``bool`` tensor as a ``uint8`` view of its bytes (0 and
    1), any other tensor as it is."""
    return mask.view(torch.uint8) if mask.dtype == torch.bool else mask


def copy_as(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A new ``dtype`` tensor of ``values`` (a ``bool`` mask's 0s and 1s, or numbers)."""
    return numeric(values).to(dtype, copy=True)


_DENSE = 12
"""A mask with ``True`` in more than one 8-byte word in ``_DENSE`` goes to ``torch.nonzero`` directly: at
1M agents the words were ~3× faster up to 0.3% ``True`` and as fast at 1–2%, and the check costs ~0.06 ms
(``benchmarks/bench_masks.py``)."""

_WORD = 8

_SHORTEST = 1 << 16
"""Shorter masks go to ``torch.nonzero`` directly: the words' few extra calls cost more than they save
below ~50,000 entries (one thread, 0.1% ``True``: 25 against 10 µs at 10,000 entries, 44 against 80 µs at
100,000)."""


def true_indices(mask: torch.Tensor) -> torch.Tensor:
    """``int64[k]``: the positions of the ``True`` entries of a 1-D ``bool`` ``mask``, in order (what
    ``torch.nonzero(mask).squeeze(1)`` gives). On CPU a sparse mask is read a word of 8 entries at a time:
    only the words holding a ``True`` are looked into."""
    n = mask.numel()
    head = n - n % _WORD
    plain = mask.device.type != "cpu" or mask.dim() != 1 or n < _SHORTEST
    if plain or not mask.is_contiguous() or mask.storage_offset() % _WORD:
        return torch.nonzero(mask).squeeze(1)
    words = mask[:head].view(torch.int64)
    if int(torch.count_nonzero(words)) * _DENSE > words.numel():
        return torch.nonzero(mask).squeeze(1)
    hit = torch.nonzero(words).squeeze(1)
    row, column = torch.nonzero(mask[:head].view(-1, _WORD)[hit]).unbind(1)
    found = hit[row] * _WORD + column
    if head == n:
        return found
    return torch.cat([found, torch.nonzero(mask[head:]).squeeze(1) + head])
