"""What ``deepdive model pull`` fetches: files pinned by repository, revision (a commit) and sha256.

The catalog holds the official Qwen2.5-Coder Instruct GGUF files (Apache-2.0) in llama.cpp's Q4_K_M
quantization. Their sha256 and sizes were checked here against the bytes of the PyPI test pieces
(``make test-model``: the joined files hash to exactly these values) and agree with the values that
public catalogs give for the hub's files; the revisions are the commits those catalogs cite, and could
not be checked against the hub from the machines this was written on (no access). The sha256 is the
guard: whatever a revision serves, a file with other bytes is refused.

Any other GGUF file on the hub can be pulled as ``REPO/FILE.gguf`` with ``--revision COMMIT`` and
``--sha256 HEX``: every pull is pinned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from . import ModelError
from .local import slug

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Pin:
    name: str
    """The registry name the file gets."""
    repo: str
    revision: str
    """A commit hash: what a branch name would let change under the same command."""
    filename: str
    sha256: str
    size_bytes: int
    license: str = ""
    title: str = ""


PINS: dict[str, Pin] = {
    pin.name: pin
    for pin in (
        Pin(
            name="qwen2.5-coder-0.5b",
            repo="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            revision="ebb2015119c907b064c512bf053e945850b5875f",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size_bytes=491_400_064,
            license="Apache-2.0",
            title="Qwen2.5-Coder 0.5B Instruct, Q4_K_M (fast; weaker programs)",
        ),
        Pin(
            name="qwen2.5-coder-1.5b",
            repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
            revision="f86cb2c1fa58255f8052cc32aeede1b7482d4361",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size_bytes=1_117_320_768,
            license="Apache-2.0",
            title="Qwen2.5-Coder 1.5B Instruct, Q4_K_M (about 3x slower; better programs)",
        ),
    )
}


def parse_target(target: str, *, revision: Optional[str] = None, sha256: Optional[str] = None,
                 name: Optional[str] = None) -> Pin:
    """A catalog name, or ``REPO/FILE.gguf`` pinned by ``revision`` and ``sha256``; ModelError otherwise."""
    if target in PINS and revision is None and sha256 is None:
        pin = PINS[target]
        return pin if name is None else Pin(**{**pin.__dict__, "name": name})
    parts = target.split("/")
    if len(parts) < 3:
        raise ModelError(
            f"unknown model {target!r}: pull knows {', '.join(PINS)}; or give REPO/FILE.gguf "
            "with --revision COMMIT and --sha256 HEX"
        )
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    if not filename.lower().endswith(".gguf"):
        raise ModelError(f"{filename}: pull fetches only .gguf files (for a model folder, download it and "
                         "`deepdive model add FOLDER`)")
    if revision is None or sha256 is None:
        raise ModelError(f"{target} is not in the catalog: pin it: give --revision COMMIT (40 hex digits) and "
                         "--sha256 HEX (the file's page on the hub shows both)")
    if not _COMMIT.match(revision.lower()):
        raise ModelError(f"--revision must be a commit hash (40 hex digits), not {revision!r}: a branch can move")
    if not _SHA256.match(sha256.lower()):
        raise ModelError(f"--sha256 must be 64 hex digits, not {sha256!r}")
    return Pin(
        name=name or slug(filename.rsplit("/", 1)[-1][: -len(".gguf")]),
        repo=repo,
        revision=revision.lower(),
        filename=filename,
        sha256=sha256.lower(),
        size_bytes=-1,  # unknown until the hub says; the sha256 decides
    )
