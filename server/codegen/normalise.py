"""Prompt text made comparable: NFKC, ASCII punctuation, Chinese numerals as digits (二十四 -> 24), 20k as 20000;
and a framework argument's name made canonical."""

from __future__ import annotations

import re
import unicodedata
from typing import Optional

__all__ = ["normalise", "framework_name"]


_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10000}
_CN_RUN = re.compile("[零〇一二两三四五六七八九十百千万]+")


def _cn_to_int(text: str) -> Optional[int]:
    """二十四 -> 24, 两万 -> 20000, 十 -> 10, 一二八 -> 128 (digit by digit); None when not a number."""
    if all(ch in _CN_DIGITS for ch in text):
        return int("".join(str(_CN_DIGITS[ch]) for ch in text))
    total, section, digit = 0, 0, None
    for ch in text:
        if ch in _CN_DIGITS:
            digit = _CN_DIGITS[ch]
        elif ch == "万":
            section += digit or 0
            total += (section or 1) * 10000
            section, digit = 0, None
        else:
            section += (1 if digit is None else digit) * _CN_UNITS[ch]
            digit = None
    return total + section + (digit or 0)


def _cn_numbers(text: str) -> str:
    def repl(m: re.Match) -> str:
        run = m.group(0)
        # 一些/一起/统一 etc. are words, not numbers: only convert a single 一 before a counter or unit.
        if run == "一" and not re.match(r"[个层类轮维步次批]", text[m.end():m.end() + 1] or " "):
            return run
        if run == "零" and text[m.start() - 1:m.start()] == "从":
            return run  # 从零开始/从零实现: "from scratch"
        value = _cn_to_int(run)
        return run if value is None else str(value)

    return _CN_RUN.sub(repl, text)


def normalise(prompt: str) -> str:
    """NFKC, ASCII punctuation and quotes, Chinese numerals as digits, 20k as 20000 (case kept)."""
    text = unicodedata.normalize("NFKC", prompt)
    for a, b in (("×", "x"), ("、", ","), ("。", "."), ("“", '"'), ("”", '"'), ("’", "'"), ("‘", "'")):
        text = text.replace(a, b)
    text = _cn_numbers(text)
    # 20k -> 20000, 1.5k -> 1500
    text = re.sub(r"(\d+(?:\.\d+)?)k\b", lambda m: str(int(float(m.group(1)) * 1000)), text, flags=re.I)
    return text


def framework_name(name: str) -> str:
    """"torch" or "tensorflow" for a framework argument; ValueError (one line) for anything else."""
    key = name.strip().lower()
    if key in ("torch", "pytorch", "pt"):
        return "torch"
    if key in ("tensorflow", "tf", "keras", "tf.keras"):
        return "tensorflow"
    raise ValueError(f"unknown framework {name!r}: use torch or tensorflow")
