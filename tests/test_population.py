"""Typed populations: construction checks, safetensors/Parquet round trips, atomic saves, and the
benchmark population builder."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import safetensors.torch
import torch
from torch import Tensor

from populace import Population, PopulationFileError, RandomStreams, column
from populace.scenarios.bench_seir import People, build_people
from populace.scenarios.bench_seir.population import (
    COMMUNITY_GROUP,
    SCHOOL_AGES,
    SCHOOL_CLASS,
    WORK_AGES,
    WORK_GROUP,
)

SUFFIXES = (".safetensors", ".parquet")
N = 20_000


@pytest.fixture(scope="module")
def people() -> People:
    return build_people(N, RandomStreams(11, "cpu"))


@dataclass
class Household(Population):
    """Another population class, to check that files are not read as the wrong class."""

    size: Tensor = column(torch.int32, "members")


def tiny(n: int = 5, **override: Tensor) -> People:
    cols = {
        "age": torch.arange(n, dtype=torch.uint8) * 10,
        "household": torch.arange(n, dtype=torch.int32) // 2,
        "school": torch.full((n,), -1, dtype=torch.int32),
        "work": torch.zeros(n, dtype=torch.int32),
        "community": torch.zeros(n, dtype=torch.int32),
    }
    cols.update(override)
    return People(**cols)


# ----------------------------------------------------------------------------- construction
def test_columns_and_properties():
    p = tiny()
    assert p.n == 5
    assert p.device == torch.device("cpu")
    assert list(p.columns()) == ["age", "household", "school", "work", "community"]
    assert p.nbytes() == 5 * (1 + 4 * 4)
    assert {f.name: f.metadata["dtype"] for f in dataclasses.fields(People)} == {
        "age": torch.uint8,
        "household": torch.int32,
        "school": torch.int32,
        "work": torch.int32,
        "community": torch.int32,
    }


def test_wrong_dtype_names_the_field():
    with pytest.raises(TypeError, match=r"People\.household: expected torch\.int32, got torch\.int64"):
        tiny(household=torch.zeros(5, dtype=torch.int64))


def test_not_a_tensor_names_the_field():
    with pytest.raises(TypeError, match=r"People\.age: expected a tensor"):
        tiny(age=[1, 2, 3, 4, 5])  # type: ignore[arg-type]


def test_not_one_dimensional_names_the_field():
    with pytest.raises(ValueError, match=r"People\.work: expected 1-D, got shape \(5, 1\)"):
        tiny(work=torch.zeros(5, 1, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"People\.work: expected 1-D"):
        tiny(work=torch.tensor(0, dtype=torch.int32))


def test_wrong_length_names_the_field():
    """A column of another length must be named, as the dtype and shape errors do."""
    with pytest.raises(ValueError, match="expected 5 values") as info:
        tiny(school=torch.full((4,), -1, dtype=torch.int32))
    assert "school" in str(info.value), f"the message does not say which column is wrong: {info.value}"


def test_columns_on_different_devices_rejected():
    with pytest.raises(ValueError, match="different devices"):
        tiny(community=torch.zeros(5, dtype=torch.int32, device="meta"))


def test_to_moves_every_column():
    moved = tiny().to("meta")
    assert isinstance(moved, People)
    assert moved.device.type == "meta"
    assert all(v.device.type == "meta" for v in moved.columns().values())


# ----------------------------------------------------------------------------- files
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip(people, tmp_path, suffix):
    path = tmp_path / f"people{suffix}"
    people.save(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "no temporary files may be left"
    loaded = People.load(path)
    assert isinstance(loaded, People)
    assert loaded.n == N
    for name, original in people.columns().items():
        value = getattr(loaded, name)
        assert value.dtype == original.dtype, name
        assert torch.equal(value, original), name


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_load_onto_a_device(tmp_path, suffix):
    path = tmp_path / f"people{suffix}"
    tiny().save(path)
    assert People.load(path, device="meta").device.type == "meta"


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_save_replaces_an_existing_file(tmp_path, suffix):
    path = tmp_path / f"people{suffix}"
    tiny(5).save(path)
    tiny(7).save(path)
    assert People.load(path).n == 7
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_load_rejects_another_class(tmp_path, suffix):
    path = tmp_path / f"households{suffix}"
    Household(size=torch.ones(3, dtype=torch.int32)).save(path)
    with pytest.raises(ValueError, match="'Household'") as info:
        People.load(path)
    assert "'People'" in str(info.value)
    people_path = tmp_path / f"people{suffix}"
    tiny().save(people_path)
    with pytest.raises(ValueError, match="'People'"):
        Household.load(people_path)


def _write_raw(path, columns: dict[str, Tensor], meta: dict[str, str] | None) -> None:
    """A file as another program (or an older version) might have written it."""
    if path.suffix == ".safetensors":
        safetensors.torch.save_file(columns, str(path), metadata=meta)
    else:
        table = pa.table({k: v.numpy() for k, v in columns.items()})
        if meta is not None:
            table = table.replace_schema_metadata({"populace": json.dumps(meta)})
        pq.write_table(table, path)


PEOPLE_META = {"class": "People", "format_version": "1"}


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_load_rejects_missing_columns(tmp_path, suffix):
    path = tmp_path / f"people{suffix}"
    columns = tiny().columns()
    del columns["community"]
    _write_raw(path, columns, PEOPLE_META)
    with pytest.raises(ValueError, match="do not match") as info:
        People.load(path)
    assert "community" in str(info.value)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_load_rejects_extra_columns(tmp_path, suffix):
    path = tmp_path / f"people{suffix}"
    columns = {**tiny().columns(), "income": torch.zeros(5, dtype=torch.int32)}
    _write_raw(path, columns, PEOPLE_META)
    with pytest.raises(ValueError, match="income"):
        People.load(path)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_load_rejects_wrong_dtype_in_file(tmp_path, suffix):
    path = tmp_path / f"people{suffix}"
    columns = {**tiny().columns(), "age": torch.arange(5, dtype=torch.int64)}
    _write_raw(path, columns, PEOPLE_META)
    with pytest.raises(TypeError, match=r"People\.age"):
        People.load(path)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_load_rejects_files_without_populace_metadata(tmp_path, suffix):
    path = tmp_path / f"people{suffix}"
    _write_raw(path, tiny().columns(), None)
    with pytest.raises(ValueError, match="expected 'People'"):
        People.load(path)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_load_rejects_another_format_version(tmp_path, suffix):
    path = tmp_path / f"people{suffix}"
    _write_raw(path, tiny().columns(), {"class": "People", "format_version": "0"})
    with pytest.raises(ValueError, match="format"):
        People.load(path)


def test_parquet_load_gives_writable_tensors(tmp_path):
    """Loaded columns must own writable memory: torch warns that writing to a tensor made from a read-only
    NumPy array (Arrow's buffers) is undefined behaviour. Run in a fresh process, as torch warns only once."""
    path = tmp_path / "people.parquet"
    tiny().save(path)
    code = (
        "import sys, warnings\n"
        "from populace.scenarios.bench_seir import People\n"
        "warnings.simplefilter('error')\n"
        "people = People.load(sys.argv[1])\n"
        "people.age[0] = 42\n"
        "assert int(people.age[0]) == 42\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1]


def test_unknown_suffix_rejected_and_nothing_written(tmp_path):
    with pytest.raises(ValueError, match=r"\.safetensors or \.parquet"):
        tiny().save(tmp_path / "people.pt")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "people.csv").write_text("age\n1\n")
    with pytest.raises(ValueError, match=r"\.safetensors or \.parquet"):
        People.load(tmp_path / "people.csv")


def _half_written(data, where, *args, **kwargs):
    with open(where, "wb") as handle:
        handle.write(b"half a file")
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_failed_save_is_atomic(tmp_path, monkeypatch, suffix):
    if suffix == ".safetensors":
        monkeypatch.setattr(safetensors.torch, "save_file", _half_written)
    else:
        monkeypatch.setattr(pq, "write_table", _half_written)
    path = tmp_path / f"people{suffix}"
    with pytest.raises(OSError, match="No space"):
        tiny().save(path)
    assert list(tmp_path.iterdir()) == [], "neither the target nor a temporary file may be left"
    monkeypatch.undo()

    tiny(5).save(path)
    before = path.read_bytes()
    if suffix == ".safetensors":
        monkeypatch.setattr(safetensors.torch, "save_file", _half_written)
    else:
        monkeypatch.setattr(pq, "write_table", _half_written)
    with pytest.raises(OSError, match="No space"):
        tiny(7).save(path)
    assert path.read_bytes() == before, "a failed save must leave the previous file intact"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


# ----------------------------------------------------------------------------- build_people
def test_build_people_is_deterministic_by_seed(people):
    again = build_people(N, RandomStreams(11, "cpu"))
    for name, value in people.columns().items():
        assert torch.equal(value, getattr(again, name)), name
    other = build_people(N, RandomStreams(12, "cpu"))
    assert not torch.equal(people.age, other.age)
    assert not torch.equal(people.community, other.community)


def test_build_people_columns(people):
    assert isinstance(people, People)
    assert people.n == N
    for name, value in people.columns().items():
        assert value.numel() == N, name
    assert int(people.age.min()) >= 0
    assert int(people.age.max()) <= 104  # the oldest band starts at 100
    assert int(people.household.min()) == 0
    for name in ("school", "work", "community"):
        assert int(getattr(people, name).min()) >= -1, f"{name}: -1 is the only negative value"


def test_households(people):
    household = people.household.long()
    assert int(household.min()) == 0
    assert bool((household[1:] >= household[:-1]).all()), "agents are stored household by household"
    sizes = torch.bincount(household)
    assert int(sizes.min()) >= 1, "household indices are contiguous and every household has a member"
    assert float(sizes[:-1].double().mean()) == pytest.approx(3.0, abs=0.1)  # 1 + Poisson(2); last may be cut
    assert int(sizes.max()) < 20


def test_school_and_work_membership_follows_age(people):
    age = people.age.long()
    in_school = people.school >= 0
    at_work = people.work >= 0
    assert torch.equal(in_school, (age >= SCHOOL_AGES[0]) & (age < SCHOOL_AGES[1]))
    assert torch.equal(at_work, (age >= WORK_AGES[0]) & (age < WORK_AGES[1]))
    assert int(age[in_school].min()) == 6
    assert int(age[in_school].max()) == 21
    assert int(age[at_work].min()) == 22
    assert int(age[at_work].max()) == 64
    assert not bool((in_school & at_work).any())
    assert 0.1 < float(in_school.double().mean()) < 0.35
    assert 0.45 < float(at_work.double().mean()) < 0.7


@pytest.mark.parametrize(
    ("name", "size"), [("school", SCHOOL_CLASS), ("work", WORK_GROUP), ("community", COMMUNITY_GROUP)]
)
def test_groups_have_the_declared_size(people, name, size):
    place = getattr(people, name).long()
    members = place[place >= 0]
    counts = torch.bincount(members)
    assert int(counts.min()) >= 1
    assert bool((counts[:-1] == size).all()), f"{name}: all groups but the last hold {size}"
    assert int(counts[-1]) <= size


def test_everyone_is_in_the_community(people):
    assert bool((people.community >= 0).all())


def test_community_groups_are_shuffled(people):
    """Groups are random, not consecutive agents (which would copy the household structure)."""
    assert not torch.equal(people.community.long(), torch.arange(N) // COMMUNITY_GROUP)


@pytest.mark.parametrize("n", [1, 2, 7])
def test_build_tiny_populations(n):
    p = build_people(n, RandomStreams(0, "cpu"))
    assert p.n == n
    assert bool((p.household >= 0).all())
    assert bool((p.community >= 0).all())


# ----------------------------------------------------------------------------- integrity
@pytest.mark.parametrize("suffix", [".safetensors", ".parquet"])
def test_metadata_round_trips_and_hash_is_recorded(tmp_path, suffix):
    people = tiny()
    path = tmp_path / f"people{suffix}"
    people.save(path, metadata={"cache_key": "abc123"})
    meta = Population.read_metadata(path)
    assert meta["cache_key"] == "abc123"
    assert meta["content_sha256"] == people.content_hash()


def test_flipped_byte_is_detected(tmp_path):
    people = build_people(5_000, RandomStreams(1, "cpu"))
    path = tmp_path / "people.safetensors"
    people.save(path)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # inside the last column's data, past the header
    path.write_bytes(bytes(data))
    with pytest.raises(PopulationFileError, match="checksum"):
        People.load(path)


@pytest.mark.parametrize("suffix", [".safetensors", ".parquet"])
def test_truncated_file_is_detected(tmp_path, suffix):
    path = tmp_path / f"people{suffix}"
    build_people(5_000, RandomStreams(1, "cpu")).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(PopulationFileError):
        People.load(path)
    with pytest.raises(PopulationFileError):
        Population.read_metadata(path)
