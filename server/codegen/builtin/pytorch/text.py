"""Small helpers for program text: filling a block's placeholders, indenting a block."""

from __future__ import annotations

from string import Template


def fill(text: str, **values: object) -> str:
    """``text`` with its ``$NAME`` placeholders filled."""
    return Template(text).substitute({k: str(v) for k, v in values.items()})


def indent(text: str, n: int) -> str:
    """``text`` indented by ``n`` spaces (blank lines stay empty)."""
    pad = " " * n
    return "\n".join(pad + line if line.strip() else "" for line in text.splitlines())
