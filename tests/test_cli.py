"""The ``populace`` command line: listing, runs, JSON output, --out files, and one-line errors."""

from __future__ import annotations

import argparse
import functools
import io
import itertools
import json
import os
import pathlib
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, entry_points
from pathlib import Path

import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import torch

from populace import Simulation, cli, parse_sets
from populace.cli import Command, UsageError, command as cli_command, parse_count, run as cli_run
from populace.scenarios.bench_seir import BenchSEIR
from populace.simulate import Result

COMPARTMENTS = ("S", "E", "I", "R")
SMALL = ("--agents", "100", "--days", "2")
SUMMARY_KEYS = {
    "scenario",
    "agents",
    "days",
    "seed",
    "device",
    "threads",
    "torch",
    "init_s",
    "sim_s",
    "peak_rss_mb",
    "final",
    "daily",
}


def run_json(run_cli, *argv: str) -> dict:
    """Run with ``--json`` and return the parsed summary, checking stdout holds exactly one JSON object."""
    result = run_cli("run", *argv, "--json")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 1, f"--json must print exactly one line on stdout, got {len(lines)}"
    summary = json.loads(lines[0])
    assert isinstance(summary, dict)
    return summary


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.code == 2, (result.code, result.err)
    assert "Traceback" not in result.err
    lines = result.err_lines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got {lines!r}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert result.out == "", "nothing may be printed on stdout for bad input"


def populace_command() -> list[str]:
    """The installed console script, or ``python -m populace.cli`` when it is not on PATH."""
    exe = shutil.which("populace") or shutil.which("populace", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "populace.cli"]


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


# ----------------------------------------------------------------------------- listing
def test_scenarios_lists_bench_seir(run_cli):
    result = run_cli("scenarios")
    assert result.code == 0
    assert result.err == ""
    names = [line.split()[0] for line in result.out.splitlines() if line.strip()]
    assert "bench-seir" in names
    line = next(line for line in result.out.splitlines() if line.startswith("bench-seir"))
    assert BenchSEIR.summary in line


def test_missing_command_or_scenario_exits_2_with_one_line(run_cli):
    assert_one_line_error(run_cli(), "command")
    assert_one_line_error(run_cli("run"), "scenario")
    assert_one_line_error(run_cli("frobnicate"), "frobnicate")


