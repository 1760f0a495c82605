"""Results as pandas DataFrames (pandas is imported when a table is made)."""

from collections.abc import Iterable
from typing import Any

from alti_lens.errors import MissingDependencyError

MISSING = "to_dataframe() needs pandas: pip install pandas (or alti-lens[pandas])"


def table(names: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> Any:
    """A pandas DataFrame with columns `names` from an iterable of row tuples."""
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for row in rows:
        for name, value in zip(names, row, strict=True):
            columns[name].append(value)
    return dataframe(columns)


def dataframe(columns: dict[str, list[Any]], *, missing: str = MISSING) -> Any:
    """A pandas DataFrame of `columns`; without pandas, an ImportError saying `missing`."""
    try:
        import pandas as pd
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(missing) from err
    return pd.DataFrame(columns)
