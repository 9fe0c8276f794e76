"""Scripts the export tests write into a temporary folder: models whose classes live only in the script."""

from __future__ import annotations

from pathlib import Path

TINY = '''
import torch
from torch import nn


class TinyNet(nn.Module):
    """Defined here only: a pickle of it names this script's module, not an installed package."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 16), nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def build_model():
    torch.manual_seed(0)
    return TinyNet()


def example_inputs(batch_size):
    return (torch.randn(batch_size, 6, generator=torch.Generator().manual_seed(batch_size)),)


if __name__ == "__main__":
    raise SystemExit("main ran on import")
'''

BRANCHY = TINY.replace('''        return self.fc2(torch.relu(self.fc1(x)))''', '''        h = torch.relu(self.fc1(x))
        if h.sum() > 0:  # Python control flow on a value: torch.export cannot capture it
            return self.fc2(h)
        return self.fc2(-h)''')

NO_BUILD = '''
import torch


def example_inputs(batch_size):
    return (torch.zeros(batch_size, 4),)
'''

NOT_TENSORS = TINY.replace('''    return (torch.randn(batch_size, 6, generator=torch.Generator().manual_seed(batch_size)),)''',
                           '''    return {"x": [0.0] * 6}''')


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(text)
    return path

SAVES_UNDER_MAIN = TINY.replace('''    raise SystemExit("main ran on import")''', '''    import sys

    torch.save(build_model(), sys.argv[1])  # the classes are pickled as __main__.TinyNet''')