# ----------------------------------------------------------------------------- real process
def test_console_script_in_a_subprocess():
    cmd = populace_command()
    listing = subprocess.run(
        [*cmd, "scenarios"], capture_output=True, text=True, timeout=120, env=subprocess_env(), check=False
    )
    assert listing.returncode == 0, listing.stderr
    assert "bench-seir" in listing.stdout

    run = subprocess.run(
        [*cmd, "run", "bench-seir", "--agents", "2k", "--days", "5", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 1
    summary = json.loads(run.stdout)
    assert summary["agents"] == 2000
    assert summary["days"] == 5
    assert "Traceback" not in run.stderr


def test_console_script_bad_input_in_a_subprocess():
    bad = subprocess.run(
        [*populace_command(), "run", "bench-seir", "--agents", "abc"],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert "Traceback" not in bad.stderr
    lines = bad.stderr.splitlines()
    assert len(lines) == 1, lines
    assert "--agents" in lines[0]


def test_python_m_populace_cli_in_a_subprocess():
    listing = subprocess.run(
        [sys.executable, "-m", "populace.cli", "scenarios"],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
        check=False,
    )
    assert listing.returncode == 0, listing.stderr
    assert "bench-seir" in listing.stdout


# ----------------------------------------------------------------------------- plugged-in commands
class _Hello(Command):
    help = "say hello"

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--name", default="world")

    def run(self, args: argparse.Namespace) -> int:
        if not args.name:
            raise UsageError("--name: expected a name")
        print(f"hello {args.name}")
        return 0


def _plug_in(monkeypatch, found: dict) -> None:
    """Pretend ``found`` are the entry points of the ``populace.commands`` group."""
    monkeypatch.setattr(cli_command, "installed", lambda group: found if group == cli_command.GROUP else {})


def test_help_lists_the_built_in_commands_and_explore(run_cli):
    result = run_cli("--help")
    assert result.code == 0
    for name in (*cli.BUILT_IN, "explore"):
        assert name in result.out
    explore = run_cli("explore", "--help")
    assert explore.code == 0
    assert "--scenario" in explore.out
    assert "--no-browser" in explore.out


def test_explore_is_plugged_in_through_the_commands_entry_point():
    (found,) = [ep for ep in entry_points(group="populace.commands") if ep.name == "explore"]
    assert found.value == "populace.explorer.command:Explore"
    assert "explore" not in cli.BUILT_IN
    assert "explore" in cli.commands()


def test_without_the_explorer_extra_explore_is_not_offered(run_cli, monkeypatch):
    from populace.explorer import command as explore_command

    real = explore_command.distribution

    def panel_missing(name: str):
        if name.lower() == "panel":
            raise PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(explore_command, "distribution", panel_missing)
    assert "explore" not in cli.commands()
    listing = run_cli("--help")
    assert listing.code == 0
    assert "explore" not in listing.out
    assert "scenarios" in listing.out
    assert_one_line_error(run_cli("explore"), "invalid choice", "explore")


def test_a_plugged_in_command_runs_and_reports_bad_input_in_one_line(run_cli, monkeypatch):
    _plug_in(monkeypatch, {"hello": _Hello})
    assert list(cli.commands()) == [*cli.BUILT_IN, "hello"]
    listing = run_cli("--help")
    assert "say hello" in listing.out
    result = run_cli("hello", "--name", "Ada")
    assert (result.code, result.out, result.err) == (0, "hello Ada\n", "")
    assert_one_line_error(run_cli("hello", "--name", ""), "populace hello: error: --name")


def test_an_unavailable_plugged_in_command_is_not_offered(run_cli, monkeypatch):
    class Unavailable(_Hello):
        @classmethod
        def available(cls) -> bool:
            return False

    _plug_in(monkeypatch, {"hello": Unavailable})
    assert "hello" not in cli.commands()
    assert_one_line_error(run_cli("hello"), "invalid choice")


def test_a_plugged_in_command_may_not_take_a_built_in_name(monkeypatch):
    _plug_in(monkeypatch, {"run": _Hello})
    with pytest.raises(LookupError, match="built-in 'run'"):
        cli.build_parser()


# ----------------------------------------------------------------------------- run --json
def test_run_json_summary(run_cli):
    summary = run_json(run_cli, "bench-seir", "--agents", "20k", "--days", "30")
    assert set(summary) >= SUMMARY_KEYS
    assert summary["scenario"] == "bench-seir"
    assert summary["agents"] == 20_000
    assert summary["days"] == 30
    assert summary["seed"] == 0
    assert summary["device"] == "cpu"
    assert isinstance(summary["threads"], int)
    assert summary["threads"] >= 1
    assert summary["torch"] == torch.__version__
    for key in ("init_s", "sim_s"):
        assert isinstance(summary[key], int | float)
        assert summary[key] >= 0
    assert summary["peak_rss_mb"] > 0

    final, daily = summary["final"], summary["daily"]
    assert set(final) >= set(COMPARTMENTS)
    assert set(daily) >= set(COMPARTMENTS)
    for name in COMPARTMENTS:
        assert isinstance(final[name], int), "counts are whole numbers"
        assert len(daily[name]) == 30
        assert all(isinstance(x, int) and x >= 0 for x in daily[name])
        assert final[name] == daily[name][-1]
    for day in range(30):
        assert sum(daily[c][day] for c in COMPARTMENTS) == 20_000, f"S+E+I+R != agents on day {day}"
    assert sum(final[c] for c in COMPARTMENTS) == 20_000


def test_run_daily_series_is_the_day_by_day_trajectory(run_cli):
    """Each day of ``daily`` is that day's state, not the last day's repeated (in-place update aliasing)."""
    agents, days, seed = 20_000, 30, 3
    daily = run_json(
        run_cli, "bench-seir", "--agents", str(agents), "--days", str(days), "--seed", str(seed)
    )["daily"]
    model = BenchSEIR().build(agents, parse_sets(BenchSEIR, []), seed=seed, device="cpu")
    stream = Simulation(model, seed=seed).stream(days)
    rows = [{k: int(v) for k, v in observed.items() if v.dim() == 0} for _, observed in stream]
    for name in COMPARTMENTS:
        assert daily[name] == [row[name] for row in rows], name
    s, r = daily["S"], daily["R"]
    assert all(a >= b for a, b in itertools.pairwise(s)), "S never increases"
    assert all(a <= b for a, b in itertools.pairwise(r)), "R never decreases"
    assert s[0] > s[-1], "the epidemic should spread in 30 days"
    assert daily["E"][0] != daily["E"][-1]


def test_run_human_readable(run_cli):
    result = run_cli("run", "bench-seir", "--agents", "2000", "--days", "5")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("bench-seir: 2,000 agents x 5 days on cpu")
    assert lines[1].startswith("final: S=")
    assert "Traceback" not in result.err


def test_defaults_come_from_the_scenario(run_cli, monkeypatch):
    monkeypatch.setattr(BenchSEIR, "default_agents", 1_500)
    monkeypatch.setattr(BenchSEIR, "default_days", 4)
    summary = run_json(run_cli, "bench-seir")
    assert summary["agents"] == 1_500
    assert summary["days"] == 4
    assert len(summary["daily"]["S"]) == 4


def test_same_seed_same_series_other_seed_differs(run_cli):
    args = ("bench-seir", "--agents", "20k", "--days", "30")
    a = run_json(run_cli, *args, "--seed", "7")["daily"]
    b = run_json(run_cli, *args, "--seed", "7")["daily"]
    c = run_json(run_cli, *args, "--seed", "8")["daily"]
    assert a == b
    assert any(a[name] != c[name] for name in COMPARTMENTS)


def test_set_network_well_mixed_runs(run_cli):
    summary = run_json(run_cli, "bench-seir", "--agents", "5k", "--days", "20", "--set", "network=well-mixed")
    assert summary["options"]["network"] == "well-mixed"
    for day in range(20):
        assert sum(summary["daily"][c][day] for c in COMPARTMENTS) == 5_000


def test_set_beta_is_applied(run_cli):
    args = ("bench-seir", "--agents", "10k", "--days", "40", "--seed", "1")
    base = run_json(run_cli, *args)
    high = run_json(run_cli, *args, "--set", "beta=0.05", "--set", "seeds_per_10k=1")
    assert base["options"]["beta"] == pytest.approx(0.016)
    assert high["options"]["beta"] == pytest.approx(0.05)
    assert high["options"]["seeds_per_10k"] == pytest.approx(1.0)
    # Common random numbers: a higher beta infects the same agents earlier, so never fewer.
    assert high["final"]["S"] < base["final"]["S"]


# ----------------------------------------------------------------------------- parse_count
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100000", 100_000),
        ("1e6", 1_000_000),
        ("1E6", 1_000_000),
        ("8.4M", 8_400_000),
        ("8.4m", 8_400_000),
        ("100k", 100_000),
        ("100K", 100_000),
        ("1_000", 1_000),
        ("1_000_000", 1_000_000),
        ("2.5k", 2_500),
        ("1.5e3", 1_500),
        ("1b", 1_000_000_000),
        (" 7 ", 7),
        ("1", 1),
    ],
)
def test_parse_count_accepts(text, expected):
    assert parse_count(text, "--agents") == expected


@pytest.mark.parametrize("text", ["4.1M", "8.2M", "8.3M", "0.7k"])
def test_parse_count_decimal_with_suffix_is_exact(text):
    """``4.1M`` is 4,100,000 exactly; float arithmetic (4.1 * 1e6 = 4099999.9999999995) must not reject it."""
    whole, frac = text[:-1].split(".")
    scale = {"k": 1_000, "M": 1_000_000}[text[-1]]
    expected = int(whole) * scale + int(frac) * scale // 10 ** len(frac)
    assert parse_count(text, "--agents") == expected


@pytest.mark.parametrize(
    "text", ["-5", "0", "abc", "1.5", "", "0.5", "1e-3", "1.2.3", "5x", "k", "1,000", "0k"]
)
def test_parse_count_rejects(text):
    with pytest.raises(UsageError) as info:
        parse_count(text, "--agents")
    message = str(info.value)
    assert message.startswith("--agents:")
    assert repr(text) in message
    assert "\n" not in message


def test_parse_count_rejects_overflowing_numbers_cleanly():
    """``1e400`` is infinity as a float; it must be a UsageError, not an OverflowError."""
    with pytest.raises(UsageError, match="--days"):
        parse_count("1e400", "--days")


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["bench-seir", "--agents=-5"], ["--agents", "'-5'"]),
        (["bench-seir", "--agents", "-5"], ["--agents"]),
        (["bench-seir", "--agents", "0"], ["--agents", "'0'"]),
        (["bench-seir", "--agents", "abc"], ["--agents", "'abc'"]),
        (["bench-seir", "--agents", "1.5"], ["--agents", "'1.5'"]),
        (["bench-seir", "--agents", ""], ["--agents", "''"]),
        (["bench-seir", "--agents", "3e9"], ["--agents", "at most"]),
        (["bench-seir", "--days=-1"], ["--days", "'-1'"]),
        (["bench-seir", "--days", "0"], ["--days", "'0'"]),
        (["bench-seir", "--days", "soon"], ["--days", "'soon'"]),
        (["bench-seir", "--days", "2.5"], ["--days"]),
        (["bench-seir", "--seed=-1"], ["--seed"]),
        (["bench-seir", "--seed", "abc"], ["--seed"]),
        (["bench-seer"], ["bench-seer", "did you mean 'bench-seir'"]),
        (["no-such-model"], ["no-such-model", "bench-seir"]),
        (["NYC-COVID"], ["'NYC-COVID'", "did you mean 'nyc-covid'"]),
        (["Bench-Seir"], ["did you mean 'bench-seir'"]),
        (["nyc"], ["did you mean 'nyc-covid'"]),
        (["bench-seir", "--set", "BETA=0.1"], ["--set BETA", "did you mean 'beta'"]),
        (["bench-seir", "--set", "betta=0.1"], ["--set betta", "did you mean 'beta'"]),
        (["bench-seir", "--set", "gamma=0.1"], ["--set gamma", "unknown parameter"]),
        (["bench-seir", "--set", "beta=2"], ["--set beta", "[0, 1]"]),
        (["bench-seir", "--set", "beta=-0.1"], ["--set beta"]),
        (["bench-seir", "--set", "beta=nan"], ["--set beta"]),
        (["bench-seir", "--set", "beta=high"], ["--set beta", "'high'"]),
        (["bench-seir", "--set", "beta"], ["--set", "NAME=VALUE", "'beta'"]),
        (["bench-seir", "--set", "=0.1"], ["--set", "NAME=VALUE"]),
        (["bench-seir", "--set", "network=ring"], ["--set network", "households", "well-mixed", "'ring'"]),
        (["bench-seir", "--out", "series.txt"], ["--out", "series.txt"]),
        (["bench-seir", "--out", "series"], ["--out"]),
        (["bench-seir", "--device", "tpu"], ["--device", "'tpu'"]),
        (["bench-seir", "--device", "mps"], ["--device", "'mps'"]),
        (["bench-seir", "--device", "cuda:abc"], ["--device"]),
    ],
)
def test_bad_input_one_line_exit_2(run_cli, argv, fragments):
    # Small defaults first; a later --agents/--days in argv overrides them (argparse keeps the last).
    scenario, *rest = argv
    assert_one_line_error(run_cli("run", scenario, "--agents", "100", "--days", "2", *rest), *fragments)


