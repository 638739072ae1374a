"""``populace risk SCENARIO --profile me.json``: a person's 7-day infection probability under their planned
week and the usual alternatives, computed in this process from a public forecast (:mod:`populace.risk`)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..risk import MASK_EFFICACY, Profile, RiskTable, answer, forecast
from ..simulate import Simulation
from .arguments import UsageError, parse_count, scenario_arguments, setup
from .command import Command

__all__ = ["Risk"]


class Risk(Command):
    help = "a person's 7-day infection risk under their plan and alternatives (computed on this device)"

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("scenario", help="scenario name (see `populace scenarios`)")
        scenario_arguments(parser)
        parser.add_argument(
            "--profile",
            required=True,
            help='the person\'s week, JSON: {"area": "Brooklyn", "household_size": 3, "days": {"work": 5, '
            '"community": 7}, "mask": false}; read here, never sent',
        )
        parser.add_argument("--day", default="30", help="the week starts after this many days (default 30)")
        parser.add_argument(
            "--table",
            help="the public forecast: read it if the file exists, else compute it and write it there",
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def run(self, args: argparse.Namespace) -> int:
        day = parse_count(args.day, "--day", "days") if args.day != "0" else 0
        try:
            json.loads(Path(args.profile).read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"--profile: cannot read {args.profile!r}: {exc}") from None
        t0 = time.perf_counter()
        forecast_s = None
        if args.table is not None and Path(args.table).exists():
            try:
                table = RiskTable.load(args.table)
            except ValueError as exc:
                raise UsageError(f"--table: {exc}") from None
        else:
            experiment, _ = setup(args)
            model = experiment.model()
            efficacy = experiment.options.get("mask_efficacy")
            table = forecast(
                model,
                scenario=experiment.scenario.name,
                agents=experiment.agents,
                seed=args.seed,
                first_day=day,
                mask_efficacy=float(efficacy.value) if efficacy is not None else MASK_EFFICACY,
                simulate=lambda m, days, on_day: Simulation(m, seed=args.seed).run(days, on_day=on_day),
            )
            forecast_s = time.perf_counter() - t0
            if args.table is not None:
                table.save(args.table)
        t1 = time.perf_counter()
        try:
            profile = Profile.read(args.profile, table)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        rows = answer(table, profile)
        query_s = time.perf_counter() - t1
        if args.json:
            print(
                json.dumps(
                    {
                        "scenario": table.scenario,
                        "agents": table.agents,
                        "first_day": table.first_day,
                        "forecast_s": None if forecast_s is None else round(forecast_s, 3),
                        "query_s": round(query_s, 6),
                        "choices": rows,
                    }
                )
            )
            return 0
        where = "computed" if forecast_s is not None else f"read from {args.table}"
        print(
            f"{table.scenario} ({table.agents:,} agents), days {table.first_day + 1}-{table.first_day + 7}: "
            f"forecast {where}"
            + (f" in {forecast_s:.1f} s" if forecast_s is not None else "")
            + f"; your answer computed here in {query_s * 1000:.1f} ms"
        )
        for row in rows:
            change = "" if row["choice"] == "as planned" else f"  ({row['change'] * 100:+.2f} points)"
            print(f"  {row['choice']:<46} {row['probability'] * 100:6.2f}% chance of infection{change}")
        return 0
