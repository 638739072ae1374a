"""Geography: projection, polygon areas, point-in-area tests and uniform sampling inside areas."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from populace.synth.geography import PolygonSet, lonlat_to_mercator, sample_in_disc

R = 6378137.0
NYC = Path("/work/shared/data/nyc")
MODZCTA = NYC / "nyc_modzcta_2010.geo.json"
BOROUGHS = NYC / "nyc_boroughs_3857.geojson"
needs_nyc = pytest.mark.skipif(not MODZCTA.is_file(), reason="NYC data not present")


def t64(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def ring(*xy: tuple[float, float]) -> torch.Tensor:
    return torch.tensor(xy, dtype=torch.float64)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


SQUARE = ring((0, 0), (1, 0), (1, 1), (0, 1))
HOLE = ring((0.25, 0.25), (0.25, 0.75), (0.75, 0.75), (0.75, 0.25))  # clockwise, as GeoJSON holes are
PART2 = ring((2, 0), (3, 0), (3, 2), (2, 2))
TRIANGLE = ring((0, 0), (0, 1), (1, 0))  # clockwise on purpose


@pytest.fixture
def shapes() -> PolygonSet:
    """``holed``: unit square minus the middle quarter; ``multi``: two squares; ``triangle``."""
    return PolygonSet(
        ("holed", "multi", "triangle"),
        (((SQUARE, HOLE),), ((SQUARE,), (PART2,)), ((TRIANGLE,),)),
    )


def write_geojson(path: Path, features: list[dict], crs: object = None) -> Path:
    doc: dict = {"type": "FeatureCollection", "features": features}
    if crs is not None:
        doc["crs"] = crs
    path.write_text(json.dumps(doc))
    return path


def square_feature(area_id: object, x0: float, y0: float, size: float, key: str = "id") -> dict:
    coords = [[[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size], [x0, y0]]]
    return {
        "type": "Feature",
        "properties": {key: area_id},
        "geometry": {"type": "Polygon", "coordinates": coords},
    }


def even_odd_reference(rings: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Textbook even-odd test (PNPOLY), one edge at a time over all rings."""
    inside = np.zeros(x.shape, dtype=bool)
    for r in rings:
        for (x1, y1), (x2, y2) in zip(r, np.roll(r, -1, 0), strict=True):
            if y1 == y2:
                continue
            crosses = ((y1 > y) != (y2 > y)) & (x < (x2 - x1) * (y - y1) / (y2 - y1) + x1)
            inside ^= crosses
    return inside


# ---------------------------------------------------------------------- projection
def test_mercator_known_values() -> None:
    x, y = lonlat_to_mercator(
        t64(180.0, -180.0, 0.0, -74.0060, 0.0), t64(0.0, 0.0, 0.0, 40.7128, 85.0511287798066)
    )
    assert x.dtype == y.dtype == torch.float64
    assert x[0].item() == pytest.approx(20037508.342789244, abs=1e-6)
    assert x[1].item() == pytest.approx(-20037508.342789244, abs=1e-6)
    assert x[2].item() == 0.0
    assert y[:3].tolist() == [0.0, 0.0, 0.0]
    assert y[3].item() == pytest.approx(4970071.579142, abs=1e-3)  # New York City Hall
    assert x[3].item() == pytest.approx(-74.0060 / 180 * math.pi * R, abs=1e-6)
    # Web Mercator is square: the latitude limit 85.0511...° maps to y = x(180°).
    assert y[4].item() == pytest.approx(20037508.342789244, abs=1e-3)


def test_mercator_inverts_and_is_odd_in_latitude() -> None:
    lon = torch.linspace(-179.9, 179.9, 101, dtype=torch.float64)
    lat = torch.linspace(-84.0, 84.0, 101, dtype=torch.float64)
    x, y = lonlat_to_mercator(lon, lat)
    torch.testing.assert_close(torch.rad2deg(x / R), lon, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        torch.rad2deg(2 * torch.atan(torch.exp(y / R)) - math.pi / 2), lat, rtol=0, atol=1e-10
    )
    torch.testing.assert_close(y, -y.flip(0), rtol=0, atol=1e-6)
    assert bool((y.diff() > 0).all())


def test_mercator_rejects_poles_and_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="lat"):
        lonlat_to_mercator(t64(0.0), t64(90.0))
    with pytest.raises(ValueError, match="shapes"):
        lonlat_to_mercator(t64(0.0, 1.0), t64(0.0))