def test_overflowing_agents_exit_2_without_traceback(run_cli):
    try:
        result = run_cli("run", "bench-seir", "--agents", "1e400")
    except OverflowError as exc:  # what a user sees as a traceback from the console script
        pytest.fail(f"--agents 1e400 raised {exc!r} instead of a one-line usage error")
    assert_one_line_error(result, "--agents")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA; the no-GPU message cannot show")
def test_device_cuda_without_gpu(run_cli):
    assert_one_line_error(run_cli("run", "bench-seir", *SMALL, "--device", "cuda"), "--device", "cuda")


def test_device_cuda_index_out_of_range(run_cli):
    assert_one_line_error(run_cli("run", "bench-seir", *SMALL, "--device", "cuda:99"), "--device")


@pytest.mark.parametrize("command", [("run", "classroom"), ("population", "build", "classroom")])
def test_too_few_agents_for_a_population_names_agents_and_a_size_that_works(run_cli, command):
    """Too few agents to give every area of a synthetic population an adult: one line naming ``--agents``
    and a size that works with the seed, which then runs."""
    result = run_cli(*command, "--agents", "5", *(["--days", "2"] if command[0] == "run" else []))
    assert_one_line_error(result, "--agents: 5 is too few", "adult", "works with this seed")
    works = result.err_lines()[0].rsplit("--agents ", 1)[1].split()[0]
    assert int(works) > 5
    assert run_cli("run", "classroom", "--agents", works, "--days", "1", "--json").code == 0


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"beta=0.1\n", "not JSON"),
        (b"", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[1]", "no 'parameters'"),
    ],
)
def test_a_params_file_that_is_not_one_says_so(run_cli, tmp_path, content, why):
    path = tmp_path / "fitted.txt"
    path.write_bytes(content)
    result = run_cli("run", "bench-seir", *SMALL, "--params", str(path))
    assert_one_line_error(
        result, "--params", repr(str(path)), "not a parameters.json written by populace calibrate", why
    )


