"""Golden baselines (as Starsim's ``test_baselines.py``): a tiny run of every installed scenario is stored in
``tests/baselines/<scenario>.json`` and a fresh run must reproduce it.

After an intended change in results, rewrite the files and commit the reviewed diff with the change::

    .venv/bin/python tests/update_baselines.py [--scenario NAME ...]
    git diff tests/baselines

Integer series (fast-mode counts) must match exactly, float series within rtol 1e-6, gradients within
rtol 1e-4. Sizes, days, seed and outcomes are in ``tests/update_baselines.py`` (``SETUPS``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from update_baselines import BASELINES, UPDATE, baseline, path_of, setup

from populace.scenario import scenarios

SERIES_RTOL = 1e-6
GRADIENT_RTOL = 1e-4
SHOWN = 10
"""Differing series named in one failure message."""


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POPULACE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def fresh() -> dict[str, dict[str, Any]]:
    """Fresh baselines by scenario, computed once for the series and the gradient tests."""
    return {}


def _how_to_update(name: str) -> str:
    return (
        f"If the change in results is intended, run `{UPDATE.format(name=name)}` and commit the "
        f"reviewed diff of {path_of(name).relative_to(BASELINES.parent.parent)}."
    )


def _stored_and_fresh(name: str, fresh: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    path = path_of(name)
    if not path.exists():
        pytest.fail(f"{name}: no golden baseline {path.name}; create it with `{UPDATE.format(name=name)}`")
    stored = json.loads(path.read_text())
    if name not in fresh:
        fresh[name] = baseline(name)
    now = fresh[name]
    header = ("agents", "days", "seed", "options")
    if (
        any(stored.get(k) != now[k] for k in header)
        or stored["gradient"]["outcome"] != now["gradient"]["outcome"]
    ):
        was = {k: stored.get(k) for k in header} | {"outcome": stored["gradient"]["outcome"]}
        pytest.fail(
            f"{name}: the baseline run changed in tests/update_baselines.py ({setup(name)}) but {path.name} "
            f"still holds {was}. {_how_to_update(name)}"
        )
    return stored, now


def _differs(a: Any, b: Any, integer: bool, rtol: float) -> bool:
    if integer:
        return bool(a != b)
    return not math.isclose(a, b, rel_tol=rtol, abs_tol=0.0)


def series_mismatches(name: str, stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """One line per series that differs: the series (and entry), the first differing day, both values."""
    out: list[str] = []
    was, new = stored["series"], now["series"]
    out += [f"{name}: series {k!r} is stored but no longer reported" for k in was if k not in new]
    out += [f"{name}: series {k!r} is reported but not stored" for k in new if k not in was]
    for key in [k for k in was if k in new]:
        a, b = was[key], new[key]
        if (
            a["dtype"] != b["dtype"]
            or a.get("labels") != b.get("labels")
            or len(a["values"]) != len(b["values"])
        ):
            out.append(
                f"{name}: series {key!r} changed shape: stored {a['dtype']}, {len(a['values'])} days, labels "
                f"{a.get('labels')}; now {b['dtype']}, {len(b['values'])} days, labels {b.get('labels')}"
            )
            continue
        integer = not a["dtype"].startswith(("float", "bfloat"))
        labels = a.get("labels")
        for day, (x, y) in enumerate(zip(a["values"], b["values"], strict=True)):
            pairs = zip(x, y, labels, strict=True) if labels is not None else [(x, y, None)]
            hit = next(((u, v, label) for u, v, label in pairs if _differs(u, v, integer, SERIES_RTOL)), None)
            if hit is not None:
                u, v, label = hit
                entry = f"{key}.{label}" if label is not None else key
                out.append(f"{name}: series {entry!r} first differs on day {day}: stored {u!r}, now {v!r}")
                break
    return out


def gradient_mismatches(name: str, stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    was, new = stored["gradient"], now["gradient"]
    outcome = was["outcome"]
    out: list[str] = []
    if _differs(was["value"], new["value"], False, SERIES_RTOL):
        out.append(
            f"{name}: outcome {outcome} of the differentiable run: "
            f"stored {was['value']!r}, now {new['value']!r}"
        )
    a, b = was["parameters"], new["parameters"]
    out += [
        f"{name}: d({outcome})/d({p}) is stored but {p} is no longer a scalar learnable parameter"
        for p in a
        if p not in b
    ]
    out += [
        f"{name}: d({outcome})/d({p}) is not stored ({p} is a new learnable parameter)"
        for p in b
        if p not in a
    ]
    out += [
        f"{name}: d({outcome})/d({p}): stored {a[p]!r}, now {b[p]!r} (rtol {GRADIENT_RTOL})"
        for p in a
        if p in b and _differs(a[p], b[p], False, GRADIENT_RTOL)
    ]
    return out


def _report(name: str, problems: list[str]) -> str:
    more = [f"... and {len(problems) - SHOWN} more"] if len(problems) > SHOWN else []
    return "\n".join([*problems[:SHOWN], *more, _how_to_update(name)])


@pytest.mark.parametrize("name", sorted(scenarios()))
def test_series_match_the_golden_baseline(name: str, fresh: dict[str, dict[str, Any]]) -> None:
    stored, now = _stored_and_fresh(name, fresh)
    problems = series_mismatches(name, stored, now)
    if problems:
        pytest.fail(_report(name, problems), pytrace=False)


@pytest.mark.parametrize("name", sorted(scenarios()))
def test_gradients_match_the_golden_baseline(name: str, fresh: dict[str, dict[str, Any]]) -> None:
    stored, now = _stored_and_fresh(name, fresh)
    problems = gradient_mismatches(name, stored, now)
    if problems:
        pytest.fail(_report(name, problems), pytrace=False)


def test_every_golden_baseline_belongs_to_an_installed_scenario() -> None:
    stale = sorted(p.name for p in BASELINES.glob("*.json") if p.stem not in scenarios())
    assert not stale, (
        f"golden baselines of scenarios that are not installed (delete them if removed): {stale}"
    )


def test_a_changed_value_is_reported_with_its_series_day_and_values() -> None:
    """The comparison itself: a one-count change, a last-bits float change and a gradient change are caught,
    each named with its day and both values."""

    def stored() -> dict[str, Any]:
        return {
            "series": {
                "new_infections": {"dtype": "int64", "values": [0, 2, 5, 9]},
                "p_work": {"dtype": "float32", "labels": ["child", "adult"], "values": [[0.75, 0.9]] * 4},
            },
            "gradient": {"outcome": "total:new_infections", "value": 16.0, "parameters": {"beta": 123.0}},
        }

    was, now = stored(), stored()
    assert series_mismatches("town", was, now) == []
    assert gradient_mismatches("town", was, now) == []
    now["series"]["new_infections"]["values"][2] = 6
    now["series"]["p_work"]["values"][3] = [0.75, 0.9 * (1 + 1e-5)]
    now["series"]["p_work"]["values"][1] = [0.75, 0.9 * (1 + 1e-7)]  # within rtol 1e-6
    now["gradient"]["parameters"]["beta"] = 123.0 * 1.001
    problems = series_mismatches("town", was, now)
    assert problems == [
        "town: series 'new_infections' first differs on day 2: stored 5, now 6",
        f"town: series 'p_work.adult' first differs on day 3: stored 0.9, now {0.9 * (1 + 1e-5)!r}",
    ]
    assert gradient_mismatches("town", was, now) == [
        f"town: d(total:new_infections)/d(beta): stored 123.0, now {123.0 * 1.001!r} (rtol {GRADIENT_RTOL})"
    ]
    assert "python tests/update_baselines.py --scenario town" in _report("town", problems)