# ---------------------------------------------------------------------- synthetic shapes
def test_area_of_known_shapes(shapes: PolygonSet) -> None:
    assert shapes.area_m2().tolist() == [0.75, 3.0, 0.5]
    assert shapes.bounds().tolist() == [[0, 0, 1, 1], [0, 0, 3, 2], [0, 0, 1, 1]]
    far = PolygonSet(("far",), (((SQUARE * 1000 + 2e7,),),))  # large offsets: computed about a vertex
    assert far.area_m2().item() == 1e6


def test_contains_square_with_hole(shapes: PolygonSet) -> None:
    x = t64(0.1, 0.9, 0.5, 0.3, 0.5, -0.1, 1.5, 0.5, 0.2)
    y = t64(0.1, 0.5, 0.1, 0.5, 0.5, 0.5, 0.5, 1.2, 0.8)
    expected = [True, True, True, False, False, False, False, False, True]
    assert shapes.contains(shapes.index("holed"), x, y).tolist() == expected


def test_contains_multipolygon_and_triangle(shapes: PolygonSet) -> None:
    x = t64(0.5, 2.5, 2.5, 1.5, 3.5, 2.5)
    y = t64(0.5, 1.5, 0.5, 0.5, 1.0, 2.5)
    assert shapes.contains(1, x, y).tolist() == [True, True, True, False, False, False]
    assert shapes.contains(2, t64(0.2, 0.6, 0.45), t64(0.2, 0.6, 0.5)).tolist() == [True, False, True]
    # Shapes are kept; an empty query is fine.
    assert shapes.contains(0, t64(0.1, 0.5).reshape(2, 1), t64(0.1, 0.5).reshape(2, 1)).shape == (2, 1)
    assert shapes.contains(0, t64(), t64()).numel() == 0


def test_contains_matches_reference_on_random_points(shapes: PolygonSet) -> None:
    g = gen(3)
    x = torch.rand(4000, generator=g, dtype=torch.float64) * 3.4 - 0.2
    y = torch.rand(4000, generator=g, dtype=torch.float64) * 2.4 - 0.2
    for area, rings in enumerate([[SQUARE, HOLE], [SQUARE, PART2], [TRIANGLE]]):
        expected = even_odd_reference([r.numpy() for r in rings], x.numpy(), y.numpy())
        assert shapes.contains(area, x, y).numpy().tolist() == expected.tolist()


def test_sample_is_inside_and_uniform_with_a_hole(shapes: PolygonSet) -> None:
    n = 24_000
    x, y = shapes.sample(torch.zeros(n, dtype=torch.int64), gen(1))
    assert x.dtype == y.dtype == torch.float64
    assert bool(shapes.contains(0, x, y).all())
    in_hole = (x > 0.25) & (x < 0.75) & (y > 0.25) & (y < 0.75)
    assert int(in_hole.sum()) == 0
    # A 4x4 grid: the middle 4 cells are the hole, each of the 12 others holds 1/12 of the area.
    cell = (x * 4).floor().clamp(max=3) * 4 + (y * 4).floor().clamp(max=3)
    counts = torch.bincount(cell.long(), minlength=16).reshape(4, 4).double() / n
    assert counts[1:3, 1:3].sum().item() == 0
    ring_cells = torch.cat([counts[0], counts[3], counts[1:3, 0], counts[1:3, 3]])
    sd = math.sqrt((1 / 12) * (11 / 12) / n)
    assert (ring_cells - 1 / 12).abs().max().item() < 5 * sd  # ≈ 0.009


def test_sample_multipolygon_and_triangle_shares(shapes: PolygonSet) -> None:
    n = 20_000
    area_of_point = torch.tensor([1, 2], dtype=torch.int64).repeat(n)  # interleaved areas
    x, y = shapes.sample(area_of_point, gen(2))
    multi, tri = area_of_point == 1, area_of_point == 2
    assert bool(shapes.contains(1, x[multi], y[multi]).all())
    assert bool(shapes.contains(2, x[tri], y[tri]).all())
    in_part2 = (x[multi] > 2).double().mean().item()
    assert in_part2 == pytest.approx(2 / 3, abs=0.015)  # the 1x2 part has 2/3 of the area
    left_half = (x[tri] < 0.5).double().mean().item()
    assert left_half == pytest.approx(0.75, abs=0.015)
    low_left = ((x[tri] < 0.25) & (y[tri] < 0.25)).double().mean().item()
    assert low_left == pytest.approx(0.0625 / 0.5, abs=0.012)


