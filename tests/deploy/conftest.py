"""Shared fixtures of the deploy tests: the digits CNN trained briefly, and its export folder (eager form)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DIGITS_SCRIPT = REPO / "server" / "examples" / "digits_cnn.py"


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``digits_cnn.py --epochs 1 --save``: a whole module (~98 % test accuracy), saved once per session."""
    import torch

    from deepdive.examples import digits_cnn

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("digits") / "digits_cnn.pt"
    torch.save(digits_cnn.train(epochs=1, seed=0), path)
    return path


@pytest.fixture(scope="session")
def digits_export(digits_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export folder with the eager form and deploy.json (read-only for tests: copy it to change it)."""
    from deepdive.deploy.export import export
    from deepdive.deploy.source import load_source

    folder = tmp_path_factory.mktemp("digits_export")
    export(load_source(str(DIGITS_SCRIPT), str(digits_model)), folder, forms=("eager",))
    return folder
