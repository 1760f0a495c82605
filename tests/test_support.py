"""The support helper (`alti_lens.core.support`) against plain loops over rows and keys."""

import pytest
import torch
from terms import CASES, random_terms, window

from alti_lens.core.support import key_range, row_ranges, support


def loop_support(pattern: torch.Tensor, query_offset: int | None) -> torch.Tensor:
    heads, n_queries, n_keys = pattern.shape
    mask = torch.zeros(n_queries, n_keys, dtype=torch.bool)
    for i in range(n_queries):
        for j in range(n_keys):
            own = query_offset is not None and j == i + query_offset
            mask[i, j] = own or any(bool(pattern[h, i, j] != 0) for h in range(heads))
    return mask


@pytest.mark.parametrize("case", list(CASES))
def test_support_is_any_head_plus_the_own_position(case: str) -> None:
    terms = CASES[case]()
    offset = None if terms.residual_column else 0
    mask = support(terms.pattern, offset)
    assert torch.equal(mask, loop_support(terms.pattern, offset))
    assert torch.equal(support(terms.pattern), (terms.pattern != 0).any(dim=0))


def test_the_own_position_of_last_rows_is_offset() -> None:
    """`alti(rows="last")`: rows 6..8 of 9 keys; row i's own position is key i + 6."""
    pattern = random_terms(n=9, causal=True).pattern[:, 6:]
    pattern[:, :, 6:] = 0  # no head attends to the rows' own keys: only the offset sets them
    mask = support(pattern, 6)
    assert torch.equal(mask, loop_support(pattern, 6))
    assert mask[torch.arange(3), torch.arange(6, 9)].all()


def test_row_ranges_and_key_range() -> None:
    pattern = window(random_terms(n=12, heads=2, causal=True, seed=4), 3).pattern.clone()
    pattern[:, 5] = 0  # a row that attends to nothing
    mask = support(pattern)
    start, stop = row_ranges(mask)
    assert start.dtype == stop.dtype == torch.int64
    for i in range(12):
        keys = mask[i].nonzero().flatten().tolist()
        expected = (keys[0], keys[-1] + 1) if keys else (0, 0)
        assert (int(start[i]), int(stop[i])) == expected
        assert key_range(mask[i : i + 1]) == (expected if keys else None)
    assert key_range(mask[4:8]) == (2, 8)  # rows 4, 6, 7 (row 5 is empty): keys 2..7
    assert key_range(mask[5:6]) is None
    assert key_range(mask) == (0, 12)
