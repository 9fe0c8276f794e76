"""The static rules: :func:`analyze` one file's source and get its findings.

Each rule module registers its rules in :data:`~deepdive.diagnose.rules.base.RULES` when imported;
the list below imports them all. A finding on a line that carries ``# deepdive: ignore[DD110]``
(several codes separated by commas) or ``# deepdive: ignore`` (every rule) is dropped, as is every
finding of a rule in ``disabled``. A file that does not parse has no findings (the editor shows
Python's own syntax error).
"""

from __future__ import annotations

import gc
import importlib
import logging
import re
from typing import Iterable

from deepdive.diagnose.rules.base import RULES, Context, Edit, Finding, Fix, Rule, apply_edits

log = logging.getLogger("deepdive.diagnose")

RULE_MODULES: tuple[str, ...] = (
    "deepdive.diagnose.rules.apis",
    "deepdive.diagnose.rules.distributed",
    "deepdive.diagnose.rules.evaluation",
    "deepdive.diagnose.rules.layout",
    "deepdive.diagnose.rules.loading",
    "deepdive.diagnose.rules.optim",
    "deepdive.diagnose.rules.precision",
    "deepdive.diagnose.rules.syncs",
)

_IGNORE = re.compile(r"#\s*deepdive:\s*ignore(?:\[([A-Za-z0-9_,\s]+)\])?")


def _load() -> None:
    for module in RULE_MODULES:
        importlib.import_module(module)


_load()


def suppressed_on(line_text: str) -> set[str] | None:
    """The codes a line's ``# deepdive: ignore[...]`` comment names; an empty set means every code; None: no comment."""
    match = _IGNORE.search(line_text)
    if match is None:
        return None
    if match.group(1) is None:
        return set()
    return {code.strip().upper() for code in match.group(1).split(",") if code.strip()}


def analyze(source: str, path: str = "<string>", disabled: Iterable[str] = ()) -> list[Finding]:
    """The findings of every enabled rule in ``source``, sorted by position; suppressed ones dropped.

    The cyclic garbage collector is paused while it runs: a 2,000-line file's syntax tree is some 100,000
    live objects, and the collections their allocation triggers walk it again and again (a 2,000-line file,
    40 analyses, quiet machine: p95 0.26 s with the collector on, 0.14–0.17 s paused; medians 0.13 and
    0.11 s). The tree holds no reference cycles, so it is freed as soon as the analysis returns (what rules
    compute per file lives on the Context, never in a module-level cache), and the collector resumes.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        return _analyze(source, path, disabled)
    finally:
        if paused:
            gc.enable()


def _analyze(source: str, path: str, disabled: Iterable[str]) -> list[Finding]:
    try:
        ctx = Context(source, path)
    except (SyntaxError, ValueError):
        return []
    off = {code.upper() for code in disabled}
    findings: list[Finding] = []
    for code, rule in RULES.items():
        if code in off:
            continue
        if rule.cuda_only and not ctx.uses_cuda:
            continue
        try:
            found = list(rule.check(ctx))
        except Exception:  # one rule's bug must not hide every other rule's findings
            log.exception("rule %s failed on %s", code, path)
            continue
        for finding in found:
            line_text = ctx.lines[finding.line - 1] if 1 <= finding.line <= len(ctx.lines) else ""
            codes = suppressed_on(line_text)
            if codes is not None and (not codes or finding.code in codes):
                continue
            findings.append(finding)
    findings.sort(key=lambda f: (f.line, f.col, f.code))
    return findings


__all__ = ["RULES", "Context", "Edit", "Finding", "Fix", "Rule", "analyze", "apply_edits", "suppressed_on"]
