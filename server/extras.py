"""Which optional extra of the ``deepdive`` package brings a module, and the one line that says so.

The core install (the daemon, the CLI, the dashboard) leaves torch, optuna, transformers and the
rest to extras (pyproject.toml's ``[project.optional-dependencies]``), so a feature used without its
extra dies on a ``ModuleNotFoundError``. Every place that reports one (the CLI, ``deepdive train``'s
failure line, a job's reason in the editor) turns it into the same line,
``No module named 'optuna': pip install 'deepdive[tune]'``, from the one table here.
``tests/test_extras.py`` checks the table against pyproject.toml and the installed distributions,
so it cannot drift from the extras the package really declares.

No third-party import here: the daemon and the CLI's error path use it.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Iterable, Optional

#: Top-level import name -> the extra whose requirements install it. Only the extras a user installs
#: for a feature (not ``dev`` or ``bench``, which are for working on Deepdive itself).
EXTRA_OF_MODULE: dict[str, str] = {
    "torch": "engine",
    "numpy": "engine",
    "zstandard": "engine",
    "xxhash": "engine",
    "optuna": "tune",
    "scipy": "tune",
    "greenlet": "tune",
    "cmaes": "tune",
    "torch_pruning": "compress",
    "torchao": "compress",
    "transformers": "llm",
    "tokenizers": "llm",
    "onnx": "deploy",
    "onnxscript": "deploy",
    "onnxruntime": "deploy",
    "starlette": "deploy",
    "uvicorn": "deploy",
    "uvloop": "deploy",
    "httptools": "deploy",
    "prometheus_client": "deploy",
    "accelerate": "deploy",
    "llama_cpp": "llamacpp",
    "tensorflow": "tf-cpu",
}

#: Python's own wording, in a traceback's last line or an exception's message.
_NO_MODULE = re.compile(r"No module named '([\w.]+)'")
#: ... where it was raised: an exception's line (any prefix: ``[rank0]:``, runpy's parenthesis) or our CLI's line.
_RAISED = re.compile(r"(?:ModuleNotFoundError: |^deepdive: error: )No module named '([\w.]+)'")


def pip_command(extra: str) -> str:
    """The command that installs ``extra`` next to an installed deepdive (pip reads its extras from
    the installed package's metadata, so this works for an editable or a local install too)."""
    return f"pip install 'deepdive[{extra}]'"


def extra_for(module: str) -> Optional[str]:
    """The extra that provides the top-level ``module``; None if none does.

    A dotted name gets None: "No module named 'torch.foo'" means torch is there without foo, which
    installing the extra would not change (when torch itself is missing, Python names 'torch').
    """
    return EXTRA_OF_MODULE.get(module)


def missing_module_line(module: str) -> str:
    """``No module named 'X'``, followed by the pip command that fixes it when an extra provides X."""
    extra = extra_for(module)
    line = f"No module named '{module}'"
    return f"{line}: {pip_command(extra)}" if extra else line


def describe_missing(exc: ModuleNotFoundError) -> str:
    """The one line for a ``ModuleNotFoundError`` (its ``name``, else the module its message names)."""
    name = exc.name or _module_in(str(exc))
    return missing_module_line(name) if name else str(exc)


def extras_not_importable(extras: Iterable[str]) -> dict[str, list[str]]:
    """For each of ``extras``, the modules of the table that this Python cannot find; extras with none are left out.

    The editor's install re-checks with this after pip: ``find_spec`` locates a module without importing it
    (no torch import), so a package that installs but whose import then fails is not caught here.
    """
    missing: dict[str, list[str]] = {}
    for extra in extras:
        modules = [m for m, e in EXTRA_OF_MODULE.items() if e == extra and importlib.util.find_spec(m) is None]
        if modules:
            missing[extra] = modules
    return missing


def module_not_found_in(text: str) -> Optional[str]:
    """The one line for the first ``ModuleNotFoundError`` raised in ``text`` (a job's output line: a traceback's
    last line, runpy's "Error while finding module specification", this CLI's own error line); None if none.

    A bare "No module named 'numpy'" does not count: torch prints one in a warning and goes on.
    """
    found = _RAISED.search(text)
    return missing_module_line(found.group(1)) if found else None


def _module_in(text: str) -> Optional[str]:
    """The module named by the last ``No module named '…'`` in ``text``."""
    found = _NO_MODULE.findall(text)
    return found[-1] if found else None
