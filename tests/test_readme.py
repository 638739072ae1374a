"""The README starts with the two commands a new user runs; CI runs the second one verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [block.strip() for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)]


def test_readme_starts_with_two_one_line_commands():
    commands = readme_commands()
    assert len(commands) >= 2
    run, test = commands[:2]
    for command in (run, test):
        assert "\n" not in command, f"one command per block: {command!r}"
        assert command.startswith("python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e ")
    assert "populace" in run
    assert "pytest" in test


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


def test_readme_python_example_runs():
    text = (ROOT / "README.md").read_text()
    example = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["sim"].day == 100
    assert all(p.grad is not None for p in namespace["model"].parameters())
