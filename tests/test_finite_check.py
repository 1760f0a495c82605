"""The read-out's finite check: a one-reduction fast path that must never miss a NaN or an inf,
and must not raise on finite values whose sum overflows."""

import pytest
import torch

from alti_lens.errors import NonFiniteActivationError
from alti_lens.readout.run import _all_finite, _check_finite


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_all_finite_sees_every_nan_and_inf(dtype: torch.dtype) -> None:
    x = torch.randn(3, 5, 7).to(dtype)
    assert _all_finite(x)
    for bad in (float("nan"), float("inf"), -float("inf")):
        y = x.clone()
        y[1, 2, 3] = bad
        assert not _all_finite(y)
    y = x.clone()
    y[0, 0, 0], y[2, 4, 6] = float("inf"), -float("inf")  # sums to NaN
    assert not _all_finite(y)


def test_finite_values_whose_sum_overflows_pass() -> None:
    big = torch.full((4, 8), torch.finfo(torch.float32).max)  # the float32 sum is inf
    assert _all_finite(big)
    _check_finite("blocks.0.hook_resid_pre", big[None], torch.ones(1, 4, dtype=torch.bool))
    half = torch.full((4, 8), torch.finfo(torch.float16).max, dtype=torch.float16)
    assert _all_finite(half)
    assert _all_finite(torch.empty(0))


def test_padded_positions_are_not_checked() -> None:
    x = torch.randn(2, 3, 4)
    x[1, 2] = float("nan")
    real = torch.tensor([[True, True, True], [True, True, False]])
    _check_finite("blocks.0.hook_resid_pre", x, real)  # the NaN is at a padded position
    real[1, 2] = True
    with pytest.raises(NonFiniteActivationError):
        _check_finite("blocks.0.hook_resid_pre", x, real)
