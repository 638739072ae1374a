"""Benchmark: a ``bool`` mask in float arithmetic, as ``bool`` and as its bytes viewed as ``uint8``
(``populace.masks``), at 1M agents on one thread, freed memory reused as by the commands that simulate day
after day.

    python benchmarks/bench_masks.py [--agents 1M] [--share 0.3] [--repeats 400]

Prints one JSON record (milliseconds per operation, the median of 5 rounds) and appends it to
``benchmarks/bench_masks_results.json``. The floor of each is its bytes over the memory bandwidth: a
conversion reads 1 byte and writes 4 per agent, a product reads 5 and writes 4, as fast as a float copy
(read 4, write 4) would allow.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _record import append, machine

from populace.cli.arguments import parse_count
from populace.masks import numeric, true_indices
from populace.memory import reuse_freed_memory

RESULTS = Path(__file__).resolve().parent / "bench_masks_results.json"


def timed(op: Callable[[], object], repeats: int) -> float:
    """Median over 5 rounds of the milliseconds per call."""
    op()
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            op()
        rounds.append((time.perf_counter() - start) / repeats * 1e3)
    return round(statistics.median(rounds), 3)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", default="1M")
    parser.add_argument("--share", type=float, default=0.3, help="share of the mask that is true")
    parser.add_argument("--repeats", type=int, default=400)
    args = parser.parse_args()
    torch.set_num_threads(1)
    reuse_freed_memory()  # as the commands that simulate day after day: no fresh pages per result
    n = parse_count(args.agents, "--agents")
    generator = torch.Generator().manual_seed(0)
    mask = torch.rand(n, generator=generator) < args.share
    values = torch.rand(n, generator=generator)
    view = numeric(mask)
    sparse = {share: torch.rand(n, generator=generator) < share for share in (0.0, 0.001, 0.01, 0.03, 0.1)}
    ops = {
        "float copy (reference)": lambda: values.clone(),
        "bool to float32": lambda: mask.to(torch.float32),
        "uint8 view to float32": lambda: view.to(torch.float32),
        "values * bool": lambda: values * mask,
        "values * uint8 view": lambda: values * view,
        "values * float mask (converted before)": lambda: values * mask.to(torch.float32),
        **{f"torch.nonzero, {share:.1%} true": lambda m=m: torch.nonzero(m) for share, m in sparse.items()},
        **{f"true_indices, {share:.1%} true": lambda m=m: true_indices(m) for share, m in sparse.items()},
    }
    record = {
        **machine(),
        "command": f"python benchmarks/bench_masks.py --agents {args.agents} --share {args.share}",
        "agents": n,
        "ms": {name: timed(op, args.repeats) for name, op in ops.items()},
    }
    print(json.dumps(record))
    append(RESULTS, record)


if __name__ == "__main__":
    main()
