"""The numbers of a prompt that nothing took: quoted back so that a reading never drops one silently.

:func:`unplaced_numbers` lists every number of the prompt outside the spans some property or field
took ("placed"), with a few words of context. A few numbers are not quantities and are skipped: the
dimensionality of a name (1-D, 2d), 一个 ("a"), the number inside a known name (GPT-2, CIFAR-10).

A number the prompt restates is placed too, and only then: the same value again, counting the same
kind of thing as where it was placed ("from the past 96 hours (so 96 time steps)", "all 6 sensor
channels ... 6 channels"). A different value ("96 hours (so 48 time steps)"), or the same value
counting something else ("6 channels ... 6 classes"), stays unplaced.
"""

from __future__ import annotations

import re
from typing import Optional

from deepdive.codegen.unknown_words import KNOWN_TOKENS

__all__ = ["unplaced_numbers"]

Span = tuple[int, int]

_NUMBER = re.compile(r"(?<![a-z0-9_.])\d+(?:\.\d+)?(?:e-?\d+)?(?![0-9])", re.ASCII)
# Kinds of things a count counts; a restated number must count the same kind as the placed one.
_KINDS: list[str] = [
    r"steps?|time ?steps?|timesteps|values|points|samples|observations|readings|hours|days|minutes|weeks|months|years|"
    r"tokens|characters|chars|words|个?时间步|步|天|小时|个?值|个?点|个?采样点|分钟",
    r"channels?|sensors?|variables|series|features|leads|axes|bands|个?通道|个?变量|个?传感器|导联|个?特征",
    r"classes|labels|categories|tags|types|kinds|topics|genres|keywords|个?类别?|个?标签|种",
    r"layers?|blocks?|个?层",
    r"actions|个?动作",
    r"users|customers|个?用户",
    r"items|movies|products|个?物品|个?商品|部?电影",
]
# After the number: up to one modifier word, then the kind ("6 sensor channels", "96 time steps").
_AFTER = r"\s*(?:[a-z][a-z-]*\s+)?(?:{})(?![a-z])"


def unplaced_numbers(text: str, pos: str, placed: list[Span], language: str) -> list[str]:
    """The numbers of ``pos`` outside every ``placed`` span, each quoted from ``text`` with its context.

    Args:
        text: the normalised prompt (case kept).
        pos: the same in lower case, paths and exclusions blanked (same length).
        placed: the spans whose numbers a property or field took.
        language: "en" or "zh" (how much context to quote).
    """
    numbers = [m for m in _NUMBER.finditer(pos) if not _not_a_quantity(pos, m)]
    taken = [m for m in numbers if _inside(m.span(), placed)]
    out = []
    for m in numbers:
        if m in taken or _restated(pos, m, taken):
            continue
        out.append(_context(text, m.start(), m.end(), language))
    return out


def _inside(span: Span, placed: list[Span]) -> bool:
    return any(a <= span[0] and span[1] <= b for a, b in placed)


def _not_a_quantity(pos: str, m: re.Match) -> bool:
    """1-D, 2d, 3D (a dimensionality in a name); 一个 ("a"); GPT-2, CIFAR-10, VGG-16 (a number in a known name)."""
    start, end = m.span()
    after = pos[end:end + 3]
    if re.match(r"-?d\b", after) and m.group(0) in ("1", "2", "3"):
        return True
    if m.group(0) == "1" and after.startswith("个"):
        return True
    name = re.search(r"([a-z][a-z0-9]*)-$", pos[max(0, start - 20):start])
    return bool(name and name.group(1) in KNOWN_TOKENS)


def _kind(pos: str, m: re.Match) -> Optional[int]:
    """The index in ``_KINDS`` of what the number counts, read from the words after it (None: unknown)."""
    for i, kind in enumerate(_KINDS):
        if re.match(_AFTER.format(kind), pos[m.end():m.end() + 40]):
            return i
    return None


def _restated(pos: str, m: re.Match, taken: list[re.Match]) -> bool:
    """True when a placed number has the same value and counts the same kind of thing."""
    kind = _kind(pos, m)
    if kind is None:
        return False
    return any(t.group(0) == m.group(0) and _kind(pos, t) == kind for t in taken)


def _context(text: str, start: int, end: int, language: str) -> str:
    """The number with a word before and two after (a few characters in Chinese), within its clause."""
    before = re.split(r"[,;:()\n，。；：]", text[:start])[-1]
    after = re.split(r"[,;:()\n，。；：]", text[end:])[0]
    if language == "zh" and re.search(r"[\u4e00-\u9fff]", before[-4:] + after[:4]):
        left, right = before[-4:].lstrip(), after[:4].rstrip()
    else:
        left = " ".join(before.split()[-1:])
        right = " ".join(after.split()[:2])
        left = left + " " if left and before.endswith((" ", "\t")) else left
        right = " " + right if right and after.startswith((" ", "\t")) else right
    return (left + text[start:end] + right).strip()
