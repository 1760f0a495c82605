"""Stand-in (see ../README.md)."""

from .arrow_dataset import Dataset


class IterableDataset(Dataset):
    pass