def test_a_missing_params_file_says_so(run_cli, tmp_path):
    result = run_cli("run", "bench-seir", *SMALL, "--params", str(tmp_path / "none.json"))
    assert_one_line_error(result, "--params", "cannot read", "No such file")


def test_a_date_is_accepted_where_a_day_index_is_expected(run_cli):
    """nyc-covid's day 0 is its ``default_start`` (1 March 2020): 16 March is day 15."""
    argv = ("run", "nyc-covid", "--agents", "2000", "--days", "2", "--json")
    by_date = json.loads(run_cli(*argv, "--set", "school_close=2020-03-16").out)
    by_index = json.loads(run_cli(*argv, "--set", "school_close=15").out)
    assert by_date["options"]["school_close"] == by_index["options"]["school_close"] == 15
    assert by_date["daily"] == by_index["daily"]


@pytest.mark.parametrize(
    ("scenario", "value", "fragments"),
    [
        ("nyc-covid", "2020-02-01", ["--set school_close", "before day 0", "2020-03-01"]),
        ("classroom", "2020-03-16", ["--set school_close", "no start date"]),
    ],
)
def test_a_date_that_cannot_be_a_day_index_names_the_option(run_cli, scenario, value, fragments):
    result = run_cli("run", scenario, "--agents", "2000", "--days", "2", "--set", f"school_close={value}")
    assert_one_line_error(result, *fragments)


