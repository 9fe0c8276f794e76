"""Program text every generated PyTorch program has: the data error, device moves, the synthetic dataset, the split.

``$NAME`` placeholders are filled with :class:`string.Template`; the generated code never uses ``$``.
"""

from __future__ import annotations

HELPERS = '''
class DataError(Exception):
    """Input data missing or malformed: main() prints it as one line and exits 2."""


def to_device(obj, device):
    """Move tensors (also inside tuples, lists and dicts) to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {key: to_device(value, device) for key, value in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(value, device) for value in obj)
    return obj


def _index(obj, i):
    if isinstance(obj, dict):
        return {key: _index(value, i) for key, value in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_index(value, i) for value in obj)
    return obj[i]


class SyntheticDataset(Dataset):
    """``n`` random examples with example_batch()'s shapes: for --smoke and --synthetic."""

    def __init__(self, n: int):
        self.inputs, self.targets = example_batch(n)
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        return _index(self.inputs, i), _index(self.targets, i)


def split(dataset, val_fraction: float = 0.1):
    """A seeded train/validation split."""
    n_val = max(1, int(len(dataset) * val_fraction))
    return random_split(dataset, [len(dataset) - n_val, n_val], generator=torch.Generator().manual_seed(SEED))
'''

SYNTHETIC_DEFAULT = '''
def synthetic_dataset(n: int) -> Dataset:
    return SyntheticDataset(n)
'''