def test_sample_is_deterministic(shapes: PolygonSet) -> None:
    area_of_point = torch.randint(0, 3, (5000,), generator=gen(9))
    a = shapes.sample(area_of_point, gen(5))
    b = shapes.sample(area_of_point, gen(5))
    c = shapes.sample(area_of_point, gen(6))
    assert torch.equal(a[0], b[0])
    assert torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    empty = shapes.sample(torch.zeros(0, dtype=torch.int64), gen(5))
    assert empty[0].shape == empty[1].shape == (0,)


def test_sample_rejects_bad_areas(shapes: PolygonSet) -> None:
    with pytest.raises(ValueError, match="area_of_point"):
        shapes.sample(torch.tensor([0, 3]), gen())
    with pytest.raises(ValueError, match="area_of_point"):
        shapes.sample(torch.tensor([-1]), gen())
    with pytest.raises(ValueError, match="area_of_point"):
        shapes.sample(torch.tensor([0.0]), gen())
    with pytest.raises(ValueError, match="area"):
        shapes.contains(3, t64(0.5), t64(0.5))
    flat = PolygonSet(("flat",), (((ring((0, 0), (1, 0), (2, 0)),),),))
    with pytest.raises(ValueError, match="zero area"):
        flat.sample(torch.zeros(1, dtype=torch.int64), gen())


def test_index_and_constructor_errors(shapes: PolygonSet) -> None:
    assert [shapes.index(i) for i in ("holed", "multi", "triangle")] == [0, 1, 2]
    with pytest.raises(ValueError, match="'nowhere'"):
        shapes.index("nowhere")
    with pytest.raises(ValueError, match="duplicate id 'a'"):
        PolygonSet(("a", "a"), (((SQUARE,),), ((SQUARE,),)))
    with pytest.raises(ValueError, match="one entry per id"):
        PolygonSet(("a", "b"), (((SQUARE,),),))
    with pytest.raises(ValueError, match="vertices"):
        PolygonSet(("a",), (((ring((0, 0), (1, 1)),),),))


# ---------------------------------------------------------------------- GeoJSON files
def test_from_geojson_projects_wgs84_and_keeps_3857(tmp_path: Path) -> None:
    lonlat = write_geojson(tmp_path / "a.json", [square_feature("z", -74.0, 40.7, 0.01)])
    ps = PolygonSet.from_geojson(lonlat, "id")
    x, y = lonlat_to_mercator(t64(-74.0, -73.99), t64(40.7, 40.71))
    torch.testing.assert_close(ps.bounds()[0], torch.stack([x[0], y[0], x[1], y[1]]), rtol=0, atol=1e-6)
    for crs in (
        "EPSG:3857",
        {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}},
        {"type": "EPSG", "properties": {"code": 3857}},
    ):
        path = write_geojson(tmp_path / "m.json", [square_feature(7, 100.0, 200.0, 10.0)], crs)
        kept = PolygonSet.from_geojson(path, "id")
        assert kept.ids == ("7",)
        assert kept.bounds().tolist() == [[100, 200, 110, 210]]
        assert kept.area_m2().item() == 100.0
    crs84 = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}
    path = write_geojson(tmp_path / "c.json", [square_feature("z", -74.0, 40.7, 0.01)], crs84)
    torch.testing.assert_close(PolygonSet.from_geojson(path, "id").bounds(), ps.bounds())