@pytest.mark.parametrize(("option", "unit"), [("--days", "days"), ("--agents", "agents")])
def test_a_bad_count_names_its_own_unit(run_cli, option, unit):
    other = {"days": "agents", "agents": "days"}[unit]
    result = run_cli("run", "bench-seir", *SMALL, option, "sixty")
    assert_one_line_error(result, option, f"whole number of {unit}", "'sixty'")
    assert other not in result.err_lines()[0].split(":", 2)[2]


# ----------------------------------------------------------------------------- --out: refusals
def test_out_under_missing_directory(run_cli, tmp_path):
    target = tmp_path / "missing" / "series.json"
    assert_one_line_error(
        run_cli("run", "bench-seir", *SMALL, "--out", str(target)), "--out", "does not exist"
    )
    assert not target.parent.exists()


def test_out_is_a_directory(run_cli, tmp_path):
    target = tmp_path / "series.json"
    target.mkdir()
    assert_one_line_error(run_cli("run", "bench-seir", *SMALL, "--out", str(target)), "--out", "directory")
    assert target.is_dir()
    assert list(target.iterdir()) == []


def test_out_parent_is_a_file(run_cli, tmp_path):
    parent = tmp_path / "file.txt"
    parent.write_text("x")
    assert_one_line_error(
        run_cli("run", "bench-seir", "--agents", "100", "--days", "2", "--out", str(parent / "series.csv")),
        "--out",
    )


def test_out_wrong_extension_writes_nothing(run_cli, tmp_path):
    target = tmp_path / "series.xlsx"
    assert_one_line_error(
        run_cli("run", "bench-seir", *SMALL, "--out", str(target)), "--out", ".parquet", ".csv", ".json"
    )
    assert list(tmp_path.iterdir()) == []


def test_out_unwritable_directory_message(run_cli, tmp_path, monkeypatch):
    """The not-writable branch, checked even as root by making ``os.access`` answer no for the directory."""
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path) == tmp_path and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    assert_one_line_error(
        run_cli(
            "run", "bench-seir", "--agents", "100", "--days", "2", "--out", str(tmp_path / "series.json")
        ),
        "--out",
        "not writable",
    )
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- --out: files
def read_series(path: Path) -> dict[str, list]:
    if path.suffix == ".json":
        return json.loads(path.read_text())
    table = pq.read_table(path) if path.suffix == ".parquet" else pcsv.read_csv(path)
    return table.to_pydict()


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".json"])
def test_out_writes_daily_series(run_cli, tmp_path, suffix):
    target = tmp_path / f"series{suffix}"
    summary = run_json(
        run_cli, "bench-seir", "--agents", "5k", "--days", "12", "--seed", "2", "--out", str(target)
    )
    assert target.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [target.name], "no temporary files may be left"
    cols = read_series(target)
    assert cols["day"] == list(range(12))
    for name in COMPARTMENTS:
        assert [int(x) for x in cols[name]] == summary["daily"][name], name
    for day in range(12):
        assert sum(int(cols[c][day]) for c in COMPARTMENTS) == 5_000


