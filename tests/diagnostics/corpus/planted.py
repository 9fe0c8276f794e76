"""Reading the diagnostics corpus: which scripts there are, where their problems are planted, which ones run here.

A slow script marks the line of its planted problem with a trailing comment naming the rule that must fire
there (``# planted: DD110``; several codes separated by commas where one line holds several). A script's module
docstring may carry a line ``corpus: needs-cuda`` (it runs only where CUDA is) or ``corpus: not-runnable ...``
(it is meant to stop with an error: the reason follows). The corpus test (tests/diagnostics/test_corpus.py) and
the benchmark (bench/bench_diagnostics.py) both read the corpus through this module, so they agree on what is
planted where.

Not a corpus script itself: only ``slow/*.py`` and ``clean/*.py`` are.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

CORPUS = Path(__file__).resolve().parent
KINDS: tuple[str, ...] = ("slow", "clean")

_PLANTED = re.compile(r"#\s*planted:\s*(.*?)\s*$")
_CODE = re.compile(r"DD\d{3}")
_FLAG = re.compile(r"^\s*corpus:\s*(needs-cuda|not-runnable)\b\s*(.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Script:
    """One corpus script and what the corpus says about it."""

    path: Path
    kind: Literal["slow", "clean"]
    planted: frozenset[tuple[int, str]]
    """(1-based line, rule code) of each planted problem; empty for a clean script."""
    needs_cuda: bool
    """Runs only where torch sees a CUDA GPU (``corpus: needs-cuda``)."""
    not_runnable: Optional[str]
    """Why it is meant to stop with an error (``corpus: not-runnable ...``), or None: it runs to exit 0."""

    @property
    def name(self) -> str:
        """``slow/dd110_item_running_loss.py``: the path inside the corpus."""
        return f"{self.kind}/{self.path.name}"

    @property
    def source(self) -> str:
        return self.path.read_text(encoding="utf-8")


def planted_markers(source: str, where: str = "<string>") -> frozenset[tuple[int, str]]:
    """The (line, code) pairs that ``# planted: DDnnn`` comments name in ``source``.

    Raises:
        ValueError: a marker that names no code or something that is not a rule code (``DD`` and three digits).
    """
    found: set[tuple[int, str]] = set()
    for number, line in enumerate(source.splitlines(), start=1):
        match = _PLANTED.search(line)
        if match is None:
            continue
        names = [part.strip() for part in match.group(1).split(",")]
        if not names or any(_CODE.fullmatch(name) is None for name in names):
            raise ValueError(f"{where}:{number}: a planted marker must name rule codes, e.g. '# planted: DD110' "
                             f"(got {match.group(0)!r})")
        found.update((number, name) for name in names)
    return frozenset(found)


def load(path: Path) -> Script:
    """The script at ``path`` (in ``slow/`` or ``clean/``) with its markers and flags read.

    Raises:
        ValueError: the file is outside the corpus' two folders, or a marker is malformed.
    """
    kind = path.parent.name
    if kind not in KINDS:
        raise ValueError(f"{path}: corpus scripts live in {CORPUS}/slow or {CORPUS}/clean")
    source = path.read_text(encoding="utf-8")
    docstring = ast.get_docstring(ast.parse(source, filename=str(path))) or ""
    flags = {flag: rest.strip() for flag, rest in _FLAG.findall(docstring)}
    return Script(path=path, kind=kind,  # type: ignore[arg-type]
                  planted=planted_markers(source, str(path)), needs_cuda="needs-cuda" in flags,
                  not_runnable=(flags["not-runnable"] or "meant to stop with an error") if "not-runnable" in flags
                  else None)


def scripts(kind: Optional[str] = None) -> list[Script]:
    """Every corpus script of ``kind`` (``slow`` or ``clean``; both when None), sorted by name.

    Hidden files are not scripts: *Apply and measure* writes its fixed copy beside the script as
    ``.<name>.dd-fix-<code>.py`` while it runs."""
    kinds = KINDS if kind is None else (kind,)
    return [load(path) for k in kinds for path in sorted((CORPUS / k).glob("*.py")) if not path.name.startswith(".")]
