"""Typed populations: a struct of arrays, one compact tensor per attribute.

Subclass :class:`Population` as a dataclass whose fields are declared with :func:`column`::

    @dataclass
    class People(Population):
        age: Tensor = column(torch.uint8, "age in whole years")
        household: Tensor = column(torch.int32, "household index")

Every column is ``dtype[agents]`` on one device; construction checks lengths and dtypes, so a typo or a
wrong dtype fails at once, not at day 90. ``save``/``load`` use safetensors (``.safetensors``) or
Parquet (``.parquet``), never pickle; writes are atomic.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch

from .files import atomic_path

__all__ = ["Population", "PopulationFileError", "column"]

FORMAT_VERSION = "1"


class PopulationFileError(ValueError):
    """A population file that is unreadable, of another kind, or whose content fails its checksum."""


def column(dtype: torch.dtype, doc: str) -> Any:
    """Declare a population column of ``dtype`` (one value per agent) with its documentation."""
    return dataclasses.field(metadata={"dtype": dtype, "doc": doc})


@dataclasses.dataclass
class Population:
    """Base class of typed agent populations (see module docs)."""

    kind: ClassVar[str] = "agents"

    def __post_init__(self) -> None:
        first: tuple[str, int] | None = None
        devices = set()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, torch.Tensor):
                raise TypeError(
                    f"{type(self).__name__}.{f.name}: expected a tensor, got {type(value).__name__}"
                )
            if value.dim() != 1:
                raise ValueError(
                    f"{type(self).__name__}.{f.name}: expected 1-D, got shape {tuple(value.shape)}"
                )
            expected = f.metadata["dtype"]
            if value.dtype != expected:
                raise TypeError(f"{type(self).__name__}.{f.name}: expected {expected}, got {value.dtype}")
            if first is None:
                first = (f.name, value.numel())
            elif value.numel() != first[1]:
                raise ValueError(
                    f"{type(self).__name__}.{f.name}: expected {first[1]} values like {first[0]}, "
                    f"got {value.numel()}"
                )
            devices.add(value.device)
        if len(devices) > 1:
            raise ValueError(f"{type(self).__name__}: columns are on different devices {devices}")

    @property
    def n(self) -> int:
        """Number of agents."""
        first = dataclasses.fields(self)[0]
        return int(getattr(self, first.name).numel())

    @property
    def device(self) -> torch.device:
        first = dataclasses.fields(self)[0]
        return getattr(self, first.name).device

    def columns(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def slice(self, start: int, stop: int) -> Self:
        """Agents ``start … stop − 1`` (copies: the whole population's columns can then be freed)."""
        return type(self)(**{k: v[start:stop].clone() for k, v in self.columns().items()})

    def to(self, device: torch.device | str) -> Self:
        return type(self)(**{k: v.to(device) for k, v in self.columns().items()})

    def nbytes(self) -> int:
        """Bytes held by the columns."""
        return sum(v.numel() * v.element_size() for v in self.columns().values())

    def content_hash(self) -> str:
        """SHA-256 of the column names, dtypes and bytes (what :meth:`load` verifies)."""
        digest = hashlib.sha256()
        for name, value in self.columns().items():
            data = value.detach().cpu().contiguous()
            digest.update(f"{name}:{data.dtype}:{data.numel()};".encode())
            digest.update(data.view(torch.uint8).numpy().data if data.numel() else b"")
        return digest.hexdigest()

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None) -> None:
        """Write atomically to ``.safetensors`` or ``.parquet`` (chosen by extension), with a checksum of the
        content and ``metadata`` (string pairs, readable back with :meth:`read_metadata`)."""
        path = Path(path)
        meta = {
            **(metadata or {}),
            "class": type(self).__name__,
            "format_version": FORMAT_VERSION,
            "content_sha256": self.content_hash(),
        }
        columns = {k: v.detach().cpu().contiguous() for k, v in self.columns().items()}
        with atomic_path(path) as tmp:
            if path.suffix == ".safetensors":
                from safetensors.torch import save_file

                save_file(columns, str(tmp), metadata=meta)
            elif path.suffix == ".parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.table({k: v.numpy() for k, v in columns.items()})
                table = table.replace_schema_metadata({"populace": json.dumps(meta)})
                pq.write_table(table, tmp)
            else:
                raise ValueError(f"path: expected a .safetensors or .parquet file, got {str(path)!r}")

    @staticmethod
    def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
        """The metadata stored by :meth:`save` (without reading the columns)."""
        path = Path(path)
        try:
            if path.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(path), framework="pt") as handle:
                    return dict(handle.metadata() or {})
            if path.suffix == ".parquet":
                import pyarrow.parquet as pq

                raw = (pq.read_schema(path).metadata or {}).get(b"populace", b"{}")
                return dict(json.loads(raw))
        except (OSError, ValueError, RuntimeError) as exc:
            raise PopulationFileError(f"{path}: unreadable ({exc})") from exc
        except Exception as exc:  # safetensors raises its own error type on a damaged header
            raise PopulationFileError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc
        raise ValueError(f"path: expected a .safetensors or .parquet file, got {str(path)!r}")

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: torch.device | str = "cpu") -> Self:
        """Read a file written by :meth:`save`; checks the class, columns, dtypes and the content checksum.

        Raises :class:`PopulationFileError` for a damaged, foreign or tampered file."""
        path = Path(path)
        if path.suffix not in (".safetensors", ".parquet"):
            raise ValueError(f"path: expected a .safetensors or .parquet file, got {str(path)!r}")
        try:
            meta, columns = cls._read(path)
        except PopulationFileError:
            raise
        except Exception as exc:  # a truncated or damaged file
            raise PopulationFileError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc
        if meta.get("class") != cls.__name__ or meta.get("format_version") != FORMAT_VERSION:
            raise PopulationFileError(
                f"{path}: holds {meta.get('class')!r} format {meta.get('format_version')!r}, "
                f"expected {cls.__name__!r} format {FORMAT_VERSION!r}"
            )
        expected = {f.name for f in dataclasses.fields(cls)}
        if set(columns) != expected:
            raise PopulationFileError(f"{path}: columns {sorted(columns)} do not match {sorted(expected)}")
        population = cls(**columns)
        if population.content_hash() != meta.get("content_sha256"):
            raise PopulationFileError(f"{path}: content does not match its checksum (damaged file)")
        return population if torch.device(device).type == "cpu" else population.to(device)

    @staticmethod
    def _read(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                meta = dict(handle.metadata() or {})
                columns = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
            return meta, columns
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {}).get(b"populace", b"{}"))
        columns = {
            name: torch.from_numpy(np.array(table.column(name).to_numpy(), copy=True))
            for name in table.column_names
        }
        return meta, columns
