"""Stand-in for `datasets` on the GPU check machine (see ../README.md): importable, not usable."""

from .arrow_dataset import Dataset
from .iterable_dataset import IterableDataset
from .load import load_dataset

__all__ = ["Dataset", "IterableDataset", "load_dataset"]
