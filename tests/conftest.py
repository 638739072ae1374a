"""Shared fixtures: an in-process runner for the ``populace`` command line."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import torch

from populace import cli


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def err_lines(self) -> list[str]:
        return self.err.splitlines()


CliRunner = Callable[..., CliResult]


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """Call ``populace.cli.main(argv)`` in-process; argparse's own errors (``SystemExit``) become codes."""

    def runner(*argv: str) -> CliResult:
        capsys.readouterr()  # drop anything printed before this call
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return runner


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread for the test (``pytestmark = pytest.mark.usefixtures("one_thread")``): small tensors
    run faster on one thread of a shared 2-core machine than on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