def test_out_human_readable_mentions_file(run_cli, tmp_path):
    target = tmp_path / "series.csv"
    result = run_cli("run", "bench-seir", "--agents", "1000", "--days", "3", "--out", str(target))
    assert result.code == 0, result.err
    assert f"wrote {target}" in result.out
    assert target.is_file()


def _partial_then_fail(data, where, *args, **kwargs):
    """A writer that leaves half a file at its destination and then fails, like a full disk."""
    Path(where).write_bytes(b"PAR1 half a file")
    raise OSError(28, "No space left on device")


def _fail_write(monkeypatch, suffix: str) -> None:
    if suffix == ".parquet":
        monkeypatch.setattr(pq, "write_table", _partial_then_fail)
    elif suffix == ".csv":
        monkeypatch.setattr(pcsv, "write_csv", _partial_then_fail)
    else:

        def write_text(self, data, *args, **kwargs):
            self.write_bytes(b'{"day": [0, 1')
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(pathlib.Path, "write_text", write_text)


def _result(days: int = 3) -> Result:
    series = {c: torch.arange(days) + i for i, c in enumerate(COMPARTMENTS)}
    return Result(days=torch.arange(days), series=series)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".json"])
def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch, suffix):
    target = tmp_path / f"series{suffix}"
    _fail_write(monkeypatch, suffix)
    with pytest.raises(OSError, match="No space"):
        _result().save(target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == [], "the temporary file must be removed"


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".json"])
def test_failed_write_keeps_previous_file(tmp_path, monkeypatch, suffix):
    target = tmp_path / f"series{suffix}"
    _result(5).save(target)
    before = target.read_bytes()
    _fail_write(monkeypatch, suffix)
    with pytest.raises(OSError, match="No space"):
        _result(3).save(target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_failed_write_through_the_cli_leaves_no_file(run_cli, tmp_path, monkeypatch):
    target = tmp_path / "series.parquet"
    _fail_write(monkeypatch, ".parquet")
    result = run_cli("run", "bench-seir", "--agents", "1000", "--days", "3", "--json", "--out", str(target))
    assert result.code == 1
    assert result.out == ""
    assert result.err.count("\n") == 1
    assert "--out" in result.err
    assert "No space" in result.err
    assert "Traceback" not in result.err
    assert list(tmp_path.iterdir()) == []


def test_result_save_rejects_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match="out"):
        _result().save(tmp_path / "series.xlsx")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- progress bar
def test_progress_bar_with_flag(run_cli, monkeypatch):
    monkeypatch.setattr(cli_run, "_Progress", functools.partial(cli_run._Progress, delay=0.0))
    result = run_cli("run", "bench-seir", "--agents", "2000", "--days", "10", "--json", "--progress")
    assert result.code == 0
    json.loads(result.out)  # stdout is still the one JSON object
    assert "day 10/10" in result.err
    assert "[" + "#" * 30 + "]" in result.err, "the bar is full at the end"
    assert result.err.endswith("\n")


def test_no_progress_bar_with_json_alone(run_cli, monkeypatch):
    monkeypatch.setattr(cli_run, "_Progress", functools.partial(cli_run._Progress, delay=0.0))
    result = run_cli("run", "bench-seir", "--agents", "2000", "--days", "10", "--json")
    assert result.code == 0
    assert result.err == ""


def test_progress_bar_by_default_without_json(run_cli, monkeypatch):
    monkeypatch.setattr(cli_run, "_Progress", functools.partial(cli_run._Progress, delay=0.0))
    result = run_cli("run", "bench-seir", "--agents", "2000", "--days", "4")
    assert result.code == 0
    assert "day 4/4" in result.err


def test_progress_class():
    stream = io.StringIO()
    bar = cli_run._Progress(4, stream, enabled=True, delay=0.0)
    for day in range(4):
        bar(day)
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") == 4
    assert "day 2/4" in text
    assert "[" + "#" * 15 + "." * 15 + "]" in text
    assert text.endswith("\n")

    quiet = io.StringIO()
    off = cli_run._Progress(4, quiet, enabled=False, delay=0.0)
    not_yet = cli_run._Progress(4, quiet, enabled=True, delay=1e9)
    for bar in (off, not_yet):
        for day in range(4):
            bar(day)
        bar.close()
    assert quiet.getvalue() == ""


def test_main_returns_int_zero(capsys):
    assert cli.main(["run", "bench-seir", "--agents", "500", "--days", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["agents"] == 500
