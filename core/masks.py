"""``bool`` masks in float arithmetic, at the speed of bytes.

On CPU, torch's kernels that read a ``bool`` tensor into float arithmetic take a slow path: at 1M agents
(2-core Intel Xeon VM, torch 2.13.0, one thread) ``mask.to(torch.float32)`` took 0.61 ms and
``values * mask`` 1.04 ms, against 0.23 ms and 0.67 ms for the same bytes viewed as ``uint8``
(``benchmarks/bench_masks.py``; a float copy took 0.32 ms). A differentiable day of ``nyc-covid`` converts or multiplies by such masks a
dozen times per agent (samples, attendance, who is present, who still waits), so the layers and samplers
pass masks through :func:`numeric` (a view: no copy, the tape keeps one byte per agent as before).

A ``uint8`` view is only for arithmetic with a floating operand (the result is then floating): with an
integer operand it would wrap where a ``bool`` promotes (``1 - mask`` must stay ``~mask`` or ``1.0 - …``).
"""

from __future__ import annotations

import torch

__all__ = ["copy_as", "numeric"]


def numeric(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` ready to multiply or add to floats: a ``bool`` tensor as a ``uint8`` view of its bytes (0 and
    1), any other tensor as it is."""
    return mask.view(torch.uint8) if mask.dtype == torch.bool else mask


def copy_as(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A new ``dtype`` tensor of ``values`` (a ``bool`` mask's 0s and 1s, or numbers)."""
    return numeric(values).to(dtype, copy=True)
