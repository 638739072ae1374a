"""Rewrite the golden baselines ``tests/baselines/<scenario>.json`` that ``tests/test_baselines.py`` checks.

    .venv/bin/python tests/update_baselines.py                     # every installed scenario
    .venv/bin/python tests/update_baselines.py --scenario classroom  # one (repeat --scenario for more)

Each file holds a tiny run of one scenario (default options, fixed seed; a
scenario's ``tiny_sets`` applied): every observable's daily series
(vector series with their labels) and, from a differentiable run of the same size, the gradient of one total
outcome with respect to every scalar learnable parameter (keyed by ``model.named_parameters()`` names).
Floats are written as ``repr`` (full precision), so a change in the last bit shows. Files are replaced
atomically (a temporary file in ``tests/baselines/``, then ``os.replace``). Review
``git diff tests/baselines`` before committing it: it is the change in results.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from populace import Model, Scenario, simulate
from populace.files import atomic_path
from populace.scenario import scenarios, tiny_options
from populace.sensitivity import sensitivity

BASELINES = Path(__file__).resolve().parent / "baselines"
SEED = 1
"""Seed of the population (``Scenario.build``) and of the run's random streams."""
UPDATE = "python tests/update_baselines.py --scenario {name}"


@dataclass(frozen=True)
class Setup:
    """The size of a scenario's baseline run and the outcome whose gradient is stored."""

    agents: int | None
    """``None``: the scenario's ``default_agents``."""
    days: int
    outcome: str | None = None
    """A :mod:`populace.sensitivity` outcome; ``None``: the first ``total:`` default output, else the total
    of the first ``new_*`` series."""


SETUPS = {
    "bench-seir": Setup(5_000, 60, "total:new_infections"),
    # nyc-covid imports 10 infections per 100k a day: 20,000 agents is the smallest size with an epidemic
    "nyc-covid": Setup(20_000, 60, "total:new_infections"),
    "classroom": Setup(5_000, 60, "total:new_infections"),
    # every US commercial farm (the model's default); 90 days reach detections, culls and price changes
    "h5n1-fowl-to-fork": Setup(None, 90, "total:birds_culled"),
    # New Zealand, seeded in Auckland with 300 per 100k (its Scenario.tiny_sets)
    "nz-covid": Setup(20_000, 40, "total:new_infections"),
}
DEFAULT = Setup(5_000, 30)
"""A scenario without an entry above (a new one) gets this, its agents capped by its default."""


def setup(name: str) -> Setup:
    return SETUPS.get(name, DEFAULT)


def _agents(scenario: type[Scenario], chosen: Setup) -> int:
    if chosen.agents is None:
        return scenario.default_agents
    return min(chosen.agents, scenario.default_agents) if chosen is DEFAULT else chosen.agents


def _outcome(scenario: type[Scenario], model: Model, chosen: Setup) -> str:
    if chosen.outcome is not None:
        return chosen.outcome
    totals = [o for o in scenario.default_outputs if o.startswith("total:")]
    if totals:
        return totals[0]
    return "total:" + next(n for n in model.observables() if n.startswith("new_"))


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one CPU thread: the same bits on any number of cores, and no thread spinning on a busy
    machine (two threads on a loaded 2-core machine ran these runs 5-10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def baseline(name: str) -> dict[str, Any]:
    """A fresh baseline of scenario ``name`` (what the golden file stores), built on one CPU thread."""
    with _one_thread():
        return _baseline(name)


def _baseline(name: str) -> dict[str, Any]:
    scenario = scenarios()[name]
    chosen = setup(name)
    agents = _agents(scenario, chosen)
    model = scenario().build(agents, tiny_options(scenario), seed=SEED, device="cpu")
    result = simulate(model, chosen.days, seed=SEED)
    series: dict[str, Any] = {}
    for key, value in result.series.items():
        entry: dict[str, Any] = {"dtype": str(value.dtype).removeprefix("torch.")}
        if value.dim() > 1:
            value = value.reshape(len(value), -1)
            entry["labels"] = list(result.labels.get(key) or [str(i) for i in range(value.shape[1])])
        entry["values"] = value.tolist()
        series[key] = entry
    # the gradient run: a fresh model of the same size, reverse mode, every scalar learnable parameter
    model = scenario().build(agents, tiny_options(scenario), seed=SEED, device="cpu")
    outcome = _outcome(scenario, model, chosen)
    scalars = [n for n, p in model.named_parameters() if p.requires_grad and p.dim() == 0]
    report = sensitivity(model, chosen.days, [outcome], seeds=(SEED,), parameters=scalars)
    return {
        "scenario": name,
        "agents": agents,
        "days": chosen.days,
        "seed": SEED,
        "options": ", ".join(("defaults", *scenario.tiny_sets)),
        "series": series,
        "gradient": {
            "outcome": outcome,
            "value": report.outputs[outcome],
            "parameters": report.gradients[outcome],
        },
    }


def path_of(name: str) -> Path:
    return BASELINES / f"{name}.json"


def dumps(value: Any, level: int = 0, *, expand: bool = False) -> str:
    """JSON with one day per line (a changed day is a one-line diff); floats as ``repr``."""
    pad = "  " * level
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [
            f"{pad}  {json.dumps(k)}: {dumps(v, level + 1, expand=k == 'values')}" for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and value and (expand or isinstance(value[0], list | dict)):
        return "[\n" + ",\n".join(f"{pad}  {dumps(v, level + 1)}" for v in value) + f"\n{pad}]"
    return json.dumps(value, allow_nan=False)


def write(name: str) -> Path:
    path = path_of(name)
    text = dumps(baseline(name)) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # a temporary file beside ``path``, then os.replace
        tmp.write_text(text)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scenario", action="append", help="scenario to update (repeatable; default: every installed one)"
    )
    args = parser.parse_args(argv)
    installed = sorted(scenarios())
    names = args.scenario or installed
    unknown = [n for n in names if n not in installed]
    if unknown:
        parser.error(f"--scenario: unknown {', '.join(unknown)}; installed: {', '.join(installed)}")
    # build populations afresh (not from the user's cache), as the tests do
    with tempfile.TemporaryDirectory() as cache:
        os.environ["POPULACE_CACHE"] = cache
        for name in names:
            print(f"wrote {os.path.relpath(write(name))}")
    stale = sorted(p.name for p in BASELINES.glob("*.json") if p.stem not in installed)
    if stale:
        print(f"not an installed scenario (delete if it was removed): {', '.join(stale)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
