"""``populace.masks``: a ``bool`` mask's bytes in float arithmetic give the same values as the mask."""

import pytest
import torch

from populace.masks import copy_as, numeric, true_indices


def test_numeric_is_a_view_with_the_same_products():
    mask = torch.rand(1000, generator=torch.Generator().manual_seed(0)) < 0.3
    values = torch.randn(1000)
    view = numeric(mask)
    assert view.dtype == torch.uint8
    assert view.data_ptr() == mask.data_ptr()
    assert torch.equal(values * view, values * mask)
    assert torch.equal(1 - 0.25 * view, 1 - 0.25 * mask)
    floats = torch.rand(3)
    assert numeric(floats) is floats


def test_copy_as_matches_to():
    mask = torch.tensor([True, False, True])
    out = copy_as(mask, torch.float32)
    assert out.dtype == torch.float32
    assert torch.equal(out, mask.to(torch.float32))
    small = torch.tensor([3, -2], dtype=torch.int16)
    widened = copy_as(small, torch.int32)
    assert widened.dtype == torch.int32
    assert torch.equal(widened, small.to(torch.int32))
    same = torch.ones(2)
    assert copy_as(same, torch.float32).data_ptr() != same.data_ptr()  # always a new tensor


@pytest.mark.parametrize("share", [0.0, 0.001, 0.01, 0.2, 1.0])
@pytest.mark.parametrize("n", [0, 5, 8, 4099, 100_003, 200_000])
def test_true_indices_are_nonzero(share, n):
    mask = torch.rand(n, generator=torch.Generator().manual_seed(n)) < share
    assert torch.equal(true_indices(mask), torch.nonzero(mask).squeeze(1))


def test_true_indices_of_a_view():
    mask = torch.rand(300_000, generator=torch.Generator().manual_seed(1)) < 0.01
    for part in (mask[3:], mask[::2], mask[8:160_000]):
        assert torch.equal(true_indices(part), torch.nonzero(part).squeeze(1))
