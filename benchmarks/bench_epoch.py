"""Benchmark: calibration epochs of ``nyc-covid`` one at a time, with and without the overlapped backward pass
(issue 22: ``Checkpointed(overlap=...)``, the segment before replayed on a second thread while this one's
reverse pass runs).

    python benchmarks/bench_epoch.py [--agents 1M] [--epochs 3] [--threads 2] [--overlap on off on off]

For each ``--overlap`` entry, a fresh process runs ``--epochs`` epochs of ``Calibration.fit`` (the steps of
``populace calibrate nyc-covid``, 120 days, the allocator as the process has it: run under ``LD_PRELOAD`` of
jemalloc to measure what the CLI does) and reports each epoch's wall and CPU time, the forward pass's share,
the loss (the same with and without overlap: the gradients are those of the plain backward pass) and the
process's peak RSS. The first epoch includes warm-up; compare the later ones. Appends one record per entry to
``benchmarks/bench_epoch_results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _record import append, machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "bench_epoch_results.json"


def epochs(agents: str, count: int, threads: int, overlap: bool) -> dict[str, Any]:
    """Run in this process (the child): ``count`` epochs, timed one by one."""
    import torch

    from populace.cli.arguments import parse_count
    from populace.experiment import Experiment
    from populace.memory import allocator, reuse_freed_memory
    from populace.simulate import Checkpointed, Simulation

    torch.set_num_threads(threads)
    reuse_freed_memory()
    n = parse_count(agents, "--agents")
    experiment = Experiment.from_texts(
        "nyc-covid", [], agents=n, seed=0, device=torch.device("cpu"), params=None, observed=True, start=None
    )
    days = 120
    calibration = experiment.calibration(experiment.model(None), days=days, streams=None)
    forward: list[tuple[float, float]] = []
    run = Simulation.run

    def timed_run(self: Any, *args: Any, **kwargs: Any) -> Any:
        cpu, wall = time.process_time(), time.perf_counter()
        out = run(self, *args, **kwargs)
        forward.append((time.perf_counter() - wall, time.process_time() - cpu))
        return out

    Simulation.run = timed_run  # type: ignore[method-assign]
    rows: list[dict[str, float]] = []
    last = [time.perf_counter(), time.process_time()]

    def on_epoch(epoch: int, loss: float, parts: dict[str, float]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        rows.append(
            {
                "wall_s": round(wall - last[0], 2),
                "cpu_s": round(cpu - last[1], 2),
                "forward_wall_s": round(forward[-1][0], 2),
                "loss": loss,
            }
        )
        last[:] = [wall, cpu]

    grad = None if overlap else Checkpointed()  # on: fit's default, as populace calibrate
    calibration.fit(days, epochs=count, evaluate=1, on_epoch=on_epoch, grad=grad)
    return {
        "agents": n,
        "days": days,
        "overlap": overlap,
        "allocator": allocator(),
        "epochs": rows,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", default="1M")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--overlap", nargs="+", choices=["on", "off"], default=["on", "off", "on", "off"])
    parser.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(epochs(args.agents, args.epochs, args.threads, args.child == "on")))
        return
    for overlap in args.overlap:
        command = [sys.executable, __file__, "--agents", args.agents, "--epochs", str(args.epochs)]
        command += ["--threads", str(args.threads), "--child", overlap]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        load_before = os.getloadavg()[0]
        done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
        record = {
            **machine(),
            "threads": args.threads,
            "command": f"python benchmarks/bench_epoch.py --agents {args.agents} --epochs {args.epochs} "
            f"--threads {args.threads} --overlap {overlap}",
            **json.loads(done.stdout.strip().splitlines()[-1]),
            "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(record))
        append(RESULTS, record)


if __name__ == "__main__":
    main()
