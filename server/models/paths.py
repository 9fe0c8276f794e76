"""Where Deepdive keeps its models: the XDG base directories, as the user's other tools do.

- the registry: ``$XDG_CONFIG_HOME/deepdive/models.json`` (``~/.config/deepdive/models.json``), or
  ``$DEEPDIVE_MODELS_REGISTRY``;
- pulled model files: ``$XDG_CACHE_HOME/deepdive/models/`` (``~/.cache/deepdive/models/``).

A cache may be deleted at any time (the registry then says the file is missing); the registry is
configuration and is kept.
"""

from __future__ import annotations

import os
from pathlib import Path


def _base(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable, "")
    # The XDG spec: a relative path is invalid and is ignored.
    return Path(value) if value and os.path.isabs(value) else Path.home() / fallback


def config_dir() -> Path:
    return _base("XDG_CONFIG_HOME", ".config") / "deepdive"


def cache_dir() -> Path:
    return _base("XDG_CACHE_HOME", ".cache") / "deepdive"


def registry_path() -> Path:
    """The registry file (it may not exist yet: then no model is registered); ``DEEPDIVE_MODELS_REGISTRY``
    names another one (a container's, a test session's)."""
    override = os.environ.get("DEEPDIVE_MODELS_REGISTRY", "")
    return Path(override) if override else config_dir() / "models.json"


def models_dir() -> Path:
    """Where ``deepdive model pull`` puts the files it downloads."""
    return cache_dir() / "models"


def shorten(path: str | os.PathLike[str]) -> str:
    """``path`` with the home folder written as ``~``, for listings."""
    text = str(path)
    home = str(Path.home())
    return "~" + text[len(home):] if home != "/" and (text == home or text.startswith(home + os.sep)) else text