def test_from_geojson_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no GeoJSON file"):
        PolygonSet.from_geojson(tmp_path / "missing.json", "id")
    (tmp_path / "broken.json").write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(ValueError, match="not valid JSON"):
        PolygonSet.from_geojson(tmp_path / "broken.json", "id")
    path = write_geojson(tmp_path / "a.json", [square_feature("a", 0, 0, 1), square_feature("b", 2, 0, 1)])
    with pytest.raises(ValueError, match="no property 'name'"):
        PolygonSet.from_geojson(path, "name")
    dup = write_geojson(tmp_path / "d.json", [square_feature("a", 0, 0, 1), square_feature("a", 2, 0, 1)])
    with pytest.raises(ValueError, match="duplicate id 'a'"):
        PolygonSet.from_geojson(dup, "id")
    point = {
        "type": "Feature",
        "properties": {"id": "p"},
        "geometry": {"type": "Point", "coordinates": [0, 0]},
    }
    bad = write_geojson(tmp_path / "p.json", [square_feature("a", 0, 0, 1), point])
    with pytest.raises(ValueError, match="geometry type 'Point'"):
        PolygonSet.from_geojson(bad, "id")
    with pytest.raises(ValueError, match="drop"):
        PolygonSet.from_geojson(path, "id", drop=["c"])
    assert PolygonSet.from_geojson(path, "id", drop=["a"]).ids == ("b",)
    other = write_geojson(tmp_path / "o.json", [square_feature("a", 0, 0, 1)], "EPSG:2263")
    with pytest.raises(ValueError, match="unsupported crs"):
        PolygonSet.from_geojson(other, "id")
    unlabelled = write_geojson(tmp_path / "u.json", [square_feature("a", -8e6, 4.9e6, 100)])
    with pytest.raises(ValueError, match="EPSG:3857"):
        PolygonSet.from_geojson(unlabelled, "id")


def test_geojson_round_trip(shapes: PolygonSet, tmp_path: Path) -> None:
    doc = shapes.to_geojson_dict()
    assert [f["properties"] for f in doc["features"]] == [
        {"id": "holed"},
        {"id": "multi"},
        {"id": "triangle"},
    ]
    assert [f["geometry"]["type"] for f in doc["features"]] == ["Polygon", "MultiPolygon", "Polygon"]
    outer = doc["features"][0]["geometry"]["coordinates"][0]
    assert outer[0] == outer[-1]  # rings are closed again
    path = tmp_path / "out.geojson"
    path.write_text(json.dumps(doc))
    back = PolygonSet.from_geojson(path, "id")
    assert back.ids == shapes.ids
    assert torch.equal(back.area_m2(), shapes.area_m2())
    assert torch.equal(back.bounds(), shapes.bounds())


# ---------------------------------------------------------------------- New York City
@pytest.fixture(scope="module")
def nyc() -> PolygonSet:
    return PolygonSet.from_geojson(MODZCTA, "MODZCTA", drop=["99999"])


def true_area_km2(ps: PolygonSet) -> float:
    """Approximate ground area: each area's projected area times cos²(latitude at its bbox centre)."""
    b = ps.bounds()
    lat = 2 * torch.atan(torch.exp((b[:, 1] + b[:, 3]) / 2 / R)) - math.pi / 2
    return float((ps.area_m2() * lat.cos() ** 2).sum()) / 1e6


@needs_nyc
def test_nyc_modzcta_areas(nyc: PolygonSet) -> None:
    assert nyc.n == 177
    assert "99999" not in nyc.ids
    assert "10001" in nyc.ids
    b = nyc.bounds()
    assert bool((b[:, 0] < b[:, 2]).all() & (b[:, 1] < b[:, 3]).all())
    x, y = lonlat_to_mercator(t64(-74.26, -73.70), t64(40.49, 40.92))  # the city's extent, generously
    assert x[0] < b[:, 0].min() < b[:, 2].max() < x[1]
    assert y[0] < b[:, 1].min() < b[:, 3].max() < y[1]
    assert bool((nyc.area_m2() > 0).all())
    assert 1280 < nyc.area_m2().sum().item() / 1e6 < 1360  # Web Mercator km², ≈ 1.74 × ground
    assert 740 < true_area_km2(nyc) < 790


@needs_nyc
def test_nyc_samples_fall_inside_their_area(nyc: PolygonSet) -> None:
    per_area = 200
    area_of_point = torch.arange(nyc.n).repeat_interleave(per_area)
    area_of_point = area_of_point[torch.randperm(area_of_point.numel(), generator=gen(4))]
    x, y = nyc.sample(area_of_point, gen(7))
    for area in range(nyc.n):
        mine = area_of_point == area
        assert bool(nyc.contains(area, x[mine], y[mine]).all()), nyc.ids[area]
        b = nyc.bounds()[area]
        assert bool(((x[mine] >= b[0]) & (x[mine] <= b[2]) & (y[mine] >= b[1]) & (y[mine] <= b[3])).all())
    again = nyc.sample(area_of_point, gen(7))
    assert torch.equal(again[0], x)
    assert torch.equal(again[1], y)


