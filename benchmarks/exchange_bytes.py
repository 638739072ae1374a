"""What a day of a split run must exchange: all-reduce of whole place vectors (what ``ExactSums`` does)
against an owner-based all-to-all (each process sends the sums of the places it shares to their owners, and
gets the totals back), counted from the populations themselves — bytes, not timings, so a busy machine
does not change them.

    python benchmarks/exchange_bytes.py --scenario bench-seir --agents 8.4M --ranks 2 4 8
    python benchmarks/exchange_bytes.py --scenario nyc-covid --agents 8.4M --ranks 2 4 8

Per process and day: the all-reduce puts every spanning place's float64 sum in (``8 × places``; a ring
moves about twice that over the wire); the all-to-all sends, per shared place it touches, an index and a value
(16 bytes) and gets the total back (8 bytes). Households and any setting whose places stay within one
process exchange nothing. Prints one JSON object and appends it to ``benchmarks/exchange_bytes.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from _record import append, machine

from populace.cli.arguments import parse_count
from populace.contacts import AgeMixing, Places, spanning_places
from populace.distributed import split
from populace.experiment import Experiment
from populace.layers.infection import Infection

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "exchange_bytes.json"


def _index(setting: Places | AgeMixing) -> tuple[torch.Tensor, int]:
    if isinstance(setting, Places):
        return setting.place_index.long(), setting.n_places
    return setting.cell_index.long(), setting.n_groups * setting.bands


def count(scenario: str, agents: int, ranks: int, sets: list[str]) -> dict[str, object]:
    experiment = Experiment.from_texts(scenario, sets, agents=agents)
    model = experiment.model()  # the whole population, to see which places each shard touches
    disease = next(layer for layer in model.layers if isinstance(layer, Infection))
    starts = None
    for s in disease.contacts():
        if s.name == "household":
            place = s.place_index.long()
            starts = torch.ones_like(place, dtype=torch.bool)
            starts[1:] = place[1:] != place[:-1]
    bounds = split(disease.n_agents, ranks, starts)
    settings = {}
    for s in disease.contacts():
        if not isinstance(s, (Places, AgeMixing)):
            continue
        index, outside = _index(s)
        member = index < outside
        spanning = spanning_places(index, outside, bounds)
        if not bool(spanning.any()):
            settings[s.name] = {"spans": False, "places": outside}
            continue
        shared_touched = []
        for r in range(ranks):
            local = index[bounds[r] : bounds[r + 1]]
            local = local[local < outside]
            touched = torch.zeros(outside, dtype=torch.bool)
            touched[local] = True
            shared_touched.append(int((touched & spanning).sum()))
        settings[s.name] = {
            "spans": True,
            "places": outside,
            "spanning_places": int(spanning.sum()),
            "members": int(member.sum()),
            "all_reduce_bytes_per_rank": 8 * (outside + 1),
            "all_to_all_bytes_per_rank_max": 24 * max(shared_touched),
        }
    spans = [v for v in settings.values() if v["spans"]]
    return {
        "scenario": scenario,
        "agents": disease.n_agents,
        "ranks": ranks,
        "settings": settings,
        "all_reduce_bytes_per_rank_day": sum(int(v["all_reduce_bytes_per_rank"]) for v in spans),
        "all_to_all_bytes_per_rank_day_max": sum(int(v["all_to_all_bytes_per_rank_max"]) for v in spans),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="bench-seir")
    parser.add_argument("--agents", default="8.4M")
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    agents = parse_count(args.agents, "--agents")
    results = [count(args.scenario, agents, r, args.set) for r in args.ranks]
    record = {"machine": machine(), "command": " ".join(sys.argv), "results": results}
    print(json.dumps(record))
    append(RESULTS, record)


if __name__ == "__main__":
    main()
