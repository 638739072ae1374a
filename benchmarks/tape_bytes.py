"""Benchmark: where the bytes of a differentiable run go (issue 22, step 1: measure before changing anything).

    python benchmarks/tape_bytes.py [--scenario nyc-covid] [--agents 100k] [--days 60]

Runs the scenario with ``grad="full"`` one day at a time under ``torch.autograd.graph.saved_tensors_hooks``
and tallies every tensor the autograd tape saves, once per storage (a storage saved by several ops counts
once), by day and by kind: per-agent tensors by dtype (``numel == agents``), multiples of the agents (e.g.
``[3, agents]``), other large tensors (per place or cell, > 4,096 elements) and small ones. It compares the
tape with the floor a recomputing reverse pass would need: the layers' state per agent (the bytes of every
tensor in the initial states whose length is a multiple of the agents), once per checkpoint. Prints one JSON
object and appends it to ``benchmarks/tape_bytes.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from _record import append, machine

from populace.cli import parse_count
from populace.scenario import find_scenario, parse_sets
from populace.simulate import Simulation

RESULTS = Path(__file__).with_name("tape_bytes.json")


def kind(tensor: torch.Tensor, agents: int) -> str:
    n = tensor.numel()
    dtype = str(tensor.dtype).removeprefix("torch.")
    if n == agents:
        return f"per agent {dtype}"
    if n > agents and n % agents == 0:
        return f"{n // agents} x per agent {dtype}"
    return "other large" if n > 4096 else "small"


def state_bytes(states: list[Any], agents: int) -> int:
    """Bytes of the per-agent tensors of the layers' states (what a checkpoint must keep)."""
    total = 0
    for state in states:
        for field in dataclasses.fields(state):
            values = getattr(state, field.name)
            for value in values if isinstance(values, list) else [values]:
                if isinstance(value, torch.Tensor) and value.numel() and value.numel() % agents == 0:
                    total += value.numel() * value.element_size()
    return total


def by_op(output: torch.Tensor, agents: int) -> dict[str, float]:
    """Bytes per agent of the per-agent tensors the tape saves, by the backward node that saves them (each
    storage counted once, at the first node found), from a walk of the graph behind ``output``."""
    seen: set[int] = set()
    out: dict[str, int] = defaultdict(int)
    stack, visited = [output.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in visited:
            continue
        visited.add(node)
        for attr in dir(node):
            if not attr.startswith("_saved_"):
                continue
            try:
                value = getattr(node, attr)
            except RuntimeError:  # freed or not a tensor
                continue
            for tensor in value if isinstance(value, tuple) else (value,):
                if isinstance(tensor, torch.Tensor) and tensor.numel() >= agents:
                    storage = tensor.untyped_storage()
                    if storage.data_ptr() not in seen:
                        seen.add(storage.data_ptr())
                        out[type(node).__name__] += storage.nbytes()
        stack.extend(next_node for next_node, _ in node.next_functions)
    return {k: round(v / agents, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])[:12]}


def measure(scenario: str, agents: int, days: int, seed: int) -> dict[str, Any]:
    cls = find_scenario(scenario)
    model = cls().build(agents, parse_sets(cls, []), seed=seed, device="cpu")
    seen: set[int] = set()
    by_kind: dict[str, int] = defaultdict(int)
    by_day: list[int] = []
    today = [0]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in seen and storage.nbytes():
            seen.add(key)
            by_kind[kind(tensor, agents)] += storage.nbytes()
            today[0] += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        sim = Simulation(model, seed=seed, grad="full")
        floor = state_bytes(sim.states, agents)
        outputs = []
        for _, observed in sim.stream(days):
            outputs.append(sum(v.sum() for k, v in observed.items() if k.startswith("new_")))
            by_day.append(today[0])
            today[0] = 0
    total = sum(by_kind.values())
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    output = torch.stack(outputs).sum()
    ops = by_op(output, agents)
    output.backward()
    ranked = sorted(by_kind.items(), key=lambda kv: -kv[1])
    per_agent_day = {k: round(v / agents / days, 1) for k, v in ranked}
    checkpoints = round(days**0.5)
    return {
        "scenario": scenario,
        "agents": agents,
        "days": days,
        "tape_bytes": total,
        "tape_bytes_per_agent_per_day": round(total / agents / days, 1),
        "by_kind_bytes_per_agent_per_day": per_agent_day,
        "by_op_bytes_per_agent_whole_run": ops,
        "by_day_mb": [round(b / 2**20, 1) for b in by_day],
        "state_bytes_per_agent": round(floor / agents, 1),
        "floor_sqrt_t_checkpoints_bytes": floor * checkpoints,
        "floor_checkpoints": checkpoints,
        "tape_over_floor": round(total / max(floor * checkpoints, 1), 1),
        "peak_rss_mb_forward": round(peak_rss_mb, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="nyc-covid")
    parser.add_argument("--agents", default="100k")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    record = {
        "benchmark": "tape_bytes",
        **machine(),
        **measure(args.scenario, parse_count(args.agents, "--agents"), args.days, args.seed),
    }
    print(json.dumps(record), file=sys.stdout)
    if not args.no_record:
        append(RESULTS, record)


if __name__ == "__main__":
    main()