@needs_nyc
def test_nyc_contains_matches_reference(nyc: PolygonSet) -> None:
    g = gen(11)
    for area in range(0, nyc.n, 4):
        rings = [r.numpy() for poly in nyc.polygons[area] for r in poly]
        xmin, ymin, xmax, ymax = nyc.bounds()[area].tolist()
        x = xmin + torch.rand(400, generator=g, dtype=torch.float64) * (xmax - xmin)
        y = ymin + torch.rand(400, generator=g, dtype=torch.float64) * (ymax - ymin)
        expected = even_odd_reference(rings, x.numpy(), y.numpy())
        got = nyc.contains(area, x, y).numpy()
        assert got.tolist() == expected.tolist(), nyc.ids[area]


@needs_nyc
def test_nyc_sampling_is_uniform_within_an_area(nyc: PolygonSet) -> None:
    """The share of sampled points in each quarter of an irregular area's bbox matches that quarter's share
    of the area, estimated independently (the reference test on uniform points in the bbox)."""
    area = nyc.index("11234")  # a large, irregular Brooklyn area on Jamaica Bay
    rings = [r.numpy() for poly in nyc.polygons[area] for r in poly]
    xmin, ymin, xmax, ymax = nyc.bounds()[area].tolist()
    g = gen(12)
    bx = xmin + torch.rand(100_000, generator=g, dtype=torch.float64).numpy() * (xmax - xmin)
    by = ymin + torch.rand(100_000, generator=g, dtype=torch.float64).numpy() * (ymax - ymin)
    inside = even_odd_reference(rings, bx, by)
    x, y = nyc.sample(torch.full((20_000,), area), gen(8))
    xm, ym = (xmin + xmax) / 2, (ymin + ymax) / 2
    for left in (True, False):
        for low in (True, False):
            expected = float((((bx[inside] < xm) == left) & ((by[inside] < ym) == low)).mean())
            got = (((x < xm) == left) & ((y < ym) == low)).double().mean().item()
            assert got == pytest.approx(expected, abs=0.015), (left, low)


@needs_nyc
def test_nyc_boroughs_file_in_web_mercator() -> None:
    boroughs = PolygonSet.from_geojson(BOROUGHS, "name")
    assert set(boroughs.ids) == {"Manhattan", "Bronx", "Brooklyn", "Queens", "Staten Island"}
    assert PolygonSet.from_geojson(BOROUGHS, "code").ids == ("5", "4", "3", "1", "2")
    assert 1330 < boroughs.area_m2().sum().item() / 1e6 < 1400  # Web Mercator km²
    assert 770 < true_area_km2(boroughs) < 800  # NYC's land area is about 784 km²
    manhattan = boroughs.area_m2()[boroughs.index("Manhattan")].item() / 1e6
    assert 95 < manhattan < 110  # ≈ 59 km² on the ground


# ---------------------------------------------------------------------- discs
def test_sample_in_disc_is_uniform() -> None:
    n = 40_000
    cx = torch.full((n,), 1000.0, dtype=torch.float64)
    cy = torch.full((n,), -500.0, dtype=torch.float64)
    radius = torch.full((n,), 10.0, dtype=torch.float64)
    x, y = sample_in_disc(cx, cy, radius, gen(1))
    d = torch.hypot(x - cx, y - cy)
    assert bool((d <= 10.0 + 1e-9).all())
    assert (d < 5.0).double().mean().item() == pytest.approx(0.25, abs=0.01)
    assert (x > 1000.0).double().mean().item() == pytest.approx(0.5, abs=0.01)
    assert (y > -500.0).double().mean().item() == pytest.approx(0.5, abs=0.01)
    again = sample_in_disc(cx, cy, radius, gen(1))
    assert torch.equal(again[0], x)
    assert torch.equal(again[1], y)
    x0, y0 = sample_in_disc(t64(3.0), t64(4.0), t64(0.0), gen(1))
    assert (x0.item(), y0.item()) == (3.0, 4.0)


def test_sample_in_disc_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="radius"):
        sample_in_disc(t64(0.0), t64(0.0), t64(-1.0), gen())
    with pytest.raises(ValueError, match="equal length"):
        sample_in_disc(t64(0.0, 1.0), t64(0.0), t64(1.0), gen())
