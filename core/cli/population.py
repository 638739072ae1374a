"""``populace population build|describe NAME``: build (and cache) a synthetic population, or describe it
(:mod:`populace.synth.recipes`)."""

from __future__ import annotations

import argparse
import json
import sys

from ..synth.recipes import describe, find_recipe, load_population
from .arguments import UsageError, non_negative, parse_count
from .command import Command
from .output import peak_rss_mb

__all__ = ["Population"]


class Population(Command):
    help = "build or describe a synthetic population"

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("action", choices=("build", "describe"))
        parser.add_argument("name", help="population name: nyc, nz, classroom")
        parser.add_argument(
            "--agents", help="number of agents (default: the recipe's); scales the population"
        )
        parser.add_argument("--seed", type=non_negative, default=0, help="random seed (default 0)")
        parser.add_argument("--rebuild", action="store_true", help="ignore the cache and build again")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def run(self, args: argparse.Namespace) -> int:
        try:
            recipe = find_recipe(args.name)()
        except LookupError as exc:
            raise UsageError(str(exc.args[0])) from None
        agents = parse_count(args.agents, "--agents") if args.agents is not None else recipe.default_agents
        if agents > recipe.full_size * 4:
            raise UsageError(
                f"--agents: at most {recipe.full_size * 4:,} for {recipe.name} (4x its census total)"
            )
        loaded = load_population(
            recipe,
            agents,
            args.seed,
            rebuild=args.rebuild,
            log=lambda message: print(message, file=sys.stderr),
        )
        info = {
            "population": recipe.name,
            "agents": loaded.people.n,
            "seed": args.seed,
            "source": loaded.source,
            "seconds": round(loaded.seconds, 3),
            "path": str(loaded.path),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
        if args.action == "build":
            if args.json:
                per_agent = round(loaded.people.nbytes() / loaded.people.n, 2)
                print(json.dumps({**info, "bytes_per_agent": per_agent}))
            else:
                verb = "loaded from the cache" if loaded.source == "cache" else "built"
                print(
                    f"{recipe.name}: {loaded.people.n:,} agents {verb} in {loaded.seconds:.2f} s "
                    f"({loaded.path})"
                )
            return 0
        report = describe(loaded.people, recipe.geography())
        if args.json:
            print(json.dumps({**info, **report}))
        else:
            _print_description(recipe.name, report)
        return 0


def _print_description(name: str, report: dict) -> None:
    print(f"{name}: {report['agents']:,} agents, {report['bytes_per_agent']} bytes per agent")
    print("\nresidents by region")
    for region, count in report["regions"].items():
        print(f"  {region:24s} {count:>10,} {100 * count / report['agents']:6.2f}%")
    print("\nage pyramid        female       male")
    for row in report["age_pyramid"]:
        print(f"  {row['band']:8s} {row['female']:>12,} {row['male']:>10,}")
    households = report["households"]
    print(
        f"\nhouseholds: {households['count']:,}, mean size {households['mean_size']}, "
        f"without an adult: {households['without_adult']}"
    )
    for size, count in households["size_distribution"].items():
        print(f"  size {size:3s} {count:>10,} {100 * count / max(households['count'], 1):6.2f}%")
    for label in ("schools", "workplaces", "community_places"):
        places = report[label]
        if places["count"]:
            print(
                f"\n{label.replace('_', ' ')}: {places['count']:,} with {places['members']:,} members; size "
                f"mean {places['mean']}, p10 {places['p10']:g}, median {places['median']:g}, "
                f"p90 {places['p90']:g}, max {places['max']:,}"
            )
    print(f"\nemployment rate, ages 18-64: {report['employment_rate_18_64']:.1%}")
